//! Proof Key for Code Exchange, RFC 7636 (S256 only, RFC 9700 §2.1.1).

use ring::digest;

/// `code_challenge` / `code_verifier` syntax (RFC 7636 §4.1–4.2): 43–128 unreserved chars.
pub fn is_valid(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// RFC 7636 §4.6: BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge, compared in
/// constant time.
pub fn verify_s256(verifier: &str, challenge: &str) -> bool {
    if !is_valid(verifier) {
        return false;
    }
    let computed = crate::jose::b64(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref());
    bool::from(subtle::ConstantTimeEq::ct_eq(
        computed.as_bytes(),
        challenge.as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_example() {
        assert!(verify_s256(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!verify_s256(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!is_valid("short"));
    }
}
