//! HTTP endpoints: extract, call the protocol code, respond. One file per endpoint.

pub mod account;
pub mod admin;
pub mod authorize;
pub mod console;
pub mod device;
pub mod device_authorization;
pub mod discovery;
pub mod form;
pub mod health;
pub mod introspect;
pub mod jwks;
pub mod login;
pub mod logout;
pub mod metrics;
pub mod pages;
pub mod par;
pub mod register;
pub mod revoke;
pub mod token;
pub mod userinfo;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::app::App;
use crate::error::{Challenge, OAuthError};

/// The request's `DPoP` proof headers (RFC 9449 §4.1): none, one, or several (an error).
pub fn dpop_proof(request: &actix_web::HttpRequest) -> crate::oauth::dpop::Presented<'_> {
    use crate::oauth::dpop::Presented;
    let mut values = request.headers().get_all(crate::oauth::dpop::HEADER);
    match (values.next(), values.next()) {
        (None, _) => Presented::Absent,
        (Some(one), None) => one.to_str().map_or(Presented::Several, Presented::One),
        (Some(_), Some(_)) => Presented::Several,
    }
}

/// With `use_dpop_nonce`, every answer of the token endpoint and of `/userinfo` carries the
/// current nonce (RFC 9449 §8), errors too: a client learns it from whatever it gets.
pub fn with_dpop_nonce(app: &App, mut response: HttpResponse) -> HttpResponse {
    if app.settings().use_dpop_nonce {
        let nonce = crate::oauth::dpop::nonce(app, app.now());
        if let Ok(value) = HeaderValue::from_str(&nonce) {
            response
                .headers_mut()
                .insert(header::HeaderName::from_static("dpop-nonce"), value);
        }
    }
    response
}

/// The client's address: the TCP peer, or behind a trusted proxy the address it forwarded
/// (`client_address`). Every per-address limit and the audit log use it.
pub fn client_address(request: &actix_web::HttpRequest, app: &App) -> std::net::IpAddr {
    let peer = request
        .peer_addr()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    if !app.trusted_proxies().trusts(peer) {
        return peer;
    }
    let joined = |name: &str| {
        let values: Vec<&str> = request
            .headers()
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    app.trusted_proxies().client_address(
        peer,
        joined("forwarded").as_deref(),
        joined("x-forwarded-for").as_deref(),
    )
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

/// RFC 6749 §5.2 error responses (and RFC 6750 §3 for bearer-protected endpoints).
impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        // At a resource (a DPoP challenge), token and proof errors are 401 (RFC 9449 §7.1).
        if self.challenge == Challenge::Dpop && self.code.status() == 400 {
            return StatusCode::UNAUTHORIZED;
        }
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::BAD_REQUEST)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"));
        let dpop_offer = || {
            format!(
                "DPoP realm=\"portcullis\", algs=\"{}\"",
                crate::oauth::dpop::ALGORITHMS.join(" ")
            )
        };
        let challenges = match self.challenge {
            Challenge::Bearer => vec![format!(
                "Bearer realm=\"portcullis\", error=\"{}\", error_description=\"{}\"",
                self.code.as_str(),
                self.description.replace(['"', '\\'], "'")
            )],
            Challenge::BearerRealmOnly => vec!["Bearer realm=\"portcullis\"".to_string()],
            Challenge::BearerOrDpopRealmOnly => {
                vec!["Bearer realm=\"portcullis\"".to_string(), dpop_offer()]
            }
            Challenge::Dpop => vec![format!(
                "DPoP realm=\"portcullis\", error=\"{}\", error_description=\"{}\", algs=\"{}\"",
                self.code.as_str(),
                self.description.replace(['"', '\\'], "'"),
                crate::oauth::dpop::ALGORITHMS.join(" ")
            )],
            // HTTP requires a challenge with every 401; Basic is the scheme we accept.
            _ if self.code.status() == 401 => vec!["Basic realm=\"portcullis\"".to_string()],
            _ => vec![],
        };
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        for value in challenges
            .iter()
            .filter_map(|c| HeaderValue::from_str(c).ok())
        {
            response.append_header((header::WWW_AUTHENTICATE, value));
        }
        response.json(ErrorBody {
            error: self.code.as_str(),
            error_description: &self.description,
        })
    }
}

/// JSON for anything actix rejects before a handler runs (bad path, wrong method, huge body).
pub fn json_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(ErrorBody {
            error,
            error_description: description,
        })
}
