//! `GET /.well-known/openid-configuration` and `/.well-known/oauth-authorization-server`.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use bytes::Bytes;

/// The metadata document, serialised once at start.
pub struct Discovery(pub Bytes);

pub async fn discovery(document: web::Data<Discovery>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .content_type("application/json")
        .body(document.0.clone())
}
