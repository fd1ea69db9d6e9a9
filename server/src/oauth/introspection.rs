//! Token introspection, RFC 7662. Callers authenticate as clients; a caller learns about a
//! token only if it is the token's client or an audience it serves.

use serde_json::{json, Map, Value};

use super::client_auth;
use super::params::Params;
use crate::app::App;
use crate::clients::Client;
use crate::error::{Challenge, OAuthError};
use crate::tokens::refresh_token;

fn set(object: &mut Value, name: &str, value: Value) {
    if let Some(map) = object.as_object_mut() {
        map.insert(name.to_string(), value);
    }
}

fn inactive() -> Value {
    json!({ "active": false })
}

/// RFC 7662 §2.1–2.2.
pub async fn introspect(
    app: &App,
    authorization: Option<&str>,
    params: &Params,
    address: std::net::IpAddr,
) -> Result<Value, OAuthError> {
    let presented = client_auth::presented(authorization, params)?;
    let caller = client_auth::authenticate(app, &presented, address).await?;
    if caller.is_public() {
        return Err(OAuthError::invalid_client(Challenge::None));
    }
    let token = params.required("token")?;
    let refresh_first = params.single("token_type_hint")? == Some("refresh_token");
    let first = if refresh_first {
        refresh(app, &caller, token).await?
    } else {
        access(app, &caller, token).await?
    };
    if let Some(found) = first {
        return Ok(found);
    }
    let other = if refresh_first {
        access(app, &caller, token).await?
    } else {
        refresh(app, &caller, token).await?
    };
    Ok(other.unwrap_or_else(inactive))
}

async fn username_and_roles(
    app: &App,
    sub: &str,
) -> Result<Option<(String, Vec<String>)>, OAuthError> {
    let sub = sub.to_string();
    let user = app
        .store()
        .run(move |s| s.find_user(&sub))
        .await
        .map_err(|e| OAuthError::temporarily_unavailable(&e))?;
    Ok(user.filter(|u| !u.disabled).map(|u| (u.username, u.roles)))
}

/// One of our JWT access tokens, if valid and visible to the caller.
async fn access(app: &App, caller: &Client, token: &str) -> Result<Option<Value>, OAuthError> {
    let claims: Map<String, Value> = match super::userinfo::verify_access_token(app, token).await {
        Ok(claims) => claims,
        Err(e) if e.code == crate::error::ErrorCode::TemporarilyUnavailable => return Err(e),
        Err(_) => return Ok(None),
    };
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    // RFC 7662 §2.1, §4: the token's own client, or the resource server registered for its
    // audience; to anyone else it is `{"active": false}`.
    let aud = text("aud");
    if text("client_id") != caller.id && !caller.introspection_audiences.contains(&aud) {
        return Ok(None);
    }
    let bound = claims.get("cnf").cloned();
    let mut out = json!({
        "active": true,
        "token_type": crate::tokens::access_token::token_type(bound.is_some()),
        "scope": text("scope"),
        "client_id": text("client_id"),
        "sub": text("sub"),
        "aud": aud,
        "iss": text("iss"),
        "exp": claims.get("exp").cloned().unwrap_or(Value::Null),
        "iat": claims.get("iat").cloned().unwrap_or(Value::Null),
        "jti": text("jti"),
        "roles": claims.get("roles").cloned().unwrap_or_else(|| json!([])),
    });
    // RFC 9449 §6.2: a resource server learns the key the token is bound to.
    if let Some(cnf) = bound {
        set(&mut out, "cnf", cnf);
    }
    // RFC 8693 §4.1, §4.4: who acts for the subject, and who may.
    for name in ["act", "may_act"] {
        if let Some(value) = claims.get(name) {
            set(&mut out, name, value.clone());
        }
    }
    match username_and_roles(app, &text("sub")).await? {
        Some((username, _)) => set(&mut out, "username", Value::String(username)),
        // A user token whose user is gone or disabled is no longer active.
        None if text("sub") != text("client_id") => return Ok(None),
        None => {}
    }
    Ok(Some(out))
}

/// A refresh token, if live and owned by the caller.
async fn refresh(app: &App, caller: &Client, token: &str) -> Result<Option<Value>, OAuthError> {
    let hash = refresh_token::hash(token);
    let record = app
        .store()
        .run(move |s| s.find_refresh_token(&hash))
        .await
        .map_err(|e| OAuthError::temporarily_unavailable(&e))?;
    let Some(record) = record else {
        return Ok(None);
    };
    let live =
        record.used_at.is_none() && record.revoked_at.is_none() && app.now() < record.expires_at;
    if !live || record.client_id != caller.id {
        return Ok(None);
    }
    let mut out = json!({
        "active": true,
        "token_type": "refresh_token",
        "scope": record.scope,
        "client_id": record.client_id,
        "sub": record.user_id,
        "aud": record.audience,
        "iss": app.settings().issuer,
        "exp": record.expires_at,
        "iat": record.created_at,
    });
    let Some((username, roles)) = username_and_roles(app, &record.user_id).await? else {
        return Ok(None);
    };
    set(&mut out, "username", Value::String(username));
    set(&mut out, "roles", json!(roles));
    Ok(Some(out))
}
