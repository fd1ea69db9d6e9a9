//! The token exchange grant, RFC 8693 §2. A client trades a person's access token (the
//! subject token) for one to another audience. Without an actor, the client that holds the
//! token does so for itself: `sub` stays the person, and no `act`. With an actor (an
//! `actor_token`, or a client other than the subject token's), only where the person
//! delegated to that client (`may_act`, RFC 8693 §4.4): the result names it in `act` (§4.1),
//! nested over earlier actors. There is no impersonation: `sub` is always the person.

use serde_json::{Map, Value};

use super::resolve_audience;
use crate::app::App;
use crate::clients::Client;
use crate::error::OAuthError;
use crate::oauth::delegation;
use crate::oauth::params::Params;
use crate::oauth::scope::Scope;
use crate::store::token_exchanges::ExchangeRecord;
use crate::tokens::access_token::{self, AccessTokenClaims};
use crate::tokens::{new_jti, Issued, TokenResponse};

/// RFC 8693 §3: the token type of the tokens taken and issued here.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

fn text<'a>(claims: &'a Map<String, Value>, name: &str) -> &'a str {
    claims.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// One of our access tokens, presented as `name`. RFC 8693 §2.2.2: a token that is invalid
/// for any reason is `invalid_request`.
async fn verify(app: &App, token: &str, name: &str) -> Result<Map<String, Value>, OAuthError> {
    match crate::oauth::userinfo::verify_access_token(app, token).await {
        Ok(claims) => Ok(claims),
        Err(e) if e.code == crate::error::ErrorCode::TemporarilyUnavailable => Err(e),
        Err(_) => Err(OAuthError::invalid_request(format!(
            "the {name} is invalid, expired or revoked"
        ))),
    }
}

/// RFC 8693 §2.1: the token types this server takes and issues are access tokens.
fn check_types(params: &Params) -> Result<(), OAuthError> {
    let only_access_tokens = |name: &str, value: &str| {
        if value == ACCESS_TOKEN_TYPE {
            Ok(())
        } else {
            Err(OAuthError::invalid_request(format!(
                "{name} must be {ACCESS_TOKEN_TYPE}"
            )))
        }
    };
    only_access_tokens("subject_token_type", params.required("subject_token_type")?)?;
    match (
        params.single("actor_token")?,
        params.single("actor_token_type")?,
    ) {
        (Some(_), None) => {
            return Err(OAuthError::invalid_request(
                "actor_token_type is required with actor_token",
            ))
        }
        (None, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "actor_token_type was sent without actor_token",
            ))
        }
        (Some(_), Some(kind)) => only_access_tokens("actor_token_type", kind)?,
        (None, None) => {}
    }
    if let Some(kind) = params.single("requested_token_type")? {
        only_access_tokens("requested_token_type", kind)?;
    }
    Ok(())
}

/// RFC 8693 §2.1: the target, by `resource` or `audience` (one, the same if both), among the
/// requesting client's audiences; none named, its first audience.
fn target(app: &App, client: &Client, params: &Params) -> Result<String, OAuthError> {
    let mut named = params.all("resource");
    named.extend(params.all("audience"));
    named.sort_unstable();
    named.dedup();
    match named.as_slice() {
        [] => resolve_audience(app, client, params),
        [one] if client.audiences.iter().any(|a| a == one) => Ok((*one).to_string()),
        [_] => Err(OAuthError::invalid_target(
            "the requested audience is not available to this client",
        )),
        _ => Err(OAuthError::invalid_target("request one audience per token")),
    }
}

