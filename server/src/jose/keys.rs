//! Key material: generation, RFC 7638 thumbprints, and the ring key pairs that sign.

use ring::rand::SystemRandom;
use ring::signature::{
    self, EcdsaKeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents, UnparsedPublicKey,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Map, Value};

use super::{b64, b64_decode, Algorithm};

/// A freshly generated key: PKCS#8 (EC) or PKCS#1 (RSA) DER, and its public JWK.
pub struct GeneratedKey {
    pub alg: Algorithm,
    pub kid: String,
    pub private_der: Vec<u8>,
    pub public_jwk: Map<String, Value>,
}

/// Generates a key: ES256 on P-256, RS256 with a 2048-bit modulus (RFC 7518 §3.3 minimum).
pub fn generate(alg: Algorithm) -> Result<GeneratedKey, String> {
    let (private_der, mut jwk) = match alg {
        Algorithm::Es256 => {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| "P-256 key generation failed".to_string())?;
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .map_err(|e| format!("P-256 key rejected: {e}"))?;
            // Uncompressed point: 0x04 || x || y.
            let point = pair.public_key().as_ref();
            let (x, y) = match point {
                [4, rest @ ..] if rest.len() == 64 => rest.split_at(32),
                _ => return Err("unexpected P-256 public key encoding".into()),
            };
            let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)});
            (pkcs8.as_ref().to_vec(), jwk)
        }
        Algorithm::Rs256 => {
            use josekit::jwk::alg::rsa::RsaKeyPair as JoseRsa;
            use josekit::jwk::KeyPair as _;
            let pair = JoseRsa::generate(2048).map_err(|e| format!("RSA generation: {e}"))?;
            let public = pair.to_jwk_public_key();
            let n = public.parameter("n").cloned().unwrap_or(Value::Null);
            let e = public.parameter("e").cloned().unwrap_or(Value::Null);
            (
                pair.to_der_private_key(),
                json!({"kty": "RSA", "n": n, "e": e}),
            )
        }
    };
    let kid = thumbprint(&jwk)?;
    if let Value::Object(map) = &mut jwk {
        map.insert("kid".into(), Value::String(kid.clone()));
        map.insert("use".into(), Value::String("sig".into()));
        map.insert("alg".into(), Value::String(alg.as_str().into()));
    }
    let public_jwk = match jwk {
        Value::Object(map) => map,
        _ => return Err("JWK is not an object".into()),
    };
    // Refuse to store a key that cannot sign.
    Signer::from_der(alg, &private_der)?;
    Ok(GeneratedKey {
        alg,
        kid,
        private_der,
        public_jwk,
    })
}

/// RFC 7638 JWK thumbprint: SHA-256 over the required members in lexicographic order.
pub fn thumbprint(jwk: &Value) -> Result<String, String> {
    let member = |name: &str| -> Result<&str, String> {
        jwk.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("JWK lacks `{name}`"))
    };
    let canonical = match member("kty")? {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            member("crv")?,
            member("x")?,
            member("y")?
        ),
        "RSA" => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            member("e")?,
            member("n")?
        ),
        "OKP" => format!(
            r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
            member("crv")?,
            member("x")?
        ),
        other => return Err(format!("unsupported kty {other}")),
    };
    Ok(b64(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_bytes(),
    )
    .as_ref()))
}

/// A private key ready to sign. ES256 signs with ring (fastest here); RS256 with OpenSSL,
/// whose RSA is about 2.5 times faster than ring's on this hardware (docs/performance.md).
pub enum Signer {
    Es256(Box<EcdsaKeyPair>),
    Rs256(RsaSigner),
}

/// An RSA key for OpenSSL. Each worker thread keeps its own signing context, initialised
/// once: OpenSSL's RSA blinding belongs to the thread that first used a key (other threads
/// would pay for a fresh blinding on every signature), and setting up an OpenSSL 3 signing
/// context (algorithm fetches, key export to the provider) costs about as much as a tenth of
/// the signature itself. The message digest is computed with ring.
pub struct RsaSigner {
    der: Vec<u8>,
    id: u64,
}

type PrivateKey = openssl::pkey::PKey<openssl::pkey::Private>;
type SigningContext = openssl::pkey_ctx::PkeyCtx<openssl::pkey::Private>;

thread_local! {
    static RSA_CONTEXTS: std::cell::RefCell<Vec<(u64, SigningContext)>> = const { std::cell::RefCell::new(Vec::new()) };
}

