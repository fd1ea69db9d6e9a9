//! Faults survived: Redis restarted under load or silent, Postgres down or silent, each
//! answered fast (or served, where it is not needed) and recovered from without a restart.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fault_proxy::{FaultProxy, Mode};
use crate::helpers::{
    fresh_database, hidden_field, spawn_app_on, spawn_app_with, token_at, Browser, Db, TestApp,
    PASSWORD, WEB_CALLBACK,
};
use crate::processes::PrivateRedis;

/// The longest any request may take while a dependency is away.
const FAST: Duration = Duration::from_millis(2500);

/// Sends a request and returns its status, body and how long it took.
async fn timed(request: reqwest::RequestBuilder) -> (u16, String, Duration) {
    let started = Instant::now();
    let response = request.send().await.expect("an answer, not a hang");
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (status, body, started.elapsed())
}

fn assert_fast(what: &str, took: Duration) {
    assert!(took < FAST, "{what} took {took:?}");
}

async fn client_credentials(app: &TestApp, secret: &str) -> (u16, String, Duration) {
    timed(
        app.http
            .post(app.url("/token"))
            .basic_auth("svc", Some(secret))
            .form(&[("grant_type", "client_credentials")]),
    )
    .await
}

async fn readiness(app: &TestApp) -> (u16, Value, Duration) {
    let (status, body, took) = timed(app.http.get(app.url("/readyz"))).await;
    (status, serde_json::from_str(&body).unwrap(), took)
}

/// Polls `/readyz` until it answers 200 (the dependency is back and used again).
async fn ready_again(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body, _) = readiness(app).await;
        if status == 200 && body["status"] == "ready" {
            return;
        }
        assert!(Instant::now() < deadline, "not ready again: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Signs in through the login page (no pending request): 200 "You are signed in".
async fn sign_in(app: &TestApp, username: &str, password: &str) -> u16 {
    let browser = Browser::new(app);
    let page = browser.get("/login").await;
    assert_eq!(page.status(), 200);
    let csrf = hidden_field(&page.text().await.unwrap(), "csrf_token");
    browser
        .post_form(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("username", username),
                ("password", password),
            ],
        )
        .await
        .status()
        .as_u16()
}

