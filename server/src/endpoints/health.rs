//! Liveness and readiness.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::app::App;

/// `GET /healthz`: the process answers. It touches no dependency, so a database or Redis
/// outage never gets a healthy process restarted.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: whether this instance should receive traffic. 503 while shutting down,
/// without a signing key, or without its database (almost every request needs it); each check
/// named in `checks` and the first failure as `reason`. Redis down is `200` with status
/// `degraded` and `checks.redis` `unavailable`: without it machine tokens, JWKS and discovery
/// still work, and Redis is shared by every instance, so failing readiness would take them all
/// out of the load balancer at once for a partial outage. Both dependencies are asked at once,
/// each within its deadline.
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
    } else if !keys {
        Some("no signing key")
    } else {
        None
    };
    match reason {
        None if matches!(redis, Some(Err(_))) => HttpResponse::Ok()
            .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
            .json(json!({"status": "degraded", "reason": "redis unreachable", "checks": checks})),
        None => HttpResponse::Ok().json(json!({"status": "ready", "checks": checks})),
        Some(reason) => HttpResponse::ServiceUnavailable()
            .insert_header((actix_web::http::header::RETRY_AFTER, "1"))
            .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
            .json(json!({"status": "unavailable", "reason": reason, "checks": checks})),
    }
}
