//! Pushed authorization requests (RFC 9126): the client sends the authorization request
//! straight to the server, authenticated, and the browser carries only a reference to it.

use std::net::IpAddr;

use serde::Serialize;

use super::authorize::{self, AuthorizationRequest, AuthorizeError};
use super::client_auth;
use super::dpop;
use super::params::Params;
use crate::app::App;
use crate::error::{Challenge, OAuthError};
use crate::store::StoreError;
use crate::tokens::refresh_token;

/// RFC 9126 §2.2: the form of a `request_uri`.
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// The answer of RFC 9126 §2.2.
#[derive(Debug, Serialize)]
pub struct Pushed {
    pub request_uri: String,
    pub expires_in: i64,
}

/// RFC 9126 §2.1: the client authenticates as at the token endpoint (a public client names
/// itself), and every check of `/authorize` that does not need the person runs now. A DPoP
/// proof binds the code to its key, as `dpop_jkt` does (RFC 9449 §10.1).
pub async fn push(
    app: &App,
    authorization: Option<&str>,
    params: &Params,
    address: IpAddr,
    proof: dpop::Presented<'_>,
) -> Result<Pushed, OAuthError> {
    let presented = client_auth::presented(authorization, params)?;
    let client = client_auth::authenticate(app, &presented, address).await?;
    if params.single("request_uri")?.is_some() {
        return Err(OAuthError::invalid_request(
            "request_uri cannot be pushed (RFC 9126 §2.1)",
        ));
    }
    let endpoint = format!("{}{}", app.settings().issuer, super::discovery::PAR_PATH);
    let target = dpop::Target {
        method: "POST",
        url: &endpoint,
    };
    let proof = dpop::accept(app, proof, &target, Challenge::None).await?;
    let params = match (proof, params.single("dpop_jkt")?) {
        (Some(proof), Some(jkt)) if proof.jkt != jkt => {
            return Err(OAuthError::invalid_dpop_proof(
                "dpop_jkt is not the thumbprint of the DPoP proof's key",
            ))
        }
        (Some(proof), None) => Params::from_pairs(params.pairs()).with("dpop_jkt", &proof.jkt),
        _ => Params::from_pairs(params.pairs()),
    };
    let params = match params.single("client_id")? {
        Some(id) if id != client.id => {
            return Err(OAuthError::invalid_request(
                "client_id differs from the authenticated client",
            ))
        }
        Some(_) => Params::from_pairs(params.pairs()),
        None => Params::from_pairs(params.pairs()).with("client_id", &client.id),
    };
    let (request, _) = authorize::validate(app, &params)
        .await
        .map_err(|error| match error {
            AuthorizeError::Page(_, message) => OAuthError::invalid_request(message),
            AuthorizeError::Redirect { error, .. } => error,
            AuthorizeError::Unavailable(e) => OAuthError::temporarily_unavailable(&e),
        })?;
    let stored = serde_json::to_string(&request).map_err(|e| OAuthError::server_error(&e))?;
    let reference = refresh_token::generate().map_err(|e| OAuthError::server_error(&e))?;
    let request_uri = format!("{REQUEST_URI_PREFIX}{reference}");
    let ttl = i64::try_from(app.settings().pushed_authorization_request_ttl).unwrap_or(60);
    let (hash, client_id, expires_at) = (
        refresh_token::hash(&request_uri),
        client.id.clone(),
        app.now() + ttl,
    );
    app.store()
        .run(move |s| s.insert_pushed_request(&hash, &client_id, &stored, expires_at))
        .await
        .map_err(|e| OAuthError::temporarily_unavailable(&e))?;
    Ok(Pushed {
        request_uri,
        expires_in: ttl,
    })
}

/// RFC 9126 §4: the pushed request named by `request_uri`, once, for its own client.
pub async fn take(
    app: &App,
    client_id: &str,
    request_uri: &str,
) -> Result<Option<AuthorizationRequest>, StoreError> {
    if !request_uri.starts_with(REQUEST_URI_PREFIX) {
        return Ok(None);
    }
    let (hash, client_id, now) = (
        refresh_token::hash(request_uri),
        client_id.to_string(),
        app.now(),
    );
    let stored = app
        .store()
        .run(move |s| s.take_pushed_request(&hash, &client_id, now))
        .await?;
    Ok(stored.and_then(|text| serde_json::from_str(&text).ok()))
}
