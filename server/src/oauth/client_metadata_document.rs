//! OAuth Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document): a
//! `client_id` that is an `https` URL names a JSON document with the client's metadata. This
//! module holds the draft's rules on the URL (§3) and on the document (§4); fetching and
//! caching live in `clients/metadata_document.rs`.

use serde_json::Value;
use url::Url;

use super::registration::ClientMetadata;

/// The longest Client Identifier URL accepted (it travels in every request and is stored with
/// every grant).
pub const MAX_CLIENT_ID_URL: usize = 512;

/// Whether a `client_id` is meant as a Client Identifier URL rather than an id Portcullis
/// issued (those never contain `/`; §7.1). An `http://` one is taken as such too, so that it
/// is refused with a reason (§3: `https` only) rather than as an unknown client.
pub fn is_metadata_document_id(id: &str) -> bool {
    id.starts_with("https://") || id.starts_with("http://")
}

/// §3: a Client Identifier URL uses `https`, has a path, no user information, no fragment and
/// no `.` or `..` segments. It is compared as a string, so it must also be in its normal form
/// (what it names is exactly what it says: no default port, no upper-case host, no escapes
/// that normalisation would change).
pub fn parse_client_id(id: &str) -> Result<Url, String> {
    if id.len() > MAX_CLIENT_ID_URL {
        return Err(format!(
            "the client_id URL is longer than {MAX_CLIENT_ID_URL} characters"
        ));
    }
    let url = Url::parse(id).map_err(|_| "the client_id is not a valid URL".to_string())?;
    if url.scheme() != "https" {
        return Err("the client_id URL must use https".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the client_id URL must not contain a user name or password".into());
    }
    if url.fragment().is_some() || id.contains('#') {
        return Err("the client_id URL must not contain a fragment".into());
    }
    let after_scheme = id.get("https://".len()..).unwrap_or_default();
    let path = after_scheme
        .find('/')
        .and_then(|at| after_scheme.get(at..))
        .unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() {
        return Err("the client_id URL must have a path".into());
    }
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err("the client_id URL must not contain . or .. path segments".into());
    }
    if url.as_str() != id {
        return Err(format!(
            "the client_id URL is not in its normal form (it would be {})",
            url.as_str()
        ));
    }
    Ok(url)
}

/// Whether `url`'s host is one the `client_id_metadata_document_hosts` setting allows (none
/// listed: any).
pub fn host_allowed(url: &Url, hosts: &[String]) -> bool {
    hosts.is_empty()
        || url
            .host_str()
            .is_some_and(|host| hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
}

/// §4: the document names itself — its `client_id` is exactly the URL it was fetched from —
/// and carries no shared secret and no private key (§4.1). Returns its metadata.
pub fn check_document(url: &str, document: &Value) -> Result<ClientMetadata, String> {
    let object = document
        .as_object()
        .ok_or("the document is not a JSON object")?;
    match object.get("client_id").and_then(Value::as_str) {
        Some(id) if id == url => {}
        Some(other) => {
            return Err(format!(
                "the document's client_id ({}) is not the URL it was fetched from",
                other.chars().take(120).collect::<String>()
            ))
        }
        None => return Err("the document has no client_id".into()),
    }
    for secret in ["client_secret", "client_secret_expires_at"] {
        if object.contains_key(secret) {
            return Err(format!(
                "the document must not contain {secret}: no secret can be shared this way"
            ));
        }
    }
    let metadata = ClientMetadata::parse(object).map_err(|e| e.description.into_owned())?;
    if metadata.token_endpoint_auth_method.as_deref() == Some("private_key_jwt")
        && metadata.jwks.is_some() == metadata.jwks_uri.is_some()
    {
        return Err("private_key_jwt needs its keys as jwks or jwks_uri (one of them)".into());
    }
    if metadata.redirect_uris.is_empty() {
        return Err("the document has no redirect_uris".into());
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_identifier_urls_follow_section_3() {
        assert!(parse_client_id("https://app.example.com/oauth/client.json").is_ok());
        assert!(parse_client_id("https://app.example.com:8443/client?v=1").is_ok());
        for (refused, why) in [
            ("http://app.example.com/client", "https"),
            ("https://user:pw@app.example.com/client", "user"),
            ("https://app.example.com/client#x", "fragment"),
            ("https://app.example.com", "path"),
            ("https://app.example.com/a/../client", ". or .."),
            ("https://app.example.com/./client", ". or .."),
            ("https://App.Example.com/client", "normal form"),
            ("https://app.example.com:443/client", "normal form"),
            ("https://app example.com/client", "valid URL"),
        ] {
            let error = parse_client_id(refused).unwrap_err();
            assert!(error.contains(why), "{refused}: {error}");
        }
        let long = format!("https://app.example.com/{}", "a".repeat(600));
        assert!(parse_client_id(&long).is_err());
    }

    #[test]
    fn the_document_must_name_itself_and_hold_no_secret() {
        let url = "https://app.example.com/client.json";
        let good = serde_json::json!({
            "client_id": url,
            "client_name": "App",
            "redirect_uris": ["https://app.example.com/cb"],
        });
        assert!(check_document(url, &good).is_ok());
        let mut other = good.clone();
        other["client_id"] = "https://evil.example.com/client.json".into();
        assert!(check_document(url, &other)
            .unwrap_err()
            .contains("not the URL"));
        let mut trailing = good.clone();
        trailing["client_id"] = format!("{url}/").into();
        assert!(check_document(url, &trailing).is_err(), "compared exactly");
        let mut secret = good.clone();
        secret["client_secret"] = "s3cret".into();
        assert!(check_document(url, &secret)
            .unwrap_err()
            .contains("client_secret"));
        let mut keyless = good.clone();
        keyless["token_endpoint_auth_method"] = "private_key_jwt".into();
        assert!(check_document(url, &keyless).is_err());
        let mut no_redirects = good.clone();
        no_redirects["redirect_uris"] = serde_json::json!([]);
        assert!(check_document(url, &no_redirects).is_err());
        assert!(check_document(url, &serde_json::json!([url])).is_err());
    }

    #[test]
    fn hosts_can_be_restricted() {
        let url = Url::parse("https://app.example.com/c").unwrap();
        assert!(host_allowed(&url, &[]));
        assert!(host_allowed(&url, &["APP.example.com".into()]));
        assert!(!host_allowed(&url, &["example.com".into()]));
    }
}
