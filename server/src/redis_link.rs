//! One Redis connection (multiplexed, reconnecting) shared by the deny list and the limiter.

use std::time::Duration;

use redis::aio::ConnectionManager;

/// Connects, failing with a message naming the setting rather than hanging.
pub async fn connect(url: &str) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| format!("setting `redis_url`: {e}"))?;
    tokio::time::timeout(Duration::from_secs(10), client.get_connection_manager())
        .await
        .map_err(|_| "setting `redis_url`: no answer from Redis within 10 s".to_string())?
        .map_err(|e| format!("setting `redis_url`: cannot connect: {e}"))
}
