//! The token endpoint's grant types (RFC 6749 §4): parse, authenticate the client, exchange.

pub mod authorization_code;
pub mod client_credentials;
pub mod device_code;
pub mod refresh_token;
pub mod token_exchange;

use std::net::IpAddr;
use std::sync::Arc;

use super::client_auth;
use super::dpop;
use super::params::Params;
use super::uri;
use crate::app::App;
use crate::clients::{Client, GrantType};
use crate::error::{Challenge, ErrorCode, OAuthError};
use crate::limits::Limit;
use crate::tokens::access_token::{self, AccessTokenClaims};
use crate::tokens::id_token::{self, IdTokenClaims};
use crate::tokens::refresh_token as refresh;
use crate::tokens::TokenResponse;

/// Handles a token request (RFC 6749 §3.2) whose form body is `params`, from `address` (the
/// client's network address, for the limits on failed authentications).
pub async fn token_request(
    app: &App,
    authorization: Option<&str>,
    params: &Params,
    address: IpAddr,
    proof: dpop::Presented<'_>,
) -> Result<(GrantType, Arc<Client>, TokenResponse), OAuthError> {
    let grant_type = match params.required("grant_type")? {
        "client_credentials" => GrantType::ClientCredentials,
        "authorization_code" => GrantType::AuthorizationCode,
        "refresh_token" => GrantType::RefreshToken,
        crate::clients::DEVICE_CODE_GRANT => GrantType::DeviceCode,
        crate::clients::TOKEN_EXCHANGE_GRANT => GrantType::TokenExchange,
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
    let client = authenticate_within_limits(app, &presented, address).await?;
    if !client.allows_grant(grant_type) {
        return Err(OAuthError::unauthorized_client(format!(
            "this client may not use the {} grant",
            grant_type.as_str()
        )));
    }
    // RFC 9449 §5: a proof binds what is issued to its key; some clients must send one.
    let token_endpoint = format!("{}{}", app.settings().issuer, super::discovery::TOKEN_PATH);
    let target = dpop::Target {
        method: "POST",
        url: &token_endpoint,
    };
    let proof = dpop::accept(app, proof, &target, Challenge::None).await?;
    if proof.is_none() && client.dpop_bound_access_tokens {
        return Err(OAuthError::invalid_dpop_proof(
            "this client must send a DPoP proof with its token requests",
        ));
    }
    let jkt = proof.as_ref().map(|p| p.jkt.as_str());
    let response = match grant_type {
        GrantType::ClientCredentials => client_credentials::exchange(app, &client, params, jkt)?,
        GrantType::AuthorizationCode => {
            authorization_code::exchange(app, &client, params, jkt).await?
        }
        GrantType::RefreshToken => refresh_token::exchange(app, &client, params, jkt).await?,
        GrantType::DeviceCode => device_code::exchange(app, &client, params, jkt).await?,
        GrantType::TokenExchange => token_exchange::exchange(app, &client, params, jkt).await?,
    };
    // Unused dynamic clients expire (RFC 7591 registrations nobody looks after).
    app.clients().note_use(&client);
    Ok((grant_type, client, response))
}

/// Authenticates the client within the limits on guessing (`client_auth::authenticate`), then
/// counts the request against the client's budget — once it is authenticated, so nobody can
/// spend another client's budget by sending requests in its name.
async fn authenticate_within_limits(
    app: &App,
    presented: &client_auth::Presented,
    address: IpAddr,
) -> Result<Arc<Client>, OAuthError> {
    let client = client_auth::authenticate(app, presented, address).await?;
    let per_minute = app.settings().token_rate_limit_per_minute;
    if per_minute > 0 {
        let limit = Limit {
            max: per_minute,
            window: 60,
        };
        over_limit(app, &format!("token:{}", client.id), 1, limit).await?;
    }
    Ok(client)
}

/// Adds `amount` to a token-endpoint counter: `429` with `Retry-After` when over its limit.
async fn over_limit(app: &App, key: &str, amount: u64, limit: Limit) -> Result<(), OAuthError> {
    match app.limiter().add(key, amount, limit, app.now()).await {
        Ok(_) => Ok(()),
        Err(retry_after) => {
            metrics::counter!("portcullis_rate_limited_total", "endpoint" => "token").increment(1);
            Err(OAuthError::too_many_requests(retry_after))
        }
    }
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

/// What a user-facing grant (code or refresh) issues tokens for.
pub struct UserGrant<'a> {
    pub user_id: &'a str,
    pub grant_id: &'a str,
    /// The scope of this access token (may be narrower than the grant's).
    pub scope: &'a str,
    /// The grant's scope, kept by the rotated refresh token (RFC 6749 §6).
    pub grant_scope: &'a str,
    pub audience: &'a str,
    pub auth_time: i64,
    pub nonce: Option<&'a str>,
    pub jti: &'a str,
    /// The key of the request's DPoP proof: the access token is bound to it, and a public
    /// client's refresh token too (RFC 9449 §5).
    pub dpop_jkt: Option<&'a str>,
}

/// Makes the access token (RFC 9068, `sub` = the user), an ID token when `openid` was granted
/// (Core §3.1.3.3), and a new refresh token when the client may refresh and `offline_access`
/// was granted (Core §11). Nothing is stored: the caller stores the refresh token's record in
/// the transaction that spends the code or refresh token presented, and answers only once it
/// committed.
pub async fn tokens_for_user(
    app: &App,
    client: &Client,
    grant: UserGrant<'_>,
) -> Result<(TokenResponse, Option<crate::store::grants::RefreshRecord>), OAuthError> {
    let user_id = grant.user_id.to_string();
    let user = app
        .store()
        .run(move |s| s.find_user(&user_id))
        .await
        .map_err(|e| OAuthError::temporarily_unavailable(&e))?
        .filter(|u| !u.disabled)
        .ok_or_else(|| OAuthError::invalid_grant("the user no longer exists or is disabled"))?;
    let settings = app.settings();
    let now = app.now();
    // RBAC with the user's roles as they are now (a revoked role narrows the next refresh).
    let model = app.authorization().model();
    let candidates: Vec<String> = grant
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let scope_text = model
        .effective_scope(&candidates, &user.roles, grant.audience)
        .join(" ");
    let resource = model.resource(grant.audience);
    let ttl = resource
        .and_then(|r| r.access_token_ttl)
        .unwrap_or_else(|| i64::try_from(settings.access_token_ttl).unwrap_or(3600));
    let alg = resource
        .and_then(|r| r.signing_alg)
        .unwrap_or(settings.access_token_signing_alg);
    // A delegation the person consented to: the agent it names may exchange this token.
    let may_act = crate::oauth::delegation::may_act(&scope_text);
    let keyring = app.keyring().current();
    let access_token = access_token::sign(
        &keyring,
        alg,
        &AccessTokenClaims {
            iss: &settings.issuer,
            sub: &user.id,
            aud: grant.audience,
            exp: now + ttl,
            iat: now,
            jti: grant.jti,
            client_id: &client.id,
            scope: &scope_text,
            auth_time: Some(grant.auth_time),
            roles: Some(&user.roles),
            cnf: grant.dpop_jkt.map(|jkt| access_token::Confirmation { jkt }),
            act: None,
            may_act: may_act.as_ref(),
        },
    )?;
    let scopes: Vec<&str> = scope_text.split(' ').collect();
    let id_token = if scopes.contains(&"openid") {
        Some(id_token::sign(
            &keyring,
            client
                .id_token_signed_response_alg
                .unwrap_or(settings.id_token_signing_alg),
            &IdTokenClaims {
                iss: &settings.issuer,
                sub: &user.id,
                aud: &client.id,
                exp: now + i64::try_from(settings.id_token_ttl).unwrap_or(3600),
                iat: now,
                auth_time: grant.auth_time,
                nonce: grant.nonce,
                at_hash: id_token::at_hash(&access_token),
            },
        )?)
    } else {
        None
    };
    // The grant (not this narrower request) decides whether refreshing goes on.
    let offline = grant.grant_scope.split(' ').any(|s| s == "offline_access");
    let (refresh_token, refresh_record) = if client.allows_grant(GrantType::RefreshToken) && offline
    {
        let token = refresh::generate().map_err(|e| OAuthError::server_error(&e))?;
        let record = crate::store::grants::RefreshRecord {
            token_hash: refresh::hash(&token),
            grant_id: grant.grant_id.to_string(),
            client_id: client.id.clone(),
            user_id: user.id.clone(),
            scope: grant.grant_scope.to_string(),
            audience: grant.audience.to_string(),
            auth_time: grant.auth_time,
            created_at: now,
            expires_at: now + i64::try_from(settings.refresh_token_ttl).unwrap_or(86400),
            used_at: None,
            revoked_at: None,
            access_token_jti: Some(grant.jti.to_string()),
            // A confidential client proves itself at every refresh; a public one by the key.
            dpop_jkt: if client.is_public() {
                grant.dpop_jkt.map(str::to_string)
            } else {
                None
            },
        };
        (Some(token), Some(record))
    } else {
        (None, None)
    };
    let response = TokenResponse {
        access_token,
        token_type: access_token::token_type(grant.dpop_jkt.is_some()),
        expires_in: ttl,
        scope: scope_text,
        refresh_token,
        id_token,
        issued_token_type: None,
        issued: crate::tokens::Issued {
            subject: user.id.clone(),
            audience: grant.audience.to_string(),
            jti: grant.jti.to_string(),
        },
    };
    Ok((response, refresh_record))
}

/// A code or refresh token presented after it was spent: possible theft. Audits it (as `kind`,
/// when `audit`) and revokes everything issued from the grant (RFC 9700 §4.2.4, §4.14.2).
pub(crate) async fn revoke_on_reuse(
    app: &App,
    kind: &str,
    audit: bool,
    (client_id, user_id, grant_id): (&str, &str, &str),
    error: OAuthError,
) -> OAuthError {
    if audit {
        app.audit().record(
            kind,
            Some(client_id),
            Some(user_id),
            serde_json::json!({ "grant_id": grant_id }),
        );
    }
    match app.revoke_grant(grant_id).await {
        Ok(()) => error,
        Err(e) => OAuthError::temporarily_unavailable(&e),
    }
}
