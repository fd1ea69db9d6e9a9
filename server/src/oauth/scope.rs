//! Scopes (RFC 6749 §3.3): space-delimited, case-sensitive tokens.

use std::fmt;

/// An ordered set of valid scope tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope(Vec<String>);

/// `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

impl Scope {
    /// Parses a `scope` parameter; `Err` names the first invalid token.
    pub fn parse(text: &str) -> Result<Scope, String> {
        let mut tokens: Vec<String> = Vec::new();
        for token in text.split(' ').filter(|t| !t.is_empty()) {
            if !is_scope_token(token) {
                return Err(token.chars().take(40).collect());
            }
            if !tokens.iter().any(|t| t == token) {
                tokens.push(token.to_string());
            }
        }
        Ok(Scope(tokens))
    }

    pub fn from_tokens(tokens: &[String]) -> Scope {
        let mut scope = Scope::default();
        for t in tokens {
            if !scope.contains(t) {
                scope.0.push(t.clone());
            }
        }
        scope
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.iter().any(|t| t == token)
    }

    pub fn tokens(&self) -> &[String] {
        &self.0
    }

    /// Tokens of `self` not in `allowed`.
    pub fn excess_over(&self, allowed: &[String]) -> Vec<&str> {
        self.0
            .iter()
            .filter(|t| !allowed.contains(t))
            .map(String::as_str)
            .collect()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_deduplicates() {
        let scope = Scope::parse("a  b a c:d").unwrap();
        assert_eq!(scope.to_string(), "a b c:d");
    }

    #[test]
    fn rejects_forbidden_characters() {
        assert_eq!(Scope::parse("ok bad\"quote"), Err("bad\"quote".into()));
        assert!(Scope::parse("back\\slash").is_err());
        assert!(Scope::parse("tab\there").is_err());
    }
}
