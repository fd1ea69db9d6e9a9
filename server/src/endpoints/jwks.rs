//! `GET /.well-known/jwks.json` (RFC 7517 §5), served from the pre-serialised keyring.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::App;

pub async fn jwks(request: HttpRequest, app: web::Data<App>) -> HttpResponse {
    let keyring = app.keyring().current();
    let cache_control = format!("public, max-age={}", app.settings().jwks_max_age);
    let matches = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == keyring.etag() || t == "*")
        });
    let mut response = if matches {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, keyring.etag()))
        .insert_header((header::CACHE_CONTROL, cache_control));
    if matches {
        response.finish()
    } else {
        response
            .content_type("application/jwk-set+json")
            .body(keyring.jwks().clone())
    }
}
