//! The authorization code grant at the token endpoint, RFC 6749 §4.1.3 with PKCE (RFC 7636
//! §4.5–4.6). A code is single-use: a second use revokes everything issued from its grant.

use super::{tokens_for_user, UserGrant};
use crate::app::App;
use crate::clients::Client;
use crate::error::OAuthError;
use crate::oauth::params::Params;
use crate::oauth::pkce;
use crate::store::grants::Consumed;
use crate::tokens::{new_jti, refresh_token, TokenResponse};

pub async fn exchange(
    app: &App,
    client: &Client,
    params: &Params,
    dpop_jkt: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    let code = params.required("code")?.to_string();
    let redirect_uri = params.single("redirect_uri")?.map(str::to_string);
    let verifier = params.single("code_verifier")?.map(str::to_string);
    let now = app.now();
    let code_hash = refresh_token::hash(&code);
    let invalid =
        || OAuthError::invalid_grant("the authorization code is invalid, expired or already used");
    let found = {
        let code_hash = code_hash.clone();
        app.store()
            .run(move |s| s.find_code(&code_hash))
            .await
            .map_err(|e| OAuthError::temporarily_unavailable(&e))?
    };
    let Some(record) = found else {
        return Err(invalid());
    };
    // The client first: another client presenting this code (spent or not) learns nothing and
    // revokes nothing; only its own client's second use is reuse.
    if record.client_id != client.id {
        return Err(invalid());
    }
    if record.used_at.is_some() {
        return Err(reused(app, &record).await);
    }
    // Every check before the code is spent: a request that fails here (a missing verifier, a
    // wrong redirect URI) leaves the code to a corrected request.
    if now >= record.expires_at {
        return Err(invalid());
    }
    check_redirect_uri(client, &record.redirect_uri, redirect_uri.as_deref())?;
    if !record.code_challenge.is_empty() {
        let Some(verifier) = verifier else {
            return Err(OAuthError::invalid_grant(
                "code_verifier is required (PKCE)",
            ));
        };
        if !pkce::verify_s256(&verifier, &record.code_challenge) {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
    } else if verifier.is_some() {
        return Err(OAuthError::invalid_grant(
            "no code_challenge was sent with the authorization request",
        ));
    }
    check_code_binding(record.dpop_jkt.as_deref(), dpop_jkt)?;
    let jti = new_jti().map_err(|e| OAuthError::server_error(&e))?;
    let (response, first_refresh_token) = tokens_for_user(
        app,
        client,
        UserGrant {
            user_id: &record.user_id,
            grant_id: &record.grant_id,
            scope: &record.scope,
            grant_scope: &record.scope,
            audience: &record.audience,
            auth_time: record.auth_time,
            nonce: record.nonce.as_deref(),
            jti: &jti,
            dpop_jkt,
        },
    )
    .await?;
    // Spend it and store what it produced, in one transaction: of two concurrent redemptions
    // exactly one wins, and a revocation of the grant cannot slip in between.
    let grant_id = record.grant_id.clone();
    let consumed = app
        .store()
        .run(move |s| {
            s.redeem_code(
                &code_hash,
                &grant_id,
                now,
                &jti,
                first_refresh_token.as_ref(),
            )
        })
        .await
        .map_err(|e| OAuthError::temporarily_unavailable(&e))?;
    match consumed {
        Consumed::Fresh(_) => Ok(response),
        Consumed::Reused(record) => Err(reused(app, &record).await),
        Consumed::Revoked | Consumed::Unknown => Err(invalid()),
    }
}

/// RFC 6749 §4.1.3: `redirect_uri` is required, and must be identical, when the authorization
/// request included it (`registered` is then what it said; empty when it was left out, the
/// client having a single registered URI).
fn check_redirect_uri(
    client: &Client,
    registered: &str,
    presented: Option<&str>,
) -> Result<(), OAuthError> {
    match (registered.is_empty(), presented) {
        (false, None) => Err(OAuthError::invalid_request(
            "parameter `redirect_uri` is missing (the authorization request had one)",
        )),
        (false, Some(uri)) if uri != registered => Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        )),
        (true, Some(uri)) if !client.redirect_uris.iter().any(|r| r == uri) => Err(
            OAuthError::invalid_grant("redirect_uri does not match the authorization request"),
        ),
        _ => Ok(()),
    }
}

/// RFC 9449 §10: a code bound to a key (`dpop_jkt`, or a proof at `/par`) is redeemed only
/// with a proof of that key.
fn check_code_binding(bound: Option<&str>, proved: Option<&str>) -> Result<(), OAuthError> {
    match (bound, proved) {
        (None, _) => Ok(()),
        (Some(bound), Some(proved)) if bound == proved => Ok(()),
        (Some(_), Some(_)) => Err(OAuthError::invalid_dpop_proof(
            "the DPoP proof's key is not the one the authorization code is bound to",
        )),
        (Some(_), None) => Err(OAuthError::invalid_dpop_proof(
            "the authorization code is bound to a DPoP key: send a proof of it",
        )),
    }
}

/// RFC 6749 §4.1.2 / RFC 9700 §4.2.4: a second use revokes what the code already produced.
async fn reused(app: &App, record: &crate::store::grants::CodeRecord) -> OAuthError {
    let ids = (
        record.client_id.as_str(),
        record.user_id.as_str(),
        record.grant_id.as_str(),
    );
    let error =
        OAuthError::invalid_grant("the authorization code is invalid, expired or already used");
    super::revoke_on_reuse(app, "code_reuse_detected", true, ids, error).await
}
