//! Abuse limits, the audit log and metrics.

use serde_json::Value;

use crate::helpers::{error_of, spawn_app_with, Db};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_are_rate_limited_per_client() {
    let app = spawn_app_with(Db::Sqlite, |s| s.token_rate_limit_per_minute = 3)
        .await
        .unwrap();
    let secret = app.machine_client("svc", "models:read");
    let other = app.machine_client("other", "models:read");
    for _ in 0..3 {
        app.cc_token("svc", &secret, &[]).await;
    }
    let limited = app
        .post_token(
            &[("grant_type", "client_credentials")],
            Some(("svc", &secret)),
        )
        .await;
    assert_refused_for_the_minute(limited).await;
    // Other clients are unaffected, and the next window starts afresh.
    app.cc_token("other", &other, &[]).await;
    app.clock.advance(60);
    app.cc_token("svc", &secret, &[]).await;
}

/// A 429 `too_many_requests` whose `Retry-After` points within the current minute.
async fn assert_refused_for_the_minute(response: reqwest::Response) {
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(error_of(response).await, (429, "too_many_requests".into()));
}

/// A client-credentials request for `id` with a secret that is not its own.
async fn wrong_secret(app: &crate::helpers::TestApp, id: &str) -> reqwest::Response {
    app.post_token(
        &[("grant_type", "client_credentials")],
        Some((id, "a-guess-that-is-not-the-secret-of-any-client")),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_a_clients_name_do_not_spend_its_budget() {
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.token_rate_limit_per_minute = 3;
        s.token_auth_failures_per_ip_per_minute = 100;
    })
    .await
    .unwrap();
    let secret = app.machine_client("svc", "models:read");
    // Fewer than the (client, address) pair's lock threshold.
    for _ in 0..9 {
        assert_eq!(
            error_of(wrong_secret(&app, "svc").await).await,
            (401, "invalid_client".into())
        );
    }
    // The client's three requests of this minute are all still there.
    for _ in 0..3 {
        app.cc_token("svc", &secret, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_client_authentications_are_limited_per_address() {
    let app = spawn_app_with(Db::Sqlite, |s| s.token_auth_failures_per_ip_per_minute = 3)
        .await
        .unwrap();
    let secret = app.machine_client("svc", "models:read");
    app.cc_token("svc", &secret, &[]).await;
    // Three wrong secrets (any client id, known or not) are answered and counted...
    for id in ["svc", "svc", "nobody"] {
        assert_eq!(
            error_of(wrong_secret(&app, id).await).await,
            (401, "invalid_client".into())
        );
    }
    // ...then this address may not try again, even with the right secret, until the minute
    // ends: the fourth guess is not even checked.
    let right_secret = app
        .post_token(
            &[("grant_type", "client_credentials")],
            Some(("svc", &secret)),
        )
        .await;
    for refused in [wrong_secret(&app, "svc").await, right_secret] {
        assert_refused_for_the_minute(refused).await;
    }
    app.clock.advance(60);
    app.cc_token("svc", &secret, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_issuance_is_audited_and_measured() {
    let app = spawn_app_with(Db::Sqlite, |_| {}).await.unwrap();
    let secret = app.machine_client("svc", "models:read");
    let body = app.cc_token("svc", &secret, &[]).await;
    let token = body["access_token"].as_str().unwrap();
    let jti = crate::helpers::claims_of(token)["jti"]
        .as_str()
        .unwrap()
        .to_string();
    let _ = app
        .post_token(
            &[("grant_type", "client_credentials"), ("scope", "nope")],
            Some(("svc", &secret)),
        )
        .await;
    let event = app
        .audit_event("token_issued", |e| e.details["jti"] == jti.as_str())
        .await;
    assert_eq!(event.client_id.as_deref(), Some("svc"));
    assert_eq!(event.subject.as_deref(), Some("svc"));
    assert_eq!(event.details["grant_type"], "client_credentials");
    assert_eq!(event.details["scope"], "models:read");
    let stored =
        serde_json::to_string(&app.audit_events_at_least("token_issued", 1).await).unwrap();
    assert!(!stored.contains(token), "the audit log never holds a token");
    assert!(!stored.contains(&secret), "nor a secret");

    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "portcullis_tokens_issued_total{grant=\"client_credentials\",client=\"svc\"}",
        "portcullis_token_errors_total{error=\"invalid_scope\"}",
        "portcullis_http_request_duration_seconds_bucket{endpoint=\"/token\"",
        "portcullis_signing_key_age_seconds{alg=\"ES256\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_shared_across_instances_through_redis() {
    let Some(redis_url) = crate::helpers::redis_url_or_skip("the shared-limit test") else {
        return;
    };
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.redis_url = Some(redis_url.clone());
        s.token_rate_limit_per_minute = 4;
    })
    .await
    .unwrap();
    // A unique client id: the counters in Redis outlive this test.
    let id = format!(
        "svc{}",
        portcullis::secrets::generate_token()
            .unwrap()
            .replace(['-', '_'], "")
            .get(..8)
            .unwrap()
    );
    let secret = app.machine_client(&id, "models:read");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let running = portcullis::startup::build_on(listener, app.settings.clone(), app.clock.clone())
        .await
        .unwrap();
    tokio::spawn(running.server);
    let second = format!("http://127.0.0.1:{port}/token");
    let mut statuses = Vec::new();
    for i in 0..6 {
        let url = if i % 2 == 0 {
            app.url("/token")
        } else {
            second.clone()
        };
        let response = app
            .http
            .post(url)
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
    let _: Value = Value::Null;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_limiter_counts_and_reads_like_the_in_process_one() {
    let Some(redis_url) = crate::helpers::redis_url_or_skip("the Redis limiter test") else {
        return;
    };
    let link =
        portcullis::redis_link::RedisLink::connect(&redis_url, std::time::Duration::from_secs(2))
            .await
            .unwrap();
    let limiter = portcullis::limits::Limiter::Redis(link);
    // A key of its own: counters in Redis outlive the test.
    let key = format!("test:{}", portcullis::secrets::generate_token().unwrap());
    let limit = portcullis::limits::Limit { max: 1, window: 60 };
    assert_eq!(limiter.add(&key, 0, limit, 120).await, Ok(0));
    assert_eq!(limiter.add(&key, 1, limit, 120).await, Ok(1));
    assert_eq!(
        limiter.add(&key, 0, limit, 121).await,
        Ok(1),
        "reading adds nothing"
    );
    assert_eq!(limiter.add(&key, 1, limit, 121).await, Err(59));
    assert_eq!(
        limiter.add(&key, 0, limit, 122).await,
        Err(58),
        "still over"
    );
    assert_eq!(
        limiter.add(&key, 0, limit, 180).await,
        Ok(0),
        "a new window"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_past_their_retention_are_purged_by_one_instance_at_a_time() {
    let app = spawn_app_with(Db::Sqlite, |s| s.audit_retention = 90 * 86_400)
        .await
        .unwrap();
    let store = app.app.store();
    let event = |age_days: i64, kind: &str| portcullis::store::audit::NewAuditEvent {
        at: app.app.now() - age_days * 86_400,
        kind: kind.to_string(),
        client_id: None,
        subject: None,
        details: "{}".into(),
        event_id: None,
    };
    let count = |kind: &str| {
        store
            .query_audit_events(&portcullis::store::audit::AuditQuery {
                kind: Some(kind.to_string()),
                limit: 1000,
                ..Default::default()
            })
            .unwrap()
            .len()
    };
    store
        .insert_audit_events(&[event(91, "old"), event(120, "old"), event(89, "kept")])
        .unwrap();
    // The command line purges at once.
    let purged = app.cli(&["audit", "purge"]);
    assert_eq!(purged["deleted"], 2);
    assert_eq!((count("old"), count("kept")), (0, 1));
    // The server purges at its poll, taking an hourly lease that a second instance (or a
    // second poll within the hour) finds taken.
    store.insert_audit_events(&[event(100, "old")]).unwrap();
    app.sync();
    assert_eq!(count("old"), 0, "purged at the first poll");
    store.insert_audit_events(&[event(100, "old")]).unwrap();
    app.sync();
    assert_eq!(count("old"), 1, "the lease is held for an hour");
    app.clock.advance(3600);
    app.sync();
    assert_eq!(count("old"), 0, "the next hour's poll purges");
    assert_eq!(count("kept"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_client_address_has_its_own_failure_budget() {
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.token_auth_failures_per_ip_per_minute = 2;
        s.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await
    .unwrap();
    let secret = app.machine_client("svc", "models:read");
    let from = |address: &'static str, secret: String| {
        let app = &app;
        async move {
            app.http
                .post(app.url("/token"))
                .header("x-forwarded-for", address)
                .basic_auth("svc", Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap()
        }
    };
    let wrong = || "not-the-secret-of-this-client-at-all".to_string();
    for _ in 0..2 {
        assert_eq!(from("203.0.113.7", wrong()).await.status(), 401);
    }
    assert_refused_for_the_minute(from("203.0.113.7", secret.clone()).await).await;
    // Another client behind the same proxy is not refused.
    assert_eq!(from("198.51.100.4", secret.clone()).await.status(), 200);
    // Without trusted proxies the header is the client's word only: every address below is
    // the peer's, and shares one budget.
    let untrusting = spawn_app_with(Db::Sqlite, |s| s.token_auth_failures_per_ip_per_minute = 2)
        .await
        .unwrap();
    let secret = untrusting.machine_client("svc", "models:read");
    for address in ["192.0.2.1", "192.0.2.2"] {
        let response = untrusting
            .http
            .post(untrusting.url("/token"))
            .header("x-forwarded-for", address)
            .basic_auth("svc", Some("not-the-secret-of-this-client-at-all"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let spoofed = untrusting
        .http
        .post(untrusting.url("/token"))
        .header("x-forwarded-for", "192.0.2.3")
        .basic_auth("svc", Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_refused_for_the_minute(spoofed).await;
}

/// 40 wrong secrets at once, then the right one: no more than the limit are answered as
/// guesses, and the right secret after them is refused too (with the counters in memory, and
/// in Redis).
async fn parallel_secret_guesses_are_settled_atomically(redis: bool) {
    let redis_url = if redis {
        match crate::helpers::redis_url_or_skip("parallel secret guesses in Redis") {
            Some(url) => Some(url),
            None => return,
        }
    } else {
        None
    };
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.token_auth_failures_per_ip_per_minute = 5;
        s.trusted_proxies = vec!["127.0.0.1".into()];
        s.redis_url = redis_url;
    })
    .await
    .unwrap();
    let id = crate::helpers::unique("svc");
    let secret = app.machine_client(&id, "models:read");
    let address = format!("203.0.113.{}", 1 + u8::from(redis));
    let attempt = |secret: String| {
        let app = &app;
        let (id, address) = (id.clone(), address.clone());
        async move {
            app.http
                .post(app.url("/token"))
                .header("x-forwarded-for", address)
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let statuses = futures_util::future::join_all(
        (0..40).map(|i| attempt(format!("guess-number-{i}-is-not-the-secret-at-all"))),
    )
    .await;
    let answered = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((answered, refused), (5, 35), "{statuses:?}");
    assert_eq!(
        attempt(secret).await,
        429,
        "the right secret after the limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_secret_guesses_are_settled_atomically_in_memory() {
    parallel_secret_guesses_are_settled_atomically(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_secret_guesses_are_settled_atomically_in_redis() {
    parallel_secret_guesses_are_settled_atomically(true).await
}
