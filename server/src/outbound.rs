//! Outbound HTTPS requests for documents that clients name (their metadata documents and
//! JWKS): `GET` over `https` only, no redirects followed, one deadline for everything, a size
//! limit, and never to a special-use address (RFC 6890; draft-ietf-oauth-client-id-metadata-
//! document §"Server Side Request Forgery"). The host is resolved here, every address it
//! resolves to is vetted, and the socket connects to a vetted address — so a name that
//! resolves to a public address for a check and a private one for the connection (DNS
//! rebinding) cannot reach inside. TLS still verifies the certificate for the URL's name.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use url::{Host, Url};

use crate::config::Settings;

/// Fetches in flight at once, across all clients: a burst of unknown URLs waits here.
const CONCURRENT_FETCHES: usize = 16;

/// A `GET` that only goes where it may.
pub struct Fetcher {
    http: reqwest::Client,
    timeout: Duration,
    max_bytes: usize,
    /// Hosts whose addresses are not vetted (tests and development).
    allow_private_hosts: Arc<Vec<String>>,
    permits: Arc<tokio::sync::Semaphore>,
}

/// A `200 OK` answer.
#[derive(Debug)]
pub struct Fetched {
    pub body: Vec<u8>,
    /// The freshness lifetime its caching headers give (RFC 9111 §4.2.1), in seconds; `Some(0)`
    /// for `no-store` or `no-cache`; `None` when they say nothing.
    pub max_age: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    NotHttps,
    BadUrl(&'static str),
    /// The host is, or resolves to, an address that is not public.
    ForbiddenAddress(IpAddr),
    Resolve(String),
    Connect(String),
    Tls(String),
    Timeout,
    /// A `3xx`: redirects are not followed.
    Redirect(u16),
    Status(u16),
    TooLarge(usize),
    Malformed(&'static str),
    /// Too many fetches at once.
    Busy,
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::NotHttps => f.write_str("only https URLs are fetched"),
            FetchError::BadUrl(why) => write!(f, "the URL {why}"),
            FetchError::ForbiddenAddress(ip) => {
                write!(f, "its host is at {ip}, which is not a public address")
            }
            FetchError::Resolve(e) => write!(f, "its host name could not be resolved ({e})"),
            FetchError::Connect(e) => write!(f, "its server could not be reached ({e})"),
            FetchError::Tls(e) => write!(f, "its server's certificate was not accepted ({e})"),
            FetchError::Timeout => f.write_str("its server did not answer in time"),
            FetchError::Redirect(status) => {
                write!(
                    f,
                    "its server answered with a redirect ({status}), which is not followed"
                )
            }
            FetchError::Status(status) => write!(f, "its server answered {status}, not 200"),
            FetchError::TooLarge(max) => write!(f, "it is larger than {max} bytes"),
            FetchError::Malformed(why) => write!(f, "its server's answer is malformed ({why})"),
            FetchError::Busy => f.write_str("too many documents are being fetched; try again"),
        }
    }
}

impl std::error::Error for FetchError {}

