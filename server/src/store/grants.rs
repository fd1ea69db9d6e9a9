//! Grants, authorization codes, refresh tokens and the access-token deny list.
//!
//! A grant is what one authorization produced: its code, then a family of refresh tokens.
//! Redeeming a code and rotating a refresh token are each one transaction that first takes the
//! grant's row — a conditional UPDATE that succeeds only while the grant is not revoked, and
//! locks the row until commit — then spends the code or token (`… WHERE used_at IS NULL`: of two
//! concurrent uses exactly one wins) and writes the successor. Revoking a grant takes the same
//! row first. So a revocation either sees every token issued from the grant, including one
//! being issued at that moment, or makes that issuance fail (RFC 9700 §4.14.2, RFC 7009).

use diesel::prelude::*;

use super::db::AnyConnection;
use super::schema::{
    authorization_codes as codes, grants, refresh_tokens as refresh,
    revoked_access_tokens as denied,
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
    /// RFC 9449 §10: the thumbprint of the key the token request must prove.
    pub dpop_jkt: Option<String>,
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
    /// RFC 9449 §5: the key a public client's refresh token is bound to.
    pub dpop_jkt: Option<String>,
}

/// The outcome of presenting a code or refresh token.
#[derive(Debug, PartialEq, Eq)]
pub enum Consumed<T> {
    /// First use: the record as it was; its successor is written.
    Fresh(T),
    /// Already used (or revoked): possible theft. Nothing was written.
    Reused(T),
    /// The grant is revoked: nothing was written.
    Revoked,
    Unknown,
}

/// Takes the grant's row for this transaction (until commit), if the grant is not revoked.
fn take_grant(conn: &mut AnyConnection, grant_id: &str) -> Result<bool, StoreError> {
    let taken = diesel::update(
        grants::table
            .filter(grants::id.eq(grant_id))
            .filter(grants::revoked_at.is_null()),
    )
    .set(grants::version.eq(grants::version + 1))
    .execute(conn)?;
    Ok(taken == 1)
}

/// Ends a transaction early, rolled back, with an outcome that is not an error.
enum Abort<T> {
    Outcome(Box<Consumed<T>>),
    Failed(StoreError),
}

impl<T> From<diesel::result::Error> for Abort<T> {
    fn from(e: diesel::result::Error) -> Self {
        Abort::Failed(StoreError::Query(e))
    }
}

impl<T> From<StoreError> for Abort<T> {
    fn from(e: StoreError) -> Self {
        Abort::Failed(e)
    }
}

/// Runs `work` in a transaction; an `Abort::Outcome` rolls it back and is the outcome.
fn in_transaction<T>(
    conn: &mut AnyConnection,
    work: impl FnOnce(&mut AnyConnection) -> Result<Consumed<T>, Abort<T>>,
) -> Result<Consumed<T>, StoreError> {
    match conn.transaction::<_, Abort<T>, _>(work) {
        Ok(outcome) => Ok(outcome),
        Err(Abort::Outcome(outcome)) => Ok(*outcome),
        Err(Abort::Failed(e)) => Err(e),
    }
}

