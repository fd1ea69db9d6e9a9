//! The token endpoint's grant types (RFC 6749 §4): parse, authenticate the client, exchange.

pub mod client_credentials;

use super::client_auth;
use super::params::Params;
use super::uri;
use crate::app::App;
use crate::clients::{Client, GrantType};
use crate::error::{ErrorCode, OAuthError};
use crate::tokens::TokenResponse;

/// Handles a token request (RFC 6749 §3.2) whose form body is `params`.
pub async fn token_request(
    app: &App,
    authorization: Option<&str>,
    params: &Params,
) -> Result<(GrantType, String, TokenResponse), OAuthError> {
    let grant_type = match params.required("grant_type")? {
        "client_credentials" => GrantType::ClientCredentials,
        other => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                format!(
                    "grant_type `{}` is not supported",
                    other.chars().take(60).collect::<String>()
                ),
            ))
        }
    };
    let presented = client_auth::presented(authorization, params)?;
    let client = client_auth::authenticate(&presented, app.clients()).await?;
    if !client.allows_grant(grant_type) {
        return Err(OAuthError::unauthorized_client(format!(
            "this client may not use the {} grant",
            grant_type.as_str()
        )));
    }
    let response = match grant_type {
        GrantType::ClientCredentials => client_credentials::exchange(app, &client, params)?,
        GrantType::AuthorizationCode | GrantType::RefreshToken => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "grant type not supported",
            ))
        }
    };
    Ok((grant_type, client.id.clone(), response))
}

/// The audience of a token (RFC 8707 §2): the requested `resource`, which must be one the
/// client is registered for; without one, the client's first audience, else the issuer.
/// One audience per token: several distinct `resource` values are `invalid_target`.
pub fn resolve_audience(app: &App, client: &Client, params: &Params) -> Result<String, OAuthError> {
    let mut requested = params.all("resource");
    requested.dedup();
    match requested.as_slice() {
        [] => Ok(client
            .audiences
            .first()
            .cloned()
            .unwrap_or_else(|| app.settings().issuer.clone())),
        [one] => {
            uri::validate_resource(one).map_err(OAuthError::invalid_target)?;
            if client.audiences.iter().any(|a| a == one) {
                Ok((*one).to_string())
            } else {
                Err(OAuthError::invalid_target(
                    "the requested resource is not available to this client",
                ))
            }
        }
        _ => Err(OAuthError::invalid_target("request one resource per token")),
    }
}
