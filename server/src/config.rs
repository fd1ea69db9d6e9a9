//! Settings: defaults, then an optional TOML file, then `PORTCULLIS_*` environment variables.

use std::fmt;
use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize};

use crate::jose::Algorithm;

/// Every setting, with its default. `docs/configuration.md` documents each one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The issuer identifier (OpenID Connect Discovery §3, RFC 8414 §2).
    pub issuer: String,
    /// Socket address to listen on.
    pub bind: String,
    /// `postgres://…` selects PostgreSQL; a path or `sqlite://…` selects SQLite.
    pub database_url: String,
    pub database_pool_size: u32,
    /// Browser sessions (and later shared limits) live here when set.
    pub redis_url: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Allow an `http://` issuer on a non-loopback host (never in production).
    pub allow_insecure_http_issuer: bool,
    /// Base64 of 32 random bytes; encrypts signing keys at rest.
    pub key_encryption_key: Option<String>,
    /// Where the key-encryption key is read from (and created on first start) when not given inline.
    pub key_encryption_key_file: PathBuf,
    pub access_token_signing_alg: Algorithm,
    #[serde(deserialize_with = "seconds")]
    pub access_token_ttl: u64,
    /// Upper bound for per-resource access-token lifetimes (and so for how long a retired
    /// signing key stays published).
    #[serde(deserialize_with = "seconds")]
    pub max_access_token_ttl: u64,
    #[serde(deserialize_with = "seconds")]
    pub key_rotation_period: u64,
    /// `Cache-Control: max-age` of the JWKS; also how long a new key is published before it signs.
    #[serde(deserialize_with = "seconds")]
    pub jwks_max_age: u64,
    /// How often each process checks the database for keyring and client changes.
    #[serde(deserialize_with = "seconds")]
    pub keyring_poll_interval: u64,
    /// Argon2id cost for user passwords: memory in KiB, iterations, lanes.
    pub password_hash_memory_kib: u32,
    pub password_hash_iterations: u32,
    pub password_hash_parallelism: u32,
    /// Browser session lifetime, from the last change.
    #[serde(deserialize_with = "seconds")]
    pub session_ttl: u64,
    /// How long a session stays in the store while nobody has signed in with it.
    #[serde(deserialize_with = "seconds")]
    pub anonymous_session_ttl: u64,
    /// Sessions kept in memory without Redis; past it, the oldest are forgotten.
    pub memory_sessions_max: usize,
    /// Authorization requests that must wait for a sign-in, per client address per minute
    /// (0: no limit).
    pub authorize_requests_per_ip_per_minute: u64,
    /// However active, a sign-in ends this long after it happened.
    #[serde(deserialize_with = "seconds")]
    pub session_max_lifetime: u64,
    /// Authorization code lifetime (RFC 6749 §4.1.2 recommends at most 10 minutes).
    #[serde(deserialize_with = "seconds")]
    pub authorization_code_ttl: u64,
    #[serde(deserialize_with = "seconds")]
    pub id_token_ttl: u64,
    pub id_token_signing_alg: Algorithm,
    #[serde(deserialize_with = "seconds")]
    pub refresh_token_ttl: u64,
    /// Require PKCE from confidential clients too (RFC 9700 §2.1.1); public clients always.
    pub require_pkce: bool,
    /// Token requests per authenticated client per minute (0: unlimited); over it, 429 with
    /// Retry-After.
    pub token_rate_limit_per_minute: u64,
    /// Failed client authentications at the token endpoint per client IP address per minute
    /// (0: unlimited); past them, that address's token requests get 429 until the minute ends.
    pub token_auth_failures_per_ip_per_minute: u64,
    /// Sign-in protection (docs/configuration.md, "Sign-in protection"). One (username,
    /// address) pair may fail this many times before it must wait, the waits growing through
    /// `login_pair_lockouts`.
    pub login_pair_max_failures: u64,
    #[serde(deserialize_with = "duration_list")]
    pub login_pair_lockouts: Vec<u64>,
    /// Failed sign-ins per client address, across usernames, within `login_ip_failure_window`
    /// (password spraying); past it, 429.
    pub login_ip_max_failures: u64,
    #[serde(deserialize_with = "seconds")]
    pub login_ip_failure_window: u64,
    /// Past this many failures for one username (from any address), sign-ins for it from a
    /// browser that is not a known device are slowed, by at most `login_username_max_delay`.
    pub login_username_slowdown_after: u64,
    #[serde(deserialize_with = "seconds")]
    pub login_username_max_delay: u64,
    /// How long failures are remembered after the last one (pair and username counters).
    #[serde(deserialize_with = "seconds")]
    pub login_failure_window: u64,
    /// Lifetime of the known-device cookie set at a successful sign-in.
    #[serde(deserialize_with = "seconds")]
    pub known_device_ttl: u64,
    /// Password hashes computed at once (each costs `password_hash_memory_kib`); 0 derives it
    /// from the cores and a 256 MiB budget.
    pub password_hash_concurrency: usize,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers are believed (CIDRs).
    #[serde(deserialize_with = "string_list")]
    pub trusted_proxies: Vec<String>,
    /// Deadline of one database call on a request path (pool checkout included).
    pub database_timeout_ms: u64,
    /// Deadline of one Redis call (connecting included).
    pub redis_timeout_ms: u64,
    /// On SIGTERM: how long to keep serving (readiness already failing) before the listener
    /// closes, so load balancers stop sending first.
    #[serde(deserialize_with = "seconds")]
    pub shutdown_delay: u64,
    /// Then: how long requests in flight (and the audit queue) may take to finish.
    #[serde(deserialize_with = "seconds")]
    pub shutdown_grace: u64,
    /// Audit events older than this are deleted.
    #[serde(deserialize_with = "seconds")]
    pub audit_retention: u64,
    /// How long a request body may take to arrive (after the headers); past it, 408.
    #[serde(deserialize_with = "seconds")]
    pub request_body_timeout: u64,
    /// Connections open at once per client address (trusted proxies exempt); 0: no cap.
    pub max_connections_per_ip: usize,
    /// RFC 9449: how old a DPoP proof's `iat` may be (also how long its `jti` is remembered).
    #[serde(deserialize_with = "seconds")]
    pub dpop_proof_max_age: u64,
    /// RFC 9449 §8: proofs must carry a server-provided nonce (`DPoP-Nonce`).
    pub use_dpop_nonce: bool,
    /// RFC 8628: how long a device code lives, and the polling interval it starts with.
    #[serde(deserialize_with = "seconds")]
    pub device_code_ttl: u64,
    #[serde(deserialize_with = "seconds")]
    pub device_poll_interval: u64,
    /// Wrong user codes typed at `/device` per client address per minute (the code space is
    /// small: RFC 8628 §5.1).
    pub device_code_failures_per_ip_per_minute: u64,
    /// RFC 9126: how long a pushed request waits for `/authorize`, and whether every client
    /// must push its requests.
    #[serde(deserialize_with = "seconds")]
    pub pushed_authorization_request_ttl: u64,
    pub require_pushed_authorization_requests: bool,
    /// RFC 8693: how long an exchanged access token lives (never past its subject token), and
    /// how many actors a delegation chain may have.
    #[serde(deserialize_with = "seconds")]
    pub token_exchange_token_ttl: u64,
    pub token_exchange_max_chain: usize,
    /// When set, `GET /metrics` needs `Authorization: Bearer <this>` (it names clients).
    pub metrics_token: Option<String>,
    /// RFC 7591 at `POST /register`: `closed`, `token` (an initial access token is required)
    /// or `open` (anyone: public code-flow clients only, limited per address).
    pub registration: RegistrationPolicy,
    /// Registrations under the `open` policy per client address per hour (0: no limit).
    pub registrations_per_ip_per_hour: u64,
    /// The scopes a client nobody vetted may hold: one registered under the `open` policy or
    /// one named by its metadata document. What they ask beyond these is dropped.
    #[serde(deserialize_with = "string_list")]
    pub dynamic_client_scopes: Vec<String>,
    /// Resource indicators (RFC 8707) that dynamically registered clients and metadata-document
    /// clients may obtain tokens for (none: the issuer only).
    #[serde(deserialize_with = "string_list")]
    pub dynamic_client_audiences: Vec<String>,
    /// A dynamically registered client that obtained no token for this long is deleted.
    #[serde(deserialize_with = "seconds")]
    pub dynamic_client_expiry: u64,
    /// draft-ietf-oauth-client-id-metadata-document: an `https` URL as `client_id` names the
    /// client's metadata document, which Portcullis fetches.
    pub client_id_metadata_documents: bool,
    /// When not empty, the only hosts such URLs (and their `jwks_uri`) may name.
    #[serde(deserialize_with = "string_list")]
    pub client_id_metadata_document_hosts: Vec<String>,
    /// Deadline of one metadata fetch (resolving, connecting, TLS, the whole answer).
    pub client_metadata_fetch_timeout_ms: u64,
    /// The largest metadata document (or JWKS) read; a larger one is refused.
    pub client_metadata_max_bytes: usize,
    /// Bounds on how long a fetched document is used, whatever its caching headers say.
    #[serde(deserialize_with = "seconds")]
    pub client_metadata_cache_min_ttl: u64,
    #[serde(deserialize_with = "seconds")]
    pub client_metadata_cache_max_ttl: u64,
    /// Hosts fetched even when they resolve to private, loopback or link-local addresses
    /// (tests and development only).
    #[serde(deserialize_with = "string_list")]
    pub client_metadata_fetch_allow_private_hosts: Vec<String>,
    /// PEM certificates trusted for metadata fetches besides the system's (test CAs).
    pub client_metadata_fetch_ca_file: Option<PathBuf>,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// `text` or `json` log lines.
    pub log_format: LogFormat,
}

