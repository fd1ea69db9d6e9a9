//! Access tokens revoked before they expire (RFC 7009 §2 for JWTs: denied by `jti`). In Redis
//! when configured (shared, expiring by itself), in the database otherwise.

use crate::store::{Store, StoreError};

#[derive(Clone)]
pub enum DenyList {
    Database(Store),
    Redis(redis::aio::ConnectionManager),
}

const PREFIX: &str = "portcullis:denied:";

impl DenyList {
    /// Denies `jti` until `expires_at` (after which the token is dead anyway).
    pub async fn deny(&self, jti: &str, expires_at: i64, now: i64) -> Result<(), StoreError> {
        match self {
            DenyList::Database(store) => {
                let jti = jti.to_string();
                store
                    .run(move |s| s.deny_access_token(&jti, expires_at))
                    .await
            }
            DenyList::Redis(manager) => {
                let seconds = u64::try_from((expires_at - now).max(1)).unwrap_or(1);
                let mut conn = manager.clone();
                redis::cmd("SET")
                    .arg(format!("{PREFIX}{jti}"))
                    .arg(1)
                    .arg("EX")
                    .arg(seconds)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("redis: {e}")))
            }
        }
    }

    pub async fn is_denied(&self, jti: &str) -> Result<bool, StoreError> {
        match self {
            DenyList::Database(store) => {
                let jti = jti.to_string();
                store.run(move |s| s.is_access_token_denied(&jti)).await
            }
            DenyList::Redis(manager) => {
                let mut conn = manager.clone();
                redis::cmd("EXISTS")
                    .arg(format!("{PREFIX}{jti}"))
                    .query_async::<bool>(&mut conn)
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("redis: {e}")))
            }
        }
    }
}
