//! `spawn_app`: the real server on a free port, on a fresh SQLite file or Postgres database.

use std::net::TcpListener;
use std::sync::Arc;

use base64::Engine;
use portcullis::app::App;
use portcullis::clients::{NewClient, SecretChoice};
use portcullis::clock::ManualClock;
use portcullis::config::Settings;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Generates one `#[tokio::test]` per backend from an `async fn(Db)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Db::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Db::Postgres).await
                }
            )*
        }
    };
}

/// A fresh database: a temp SQLite file, or a new Postgres database on the test server.
/// `None` (test skipped, with a message) only outside CI when Postgres is not configured.
pub struct TestDatabase {
    pub url: String,
    _dir: tempfile::TempDir,
}

pub fn fresh_database(db: Db) -> Option<TestDatabase> {
    let dir = tempfile::tempdir().unwrap();
    match db {
        Db::Sqlite => {
            let url = dir.path().join("portcullis.db").display().to_string();
            Some(TestDatabase { url, _dir: dir })
        }
        Db::Postgres => {
            let Some(admin_url) = std::env::var("PORTCULLIS_TEST_POSTGRES_URL")
                .ok()
                .filter(|u| !u.is_empty())
            else {
                if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                    panic!("CI=true but PORTCULLIS_TEST_POSTGRES_URL is not set: Postgres tests must run in CI");
                }
                eprintln!("skipping Postgres test: PORTCULLIS_TEST_POSTGRES_URL is not set (./scripts/test starts a server)");
                return None;
            };
            use diesel::connection::SimpleConnection;
            use diesel::Connection;
            let name = format!(
                "portcullis_test_{}",
                portcullis::secrets::generate_token()
                    .unwrap()
                    .to_lowercase()
                    .replace(['-', '_'], "")
                    .get(..16)
                    .unwrap()
            );
            let mut admin = diesel::pg::PgConnection::establish(&admin_url)
                .unwrap_or_else(|e| panic!("cannot connect to {admin_url}: {e}"));
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .unwrap();
            let mut url = url::Url::parse(&admin_url).unwrap();
            url.set_path(&name);
            Some(TestDatabase {
                url: url.to_string(),
                _dir: dir,
            })
        }
    }
}

pub const TEST_KEK: [u8; 32] = [42; 32];

pub fn test_kek_base64() -> String {
    base64::engine::general_purpose::STANDARD.encode(TEST_KEK)
}

pub struct TestApp {
    pub address: String,
    pub app: App,
    pub clock: Arc<ManualClock>,
    pub settings: Settings,
    pub database: TestDatabase,
    pub http: reqwest::Client,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        // Stop accepting; in-flight requests end with the test.
        drop(tokio::spawn(async move { handle.stop(false).await }));
    }
}

pub fn settings_for(database_url: &str, issuer: &str) -> Settings {
    Settings {
        issuer: issuer.to_string(),
        bind: "127.0.0.1:0".into(),
        database_url: database_url.to_string(),
        database_pool_size: 4,
        key_encryption_key: Some(test_kek_base64()),
        keyring_poll_interval: 3600,
        workers: 2,
        // Tests run many servers at once on two cores: deadlines for a loaded machine.
        database_timeout_ms: 10_000,
        redis_timeout_ms: 2_000,
        // Every test's requests come from 127.0.0.1, and those with Redis share its counters:
        // per-address limits are off unless a test is about them (it sets its own).
        login_ip_max_failures: 1_000_000,
        token_auth_failures_per_ip_per_minute: 1_000_000,
        authorize_requests_per_ip_per_minute: 0,
        ..Settings::default()
    }
}

pub async fn spawn_app(db: Db) -> Option<TestApp> {
    spawn_app_with(db, |_| {}).await
}

/// Starts the real server with settings adjusted by `tune`.
pub async fn spawn_app_with(db: Db, tune: impl FnOnce(&mut Settings)) -> Option<TestApp> {
    let database = fresh_database(db)?;
    let url = database.url.clone();
    Some(spawn_app_on(database, &url, tune).await)
}

/// Starts the real server on `database`, reached at `url` (its own, or a proxy's in front).
pub async fn spawn_app_on(
    database: TestDatabase,
    url: &str,
    tune: impl FnOnce(&mut Settings),
) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let address = format!("http://127.0.0.1:{port}");
    let mut settings = settings_for(url, &address);
    tune(&mut settings);
    let clock = ManualClock::starting_now();
    let running = portcullis::startup::build_on(listener, settings.clone(), clock.clone())
        .await
        .expect("server starts");
    let handle = running.handle();
    tokio::spawn(running.server);
    TestApp {
        address,
        app: running.app,
        clock,
        settings,
        database,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        handle,
    }
}

pub const API: &str = "https://inference.example.test";

/// A public browser app's registration (code flow and refresh, redirect URI `WEB_CALLBACK`).
pub fn public_web_registration(id: &str) -> NewClient {
    NewClient {
        id: id.into(),
        name: "Single-page app".into(),
        secret: SecretChoice::Public,
        auth_method: None,
        grant_types: vec!["authorization_code refresh_token".into()],
        scopes: vec!["openid offline_access".into()],
        audiences: vec![API.into()],
        redirect_uris: vec![WEB_CALLBACK.into()],
        post_logout_redirect_uris: vec![],
        roles: vec![],
        jwks: None,
        id_token_signed_response_alg: None,
        introspection_audiences: vec![],
        require_pushed_authorization_requests: false,
        dpop_bound_access_tokens: false,
    }
}

/// A confidential machine client's registration (client credentials, two audiences).
pub fn machine_client_registration(id: &str, scopes: &str) -> NewClient {
    NewClient {
        id: id.into(),
        name: format!("{id} service"),
        secret: SecretChoice::Generate,
        auth_method: None,
        grant_types: vec!["client_credentials".into()],
        scopes: vec![scopes.into()],
        audiences: vec![API.into(), "https://other.example.test".into()],
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        roles: vec![],
        jwks: None,
        id_token_signed_response_alg: None,
        introspection_audiences: vec![],
        require_pushed_authorization_requests: false,
        dpop_bound_access_tokens: false,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Registers a confidential machine client and returns its generated secret.
    pub fn machine_client(&self, id: &str, scopes: &str) -> String {
        self.create_client(machine_client_registration(id, scopes))
    }

    pub fn create_client(&self, new: NewClient) -> String {
        self.app
            .clients()
            .create(&new)
            .unwrap()
            .client_secret
            .unwrap_or_default()
    }

    pub async fn post_token(
        &self,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> reqwest::Response {
        let mut request = self.http.post(self.url("/token")).form(form);
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        request.send().await.unwrap()
    }

    pub async fn jwks(&self) -> Value {
        self.http
            .get(self.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Verifies a JWT's signature against a JWKS with josekit (independent of the server's own
/// ring-based code) and returns (header, claims).
pub fn verify_with_jwks(token: &str, jwks: &Value) -> Result<(Value, Value), String> {
    use josekit::jwk::Jwk;
    use josekit::jws::{ES256, RS256};
    let header_b64 = token.split('.').next().ok_or("no header")?;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let kid = header["kid"].as_str().ok_or("no kid")?;
    let jwk_value = jwks["keys"]
        .as_array()
        .ok_or("no keys")?
        .iter()
        .find(|k| k["kid"] == kid)
        .ok_or_else(|| format!("kid {kid} not in JWKS"))?;
    let jwk = Jwk::from_map(jwk_value.as_object().unwrap().clone()).map_err(|e| e.to_string())?;
    let (payload, _) = match header["alg"].as_str() {
        Some("ES256") => {
            let verifier = ES256.verifier_from_jwk(&jwk).map_err(|e| e.to_string())?;
            josekit::jwt::decode_with_verifier(token, &verifier)
        }
        Some("RS256") => {
            let verifier = RS256.verifier_from_jwk(&jwk).map_err(|e| e.to_string())?;
            josekit::jwt::decode_with_verifier(token, &verifier)
        }
        other => return Err(format!("unexpected alg {other:?}")),
    }
    .map_err(|e| e.to_string())?;
    Ok((header, Value::Object(payload.claims_set().clone())))
}

pub async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]
            .as_str()
            .unwrap_or("<no error field>")
            .to_string(),
    )
}

/// A browser-like HTTP client: a cookie jar, redirects followed by hand.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
}

pub fn hidden_field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no hidden field {name} in page:\n{html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_string()
}

impl Browser {
    pub fn new(app: &TestApp) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.address.clone(),
        }
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location.to_string()
        }
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.http.get(self.absolute(url)).send().await.unwrap()
    }

    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.absolute(url))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Follows an authorization request through sign-in and consent to the redirect back to
    /// the client; returns that redirect URL.
    pub async fn authorize(&self, auth_url: &str, username: &str, password: &str) -> url::Url {
        let mut response = self.get(auth_url).await;
        loop {
            let status = response.status().as_u16();
            if status == 303 || status == 302 {
                let location = response.headers()["location"].to_str().unwrap().to_string();
                if !location.starts_with('/') && !location.starts_with(&self.base) {
                    return url::Url::parse(&location).unwrap();
                }
                response = self.get(&location).await;
                continue;
            }
            assert_eq!(status, 200, "unexpected status {status}");
            let html = response.text().await.unwrap();
            let csrf = hidden_field(&html, "csrf_token");
            let request = hidden_field(&html, "request");
            response = if html.contains("name=\"password\"") {
                self.post_form(
                    "/login",
                    &[
                        ("csrf_token", &csrf),
                        ("request", &request),
                        ("username", username),
                        ("password", password),
                    ],
                )
                .await
            } else {
                self.post_form(
                    "/consent",
                    &[
                        ("csrf_token", &csrf),
                        ("request", &request),
                        ("decision", "allow"),
                    ],
                )
                .await
            };
            let status = response.status().as_u16();
            assert!(
                status == 303,
                "form POST answered {status}: {}",
                response.text().await.unwrap()
            );
        }
    }
}

pub const PASSWORD: &str = "correct horse battery staple";
pub const WEB_CALLBACK: &str = "http://127.0.0.1:9/callback";

impl TestApp {
    /// Creates a user with a password and roles; returns the subject id.
    pub fn user(&self, username: &str, roles: &[&str]) -> String {
        self.app
            .users()
            .create(&portcullis::users::NewUser {
                username: username.into(),
                email: format!("{username}@example.test"),
                name: format!("{username} Example"),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                password: PASSWORD.into(),
            })
            .unwrap()
            .id
    }

    /// A confidential web app using the code flow with refresh tokens.
    pub fn web_client(&self, id: &str) -> String {
        self.create_client(NewClient {
            id: id.into(),
            name: "Notebook Web App".into(),
            secret: SecretChoice::Generate,
            auth_method: None,
            grant_types: vec!["authorization_code refresh_token".into()],
            scopes: vec!["openid profile email offline_access models:read".into()],
            audiences: vec![API.into()],
            redirect_uris: vec![WEB_CALLBACK.into()],
            post_logout_redirect_uris: vec!["http://127.0.0.1:9/signed-out".into()],
            roles: vec![],
            jwks: None,
            id_token_signed_response_alg: None,
            introspection_audiences: vec![],
            require_pushed_authorization_requests: false,
            dpop_bound_access_tokens: false,
        })
    }
}

impl TestApp {
    /// Runs the real `portcullis` binary against this app's database and KEK.
    pub fn cli_output(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .env("PORTCULLIS_DATABASE_URL", &self.database.url)
            .env("PORTCULLIS_KEY_ENCRYPTION_KEY", test_kek_base64())
            .env("PORTCULLIS_ISSUER", &self.address)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs the real `portcullis` binary, which must succeed, and reads its JSON output.
    pub fn cli(&self, args: &[&str]) -> serde_json::Value {
        let output = self.cli_output(args);
        assert!(
            output.status.success(),
            "portcullis {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// A client-credentials token response (asserting 200).
    pub async fn cc_token(&self, id: &str, secret: &str, form: &[(&str, &str)]) -> Value {
        let mut fields = vec![("grant_type", "client_credentials")];
        fields.extend_from_slice(form);
        let response = self.post_token(&fields, Some((id, secret))).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The new state of the keyring and authorization model after another process (the CLI)
    /// changed the database.
    pub fn sync(&self) {
        self.app.sync_with_cluster().unwrap();
    }

    /// Waits until the audit log (written in batches) holds an event of `kind`.
    pub async fn audit_events(&self, kind: &str) -> Vec<portcullis::store::audit::AuditEvent> {
        self.audit_events_at_least(kind, 1).await
    }

    /// Waits until the audit log holds an event of `kind` that `matches`; panics without one.
    /// (Waiting for any event of the kind is not enough: an earlier one of the same kind may
    /// be written before the one sought, which is still in the writer's batch.)
    pub async fn audit_event(
        &self,
        kind: &str,
        matches: impl Fn(&portcullis::store::audit::AuditEvent) -> bool,
    ) -> portcullis::store::audit::AuditEvent {
        let mut seen = Vec::new();
        for _ in 0..100 {
            let query = portcullis::store::audit::AuditQuery {
                kind: Some(kind.to_string()),
                limit: 1000,
                ..Default::default()
            };
            seen = self.app.store().query_audit_events(&query).unwrap();
            if let Some(found) = seen.iter().find(|e| matches(e)) {
                return found.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("no matching `{kind}` audit event among {seen:?}");
    }

    /// Waits until the audit log holds at least `count` events of `kind`.
    pub async fn audit_events_at_least(
        &self,
        kind: &str,
        count: usize,
    ) -> Vec<portcullis::store::audit::AuditEvent> {
        let mut found = Vec::new();
        for _ in 0..50 {
            let query = portcullis::store::audit::AuditQuery {
                kind: Some(kind.to_string()),
                limit: 100,
                ..Default::default()
            };
            found = self.app.store().query_audit_events(&query).unwrap();
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        found
    }
}

pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// The test Redis URL. In CI its absence fails the test; elsewhere the test is skipped with a
/// message (`None`).
pub fn redis_url_or_skip(what: &str) -> Option<String> {
    match std::env::var("PORTCULLIS_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        Some(url) => Some(url),
        None => {
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
                "CI=true but PORTCULLIS_TEST_REDIS_URL is not set: the Redis tests must run in CI"
            );
            eprintln!("skipping {what}: PORTCULLIS_TEST_REDIS_URL is not set (./scripts/test starts Redis)");
            None
        }
    }
}

/// An admin machine client's token for the admin audience, and the client's secret.
pub async fn admin_token(app: &TestApp) -> (String, String) {
    let audience = format!("{}/admin/v1", app.address);
    let secret = app.create_client(NewClient {
        id: "admin-bot".into(),
        name: "Admin bot".into(),
        secret: SecretChoice::Generate,
        auth_method: None,
        grant_types: vec!["client_credentials".into()],
        scopes: vec!["portcullis:admin".into()],
        audiences: vec![audience.clone()],
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        roles: vec!["admin".into()],
        jwks: None,
        id_token_signed_response_alg: None,
        introspection_audiences: vec![],
        require_pushed_authorization_requests: false,
        dpop_bound_access_tokens: false,
    });
    let body = app
        .cc_token(
            "admin-bot",
            &secret,
            &[("resource", &audience), ("scope", "portcullis:admin")],
        )
        .await;
    (body["access_token"].as_str().unwrap().to_string(), secret)
}

/// A name no other test (nor an earlier run, in a shared Redis) uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        portcullis::secrets::generate_token()
            .unwrap()
            .to_lowercase()
            .replace(['-', '_'], "")
            .get(..10)
            .unwrap()
    )
}

/// A PKCE pair (RFC 7636 §4.1–4.2, S256).
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

pub fn pkce() -> Pkce {
    let verifier = format!(
        "{}{}",
        portcullis::secrets::generate_token().unwrap(),
        portcullis::secrets::generate_token().unwrap()
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    Pkce {
        challenge: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()),
        verifier,
    }
}

/// An authorization request (RFC 6749 §4.1.1, PKCE S256 with `challenge`) at `base`.
pub fn authorize_url(
    base: &str,
    client_id: &str,
    scope: &str,
    challenge: &str,
    redirect_uri: Option<&str>,
    state: Option<&str>,
) -> String {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("scope", scope),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    params.extend(redirect_uri.map(|uri| ("redirect_uri", uri)));
    params.extend(state.map(|state| ("state", state)));
    url::Url::parse_with_params(&format!("{base}/authorize"), &params)
        .unwrap()
        .to_string()
}

impl Browser {
    /// An authorization code for `client_id` (redirect URI `WEB_CALLBACK`), signing in as
    /// `username` and consenting when asked; returns the code and its PKCE verifier.
    pub async fn code(&self, client_id: &str, scope: &str, username: &str) -> (String, String) {
        let pkce = pkce();
        let url = authorize_url(
            &self.base,
            client_id,
            scope,
            &pkce.challenge,
            Some(WEB_CALLBACK),
            Some("s"),
        );
        let callback = self.authorize(&url, username, PASSWORD).await;
        let code = callback
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap_or_else(|| panic!("no code in {callback}"))
            .1
            .into_owned();
        (code, pkce.verifier)
    }
}

/// `POST {base}/token` with a form and Basic client credentials.
pub async fn token_at(
    http: &reqwest::Client,
    base: &str,
    form: &[(&str, &str)],
    client: (&str, &str),
) -> reqwest::Response {
    http.post(format!("{base}/token"))
        .basic_auth(client.0, Some(client.1))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// A client's DPoP key (EC P-256) that makes proofs (RFC 9449 §4.2).
pub struct DpopKey {
    key: ring::signature::EcdsaKeyPair,
    pub jwk: Value,
}

impl Default for DpopKey {
    fn default() -> Self {
        DpopKey::new()
    }
}

impl DpopKey {
    pub fn new() -> DpopKey {
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = key.public_key().as_ref().to_vec();
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        });
        DpopKey { key, jwk }
    }

    /// RFC 7638 thumbprint: what a bound token's `cnf.jkt` must be.
    pub fn thumbprint(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.jwk["x"].as_str().unwrap(),
            self.jwk["y"].as_str().unwrap()
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
    }

    /// A proof with these header and claims, signed by this key.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self
            .key
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(signature.as_ref()))
    }

    /// A fresh proof for `method` `url` at `iat`, with `ath` for `access_token` and `nonce`.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        iat: i64,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> String {
        let mut claims = serde_json::json!({
            "jti": portcullis::secrets::generate_token().unwrap(),
            "htm": method, "htu": url, "iat": iat,
        });
        if let Some(token) = access_token {
            claims["ath"] = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
                .into();
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        self.sign(&header, &claims)
    }
}

impl Browser {
    /// Follows an authorization request through sign-in (when asked) up to the page it then
    /// shows: the consent page's HTML, or an error page's (with its status).
    pub async fn page_after_sign_in(&self, auth_url: &str, username: &str) -> (u16, String) {
        let mut response = self.get(auth_url).await;
        for _ in 0..5 {
            let status = response.status().as_u16();
            if status == 303 || status == 302 {
                let location = response.headers()["location"].to_str().unwrap().to_string();
                assert!(
                    location.starts_with('/') || location.starts_with(&self.base),
                    "left the server for {location}"
                );
                response = self.get(&location).await;
                continue;
            }
            let html = response.text().await.unwrap();
            if status != 200 || !html.contains("name=\"password\"") {
                return (status, html);
            }
            response = self
                .post_form(
                    "/login",
                    &[
                        ("csrf_token", &hidden_field(&html, "csrf_token")),
                        ("request", &hidden_field(&html, "request")),
                        ("username", username),
                        ("password", PASSWORD),
                    ],
                )
                .await;
        }
        panic!("too many redirects from {auth_url}");
    }
}
