//! The outside audit's lesser findings, each reproduced the way it was found: tokens of a
//! deleted client, the SQLite files' permissions, the admin API's document path, public
//! metrics, an access token as `id_token_hint`, sessions without an end, weak client keys.

use serde_json::{json, Value};

use crate::helpers::{
    admin_token, authorize_url, spawn_app, spawn_app_with, token_at, Browser, Db, TestApp, API,
    WEB_CALLBACK,
};
use crate::on_both_backends;

on_both_backends!(deleting_a_client_ends_its_tokens);

/// A resource server for `API`, allowed to introspect its tokens.
fn resource_server(app: &TestApp) -> String {
    app.create_client(portcullis::clients::NewClient {
        id: "inference-api".into(),
        name: "Inference API".into(),
        secret: portcullis::clients::SecretChoice::Generate,
        auth_method: None,
        grant_types: vec!["client_credentials".into()],
        scopes: vec![],
        audiences: vec![],
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        roles: vec![],
        jwks: None,
        id_token_signed_response_alg: None,
        introspection_audiences: vec![API.into()],
        require_pushed_authorization_requests: false,
        dpop_bound_access_tokens: false,
    })
}

async fn active(app: &TestApp, introspector: (&str, &str), token: &str) -> bool {
    let answer: Value = app
        .http
        .post(app.url("/introspect"))
        .basic_auth(introspector.0, Some(introspector.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["active"] == true
}

/// A code-flow token response for the web client.
async fn signed_in_tokens(app: &TestApp, secret: &str) -> Value {
    let (code, verifier) = Browser::new(app).code("web", "openid", "ada").await;
    token_at(
        &app.http,
        &app.address,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", WEB_CALLBACK),
            ("code_verifier", &verifier),
        ],
        ("web", secret),
    )
    .await
    .json()
    .await
    .unwrap()
}

async fn deleting_a_client_ends_its_tokens(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let rs = resource_server(&app);
    let svc = app.machine_client("svc", "models:read");
    let machine = app.cc_token("svc", &svc, &[]).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let web = app.web_client("web");
    app.user("ada", &["user"]);
    let person = signed_in_tokens(&app, &web).await;
    let person = person["access_token"].as_str().unwrap();
    assert!(active(&app, ("inference-api", &rs), &machine).await);
    assert!(active(&app, ("inference-api", &rs), person).await);
    // The admin API deletes one client, the command line the other.
    let (admin, _) = admin_token(&app).await;
    let deleted = app
        .http
        .delete(app.url("/admin/v1/clients/svc"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    app.cli(&["client", "delete", "--id", "web"]);
    app.sync();
    assert!(!active(&app, ("inference-api", &rs), &machine).await);
    assert!(!active(&app, ("inference-api", &rs), person).await);
    let userinfo = app
        .http
        .get(app.url("/userinfo"))
        .bearer_auth(person)
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), 401);
    // A client re-created under the same id does not revive its predecessor's tokens.
    app.clock.advance(1);
    app.machine_client("svc", "models:read");
    assert!(!active(&app, ("inference-api", &rs), &machine).await);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app(Db::Sqlite).await.unwrap();
    app.user("ada", &["user"]); // a password hash in the database and its log
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", app.database.url);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{path}: {mode:o}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_admin_document_itself_is_public() {
    let app = spawn_app(Db::Sqlite).await.unwrap();
    let get = |path: &str| app.http.get(app.url(path)).send();
    assert_eq!(get("/admin/v1/openapi.json").await.unwrap().status(), 200);
    for path in [
        "/admin/v1/clients/openapi.json",
        "/admin/v1/users/openapi.json",
        "/admin/v1/audit-events/openapi.json",
    ] {
        assert_eq!(get(path).await.unwrap().status(), 401, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_bearer_token() {
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.metrics_token = Some("a-long-random-scrape-token".into())
    })
    .await
    .unwrap();
    let scrape = |token: Option<&str>| {
        let mut request = app.http.get(app.url("/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(scrape(None).await.unwrap().status(), 401);
    assert_eq!(scrape(Some("wrong")).await.unwrap().status(), 401);
    let allowed = scrape(Some("a-long-random-scrape-token")).await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert!(allowed.text().await.unwrap().contains("portcullis_"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_id_token_is_an_id_token_hint() {
    let app = spawn_app(Db::Sqlite).await.unwrap();
    let web = app.web_client("web");
    app.user("ada", &["user"]);
    let tokens = signed_in_tokens(&app, &web).await;
    let logout = |hint: &str| {
        app.http
            .get(app.url("/logout"))
            .query(&[("id_token_hint", hint)])
            .send()
    };
    let refused = logout(tokens["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("not an ID token"));
    let accepted = logout(tokens["id_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(accepted.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_ends_at_its_absolute_lifetime() {
    let app = spawn_app_with(Db::Sqlite, |s| s.session_max_lifetime = 3600)
        .await
        .unwrap();
    app.web_client("web");
    app.user("ada", &["user"]);
    let browser = Browser::new(&app);
    browser.code("web", "openid", "ada").await; // signed in and consented
    let authorize = || async {
        let pkce = crate::helpers::pkce();
        let url = authorize_url(
            &app.address,
            "web",
            "openid",
            &pkce.challenge,
            Some(WEB_CALLBACK),
            None,
        );
        browser.get(&url).await
    };
    let again = authorize().await;
    assert!(
        again.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(WEB_CALLBACK),
        "still signed in"
    );
    // Activity does not extend it: an hour after signing in, sign in again.
    app.clock.advance(3600);
    let expired = authorize().await;
    assert!(expired.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/login"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_client_keys_under_2048_bits_are_refused() {
    use josekit::jwk::KeyPair;
    let app = spawn_app(Db::Sqlite).await.unwrap();
    let (token, _) = admin_token(&app).await;
    for (bits, expected) in [(1024, 400), (2048, 201)] {
        let key = josekit::jwk::alg::rsa::RsaKeyPair::generate(bits).unwrap();
        let mut jwk = key.to_jwk_public_key();
        jwk.set_key_id("k1");
        let response = app
            .http
            .post(app.url("/admin/v1/clients"))
            .bearer_auth(&token)
            .json(&json!({
                "client_id": format!("signer{bits}"),
                "client_name": "Signer",
                "grant_types": ["client_credentials"],
                "jwks": {"keys": [serde_json::to_value(jwk.as_ref()).unwrap()]},
            }))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, expected, "{bits} bits: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_uris_are_an_allow_list() {
    let app = spawn_app(Db::Sqlite).await.unwrap();
    let (token, _) = admin_token(&app).await;
    for (uri, expected) in [
        ("ws://127.0.0.1/cb", 400),
        ("ftp://files.example.com/cb", 400),
        ("about:blank", 400),
        ("blob:https://app.example.com/x", 400),
        ("com.example.app:/callback", 201),
        ("http://[::1]:8080/cb", 201),
    ] {
        let response = app
            .http
            .post(app.url("/admin/v1/clients"))
            .bearer_auth(&token)
            .json(&json!({
                "client_id": crate::helpers::unique("app"),
                "client_name": "App",
                "public": true,
                "grant_types": ["authorization_code"],
                "redirect_uris": [uri],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), expected, "{uri}");
    }
}

/// Sends `head` and the first `sent` bytes of a body of `length`, then `more` bytes one at a
/// time every 400 ms; returns what the server answered and when.
fn trickle(port: u16, sent: usize, more: usize) -> (String, std::time::Duration) {
    use std::io::{Read, Write};
    let started = std::time::Instant::now();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    write!(
        stream,
        "POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n{}",
        "a".repeat(sent)
    )
    .unwrap();
    for _ in 0..more {
        std::thread::sleep(std::time::Duration::from_millis(400));
        if stream.write_all(b"a").is_err() {
            break;
        }
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    (reply, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_must_arrive_within_its_deadline() {
    let app = spawn_app_with(Db::Sqlite, |s| s.request_body_timeout = 2)
        .await
        .unwrap();
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    // A stalled body, and one trickling a byte at a time: both end at the deadline.
    for (sent, more) in [(10, 0), (1, 20)] {
        let (reply, took) = tokio::task::spawn_blocking(move || trickle(port, sent, more))
            .await
            .unwrap();
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
        assert!(reply.contains("did not arrive in time"), "{reply}");
        assert!(
            took >= std::time::Duration::from_secs(2) && took < std::time::Duration::from_secs(5),
            "{took:?}"
        );
    }
    // A body that arrives whole is not delayed.
    let secret = app.machine_client("svc", "models:read");
    app.cc_token("svc", &secret, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_may_hold_only_so_many_connections() {
    use std::io::Read;
    let app = spawn_app_with(Db::Sqlite, |s| s.max_connections_per_ip = 4)
        .await
        .unwrap();
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let held: Vec<std::net::TcpStream> = (0..4)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The fifth is closed at once.
    let closed = tokio::task::spawn_blocking(move || {
        let mut fifth = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        fifth
            .set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        let started = std::time::Instant::now();
        let mut buffer = [0u8; 16];
        let read = fifth.read(&mut buffer);
        (read.map_err(|e| e.kind()), started.elapsed())
    })
    .await
    .unwrap();
    assert!(
        matches!(closed.0, Ok(0) | Err(std::io::ErrorKind::ConnectionReset)),
        "{closed:?}"
    );
    assert!(closed.1 < std::time::Duration::from_secs(2), "{closed:?}");
    // Once the held ones close, the address is served again.
    drop(held);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let health = reqwest::Client::new()
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_flood_cannot_grow_the_session_store_beyond_its_bound() {
    let Some(redis) = crate::processes::PrivateRedis::start() else {
        return;
    };
    let url = redis.url();
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.redis_url = Some(url);
        s.trusted_proxies = vec!["127.0.0.1".into()];
        s.authorize_requests_per_ip_per_minute = 50;
    })
    .await
    .unwrap();
    app.web_client("web");
    let pkce = crate::helpers::pkce();
    let longest_state = "s".repeat(2048);
    let authorize = authorize_url(
        &app.address,
        "web",
        "openid",
        &pkce.challenge,
        Some(WEB_CALLBACK),
        Some(&longest_state),
    );
    // 300 requests from one address, each without a cookie: a new session each.
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..300 {
        let response = app
            .http
            .get(&authorize)
            .header("x-forwarded-for", "198.51.100.77")
            .send()
            .await
            .unwrap();
        *statuses.entry(response.status().as_u16()).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&303), Some(&50), "{statuses:?}");
    assert_eq!(statuses.get(&429), Some(&250), "{statuses:?}");
    // Another address is not affected.
    let other = app
        .http
        .get(&authorize)
        .header("x-forwarded-for", "198.51.100.78")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 303);
    // In Redis: one session per admitted request, each small and gone within minutes.
    let mut connection = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("portcullis:session:*")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(keys.len(), 51);
    for key in &keys {
        let ttl: i64 = redis::cmd("TTL")
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!((1..=600).contains(&ttl), "{key}: {ttl}");
        let size: i64 = redis::cmd("STRLEN")
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!(size < 8 * 1024, "{key}: {size} bytes");
    }
    // A state over the bound is refused (to the client, without it).
    let too_long = "s".repeat(2049);
    let long = authorize_url(
        &app.address,
        "web",
        "openid",
        &pkce.challenge,
        Some(WEB_CALLBACK),
        Some(&too_long),
    );
    let refused = app.http.get(&long).send().await.unwrap();
    let location = refused.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(WEB_CALLBACK) && location.contains("error=invalid_request"),
        "{location}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_keeps_only_its_newest_pending_requests() {
    let app = spawn_app(Db::Sqlite).await.unwrap();
    app.web_client("web");
    let browser = Browser::new(&app);
    let mut ids = Vec::new();
    for _ in 0..5 {
        let pkce = crate::helpers::pkce();
        let url = authorize_url(
            &app.address,
            "web",
            "openid",
            &pkce.challenge,
            Some(WEB_CALLBACK),
            None,
        );
        let response = browser.get(&url).await;
        let location = response.headers()["location"].to_str().unwrap().to_string();
        ids.push(location.trim_start_matches("/login?request=").to_string());
    }
    for (n, id) in ids.iter().enumerate() {
        let page = browser
            .get(&format!("/login?request={id}"))
            .await
            .text()
            .await
            .unwrap();
        let kept = crate::helpers::hidden_field(&page, "request");
        if n < 2 {
            assert_eq!(kept, "", "request {n} was forgotten");
        } else {
            assert_eq!(&kept, id, "request {n} is kept");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_takes_only_tokens_of_an_openid_sign_in() {
    let app = spawn_app(Db::Sqlite).await.unwrap();
    let secret = app.web_client("web");
    app.user("ada", &["user"]);
    let browser = Browser::new(&app);
    let userinfo = |token: String| {
        let app = &app;
        async move {
            app.http
                .get(app.url("/userinfo"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for (scope, expected) in [("openid", 200), ("models:read", 403)] {
        let (code, verifier) = browser.code("web", scope, "ada").await;
        let tokens: Value = token_at(
            &app.http,
            &app.address,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", WEB_CALLBACK),
                ("code_verifier", &verifier),
            ],
            ("web", &secret),
        )
        .await
        .json()
        .await
        .unwrap();
        let access = tokens["access_token"].as_str().unwrap().to_string();
        assert_eq!(userinfo(access).await, expected, "a sign-in for {scope}");
    }
}
