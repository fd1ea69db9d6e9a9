//! Two server processes on one Postgres and one Redis, as behind a load balancer: whatever one
//! instance starts, the other continues, and what they share (codes, refresh tokens, sessions,
//! revocations, sign-in counters, clients, roles, keys) is one state.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    fresh_database, redis_url_or_skip, test_kek_base64, token_at, verify_with_jwks, Browser, Db,
    WEB_CALLBACK,
};
use crate::processes::{cli, free_port, Instance};

struct Pair {
    a: Instance,
    b: Instance,
    settings: Vec<(&'static str, String)>,
    http: reqwest::Client,
}

/// The settings both instances share: database, Redis, KEK, one issuer (the load balancer's
/// address; here A's), a one-second poll.
fn shared_settings(database: &str, redis: &str, issuer: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PORTCULLIS_DATABASE_URL", database.to_string()),
        ("PORTCULLIS_REDIS_URL", redis.to_string()),
        ("PORTCULLIS_KEY_ENCRYPTION_KEY", test_kek_base64()),
        ("PORTCULLIS_ISSUER", issuer.to_string()),
        ("PORTCULLIS_KEYRING_POLL_INTERVAL", "1".into()),
        ("PORTCULLIS_JWKS_MAX_AGE", "0".into()),
        ("PORTCULLIS_DATABASE_TIMEOUT_MS", "10000".into()),
        // Other tests share this Redis and 127.0.0.1: their failures are not this test's.
        ("PORTCULLIS_LOGIN_IP_MAX_FAILURES", "1000000".into()),
        (
            "PORTCULLIS_AUTHORIZE_REQUESTS_PER_IP_PER_MINUTE",
            "0".into(),
        ),
    ]
}

