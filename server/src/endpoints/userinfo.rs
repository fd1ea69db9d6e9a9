//! `GET|POST /userinfo` (OpenID Connect Core §5.3; bearer token per RFC 6750 §2.1–2.2).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::App;
use crate::error::{Challenge, ErrorCode, OAuthError};
use crate::oauth::params::Params;
use crate::oauth::userinfo;

/// The token of an `Authorization: Bearer` header (RFC 6750 §2.1); `None` without a header.
pub(crate) fn bearer(request: &HttpRequest) -> Result<Option<String>, OAuthError> {
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
        _ => Err(OAuthError {
            code: ErrorCode::InvalidRequest,
            description: "use the Bearer authentication scheme".into(),
            challenge: Challenge::Bearer,
            retry_after: None,
        }),
    }
}

fn missing() -> OAuthError {
    OAuthError {
        code: ErrorCode::InvalidToken,
        description: "an access token is required".into(),
        challenge: Challenge::BearerRealmOnly,
        retry_after: None,
    }
}

fn respond(claims: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(claims)
}

pub async fn userinfo_get(
    request: HttpRequest,
    app: web::Data<App>,
) -> Result<HttpResponse, OAuthError> {
    let token = bearer(&request)?.ok_or_else(missing)?;
    Ok(respond(userinfo::userinfo(&app, &token).await?))
}

/// POST may carry the token in the header or, form-encoded, in the body (RFC 6750 §2.2) —
/// not both.
pub async fn userinfo_post(
    request: HttpRequest,
    body: web::Bytes,
    app: web::Data<App>,
) -> Result<HttpResponse, OAuthError> {
    let from_header = bearer(&request)?;
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let from_body = if is_form {
        Params::parse(&body)?
            .single("access_token")?
            .map(str::to_string)
    } else {
        None
    };
    let token = match (from_header, from_body) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request("send the access token once"));
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return Err(missing()),
    };
    Ok(respond(userinfo::userinfo(&app, &token).await?))
}