/// Who acts, if anyone: the requesting client, when it sent an `actor_token` (its own client
/// credentials token, used once) or holds another client's subject token.
async fn actor(
    app: &App,
    client: &Client,
    params: &Params,
    subject: &Map<String, Value>,
) -> Result<Option<String>, OAuthError> {
    if let Some(actor_token) = params.single("actor_token")? {
        let claims = verify(app, actor_token, "actor_token").await?;
        if text(&claims, "client_id") != client.id || text(&claims, "sub") != client.id {
            return Err(OAuthError::invalid_request(
                "the actor_token is not the requesting client's own token",
            ));
        }
        // An actor token is shown once: a copy of it proves nothing more.
        let (jti, exp) = (
            format!("actor_token:{}", text(&claims, "jti")),
            claims.get("exp").and_then(Value::as_i64).unwrap_or(0),
        );
        let client_id = client.id.clone();
        let fresh = app
            .store()
            .run(move |s| s.record_assertion_jti(&client_id, &jti, exp))
            .await
            .map_err(|e| OAuthError::temporarily_unavailable(&e))?;
        if !fresh {
            return Err(OAuthError::invalid_request(
                "the actor_token was used before",
            ));
        }
        return Ok(Some(client.id.clone()));
    }
    Ok((text(subject, "client_id") != client.id).then(|| client.id.clone()))
}

/// The scope of the result: what was asked (else everything possible) within what the person
/// granted and the client's registered scopes, then what RBAC allows for the target — to the
/// person's roles, and with an actor to the actor's roles as well. Never more.
fn scope(
    app: &App,
    client: &Client,
    params: &Params,
    granted: &str,
    user_roles: &[String],
    actor: Option<&str>,
    audience: &str,
) -> Result<String, OAuthError> {
    let granted: Vec<&str> = granted.split(' ').filter(|s| !s.is_empty()).collect();
    let requested: Scope = match params.single("scope")? {
        Some(text) => Scope::parse(text)
            .map_err(|bad| OAuthError::invalid_scope(format!("`{bad}` is not a valid scope")))?,
        None => Scope::default(),
    };
    for wanted in requested.tokens() {
        if !granted.contains(&wanted.as_str()) {
            return Err(OAuthError::invalid_scope(format!(
                "scope `{wanted}` was not granted by the person"
            )));
        }
        if !client.scopes.contains(wanted) {
            return Err(OAuthError::invalid_scope(format!(
                "scope `{wanted}` is not allowed for this client"
            )));
        }
    }
    // No refresh token comes from an exchange: offline_access means nothing here.
    let candidates: Vec<String> = if requested.is_empty() {
        granted
            .iter()
            .filter(|s| client.scopes.iter().any(|c| c == *s))
            .map(|s| (*s).to_string())
            .collect()
    } else {
        requested.tokens().to_vec()
    }
    .into_iter()
    .filter(|s| s != "offline_access")
    .collect();
    let model = app.authorization().model();
    let mut effective = model.effective_scope(&candidates, user_roles, audience);
    if actor.is_some() {
        let actors = model.effective_scope(&candidates, &client.roles, audience);
        effective.retain(|s| actors.contains(s));
    }
    if effective.is_empty() && !requested.is_empty() {
        return Err(OAuthError::invalid_scope(
            "none of the requested scopes is permitted for this person, client and audience",
        ));
    }
    Ok(effective.join(" "))
}

