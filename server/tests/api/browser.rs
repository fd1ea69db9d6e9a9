//! A real Chromium (Debian's `chromium` + `chromium-driver`) through login → consent → callback.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use openidconnect::PkceCodeChallenge;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Db, PASSWORD};
use crate::people::urlencode;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tool(variable: &str, default: &str) -> Option<String> {
    let path = std::env::var(variable).unwrap_or_else(|_| default.to_string());
    std::path::Path::new(&path).exists().then_some(path)
}

/// A callback endpoint for the browser to land on: answers 200 to every request.
pub fn callback_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let body = "<!doctype html><title>Callback</title><p>Signed in.</p>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// A headless Chromium driven through ChromeDriver; `None` (skipped) outside CI without them.
pub struct Chromium {
    _driver: Driver,
    _profile: tempfile::TempDir,
    pub client: fantoccini::Client,
}

pub async fn start_chromium() -> Option<Chromium> {
    // fantoccini's rustls needs a process-wide crypto provider; ring is the one in the tree.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let (Some(chromium), Some(chromedriver)) = (
        tool("PORTCULLIS_TEST_CHROMIUM", "/usr/bin/chromium"),
        tool("PORTCULLIS_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"),
    ) else {
        assert!(!in_ci, "CI=true but Chromium or ChromeDriver is missing");
        eprintln!("skipping browser test: install chromium and chromium-driver");
        return None;
    };
    let driver_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _driver_child = Command::new(&chromedriver)
        .arg(format!("--port={driver_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().unwrap();
    let capabilities: serde_json::Map<String, Value> = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-quic", "--window-size=1200,900",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    })
    .as_object()
    .unwrap()
    .clone();
    let mut browser = None;
    for _ in 0..50 {
        match ClientBuilder::rustls()
            .unwrap()
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
        {
            Ok(client) => {
                browser = Some(client);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let client = browser.expect("a WebDriver session");
    Some(Chromium {
        _driver: Driver(_driver_child),
        _profile: profile,
        client,
    })
}

/// Types `username` and the test password into the sign-in page and submits it.
pub async fn sign_in(browser: &fantoccini::Client, username: &str) {
    browser
        .wait()
        .for_element(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys(username)
        .await
        .unwrap();
    browser
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    browser
        .find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Where screenshots go: `<target>/screenshots` (the docs' pictures are copied from there).
pub fn screenshot_dir() -> std::path::PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_else(|| "target".into())
        });
    target.join("screenshots")
}

/// Saves a PNG of what the browser shows as `<target>/screenshots/<name>.png`.
pub async fn save_screenshot(browser: &fantoccini::Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Waits until the page's first heading reads `expected` (after a click that navigates, the
/// old page's heading is there, then stale, until the new page is in); returns the last
/// heading read.
pub async fn wait_for_heading(browser: &fantoccini::Client, expected: &str) -> String {
    let mut heading = String::new();
    for _ in 0..100 {
        heading = match browser.find(Locator::Css("h1")).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if heading == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    heading
}

/// Waits until the browser is at a URL starting with `prefix`; returns where it is.
pub async fn wait_for_url(browser: &fantoccini::Client, prefix: &str) -> String {
    let mut landed = String::new();
    for _ in 0..50 {
        landed = browser.current_url().await.unwrap().to_string();
        if landed.starts_with(prefix) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    landed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_consents_and_returns_with_a_code() {
    let Some(chromium) = start_chromium().await else {
        return;
    };
    let browser = &chromium.client;
    let app = spawn_app(Db::Sqlite).await.unwrap();
    let callback_port = callback_server();
    let callback = format!("http://127.0.0.1:{callback_port}/callback");
    app.create_client(portcullis::clients::NewClient {
        id: "spa".into(),
        name: "Model Playground".into(),
        secret: portcullis::clients::SecretChoice::Public,
        auth_method: None,
        grant_types: vec!["authorization_code".into()],
        scopes: vec!["openid profile email".into()],
        audiences: vec![],
        redirect_uris: vec![callback.clone()],
        post_logout_redirect_uris: vec![],
        roles: vec![],
        jwks: None,
        id_token_signed_response_alg: None,
        introspection_audiences: vec![],
        require_pushed_authorization_requests: false,
        dpop_bound_access_tokens: false,
    });
    app.user("grace", &["user"]);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let url = app.url(&format!(
        "/authorize?client_id=spa&redirect_uri={}&response_type=code&scope=openid%20profile&state=st4te&nonce=n0nce&code_challenge={}&code_challenge_method=S256",
        urlencode(&callback),
        challenge.as_str()
    ));
    browser.goto(&url).await.unwrap();
    sign_in(browser, "grace").await;
    let allow = browser
        .wait()
        .for_element(Locator::Id("allow"))
        .await
        .unwrap();
    let consent_text = browser
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(consent_text.contains("Model Playground"), "{consent_text}");
    allow.click().await.unwrap();
    let landed = wait_for_url(browser, &callback).await;
    browser.clone().close().await.unwrap();
    assert!(
        landed.starts_with(&callback),
        "the browser returned to the client: {landed}"
    );
    let landed = url::Url::parse(&landed).unwrap();
    let query: std::collections::HashMap<String, String> =
        landed.query_pairs().into_owned().collect();
    assert_eq!(query.get("state").map(String::as_str), Some("st4te"));
    assert_eq!(query.get("iss"), Some(&app.address));
    // The public client redeems the code with its PKCE verifier.
    let response = app
        .http
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", &query["code"]),
            ("redirect_uri", &callback),
            ("code_verifier", verifier.secret()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["id_token"].is_string() && body["access_token"].is_string());
    assert!(
        body.get("refresh_token").is_none(),
        "no refresh_token grant registered"
    );
}

/// A public app of `grant_types`, its redirect URI `callback`.
fn public_app(app: &crate::helpers::TestApp, id: &str, grant_types: &str, callback: &str) {
    app.create_client(portcullis::clients::NewClient {
        id: id.into(),
        name: "Model Playground".into(),
        secret: portcullis::clients::SecretChoice::Public,
        auth_method: None,
        grant_types: vec![grant_types.into()],
        scopes: vec!["openid profile offline_access".into()],
        audiences: vec![],
        redirect_uris: vec![callback.into()],
        post_logout_redirect_uris: vec![],
        roles: vec![],
        jwks: None,
        id_token_signed_response_alg: None,
        introspection_audiences: vec![],
        require_pushed_authorization_requests: false,
        dpop_bound_access_tokens: false,
    });
}

/// A command-line tool's sign-in (RFC 8628): the person opens the verification link in
/// Chromium, confirms the code, signs in, approves; the tool's next poll gets the tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_connects_a_device() {
    let Some(chromium) = start_chromium().await else {
        return;
    };
    let browser = &chromium.client;
    let app = spawn_app(Db::Sqlite).await.unwrap();
    public_app(
        &app,
        "cli",
        "urn:ietf:params:oauth:grant-type:device_code refresh_token",
        "http://127.0.0.1:9/unused",
    );
    app.user("grace", &["user"]);
    let started: Value = app
        .http
        .post(app.url("/device_authorization"))
        .form(&[("client_id", "cli"), ("scope", "openid offline_access")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let complete = started["verification_uri_complete"].as_str().unwrap();
    browser.goto(complete).await.unwrap();
    let field = browser
        .wait()
        .for_element(Locator::Id("user_code"))
        .await
        .unwrap();
    assert_eq!(
        field.prop("value").await.unwrap().as_deref(),
        started["user_code"].as_str(),
        "the code is filled in, for the person to compare with the device"
    );
    browser
        .find(Locator::Id("continue"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    sign_in(browser, "grace").await;
    let allow = browser
        .wait()
        .for_element(Locator::Id("allow"))
        .await
        .unwrap();
    allow.click().await.unwrap();
    let done = wait_for_heading(browser, "Your device is connected").await;
    browser.clone().close().await.unwrap();
    assert_eq!(done, "Your device is connected");
    let tokens: Value = app
        .http
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", started["device_code"].as_str().unwrap()),
            ("client_id", "cli"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(tokens["access_token"].is_string(), "{tokens}");
    assert!(tokens["id_token"].is_string() && tokens["refresh_token"].is_string());
}

/// A pushed authorization request (RFC 9126) followed by a real browser: the link carries
/// only the reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_follows_a_pushed_request() {
    let Some(chromium) = start_chromium().await else {
        return;
    };
    let browser = &chromium.client;
    let app = spawn_app(Db::Sqlite).await.unwrap();
    let callback = format!("http://127.0.0.1:{}/callback", callback_server());
    public_app(&app, "spa", "authorization_code", &callback);
    app.user("grace", &["user"]);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let pushed = app
        .http
        .post(app.url("/par"))
        .form(&[
            ("client_id", "spa"),
            ("response_type", "code"),
            ("redirect_uri", callback.as_str()),
            ("scope", "openid profile"),
            ("state", "pushed"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201);
    let pushed: Value = pushed.json().await.unwrap();
    let request_uri = pushed["request_uri"].as_str().unwrap();
    let link = app.url(&format!(
        "/authorize?client_id=spa&request_uri={}",
        urlencode(request_uri)
    ));
    browser.goto(&link).await.unwrap();
    sign_in(browser, "grace").await;
    browser
        .wait()
        .for_element(Locator::Id("allow"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let landed = wait_for_url(browser, &callback).await;
    // The reference is spent: the same link again is an error page.
    browser.goto(&link).await.unwrap();
    let again = browser
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    browser.clone().close().await.unwrap();
    assert_eq!(again, "This sign-in link has expired");
    let landed = url::Url::parse(&landed).unwrap();
    let query: std::collections::HashMap<String, String> =
        landed.query_pairs().into_owned().collect();
    assert_eq!(query.get("state").map(String::as_str), Some("pushed"));
    let response = app
        .http
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", &query["code"]),
            ("redirect_uri", &callback),
            ("code_verifier", verifier.secret()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
