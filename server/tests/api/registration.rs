//! Dynamic client registration (RFC 7591) and its management (RFC 7592): the three policies,
//! initial access tokens from the CLI and the admin API, every validation error, reading,
//! updating and deleting with and without the registration access token, the expiry of unused
//! dynamic clients, and the `openidconnect` crate registering itself as a real client would.
//! SQLite with in-process counters; PostgreSQL with Redis.

use portcullis::clients::initial_access_tokens::NewInitialToken;
use portcullis::config::{RegistrationPolicy, Settings};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    admin_token, authorize_url, pkce, public_web_registration, redis_url_or_skip, spawn_app_with,
    Browser, Db, TestApp, API, PASSWORD, WEB_CALLBACK,
};
use crate::on_both_backends;

on_both_backends!(
    registration_is_closed_by_default,
    the_open_policy_registers_public_code_flow_clients_only,
    open_registrations_are_limited_per_address,
    the_token_policy_requires_an_initial_access_token,
    registrations_are_validated_per_rfc7591,
    a_client_reads_updates_and_deletes_its_registration,
    unused_dynamic_clients_expire,
    a_relying_party_library_registers_and_signs_in,
);

const DAY: i64 = 86_400;

/// The server under `policy`, trusting 127.0.0.1 as a proxy so each test counts its
/// registrations under an address of its own (Redis counters outlive a test); on PostgreSQL
/// with Redis.
async fn spawn(
    db: Db,
    policy: RegistrationPolicy,
    tune: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    let redis = match db {
        Db::Postgres => Some(redis_url_or_skip("registration on PostgreSQL + Redis")?),
        Db::Sqlite => None,
    };
    spawn_app_with(db, |s| {
        s.registration = policy;
        s.redis_url = redis;
        s.trusted_proxies = vec!["127.0.0.1".into()];
        tune(s);
    })
    .await
}

/// A client address no other test (or earlier run) uses.
fn address() -> String {
    let token = portcullis::secrets::generate_token().unwrap();
    let b = token.as_bytes();
    format!("10.{}.{}.{}", b[0], b[1], b[2])
}

struct Reply {
    status: u16,
    body: Value,
    challenge: Option<String>,
    retry_after: Option<String>,
    cache_control: Option<String>,
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    from: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let mut request = app
        .http
        .request(method, app.url(path))
        .header("x-forwarded-for", from);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (challenge, retry_after, cache_control) = (
        header("www-authenticate"),
        header("retry-after"),
        header("cache-control"),
    );
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    Reply {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        challenge,
        retry_after,
        cache_control,
    }
}

async fn register(app: &TestApp, from: &str, bearer: Option<&str>, body: &Value) -> Reply {
    send(app, Method::POST, "/register", from, bearer, Some(body)).await
}

/// The path of a `registration_client_uri`.
fn management_path(app: &TestApp, registered: &Value) -> String {
    registered["registration_client_uri"]
        .as_str()
        .unwrap()
        .strip_prefix(&app.address)
        .unwrap()
        .to_string()
}

/// What an MCP client sends (a public client of the code flow on loopback).
fn mcp_client(name: &str) -> Value {
    json!({
        "client_name": name,
        "redirect_uris": [WEB_CALLBACK],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "openid offline_access",
    })
}

fn error(reply: &Reply) -> (u16, &str) {
    (
        reply.status,
        reply.body["error"].as_str().unwrap_or("<none>"),
    )
}

