//! `POST /introspect` (RFC 7662).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::form;
use crate::app::App;
use crate::error::OAuthError;
use crate::oauth::introspection;

pub async fn introspect(
    request: HttpRequest,
    body: web::Bytes,
    app: web::Data<App>,
) -> Result<HttpResponse, OAuthError> {
    let (params, authorization) = form::parse(&request, &body)?;
    let answer = introspection::introspect(
        &app,
        authorization,
        &params,
        super::client_address(&request, &app),
    )
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(answer))
}
