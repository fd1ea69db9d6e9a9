//! `POST /device_authorization` (RFC 8628 §3.1–3.2).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::App;
use crate::error::OAuthError;
use crate::oauth::device_authorization;

pub async fn device_authorization(
    request: HttpRequest,
    body: web::Bytes,
    app: web::Data<App>,
) -> Result<HttpResponse, OAuthError> {
    let (params, authorization) = super::form::parse(&request, &body)?;
    let address = super::client_address(&request, &app);
    let started = device_authorization::start(&app, authorization, &params, address).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(started))
}
