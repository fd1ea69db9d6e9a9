//! Form parameters (RFC 6749 §3.1, §3.2): each at most once; an empty value counts as absent.

use crate::error::OAuthError;

#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses an `application/x-www-form-urlencoded` body or query string.
    pub fn parse(encoded: &[u8]) -> Result<Params, OAuthError> {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(encoded)
            .map(Params)
            .map_err(|_| OAuthError::invalid_request("the request body is not valid form data"))
    }

    pub fn from_pairs(pairs: Vec<(String, String)>) -> Params {
        Params(pairs)
    }

    /// Adds a parameter the request did not carry (a default, such as the authenticated
    /// client's id).
    pub fn with(mut self, name: &str, value: &str) -> Params {
        self.0.push((name.to_string(), value.to_string()));
        self
    }

    /// A copy.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.0.clone()
    }

    /// The value of a parameter that may appear once (RFC 6749 §3.1: "MUST NOT be included
    /// more than once").
    pub fn single(&self, name: &str) -> Result<Option<&str>, OAuthError> {
        let mut values = self
            .0
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter `{name}` is repeated"
            )));
        }
        Ok(first)
    }

    /// A parameter that must be present.
    pub fn required(&self, name: &str) -> Result<&str, OAuthError> {
        self.single(name)?
            .ok_or_else(|| OAuthError::invalid_request(format!("parameter `{name}` is missing")))
    }

    /// Every value of a parameter that may repeat (RFC 8707 `resource`).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_rejected_and_empty_ones_ignored() {
        let params = Params::parse(b"a=1&a=2&b=&c=x%20y").unwrap();
        assert!(params.single("a").is_err());
        assert_eq!(params.single("b").unwrap(), None);
        assert_eq!(params.required("c").unwrap(), "x y");
        assert!(params.required("d").is_err());
    }
}
