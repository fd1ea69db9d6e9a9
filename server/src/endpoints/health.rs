//! Liveness and readiness.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::app::App;

/// `GET /healthz`: the process answers. It touches no dependency, so a database or Redis
/// outage never gets a healthy process restarted.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when this instance can serve: not shutting down, a signing key loaded,
/// the database and Redis (when configured) answering. Otherwise 503, naming each check and
/// the first that failed as `reason`. Both dependencies are asked at once, each within its
/// deadline, so the answer never takes longer than the slower deadline.
pub async fn readyz(app: web::Data<App>) -> HttpResponse {
    let database = async { app.store().run(|store| store.ping()).await };
    let redis = async {
        match app.redis() {
            Some(link) => Some(link.ping().await),
            None => None,
        }
    };
    let (database, redis) = tokio::join!(database, redis);
    let keys = app
        .keyring()
        .current()
        .signing_key(app.settings().access_token_signing_alg)
        .is_some();
    let shutting_down = app.is_shutting_down();
    if let Err(e) = &database {
        tracing::warn!(error = %e, "readiness: database unreachable");
    }
    if let Some(Err(e)) = &redis {
        tracing::warn!(error = %e, "readiness: redis unreachable");
    }
    let state = |ok: bool| if ok { "ok" } else { "unavailable" };
    let checks = json!({
        "database": state(database.is_ok()),
        "redis": match &redis {
            Some(result) => state(result.is_ok()),
            None => "not configured",
        },
        "signing_keys": if keys { "ok" } else { "missing" },
    });
    let reason = if shutting_down {
        Some("shutting down")
    } else if database.is_err() {
        Some("database unreachable")
    } else if matches!(redis, Some(Err(_))) {
        Some("redis unreachable")
    } else if !keys {
        Some("no signing key")
    } else {
        None
    };
    match reason {
        None => HttpResponse::Ok().json(json!({"status": "ready", "checks": checks})),
        Some(reason) => HttpResponse::ServiceUnavailable()
            .insert_header((actix_web::http::header::RETRY_AFTER, "1"))
            .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
            .json(json!({"status": "unavailable", "reason": reason, "checks": checks})),
    }
}