/// Who may register a client at `POST /register` (RFC 7591 §3).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationPolicy {
    /// Nobody: the endpoint refuses every request and is not advertised.
    Closed,
    /// Whoever presents an initial access token (`portcullis registration token create`).
    Token,
    /// Anyone, for public clients using the code flow with PKCE; limited per address.
    Open,
}

impl RegistrationPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationPolicy::Closed => "closed",
            RegistrationPolicy::Token => "token",
            RegistrationPolicy::Open => "open",
        }
    }

    pub fn parse(text: &str) -> Option<RegistrationPolicy> {
        match text {
            "closed" => Some(RegistrationPolicy::Closed),
            "token" => Some(RegistrationPolicy::Token),
            "open" => Some(RegistrationPolicy::Open),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            issuer: "http://127.0.0.1:8080".into(),
            bind: "127.0.0.1:8080".into(),
            database_url: "data/portcullis.db".into(),
            database_pool_size: 8,
            redis_url: None,
            tls_cert: None,
            tls_key: None,
            allow_insecure_http_issuer: false,
            key_encryption_key: None,
            key_encryption_key_file: PathBuf::from("keys/key-encryption-key"),
            access_token_signing_alg: Algorithm::Es256,
            access_token_ttl: 900,
            max_access_token_ttl: 3600,
            key_rotation_period: 30 * 24 * 3600,
            jwks_max_age: 300,
            keyring_poll_interval: 10,
            password_hash_memory_kib: 19456,
            password_hash_iterations: 2,
            password_hash_parallelism: 1,
            session_ttl: 8 * 3600,
            session_max_lifetime: 24 * 3600,
            anonymous_session_ttl: 600,
            memory_sessions_max: 20_000,
            authorize_requests_per_ip_per_minute: 120,
            authorization_code_ttl: 60,
            id_token_ttl: 3600,
            id_token_signing_alg: Algorithm::Rs256,
            refresh_token_ttl: 30 * 24 * 3600,
            require_pkce: true,
            token_rate_limit_per_minute: 6000,
            token_auth_failures_per_ip_per_minute: 60,
            login_pair_max_failures: 10,
            login_pair_lockouts: vec![60, 300, 900],
            login_ip_max_failures: 100,
            login_ip_failure_window: 24 * 3600,
            login_username_slowdown_after: 30,
            login_username_max_delay: 30,
            login_failure_window: 3600,
            known_device_ttl: 180 * 24 * 3600,
            password_hash_concurrency: 0,
            trusted_proxies: Vec::new(),
            database_timeout_ms: 1500,
            redis_timeout_ms: 500,
            shutdown_delay: 5,
            shutdown_grace: 20,
            audit_retention: 90 * 24 * 3600,
            request_body_timeout: 5,
            max_connections_per_ip: 256,
            dpop_proof_max_age: 60,
            use_dpop_nonce: false,
            device_code_ttl: 600,
            device_poll_interval: 5,
            device_code_failures_per_ip_per_minute: 10,
            pushed_authorization_request_ttl: 60,
            require_pushed_authorization_requests: false,
            token_exchange_token_ttl: 300,
            token_exchange_max_chain: 3,
            metrics_token: None,
            registration: RegistrationPolicy::Closed,
            registrations_per_ip_per_hour: 10,
            dynamic_client_scopes: ["openid", "profile", "email", "offline_access"]
                .map(String::from)
                .to_vec(),
            dynamic_client_audiences: Vec::new(),
            dynamic_client_expiry: 90 * 24 * 3600,
            client_id_metadata_documents: true,
            client_id_metadata_document_hosts: Vec::new(),
            client_metadata_fetch_timeout_ms: 3000,
            client_metadata_max_bytes: 5 * 1024,
            client_metadata_cache_min_ttl: 60,
            client_metadata_cache_max_ttl: 24 * 3600,
            client_metadata_fetch_allow_private_hosts: Vec::new(),
            client_metadata_fetch_ca_file: None,
            workers: 0,
            log_format: LogFormat::Text,
        }
    }
}

