//! `POST /par` (RFC 9126 §2).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::App;
use crate::error::OAuthError;
use crate::oauth::par;

pub async fn par(
    request: HttpRequest,
    body: web::Bytes,
    app: web::Data<App>,
) -> Result<HttpResponse, OAuthError> {
    let (params, authorization) = super::form::parse(&request, &body)?;
    let address = super::client_address(&request, &app);
    let pushed = par::push(&app, authorization, &params, address).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(pushed))
}
