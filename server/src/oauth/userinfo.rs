//! The UserInfo endpoint, OpenID Connect Core §5.3, protected per RFC 6750.

use serde_json::{Map, Value};

use crate::app::App;
use crate::error::{Challenge, ErrorCode, OAuthError};
use crate::jose::jwt::{self, TYP_ACCESS_TOKEN};

fn invalid_token(description: &'static str) -> OAuthError {
    OAuthError {
        code: ErrorCode::InvalidToken,
        description: description.into(),
        challenge: Challenge::Bearer,
        retry_after: None,
    }
}

/// Verifies one of our access tokens (signature, `typ`, issuer, expiry, deny list) and returns
/// its claims.
pub async fn verify_access_token(app: &App, token: &str) -> Result<Map<String, Value>, OAuthError> {
    let verified = {
        let keyring = app.keyring().current();
        jwt::verify(token, |kid| keyring.verifier(kid))
    }
    .ok_or_else(|| invalid_token("the access token is invalid"))?;
    if verified.typ.as_deref() != Some(TYP_ACCESS_TOKEN) {
        return Err(invalid_token("not an access token"));
    }
    let claims = verified.claims;
    if claims.get("iss").and_then(Value::as_str) != Some(app.settings().issuer.as_str()) {
        return Err(invalid_token("the access token was not issued here"));
    }
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if app.now() >= exp {
        return Err(invalid_token("the access token has expired"));
    }
    // The client it was issued to still exists, and existed then: deleting a client ends its
    // tokens, and a client re-created under the same id does not revive them.
    let client_id = claims
        .get("client_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(0);
    match app.clients().find(client_id).await {
        Ok(Some(client)) if iat >= client.created_at => {}
        Ok(_) => return Err(invalid_token("the access token's client no longer exists")),
        Err(e) => return Err(OAuthError::temporarily_unavailable(&e)),
    }
    if let Some(jti) = claims.get("jti").and_then(Value::as_str) {
        let denied = app
            .deny_list()
            .is_denied(jti)
            .await
            .map_err(|e| OAuthError::temporarily_unavailable(&e))?;
        if denied {
            return Err(invalid_token("the access token has been revoked"));
        }
    }
    Ok(claims)
}

/// Claims about the signed-in user, by granted scope (Core §5.4).
pub async fn userinfo(app: &App, token: &str) -> Result<Value, OAuthError> {
    let claims = verify_access_token(app, token).await?;
    let scopes: Vec<&str> = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split(' ')
        .collect();
    if !scopes.contains(&"openid") {
        return Err(OAuthError {
            code: ErrorCode::InsufficientScope,
            description: "the access token lacks the openid scope".into(),
            challenge: Challenge::Bearer,
            retry_after: None,
        });
    }
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let user = app
        .store()
        .run(move |s| s.find_user(&sub))
        .await
        .map_err(|e| OAuthError::temporarily_unavailable(&e))?
        .filter(|u| !u.disabled)
        .ok_or_else(|| invalid_token("the access token's subject is not a user"))?;
    let mut out = Map::new();
    out.insert("sub".into(), Value::String(user.id.clone()));
    if scopes.contains(&"profile") {
        out.insert("name".into(), Value::String(user.name.clone()));
        out.insert(
            "preferred_username".into(),
            Value::String(user.username.clone()),
        );
        out.insert("updated_at".into(), Value::from(user.updated_at));
    }
    if scopes.contains(&"email") {
        out.insert("email".into(), Value::String(user.email.clone()));
        out.insert("email_verified".into(), Value::Bool(user.email_verified));
    }
    Ok(Value::Object(out))
}
