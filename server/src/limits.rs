//! Abuse limits: fixed-window counters, in Redis when configured (shared by every instance),
//! in this process otherwise.

use std::sync::Arc;

use dashmap::DashMap;

#[derive(Clone)]
pub enum Limiter {
    Memory(Arc<Counters>),
    Redis(crate::redis_link::RedisLink),
}

/// In-process counters: key → (window start, count).
#[derive(Default)]
pub struct Counters {
    map: DashMap<String, (i64, u64)>,
    /// The window in which old keys were last swept out.
    swept: std::sync::atomic::AtomicI64,
}

/// A limit: at most `max` events per `window` seconds.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max: u64,
    pub window: u64,
}

impl Limiter {
    fn window_of(limit: Limit, now: i64) -> (i64, u64) {
        let window = i64::try_from(limit.window.max(1)).unwrap_or(i64::MAX);
        let start = now - now.rem_euclid(window);
        let retry_after = u64::try_from(start + window - now).unwrap_or(1).max(1);
        (start, retry_after)
    }

    /// Adds `amount` (0 only reads) to the counter of `key`; `Err(retry_after)` when the
    /// count is over the limit. A limiter that cannot be reached lets the request through.
    pub async fn add(&self, key: &str, amount: u64, limit: Limit, now: i64) -> Result<u64, u64> {
        let (start, retry_after) = Self::window_of(limit, now);
        let count =
            match self {
                // Reading only: no entry created, no write lock, no key copied.
                Limiter::Memory(counters) if amount == 0 => counters
                    .map
                    .get(key)
                    .map_or(0, |entry| if entry.0 == start { entry.1 } else { 0 }),
                Limiter::Memory(counters) => {
                    let map = &counters.map;
                    let mut entry = map.entry(key.to_string()).or_insert((start, 0));
                    if entry.0 != start {
                        *entry = (start, 0);
                    }
                    entry.1 += amount;
                    let count = entry.1;
                    drop(entry);
                    // Bound memory: past a size, forget keys of past windows — at most once per
                    // window, so a map full of current keys is not swept on every request.
                    if map.len() > 100_000
                        && counters
                            .swept
                            .swap(start, std::sync::atomic::Ordering::Relaxed)
                            != start
                    {
                        map.retain(|_, (s, _)| *s == start);
                    }
                    count
                }
                Limiter::Redis(link) => {
                    let redis_key = format!("portcullis:limit:{key}:{start}");
                    let expire = limit.window.max(1) + 1;
                    let result = link
                        .run(|mut conn| async move {
                            if amount == 0 {
                                redis::cmd("GET")
                                    .arg(&redis_key)
                                    .query_async::<Option<u64>>(&mut conn)
                                    .await
                                    .map(Option::unwrap_or_default)
                            } else {
                                redis::pipe()
                                    .cmd("INCRBY")
                                    .arg(&redis_key)
                                    .arg(amount)
                                    .cmd("EXPIRE")
                                    .arg(&redis_key)
                                    .arg(expire)
                                    .ignore()
                                    .query_async::<(u64,)>(&mut conn)
                                    .await
                                    .map(|(count,)| count)
                            }
                        })
                        .await;
                    match result {
                        Ok(count) => count,
                        Err(e) => {
                            // A budget, not a security check: better served than refused.
                            tracing::warn!(error = %e, "rate limiter unavailable; allowing");
                            0
                        }
                    }
                }
            };
        if count > limit.max {
            Err(retry_after)
        } else {
            Ok(count)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_per_window_and_says_when_to_retry() {
        let limiter = Limiter::Memory(Arc::default());
        let limit = Limit { max: 2, window: 60 };
        assert_eq!(limiter.add("k", 1, limit, 120).await, Ok(1));
        assert_eq!(limiter.add("k", 1, limit, 130).await, Ok(2));
        assert_eq!(limiter.add("k", 1, limit, 150).await, Err(30));
        assert_eq!(limiter.add("other", 1, limit, 150).await, Ok(1));
        assert_eq!(
            limiter.add("k", 1, limit, 180).await,
            Ok(1),
            "a new window starts over"
        );
    }

    #[tokio::test]
    async fn adding_nothing_reads_the_count_without_creating_or_changing_it() {
        let counters = Arc::<Counters>::default();
        let limiter = Limiter::Memory(counters.clone());
        let limit = Limit { max: 1, window: 60 };
        assert_eq!(limiter.add("k", 0, limit, 120).await, Ok(0));
        assert!(counters.map.is_empty());
        assert_eq!(limiter.add("k", 1, limit, 120).await, Ok(1));
        assert_eq!(limiter.add("k", 1, limit, 121).await, Err(59));
        assert_eq!(limiter.add("k", 0, limit, 122).await, Err(58), "still over");
        assert_eq!(limiter.add("k", 0, limit, 180).await, Ok(0), "a new window");
    }
}
