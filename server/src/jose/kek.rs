//! The key-encryption key (KEK): signing keys are stored encrypted under it with AES-256-GCM,
//! and the client-secret hashing key is derived from it.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::Settings;

const STANDARD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub struct KeyEncryptionKey {
    bytes: [u8; 32],
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(***)")
    }
}

impl KeyEncryptionKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        KeyEncryptionKey { bytes }
    }

    pub fn generate() -> Result<Self, String> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| "no system randomness".to_string())?;
        Ok(KeyEncryptionKey { bytes })
    }

    fn from_base64(setting: &str, text: &str) -> Result<Self, String> {
        let decoded = STANDARD
            .decode(text.trim())
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim()))
            .map_err(|_| format!("setting `{setting}`: not base64"))?;
        let bytes: [u8; 32] = decoded
            .try_into()
            .map_err(|_| format!("setting `{setting}`: must decode to exactly 32 bytes"))?;
        Ok(KeyEncryptionKey { bytes })
    }

    /// From the `key_encryption_key` setting, else from its file, created on first start.
    pub fn load_or_create(settings: &Settings) -> Result<Self, String> {
        if let Some(inline) = &settings.key_encryption_key {
            return Self::from_base64("key_encryption_key", inline);
        }
        let path = &settings.key_encryption_key_file;
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64("key_encryption_key_file", &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let kek = Self::generate()?;
                match write_new_secret_file(path, &STANDARD.encode(kek.bytes)) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "generated a new key-encryption key");
                        Ok(kek)
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text = std::fs::read_to_string(path).map_err(|e| {
                            format!(
                                "setting `key_encryption_key_file`: cannot read {}: {e}",
                                path.display()
                            )
                        })?;
                        Self::from_base64("key_encryption_key_file", &text)
                    }
                    Err(e) => Err(format!(
                        "setting `key_encryption_key_file`: cannot create {}: {e}",
                        path.display()
                    )),
                }
            }
            Err(e) => Err(format!(
                "setting `key_encryption_key_file`: cannot read {}: {e}",
                path.display()
            )),
        }
    }

    fn aead_key(&self) -> Result<LessSafeKey, String> {
        let unbound = UnboundKey::new(&AES_256_GCM, &self.bytes)
            .map_err(|_| "invalid key-encryption key".to_string())?;
        Ok(LessSafeKey::new(unbound))
    }

    /// AES-256-GCM with a random nonce; `context` (the kid) is bound as associated data so a
    /// ciphertext cannot be moved to another row. Output: base64(nonce || ciphertext || tag).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String, String> {
        let key = self.aead_key()?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| "no system randomness".to_string())?;
        let mut buffer = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context.as_bytes()),
            &mut buffer,
        )
        .map_err(|_| "encryption failed".to_string())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buffer);
        Ok(STANDARD.encode(out))
    }

    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, String> {
        let key = self.aead_key()?;
        let raw = STANDARD
            .decode(sealed)
            .map_err(|_| "sealed value is not base64".to_string())?;
        if raw.len() < NONCE_LEN + aead::MAX_TAG_LEN {
            return Err("sealed value is too short".into());
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce".to_string())?;
        let mut buffer = body.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buffer)
            .map_err(|_| {
                "cannot decrypt: the key-encryption key differs from the one the keys were stored with"
                    .to_string()
            })?;
        Ok(plain.to_vec())
    }

    /// A purpose-specific key derived with HKDF-SHA256 (RFC 5869), so the KEK itself is
    /// never used for two things.
    pub fn derive(&self, purpose: &'static str) -> [u8; 32] {
        struct Len32;
        impl hkdf::KeyType for Len32 {
            fn len(&self) -> usize {
                32
            }
        }
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"portcullis");
        let prk = salt.extract(&self.bytes);
        let info = [purpose.as_bytes()];
        let mut out = [0u8; 32];
        // Expanding 32 bytes from SHA-256 cannot fail (limit is 255 * 32).
        if let Ok(okm) = prk.expand(&info, Len32) {
            let _ = okm.fill(&mut out);
        }
        out
    }
}

/// Creates a file readable by its owner only; fails if it already exists.
fn write_new_secret_file(path: &Path, content: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_the_same_kek_and_context() {
        let kek = KeyEncryptionKey::from_bytes([7; 32]);
        let sealed = kek.seal("kid-1", b"private key").unwrap();
        assert_eq!(kek.open("kid-1", &sealed).unwrap(), b"private key");
        assert!(kek.open("kid-2", &sealed).is_err());
        let other = KeyEncryptionKey::from_bytes([8; 32]);
        assert!(other.open("kid-1", &sealed).is_err());
    }

    #[test]
    fn derived_keys_differ_by_purpose() {
        let kek = KeyEncryptionKey::from_bytes([1; 32]);
        assert_ne!(kek.derive("a"), kek.derive("b"));
        assert_eq!(kek.derive("a"), kek.derive("a"));
    }
}