impl Pair {
    async fn start(settings: Vec<(&'static str, String)>, port_a: u16) -> Pair {
        let a = Instance::start_on(port_a, &settings).await;
        let b = Instance::start(&settings).await;
        Pair {
            a,
            b,
            settings,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    async fn post_form(
        &self,
        at: &Instance,
        path: &str,
        form: &[(&str, &str)],
        client: (&str, &str),
    ) -> Value {
        self.http
            .post(at.url(path))
            .basic_auth(client.0, Some(client.1))
            .form(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn admin(
        &self,
        at: &Instance,
        token: &str,
        path: &str,
        body: Value,
    ) -> reqwest::Response {
        self.http
            .post(at.url(&format!("/admin/v1{path}")))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

async fn refresh(pair: &Pair, at: &Instance, token: &str, client: (&str, &str)) -> Value {
    pair.post_form(
        at,
        "/token",
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
        client,
    )
    .await
}

/// Polls `check` every 100 ms until it holds, for at most `limit`; how long it took.
async fn within<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_string()
}

async fn jwks(pair: &Pair, at: &Instance) -> Value {
    pair.http
        .get(at.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_state() {
    let Some(redis) = redis_url_or_skip("the two-instance test") else {
        return;
    };
    let Some(database) = fresh_database(Db::Postgres) else {
        return;
    };
    let port_a = free_port();
    let issuer = format!("http://127.0.0.1:{port_a}");
    let settings = shared_settings(&database.url, &redis, &issuer);
    // Provisioned once, from the command line, like an operator would.
    let user = crate::helpers::unique("ada");
    cli(
        &settings,
        &[
            "user",
            "create",
            "--username",
            &user,
            "--email",
            "ada@example.test",
            "--name",
            "Ada",
            "--role",
            "user",
            "--password-stdin",
        ],
        Some(crate::helpers::PASSWORD),
    );
    let web = cli(
        &settings,
        &[
            "client",
            "create",
            "--id",
            "web",
            "--name",
            "Web",
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--scope",
            "openid offline_access",
            "--redirect-uri",
            WEB_CALLBACK,
        ],
        None,
    )["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    let svc = cli(
        &settings,
        &[
            "client",
            "create",
            "--id",
            "svc",
            "--name",
            "Svc",
            "--grant-type",
            "client_credentials",
            "--scope",
            "models:read",
            "--audience",
            "https://api.example.test",
        ],
        None,
    )["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = cli(
        &settings,
        &[
            "client",
            "create",
            "--id",
            "admin-bot",
            "--name",
            "Admin",
            "--grant-type",
            "client_credentials",
            "--scope",
            "portcullis:admin",
            "--audience",
            &format!("{issuer}/admin/v1"),
            "--role",
            "admin",
        ],
        None,
    )["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    let pair = Pair::start(settings, port_a).await;
    let (a, b) = (&pair.a, &pair.b);
    let web_client = ("web", web.as_str());
    let scope = "openid offline_access";

    // A code issued at A is redeemed at B.
    let browser = Browser {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: a.base.clone(),
    };
    let (code, verifier) = browser.code("web", scope, &user).await;
    let redeem = |code: String, verifier: String, at: &Instance| {
        let (http, base) = (pair.http.clone(), at.base.clone());
        async move {
            token_at(
                &http,
                &base,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", WEB_CALLBACK),
                    ("code_verifier", &verifier),
                ],
                web_client,
            )
            .await
        }
    };
    let at_b = redeem(code, verifier, b).await;
    assert_eq!(at_b.status(), 200, "a code from A at B");
    // A browser session made at A is valid at B: no sign-in page, straight back with a code.
    let browser_at_b = Browser {
        http: browser.http.clone(),
        base: b.base.clone(),
    };
    let pkce = crate::helpers::pkce();
    let direct = browser_at_b
        .get(&crate::helpers::authorize_url(
            &b.base,
            "web",
            scope,
            &pkce.challenge,
            Some(WEB_CALLBACK),
            Some("s"),
        ))
        .await;
    assert_eq!(direct.status(), 303);
    let location = direct.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(WEB_CALLBACK),
        "signed in at B already: {location}"
    );
    let code = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();

    // A refresh token from A rotates at B; reusing the old one at A revokes the family.
    let from_a: Value = redeem(code, pkce.verifier, a).await.json().await.unwrap();
    let first = from_a["refresh_token"].as_str().unwrap();
    let rotated = refresh(&pair, b, first, web_client).await;
    let second = rotated["refresh_token"]
        .as_str()
        .expect("rotated at B")
        .to_string();
    assert_eq!(
        refresh(&pair, a, first, web_client).await["error"],
        "invalid_grant",
        "reuse at A"
    );
    assert_eq!(
        refresh(&pair, b, &second, web_client).await["error"],
        "invalid_grant",
        "family revoked everywhere"
    );

    // A token revoked at A is inactive at B's introspection at once.
    let svc_client = ("svc", svc.as_str());
    let token = pair
        .post_form(
            a,
            "/token",
            &[("grant_type", "client_credentials")],
            svc_client,
        )
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        pair.post_form(b, "/introspect", &[("token", &token)], svc_client)
            .await["active"],
        true
    );
    let revoked = pair
        .http
        .post(a.url("/revoke"))
        .basic_auth("svc", Some(&svc))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(
        pair.post_form(b, "/introspect", &[("token", &token)], svc_client)
            .await["active"],
        false
    );

    // Sign-in failures count on both instances together: 5 at A and 5 at B lock the pair.
    let guess = |at: &Instance, password: &'static str| {
        let user = user.clone();
        let base = at.base.clone();
        async move {
            let device = Browser {
                http: reqwest::Client::builder()
                    .cookie_store(true)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap(),
                base,
            };
            let page = device.get("/login").await.text().await.unwrap();
            let csrf = crate::helpers::hidden_field(&page, "csrf_token");
            device
                .post_form(
                    "/login",
                    &[
                        ("csrf_token", &csrf),
                        ("username", &user),
                        ("password", password),
                    ],
                )
                .await
                .status()
                .as_u16()
        }
    };
    for _ in 0..5 {
        assert_eq!(guess(a, "wrong one").await, 401);
        assert_eq!(guess(b, "wrong one").await, 401);
    }
    assert_eq!(
        guess(a, crate::helpers::PASSWORD).await,
        401,
        "locked, counted across both"
    );
    assert_eq!(guess(b, crate::helpers::PASSWORD).await, 401);

    // A client, a resource and a role created through the admin API at A work at B within
    // the poll interval.
    let audience = format!("{issuer}/admin/v1");
    let admin_token = pair
        .post_form(
            a,
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("resource", &audience),
                ("scope", "portcullis:admin"),
            ],
            ("admin-bot", &admin),
        )
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let created = pair
        .admin(
            a,
            &admin_token,
            "/clients",
            json!({
                "client_id": "late", "client_name": "Late", "grant_types": ["client_credentials"],
                "scope": ["models:read"], "audiences": ["https://api.example.test"],
            }),
        )
        .await;
    assert_eq!(created.status(), 201);
    let late_secret = created.json::<Value>().await.unwrap()["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    let cc_at_b = |id: &'static str, secret: String| {
        let pair = &pair;
        async move {
            pair.post_form(
                &pair.b,
                "/token",
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "models:read"),
                ],
                (id, &secret),
            )
            .await
        }
    };
    let took = within(
        Duration::from_secs(5),
        "a client created at A, at B",
        || async { cc_at_b("late", late_secret.clone()).await["access_token"].is_string() },
    )
    .await;
    eprintln!("client created at A usable at B after {took:?}");
    let resource = pair
        .admin(
            a,
            &admin_token,
            "/resources",
            json!({
                "audience": "https://api.example.test", "scopes": ["models:read"],
            }),
        )
        .await;
    assert_eq!(resource.status(), 201);
    within(
        Duration::from_secs(5),
        "a resource created at A, at B",
        || async { cc_at_b("late", late_secret.clone()).await["error"] == "invalid_scope" },
    )
    .await;
    assert_eq!(
        pair.admin(
            a,
            &admin_token,
            "/roles",
            json!({"name": "reader", "scopes": ["models:read"]})
        )
        .await
        .status(),
        201
    );
    assert_eq!(
        pair.admin(
            a,
            &admin_token,
            "/roles/reader/holders",
            json!({"client": "late"})
        )
        .await
        .status()
        .as_u16(),
        200
    );
    within(
        Duration::from_secs(5),
        "a role granted at A, at B",
        || async { cc_at_b("late", late_secret.clone()).await["scope"] == "models:read" },
    )
    .await;

    // A client's secret rotated at A: the new one works at B, the old one is refused there,
    // within the poll interval (edits travel the same way: the clients generation).
    let rotated = pair
        .admin(a, &admin_token, "/clients/late/secret", json!({}))
        .await;
    assert_eq!(rotated.status(), 200);
    let rotated_secret = rotated.json::<Value>().await.unwrap()["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    within(
        Duration::from_secs(5),
        "a secret rotated at A, at B",
        || async {
            cc_at_b("late", late_secret.clone()).await["error"] == "invalid_client"
                && cc_at_b("late", rotated_secret.clone()).await["access_token"].is_string()
        },
    )
    .await;

    // A rotation at A shows in B's JWKS within the poll interval, and tokens signed by either
    // verify against the other's JWKS.
    let before = kid_of(&token);
    within(Duration::from_secs(10), "a rotation at A", || async {
        pair.admin(a, &admin_token, "/keys/rotate", json!({}))
            .await
            .status()
            == 200
    })
    .await;
    let signed_at_a = pair
        .post_form(
            a,
            "/token",
            &[("grant_type", "client_credentials")],
            svc_client,
        )
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let new_kid = kid_of(&signed_at_a);
    assert_ne!(new_kid, before, "A signs with the new key");
    let took = within(
        Duration::from_secs(3),
        "A's new key in B's JWKS",
        || async { jwks(&pair, b).await.to_string().contains(&new_kid) },
    )
    .await;
    eprintln!("rotation at A visible in B's JWKS after {took:?}");
    verify_with_jwks(&signed_at_a, &jwks(&pair, b).await).unwrap();
    within(
        Duration::from_secs(3),
        "B signs with the new key",
        || async {
            let token = pair
                .post_form(
                    b,
                    "/token",
                    &[("grant_type", "client_credentials")],
                    svc_client,
                )
                .await["access_token"]
                .as_str()
                .unwrap()
                .to_string();
            verify_with_jwks(&token, &jwks(&pair, a).await).is_ok() && kid_of(&token) == new_kid
        },
    )
    .await;
    drop(pair);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_due_on_both_instances_happens_once() {
    let Some(redis) = redis_url_or_skip("the two-instance rotation test") else {
        return;
    };
    let Some(database) = fresh_database(Db::Postgres) else {
        return;
    };
    let port_a = free_port();
    let mut settings =
        shared_settings(&database.url, &redis, &format!("http://127.0.0.1:{port_a}"));
    // Due every 4 s on both, each polling every second.
    settings.push(("PORTCULLIS_KEY_ROTATION_PERIOD", "4".into()));
    let pair = Pair::start(settings, port_a).await;
    tokio::time::sleep(Duration::from_secs(14)).await;
    let keys = cli(&pair.settings, &["keys", "list", "--json"], None);
    drop(pair);
    for alg in ["ES256", "RS256"] {
        let mut activations: Vec<i64> = keys
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["alg"] == alg)
            .filter_map(|k| k["activated_at"].as_i64())
            .collect();
        activations.sort_unstable();
        assert!(
            activations.len() >= 3,
            "{alg}: rotations happened: {activations:?}"
        );
        for step in activations.windows(2) {
            assert!(
                step[1] - step[0] >= 4,
                "{alg}: two rotations {}s apart, so both instances rotated: {activations:?}",
                step[1] - step[0]
            );
        }
    }
    let store = portcullis::store::Store::open(&database.url, 1).unwrap();
    let rotated = store
        .query_audit_events(&portcullis::store::audit::AuditQuery {
            kind: Some("key_rotated".into()),
            limit: 1000,
            ..Default::default()
        })
        .unwrap();
    let per_alg = |alg: &str| rotated.iter().filter(|e| e.details["alg"] == alg).count();
    let activations = |alg: &str| {
        keys.as_array()
            .unwrap()
            .iter()
            .filter(|k| k["alg"] == alg && k["activated_at"].is_i64())
            .count()
    };
    for alg in ["ES256", "RS256"] {
        // Every activation but the first key's is one recorded rotation, by one instance.
        assert_eq!(per_alg(alg), activations(alg) - 1, "{alg}: {rotated:?}");
    }
}
