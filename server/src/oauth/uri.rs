//! URI rules for resource indicators and redirect URIs.

use url::Url;

/// RFC 8707 §2: an absolute URI without a fragment.
pub fn validate_resource(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|_| format!("`{}` is not an absolute URI", short(text)))?;
    if url.fragment().is_some() {
        return Err(format!("`{}` must not contain a fragment", short(text)));
    }
    Ok(url)
}

/// RFC 6749 §3.1.2 and RFC 9700 §2.1: absolute, no fragment, and one of (an allow-list):
/// `https`; `http` only on loopback (native apps, RFC 8252 §7.3); a private-use scheme in
/// reverse-domain form, such as `com.example.app:/cb` (RFC 8252 §7.1). No wildcards: the
/// URI is compared exactly (RFC 9700 §4.1.3), so a `*` could only mislead.
pub fn validate_redirect_uri(text: &str) -> Result<Url, String> {
    if text.contains('*') {
        return Err(format!(
            "`{}` must not contain a wildcard (redirect URIs are compared exactly)",
            short(text)
        ));
    }
    let url = Url::parse(text).map_err(|_| format!("`{}` is not an absolute URI", short(text)))?;
    if url.fragment().is_some() {
        return Err(format!("`{}` must not contain a fragment", short(text)));
    }
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if !loopback {
                return Err(format!(
                    "`{}`: http is allowed only for loopback addresses",
                    short(text)
                ));
            }
        }
        scheme if is_private_use_scheme(scheme) => {}
        _ => {
            return Err(format!(
                "`{}`: use https, http on a loopback address, or a private-use scheme in reverse-domain form (com.example.app:/callback)",
                short(text)
            ))
        }
    }
    Ok(url)
}

/// Whether a redirect URI presented in a request is a registered one: byte for byte (RFC 9700
/// §4.1.3), except that a registered loopback IP literal (`http://127.0.0.1/…`,
/// `http://[::1]/…`) takes any port (RFC 8252 §7.3: a native app listens on whatever port the
/// system gives it). Everything else must still match: scheme, host, path, query. `localhost`
/// gets no such latitude (RFC 8252 §8.3).
pub fn redirect_uri_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let (Ok(registered), Ok(presented)) = (Url::parse(registered), Url::parse(presented)) else {
        return false;
    };
    let loopback_literal = match registered.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    };
    loopback_literal
        && registered.scheme() == "http"
        && presented.scheme() == "http"
        && registered.host() == presented.host()
        && registered.path() == presented.path()
        && registered.query() == presented.query()
        && presented.fragment().is_none()
        && presented.username().is_empty()
        && presented.password().is_none()
}

/// Where a redirect URI sends the browser, as a person should read it: its host (with the
/// port when one is given), or a private-use scheme (an app on this device).
pub fn redirect_target(uri: &str) -> String {
    match Url::parse(uri) {
        Ok(url) => match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => format!("{}:", url.scheme()),
        },
        Err(_) => short(uri),
    }
}

/// RFC 7591 §2 and RFC 8252 §8.4: what a client nobody vetted may register as a redirect
/// URI — `https`, or `http` on loopback (no private-use schemes: anyone could claim one).
/// The other rules (no fragment, no wildcard) are `validate_redirect_uri`'s.
pub fn is_https_or_loopback(text: &str) -> bool {
    if text.chars().any(char::is_whitespace) {
        return false;
    }
    match Url::parse(text) {
        Ok(url) if url.scheme() == "https" => url.host().is_some(),
        Ok(url) if url.scheme() == "http" => is_loopback_redirect(text),
        _ => false,
    }
}

