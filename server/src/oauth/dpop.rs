//! DPoP proofs (RFC 9449): a client proves, with each request, that it holds the private key
//! its tokens are bound to. Checked at the token endpoint and at `/userinfo`.

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

use crate::app::App;
use crate::error::{Challenge, ErrorCode, OAuthError};
use crate::jose::{b64, b64_decode};

/// The header that carries a proof (§4.1).
pub const HEADER: &str = "DPoP";
/// The header that carries a server nonce (§8).
pub const NONCE_HEADER: &str = "DPoP-Nonce";
/// §4.2: the proof's `typ`.
const TYP: &str = "dpop+jwt";
/// Asymmetric algorithms accepted for proofs (§4.3 check 5), as advertised in discovery.
pub const ALGORITHMS: [&str; 4] = ["ES256", "RS256", "PS256", "EdDSA"];
/// How far in the future a proof's `iat` may be (clock skew).
const FUTURE_SKEW: i64 = 5;

/// A verified proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 thumbprint of the proof's key: what tokens are bound to (`cnf.jkt`).
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
    pub ath: Option<String>,
    pub nonce: Option<String>,
}

/// Whether `text` can be a JWK SHA-256 thumbprint (RFC 7638), as `dpop_jkt` must be (§10).
pub fn is_thumbprint(text: &str) -> bool {
    text.len() == 43 && b64_decode(text).is_some_and(|bytes| bytes.len() == 32)
}

/// What a request is: the method and the URL without query and fragment (§4.3 checks 8–9).
pub struct Target<'a> {
    pub method: &'a str,
    pub url: &'a str,
}

/// Verifies one proof against the request it came with (§4.3), with `iat` at most `max_age`
/// seconds old. The replay check (§11.1) and the nonce (§8) are the caller's.
pub fn verify(proof: &str, target: &Target<'_>, now: i64, max_age: i64) -> Result<Proof, String> {
    let mut parts = proof.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the DPoP proof is not a compact JWS".into());
    };
    let header: Map<String, Value> = b64_decode(header_b64)
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or("the DPoP proof's header is not JSON")?;
    if header.get("typ").and_then(Value::as_str) != Some(TYP) {
        return Err("the DPoP proof's typ is not dpop+jwt".into());
    }
    if header.contains_key("crit") {
        return Err("the DPoP proof has critical header parameters".into());
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .filter(|a| ALGORITHMS.contains(a))
        .ok_or("the DPoP proof's alg is not one of ES256, RS256, PS256, EdDSA")?;
    let jwk = header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or("the DPoP proof has no jwk")?;
    if ["d", "p", "q", "dp", "dq", "qi", "k"]
        .iter()
        .any(|m| jwk.contains_key(*m))
    {
        return Err("the DPoP proof's jwk holds a private key".into());
    }
    let signature =
        b64_decode(signature_b64).ok_or("the DPoP proof's signature is not base64url")?;
    let signed = proof
        .get(..header_b64.len() + 1 + payload_b64.len())
        .ok_or("the DPoP proof is malformed")?;
    verify_signature(alg, jwk, signed.as_bytes(), &signature)?;
    let claims: Map<String, Value> = b64_decode(payload_b64)
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or("the DPoP proof's claims are not JSON")?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or("the DPoP proof has no usable jti")?;
    if text("htm") != Some(target.method) {
        return Err(format!("the DPoP proof's htm is not {}", target.method));
    }
    let htu = text("htu").ok_or("the DPoP proof has no htu")?;
    if !same_resource(htu, target.url) {
        return Err("the DPoP proof's htu is not this endpoint".into());
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or("the DPoP proof has no iat")?;
    if iat > now + FUTURE_SKEW || iat < now - max_age {
        return Err("the DPoP proof's iat is outside the accepted window".into());
    }
    Ok(Proof {
        jkt: crate::jose::keys::thumbprint(&Value::Object(jwk.clone()))?,
        jti: jti.to_string(),
        iat,
        ath: text("ath").map(str::to_string),
        nonce: text("nonce").map(str::to_string),
    })
}

/// The `ath` of an access token (§4.2): base64url of its SHA-256.
pub fn ath(access_token: &str) -> String {
    b64(ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes()).as_ref())
}