impl Store {
    /// Stores a new code and the grant it starts.
    pub fn insert_code(&self, record: &CodeRecord, now: i64) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            diesel::insert_into(grants::table)
                .values((
                    grants::id.eq(&record.grant_id),
                    grants::client_id.eq(&record.client_id),
                    grants::user_id.eq(&record.user_id),
                    grants::created_at.eq(now),
                    grants::version.eq(0),
                ))
                .execute(conn)?;
            diesel::insert_into(codes::table)
                .values(record)
                .execute(conn)?;
            Ok(())
        })
    }

    pub fn find_code(&self, code_hash: &str) -> Result<Option<CodeRecord>, StoreError> {
        Ok(codes::table
            .filter(codes::code_hash.eq(code_hash))
            .select(CodeRecord::as_select())
            .first(&mut self.conn()?)
            .optional()?)
    }

    /// Redeems a code (RFC 6749 §4.1.3) in one transaction: takes its grant unless revoked,
    /// spends the code recording the access token issued from it, and stores the first refresh
    /// token of the family, if any. `grant_id` is the code's, as read before.
    pub fn redeem_code(
        &self,
        code_hash: &str,
        grant_id: &str,
        now: i64,
        access_token_jti: &str,
        refresh_token: Option<&RefreshRecord>,
    ) -> Result<Consumed<CodeRecord>, StoreError> {
        let mut conn = self.conn()?;
        in_transaction(&mut conn, |conn| {
            if !take_grant(conn, grant_id)? {
                return Err(Abort::Outcome(Box::new(Consumed::Revoked)));
            }
            let won = diesel::update(
                codes::table
                    .filter(codes::code_hash.eq(code_hash))
                    .filter(codes::used_at.is_null()),
            )
            .set((
                codes::used_at.eq(now),
                codes::access_token_jti.eq(access_token_jti),
            ))
            .execute(conn)?
                == 1;
            let record: Option<CodeRecord> = codes::table
                .filter(codes::code_hash.eq(code_hash))
                .select(CodeRecord::as_select())
                .first(conn)
                .optional()?;
            match record {
                None => Err(Abort::Outcome(Box::new(Consumed::Unknown))),
                Some(r) if !won => Err(Abort::Outcome(Box::new(Consumed::Reused(r)))),
                Some(r) => {
                    if let Some(first) = refresh_token {
                        diesel::insert_into(refresh::table)
                            .values(first)
                            .execute(conn)?;
                    }
                    Ok(Consumed::Fresh(r))
                }
            }
        })
    }

    /// Rotates a refresh token (RFC 6749 §6, RFC 9700 §4.14.2) in one transaction: takes its
    /// grant unless revoked, spends the token, and stores its successor. `grant_id` is the
    /// token's, as read before.
    pub fn rotate_refresh_token(
        &self,
        token_hash: &str,
        grant_id: &str,
        now: i64,
        successor: Option<&RefreshRecord>,
    ) -> Result<Consumed<RefreshRecord>, StoreError> {
        let mut conn = self.conn()?;
        in_transaction(&mut conn, |conn| {
            if !take_grant(conn, grant_id)? {
                return Err(Abort::Outcome(Box::new(Consumed::Revoked)));
            }
            let won = diesel::update(
                refresh::table
                    .filter(refresh::token_hash.eq(token_hash))
                    .filter(refresh::used_at.is_null())
                    .filter(refresh::revoked_at.is_null()),
            )
            .set(refresh::used_at.eq(now))
            .execute(conn)?
                == 1;
            let record: Option<RefreshRecord> = refresh::table
                .filter(refresh::token_hash.eq(token_hash))
                .select(RefreshRecord::as_select())
                .first(conn)
                .optional()?;
            match record {
                None => Err(Abort::Outcome(Box::new(Consumed::Unknown))),
                Some(r) if !won => Err(Abort::Outcome(Box::new(Consumed::Reused(r)))),
                Some(r) => {
                    if let Some(next) = successor {
                        diesel::insert_into(refresh::table)
                            .values(next)
                            .execute(conn)?;
                    }
                    Ok(Consumed::Fresh(r))
                }
            }
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

    /// Revokes a grant: marks it revoked, then its refresh tokens, and returns the `jti`s of
    /// the access tokens issued from its code and refresh tokens, for the deny list. The grant's
    /// row is taken first, as every issuance does: a token being issued at this moment is
    /// either committed before (and its `jti` is returned here) or refused after.
    pub fn revoke_grant(&self, grant_id: &str, now: i64) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            diesel::update(
                grants::table
                    .filter(grants::id.eq(grant_id))
                    .filter(grants::revoked_at.is_null()),
            )
            .set((
                grants::revoked_at.eq(now),
                grants::version.eq(grants::version + 1),
            ))
            .execute(conn)?;
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
            {
                use super::schema::device_authorizations as device;
                jtis.extend(
                    device::table
                        .filter(device::grant_id.eq(grant_id))
                        .select(device::access_token_jti)
                        .load::<Option<String>>(conn)?,
                );
            }
            {
                use super::schema::token_exchanges as exchanges;
                jtis.extend(
                    exchanges::table
                        .filter(exchanges::grant_id.eq(grant_id))
                        .select(exchanges::jti)
                        .load::<String>(conn)?
                        .into_iter()
                        .map(Some),
                );
            }
            Ok(jtis.into_iter().flatten().collect())
        })
    }

    /// The grants of `user_id` to `client_id` that are not revoked.
    pub fn active_grants(&self, user_id: &str, client_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(grants::table
            .filter(grants::user_id.eq(user_id))
            .filter(grants::client_id.eq(client_id))
            .filter(grants::revoked_at.is_null())
            .select(grants::id)
            .load(&mut self.conn()?)?)
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

    /// Records a DPoP proof (by the hash of its key and `jti`); false when it was seen before.
    pub fn record_dpop_proof(&self, jti_hash: &str, expires_at: i64) -> Result<bool, StoreError> {
        use super::schema::dpop_proofs as seen;
        let inserted = diesel::insert_into(seen::table)
            .values((seen::jti_hash.eq(jti_hash), seen::expires_at.eq(expires_at)))
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
        {
            use super::schema::{
                device_authorizations as device, dpop_proofs, pushed_requests, token_exchanges,
            };
            diesel::delete(dpop_proofs::table.filter(dpop_proofs::expires_at.lt(now)))
                .execute(&mut conn)?;
            diesel::delete(token_exchanges::table.filter(token_exchanges::expires_at.lt(now)))
                .execute(&mut conn)?;
            diesel::delete(pushed_requests::table.filter(pushed_requests::expires_at.lt(now)))
                .execute(&mut conn)?;
            // Kept a day past expiry, like codes: a late poll still learns what happened.
            diesel::delete(device::table.filter(device::expires_at.lt(now - 86_400)))
                .execute(&mut conn)?;
        }
        diesel::delete(seen::table.filter(seen::expires_at.lt(now))).execute(&mut conn)?;
        diesel::delete(denied::table.filter(denied::expires_at.lt(now))).execute(&mut conn)?;
        // Keep used codes for a day: a late second use must still be seen as reuse.
        diesel::delete(codes::table.filter(codes::expires_at.lt(now - 86_400)))
            .execute(&mut conn)?;
        diesel::delete(refresh::table.filter(refresh::expires_at.lt(now - 86_400)))
            .execute(&mut conn)?;
        // A grant with neither code nor refresh token left can never be presented again, unless
        // a device authorization still refers to it: approved there, it waits for the poll.
        diesel::sql_query(
            "DELETE FROM grants \
             WHERE NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.grant_id = grants.id) \
             AND NOT EXISTS (SELECT 1 FROM authorization_codes c WHERE c.grant_id = grants.id) \
             AND NOT EXISTS (SELECT 1 FROM device_authorizations d WHERE d.grant_id = grants.id) \
             AND NOT EXISTS (SELECT 1 FROM token_exchanges x WHERE x.grant_id = grants.id)",
        )
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
