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
    let pushed = par::push(
        &app,
        authorization,
        &params,
        address,
        super::dpop_proof(&request),
    )
    .await;
    let response = match pushed {
        Ok(pushed) => HttpResponse::Created()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(pushed),
        Err(e) => actix_web::ResponseError::error_response(&e),
    };
    // RFC 9449 §8: a client that sends proofs here learns the nonce here too.
    Ok(super::with_dpop_nonce(&app, response))
}
