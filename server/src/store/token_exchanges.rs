//! Token exchange (RFC 8693): which grant a person's access token came from, and the tokens
//! exchanged from it, so that revoking the grant reaches them too.

use diesel::prelude::*;

use super::schema::{
    authorization_codes as codes, device_authorizations as device, grants,
    refresh_tokens as refresh, token_exchanges as exchanges,
};
use super::{Store, StoreError};

/// The live grant behind an access token, and what the person granted in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantOfToken {
    pub grant_id: String,
    pub user_id: String,
    /// The grant's scope (its consent), which bounds every exchange from it.
    pub scope: String,
}

/// An access token issued by exchange.
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = exchanges)]
pub struct ExchangeRecord {
    pub jti: String,
    pub grant_id: String,
    pub user_id: String,
    pub scope: String,
    pub expires_at: i64,
}

impl Store {
    /// The grant an access token was issued from, by the token's `jti`: from a code, a
    /// refresh, a device poll or an earlier exchange. `None` when the token came from no grant
    /// (client credentials) or its grant was revoked or is gone.
    pub fn find_grant_of_access_token(
        &self,
        jti: &str,
    ) -> Result<Option<GrantOfToken>, StoreError> {
        let mut conn = self.conn()?;
        let conn = &mut conn;
        let found: Option<(String, String, String)> = exchanges::table
            .filter(exchanges::jti.eq(jti))
            .select((exchanges::grant_id, exchanges::user_id, exchanges::scope))
            .first(conn)
            .optional()?;
        let found = match found {
            Some(found) => Some(found),
            None => refresh::table
                .filter(refresh::access_token_jti.eq(jti))
                .select((refresh::grant_id, refresh::user_id, refresh::scope))
                .first(conn)
                .optional()?,
        };
        let found = match found {
            Some(found) => Some(found),
            None => codes::table
                .filter(codes::access_token_jti.eq(jti))
                .select((codes::grant_id, codes::user_id, codes::scope))
                .first(conn)
                .optional()?,
        };
        let found = match found {
            Some(found) => Some(found),
            None => device::table
                .filter(device::access_token_jti.eq(jti))
                .select((device::grant_id, device::user_id, device::scope))
                .first::<(Option<String>, Option<String>, String)>(conn)
                .optional()?
                .and_then(|(grant, user, scope)| Some((grant?, user?, scope))),
        };
        let Some((grant_id, user_id, scope)) = found else {
            return Ok(None);
        };
        let live: i64 = grants::table
            .filter(grants::id.eq(&grant_id))
            .filter(grants::revoked_at.is_null())
            .count()
            .get_result(conn)?;
        Ok((live > 0).then_some(GrantOfToken {
            grant_id,
            user_id,
            scope,
        }))
    }

    /// Records an exchanged token under its grant, taking the grant's row as every issuance
    /// does: false (nothing recorded) when the grant was revoked meanwhile.
    pub fn record_token_exchange(&self, record: &ExchangeRecord) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            let taken = diesel::update(
                grants::table
                    .filter(grants::id.eq(&record.grant_id))
                    .filter(grants::revoked_at.is_null()),
            )
            .set(grants::version.eq(grants::version + 1))
            .execute(conn)?;
            if taken == 0 {
                return Ok(false);
            }
            diesel::insert_into(exchanges::table)
                .values(record)
                .execute(conn)?;
            Ok(true)
        })
    }
}
