//! ID tokens, OpenID Connect Core 1.0 §2 and §3.1.3.6.

use serde::Serialize;

use crate::error::OAuthError;
use crate::jose::jwt::TYP_JWT;
use crate::jose::keyring::Keyring;
use crate::jose::Algorithm;

#[derive(Debug, Serialize)]
pub struct IdTokenClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<&'a str>,
    pub at_hash: String,
}

/// `at_hash` (Core §3.1.3.6): the left half of the SHA-256 of the access token, base64url.
/// SHA-256 is the hash of both RS256 and ES256.
pub fn at_hash(access_token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes());
    crate::jose::b64(digest.as_ref().get(..16).unwrap_or_default())
}

pub fn sign(
    keyring: &Keyring,
    alg: Algorithm,
    claims: &IdTokenClaims<'_>,
) -> Result<String, OAuthError> {
    let key = keyring.signing_key(alg).ok_or_else(|| {
        OAuthError::temporarily_unavailable(&format!("no active {} signing key", alg.as_str()))
    })?;
    key.sign_jwt(TYP_JWT, claims)
        .map_err(|e| OAuthError::server_error(&e))
}
