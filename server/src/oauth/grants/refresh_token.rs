//! The refresh token grant, RFC 6749 §6, with rotation and reuse detection (RFC 9700
//! §4.14.2): every use returns a new refresh token; presenting a used one revokes the family.

use super::{tokens_for_user, UserGrant};
use crate::app::App;
use crate::clients::Client;
use crate::error::OAuthError;
use crate::oauth::params::Params;
use crate::oauth::scope::Scope;
use crate::store::grants::Consumed;
use crate::tokens::{new_jti, refresh_token, TokenResponse};

pub async fn exchange(
    app: &App,
    client: &Client,
    params: &Params,
    dpop_jkt: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    let presented = params.required("refresh_token")?;
    let requested =
        match params.single("scope")? {
            Some(text) => Some(Scope::parse(text).map_err(|bad| {
                OAuthError::invalid_scope(format!("`{bad}` is not a valid scope"))
            })?),
            None => None,
        };
    let now = app.now();
    let token_hash = refresh_token::hash(presented);
    let invalid = || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
    let found = {
        let token_hash = token_hash.clone();
        app.store()
            .run(move |s| s.find_refresh_token(&token_hash))
            .await
            .map_err(|e| OAuthError::temporarily_unavailable(&e))?
    };
    let Some(record) = found else {
        return Err(invalid());
    };
    // The client first: another client presenting this token (spent or not) learns nothing
    // and revokes nothing; only its own client's second use is reuse.
    if record.client_id != client.id {
        return Err(invalid());
    }
    if record.used_at.is_some() || record.revoked_at.is_some() {
        return Err(reused(app, &record).await);
    }
    // Checks before the token is spent, so a failed request does not look like theft.
    if now >= record.expires_at {
        return Err(invalid());
    }
    // RFC 9449 §5: a bound refresh token is used only with a proof of its key.
    if let Some(bound) = record.dpop_jkt.as_deref() {
        if dpop_jkt != Some(bound) {
            return Err(OAuthError::invalid_dpop_proof(
                "this refresh token needs a DPoP proof of the key it is bound to",
            ));
        }
    }
    // RFC 6749 §6: the scope may be narrowed, never widened; the grant itself keeps its scope.
    let granted: Vec<String> = record
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let scope = match requested {
        Some(scope) if !scope.is_empty() => {
            if let Some(extra) = scope.excess_over(&granted).first() {
                return Err(OAuthError::invalid_scope(format!(
                    "scope `{extra}` was not granted originally"
                )));
            }
            scope.to_string()
        }
        _ => record.scope.clone(),
    };
    let jti = new_jti().map_err(|e| OAuthError::server_error(&e))?;
    let (response, successor) = tokens_for_user(
        app,
        client,
        UserGrant {
            user_id: &record.user_id,
            grant_id: &record.grant_id,
            scope: &scope,
            grant_scope: &record.scope,
            audience: &record.audience,
            auth_time: record.auth_time,
            nonce: None,
            jti: &jti,
            dpop_jkt,
        },
    )
    .await?;
    // Spend it and store its successor in one transaction: of two concurrent rotations exactly
    // one wins, and a revocation of the grant cannot slip in between.
    let grant_id = record.grant_id.clone();
    let consumed = app
        .store()
        .run(move |s| s.rotate_refresh_token(&token_hash, &grant_id, now, successor.as_ref()))
        .await
        .map_err(|e| OAuthError::temporarily_unavailable(&e))?;
    match consumed {
        Consumed::Fresh(_) => Ok(response),
        Consumed::Reused(record) => Err(reused(app, &record).await),
        Consumed::Revoked | Consumed::Unknown => Err(invalid()),
    }
}

/// RFC 9700 §4.14.2: a rotated (or revoked) token presented again revokes the family.
async fn reused(app: &App, record: &crate::store::grants::RefreshRecord) -> OAuthError {
    let ids = (
        record.client_id.as_str(),
        record.user_id.as_str(),
        record.grant_id.as_str(),
    );
    let error = OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
    // A token already revoked (say, by RFC 7009) is not news: no new audit event.
    let audit = record.revoked_at.is_none();
    super::revoke_on_reuse(app, "refresh_reuse_detected", audit, ids, error).await
}
