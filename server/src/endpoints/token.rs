//! `POST /token` (RFC 6749 §3.2).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::App;
use crate::error::OAuthError;
use crate::oauth::grants;
use crate::oauth::params::Params;

pub async fn token(
    request: HttpRequest,
    body: web::Bytes,
    app: web::Data<App>,
) -> Result<HttpResponse, OAuthError> {
    let result = handle(&request, &body, &app).await;
    match &result {
        Ok(_) => {}
        Err(e) => metrics::counter!("portcullis_token_errors_total", "error" => e.code.as_str())
            .increment(1),
    }
    result
}

async fn handle(request: &HttpRequest, body: &[u8], app: &App) -> Result<HttpResponse, OAuthError> {
    // RFC 6749 §3.2: parameters come form-encoded in the body.
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(OAuthError::invalid_request(
            "the token request must be application/x-www-form-urlencoded",
        ));
    }
    let params = Params::parse(body)?;
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str())
        .transpose()
        .map_err(|_| OAuthError::invalid_request("the Authorization header is not ASCII"))?;
    let (grant, client_id, response) = grants::token_request(app, authorization, &params).await?;
    metrics::counter!(
        "portcullis_tokens_issued_total",
        "grant" => grant.as_str(),
        "client" => client_id
    )
    .increment(1);
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(response))
}
