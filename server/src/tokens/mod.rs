//! Tokens we issue: JWT access tokens (RFC 9068), and what the token endpoint returns.

pub mod access_token;
pub mod deny_list;
pub mod id_token;
pub mod refresh_token;

use serde::Serialize;

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// RFC 8693 §2.2.1: what a token exchange issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
    /// What was issued, for the audit log (never sent).
    #[serde(skip)]
    pub issued: Issued,
}

/// The facts of an issuance the audit log records: never the token itself.
#[derive(Debug, Default, Clone)]
pub struct Issued {
    pub subject: String,
    pub audience: String,
    pub jti: String,
}

/// 128 random bits, base64url: a token identifier (`jti`) that will not repeat.
pub fn new_jti() -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no system randomness".to_string())?;
    Ok(crate::jose::b64(&bytes))
}
