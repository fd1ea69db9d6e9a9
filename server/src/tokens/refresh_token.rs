//! Opaque refresh tokens: 256 random bits, stored as SHA-256 (a fast hash suffices for a
//! high-entropy value), rotated on every use (RFC 9700 §4.14.2).

/// The stored form of a code or refresh token.
pub fn hash(token: &str) -> String {
    crate::jose::b64(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

pub fn generate() -> Result<String, String> {
    crate::secrets::generate_token()
}
