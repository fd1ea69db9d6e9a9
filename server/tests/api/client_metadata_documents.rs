//! Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document): a client named
//! by the `https` URL of its document, served here by a local TLS server under a test CA
//! (`client_metadata_fetch_ca_file`, with `localhost` allowed to be private). A person signs in
//! through it; the document is cached by its caching headers within the bounds; every refusal
//! (a document that does not name itself, redirects, size, time, secrets, the scheme, the
//! redirect URI) gives a page at `/authorize` and JSON at `/par` and `/token`; private,
//! loopback and link-local targets are never fetched; `private_key_jwt` with a `jwks_uri`.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    authorize_url, claims_of, pkce, redis_url_or_skip, spawn_app_with, Browser, Db, TestApp,
    WEB_CALLBACK,
};
use crate::on_both_backends;

on_both_backends!(
    a_metadata_document_client_signs_a_person_in,
    documents_are_cached_by_their_headers_within_bounds,
    every_unusable_document_is_refused_with_its_reason,
    private_and_loopback_targets_are_never_fetched,
    the_settings_turn_documents_off_or_restrict_their_hosts,
    a_private_key_jwt_client_names_its_keys,
);

/// One canned answer of the document server.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    delay: Duration,
}

impl Reply {
    fn json(value: &Value, cache_control: &str) -> Reply {
        Reply {
            status: 200,
            headers: vec![
                ("content-type", "application/json".into()),
                ("cache-control", cache_control.into()),
            ],
            body: value.to_string().into_bytes(),
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct Routes {
    replies: HashMap<String, Reply>,
    hits: HashMap<String, usize>,
}

/// An HTTPS server for `localhost` and `127.0.0.1` with a certificate from a test CA, answering
/// each path as told and counting the requests.
struct DocumentServer {
    port: u16,
    routes: Arc<Mutex<Routes>>,
    ca: PathBuf,
    _dir: tempfile::TempDir,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for DocumentServer {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        drop(tokio::spawn(async move { handle.stop(false).await }));
    }
}

impl DocumentServer {
    async fn start() -> DocumentServer {
        use actix_web::{web, HttpRequest, HttpResponse};
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let dir = tempfile::tempdir().unwrap();
        crate::tls::certificates(dir.path());
        let certs = CertificateDer::pem_file_iter(dir.path().join("leaf.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.path().join("leaf.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes = Arc::new(Mutex::new(Routes::default()));
        let shared = routes.clone();
        let server = actix_web::HttpServer::new(move || {
            let routes = shared.clone();
            actix_web::App::new().default_service(web::to(move |request: HttpRequest| {
                let routes = routes.clone();
                async move {
                    let path = request
                        .uri()
                        .path_and_query()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default();
                    let reply = {
                        let mut routes = routes.lock().unwrap();
                        *routes.hits.entry(path.clone()).or_default() += 1;
                        routes.replies.get(&path).cloned()
                    };
                    let Some(reply) = reply else {
                        return HttpResponse::NotFound().finish();
                    };
                    if !reply.delay.is_zero() {
                        tokio::time::sleep(reply.delay).await;
                    }
                    let mut response = HttpResponse::build(
                        actix_web::http::StatusCode::from_u16(reply.status).unwrap(),
                    );
                    for header in reply.headers {
                        response.insert_header(header);
                    }
                    response.body(reply.body)
                }
            }))
        })
        .workers(1)
        .listen_rustls_0_23(listener, config)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        DocumentServer {
            port,
            routes,
            ca: dir.path().join("ca.pem"),
            _dir: dir,
            handle,
        }
    }

    /// `https://localhost:<port><path>`: a Client Identifier URL in its normal form.
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn serve(&self, path: &str, reply: Reply) {
        self.routes
            .lock()
            .unwrap()
            .replies
            .insert(path.to_string(), reply);
    }

    fn hits(&self, path: &str) -> usize {
        self.routes
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    fn all_hits(&self) -> usize {
        self.routes.lock().unwrap().hits.values().sum()
    }
}

/// The server trusting the test CA and allowed to fetch from `localhost` (on PostgreSQL with
/// Redis).
async fn spawn(
    db: Db,
    docs: &DocumentServer,
    tune: impl FnOnce(&mut portcullis::config::Settings),
) -> Option<TestApp> {
    let redis = match db {
        Db::Postgres => Some(redis_url_or_skip(
            "metadata documents on PostgreSQL + Redis",
        )?),
        Db::Sqlite => None,
    };
    let ca = docs.ca.clone();
    spawn_app_with(db, |s| {
        s.redis_url = redis;
        s.client_metadata_fetch_allow_private_hosts = vec!["localhost".into()];
        s.client_metadata_fetch_ca_file = Some(ca);
        s.client_metadata_cache_max_ttl = 600;
        tune(s);
    })
    .await
}

/// What an agent publishes about itself: a public client of the code flow.
fn document(client_id: &str, redirect_uri: &str) -> Value {
    json!({
        "client_id": client_id,
        "client_name": "Agent CLI",
        "client_uri": "https://agent.example.test",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "openid offline_access",
    })
}

fn link(app: &TestApp, client_id: &str, redirect_uri: &str) -> String {
    let pkce = pkce();
    authorize_url(
        &app.address,
        client_id,
        "openid",
        &pkce.challenge,
        Some(redirect_uri),
        Some("s"),
    )
}

/// The page `/authorize` answers for a client (status, HTML); it must not redirect anywhere.
async fn authorize_page(app: &TestApp, client_id: &str, redirect_uri: &str) -> (u16, String) {
    let response = Browser::new(app)
        .get(&link(app, client_id, redirect_uri))
        .await;
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The `/authorize` request is accepted (on to sign-in).
async fn accepted(app: &TestApp, client_id: &str) -> bool {
    let response = Browser::new(app)
        .get(&link(app, client_id, WEB_CALLBACK))
        .await;
    let status = response.status().as_u16();
    match status {
        303 => response.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with('/'),
        _ => false,
    }
}

async fn redeem(app: &TestApp, client_id: &str, code: &str, verifier: &str) -> Value {
    let response = app
        .post_token(
            &[
                ("grant_type", "authorization_code"),
                ("client_id", client_id),
                ("code", code),
                ("redirect_uri", WEB_CALLBACK),
                ("code_verifier", verifier),
            ],
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn a_metadata_document_client_signs_a_person_in(db: Db) {
    let docs = DocumentServer::start().await;
    let Some(app) = spawn(db, &docs, |_| {}).await else {
        return;
    };
    let metadata: Value = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["client_id_metadata_document_supported"], true);
    let id = docs.url("/agent/client.json");
    docs.serve(
        "/agent/client.json",
        Reply::json(&document(&id, WEB_CALLBACK), "public, max-age=300"),
    );
    app.user("ada", &["user"]);
    let browser = Browser::new(&app);

    // The consent page shows where the client comes from and where the browser goes back
    // to, and warns that it only goes back to this device.
    let (status, consent) = browser
        .page_after_sign_in(&link(&app, &id, WEB_CALLBACK), "ada")
        .await;
    assert_eq!(status, 200, "{consent}");
    assert!(consent.contains("<strong>Agent CLI</strong>"), "{consent}");
    assert!(
        consent.contains(r#"id="client-host">localhost<"#),
        "{consent}"
    );
    assert!(consent.contains(r#"id="redirect-host">127.0.0.1:9<"#));
    assert!(consent.contains(r#"id="loopback-warning""#));
    assert!(consent.contains(r#"id="self-described""#));

    // Sign-in, code, tokens for the URL as client_id; a refresh.
    let (code, verifier) = browser.code(&id, "openid offline_access", "ada").await;
    let tokens = redeem(&app, &id, &code, &verifier).await;
    assert_eq!(
        claims_of(tokens["id_token"].as_str().unwrap())["aud"],
        id.as_str()
    );
    assert_eq!(
        claims_of(tokens["access_token"].as_str().unwrap())["client_id"],
        id.as_str()
    );
    let refreshed = app
        .post_token(
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &id),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
            None,
        )
        .await;
    assert_eq!(refreshed.status(), 200);
    // A pushed request (RFC 9126) works for it too.
    let pkce = pkce();
    let pushed = app
        .http
        .post(app.url("/par"))
        .form(&[
            ("client_id", id.as_str()),
            ("response_type", "code"),
            ("redirect_uri", WEB_CALLBACK),
            ("scope", "openid"),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201);
    // All of it from one fetch (max-age=300).
    assert_eq!(docs.hits("/agent/client.json"), 1);

    // A client that returns to the web: its host shown, no loopback warning.
    let web = docs.url("/web/client.json");
    docs.serve(
        "/web/client.json",
        Reply::json(
            &document(&web, "https://agent.example.test/callback"),
            "max-age=60",
        ),
    );
    let (status, consent) = browser
        .page_after_sign_in(
            &link(&app, &web, "https://agent.example.test/callback"),
            "ada",
        )
        .await;
    assert_eq!(status, 200);
    assert!(consent.contains(r#"id="redirect-host">agent.example.test<"#));
    assert!(!consent.contains("loopback-warning"));
    // The device grant is not among what a document may ask for.
    let device = app
        .http
        .post(app.url("/device_authorization"))
        .form(&[("client_id", id.as_str()), ("scope", "openid")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        crate::helpers::error_of(device).await,
        (400, "unauthorized_client".into())
    );
}

async fn documents_are_cached_by_their_headers_within_bounds(db: Db) {
    let docs = DocumentServer::start().await;
    let Some(app) = spawn(db, &docs, |s| {
        s.client_metadata_cache_min_ttl = 60;
        s.client_metadata_cache_max_ttl = 600;
    })
    .await
    else {
        return;
    };
    let path = "/cached.json";
    let id = docs.url(path);
    let serve = |cache_control: &str| {
        docs.serve(
            path,
            Reply::json(&document(&id, WEB_CALLBACK), cache_control),
        )
    };
    // max-age=300: used for 300 s, then fetched again.
    serve("max-age=300");
    assert!(accepted(&app, &id).await);
    assert!(accepted(&app, &id).await);
    assert_eq!(docs.hits(path), 1);
    app.clock.advance(299);
    assert!(accepted(&app, &id).await);
    assert_eq!(docs.hits(path), 1, "still fresh");
    app.clock.advance(2);
    // A very long max-age is cut to client_metadata_cache_max_ttl (600 s).
    serve("max-age=31536000");
    assert!(accepted(&app, &id).await);
    assert_eq!(docs.hits(path), 2);
    app.clock.advance(599);
    assert!(accepted(&app, &id).await);
    assert_eq!(docs.hits(path), 2);
    app.clock.advance(2);
    // no-store still lasts client_metadata_cache_min_ttl (60 s).
    serve("no-store");
    assert!(accepted(&app, &id).await);
    assert_eq!(docs.hits(path), 3);
    app.clock.advance(59);
    assert!(accepted(&app, &id).await);
    assert_eq!(docs.hits(path), 3);
    app.clock.advance(2);
    // Expires − Date (RFC 9111 §4.2.1) when there is no max-age.
    let now = std::time::SystemTime::now();
    let mut reply = Reply::json(&document(&id, WEB_CALLBACK), "public");
    reply.headers.push(("date", httpdate::fmt_http_date(now)));
    reply.headers.push((
        "expires",
        httpdate::fmt_http_date(now + Duration::from_secs(120)),
    ));
    docs.serve(path, reply);
    assert!(accepted(&app, &id).await);
    assert_eq!(docs.hits(path), 4);
    app.clock.advance(118);
    assert!(accepted(&app, &id).await);
    assert_eq!(docs.hits(path), 4);
    app.clock.advance(3);
    assert!(accepted(&app, &id).await);
    assert_eq!(docs.hits(path), 5);
}

async fn every_unusable_document_is_refused_with_its_reason(db: Db) {
    let docs = DocumentServer::start().await;
    let Some(app) = spawn(db, &docs, |_| {}).await else {
        return;
    };
    let good = |path: &str| Reply::json(&document(&docs.url(path), WEB_CALLBACK), "max-age=300");
    let edited = |path: &str, edit: &dyn Fn(&mut Value)| {
        let mut doc = document(&docs.url(path), WEB_CALLBACK);
        edit(&mut doc);
        Reply::json(&doc, "max-age=300")
    };
    let other = docs.url("/other.json");
    let cases: Vec<(&str, Reply, &str)> = vec![
        (
            "/mismatch.json",
            edited("/mismatch.json", &|d| d["client_id"] = other.clone().into()),
            "is not the URL it was fetched from",
        ),
        (
            "/slash.json",
            edited("/slash.json", &|d| {
                d["client_id"] = format!("{}/", docs.url("/slash.json")).into()
            }),
            "is not the URL it was fetched from",
        ),
        (
            "/nameless.json",
            edited("/nameless.json", &|d| {
                d.as_object_mut().unwrap().remove("client_id");
            }),
            "has no client_id",
        ),
        (
            "/large.json",
            edited("/large.json", &|d| {
                d["client_name"] = "x".repeat(6000).into()
            }),
            "larger than 5120 bytes",
        ),
        (
            "/moved.json",
            Reply {
                status: 302,
                headers: vec![("location", docs.url("/target.json"))],
                body: Vec::new(),
                delay: Duration::ZERO,
            },
            "redirect (302), which is not followed",
        ),
        (
            "/missing.json",
            Reply {
                status: 404,
                headers: vec![],
                body: Vec::new(),
                delay: Duration::ZERO,
            },
            "answered 404",
        ),
        (
            "/text.json",
            Reply {
                status: 200,
                headers: vec![("content-type", "text/html".into())],
                body: b"<html>hello</html>".to_vec(),
                delay: Duration::ZERO,
            },
            "is not JSON",
        ),
        (
            "/secret.json",
            edited("/secret.json", &|d| d["client_secret"] = "s3cret".into()),
            "must not contain client_secret",
        ),
        (
            "/basic.json",
            edited("/basic.json", &|d| {
                d["token_endpoint_auth_method"] = "client_secret_basic".into()
            }),
            "token_endpoint_auth_method",
        ),
        (
            "/keyless.json",
            edited("/keyless.json", &|d| {
                d["token_endpoint_auth_method"] = "private_key_jwt".into()
            }),
            "private_key_jwt needs its keys",
        ),
        (
            "/plain-http.json",
            edited("/plain-http.json", &|d| {
                d["redirect_uris"] = json!(["http://agent.example.test/cb", WEB_CALLBACK])
            }),
            "must use https, or http on a loopback address",
        ),
        (
            "/machine.json",
            edited("/machine.json", &|d| {
                d["grant_types"] = json!(["client_credentials"])
            }),
            "grant_types",
        ),
        (
            "/slow.json",
            Reply {
                delay: Duration::from_secs(6),
                ..good("/slow.json")
            },
            "did not answer in time",
        ),
    ];
    docs.serve("/target.json", good("/target.json"));
    for (path, reply, reason) in cases {
        docs.serve(path, reply);
        let (status, page) = authorize_page(&app, &docs.url(path), WEB_CALLBACK).await;
        assert_eq!(status, 400, "{path}: {page}");
        assert!(
            page.contains("could not be verified") && page.contains(reason),
            "{path}: expected `{reason}` in {page}"
        );
    }
    assert_eq!(
        docs.hits("/target.json"),
        0,
        "the redirect was not followed"
    );
    // Client Identifier URLs themselves (§3): https, a path, no fragment, no dot segments;
    // none of these is fetched.
    let before = docs.all_hits();
    let base = format!("localhost:{}", docs.port);
    for (client_id, reason) in [
        (format!("http://{base}/good.json"), "must use https"),
        (format!("https://{base}"), "must have a path"),
        (format!("https://{base}/good.json#x"), "fragment"),
        (format!("https://{base}/a/../good.json"), "segments"),
        (format!("https://user@{base}/good.json"), "user name"),
        (
            format!("https://LOCALHOST:{}/good.json", docs.port),
            "normal form",
        ),
    ] {
        let (status, page) = authorize_page(&app, &client_id, WEB_CALLBACK).await;
        assert_eq!(status, 400, "{client_id}");
        assert!(
            page.contains(reason),
            "{client_id}: expected `{reason}` in {page}"
        );
    }
    assert_eq!(docs.all_hits(), before);

    // A redirect URI the document does not list: refused, never redirected to.
    docs.serve("/good.json", good("/good.json"));
    let (status, page) = authorize_page(
        &app,
        &docs.url("/good.json"),
        "http://127.0.0.1:9/elsewhere",
    )
    .await;
    assert_eq!(status, 400);
    assert!(page.contains("has not registered"), "{page}");

    // Failures are not cached: once the document is right, it is used.
    let fixed = docs.url("/mismatch.json");
    let hits = docs.hits("/mismatch.json");
    docs.serve("/mismatch.json", good("/mismatch.json"));
    assert!(accepted(&app, &fixed).await);
    assert_eq!(docs.hits("/mismatch.json"), hits + 1);

    // At the protocol endpoints the same refusals are JSON: invalid_client, with the reason.
    let broken = docs.url("/secret.json");
    let pushed = app
        .http
        .post(app.url("/par"))
        .form(&[
            ("client_id", broken.as_str()),
            ("response_type", "code"),
            ("redirect_uri", WEB_CALLBACK),
            ("code_challenge", pkce().challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 401);
    let body: Value = pushed.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"].as_str().unwrap().contains(
            "metadata document was not accepted: the document must not contain client_secret"
        ),
        "{body}"
    );
    let token = app
        .post_token(
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &broken),
                ("code", "x"),
                ("redirect_uri", WEB_CALLBACK),
                ("code_verifier", &pkce().verifier),
            ],
            None,
        )
        .await;
    assert_eq!(token.status(), 401);
    let body: Value = token.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("client_secret"));
}

async fn private_and_loopback_targets_are_never_fetched(db: Db) {
    let docs = DocumentServer::start().await;
    // No host may be private here: the default.
    let Some(app) = spawn(db, &docs, |s| {
        s.client_metadata_fetch_allow_private_hosts = vec![];
    })
    .await
    else {
        return;
    };
    let port = docs.port;
    docs.serve("/agent.json", Reply::json(&json!({}), "max-age=60"));
    for client_id in [
        // A name that resolves to loopback, and loopback literals (IPv4, IPv6, IPv4-mapped).
        format!("https://localhost:{port}/agent.json"),
        format!("https://127.0.0.1:{port}/agent.json"),
        format!("https://[::1]:{port}/agent.json"),
        format!("https://[::ffff:7f00:1]:{port}/agent.json"),
        format!("https://0.0.0.0:{port}/agent.json"),
        // Private networks and the cloud metadata service (link-local).
        "https://10.0.0.1/agent.json".to_string(),
        "https://192.168.1.1/agent.json".to_string(),
        "https://169.254.169.254/latest/meta-data/agent.json".to_string(),
        "https://[fe80::1]/agent.json".to_string(),
        "https://[fd00::1]/agent.json".to_string(),
    ] {
        let (status, page) = authorize_page(&app, &client_id, WEB_CALLBACK).await;
        assert_eq!(status, 400, "{client_id}");
        assert!(
            page.contains("which is not a public address"),
            "{client_id}: {page}"
        );
    }
    assert_eq!(docs.all_hits(), 0, "nothing reached the local server");
    // At /token too, as JSON.
    let token = app
        .post_token(
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &format!("https://127.0.0.1:{port}/agent.json")),
                ("code", "x"),
            ],
            None,
        )
        .await;
    let body: Value = token.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("not a public address"));
    assert_eq!(docs.all_hits(), 0);
}

async fn the_settings_turn_documents_off_or_restrict_their_hosts(db: Db) {
    let docs = DocumentServer::start().await;
    let id = docs.url("/agent.json");
    docs.serve(
        "/agent.json",
        Reply::json(&document(&id, WEB_CALLBACK), "max-age=60"),
    );
    // Off: a URL is an unknown client, and discovery says so.
    let Some(off) = spawn(db, &docs, |s| s.client_id_metadata_documents = false).await else {
        return;
    };
    let metadata: Value = off
        .http
        .get(off.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["client_id_metadata_document_supported"], false);
    let (status, page) = authorize_page(&off, &id, WEB_CALLBACK).await;
    assert_eq!(status, 400);
    assert!(page.contains("not registered"), "{page}");
    drop(off);
    // Restricted to other hosts: refused before any fetch.
    let Some(restricted) = spawn(db, &docs, |s| {
        s.client_id_metadata_document_hosts = vec!["agents.example.test".into()];
    })
    .await
    else {
        return;
    };
    let (status, page) = authorize_page(&restricted, &id, WEB_CALLBACK).await;
    assert_eq!(status, 400);
    assert!(page.contains("does not accept client metadata documents from that host"));
    assert_eq!(docs.all_hits(), 0);
    drop(restricted);
    // Restricted to this host: used.
    let Some(allowed) = spawn(db, &docs, |s| {
        s.client_id_metadata_document_hosts = vec!["localhost".into()];
    })
    .await
    else {
        return;
    };
    assert!(accepted(&allowed, &id).await);
    assert_eq!(docs.hits("/agent.json"), 1);
}

fn assertion(key: &josekit::jwk::alg::ec::EcKeyPair, claims: Value) -> String {
    use josekit::jwk::KeyPair;
    let mut header = josekit::jws::JwsHeader::new();
    header.set_token_type("JWT");
    header.set_key_id("k1");
    let mut payload = josekit::jwt::JwtPayload::new();
    for (k, v) in claims.as_object().unwrap() {
        payload.set_claim(k, Some(v.clone())).unwrap();
    }
    let signer = josekit::jws::ES256
        .signer_from_jwk(&key.to_jwk_private_key())
        .unwrap();
    josekit::jwt::encode_with_signer(&payload, &header, &signer).unwrap()
}

async fn a_private_key_jwt_client_names_its_keys(db: Db) {
    use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
    use josekit::jwk::KeyPair;
    let docs = DocumentServer::start().await;
    let Some(app) = spawn(db, &docs, |_| {}).await else {
        return;
    };
    let key = EcKeyPair::generate(EcCurve::P256).unwrap();
    let mut public = key.to_jwk_public_key();
    public.set_key_id("k1");
    let jwks = json!({ "keys": [serde_json::to_value(public.as_ref()).unwrap()] });
    docs.serve("/keys.json", Reply::json(&jwks, "max-age=300"));
    let id = docs.url("/signed/client.json");
    let mut doc = document(&id, WEB_CALLBACK);
    doc["token_endpoint_auth_method"] = "private_key_jwt".into();
    doc["jwks_uri"] = docs.url("/keys.json").into();
    docs.serve("/signed/client.json", Reply::json(&doc, "max-age=300"));
    app.user("ada", &["user"]);
    let browser = Browser::new(&app);
    let (code, verifier) = browser.code(&id, "openid", "ada").await;
    assert_eq!(docs.hits("/keys.json"), 1);
    let now = app.app.now();
    let redeem_with = |signed_by: &EcKeyPair, jti: &str| {
        let jwt = assertion(
            signed_by,
            json!({"iss": id, "sub": id, "aud": app.url("/token"), "iat": now, "exp": now + 60, "jti": jti}),
        );
        let form = [
            ("grant_type", "authorization_code".to_string()),
            ("code", code.clone()),
            ("redirect_uri", WEB_CALLBACK.to_string()),
            ("code_verifier", verifier.clone()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
            ),
            ("client_assertion", jwt),
        ];
        app.http.post(app.url("/token")).form(&form).send()
    };
    // A key the document does not name: refused; its own key: tokens.
    let stranger = EcKeyPair::generate(EcCurve::P256).unwrap();
    let refused = redeem_with(&stranger, "one").await.unwrap();
    assert_eq!(refused.status(), 401);
    let ok = redeem_with(&key, "two").await.unwrap();
    assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap());
    // Without an assertion it is not a public client.
    let (code, verifier) = browser.code(&id, "openid", "ada").await;
    let unauthenticated = app
        .post_token(
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &id),
                ("code", &code),
                ("redirect_uri", WEB_CALLBACK),
                ("code_verifier", &verifier),
            ],
            None,
        )
        .await;
    assert_eq!(unauthenticated.status(), 401);
    // Keys inline work too; both at once do not.
    let inline = docs.url("/inline/client.json");
    let mut doc = document(&inline, WEB_CALLBACK);
    doc["token_endpoint_auth_method"] = "private_key_jwt".into();
    doc["jwks"] = jwks.clone();
    docs.serve("/inline/client.json", Reply::json(&doc, "max-age=300"));
    assert!(accepted(&app, &inline).await);
    let both = docs.url("/both/client.json");
    doc["client_id"] = both.clone().into();
    doc["jwks_uri"] = docs.url("/keys.json").into();
    docs.serve("/both/client.json", Reply::json(&doc, "max-age=300"));
    let (status, page) = authorize_page(&app, &both, WEB_CALLBACK).await;
    assert_eq!(status, 400);
    assert!(page.contains("one of them"), "{page}");
}
