//! Device authorizations (RFC 8628 §3): what a device waits for while its person decides.

use diesel::prelude::*;

use super::grants::{Consumed, RefreshRecord};
use super::schema::{device_authorizations as device, grants, refresh_tokens};
use super::{conflict_or_query, Store, StoreError};

pub const PENDING: &str = "pending";
pub const APPROVED: &str = "approved";
pub const DENIED: &str = "denied";
/// Approved, and its tokens issued: a device code works once.
pub const CONSUMED: &str = "consumed";

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable, Selectable)]
#[diesel(table_name = device)]
pub struct DeviceRecord {
    pub device_code_hash: String,
    /// Normalised: the eight letters without the dash, upper case.
    pub user_code: String,
    pub client_id: String,
    pub scope: String,
    pub audience: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub interval_secs: i64,
    pub last_polled_at: Option<i64>,
    pub status: String,
    pub user_id: Option<String>,
    pub auth_time: Option<i64>,
    pub grant_id: Option<String>,
    pub access_token_jti: Option<String>,
    pub dpop_jkt: Option<String>,
}

/// What a poll of the token endpoint finds (RFC 8628 §3.5).
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    Unknown,
    Expired,
    Denied,
    /// Its tokens were issued already.
    Used,
    Pending,
    /// Polled before `interval` passed: the interval has grown by `step` seconds.
    SlowDown,
    Approved(Box<DeviceRecord>),
}

/// The person's decision on the device page.
pub enum Decision<'a> {
    Approve {
        user_id: &'a str,
        auth_time: i64,
        grant_id: &'a str,
    },
    Deny,
}

impl Store {
    /// Stores a new device authorization; `Conflict` when its user code is taken (the caller
    /// draws another).
    pub fn insert_device_authorization(&self, record: &DeviceRecord) -> Result<(), StoreError> {
        diesel::insert_into(device::table)
            .values(record)
            .execute(&mut self.conn()?)
            .map_err(|e| conflict_or_query(e, "user code".into()))?;
        Ok(())
    }

    pub fn find_device_by_user_code(
        &self,
        user_code: &str,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        Ok(device::table
            .filter(device::user_code.eq(user_code))
            .select(DeviceRecord::as_select())
            .first(&mut self.conn()?)
            .optional()?)
    }

    /// Records the person's decision on a pending, unexpired authorization; false when it was
    /// not pending any more (decided elsewhere, expired). Approval starts the grant.
    pub fn decide_device(
        &self,
        user_code: &str,
        client_id: &str,
        decision: Decision<'_>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            let pending = device::table
                .filter(device::user_code.eq(user_code))
                .filter(device::client_id.eq(client_id))
                .filter(device::status.eq(PENDING))
                .filter(device::expires_at.gt(now));
            let decided = match decision {
                Decision::Approve {
                    user_id,
                    auth_time,
                    grant_id,
                } => {
                    let decided = diesel::update(pending)
                        .set((
                            device::status.eq(APPROVED),
                            device::user_id.eq(user_id),
                            device::auth_time.eq(auth_time),
                            device::grant_id.eq(grant_id),
                        ))
                        .execute(conn)?;
                    if decided == 1 {
                        diesel::insert_into(grants::table)
                            .values((
                                grants::id.eq(grant_id),
                                grants::client_id.eq(client_id),
                                grants::user_id.eq(user_id),
                                grants::created_at.eq(now),
                                grants::version.eq(0),
                            ))
                            .execute(conn)?;
                    }
                    decided
                }
                Decision::Deny => diesel::update(pending)
                    .set(device::status.eq(DENIED))
                    .execute(conn)?,
            };
            Ok::<_, StoreError>(decided == 1)
        })
    }

    /// One poll by `client_id` (RFC 8628 §3.4–3.5), recorded for the interval rule.
    pub fn poll_device(
        &self,
        device_code_hash: &str,
        client_id: &str,
        now: i64,
        step: i64,
    ) -> Result<Poll, StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|conn| {
            let record: Option<DeviceRecord> = device::table
                .filter(device::device_code_hash.eq(device_code_hash))
                .select(DeviceRecord::as_select())
                .first(conn)
                .optional()?;
            let Some(record) = record.filter(|r| r.client_id == client_id) else {
                return Ok(Poll::Unknown);
            };
            if record.status == CONSUMED {
                return Ok(Poll::Used);
            }
            if now >= record.expires_at {
                return Ok(Poll::Expired);
            }
            let too_soon = record
                .last_polled_at
                .is_some_and(|last| now - last < record.interval_secs);
            let interval = if too_soon {
                record.interval_secs + step
            } else {
                record.interval_secs
            };
            diesel::update(device::table.filter(device::device_code_hash.eq(device_code_hash)))
                .set((
                    device::last_polled_at.eq(now),
                    device::interval_secs.eq(interval),
                ))
                .execute(conn)?;
            Ok(match record.status.as_str() {
                DENIED => Poll::Denied,
                _ if too_soon => Poll::SlowDown,
                APPROVED => Poll::Approved(Box::new(record)),
                _ => Poll::Pending,
            })
        })
    }

    /// Issues an approved authorization's tokens once (RFC 8628 §3.5), in one transaction as a
    /// code redemption: the grant is taken unless revoked, the authorization spent, the first
    /// refresh token of the family stored.
    pub fn redeem_device(
        &self,
        device_code_hash: &str,
        grant_id: &str,
        access_token_jti: &str,
        refresh_token: Option<&RefreshRecord>,
    ) -> Result<Consumed<DeviceRecord>, StoreError> {
        let mut conn = self.conn()?;
        let outcome = conn.transaction::<_, StoreError, _>(|conn| {
            let taken = diesel::update(
                grants::table
                    .filter(grants::id.eq(grant_id))
                    .filter(grants::revoked_at.is_null()),
            )
            .set(grants::version.eq(grants::version + 1))
            .execute(conn)?;
            if taken != 1 {
                return Ok(Consumed::Revoked);
            }
            let won = diesel::update(
                device::table
                    .filter(device::device_code_hash.eq(device_code_hash))
                    .filter(device::status.eq(APPROVED)),
            )
            .set((
                device::status.eq(CONSUMED),
                device::access_token_jti.eq(access_token_jti),
            ))
            .execute(conn)?
                == 1;
            let record: Option<DeviceRecord> = device::table
                .filter(device::device_code_hash.eq(device_code_hash))
                .select(DeviceRecord::as_select())
                .first(conn)
                .optional()?;
            Ok(match record {
                None => Consumed::Unknown,
                Some(r) if !won => Consumed::Reused(r),
                Some(r) => {
                    if let Some(first) = refresh_token {
                        diesel::insert_into(refresh_tokens::table)
                            .values(first)
                            .execute(conn)?;
                    }
                    Consumed::Fresh(r)
                }
            })
        })?;
        Ok(outcome)
    }
}
