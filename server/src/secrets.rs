//! Client secrets: generation, keyed hashing, constant-time verification.
//!
//! Secrets are ≥ 256 bits of randomness (or ≥ 32 characters when supplied), so a single keyed
//! hash (HMAC-SHA256 under a key derived from the KEK) resists offline guessing: there is no
//! small space to search. A slow password hash here would cost milliseconds of CPU on every
//! token request for no gain (see docs/configuration.md).

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::jose::b64;

const PREFIX: &str = "hmac-sha256$";
pub const MIN_SUPPLIED_SECRET_LEN: usize = 32;

/// 32 random bytes, base64url: 43 characters, 256 bits of entropy.
pub fn generate_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no system randomness".to_string())?;
    Ok(b64(&bytes))
}

#[derive(Clone)]
pub struct SecretHasher {
    key: hmac::Key,
}

impl SecretHasher {
    pub fn new(key_bytes: &[u8; 32]) -> SecretHasher {
        SecretHasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, key_bytes),
        }
    }

    pub fn hash(&self, secret: &str) -> String {
        format!(
            "{PREFIX}{}",
            b64(hmac::sign(&self.key, secret.as_bytes()).as_ref())
        )
    }

    /// Constant-time: ring's `hmac::verify` compares tags without early exit.
    pub fn verify(&self, secret: &str, stored: &str) -> bool {
        let Some(tag) = stored
            .strip_prefix(PREFIX)
            .and_then(crate::jose::b64_decode)
        else {
            return false;
        };
        hmac::verify(&self.key, secret.as_bytes(), &tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_long_and_distinct() {
        let a = generate_token().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, generate_token().unwrap());
    }

    #[test]
    fn hashes_verify_only_the_same_secret() {
        let hasher = SecretHasher::new(&[3; 32]);
        let stored = hasher.hash("correct horse battery staple, long enough");
        assert!(hasher.verify("correct horse battery staple, long enough", &stored));
        assert!(!hasher.verify("correct horse battery staple, long enougH", &stored));
        assert!(!SecretHasher::new(&[4; 32])
            .verify("correct horse battery staple, long enough", &stored));
        assert!(!hasher.verify("x", "garbage"));
    }
}
