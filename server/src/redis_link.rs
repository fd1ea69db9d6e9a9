//! One Redis connection shared by browser sessions, the deny list and the abuse limits.
//!
//! Every command has a deadline. A connection that errs or times out is dropped and a new one
//! is made by the next call, so a Redis restart is survived without a restart of ours. While
//! Redis is unreachable, calls fail at once for a short back-off instead of each waiting for a
//! connection attempt (redis-rs's `ConnectionManager` can wait without a deadline while it
//! reconnects; this link never does).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError};

/// How long calls fail fast after a failed connection attempt.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);

/// Redis could not answer in time, or at all.
#[derive(Debug, Clone)]
pub struct RedisUnavailable(pub String);

impl std::fmt::Display for RedisUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "redis unavailable: {}", self.0)
    }
}

impl std::error::Error for RedisUnavailable {}

#[derive(Clone)]
pub struct RedisLink {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    timeout: Duration,
    connection: ArcSwapOption<MultiplexedConnection>,
    /// Serialises connection attempts: one attempt at a time, the others wait for its result.
    connecting: tokio::sync::Mutex<()>,
    /// Milliseconds since `epoch` before which no new attempt is made.
    retry_at: AtomicU64,
    epoch: Instant,
}

impl RedisLink {
    /// Parses the URL and tries to connect once; a Redis that is down at start is reported
    /// (`Err` carries the link too, so the caller may start anyway and recover later).
    pub async fn connect(url: &str, timeout: Duration) -> Result<RedisLink, String> {
        let client = redis::Client::open(url).map_err(|e| format!("setting `redis_url`: {e}"))?;
        let link = RedisLink {
            inner: Arc::new(Inner {
                client,
                timeout,
                connection: ArcSwapOption::empty(),
                connecting: tokio::sync::Mutex::new(()),
                retry_at: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        };
        if let Err(e) = link.ping().await {
            tracing::warn!(error = %e, "Redis is not reachable at start; retrying on use");
        }
        Ok(link)
    }

    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Runs one operation on the connection, within the deadline.
    pub async fn run<T, F, Fut>(&self, operation: F) -> Result<T, RedisUnavailable>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let started = Instant::now();
        let connection = self.connection().await?;
        let left = self.inner.timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, operation((*connection).clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || e.is_unrecoverable_error()
                {
                    self.forget(&connection);
                }
                Err(RedisUnavailable(e.to_string()))
            }
            Err(_) => {
                // No answer in time: the connection may be half-dead (a network partition
                // keeps a TCP connection open); the next call starts afresh.
                self.forget(&connection);
                Err(RedisUnavailable(format!(
                    "no answer within {} ms",
                    self.inner.timeout.as_millis()
                )))
            }
        }
    }

    /// A round trip (readiness).
    pub async fn ping(&self) -> Result<(), RedisUnavailable> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await })
            .await
    }

    fn forget(&self, broken: &Arc<MultiplexedConnection>) {
        // Only if it is still the current one: a newer connection stays.
        let _ = self
            .inner
            .connection
            .compare_and_swap(broken, None::<Arc<MultiplexedConnection>>);
    }

    fn millis_since_epoch(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn connection(&self) -> Result<Arc<MultiplexedConnection>, RedisUnavailable> {
        if let Some(connection) = self.inner.connection.load_full() {
            return Ok(connection);
        }
        let timeout = self.inner.timeout;
        let backing_off =
            || self.millis_since_epoch() < self.inner.retry_at.load(Ordering::Relaxed);
        if backing_off() {
            return Err(RedisUnavailable("reconnecting".into()));
        }
        let Ok(_attempt) = tokio::time::timeout(timeout, self.inner.connecting.lock()).await else {
            return Err(RedisUnavailable("reconnecting".into()));
        };
        // Another caller may have connected, or failed, while this one waited.
        if let Some(connection) = self.inner.connection.load_full() {
            return Ok(connection);
        }
        if backing_off() {
            return Err(RedisUnavailable("reconnecting".into()));
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        let attempt = tokio::time::timeout(
            timeout,
            self.inner
                .client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await;
        match attempt {
            Ok(Ok(connection)) => {
                let connection = Arc::new(connection);
                self.inner.connection.store(Some(connection.clone()));
                Ok(connection)
            }
            failed => {
                let backoff = u64::try_from(RECONNECT_BACKOFF.as_millis()).unwrap_or(250);
                self.inner
                    .retry_at
                    .store(self.millis_since_epoch() + backoff, Ordering::Relaxed);
                let reason = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no connection within {} ms", timeout.as_millis()),
                };
                Err(RedisUnavailable(reason))
            }
        }
    }
}
