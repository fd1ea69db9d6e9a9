//! The client credentials grant, RFC 6749 §4.4. Writes nothing to the database.

use super::resolve_audience;
use crate::app::App;
use crate::clients::Client;
use crate::error::OAuthError;
use crate::oauth::params::Params;
use crate::oauth::scope::Scope;
use crate::tokens::access_token::{self, AccessTokenClaims};
use crate::tokens::{new_jti, TokenResponse};

/// RFC 6749 §4.4.2–4.4.3: the scope must be within the client's registered scopes (none
/// requested: all of them); the token is issued to the client itself (`sub` = client id),
/// bound to `dpop_jkt` when the request carried a DPoP proof (RFC 9449 §5).
pub fn exchange(
    app: &App,
    client: &Client,
    params: &Params,
    dpop_jkt: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    let requested: Scope = match params.single("scope")? {
        Some(text) => Scope::parse(text)
            .map_err(|bad| OAuthError::invalid_scope(format!("`{bad}` is not a valid scope")))?,
        None => Scope::default(),
    };
    let scope = if requested.is_empty() {
        Scope::from_tokens(&client.scopes)
    } else {
        let excess = requested.excess_over(&client.scopes);
        if let Some(first) = excess.first() {
            return Err(OAuthError::invalid_scope(format!(
                "scope `{first}` is not allowed for this client"
            )));
        }
        requested.clone()
    };
    let audience = resolve_audience(app, client, params)?;
    // RBAC: resource scopes also need one of the client's roles.
    let model = app.authorization().model();
    let effective = model.effective_scope(scope.tokens(), &client.roles, &audience);
    if effective.is_empty() && !requested.is_empty() {
        return Err(OAuthError::invalid_scope(
            "none of the requested scopes is permitted for this client and resource",
        ));
    }
    let settings = app.settings();
    let now = app.now();
    let resource = model.resource(&audience);
    let ttl = resource
        .and_then(|r| r.access_token_ttl)
        .unwrap_or_else(|| i64::try_from(settings.access_token_ttl).unwrap_or(3600));
    let alg = resource
        .and_then(|r| r.signing_alg)
        .unwrap_or(settings.access_token_signing_alg);
    let jti = new_jti().map_err(|e| OAuthError::server_error(&e))?;
    let scope_text = effective.join(" ");
    let claims = AccessTokenClaims {
        iss: &settings.issuer,
        sub: &client.id,
        aud: &audience,
        exp: now + ttl,
        iat: now,
        jti: &jti,
        client_id: &client.id,
        scope: &scope_text,
        auth_time: None,
        roles: Some(&client.roles),
        cnf: dpop_jkt.map(|jkt| access_token::Confirmation { jkt }),
        act: None,
        may_act: None,
    };
    let access_token = access_token::sign(&app.keyring().current(), alg, &claims)?;
    Ok(TokenResponse {
        access_token,
        token_type: access_token::token_type(dpop_jkt.is_some()),
        expires_in: ttl,
        scope: scope_text,
        refresh_token: None,
        id_token: None,
        issued_token_type: None,
        issued: crate::tokens::Issued {
            subject: client.id.clone(),
            audience,
            jti,
        },
    })
}