static NEXT_RSA_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn rsa_context(der: &[u8]) -> Result<SigningContext, String> {
    let key =
        PrivateKey::private_key_from_der(der).map_err(|e| format!("RS256 key rejected: {e}"))?;
    let mut context = SigningContext::new(&key).map_err(|e| format!("RS256 context: {e}"))?;
    context
        .sign_init()
        .map_err(|e| format!("RS256 context: {e}"))?;
    // RSASSA-PKCS1-v1_5 over a SHA-256 digest (RFC 7518 §3.3).
    context
        .set_rsa_padding(openssl::rsa::Padding::PKCS1)
        .and_then(|()| context.set_signature_md(openssl::md::Md::sha256()))
        .map_err(|e| format!("RS256 context: {e}"))?;
    Ok(context)
}

impl RsaSigner {
    fn new(der: &[u8]) -> Result<RsaSigner, String> {
        rsa_context(der)?;
        Ok(RsaSigner {
            der: der.to_vec(),
            id: NEXT_RSA_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        let digest = ring::digest::digest(&ring::digest::SHA256, input);
        RSA_CONTEXTS.with(|cell| {
            let mut contexts = cell.borrow_mut();
            let index = match contexts.iter().position(|(id, _)| *id == self.id) {
                Some(i) => i,
                None => {
                    // Few keys sign at once (one active per algorithm); forget old ones.
                    if contexts.len() >= 4 {
                        contexts.remove(0);
                    }
                    contexts.push((self.id, rsa_context(&self.der)?));
                    contexts.len() - 1
                }
            };
            let (_, context) = contexts.get_mut(index).ok_or("RS256 context cache")?;
            let mut signature = Vec::with_capacity(256);
            context
                .sign_to_vec(digest.as_ref(), &mut signature)
                .map_err(|_| "RS256 signing failed".to_string())?;
            Ok(signature)
        })
    }
}

impl Signer {
    pub fn from_der(alg: Algorithm, der: &[u8]) -> Result<Signer, String> {
        match alg {
            Algorithm::Es256 => EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                der,
                &SystemRandom::new(),
            )
            .map(|pair| Signer::Es256(Box::new(pair)))
            .map_err(|e| format!("ES256 key rejected: {e}")),
            Algorithm::Rs256 => {
                // Same acceptance rules as before the switch: ring validates the key.
                RsaKeyPair::from_pkcs8(der)
                    .or_else(|_| RsaKeyPair::from_der(der))
                    .map_err(|e| format!("RS256 key rejected: {e}"))?;
                RsaSigner::new(der).map(Signer::Rs256)
            }
        }
    }

    /// The JWS signature over `input` (RFC 7515 §5.1; RFC 7518 §3.3, §3.4).
    pub fn sign(&self, rng: &SystemRandom, input: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Signer::Es256(pair) => pair
                .sign(rng, input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "ES256 signing failed".to_string()),
            Signer::Rs256(key) => key.sign(input),
        }
    }
}

/// A public key from a published JWK, to verify our own tokens.
pub enum Verifier {
    Es256(UnparsedPublicKey<Vec<u8>>),
    Rs256 { n: Vec<u8>, e: Vec<u8> },
}

impl Verifier {
    pub fn from_jwk(jwk: &Map<String, Value>) -> Result<Verifier, String> {
        let field = |name: &str| {
            jwk.get(name)
                .and_then(Value::as_str)
                .and_then(b64_decode)
                .ok_or_else(|| format!("JWK lacks `{name}`"))
        };
        match jwk.get("kty").and_then(Value::as_str) {
            Some("EC") => {
                let mut point = vec![4u8];
                point.extend(field("x")?);
                point.extend(field("y")?);
                Ok(Verifier::Es256(UnparsedPublicKey::new(
                    &signature::ECDSA_P256_SHA256_FIXED,
                    point,
                )))
            }
            Some("RSA") => Ok(Verifier::Rs256 {
                n: field("n")?,
                e: field("e")?,
            }),
            _ => Err("unsupported JWK".into()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Verifier::Es256(_) => Algorithm::Es256,
            Verifier::Rs256 { .. } => Algorithm::Rs256,
        }
    }

    pub fn verify(&self, input: &[u8], sig: &[u8]) -> bool {
        match self {
            Verifier::Es256(key) => key.verify(input, sig).is_ok(),
            Verifier::Rs256 { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, input, sig)
                .is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 §3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn generated_keys_sign_and_verify() {
        for alg in Algorithm::ALL {
            let key = generate(alg).unwrap();
            assert_eq!(key.public_jwk["kid"], Value::String(key.kid.clone()));
            assert!(
                key.public_jwk.get("d").is_none(),
                "public JWK has no private part"
            );
            let signer = Signer::from_der(alg, &key.private_der).unwrap();
            let sig = signer.sign(&SystemRandom::new(), b"hello").unwrap();
            let verifier = Verifier::from_jwk(&key.public_jwk).unwrap();
            assert!(verifier.verify(b"hello", &sig));
            assert!(!verifier.verify(b"hellO", &sig));
        }
    }
}