/// A setting that could not be used: one line naming it.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Settings {
    /// Defaults, overridden by the TOML file (when given), overridden by `PORTCULLIS_*`.
    pub fn load(file: Option<&std::path::Path>) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {}: no such file",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only variables naming a setting: tools (test harnesses, scripts) share the prefix.
        let known: Vec<String> = match serde_json::to_value(Settings::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        figment = figment.merge(
            Env::prefixed("PORTCULLIS_")
                .filter(move |k| known.iter().any(|name| k == name.as_str())),
        );
        let settings: Settings = figment.extract().map_err(|e| ConfigError(describe(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks that cannot be expressed by types alone.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let issuer = url::Url::parse(&self.issuer)
            .map_err(|e| ConfigError(format!("setting `issuer`: not a URL ({e})")))?;
        // OpenID Connect Discovery §3: https, no query or fragment.
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(ConfigError(
                "setting `issuer`: must not contain a query or fragment".into(),
            ));
        }
        if self.issuer.ends_with('/') {
            return Err(ConfigError(
                "setting `issuer`: must not end with a slash".into(),
            ));
        }
        match issuer.scheme() {
            "https" => {}
            "http" => {
                let loopback = match issuer.host() {
                    Some(url::Host::Domain(d)) => d == "localhost",
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    None => false,
                };
                if !loopback && !self.allow_insecure_http_issuer {
                    return Err(ConfigError(format!(
                        "setting `issuer`: {} uses http:// on a non-loopback host; use https:// or set PORTCULLIS_ALLOW_INSECURE_HTTP_ISSUER=true",
                        self.issuer
                    )));
                }
            }
            other => {
                return Err(ConfigError(format!(
                    "setting `issuer`: unsupported scheme {other}"
                )))
            }
        }
        if self.bind.parse::<std::net::SocketAddr>().is_err() && !self.bind.contains(':') {
            return Err(ConfigError(format!(
                "setting `bind`: {} is not host:port",
                self.bind
            )));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError(
                    "settings `tls_cert` and `tls_key`: set both or neither".into(),
                ))
            }
            _ => {}
        }
        if self.database_pool_size == 0 {
            return Err(ConfigError(
                "setting `database_pool_size`: must be at least 1".into(),
            ));
        }
        for (name, value) in [
            ("access_token_ttl", self.access_token_ttl),
            ("key_rotation_period", self.key_rotation_period),
            ("keyring_poll_interval", self.keyring_poll_interval),
            ("session_ttl", self.session_ttl),
            ("session_max_lifetime", self.session_max_lifetime),
            ("anonymous_session_ttl", self.anonymous_session_ttl),
            ("request_body_timeout", self.request_body_timeout),
            ("dpop_proof_max_age", self.dpop_proof_max_age),
            ("device_code_ttl", self.device_code_ttl),
            ("device_poll_interval", self.device_poll_interval),
            ("token_exchange_token_ttl", self.token_exchange_token_ttl),
            (
                "pushed_authorization_request_ttl",
                self.pushed_authorization_request_ttl,
            ),
            ("max_access_token_ttl", self.max_access_token_ttl),
            ("authorization_code_ttl", self.authorization_code_ttl),
            ("id_token_ttl", self.id_token_ttl),
            ("refresh_token_ttl", self.refresh_token_ttl),
        ] {
            if value == 0 {
                return Err(ConfigError(format!(
                    "setting `{name}`: must be at least 1 second"
                )));
            }
        }
        for (name, value) in [
            ("database_timeout_ms", self.database_timeout_ms),
            ("redis_timeout_ms", self.redis_timeout_ms),
            ("login_pair_max_failures", self.login_pair_max_failures),
            ("login_ip_max_failures", self.login_ip_max_failures),
            ("login_ip_failure_window", self.login_ip_failure_window),
            ("login_failure_window", self.login_failure_window),
            ("known_device_ttl", self.known_device_ttl),
            ("audit_retention", self.audit_retention),
            (
                "token_exchange_max_chain",
                self.token_exchange_max_chain as u64,
            ),
            ("dynamic_client_expiry", self.dynamic_client_expiry),
            (
                "client_metadata_fetch_timeout_ms",
                self.client_metadata_fetch_timeout_ms,
            ),
            (
                "client_metadata_max_bytes",
                u64::try_from(self.client_metadata_max_bytes).unwrap_or(u64::MAX),
            ),
        ] {
            if value == 0 {
                return Err(ConfigError(format!("setting `{name}`: must be at least 1")));
            }
        }
        if self.login_pair_lockouts.is_empty() || self.login_pair_lockouts.contains(&0) {
            return Err(ConfigError(
                "setting `login_pair_lockouts`: one or more durations of at least 1 s".into(),
            ));
        }
        self.trusted_proxy_networks()?;
        if self.access_token_ttl > self.max_access_token_ttl {
            return Err(ConfigError(
                "setting `access_token_ttl`: larger than `max_access_token_ttl`".into(),
            ));
        }
        if self.client_metadata_cache_min_ttl > self.client_metadata_cache_max_ttl {
            return Err(ConfigError(
                "setting `client_metadata_cache_min_ttl`: larger than `client_metadata_cache_max_ttl`"
                    .into(),
            ));
        }
        for (name, list) in [
            ("dynamic_client_scopes", &self.dynamic_client_scopes),
            ("dynamic_client_audiences", &self.dynamic_client_audiences),
        ] {
            for item in list {
                let ok = if name == "dynamic_client_scopes" {
                    crate::oauth::scope::is_scope_token(item)
                } else {
                    crate::oauth::uri::validate_resource(item).is_ok()
                };
                if !ok {
                    return Err(ConfigError(format!(
                        "setting `{name}`: `{item}` is not valid"
                    )));
                }
            }
        }
        if self.authorization_code_ttl > 600 {
            return Err(ConfigError(
                "setting `authorization_code_ttl`: at most 600 seconds (RFC 6749 §4.1.2)".into(),
            ));
        }
        Ok(())
    }

    /// The longest lifetime of any token a signing key may have signed.
    pub fn max_token_ttl(&self) -> u64 {
        self.access_token_ttl
            .max(self.id_token_ttl)
            .max(self.max_access_token_ttl)
    }

    /// `trusted_proxies` parsed: CIDRs, or single addresses (a /32 or /128).
    pub fn trusted_proxy_networks(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|text| {
                let text = text.trim();
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ConfigError(format!(
                            "setting `trusted_proxies`: `{text}` is not an address or CIDR (such as 10.0.0.0/8)"
                        ))
                    })
            })
            .collect()
    }

    pub fn database_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.database_timeout_ms)
    }

    pub fn redis_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.redis_timeout_ms)
    }

    pub fn issuer_is_https(&self) -> bool {
        self.issuer.starts_with("https://")
    }
}