impl Fetcher {
    /// The system's trusted certificates, plus `client_metadata_fetch_ca_file`.
    pub fn new(settings: &Settings) -> Result<Fetcher, String> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if let Some(path) = &settings.client_metadata_fetch_ca_file {
            use rustls::pki_types::pem::PemObject;
            let setting = "setting `client_metadata_fetch_ca_file`";
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{setting}: {}: {e}", path.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{setting}: {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("{setting}: no certificate in {}", path.display()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("{setting}: {}: {e}", path.display()))?;
            }
        } else if added == 0 {
            tracing::warn!("no trusted certificates found: client metadata documents cannot be fetched (install ca-certificates)");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let allow_private_hosts: Arc<Vec<String>> = Arc::new(
            settings
                .client_metadata_fetch_allow_private_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        );
        let timeout = Duration::from_millis(settings.client_metadata_fetch_timeout_ms);
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the name itself, past the vetting below.
            .no_proxy()
            .dns_resolver(Arc::new(VettingResolver {
                allow_private_hosts: allow_private_hosts.clone(),
            }))
            .http1_only()
            .timeout(timeout)
            .user_agent("Portcullis")
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Fetcher {
            http,
            timeout,
            max_bytes: settings.client_metadata_max_bytes,
            allow_private_hosts,
            permits: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_FETCHES)),
        })
    }

    /// The deadline of one fetch (`client_metadata_fetch_timeout_ms`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `GET url` within the deadline; a `200` with at most `client_metadata_max_bytes` of body.
    pub async fn get(&self, url: &Url) -> Result<Fetched, FetchError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let _permit = tokio::time::timeout_at(deadline, self.permits.acquire())
            .await
            .map_err(|_| FetchError::Busy)?
            .map_err(|_| FetchError::Busy)?;
        tokio::time::timeout_at(deadline, self.fetch(url))
            .await
            .map_err(|_| FetchError::Timeout)?
    }

    async fn fetch(&self, url: &Url) -> Result<Fetched, FetchError> {
        if url.scheme() != "https" {
            return Err(FetchError::NotHttps);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FetchError::BadUrl("contains a user name or password"));
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let exempt = url
            .host_str()
            .is_some_and(|h| is_exempt(&self.allow_private_hosts, h));
        // A name is vetted by the resolver, as it is resolved; an address needs no resolving.
        match url.host().ok_or(FetchError::BadUrl("has no host"))? {
            Host::Ipv4(ip) => vet(vec![SocketAddr::new(IpAddr::V4(ip), port)], exempt)?,
            Host::Ipv6(ip) => vet(vec![SocketAddr::new(IpAddr::V6(ip), port)], exempt)?,
            Host::Domain(_) => Vec::new(),
        };
        let mut response = self
            .http
            .get(url.as_str())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status().as_u16();
        match status {
            200 => {}
            300..=399 => return Err(FetchError::Redirect(status)),
            other => return Err(FetchError::Status(other)),
        }
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).trim().to_string(),
                )
            })
            .collect();
        // No decoder is enabled: an encoded body would be read as the document.
        if headers
            .iter()
            .any(|(n, v)| n == "content-encoding" && !v.eq_ignore_ascii_case("identity"))
        {
            return Err(FetchError::Malformed(
                "a content encoding was not asked for",
            ));
        }
        if response
            .content_length()
            .is_some_and(|l| l > self.max_bytes as u64)
        {
            return Err(FetchError::TooLarge(self.max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::TooLarge(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            body,
            max_age: freshness(&headers),
        })
    }
}

fn is_exempt(allow_private_hosts: &[String], host: &str) -> bool {
    allow_private_hosts
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(host))
}

/// Resolves a name and refuses it unless every address is public (`vet`): the connection then
/// goes only to the addresses checked here, so a name cannot resolve to a public address for
/// a check and a private one for the connection (DNS rebinding).
struct VettingResolver {
    allow_private_hosts: Arc<Vec<String>>,
}

impl reqwest::dns::Resolve for VettingResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let exempt = is_exempt(&self.allow_private_hosts, name.as_str());
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map_err(|e| FetchError::Resolve(e.kind().to_string()))?
                .collect();
            let addresses: reqwest::dns::Addrs = Box::new(vet(resolved, exempt)?.into_iter());
            Ok(addresses)
        })
    }
}

/// What a failed request was, in this module's terms: the resolver's own refusal is found in
/// the error's sources.
fn request_error(error: reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = source {
        if let Some(refusal) = cause.downcast_ref::<FetchError>() {
            return refusal.clone();
        }
        if cause.downcast_ref::<rustls::Error>().is_some() {
            return FetchError::Tls(cause.to_string());
        }
        source = cause.source();
    }
    if error.is_timeout() {
        FetchError::Timeout
    } else if error.is_connect() {
        FetchError::Connect(error.to_string())
    } else {
        FetchError::Malformed("the answer could not be read")
    }
}

/// The addresses a host resolved to, when every one is public: one that is not, and the
/// whole host is refused (a name that answers with a mix is not trusted with either).
pub fn vet(addresses: Vec<SocketAddr>, exempt: bool) -> Result<Vec<SocketAddr>, FetchError> {
    if addresses.is_empty() {
        return Err(FetchError::Resolve("no addresses".into()));
    }
    if !exempt {
        if let Some(bad) = addresses.iter().find(|a| is_forbidden(a.ip())) {
            return Err(FetchError::ForbiddenAddress(bad.ip()));
        }
    }
    Ok(addresses)
}