/// §4.3 check 9: `htu` equals the request URI without query and fragment, compared after
/// normalisation (RFC 3986 §6: scheme and host case, default ports).
fn same_resource(htu: &str, expected: &str) -> bool {
    let strip = |u: &str| -> Option<url::Url> {
        let mut url = url::Url::parse(u).ok()?;
        url.set_query(None);
        url.set_fragment(None);
        Some(url)
    };
    matches!((strip(htu), strip(expected)), (Some(a), Some(b)) if a == b)
}

/// A base64url member of a JWK, strictly: the thumbprint is computed over these exact strings.
fn member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    jwk.get(name)
        .and_then(Value::as_str)
        .filter(|v| {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .ok_or_else(|| format!("the DPoP proof's jwk has no usable `{name}`"))
}

fn verify_signature(
    alg: &str,
    jwk: &Map<String, Value>,
    signed: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    let decode = |name: &str| -> Result<Vec<u8>, String> {
        b64_decode(member(jwk, name)?).ok_or_else(|| format!("jwk `{name}` is not base64url"))
    };
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or_default();
    let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or_default();
    let verified = match (alg, kty, crv) {
        ("ES256", "EC", "P-256") => {
            let mut point = vec![4u8];
            point.extend(decode("x")?);
            point.extend(decode("y")?);
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, signature)
                .is_ok()
        }
        ("RS256" | "PS256", "RSA", _) => {
            let (n, e) = (decode("n")?, decode("e")?);
            let scheme: &signature::RsaParameters = if alg == "RS256" {
                &signature::RSA_PKCS1_2048_8192_SHA256
            } else {
                &signature::RSA_PSS_2048_8192_SHA256
            };
            RsaPublicKeyComponents { n: &n, e: &e }
                .verify(scheme, signed, signature)
                .is_ok()
        }
        ("EdDSA", "OKP", "Ed25519") => UnparsedPublicKey::new(&signature::ED25519, decode("x")?)
            .verify(signed, signature)
            .is_ok(),
        _ => return Err(format!("the DPoP proof's jwk does not fit alg {alg}")),
    };
    if verified {
        Ok(())
    } else {
        Err("the DPoP proof's signature does not verify".into())
    }
}

/// The `DPoP` headers of a request (§4.3 check 1: at most one).
#[derive(Debug, Clone, Copy)]
pub enum Presented<'a> {
    Absent,
    One(&'a str),
    Several,
}

/// How long a nonce stays valid: it is accepted in its window and the next.
const NONCE_WINDOW: i64 = 60;

/// The current server nonce (§8): an HMAC of the time window under a KEK-derived key, so every
/// instance makes and accepts the same without storing anything.
pub fn nonce(app: &App, now: i64) -> String {
    nonce_for(app, now.div_euclid(NONCE_WINDOW))
}

fn nonce_for(app: &App, window: i64) -> String {
    let tag = ring::hmac::sign(app.dpop_nonce_key(), &window.to_be_bytes());
    b64(tag.as_ref().get(..18).unwrap_or_default())
}

fn nonce_is_fresh(app: &App, nonce: &str, now: i64) -> bool {
    let window = now.div_euclid(NONCE_WINDOW);
    [window, window - 1].iter().any(|w| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            nonce_for(app, *w).as_bytes(),
            nonce.as_bytes(),
        ))
    })
}