/// Client-credentials requests in a loop until told to stop: (status, time) of each.
fn background_load(
    app: &TestApp,
    secret: &str,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Vec<(u16, Duration)>>,
) {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let (http, url, secret) = (app.http.clone(), app.url("/token"), secret.to_string());
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        while !*stopped.borrow_and_update() {
            let started = Instant::now();
            let response = http
                .post(&url)
                .basic_auth("svc", Some(&secret))
                .form(&[("grant_type", "client_credentials")])
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            let status = response.map_or(0, |r| r.status().as_u16());
            seen.push((status, started.elapsed()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_under_load_is_survived_without_restarting_us() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let url = redis.url();
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.redis_url = Some(url);
        s.redis_timeout_ms = 300;
    })
    .await
    .unwrap();
    let secret = app.machine_client("svc", "models:read");
    app.user("ada", &["user"]);
    assert_eq!(
        sign_in(&app, "ada", PASSWORD).await,
        200,
        "sessions in Redis"
    );
    let (stop, load) = background_load(&app, &secret);
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.stop();
    // Tokens are still issued (the per-client budget lets requests through without Redis).
    let (status, body, took) = client_credentials(&app, &secret).await;
    assert_eq!(status, 200, "{body}");
    assert_fast("a token without Redis", took);
    // Browser pages say so, fast, in HTML.
    let (status, body, took) = timed(app.http.get(app.url("/login"))).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("temporarily unavailable"), "{body}");
    assert_fast("a page without Redis", took);
    // Readiness names the dependency; the instance stays in the load balancer (degraded):
    // machine tokens and JWKS still work, and every instance shares this Redis.
    let (status, body, took) = readiness(&app).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("degraded")),
        "{body}"
    );
    assert_eq!(body["checks"]["redis"], "unavailable");
    assert_eq!(body["checks"]["database"], "ok");
    assert_fast("readiness without Redis", took);
    tokio::time::sleep(Duration::from_millis(500)).await;

    redis.resume();
    ready_again(&app).await;
    // Sessions, sign-in counters and the deny list work again, in the same process.
    assert_eq!(sign_in(&app, "ada", PASSWORD).await, 200, "a new session");
    assert_eq!(
        sign_in(&app, "ada", "wrong password").await,
        401,
        "counted in Redis"
    );
    let token: Value = app.cc_token("svc", &secret, &[]).await;
    let access = token["access_token"].as_str().unwrap();
    let revoked = app
        .http
        .post(app.url("/revoke"))
        .basic_auth("svc", Some(&secret))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let introspected: Value = app
        .http
        .post(app.url("/introspect"))
        .basic_auth("svc", Some(&secret))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspected["active"], false, "denied in Redis");

    stop.send_replace(true);
    let seen = load.await.unwrap();
    assert!(seen.len() > 10, "{} requests", seen.len());
    let slowest = seen.iter().map(|(_, t)| *t).max().unwrap();
    assert!(seen.iter().all(|(s, _)| *s == 200), "{seen:?}");
    assert_fast("the slowest token during the restart", slowest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_redis_never_hangs_a_request() {
    let Some(redis_url) = crate::helpers::redis_url_or_skip("the silent-Redis test") else {
        return;
    };
    let upstream = url::Url::parse(&redis_url).unwrap();
    let proxy = FaultProxy::start(format!(
        "{}:{}",
        upstream.host_str().unwrap(),
        upstream.port().unwrap_or(6379)
    ))
    .await;
    let port = proxy.port;
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.redis_url = Some(format!("redis://127.0.0.1:{port}/"));
        s.redis_timeout_ms = 300;
    })
    .await
    .unwrap();
    let secret = app.machine_client("svc", "models:read");
    app.user("ada", &["user"]);
    assert_eq!(sign_in(&app, "ada", PASSWORD).await, 200);

    // A partition: connections stay open, nothing answers.
    proxy.set(Mode::Silent);
    for _ in 0..3 {
        let (status, body, took) = client_credentials(&app, &secret).await;
        assert_eq!(status, 200, "{body}");
        assert_fast("a token with Redis silent", took);
    }
    let (status, _, took) = timed(app.http.get(app.url("/login"))).await;
    assert_eq!(status, 503);
    assert_fast("a page with Redis silent", took);
    let (status, body, took) = readiness(&app).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (200, Some("redis unreachable"))
    );
    assert_eq!(body["status"], "degraded");
    assert_fast("readiness with Redis silent", took);

    proxy.set(Mode::Pass);
    ready_again(&app).await;
    assert_eq!(sign_in(&app, "ada", PASSWORD).await, 200);
}

