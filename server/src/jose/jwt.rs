//! JWS Compact Serialization (RFC 7515 §7.1) of JWTs, signed with ring on the hot path.

use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::keys::{Signer, Verifier};
use super::{b64, b64_decode, Algorithm};

/// `typ` of RFC 9068 §2.1 access tokens.
pub const TYP_ACCESS_TOKEN: &str = "at+jwt";
/// `typ` of ID tokens and other plain JWTs.
pub const TYP_JWT: &str = "JWT";

/// A key that signs: its id, algorithm and private key.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    signer: Signer,
    rng: SystemRandom,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

impl SigningKey {
    pub fn new(kid: String, alg: Algorithm, signer: Signer) -> SigningKey {
        SigningKey {
            kid,
            alg,
            signer,
            rng: SystemRandom::new(),
        }
    }

    /// Signs `claims` as a compact JWS with header `{alg, typ, kid}`.
    pub fn sign_jwt<C: Serialize>(&self, typ: &str, claims: &C) -> Result<String, String> {
        let header = serde_json::to_vec(&Header {
            alg: self.alg.as_str(),
            typ,
            kid: &self.kid,
        })
        .map_err(|e| e.to_string())?;
        let payload = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let mut token = String::with_capacity((header.len() + payload.len()) * 4 / 3 + 360);
        token.push_str(&b64(&header));
        token.push('.');
        token.push_str(&b64(&payload));
        let signature = self.signer.sign(&self.rng, token.as_bytes())?;
        token.push('.');
        token.push_str(&b64(&signature));
        Ok(token)
    }
}

/// The parts of a verified JWT.
#[derive(Debug, Clone)]
pub struct VerifiedJwt {
    pub kid: String,
    pub typ: Option<String>,
    pub claims: Map<String, Value>,
}

#[derive(Deserialize)]
struct IncomingHeader {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<Value>,
}

/// Verifies a compact JWS against our own keys; `None` for anything malformed, unknown or
/// forged. Claims (time, audience) are the caller's to check.
pub fn verify<'k>(
    token: &str,
    lookup: impl Fn(&str) -> Option<&'k Verifier>,
) -> Option<VerifiedJwt> {
    let mut parts = token.split('.');
    let (header_b64, payload_b64, signature_b64) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: IncomingHeader = serde_json::from_slice(&b64_decode(header_b64)?).ok()?;
    // RFC 7515 §4.1.11: we understand no critical extensions.
    if header.crit.is_some() {
        return None;
    }
    let alg = Algorithm::parse(&header.alg)?;
    // A missing kid is looked up as "" (a caller may map it to a sole key).
    let kid = header.kid.unwrap_or_default();
    let verifier = lookup(&kid)?;
    if verifier.algorithm() != alg {
        return None;
    }
    let signature = b64_decode(signature_b64)?;
    let signed_len = header_b64.len() + 1 + payload_b64.len();
    let signed = token.get(..signed_len)?;
    if !verifier.verify(signed.as_bytes(), &signature) {
        return None;
    }
    let claims: Map<String, Value> = serde_json::from_slice(&b64_decode(payload_b64)?).ok()?;
    Some(VerifiedJwt {
        kid,
        typ: header.typ,
        claims,
    })
}
