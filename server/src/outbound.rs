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

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::{Host, Url};

use crate::config::Settings;

/// The longest response head read.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Fetches in flight at once, across all clients: a burst of unknown URLs waits here.
const CONCURRENT_FETCHES: usize = 16;

/// A `GET` that only goes where it may.
pub struct Fetcher {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
    max_bytes: usize,
    /// Hosts whose addresses are not vetted (tests and development).
    allow_private_hosts: Vec<String>,
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
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Fetcher {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            timeout: Duration::from_millis(settings.client_metadata_fetch_timeout_ms),
            max_bytes: settings.client_metadata_max_bytes,
            allow_private_hosts: settings
                .client_metadata_fetch_allow_private_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
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
        let host = url.host().ok_or(FetchError::BadUrl("has no host"))?;
        let exempt = url.host_str().is_some_and(|h| {
            self.allow_private_hosts
                .iter()
                .any(|a| a == &h.to_ascii_lowercase())
        });
        let (addresses, server_name): (Vec<SocketAddr>, ServerName<'static>) = match host {
            Host::Ipv4(ip) => (
                vec![SocketAddr::new(IpAddr::V4(ip), port)],
                ServerName::IpAddress(IpAddr::V4(ip).into()),
            ),
            Host::Ipv6(ip) => (
                vec![SocketAddr::new(IpAddr::V6(ip), port)],
                ServerName::IpAddress(IpAddr::V6(ip).into()),
            ),
            Host::Domain(name) => {
                let name = name.to_string();
                let server_name = ServerName::try_from(name.clone())
                    .map_err(|_| FetchError::BadUrl("has an invalid host name"))?;
                let resolved = tokio::net::lookup_host((name.as_str(), port))
                    .await
                    .map_err(|e| FetchError::Resolve(e.kind().to_string()))?
                    .collect();
                (resolved, server_name)
            }
        };
        let addresses = vet(addresses, exempt)?;
        let mut connected = None;
        let mut failure = String::new();
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => {
                    connected = Some(stream);
                    break;
                }
                Err(e) => failure = e.kind().to_string(),
            }
        }
        let stream = connected.ok_or(FetchError::Connect(failure))?;
        let mut tls = self
            .tls
            .connect(server_name, stream)
            .await
            .map_err(|e| FetchError::Tls(e.to_string()))?;
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        let host_text = url.host_str().unwrap_or_default();
        let authority = match url.port() {
            Some(port) => format!("{host_text}:{port}"),
            None => host_text.to_string(),
        };
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nUser-Agent: Portcullis\r\nConnection: close\r\n\r\n"
        );
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| FetchError::Connect(e.kind().to_string()))?;
        tls.flush()
            .await
            .map_err(|e| FetchError::Connect(e.kind().to_string()))?;
        read_response(&mut tls, self.max_bytes).await
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

/// Reads a response: its head, then a body of at most `max_bytes` (by `Content-Length`,
/// chunked, or to the end of the connection). Only `200` is an answer.
async fn read_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    max_bytes: usize,
) -> Result<Fetched, FetchError> {
    let mut buffer: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    let (head_length, status, headers) = loop {
        let read = read_some(stream, &mut chunk).await?;
        if read == 0 {
            return Err(FetchError::Malformed(
                "the connection closed before the answer",
            ));
        }
        buffer.extend_from_slice(chunk.get(..read).unwrap_or_default());
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut slots);
        match response.parse(&buffer) {
            Ok(httparse::Status::Complete(length)) => {
                let headers: Vec<(String, String)> = response
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).trim().to_string(),
                        )
                    })
                    .collect();
                break (length, response.code.unwrap_or(0), headers);
            }
            Ok(httparse::Status::Partial) if buffer.len() <= MAX_HEAD_BYTES => {}
            Ok(httparse::Status::Partial) => return Err(FetchError::Malformed("head too large")),
            Err(_) => return Err(FetchError::Malformed("not HTTP/1.1")),
        }
    };
    match status {
        200 => {}
        300..=399 => return Err(FetchError::Redirect(status)),
        other => return Err(FetchError::Status(other)),
    }
    let header = |name: &str| {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    if header("content-encoding")
        .iter()
        .any(|v| !v.eq_ignore_ascii_case("identity"))
    {
        return Err(FetchError::Malformed(
            "a content encoding was not asked for",
        ));
    }
    let chunked = header("transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = match header("content-length").as_slice() {
        [] => None,
        [one] => Some(
            one.parse::<usize>()
                .map_err(|_| FetchError::Malformed("Content-Length"))?,
        ),
        _ => return Err(FetchError::Malformed("several Content-Length headers")),
    };
    if length.is_some_and(|l| l > max_bytes) {
        return Err(FetchError::TooLarge(max_bytes));
    }
    // Raw bytes read for the body: chunk framing may add some, never without bound.
    let raw_limit = max_bytes.saturating_mul(2).saturating_add(4096);
    let mut raw: Vec<u8> = buffer.get(head_length..).unwrap_or_default().to_vec();
    let body = loop {
        if chunked {
            if let Some(body) = decode_chunked(&raw, max_bytes)? {
                break body;
            }
        } else if let Some(length) = length {
            if raw.len() >= length {
                raw.truncate(length);
                break raw;
            }
        }
        if raw.len() > raw_limit || (!chunked && raw.len() > max_bytes) {
            return Err(FetchError::TooLarge(max_bytes));
        }
        let read = read_some(stream, &mut chunk).await?;
        if read == 0 {
            if chunked || length.is_some() {
                return Err(FetchError::Malformed("the body ended early"));
            }
            break raw;
        }
        raw.extend_from_slice(chunk.get(..read).unwrap_or_default());
    };
    if body.len() > max_bytes {
        return Err(FetchError::TooLarge(max_bytes));
    }
    Ok(Fetched {
        body,
        max_age: freshness(&headers),
    })
}