async fn discovery(app: &TestApp) -> Value {
    app.http
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A code for `client_id` through sign-in and consent, redeemed as a public client: the
/// token response.
async fn sign_in(app: &TestApp, browser: &Browser, client_id: &str, scope: &str) -> Value {
    let (code, verifier) = browser.code(client_id, scope, "ada").await;
    let response = app
        .post_token(
            &[
                ("grant_type", "authorization_code"),
                ("client_id", client_id),
                ("code", &code),
                ("redirect_uri", WEB_CALLBACK),
                ("code_verifier", &verifier),
            ],
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn registration_is_closed_by_default(db: Db) {
    assert_eq!(Settings::default().registration, RegistrationPolicy::Closed);
    let Some(app) = spawn(db, Settings::default().registration, |_| {}).await else {
        return;
    };
    let from = address();
    let refused = register(&app, &from, None, &mcp_client("Agent")).await;
    assert_eq!(error(&refused), (403, "access_denied"), "{}", refused.body);
    // Even with something that looks like a token, and at the management endpoints.
    let refused = register(&app, &from, Some("anything"), &mcp_client("Agent")).await;
    assert_eq!(error(&refused), (403, "access_denied"));
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let body = json!({"client_id": "dyn-x"});
        let reply = send(
            &app,
            method.clone(),
            "/register/dyn-x",
            &from,
            Some("anything"),
            Some(&body),
        )
        .await;
        assert_eq!(error(&reply), (403, "access_denied"), "{method}");
    }
    // Not advertised (RFC 8414 §2), and nothing was stored.
    let metadata = discovery(&app).await;
    assert!(
        metadata.get("registration_endpoint").is_none(),
        "{metadata}"
    );
    assert!(app
        .app
        .clients()
        .list()
        .unwrap()
        .iter()
        .all(|c| c.id == "portcullis-console"));
}

async fn the_open_policy_registers_public_code_flow_clients_only(db: Db) {
    let Some(app) = spawn(db, RegistrationPolicy::Open, |_| {}).await else {
        return;
    };
    assert_eq!(
        discovery(&app).await["registration_endpoint"],
        app.url("/register").as_str()
    );
    let from = address();
    let mut body = mcp_client("Claude Code");
    // Scopes beyond `dynamic_client_scopes` are dropped (RFC 7591 §2: the server may
    // replace requested values), not refused.
    body["scope"] = "openid offline_access mcp:tools portcullis:admin".into();
    body["client_uri"] = "https://claude.example.test".into();
    body["x-vendor-extension"] = json!({"ignored": true});
    let registered = register(&app, &from, None, &body).await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    assert_eq!(registered.cache_control.as_deref(), Some("no-store"));
    let info = &registered.body;
    let id = info["client_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("dyn-"), "{id}");
    assert!(
        info.get("client_secret").is_none(),
        "a public client has no secret"
    );
    assert!(info.get("client_secret_expires_at").is_none());
    assert_eq!(info["client_id_issued_at"], app.app.now());
    assert_eq!(info["token_endpoint_auth_method"], "none");
    assert_eq!(
        info["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(info["response_types"], json!(["code"]));
    assert_eq!(info["scope"], "openid offline_access");
    assert_eq!(info["redirect_uris"], json!([WEB_CALLBACK]));
    assert_eq!(info["client_name"], "Claude Code");
    assert_eq!(info["client_uri"], "https://claude.example.test");
    assert!(info.get("x-vendor-extension").is_none());
    assert_eq!(
        info["registration_client_uri"],
        app.url(&format!("/register/{id}")).as_str()
    );
    assert!(info["registration_access_token"].as_str().unwrap().len() >= 43);

    // The client signs a person in; the consent page says where the browser goes back to
    // and that nobody reviewed the application.
    app.user("ada", &["user"]);
    let browser = Browser::new(&app);
    let pkce = pkce();
    let url = authorize_url(
        &app.address,
        &id,
        "openid",
        &pkce.challenge,
        Some(WEB_CALLBACK),
        Some("s"),
    );
    let (status, consent) = browser.page_after_sign_in(&url, "ada").await;
    assert_eq!(status, 200);
    assert!(
        consent.contains(r#"id="redirect-host">127.0.0.1:9<"#),
        "{consent}"
    );
    assert!(consent.contains(r#"id="loopback-warning""#));
    assert!(consent.contains(r#"id="self-described""#));
    let tokens = sign_in(&app, &browser, &id, "openid offline_access").await;
    assert!(tokens["refresh_token"].is_string());
    // PKCE is required of it (the error goes back to its verified redirect URI).
    let no_pkce = url::Url::parse_with_params(
        &app.url("/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", id.as_str()),
            ("redirect_uri", WEB_CALLBACK),
            ("scope", "openid"),
        ],
    )
    .unwrap();
    let refused = browser.get(no_pkce.as_str()).await;
    let location = refused.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(WEB_CALLBACK) && location.contains("error=invalid_request"),
        "{location}"
    );

    // Anything but a public client of the code flow is refused.
    let secret_client = json!({"redirect_uris": [WEB_CALLBACK], "token_endpoint_auth_method": "client_secret_basic"});
    let machine =
        json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"});
    let machine_with_secret = json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"});
    let device = json!({"redirect_uris": [WEB_CALLBACK], "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]});
    let exchange = json!({"redirect_uris": [WEB_CALLBACK], "grant_types": ["authorization_code", "urn:ietf:params:oauth:grant-type:token-exchange"]});
    let keys = json!({"redirect_uris": [WEB_CALLBACK], "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []}});
    for refused in [
        secret_client,
        machine,
        machine_with_secret,
        device,
        exchange,
        keys,
    ] {
        let reply = register(&app, &from, None, &refused).await;
        assert_eq!(
            error(&reply),
            (400, "invalid_client_metadata"),
            "{refused}: {}",
            reply.body
        );
    }
    // Omitted, the method is `none` here (not RFC 7591's client_secret_basic default).
    let minimal = register(&app, &from, None, &json!({"redirect_uris": [WEB_CALLBACK]})).await;
    assert_eq!(minimal.status, 201, "{}", minimal.body);
    assert_eq!(minimal.body["token_endpoint_auth_method"], "none");
    assert_eq!(minimal.body["client_name"], "Unnamed application");
    let dynamic: Vec<_> = app
        .app
        .clients()
        .list()
        .unwrap()
        .into_iter()
        .filter(|c| c.kind == portcullis::clients::ClientKind::Dynamic)
        .collect();
    assert_eq!(dynamic.len(), 2);

    let event = app
        .audit_event("client_registered", |e| {
            e.client_id.as_deref() == Some(id.as_str())
        })
        .await;
    assert_eq!(event.details["policy"], "open");
    assert_eq!(event.details["ip"], from.as_str());
}

async fn open_registrations_are_limited_per_address(db: Db) {
    let Some(app) = spawn(db, RegistrationPolicy::Open, |s| {
        s.registrations_per_ip_per_hour = 3;
    })
    .await
    else {
        return;
    };
    let from = address();
    for i in 0..3 {
        let reply = register(&app, &from, None, &mcp_client(&format!("agent {i}"))).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let limited = register(&app, &from, None, &mcp_client("agent 4")).await;
    assert_eq!(error(&limited), (429, "too_many_requests"));
    let wait: u64 = limited.retry_after.unwrap().parse().unwrap();
    assert!((1..=3600).contains(&wait), "{wait}");
    // Another address is counted apart; the next hour starts afresh.
    let elsewhere = register(&app, &address(), None, &mcp_client("agent 5")).await;
    assert_eq!(elsewhere.status, 201);
    app.clock.advance(3600);
    let later = register(&app, &from, None, &mcp_client("agent 6")).await;
    assert_eq!(later.status, 201, "{}", later.body);
}

async fn the_token_policy_requires_an_initial_access_token(db: Db) {
    let Some(app) = spawn(db, RegistrationPolicy::Token, |s| {
        s.dynamic_client_audiences = vec![API.into()];
    })
    .await
    else {
        return;
    };
    let from = address();
    // Without a token: RFC 6750 §3.1, a challenge without an error code; with a wrong one,
    // invalid_token.
    let missing = register(&app, &from, None, &mcp_client("Agent")).await;
    assert_eq!(error(&missing), (401, "invalid_token"));
    assert_eq!(
        missing.challenge.as_deref(),
        Some(r#"Bearer realm="portcullis""#)
    );
    let wrong = register(&app, &from, Some("not-a-token"), &mcp_client("Agent")).await;
    assert_eq!(error(&wrong), (401, "invalid_token"));
    assert!(wrong
        .challenge
        .unwrap()
        .starts_with(r#"Bearer realm="portcullis", error="invalid_token""#));

    // The CLI makes one, shown once, good for two registrations.
    let created = app.cli(&[
        "registration",
        "token",
        "create",
        "--description",
        "MCP gateway",
        "--max-uses",
        "2",
    ]);
    let token = created["initial_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let token_id = created["id"].as_str().unwrap().to_string();
    assert!(token_id.starts_with("iat-"));
    assert_eq!(
        (
            &created["max_uses"],
            &created["uses"],
            &created["description"]
        ),
        (&json!(2), &json!(0), &json!("MCP gateway"))
    );
    assert!(created.get("token_hash").is_none());
    // Under `token`, a confidential machine client may register.
    let machine = json!({
        "client_name": "Batch job",
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_post",
        "scope": "models:read",
    });
    let registered = register(&app, &from, Some(&token), &machine).await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let machine_id = registered.body["client_id"].as_str().unwrap().to_string();
    let secret = registered.body["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(registered.body["client_secret_expires_at"], 0);
    assert_eq!(
        registered.body["token_endpoint_auth_method"],
        "client_secret_post"
    );
    let issued = app
        .cc_token(&machine_id, &secret, &[("resource", API)])
        .await;
    assert_eq!(
        crate::helpers::claims_of(issued["access_token"].as_str().unwrap())["aud"],
        API
    );
    let second = register(&app, &from, Some(&token), &mcp_client("Agent")).await;
    assert_eq!(second.status, 201);
    let used_up = register(&app, &from, Some(&token), &mcp_client("Agent")).await;
    assert_eq!(error(&used_up), (401, "invalid_token"));
    let listed = app.cli(&["registration", "token", "list"]);
    assert_eq!(listed[0]["uses"], 2);

    // The admin API makes one that expires (by the server's clock).
    let (admin, _) = admin_token(&app).await;
    let made = app
        .http
        .post(app.url("/admin/v1/registration-tokens"))
        .bearer_auth(&admin)
        .json(&json!({"description": "for a minute", "expires_in": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.unwrap();
    assert_eq!(made["expires_at"], app.app.now() + 60);
    let expiring = made["initial_access_token"].as_str().unwrap().to_string();
    assert_eq!(
        register(&app, &from, Some(&expiring), &mcp_client("Agent"))
            .await
            .status,
        201
    );
    app.clock.advance(61);
    let expired = register(&app, &from, Some(&expiring), &mcp_client("Agent")).await;
    assert_eq!(error(&expired), (401, "invalid_token"));
    let invalid = app
        .http
        .post(app.url("/admin/v1/registration-tokens"))
        .bearer_auth(&admin)
        .json(&json!({"max_uses": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
    let page: Value = app
        .http
        .get(app.url("/admin/v1/registration-tokens"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 2, "{page}");
    assert!(page["items"][0].get("initial_access_token").is_none());
    // Revoked through the API: 204, then 404.
    for expected in [204, 404] {
        let deleted = app
            .http
            .delete(app.url(&format!("/admin/v1/registration-tokens/{token_id}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), expected);
    }
    app.audit_event("admin_change", |e| {
        e.details["action"] == "initial_access_token_created"
    })
    .await;

    // Dynamic clients are marked in the CLI and the admin API, listed and removed there.
    let dynamic = app.cli(&["client", "list", "--kind", "dynamic"]);
    let dynamic = dynamic.as_array().unwrap();
    assert_eq!(dynamic.len(), 3);
    assert!(dynamic
        .iter()
        .all(|c| c["kind"] == "dynamic" && c["registered_with"] == "token"));
    assert!(dynamic
        .iter()
        .all(|c| c.get("registration_token_hash").is_none()));
    let statics = app.cli(&["client", "list", "--kind", "static"]);
    assert_eq!(statics[0]["client_id"], "admin-bot");
    assert_eq!(statics[0]["kind"], "static");
    let page: Value = app
        .http
        .get(app.url("/admin/v1/clients?kind=dynamic"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 3, "{page}");
    let path = management_path(&app, &registered.body);
    let rat = registered.body["registration_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let deleted = app
        .http
        .delete(app.url(&format!("/admin/v1/clients/{machine_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = send(&app, Method::GET, &path, &from, Some(&rat), None).await;
    assert_eq!(error(&gone), (401, "invalid_token"));
    let second_id = second.body["client_id"].as_str().unwrap();
    app.cli(&["client", "delete", "--id", second_id]);
    app.sync();
    let page: Value = app
        .http
        .get(app.url("/admin/v1/clients?kind=dynamic"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 1, "{page}");
    app.audit_event("client_registered", |e| {
        e.details["initial_access_token"] == token_id.as_str()
    })
    .await;
}

async fn registrations_are_validated_per_rfc7591(db: Db) {
    let Some(app) = spawn(db, RegistrationPolicy::Open, |s| {
        s.registrations_per_ip_per_hour = 0;
    })
    .await
    else {
        return;
    };
    let from = address();
    let with = |field: &str, value: Value| {
        let mut body = mcp_client("Agent");
        body[field] = value;
        body
    };
    // §3.2.2 invalid_redirect_uri: not https and not loopback, a fragment, a wildcard, a
    // private-use scheme (anyone could claim it), not a URI, not a list, none at all.
    let mut without_redirects = mcp_client("Agent");
    without_redirects
        .as_object_mut()
        .unwrap()
        .remove("redirect_uris");
    for body in [
        with("redirect_uris", json!(["http://app.example.test/cb"])),
        with("redirect_uris", json!(["https://app.example.test/cb#top"])),
        with("redirect_uris", json!(["https://*.example.test/cb"])),
        with("redirect_uris", json!(["https://app.example.test/*"])),
        with("redirect_uris", json!(["com.example.app:/cb"])),
        with("redirect_uris", json!(["javascript:alert(1)"])),
        with("redirect_uris", json!(["not a uri"])),
        with("redirect_uris", json!("https://app.example.test/cb")),
        with("redirect_uris", json!([42])),
        with("redirect_uris", json!([])),
        without_redirects,
        with(
            "post_logout_redirect_uris",
            json!(["http://evil.example.test/out"]),
        ),
    ] {
        let reply = register(&app, &from, None, &body).await;
        assert_eq!(
            error(&reply),
            (400, "invalid_redirect_uri"),
            "{body}: {}",
            reply.body
        );
    }
    // invalid_client_metadata for every other field.
    for body in [
        with("grant_types", json!(["implicit"])),
        with("grant_types", json!("authorization_code")),
        with("grant_types", json!(["refresh_token"])),
        with("response_types", json!(["token"])),
        with("response_types", json!(["code", "id_token"])),
        with("scope", json!("bad\"scope")),
        with("scope", json!(["openid"])),
        with("client_name", json!(7)),
        with("client_name", json!("x".repeat(201))),
        with("logo_uri", json!("javascript:alert(1)")),
        with("client_uri", json!("not a uri")),
        with("contacts", json!("ops@example.test")),
        with("software_id", json!("s".repeat(256))),
        with("jwks_uri", json!("https://keys.example.test/jwks")),
        with("jwks", json!({"keys": []})),
        with("token_endpoint_auth_method", json!("client_secret_jwt")),
        with("token_endpoint_auth_method", json!(true)),
        with("id_token_signed_response_alg", json!("none")),
        with("require_pushed_authorization_requests", json!("yes")),
        json!([WEB_CALLBACK]),
        json!("just text"),
        json!(null),
    ] {
        let reply = register(&app, &from, None, &body).await;
        assert_eq!(
            error(&reply),
            (400, "invalid_client_metadata"),
            "{body}: {}",
            reply.body
        );
    }
    let statement = register(
        &app,
        &from,
        None,
        &with("software_statement", json!("eyJhbGciOiJub25lIn0.e30.")),
    )
    .await;
    assert_eq!(error(&statement), (400, "unapproved_software_statement"));
    // Not JSON at all, or not said to be.
    let raw = |content_type: &'static str, body: &'static str| {
        app.http
            .post(app.url("/register"))
            .header("x-forwarded-for", from.as_str())
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let response = raw("application/json", "{not json").await.unwrap();
    assert_eq!(
        crate::helpers::error_of(response).await,
        (400, "invalid_client_metadata".into())
    );
    let response = raw("text/plain", "{}").await.unwrap();
    assert_eq!(
        crate::helpers::error_of(response).await,
        (400, "invalid_request".into())
    );
    let huge = json!({"redirect_uris": [WEB_CALLBACK], "client_name": "x".repeat(100_000)});
    let reply = register(&app, &from, None, &huge).await;
    assert_eq!(reply.status, 413);
    // None of these stored anything.
    assert!(app
        .app
        .clients()
        .list()
        .unwrap()
        .iter()
        .all(|c| c.id == "portcullis-console"));
}

async fn a_client_reads_updates_and_deletes_its_registration(db: Db) {
    let Some(app) = spawn(db, RegistrationPolicy::Token, |_| {}).await else {
        return;
    };
    let from = address();
    let iat = app
        .app
        .clients()
        .create_initial_token(&NewInitialToken::default())
        .unwrap()
        .initial_access_token;
    let notes = json!({
        "client_name": "Notes",
        "redirect_uris": ["https://notes.example.test/cb"],
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": "openid email",
        "logo_uri": "https://notes.example.test/logo.png",
        "contacts": ["ops@notes.example.test"],
    });
    let registered = register(&app, &from, Some(&iat), &notes).await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    // RFC 7591 §2: client_secret_basic when the method is omitted.
    assert_eq!(
        registered.body["token_endpoint_auth_method"],
        "client_secret_basic"
    );
    let id = registered.body["client_id"].as_str().unwrap().to_string();
    let secret = registered.body["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    let rat = registered.body["registration_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let path = management_path(&app, &registered.body);
    let other = register(&app, &from, Some(&iat), &mcp_client("Other")).await;
    let other_rat = other.body["registration_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let stored = app.app.store().find_client(&id).unwrap().unwrap();
    assert_eq!(
        stored.registration_token_hash,
        Some(portcullis::tokens::refresh_token::hash(&rat)),
        "kept as SHA-256 only"
    );

    // §2.1 read: the registration as it stands, without the secret.
    let read = send(&app, Method::GET, &path, &from, Some(&rat), None).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.cache_control.as_deref(), Some("no-store"));
    let mut expected = registered.body.clone();
    expected.as_object_mut().unwrap().remove("client_secret");
    assert_eq!(read.body, expected);
    // No token, a wrong one, another client's, or a client that is not there: 401.
    let missing = send(&app, Method::GET, &path, &from, None, None).await;
    assert_eq!(error(&missing), (401, "invalid_token"));
    assert_eq!(
        missing.challenge.as_deref(),
        Some(r#"Bearer realm="portcullis""#)
    );
    for (path, token) in [
        (path.as_str(), "wrong"),
        (path.as_str(), other_rat.as_str()),
        ("/register/dyn-nobody", rat.as_str()),
        ("/register/admin-bot", rat.as_str()),
    ] {
        let reply = send(&app, Method::GET, path, &from, Some(token), None).await;
        assert_eq!(error(&reply), (401, "invalid_token"), "{path}");
        assert!(reply.challenge.unwrap().contains("invalid_token"));
    }

    // §2.2 update: the whole registration again; what is left out is gone (or back to its
    // default), the secret and the registration access token stay.
    let update = json!({
        "client_id": id,
        "client_secret": secret,
        "client_name": "Notes 2",
        "redirect_uris": ["https://notes.example.test/cb2"],
        "grant_types": ["authorization_code"],
        "token_endpoint_auth_method": "client_secret_basic",
    });
    let updated = send(&app, Method::PUT, &path, &from, Some(&rat), Some(&update)).await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    let info = &updated.body;
    assert_eq!(info["client_name"], "Notes 2");
    assert_eq!(
        info["redirect_uris"],
        json!(["https://notes.example.test/cb2"])
    );
    assert_eq!(info["grant_types"], json!(["authorization_code"]));
    assert_eq!(
        info["scope"], "openid profile email offline_access",
        "the default"
    );
    assert!(info.get("logo_uri").is_none() && info.get("contacts").is_none());
    assert!(info.get("client_secret").is_none());
    assert_eq!(info["client_id"], id.as_str());
    assert_eq!(info["registration_access_token"], rat.as_str());
    assert_eq!(
        info["client_id_issued_at"],
        registered.body["client_id_issued_at"]
    );
    let after = app.app.store().find_client(&id).unwrap().unwrap();
    assert_eq!(after.secret_hash, stored.secret_hash);
    assert_eq!(
        send(&app, Method::GET, &path, &from, Some(&rat), None)
            .await
            .body,
        updated.body
    );
    // The request path sees the new registration: the old redirect URI is refused.
    let pkce = pkce();
    let old = authorize_url(
        &app.address,
        &id,
        "openid",
        &pkce.challenge,
        Some("https://notes.example.test/cb"),
        None,
    );
    assert_eq!(Browser::new(&app).get(&old).await.status(), 400);

    let mut refusals: Vec<(Value, &str)> = Vec::new();
    let mut without_id = update.clone();
    without_id.as_object_mut().unwrap().remove("client_id");
    refusals.push((without_id, "invalid_client_metadata"));
    let mut foreign = update.clone();
    foreign["client_id"] = other.body["client_id"].clone();
    refusals.push((foreign, "invalid_client_metadata"));
    for field in [
        "registration_access_token",
        "registration_client_uri",
        "client_secret_expires_at",
        "client_id_issued_at",
    ] {
        let mut body = update.clone();
        body[field] = info[field].clone();
        refusals.push((body, "invalid_request"));
    }
    let mut chosen_secret = update.clone();
    chosen_secret["client_secret"] = "a secret the client would like to choose".into();
    refusals.push((chosen_secret, "invalid_client_metadata"));
    let mut public = update.clone();
    public["token_endpoint_auth_method"] = "none".into();
    refusals.push((public, "invalid_client_metadata"));
    let mut bad_redirect = update.clone();
    bad_redirect["redirect_uris"] = json!(["http://notes.example.test/cb"]);
    refusals.push((bad_redirect, "invalid_redirect_uri"));
    for (body, code) in refusals {
        let reply = send(&app, Method::PUT, &path, &from, Some(&rat), Some(&body)).await;
        assert_eq!(error(&reply), (400, code), "{body}: {}", reply.body);
    }
    let wrong = send(
        &app,
        Method::PUT,
        &path,
        &from,
        Some(&other_rat),
        Some(&update),
    )
    .await;
    assert_eq!(error(&wrong), (401, "invalid_token"));
    let events = app.audit_events("client_updated").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].client_id.as_deref(), Some(id.as_str()));

    // §2.3 delete: 204 with the right token; then the client, its token and its secret are
    // gone.
    for token in ["wrong", other_rat.as_str()] {
        let reply = send(&app, Method::DELETE, &path, &from, Some(token), None).await;
        assert_eq!(error(&reply), (401, "invalid_token"));
    }
    let deleted = send(&app, Method::DELETE, &path, &from, Some(&rat), None).await;
    assert_eq!(deleted.status, 204);
    for method in [Method::GET, Method::DELETE] {
        let reply = send(&app, method, &path, &from, Some(&rat), None).await;
        assert_eq!(error(&reply), (401, "invalid_token"));
    }
    let token = app
        .post_token(
            &[("grant_type", "client_credentials")],
            Some((&id, &secret)),
        )
        .await;
    assert_eq!(token.status(), 401);
    let events = app.audit_events("client_deleted").await;
    assert_eq!(events[0].client_id.as_deref(), Some(id.as_str()));
    assert_eq!(events[0].details["by"], "client");
    // The other client is untouched.
    let path = management_path(&app, &other.body);
    let other_read = send(&app, Method::GET, &path, &from, Some(&other_rat), None).await;
    assert_eq!(other_read.status, 200);
}

async fn unused_dynamic_clients_expire(db: Db) {
    let Some(app) = spawn(db, RegistrationPolicy::Open, |s| {
        s.registrations_per_ip_per_hour = 0;
    })
    .await
    else {
        return;
    };
    assert_eq!(app.settings.dynamic_client_expiry, 90 * 86_400);
    let from = address();
    let idle = register(&app, &from, None, &mcp_client("Idle")).await.body;
    let busy = register(&app, &from, None, &mcp_client("Busy")).await.body;
    let (idle_id, busy_id) = (
        idle["client_id"].as_str().unwrap().to_string(),
        busy["client_id"].as_str().unwrap().to_string(),
    );
    app.create_client(public_web_registration("static-app"));
    app.user("ada", &["user"]);
    let browser = Browser::new(&app);
    sign_in(&app, &browser, &busy_id, "openid").await;
    // Day 50: the busy client obtains a token, which is recorded (at most daily, off the
    // request).
    app.clock.advance(50 * DAY);
    sign_in(&app, &browser, &busy_id, "openid").await;
    let used_at = app.app.now();
    let mut recorded = None;
    for _ in 0..50 {
        recorded = app
            .app
            .store()
            .find_client(&busy_id)
            .unwrap()
            .unwrap()
            .last_used_at;
        if recorded.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(recorded, Some(used_at));
    // Day 91: the idle one (never used, registered 91 days ago) goes at the next poll; the
    // busy one (used 41 days ago) and the administrator's stay.
    app.clock.advance(41 * DAY);
    app.sync();
    let exists = |id: &str| app.app.store().find_client(id).unwrap().is_some();
    assert!(!exists(&idle_id));
    assert!(exists(&busy_id) && exists("static-app"));
    let rat = idle["registration_access_token"].as_str().unwrap();
    let gone = send(
        &app,
        Method::GET,
        &management_path(&app, &idle),
        &from,
        Some(rat),
        None,
    )
    .await;
    assert_eq!(error(&gone), (401, "invalid_token"));
    let events = app.audit_events("client_deleted").await;
    assert_eq!(events[0].client_id.as_deref(), Some(idle_id.as_str()));
    assert_eq!(events[0].details["by"], "expiry");
    // 91 days after its last token the busy one goes too; the administrator's never.
    app.clock.advance(50 * DAY);
    app.sync();
    assert!(!exists(&busy_id));
    assert!(exists("static-app"));
}

async fn a_relying_party_library_registers_and_signs_in(db: Db) {
    use openidconnect::core::{
        CoreClient, CoreClientAuthMethod, CoreClientRegistrationRequest, CoreGrantType,
        CoreRegisterErrorResponseType, CoreResponseType,
    };
    use openidconnect::registration::{ClientRegistrationError, EmptyAdditionalClientMetadata};
    use openidconnect::{
        ClientName, LocalizedClaim, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl,
        ResponseTypes, Scope,
    };
    let Some(app) = spawn(db, RegistrationPolicy::Open, |_| {}).await else {
        return;
    };
    // The library's requests come from an address of this test's own.
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-forwarded-for", address().parse().unwrap());
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let metadata = crate::people::discover(&app).await;
    let endpoint = metadata.registration_endpoint().unwrap().clone();
    let mut name = LocalizedClaim::new();
    name.insert(None, ClientName::new("RP library".into()));
    let registered = CoreClientRegistrationRequest::new(
        vec![RedirectUrl::new(WEB_CALLBACK.into()).unwrap()],
        EmptyAdditionalClientMetadata {},
    )
    .set_client_name(Some(name))
    .set_token_endpoint_auth_method(Some(CoreClientAuthMethod::None))
    .set_grant_types(Some(vec![
        CoreGrantType::AuthorizationCode,
        CoreGrantType::RefreshToken,
    ]))
    .set_response_types(Some(vec![ResponseTypes::new(vec![CoreResponseType::Code])]))
    .register_async(&endpoint, &http)
    .await
    .expect("registered");
    let client_id = registered.client_id().clone();
    assert!(registered.client_secret().is_none());
    assert!(registered.registration_access_token().is_some());
    assert_eq!(
        registered.registration_client_uri().unwrap().as_str(),
        app.url(&format!("/register/{}", client_id.as_str()))
    );
    // Its refusals parse as RFC 7591 §3.2.2 errors.
    let refused = CoreClientRegistrationRequest::new(
        vec![RedirectUrl::new("http://evil.example.test/cb".into()).unwrap()],
        EmptyAdditionalClientMetadata {},
    )
    .set_token_endpoint_auth_method(Some(CoreClientAuthMethod::None))
    .register_async(&endpoint, &http)
    .await;
    match refused {
        Err(ClientRegistrationError::ServerResponse(e)) => {
            assert_eq!(
                *e.error(),
                CoreRegisterErrorResponseType::InvalidRedirectUri
            )
        }
        other => panic!("expected invalid_redirect_uri, got {other:?}"),
    }
    // The registered client signs a person in with the same library.
    app.user("ada", &["user"]);
    let client = CoreClient::from_provider_metadata(metadata, client_id, None)
        .set_redirect_uri(RedirectUrl::new(WEB_CALLBACK.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = client
        .authorize_url(
            openidconnect::core::CoreAuthenticationFlow::AuthorizationCode,
            openidconnect::CsrfToken::new_random,
            openidconnect::Nonce::new_random,
        )
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    let callback = Browser::new(&app)
        .authorize(url.as_str(), "ada", PASSWORD)
        .await;
    let code = callback
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let tokens = client
        .exchange_code(openidconnect::AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&app.http)
        .await
        .unwrap();
    let id_token = openidconnect::TokenResponse::id_token(&tokens).unwrap();
    id_token
        .claims(&client.id_token_verifier(), &nonce)
        .expect("a valid ID token for the registered client");
    assert!(tokens.refresh_token().is_some());
}
