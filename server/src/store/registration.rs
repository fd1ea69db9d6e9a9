//! The `initial_access_tokens` table (RFC 7591 §3): what authorizes a registration under the
//! `token` policy. Tokens are stored as SHA-256 only.

use diesel::prelude::*;
use serde::Serialize;

use super::db::AnyConnection;
use super::schema::initial_access_tokens as tokens;
use super::{Store, StoreError};

/// An initial access token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = tokens)]
pub struct InitialAccessToken {
    pub id: String,
    #[serde(skip)]
    pub token_hash: String,
    pub description: String,
    pub created_at: i64,
    /// None: it does not expire.
    pub expires_at: Option<i64>,
    /// None: any number of registrations.
    pub max_uses: Option<i64>,
    /// Registrations made with it so far.
    pub uses: i64,
}

impl InitialAccessToken {
    /// Whether a registration may use it at `now`.
    pub fn usable(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|at| at > now) && self.max_uses.is_none_or(|max| self.uses < max)
    }
}

/// Spends one use of the token with this hash, if it is still usable: one conditional
/// `UPDATE`, so concurrent registrations cannot spend more uses than it has.
pub(super) fn spend_initial_token(
    conn: &mut AnyConnection,
    hash: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let spent = diesel::update(
        tokens::table
            .filter(tokens::token_hash.eq(hash))
            .filter(tokens::expires_at.is_null().or(tokens::expires_at.gt(now)))
            .filter(
                tokens::max_uses
                    .is_null()
                    .or(tokens::uses.lt(tokens::max_uses.assume_not_null())),
            ),
    )
    .set(tokens::uses.eq(tokens::uses + 1))
    .execute(conn)?;
    Ok(spent == 1)
}

impl Store {
    pub fn insert_initial_token(&self, token: &InitialAccessToken) -> Result<(), StoreError> {
        diesel::insert_into(tokens::table)
            .values((
                tokens::id.eq(&token.id),
                tokens::token_hash.eq(&token.token_hash),
                tokens::description.eq(&token.description),
                tokens::created_at.eq(token.created_at),
                tokens::expires_at.eq(token.expires_at),
                tokens::max_uses.eq(token.max_uses),
                tokens::uses.eq(token.uses),
            ))
            .execute(&mut self.conn()?)
            .map_err(|e| {
                super::conflict_or_query(e, format!("initial access token {}", token.id))
            })?;
        Ok(())
    }

    /// The token with this hash, usable or not.
    pub fn find_initial_token(&self, hash: &str) -> Result<Option<InitialAccessToken>, StoreError> {
        Ok(tokens::table
            .filter(tokens::token_hash.eq(hash))
            .select(InitialAccessToken::as_select())
            .first(&mut self.conn()?)
            .optional()?)
    }

    pub fn list_initial_tokens(&self) -> Result<Vec<InitialAccessToken>, StoreError> {
        Ok(tokens::table
            .order(tokens::created_at)
            .select(InitialAccessToken::as_select())
            .load(&mut self.conn()?)?)
    }

    /// True when a token was deleted.
    pub fn delete_initial_token(&self, id: &str) -> Result<bool, StoreError> {
        let deleted =
            diesel::delete(tokens::table.filter(tokens::id.eq(id))).execute(&mut self.conn()?)?;
        Ok(deleted > 0)
    }

    /// Deletes the tokens that expired before `now`.
    pub fn purge_initial_tokens(&self, now: i64) -> Result<usize, StoreError> {
        Ok(diesel::delete(
            tokens::table
                .filter(tokens::expires_at.is_not_null())
                .filter(tokens::expires_at.lt(now)),
        )
        .execute(&mut self.conn()?)?)
    }
}