/// Checks the proof of a request, if any: §4.3, the server nonce when required (§8), and that
/// its `jti` was not seen before (§11.1). `challenge` is how errors answer: none at the token
/// endpoint (400), DPoP at a resource (401).
pub async fn accept(
    app: &App,
    presented: Presented<'_>,
    target: &Target<'_>,
    challenge: Challenge,
) -> Result<Option<Proof>, OAuthError> {
    let fail = |message: String| {
        let mut error = OAuthError::invalid_dpop_proof(message);
        error.challenge = challenge;
        error
    };
    let text = match presented {
        Presented::Absent => return Ok(None),
        Presented::Several => return Err(fail("send one DPoP proof".into())),
        Presented::One(text) => text,
    };
    let settings = app.settings();
    let now = app.now();
    let max_age = i64::try_from(settings.dpop_proof_max_age).unwrap_or(60);
    let proof = verify(text, target, now, max_age).map_err(fail)?;
    if settings.use_dpop_nonce
        && !proof
            .nonce
            .as_deref()
            .is_some_and(|n| nonce_is_fresh(app, n, now))
    {
        let mut error = OAuthError::new(
            ErrorCode::UseDpopNonce,
            "use the nonce of the DPoP-Nonce header in the DPoP proof",
        );
        error.challenge = challenge;
        return Err(error);
    }
    let fresh = app
        .remember_dpop_proof(&proof.jkt, &proof.jti, proof.iat + max_age + FUTURE_SKEW)
        .await
        .map_err(|e| OAuthError::temporarily_unavailable(&e))?;
    if !fresh {
        return Err(fail("this DPoP proof was used before".into()));
    }
    Ok(Some(proof))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    fn ec_key() -> (EcdsaKeyPair, Value) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        let point = key.public_key().as_ref();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        });
        (key, jwk)
    }

    fn sign_es256(key: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = ring::rand::SystemRandom::new();
        let signature = key.sign(&rng, input.as_bytes()).unwrap();
        format!("{input}.{}", b64(signature.as_ref()))
    }

    const URL: &str = "https://auth.example.com/token";
    const TARGET: Target<'static> = Target {
        method: "POST",
        url: URL,
    };

    fn claims(now: i64) -> Value {
        serde_json::json!({"jti": "one", "htm": "POST", "htu": URL, "iat": now})
    }

    #[test]
    fn a_good_proof_names_its_key() {
        let (key, jwk) = ec_key();
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        let proof = verify(&sign_es256(&key, &header, &claims(1000)), &TARGET, 1000, 60).unwrap();
        assert_eq!(proof.jkt, crate::jose::keys::thumbprint(&jwk).unwrap());
        // The query of htu does not matter; its host's case does not either.
        let mut with_query = claims(1000);
        with_query["htu"] = "https://AUTH.example.com:443/token?x=1".into();
        assert!(verify(&sign_es256(&key, &header, &with_query), &TARGET, 1000, 60).is_ok());
    }

    #[test]
    fn every_check_refuses_what_it_should() {
        let (key, jwk) = ec_key();
        let good = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        let check = |header: &Value, claims: &Value| {
            verify(&sign_es256(&key, header, claims), &TARGET, 1000, 60)
        };
        let mut bad_typ = good.clone();
        bad_typ["typ"] = "JWT".into();
        assert!(check(&bad_typ, &claims(1000)).is_err());
        let mut hs = good.clone();
        hs["alg"] = "HS256".into();
        assert!(check(&hs, &claims(1000)).is_err());
        let mut private = good.clone();
        private["jwk"]["d"] = "AAAA".into();
        assert!(check(&private, &claims(1000)).is_err());
        let (_, other_jwk) = ec_key();
        let mut foreign = good.clone();
        foreign["jwk"] = other_jwk;
        assert!(
            check(&foreign, &claims(1000)).is_err(),
            "signed by another key"
        );
        for (name, value) in [
            ("htm", Value::from("GET")),
            ("htu", Value::from("https://auth.example.com/other")),
            ("iat", Value::from(900)),
            ("iat", Value::from(1010)),
            ("jti", Value::from("")),
        ] {
            let mut c = claims(1000);
            c[name] = value.clone();
            assert!(check(&good, &c).is_err(), "{name} = {value}");
        }
    }

    #[test]
    fn eddsa_proofs_verify() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.public_key().as_ref())});
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims(1000).to_string().as_bytes())
        );
        let proof = format!("{input}.{}", b64(key.sign(input.as_bytes()).as_ref()));
        assert!(verify(&proof, &TARGET, 1000, 60).is_ok());
    }
}
