//! Liveness and readiness.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::app::App;

/// `GET /healthz`: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: the database answers and a signing key is loaded.
pub async fn readyz(app: web::Data<App>) -> HttpResponse {
    let database = app.store().run(|store| store.ping()).await;
    let keys = app
        .keyring()
        .current()
        .signing_key(app.settings().access_token_signing_alg)
        .is_some();
    match database {
        Ok(()) if keys => HttpResponse::Ok().json(json!({"status": "ready"})),
        Ok(()) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "reason": "no signing key"})),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable()
                .json(json!({"status": "unavailable", "reason": "database unreachable"}))
        }
    }
}
