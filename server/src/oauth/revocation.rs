//! Token revocation, RFC 7009. Refresh tokens revoke their whole family; access tokens are
//! denied by `jti` until they expire. Only the owning client may revoke; unknown tokens are
//! answered 200 (§2.2).

use serde_json::Value;

use super::client_auth;
use super::params::Params;
use crate::app::App;
use crate::error::OAuthError;
use crate::tokens::refresh_token;

/// What a revocation did (for the audit log).
#[derive(Debug, PartialEq, Eq)]
pub enum Revoked {
    RefreshFamily { grant_id: String },
    AccessToken { jti: String },
    Nothing,
}

pub async fn revoke(
    app: &App,
    authorization: Option<&str>,
    params: &Params,
    address: std::net::IpAddr,
) -> Result<(String, Revoked), OAuthError> {
    let presented = client_auth::presented(authorization, params)?;
    let caller = client_auth::authenticate(app, &presented, address).await?;
    let token = params.required("token")?;
    let _hint = params.single("token_type_hint")?;
    // A refresh token?
    let hash = refresh_token::hash(token);
    let record = app
        .store()
        .run(move |s| s.find_refresh_token(&hash))
        .await
        .map_err(|e| OAuthError::temporarily_unavailable(&e))?;
    if let Some(record) = record {
        if record.client_id != caller.id {
            return Err(OAuthError::unauthorized_client(
                "the token was not issued to this client",
            ));
        }
        app.revoke_grant(&record.grant_id)
            .await
            .map_err(|e| OAuthError::temporarily_unavailable(&e))?;
        return Ok((
            caller.id.clone(),
            Revoked::RefreshFamily {
                grant_id: record.grant_id,
            },
        ));
    }
    // One of our access tokens (signature checked; expired or unknown ones need nothing).
    let verified = {
        let keyring = app.keyring().current();
        crate::jose::jwt::verify(token, |kid| keyring.verifier(kid))
    };
    let Some(verified) = verified else {
        return Ok((caller.id.clone(), Revoked::Nothing));
    };
    let claims = verified.claims;
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let now = app.now();
    if exp <= now || text("jti").is_empty() {
        return Ok((caller.id.clone(), Revoked::Nothing));
    }
    if text("client_id") != caller.id {
        return Err(OAuthError::unauthorized_client(
            "the token was not issued to this client",
        ));
    }
    let jti = text("jti");
    app.deny_list()
        .deny(&jti, exp, now)
        .await
        .map_err(|e| OAuthError::temporarily_unavailable(&e))?;
    Ok((caller.id.clone(), Revoked::AccessToken { jti }))
}
