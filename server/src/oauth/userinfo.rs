//! The UserInfo endpoint, OpenID Connect Core §5.3, protected per RFC 6750.

use serde_json::{Map, Value};

use crate::app::App;
use crate::error::{Challenge, ErrorCode, OAuthError};
use crate::jose::jwt::{self, TYP_ACCESS_TOKEN};
use crate::oauth::dpop::Proof;

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

/// An access token as presented: with the Bearer scheme, or the DPoP one (RFC 9449 §7.1).
#[derive(Debug, Clone)]
pub enum Presented {
    Bearer(String),
    Dpop(String),
}

/// The key a token is bound to (`cnf.jkt`, RFC 9449 §6.1), if any.
pub fn bound_key(claims: &Map<String, Value>) -> Option<&str> {
    claims.get("cnf")?.get("jkt")?.as_str()
}

/// RFC 9449 §7: a bound token only with the DPoP scheme and a proof of its key over this very
/// token (`ath`); a bearer token only as a bearer token.
fn check_binding(
    claims: &Map<String, Value>,
    presented: &Presented,
    proof: Option<&Proof>,
) -> Result<(), OAuthError> {
    let refuse = |code: ErrorCode, description: &'static str| OAuthError {
        code,
        description: description.into(),
        challenge: Challenge::Dpop,
        retry_after: None,
    };
    match (bound_key(claims), presented, proof) {
        (None, Presented::Bearer(_), _) => Ok(()),
        (None, Presented::Dpop(_), _) => Err(refuse(
            ErrorCode::InvalidToken,
            "the access token is not bound to a DPoP key",
        )),
        (Some(_), Presented::Bearer(_), _) => Err(refuse(
            ErrorCode::InvalidToken,
            "a DPoP-bound access token needs the DPoP scheme and a proof",
        )),
        (Some(_), Presented::Dpop(_), None) => Err(refuse(
            ErrorCode::InvalidDpopProof,
            "a DPoP proof is required",
        )),
        (Some(jkt), Presented::Dpop(token), Some(proof)) => {
            if proof.ath.as_deref() != Some(crate::oauth::dpop::ath(token).as_str()) {
                return Err(refuse(
                    ErrorCode::InvalidDpopProof,
                    "the DPoP proof's ath is not this access token's hash",
                ));
            }
            // RFC 9449 §7.1's own example: a key that does not match is an invalid token.
            if proof.jkt != jkt {
                return Err(refuse(
                    ErrorCode::InvalidToken,
                    "invalid DPoP key binding: the proof is not signed by the token's key",
                ));
            }
            Ok(())
        }
    }
}

/// Claims about the signed-in user, by granted scope (Core §5.4). Errors challenge with the
/// scheme the token came in (RFC 6750 §3, RFC 9449 §7.1).
pub async fn userinfo(
    app: &App,
    presented: &Presented,
    proof: Option<&Proof>,
) -> Result<Value, OAuthError> {
    claims_for(app, presented, proof).await.map_err(|mut e| {
        if matches!(presented, Presented::Dpop(_)) && e.challenge == Challenge::Bearer {
            e.challenge = Challenge::Dpop;
        }
        e
    })
}

async fn claims_for(
    app: &App,
    presented: &Presented,
    proof: Option<&Proof>,
) -> Result<Value, OAuthError> {
    let token = match presented {
        Presented::Bearer(token) | Presented::Dpop(token) => token,
    };
    let claims = verify_access_token(app, token).await?;
    check_binding(&claims, presented, proof)?;
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
