//! The device authorization endpoint (RFC 8628 §3.1–3.2): a device without a browser gets a
//! device code to poll with, and a short user code its person types at `/device`.

use std::net::IpAddr;

use ring::rand::SecureRandom;
use serde::Serialize;

use super::client_auth;
use super::discovery::DEVICE_PATH;
use super::params::Params;
use super::scope::Scope;
use crate::app::App;
use crate::clients::GrantType;
use crate::error::OAuthError;
use crate::store::device::{DeviceRecord, PENDING};
use crate::tokens::refresh_token;

/// RFC 8628 §6.1: consonants only, no vowels (no words) and no look-alikes (0/O, 1/I).
const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LEN: usize = 8;

/// The answer of RFC 8628 §3.2.
#[derive(Debug, Serialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: i64,
    pub interval: i64,
}

/// A user code as typed: case, spaces and punctuation do not matter (RFC 8628 §6.1). `None`
/// when it cannot be one of ours.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// As shown to people: `BCDF-GHJK`.
pub fn display_user_code(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => code.to_string(),
    }
}

fn new_user_code() -> Result<String, String> {
    let mut bytes = [0u8; USER_CODE_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no system randomness".to_string())?;
    // 256 is not a multiple of 20: draws of 240 and above are redrawn, so every letter is as
    // likely as any other.
    let mut code = String::with_capacity(USER_CODE_LEN);
    let rng = ring::rand::SystemRandom::new();
    for mut byte in bytes {
        while byte >= 240 {
            let mut one = [0u8; 1];
            rng.fill(&mut one)
                .map_err(|_| "no system randomness".to_string())?;
            byte = one[0];
        }
        code.push(char::from(
            *ALPHABET.get(usize::from(byte % 20)).unwrap_or(&b'B'),
        ));
    }
    Ok(code)
}

/// RFC 8628 §3.1–3.2. The client authenticates as at the token endpoint (a public client by
/// its `client_id`); `scope` and `resource` as at `/authorize`.
pub async fn start(
    app: &App,
    authorization: Option<&str>,
    params: &Params,
    address: IpAddr,
) -> Result<DeviceAuthorization, OAuthError> {
    let presented = client_auth::presented(authorization, params)?;
    let client = client_auth::authenticate(app, &presented, address).await?;
    if !client.allows_grant(GrantType::DeviceCode) {
        return Err(OAuthError::unauthorized_client(
            "this client may not use the device authorization grant",
        ));
    }
    let requested = match params.single("scope")? {
        Some(text) => Scope::parse(text)
            .map_err(|bad| OAuthError::invalid_scope(format!("`{bad}` is not a valid scope")))?,
        None => Scope::default(),
    };
    if let Some(extra) = requested.excess_over(&client.scopes).first() {
        return Err(OAuthError::invalid_scope(format!(
            "scope `{extra}` is not allowed for this client"
        )));
    }
    let scope = if requested.is_empty() {
        client.scopes.join(" ")
    } else {
        requested.to_string()
    };
    super::delegation::check_requested(app, scope.split(' ')).await?;
    let audience = super::grants::resolve_audience(app, &client, params)?;
    let settings = app.settings();
    let now = app.now();
    let ttl = i64::try_from(settings.device_code_ttl).unwrap_or(600);
    let interval = i64::try_from(settings.device_poll_interval).unwrap_or(5);
    let device_code = refresh_token::generate().map_err(|e| OAuthError::server_error(&e))?;
    // A taken user code (among 20^8) is drawn again.
    for _ in 0..5 {
        let user_code = new_user_code().map_err(|e| OAuthError::server_error(&e))?;
        let record = DeviceRecord {
            device_code_hash: refresh_token::hash(&device_code),
            user_code: user_code.clone(),
            client_id: client.id.clone(),
            scope: scope.clone(),
            audience: audience.clone(),
            created_at: now,
            expires_at: now + ttl,
            interval_secs: interval,
            last_polled_at: None,
            status: PENDING.into(),
            user_id: None,
            auth_time: None,
            grant_id: None,
            access_token_jti: None,
            dpop_jkt: None,
        };
        match app
            .store()
            .run(move |s| s.insert_device_authorization(&record))
            .await
        {
            Ok(()) => {
                let shown = display_user_code(&user_code);
                let verification_uri = format!("{}{DEVICE_PATH}", settings.issuer);
                return Ok(DeviceAuthorization {
                    device_code,
                    verification_uri_complete: format!("{verification_uri}?user_code={shown}"),
                    user_code: shown,
                    verification_uri,
                    expires_in: ttl,
                    interval,
                });
            }
            Err(crate::store::StoreError::Conflict(_)) => continue,
            Err(e) => return Err(OAuthError::temporarily_unavailable(&e)),
        }
    }
    Err(OAuthError::server_error(&"no free user code after 5 draws"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_read_as_people_type_them() {
        assert_eq!(
            normalize_user_code("bcdf-ghjk").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(
            normalize_user_code(" BCDF GHJK ").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(
            normalize_user_code("bcdf.ghjk!").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(normalize_user_code("BCDFGHJ"), None, "too short");
        assert_eq!(normalize_user_code("BCDF-GHJA"), None, "a vowel");
        assert_eq!(display_user_code("BCDFGHJK"), "BCDF-GHJK");
        let code = new_user_code().unwrap();
        assert_eq!(normalize_user_code(&code), Some(code));
    }
}
