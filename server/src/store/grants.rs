//! Authorization codes, refresh tokens and the access-token deny list.
//!
//! Consuming a code or a refresh token is one conditional UPDATE (`… WHERE used_at IS NULL`):
//! of two concurrent uses exactly one wins; the loser sees reuse.

use diesel::prelude::*;

use super::schema::{
    authorization_codes as codes, refresh_tokens as refresh, revoked_access_tokens as denied,
};
use super::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable, Selectable)]
#[diesel(table_name = codes)]
pub struct CodeRecord {
    pub code_hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub audience: String,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub auth_time: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub access_token_jti: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable, Selectable)]
#[diesel(table_name = refresh)]
pub struct RefreshRecord {
    pub token_hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub audience: String,
    pub auth_time: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub access_token_jti: Option<String>,
}

/// The outcome of presenting a code or refresh token.
#[derive(Debug, PartialEq, Eq)]
pub enum Consumed<T> {
    /// First use: the record as it was.
    Fresh(T),
    /// Already used (or revoked): possible theft.
    Reused(T),
    Unknown,
}

impl Store {
    pub fn insert_code(&self, record: &CodeRecord) -> Result<(), StoreError> {
        diesel::insert_into(codes::table)
            .values(record)
            .execute(&mut self.conn()?)?;
        Ok(())
    }

    pub fn find_code(&self, code_hash: &str) -> Result<Option<CodeRecord>, StoreError> {
        Ok(codes::table
            .filter(codes::code_hash.eq(code_hash))
            .select(CodeRecord::as_select())
            .first(&mut self.conn()?)
            .optional()?)
    }

    /// Marks the code used, recording the access token issued from it, atomically.
    pub fn consume_code(
        &self,
        code_hash: &str,
        now: i64,
        access_token_jti: &str,
    ) -> Result<Consumed<CodeRecord>, StoreError> {
        let mut conn = self.conn()?;
        let won = diesel::update(
            codes::table
                .filter(codes::code_hash.eq(code_hash))
                .filter(codes::used_at.is_null()),
        )
        .set((
            codes::used_at.eq(now),
            codes::access_token_jti.eq(access_token_jti),
        ))
        .execute(&mut conn)?
            == 1;
        let record: Option<CodeRecord> = codes::table
            .filter(codes::code_hash.eq(code_hash))
            .select(CodeRecord::as_select())
            .first(&mut conn)
            .optional()?;
        Ok(match record {
            None => Consumed::Unknown,
            Some(r) if won => Consumed::Fresh(r),
            Some(r) => Consumed::Reused(r),
        })
    }

    pub fn insert_refresh_token(&self, record: &RefreshRecord) -> Result<(), StoreError> {
        diesel::insert_into(refresh::table)
            .values(record)
            .execute(&mut self.conn()?)?;
        Ok(())
    }

    /// Marks a refresh token used (rotation, RFC 9700 §4.14.2), atomically.
    pub fn consume_refresh_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Consumed<RefreshRecord>, StoreError> {
        let mut conn = self.conn()?;
        let won = diesel::update(
            refresh::table
                .filter(refresh::token_hash.eq(token_hash))
                .filter(refresh::used_at.is_null())
                .filter(refresh::revoked_at.is_null()),
        )
        .set(refresh::used_at.eq(now))
        .execute(&mut conn)?
            == 1;
        let record: Option<RefreshRecord> = refresh::table
            .filter(refresh::token_hash.eq(token_hash))
            .select(RefreshRecord::as_select())
            .first(&mut conn)
            .optional()?;
        Ok(match record {
            None => Consumed::Unknown,
            Some(r) if won => Consumed::Fresh(r),
            Some(r) => Consumed::Reused(r),
        })
    }

    pub fn find_refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<RefreshRecord>, StoreError> {
        Ok(refresh::table
            .filter(refresh::token_hash.eq(token_hash))
            .select(RefreshRecord::as_select())
            .first(&mut self.conn()?)
            .optional()?)
    }

    /// Revokes a grant's refresh tokens and returns the `jti`s of the access tokens issued
    /// from its code and refresh tokens, for the deny list.
    pub fn revoke_grant(&self, grant_id: &str, now: i64) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            diesel::update(
                refresh::table
                    .filter(refresh::grant_id.eq(grant_id))
                    .filter(refresh::revoked_at.is_null()),
            )
            .set(refresh::revoked_at.eq(now))
            .execute(conn)?;
            let mut jtis: Vec<Option<String>> = refresh::table
                .filter(refresh::grant_id.eq(grant_id))
                .select(refresh::access_token_jti)
                .load(conn)?;
            jtis.extend(
                codes::table
                    .filter(codes::grant_id.eq(grant_id))
                    .select(codes::access_token_jti)
                    .load::<Option<String>>(conn)?,
            );
            Ok(jtis.into_iter().flatten().collect())
        })
    }

    /// Records a client assertion's `jti`; false when it was seen before (a replay).
    pub fn record_assertion_jti(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        use super::schema::client_assertion_jtis as seen;
        let inserted = diesel::insert_into(seen::table)
            .values((
                seen::client_id.eq(client_id),
                seen::jti.eq(jti),
                seen::expires_at.eq(expires_at),
            ))
            .execute(&mut self.conn()?);
        match inserted {
            Ok(_) => Ok(true),
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => Ok(false),
            Err(e) => Err(StoreError::Query(e)),
        }
    }

    /// Forgets what can no longer matter: expired assertion ids, denied tokens and codes.
    pub fn purge_expired(&self, now: i64) -> Result<(), StoreError> {
        use super::schema::client_assertion_jtis as seen;
        let mut conn = self.conn()?;
        diesel::delete(seen::table.filter(seen::expires_at.lt(now))).execute(&mut conn)?;
        diesel::delete(denied::table.filter(denied::expires_at.lt(now))).execute(&mut conn)?;
        // Keep used codes for a day: a late second use must still be seen as reuse.
        diesel::delete(codes::table.filter(codes::expires_at.lt(now - 86_400)))
            .execute(&mut conn)?;
        diesel::delete(refresh::table.filter(refresh::expires_at.lt(now - 86_400)))
            .execute(&mut conn)?;
        Ok(())
    }

    /// Denies one access token until it expires.
    pub fn deny_access_token(&self, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        deny(&mut conn, jti, expires_at)
    }

    pub fn is_access_token_denied(&self, jti: &str) -> Result<bool, StoreError> {
        let count: i64 = denied::table
            .filter(denied::jti.eq(jti))
            .count()
            .get_result(&mut self.conn()?)?;
        Ok(count > 0)
    }

    /// Records the access token issued alongside a refresh token.
    pub fn set_refresh_access_jti(&self, token_hash: &str, jti: &str) -> Result<(), StoreError> {
        diesel::update(refresh::table.filter(refresh::token_hash.eq(token_hash)))
            .set(refresh::access_token_jti.eq(jti))
            .execute(&mut self.conn()?)?;
        Ok(())
    }
}

fn deny(conn: &mut super::db::AnyConnection, jti: &str, expires_at: i64) -> Result<(), StoreError> {
    let inserted = diesel::insert_into(denied::table)
        .values((denied::jti.eq(jti), denied::expires_at.eq(expires_at)))
        .execute(conn);
    match inserted {
        // Already denied (perhaps concurrently): the same outcome.
        Ok(_)
        | Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(()),
        Err(e) => Err(StoreError::Query(e)),
    }
}