fn describe(error: figment::Error) -> String {
    match error.into_iter().next() {
        Some(e) if !e.path.is_empty() => format!("setting `{}`: {}", e.path.join("."), e.kind),
        Some(e) => format!("settings: {}", e.kind),
        None => "settings: invalid".into(),
    }
}

/// A duration in seconds: an integer, or a string such as `90s`, `15m`, `12h`, `30d`.
fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Number(n) => Ok(n),
        Raw::Text(text) => parse_duration(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration (use seconds, or a number with s, m, h or d)"
            ))
        }),
    }
}

/// A list of durations: `[60, "5m"]`, or one string `"1m, 5m, 15m"` (environment variables).
fn duration_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Item {
        Number(u64),
        Text(String),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<Item>),
        One(u64),
        Text(String),
    }
    let items: Vec<Item> = match Raw::deserialize(deserializer)? {
        Raw::List(items) => items,
        Raw::One(n) => vec![Item::Number(n)],
        Raw::Text(text) => split_list(&text).into_iter().map(Item::Text).collect(),
    };
    items
        .into_iter()
        .map(|item| match item {
            Item::Number(n) => Ok(n),
            Item::Text(text) => parse_duration(&text)
                .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a duration"))),
        })
        .collect()
}

/// A list of strings: a TOML array, or one string separated by commas or spaces.
fn string_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Raw::deserialize(deserializer)? {
        Raw::List(items) => items,
        Raw::Text(text) => split_list(&text),
    })
}

fn split_list(text: &str) -> Vec<String> {
    text.trim_matches(|c| c == '[' || c == ']')
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|item| item.trim().trim_matches('"').to_string())
        .filter(|item| !item.is_empty())
        .collect()
}

pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("15m"), Some(900));
        assert_eq!(parse_duration("30d"), Some(2_592_000));
        assert_eq!(parse_duration("3w"), None);
        assert_eq!(parse_duration("m"), None);
    }

    #[test]
    fn non_loopback_http_issuer_is_refused() {
        let settings = Settings {
            issuer: "http://auth.example.com".into(),
            ..Settings::default()
        };
        let error = settings.validate().unwrap_err();
        assert!(error.0.contains("issuer"), "{error}");
        let allowed = Settings {
            allow_insecure_http_issuer: true,
            ..settings
        };
        assert!(allowed.validate().is_ok());
    }
}