/// One read; a TLS connection closed without `close_notify` counts as its end.
async fn read_some<S: AsyncRead + Unpin>(
    stream: &mut S,
    chunk: &mut [u8],
) -> Result<usize, FetchError> {
    match stream.read(chunk).await {
        Ok(read) => Ok(read),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
        Err(e) => Err(FetchError::Connect(e.kind().to_string())),
    }
}

/// A chunked body (RFC 9112 §7.1): `Some` once the last chunk arrived, `None` while more is
/// needed.
fn decode_chunked(mut data: &[u8], max_bytes: usize) -> Result<Option<Vec<u8>>, FetchError> {
    let mut body = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
            return if data.len() > 1024 {
                Err(FetchError::Malformed("chunk size line"))
            } else {
                Ok(None)
            };
        };
        let line = std::str::from_utf8(data.get(..end).unwrap_or_default())
            .map_err(|_| FetchError::Malformed("chunk size line"))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| FetchError::Malformed("chunk size"))?;
        data = data.get(end + 2..).unwrap_or_default();
        if size == 0 {
            // Trailers, if any, are not needed.
            return Ok(Some(body));
        }
        if body.len().saturating_add(size) > max_bytes {
            return Err(FetchError::TooLarge(max_bytes));
        }
        let (Some(content), Some(crlf)) = (data.get(..size), data.get(size..size + 2)) else {
            return Ok(None);
        };
        if crlf != b"\r\n" {
            return Err(FetchError::Malformed("chunk framing"));
        }
        body.extend_from_slice(content);
        data = data.get(size + 2..).unwrap_or_default();
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
    fn chunked_bodies_are_decoded_within_the_limit() {
        let data = b"4\r\nWiki\r\n5;x=1\r\npedia\r\n0\r\n\r\n";
        assert_eq!(
            decode_chunked(data, 100).unwrap(),
            Some(b"Wikipedia".to_vec())
        );
        assert_eq!(decode_chunked(b"4\r\nWi", 100).unwrap(), None);
        assert_eq!(decode_chunked(data, 5), Err(FetchError::TooLarge(5)));
        assert!(decode_chunked(b"zz\r\n", 100).is_err());
        assert!(decode_chunked(b"4\r\nWikiXX", 100).is_err());
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

    #[tokio::test]
    async fn answers_other_than_200_are_refused() {
        let read = |text: &'static str| async move {
            let mut stream = text.as_bytes();
            read_response(&mut stream, 100).await
        };
        assert_eq!(
            read("HTTP/1.1 302 Found\r\nLocation: https://x/\r\n\r\n")
                .await
                .unwrap_err(),
            FetchError::Redirect(302)
        );
        assert_eq!(
            read("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap_err(),
            FetchError::Status(404)
        );
        assert_eq!(
            read("HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n")
                .await
                .unwrap_err(),
            FetchError::TooLarge(100)
        );
        let ok = read("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: max-age=9\r\n\r\n{}")
            .await
            .unwrap();
        assert_eq!((ok.body.as_slice(), ok.max_age), (&b"{}"[..], Some(9)));
        let to_the_end = read("HTTP/1.1 200 OK\r\n\r\n[1]").await.unwrap();
        assert_eq!(to_the_end.body, b"[1]");
        let long = "HTTP/1.1 200 OK\r\n\r\n".to_string() + &"x".repeat(101);
        let mut stream = long.as_bytes();
        assert_eq!(
            read_response(&mut stream, 100).await.unwrap_err(),
            FetchError::TooLarge(100)
        );
        assert!(read("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\nxx")
            .await
            .is_err());
    }
}