/// Whether a redirect URI points at this device's loopback interface (RFC 8252 §7.3):
/// 127.0.0.0/8, ::1 or `localhost`.
pub fn is_loopback_redirect(uri: &str) -> bool {
    match Url::parse(uri).ok().as_ref().and_then(Url::host) {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// RFC 8252 §7.1: a scheme based on a domain name the app's publisher controls, reversed:
/// at least two dot-separated labels (`com.example.app`). Schemes with other meanings (`ws`,
/// `ftp`, `blob`, `about`…) have no dot.
fn is_private_use_scheme(scheme: &str) -> bool {
    let labels: Vec<&str> = scheme.split('.').collect();
    labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

fn short(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_targets_are_shown_by_host() {
        assert_eq!(
            redirect_target("https://app.example.com/cb?x=1"),
            "app.example.com"
        );
        assert_eq!(
            redirect_target("http://127.0.0.1:5000/cb"),
            "127.0.0.1:5000"
        );
        assert_eq!(redirect_target("com.example.app:/cb"), "com.example.app:");
        assert!(is_loopback_redirect("http://127.0.0.1:5000/cb"));
        assert!(is_loopback_redirect("http://[::1]/cb"));
        assert!(is_loopback_redirect("http://localhost:8080/cb"));
        assert!(!is_loopback_redirect("https://app.example.com/cb"));
        assert!(!is_loopback_redirect("com.example.app:/cb"));
        assert!(is_https_or_loopback("https://app.example.com/cb"));
        assert!(is_https_or_loopback("http://127.0.0.1/cb"));
        assert!(is_https_or_loopback("http://localhost:8080/cb"));
        assert!(!is_https_or_loopback("http://app.example.com/cb"));
        assert!(!is_https_or_loopback("com.example.app:/cb"));
        assert!(!is_https_or_loopback("https://app.example.com/a b"));
        assert!(!is_https_or_loopback("not a uri"));
    }

    #[test]
    fn resources_are_absolute_without_fragment() {
        assert!(validate_resource("https://api.example.com/v1").is_ok());
        assert!(validate_resource("/relative").is_err());
        assert!(validate_resource("https://api.example.com#frag").is_err());
    }

    #[test]
    fn loopback_literals_take_any_port_and_nothing_else_does() {
        let m = redirect_uri_matches;
        assert!(m(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:53127/callback"
        ));
        assert!(m(
            "http://127.0.0.1:8080/callback",
            "http://127.0.0.1:9/callback"
        ));
        assert!(m("http://[::1]/cb", "http://[::1]:4711/cb"));
        assert!(
            !m("http://127.0.0.1/callback", "http://127.0.0.1:5/other"),
            "path"
        );
        assert!(
            !m(
                "http://127.0.0.1/callback",
                "http://127.0.0.1:5/callback?x=1"
            ),
            "query"
        );
        assert!(
            !m("http://127.0.0.1/callback", "http://127.0.0.2:5/callback"),
            "host"
        );
        assert!(
            !m("http://localhost/callback", "http://localhost:5/callback"),
            "§8.3"
        );
        assert!(!m(
            "https://app.example.com/cb",
            "https://app.example.com:444/cb"
        ));
        assert!(!m("http://127.0.0.1/cb", "http://user@127.0.0.1:5/cb"));
    }

    #[test]
    fn redirect_uris_follow_rfc9700() {
        assert!(validate_redirect_uri("https://app.example.com/cb").is_ok());
        assert!(validate_redirect_uri("http://127.0.0.1:5000/cb").is_ok());
        assert!(validate_redirect_uri("com.example.app:/cb").is_ok());
        assert!(validate_redirect_uri("http://app.example.com/cb").is_err());
        assert!(validate_redirect_uri("javascript:alert(1)").is_err());
        for refused in [
            "ws://127.0.0.1/cb",
            "ftp://files.example.com/cb",
            "about:blank",
            "blob:https://app.example.com/uuid",
            "myapp:/cb",
            "data:text/html,x",
        ] {
            assert!(validate_redirect_uri(refused).is_err(), "{refused}");
        }
        assert!(validate_redirect_uri("com.example.app-dev:/oauth2redirect").is_ok());
        assert!(validate_redirect_uri("https://app.example.com/cb#x").is_err());
        assert!(validate_redirect_uri("https://*.example.com/cb").is_err());
        assert!(validate_redirect_uri("https://app.example.com/*").is_err());
    }
}
