//! `POST /register` (RFC 7591 §3) and `GET|PUT|DELETE /register/{client_id}` (RFC 7592 §2).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::{Map, Value};

use crate::app::App;
use crate::config::RegistrationPolicy;
use crate::error::{Challenge, ErrorCode, OAuthError};
use crate::oauth::registration;

fn answer(status: StatusCode, outcome: Result<Map<String, Value>, OAuthError>) -> HttpResponse {
    match outcome {
        Ok(information) => HttpResponse::build(status)
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"))
            .json(information),
        Err(error) => error.error_response(),
    }
}

/// Under the `closed` policy every request is refused (and discovery does not name the
/// endpoint).
fn refuse_when_closed(app: &App) -> Option<HttpResponse> {
    (app.settings().registration == RegistrationPolicy::Closed).then(|| {
        let mut response = super::json_error(
            StatusCode::FORBIDDEN,
            "access_denied",
            "client registration is not enabled on this server",
        );
        response
            .headers_mut()
            .insert(header::PRAGMA, header::HeaderValue::from_static("no-cache"));
        response
    })
}

/// The `Authorization: Bearer` token (RFC 6750 §2.1), if any.
fn bearer(request: &HttpRequest) -> Result<Option<String>, OAuthError> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| OAuthError::invalid_request("the Authorization header is not ASCII"))?;
    match text.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim().to_string()))
        }
        _ => {
            let mut error = OAuthError::new(
                ErrorCode::InvalidRequest,
                "use the Bearer authentication scheme",
            );
            error.challenge = Challenge::Bearer;
            Err(error)
        }
    }
}

/// RFC 7591 §3.1: the request is a JSON document.
fn require_json(request: &HttpRequest) -> Result<(), OAuthError> {
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if json {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(
            "the request must be application/json",
        ))
    }
}

pub async fn register(request: HttpRequest, body: web::Bytes, app: web::Data<App>) -> HttpResponse {
    if let Some(refused) = refuse_when_closed(&app) {
        return refused;
    }
    let outcome = async {
        let token = bearer(&request)?;
        require_json(&request)?;
        let address = super::client_address(&request, &app);
        registration::register(&app, token.as_deref(), &body, address).await
    }
    .await;
    answer(StatusCode::CREATED, outcome)
}

pub async fn read(
    request: HttpRequest,
    client_id: web::Path<String>,
    app: web::Data<App>,
) -> HttpResponse {
    if let Some(refused) = refuse_when_closed(&app) {
        return refused;
    }
    let outcome = async {
        let token = bearer(&request)?;
        registration::read(&app, &client_id, token.as_deref()).await
    }
    .await;
    answer(StatusCode::OK, outcome)
}

pub async fn update(
    request: HttpRequest,
    client_id: web::Path<String>,
    body: web::Bytes,
    app: web::Data<App>,
) -> HttpResponse {
    if let Some(refused) = refuse_when_closed(&app) {
        return refused;
    }
    let outcome = async {
        let token = bearer(&request)?;
        require_json(&request)?;
        registration::update(&app, &client_id, token.as_deref(), &body).await
    }
    .await;
    answer(StatusCode::OK, outcome)
}

pub async fn delete(
    request: HttpRequest,
    client_id: web::Path<String>,
    app: web::Data<App>,
) -> HttpResponse {
    if let Some(refused) = refuse_when_closed(&app) {
        return refused;
    }
    let outcome = async {
        let token = bearer(&request)?;
        registration::delete(&app, &client_id, token.as_deref()).await
    }
    .await;
    match outcome {
        Ok(()) => HttpResponse::NoContent()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
        Err(error) => error.error_response(),
    }
}
