//! Access tokens revoked before they expire (RFC 7009 §2 for JWTs: denied by `jti`). In Redis
//! when configured (shared, expiring by itself), in the database otherwise.

use crate::store::{Store, StoreError};

#[derive(Clone)]
pub enum DenyList {
    Database(Store),
    Redis(crate::redis_link::RedisLink),
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
            DenyList::Redis(link) => {
                let seconds = u64::try_from((expires_at - now).max(1)).unwrap_or(1);
                let key = format!("{PREFIX}{jti}");
                link.run(|mut conn| async move {
                    redis::cmd("SET")
                        .arg(key)
                        .arg(1)
                        .arg("EX")
                        .arg(seconds)
                        .query_async::<()>(&mut conn)
                        .await
                })
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))
            }
        }
    }

    pub async fn is_denied(&self, jti: &str) -> Result<bool, StoreError> {
        match self {
            DenyList::Database(store) => {
                let jti = jti.to_string();
                store.run(move |s| s.is_access_token_denied(&jti)).await
            }
            DenyList::Redis(link) => {
                let key = format!("{PREFIX}{jti}");
                link.run(|mut conn| async move {
                    redis::cmd("EXISTS")
                        .arg(key)
                        .query_async::<bool>(&mut conn)
                        .await
                })
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))
            }
        }
    }
}
