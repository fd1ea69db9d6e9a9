//! The device authorization grant at the token endpoint (RFC 8628 §3.4–3.5): the device polls
//! with its device code until its person approves or denies, then gets tokens once.

use super::{tokens_for_user, UserGrant};
use crate::app::App;
use crate::clients::Client;
use crate::error::{ErrorCode, OAuthError};
use crate::oauth::params::Params;
use crate::store::device::Poll;
use crate::store::grants::Consumed;
use crate::tokens::{new_jti, refresh_token, TokenResponse};

/// RFC 8628 §3.5: how much the interval grows at each `slow_down`.
const SLOW_DOWN_STEP: i64 = 5;

pub async fn exchange(
    app: &App,
    client: &Client,
    params: &Params,
    dpop_jkt: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    let device_code = params.required("device_code")?;
    let hash = refresh_token::hash(device_code);
    let now = app.now();
    let polled = {
        let (hash, client_id) = (hash.clone(), client.id.clone());
        app.store()
            .run(move |s| s.poll_device(&hash, &client_id, now, SLOW_DOWN_STEP))
            .await
            .map_err(|e| OAuthError::temporarily_unavailable(&e))?
    };
    let invalid = || OAuthError::invalid_grant("the device code is invalid or was already used");
    let record = match polled {
        Poll::Approved(record) => record,
        Poll::Pending => {
            return Err(OAuthError::new(
                ErrorCode::AuthorizationPending,
                "the person has not approved the request yet",
            ))
        }
        Poll::SlowDown => {
            return Err(OAuthError::new(
                ErrorCode::SlowDown,
                "polling too fast: the interval grew by 5 seconds",
            ))
        }
        Poll::Denied => {
            return Err(OAuthError::new(
                ErrorCode::AccessDenied,
                "the person denied the request",
            ))
        }
        Poll::Expired => {
            return Err(OAuthError::new(
                ErrorCode::ExpiredToken,
                "the device code expired; start again",
            ))
        }
        Poll::Used | Poll::Unknown => return Err(invalid()),
    };
    let (Some(user_id), Some(grant_id), Some(auth_time)) = (
        record.user_id.as_deref(),
        record.grant_id.as_deref(),
        record.auth_time,
    ) else {
        return Err(invalid());
    };
    let jti = new_jti().map_err(|e| OAuthError::server_error(&e))?;
    let (response, first_refresh_token) = tokens_for_user(
        app,
        client,
        UserGrant {
            user_id,
            grant_id,
            scope: &record.scope,
            grant_scope: &record.scope,
            audience: &record.audience,
            auth_time,
            nonce: None,
            jti: &jti,
            dpop_jkt,
        },
    )
    .await?;
    let grant = grant_id.to_string();
    let redeemed = app
        .store()
        .run(move |s| s.redeem_device(&hash, &grant, &jti, first_refresh_token.as_ref()))
        .await
        .map_err(|e| OAuthError::temporarily_unavailable(&e))?;
    match redeemed {
        Consumed::Fresh(_) => Ok(response),
        // Two polls raced for the tokens: the device code was presented twice, as a code
        // redeemed twice, and what it produced is revoked (RFC 9700 §4.2.4).
        Consumed::Reused(record) => {
            let ids = (
                record.client_id.as_str(),
                record.user_id.as_deref().unwrap_or_default(),
                grant_id,
            );
            Err(
                super::revoke_on_reuse(app, "device_code_reuse_detected", true, ids, invalid())
                    .await,
            )
        }
        Consumed::Revoked | Consumed::Unknown => Err(invalid()),
    }
}
