//! JWT access tokens, RFC 9068.

use serde::Serialize;

use crate::error::OAuthError;
use crate::jose::jwt::TYP_ACCESS_TOKEN;
use crate::jose::keyring::Keyring;
use crate::jose::Algorithm;

/// RFC 9068 §2.2 claims. Time claims are integer seconds (RFC 7519 NumericDate); several
/// validators reject fractions.
#[derive(Debug, Serialize)]
pub struct AccessTokenClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub exp: i64,
    pub iat: i64,
    pub jti: &'a str,
    pub client_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<&'a [String]>,
    /// RFC 9449 §6.1: the thumbprint of the key the token is bound to (DPoP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation<'a>>,
    /// RFC 8693 §4.1: who acts for `sub` (nested for a chain), in an exchanged token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub act: Option<&'a serde_json::Value>,
    /// RFC 8693 §4.4: who `sub` allows to act for them (a delegation they consented to).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub may_act: Option<&'a serde_json::Value>,
}

/// RFC 7800 §3.1 `cnf`, with the RFC 9449 §6.1 `jkt` member.
#[derive(Debug, Serialize)]
pub struct Confirmation<'a> {
    pub jkt: &'a str,
}

/// RFC 9449 §5: the `token_type` of a DPoP-bound token, and of a bearer one.
pub fn token_type(bound: bool) -> &'static str {
    if bound {
        "DPoP"
    } else {
        "Bearer"
    }
}

/// Signs the claims with the active key for `alg`, header `typ: at+jwt` (RFC 9068 §2.1).
pub fn sign(
    keyring: &Keyring,
    alg: Algorithm,
    claims: &AccessTokenClaims<'_>,
) -> Result<String, OAuthError> {
    let key = keyring.signing_key(alg).ok_or_else(|| {
        OAuthError::temporarily_unavailable(&format!("no active {} signing key", alg.as_str()))
    })?;
    key.sign_jwt(TYP_ACCESS_TOKEN, claims)
        .map_err(|e| OAuthError::server_error(&e))
}
