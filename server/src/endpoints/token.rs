//! `POST /token` (RFC 6749 §3.2).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::App;
use crate::error::OAuthError;
use crate::oauth::grants;

/// The audit details of a `token_issued` event (never the token itself).
#[derive(serde::Serialize)]
struct TokenIssued<'a> {
    grant_type: &'a str,
    audience: &'a str,
    scope: &'a str,
    jti: &'a str,
    refresh_token: bool,
    id_token: bool,
}

pub async fn token(request: HttpRequest, body: web::Bytes, app: web::Data<App>) -> HttpResponse {
    let response = match handle(&request, &body, &app).await {
        Ok(response) => response,
        Err(e) => {
            metrics::counter!("portcullis_token_errors_total", "error" => e.code.as_str())
                .increment(1);
            actix_web::ResponseError::error_response(&e)
        }
    };
    super::with_dpop_nonce(&app, response)
}

async fn handle(request: &HttpRequest, body: &[u8], app: &App) -> Result<HttpResponse, OAuthError> {
    let (params, authorization) = super::form::parse(request, body)?;
    let address = super::client_address(request, app);
    let proof = super::dpop_proof(request);
    let (grant, client, response) =
        grants::token_request(app, authorization, &params, address, proof).await?;
    let client_id = client.id.as_str();
    app.audit().record(
        "token_issued",
        Some(client_id),
        Some(&response.issued.subject),
        TokenIssued {
            grant_type: grant.as_str(),
            audience: &response.issued.audience,
            scope: &response.scope,
            jti: &response.issued.jti,
            refresh_token: response.refresh_token.is_some(),
            id_token: response.id_token.is_some(),
        },
    );
    metrics::counter!(
        "portcullis_tokens_issued_total",
        "grant" => grant.as_str(),
        // Anyone can make self-described clients: one label for them all keeps the
        // metric's cardinality bounded.
        "client" => match client.kind {
            crate::clients::ClientKind::Static => client.id.clone(),
            crate::clients::ClientKind::Dynamic => "(dynamic)".to_string(),
            crate::clients::ClientKind::MetadataDocument => "(metadata document)".to_string(),
        }
    )
    .increment(1);
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(response))
}