/// Special-use addresses (RFC 6890 and its IANA registries) that a fetch must never reach:
/// loopback, private, shared, link-local (the cloud metadata service at 169.254.169.254),
/// documentation, benchmarking, multicast and reserved ranges; for IPv6 also unique-local,
/// link-local, site-local, IPv4-mapped and -compatible forms, and translation prefixes whose
/// embedded IPv4 address is one of these.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // "this network"
        || a == 10 // private
        || (a == 100 && (64..=127).contains(&b)) // shared address space (CGNAT)
        || a == 127 // loopback
        || (a == 169 && b == 254) // link-local, the metadata service
        || (a == 172 && (16..=31).contains(&b)) // private
        || (a == 192 && b == 0 && (c == 0 || c == 2)) // IETF assignments, TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168) // private
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224 // multicast, reserved, broadcast
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let [s0, s1, s2, s3, s4, s5, s6, s7] = ip.segments();
    let embedded = |high: u16, low: u16| {
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if [s0, s1, s2, s3, s4] == [0; 5] && (s5 == 0 || s5 == 0xffff) {
        // ::, ::1, IPv4-compatible (::/96) and IPv4-mapped (::ffff:0:0/96) addresses: a
        // fetch has no business using these forms, whatever IPv4 address they carry.
        return true;
    }
    match s0 {
        // NAT64 well-known prefix 64:ff9b::/96 reaches the embedded IPv4 address; the
        // local-use prefix 64:ff9b:1::/48 reaches whatever the network maps it to.
        0x0064 if s1 == 0xff9b => {
            s2 != 0 || [s3, s4, s5] != [0; 3] || forbidden_v4(embedded(s6, s7))
        }
        // Discard-only 100::/64.
        0x0100 => [s1, s2, s3] == [0; 3],
        // IETF protocol assignments 2001::/23 (Teredo among them) and documentation.
        0x2001 => s1 < 0x0200 || s1 == 0x0db8,
        // 6to4 reaches the embedded IPv4 address.
        0x2002 => forbidden_v4(embedded(s1, s2)),
        _ => {
            (s0 & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s0 & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s0 & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || (s0 & 0xff00) == 0xff00 // multicast
        }
    }
}

/// RFC 9111 §4.2.1: `Cache-Control: max-age` (less `Age`), else `Expires` − `Date`;
/// `no-store` and `no-cache` give 0.
fn freshness(headers: &[(String, String)]) -> Option<u64> {
    let mut max_age = None;
    for value in headers
        .iter()
        .filter(|(n, _)| n == "cache-control")
        .map(|(_, v)| v)
    {
        for directive in value.split(',') {
            let directive = directive.trim().to_ascii_lowercase();
            if directive == "no-store" || directive == "no-cache" {
                return Some(0);
            }
            if let Some(seconds) = directive.strip_prefix("max-age=") {
                max_age = seconds.trim_matches('"').parse::<u64>().ok();
            }
        }
    }
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(max_age) = max_age {
        let age = value("age")
            .and_then(|a| a.parse::<u64>().ok())
            .unwrap_or(0);
        return Some(max_age.saturating_sub(age));
    }
    let expires = httpdate::parse_http_date(value("expires")?).ok();
    let date = value("date")
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .unwrap_or_else(std::time::SystemTime::now);
    // An unparsable Expires means already expired (RFC 9111 §5.3).
    Some(expires.map_or(0, |e| e.duration_since(date).map_or(0, |d| d.as_secs())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn special_use_addresses_are_forbidden() {
        for forbidden in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "::127.0.0.1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "64:ff9b::10.0.0.1",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:a00:1::1",
        ] {
            assert!(is_forbidden(v4(forbidden)), "{forbidden}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
        ] {
            assert!(!is_forbidden(v4(public)), "{public}");
        }
    }

    #[test]
    fn one_private_address_refuses_the_whole_host() {
        let public: SocketAddr = "93.184.215.14:443".parse().unwrap();
        let private: SocketAddr = "10.0.0.5:443".parse().unwrap();
        assert_eq!(vet(vec![public], false).unwrap(), vec![public]);
        assert_eq!(
            vet(vec![public, private], false),
            Err(FetchError::ForbiddenAddress(private.ip()))
        );
        // A host on the allow-list (tests) is not vetted.
        assert!(vet(vec![private], true).is_ok());
        assert!(vet(vec![], true).is_err());
    }

    #[test]
    fn freshness_follows_the_caching_headers() {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            freshness(&h(&[("cache-control", "public, max-age=600")])),
            Some(600)
        );
        assert_eq!(
            freshness(&h(&[("cache-control", "max-age=600"), ("age", "100")])),
            Some(500)
        );
        assert_eq!(freshness(&h(&[("cache-control", "no-store")])), Some(0));
        assert_eq!(
            freshness(&h(&[("cache-control", "no-cache, max-age=60")])),
            Some(0)
        );
        assert_eq!(
            freshness(&h(&[
                ("date", "Mon, 30 Nov 2026 10:00:00 GMT"),
                ("expires", "Mon, 30 Nov 2026 10:05:00 GMT"),
            ])),
            Some(300)
        );
        assert_eq!(freshness(&h(&[("expires", "0")])), Some(0));
        assert_eq!(freshness(&h(&[])), None);
    }
}
