//! `GET /metrics` in the Prometheus text format.

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::HttpResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often recorded histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the process-wide recorder once (several apps in one test process share it), with
/// the upkeep thread the exporter needs: histogram samples are queued until upkeep or a scrape
/// folds them into buckets, so without it an unscraped server's memory grows with every request.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    ],
                )
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    let upkeep = handle.clone();
                    let spawned = std::thread::Builder::new()
                        .name("metrics-upkeep".into())
                        .spawn(move || loop {
                            std::thread::sleep(UPKEEP_INTERVAL);
                            upkeep.run_upkeep();
                        });
                    if let Err(e) = spawned {
                        tracing::warn!(error = %e, "metrics upkeep thread not started");
                    }
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// `GET /metrics`. With `metrics_token` set, only for `Authorization: Bearer <token>`
/// (compared in constant time); 401 otherwise.
pub async fn metrics(
    request: actix_web::HttpRequest,
    app: actix_web::web::Data<crate::app::App>,
) -> HttpResponse {
    if let Some(expected) = app.settings().metrics_token.as_deref() {
        let presented = request
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let matches: bool =
            subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), expected.as_bytes()).into();
        if !matches {
            return HttpResponse::Unauthorized()
                .insert_header((
                    actix_web::http::header::WWW_AUTHENTICATE,
                    "Bearer realm=\"portcullis metrics\"",
                ))
                .finish();
        }
    }
    // Signing-key age, set at scrape time from the keyring.
    let now = app.now();
    for record in &app.keyring().current().records {
        if record.state == crate::jose::keyring::ACTIVE {
            let age = now - record.activated_at.unwrap_or(record.created_at);
            metrics::gauge!("portcullis_signing_key_age_seconds", "alg" => record.alg.clone())
                .set(age as f64);
        }
    }
    let body = install().map(|h| h.render()).unwrap_or_default();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}