/// The server on a fresh Postgres database that it reaches through a proxy the test can break.
async fn app_behind_postgres_proxy(
    tune: impl FnOnce(&mut portcullis::config::Settings),
) -> Option<(TestApp, FaultProxy)> {
    let database = fresh_database(Db::Postgres)?;
    let mut url = url::Url::parse(&database.url).unwrap();
    let proxy = FaultProxy::start(format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port().unwrap_or(5432)
    ))
    .await;
    url.set_port(Some(proxy.port)).unwrap();
    Some((spawn_app_on(database, url.as_str(), tune).await, proxy))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_or_silent_fails_fast_and_loses_nothing() {
    let Some((app, proxy)) = app_behind_postgres_proxy(|s| s.database_timeout_ms = 1000).await
    else {
        return;
    };
    let secret = app.machine_client("svc", "models:read");
    let web_secret = app.web_client("web");
    app.user("ada", &["user"]);
    // Committed before the outage: a refresh token, and a code not yet redeemed.
    let browser = Browser::new(&app);
    let scope = "openid offline_access";
    let (code, verifier) = browser.code("web", scope, "ada").await;
    let redeem = |code: String, verifier: String| {
        let app = &app;
        let web_secret = web_secret.clone();
        async move {
            token_at(
                &app.http,
                &app.address,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", WEB_CALLBACK),
                    ("code_verifier", &verifier),
                ],
                ("web", &web_secret),
            )
            .await
        }
    };
    let tokens: Value = redeem(code, verifier).await.json().await.unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_string();
    let (spare_code, spare_verifier) = browser.code("web", scope, "ada").await;
    app.cc_token("svc", &secret, &[]).await; // the client is cached from here on
    let refresh = |token: String| {
        let app = &app;
        let web_secret = web_secret.clone();
        async move {
            timed(
                app.http
                    .post(app.url("/token"))
                    .basic_auth("web", Some(&web_secret))
                    .form(&[("grant_type", "refresh_token"), ("refresh_token", &token)]),
            )
            .await
        }
    };

    for mode in [Mode::Down, Mode::Silent] {
        proxy.set(mode);
        // What does not need the database keeps working.
        for path in [
            "/.well-known/jwks.json",
            "/.well-known/openid-configuration",
            "/healthz",
        ] {
            let (status, _, took) = timed(app.http.get(app.url(path))).await;
            assert_eq!(status, 200, "{path} with Postgres {mode:?}");
            assert_fast(path, took);
        }
        let (status, body, took) = client_credentials(&app, &secret).await;
        assert_eq!(status, 200, "client credentials, Postgres {mode:?}: {body}");
        assert_fast("client credentials", took);
        // What needs it fails fast, with Retry-After.
        let started = Instant::now();
        let response = app
            .http
            .post(app.url("/token"))
            .basic_auth("web", Some(&web_secret))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
            ])
            .send()
            .await
            .unwrap();
        assert_fast("a refresh", started.elapsed());
        assert_eq!(response.status(), 503, "Postgres {mode:?}");
        assert_eq!(response.headers()["retry-after"], "1");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
        let (status, body, took) = readiness(&app).await;
        assert_eq!(
            (status, body["checks"]["database"].as_str()),
            (503, Some("unavailable"))
        );
        assert_fast("readiness", took);
        let (status, _, took) = timed(
            app.http
                .post(app.url("/introspect"))
                .basic_auth("svc", Some(&secret))
                .form(&[
                    ("token", refresh_token.as_str()),
                    ("token_type_hint", "refresh_token"),
                ]),
        )
        .await;
        assert_eq!(status, 503);
        assert_fast("introspection", took);
        assert_eq!(sign_in(&app, "ada", PASSWORD).await, 503, "a page says so");
        // A sign-in link for a client not in memory cannot be checked: 503, not "invalid".
        let (status, body, took) = timed(
            app.http
                .get(app.url("/authorize?client_id=not-cached&response_type=code&scope=openid")),
        )
        .await;
        assert_eq!(status, 503, "{body}");
        assert_fast("an authorization request", took);
        // A pile of requests waiting on the database holds no worker: JWKS still answers.
        let pending: Vec<_> = (0..40).map(|_| refresh(refresh_token.clone())).collect();
        let jwks = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            timed(app.http.get(app.url("/.well-known/jwks.json"))).await
        };
        let (answers, (status, _, took)) =
            tokio::join!(futures_util::future::join_all(pending), jwks);
        assert_eq!(status, 200);
        assert!(
            took < Duration::from_millis(500),
            "JWKS behind a pile: {took:?}"
        );
        assert!(answers.iter().all(|(s, _, t)| *s == 503 && *t < FAST));

        proxy.set(Mode::Pass);
        ready_again(&app).await;
    }
    // Nothing committed was lost: the refresh token rotates, the spare code redeems, and the
    // audit events of the tokens issued during the outage were written once it ended.
    let (status, body, _) = refresh(refresh_token).await;
    assert_eq!(status, 200, "{body}");
    let response = redeem(spare_code, spare_verifier).await;
    assert_eq!(response.status(), 200);
    let issued = app.audit_events_at_least("token_issued", 6).await;
    let machine = issued
        .iter()
        .filter(|e| e.client_id.as_deref() == Some("svc"))
        .count();
    assert_eq!(machine, 3, "the token before and one in each outage");
}
