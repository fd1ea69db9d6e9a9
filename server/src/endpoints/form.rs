//! The form body and `Authorization` header of token-style endpoints (RFC 6749 §3.2).

use actix_web::http::header;
use actix_web::HttpRequest;

use crate::error::OAuthError;
use crate::oauth::params::Params;

/// Requires `application/x-www-form-urlencoded` and parses it; returns the Authorization
/// header too.
pub fn parse<'r>(
    request: &'r HttpRequest,
    body: &[u8],
) -> Result<(Params, Option<&'r str>), OAuthError> {
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
            "the request must be application/x-www-form-urlencoded",
        ));
    }
    let params = Params::parse(body)?;
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str())
        .transpose()
        .map_err(|_| OAuthError::invalid_request("the Authorization header is not ASCII"))?;
    Ok((params, authorization))
}
