//! `GET|POST /userinfo` (OpenID Connect Core §5.3): a bearer token per RFC 6750 §2.1–2.2, or a
//! DPoP-bound token with its proof (RFC 9449 §7).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::App;
use crate::error::{Challenge, ErrorCode, OAuthError};
use crate::oauth::discovery::USERINFO_PATH;
use crate::oauth::dpop;
use crate::oauth::params::Params;
use crate::oauth::userinfo::{self, Presented};

/// The token of an `Authorization` header, with its scheme (RFC 6750 §2.1, RFC 9449 §7.1);
/// `None` without a header, or with another scheme (`Basic …`): RFC 6750 §3.1 counts a request
/// "using an unsupported authentication method" as one that lacks authentication.
pub(crate) fn credential(request: &HttpRequest) -> Result<Option<Presented>, OAuthError> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| OAuthError::invalid_request("the Authorization header is not ASCII"))?;
    let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
    let token = token.trim();
    let is_bearer = scheme.eq_ignore_ascii_case("bearer");
    if !is_bearer && !scheme.eq_ignore_ascii_case("dpop") {
        return Ok(None);
    }
    if token.is_empty() {
        return Err(OAuthError {
            code: ErrorCode::InvalidRequest,
            description: format!("the {scheme} authorization carries no token").into(),
            challenge: Challenge::Bearer,
            retry_after: None,
        });
    }
    Ok(Some(if is_bearer {
        Presented::Bearer(token.to_string())
    } else {
        Presented::Dpop(token.to_string())
    }))
}

/// The token of an `Authorization: Bearer` header (RFC 6750 §2.1); `None` without a header.
pub(crate) fn bearer(request: &HttpRequest) -> Result<Option<String>, OAuthError> {
    match credential(request)? {
        Some(Presented::Bearer(token)) => Ok(Some(token)),
        Some(Presented::Dpop(_)) => Err(OAuthError {
            code: ErrorCode::InvalidRequest,
            description: "use the Bearer authentication scheme".into(),
            challenge: Challenge::Bearer,
            retry_after: None,
        }),
        None => Ok(None),
    }
}

fn missing() -> OAuthError {
    OAuthError {
        code: ErrorCode::InvalidToken,
        description: "an access token is required".into(),
        challenge: Challenge::BearerOrDpopRealmOnly,
        retry_after: None,
    }
}

fn respond(claims: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(claims)
}

/// Answers with the claims, or the error; either way with the DPoP nonce when one is used.
async fn answer(app: &App, request: &HttpRequest, presented: Presented) -> HttpResponse {
    let outcome = async {
        let proof = match &presented {
            Presented::Dpop(_) => {
                let url = format!("{}{}", app.settings().issuer, USERINFO_PATH);
                let target = dpop::Target {
                    method: request.method().as_str(),
                    url: &url,
                };
                dpop::accept(app, super::dpop_proof(request), &target, Challenge::Dpop).await?
            }
            Presented::Bearer(_) => None,
        };
        userinfo::userinfo(app, &presented, proof.as_ref()).await
    };
    let response = match outcome.await {
        Ok(claims) => respond(claims),
        Err(e) => actix_web::ResponseError::error_response(&e),
    };
    super::with_dpop_nonce(app, response)
}

pub async fn userinfo_get(request: HttpRequest, app: web::Data<App>) -> HttpResponse {
    match credential(&request).and_then(|c| c.ok_or_else(missing)) {
        Ok(presented) => answer(&app, &request, presented).await,
        Err(e) => actix_web::ResponseError::error_response(&e),
    }
}

/// POST may carry a bearer token in the header or, form-encoded, in the body (RFC 6750 §2.2) —
/// not both.
pub async fn userinfo_post(
    request: HttpRequest,
    body: web::Bytes,
    app: web::Data<App>,
) -> HttpResponse {
    let presented = async {
        let from_header = credential(&request)?;
        let is_form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let from_body = if is_form {
            Params::parse(&body)?
                .single("access_token")?
                .map(|t| Presented::Bearer(t.to_string()))
        } else {
            None
        };
        match (from_header, from_body) {
            (Some(_), Some(_)) => Err(OAuthError::invalid_request("send the access token once")),
            (Some(p), None) | (None, Some(p)) => Ok(p),
            (None, None) => Err(missing()),
        }
    };
    match presented.await {
        Ok(presented) => answer(&app, &request, presented).await,
        Err(e) => actix_web::ResponseError::error_response(&e),
    }
}