pub async fn exchange(
    app: &App,
    client: &Client,
    params: &Params,
    dpop_jkt: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    check_types(params)?;
    let subject = verify(app, params.required("subject_token")?, "subject_token").await?;
    let person = text(&subject, "sub").to_string();
    if person.is_empty() || person == text(&subject, "client_id") {
        return Err(OAuthError::invalid_request(
            "the subject_token does not represent a person",
        ));
    }
    // A DPoP-bound subject token is exchanged only by the holder of its key (RFC 9449 §7).
    if let Some(jkt) = crate::oauth::userinfo::bound_key(&subject) {
        if dpop_jkt != Some(jkt) {
            return Err(OAuthError::invalid_request(
                "the subject_token is DPoP-bound: send a proof of its key",
            ));
        }
    }
    let jti = text(&subject, "jti").to_string();
    let grant = app
        .store()
        .run(move |s| s.find_grant_of_access_token(&jti))
        .await
        .map_err(|e| OAuthError::temporarily_unavailable(&e))?
        .filter(|g| g.user_id == person)
        .ok_or_else(|| {
            OAuthError::invalid_request("the subject_token's grant is no longer in force")
        })?;
    let actor = actor(app, client, params, &subject).await?;
    let prior_act = subject.get("act");
    let settings = app.settings();
    if let Some(actor) = &actor {
        if !delegation::allows(subject.get("may_act"), actor) {
            return Err(OAuthError::invalid_request(
                "the person has not delegated to this client (may_act)",
            ));
        }
        if delegation::chain(prior_act).len() >= settings.token_exchange_max_chain {
            return Err(OAuthError::invalid_request(format!(
                "a delegation chain may have at most {} actors",
                settings.token_exchange_max_chain
            )));
        }
    }
    let audience = target(app, client, params)?;
    let user_id = person.clone();
    let user = app
        .store()
        .run(move |s| s.find_user(&user_id))
        .await
        .map_err(|e| OAuthError::temporarily_unavailable(&e))?
        .filter(|u| !u.disabled)
        .ok_or_else(|| OAuthError::invalid_request("the subject_token's person is disabled"))?;
    let scope_text = scope(
        app,
        client,
        params,
        &grant.scope,
        &user.roles,
        actor.as_deref(),
        &audience,
    )?;
    let now = app.now();
    let model = app.authorization().model();
    let resource = model.resource(&audience);
    // Short-lived, and never past the token it came from.
    let ttl = i64::try_from(settings.token_exchange_token_ttl).unwrap_or(300);
    let ttl = resource
        .and_then(|r| r.access_token_ttl)
        .map_or(ttl, |t| t.min(ttl));
    let subject_exp = subject.get("exp").and_then(Value::as_i64).unwrap_or(now);
    let exp = (now + ttl).min(subject_exp);
    let alg = resource
        .and_then(|r| r.signing_alg)
        .unwrap_or(settings.access_token_signing_alg);
    let act = match &actor {
        Some(actor) => Some(delegation::act_for(actor, prior_act)),
        None => prior_act.cloned(),
    };
    let may_act = delegation::may_act(&scope_text);
    let jti = new_jti().map_err(|e| OAuthError::server_error(&e))?;
    let access_token = access_token::sign(
        &app.keyring().current(),
        alg,
        &AccessTokenClaims {
            iss: &settings.issuer,
            sub: &person,
            aud: &audience,
            exp,
            iat: now,
            jti: &jti,
            client_id: &client.id,
            scope: &scope_text,
            auth_time: subject.get("auth_time").and_then(Value::as_i64),
            roles: Some(&user.roles),
            cnf: dpop_jkt.map(|jkt| access_token::Confirmation { jkt }),
            act: act.as_ref(),
            may_act: may_act.as_ref(),
        },
    )?;
    let record = ExchangeRecord {
        jti: jti.clone(),
        grant_id: grant.grant_id.clone(),
        user_id: person.clone(),
        scope: grant.scope.clone(),
        expires_at: exp,
    };
    let recorded = app
        .store()
        .run(move |s| s.record_token_exchange(&record))
        .await
        .map_err(|e| OAuthError::temporarily_unavailable(&e))?;
    if !recorded {
        return Err(OAuthError::invalid_request(
            "the subject_token's grant is no longer in force",
        ));
    }
    app.audit().record(
        "token_exchanged",
        Some(&client.id),
        Some(&person),
        serde_json::json!({
            "subject_client_id": text(&subject, "client_id"),
            "actor": actor,
            "chain": delegation::chain(act.as_ref()),
            "audience": audience,
            "scope": scope_text,
            "jti": jti,
        }),
    );
    Ok(TokenResponse {
        access_token,
        token_type: access_token::token_type(dpop_jkt.is_some()),
        expires_in: exp - now,
        scope: scope_text,
        refresh_token: None,
        id_token: None,
        issued_token_type: Some(ACCESS_TOKEN_TYPE),
        issued: Issued {
            subject: person,
            audience,
            jti,
        },
    })
}
