//! The process's end: SIGTERM drains without losing work; kill -9 in the middle of a key
//! rotation leaves a keyring that still verifies everything it published.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{fresh_database, test_kek_base64, verify_with_jwks, Db};
use crate::on_both_backends;
use crate::processes::{cli, Instance};

fn base_settings(database_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PORTCULLIS_DATABASE_URL", database_url.to_string()),
        ("PORTCULLIS_KEY_ENCRYPTION_KEY", test_kek_base64()),
        ("PORTCULLIS_DATABASE_TIMEOUT_MS", "10000".into()),
    ]
}

fn machine_client(settings: &[(&str, String)], id: &str) -> String {
    let created = cli(
        settings,
        &[
            "client",
            "create",
            "--id",
            id,
            "--name",
            id,
            "--grant-type",
            "client_credentials",
            "--scope",
            "models:read",
            "--audience",
            "https://api.example.test",
        ],
        None,
    );
    created["client_secret"].as_str().unwrap().to_string()
}

/// A token request whose body arrives in two parts, `pause` apart: in flight all that time.
fn slow_token_request(
    port: u16,
    id: &str,
    secret: &str,
    pause: Duration,
) -> std::thread::JoinHandle<String> {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let body = "grant_type=client_credentials&scope=models%3Aread";
        let (first, rest) = body.split_at(10);
        write!(
            stream,
            "POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {basic}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{first}",
            body.len()
        )
        .unwrap();
        std::thread::sleep(pause);
        stream.write_all(rest.as_bytes()).unwrap();
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_readiness_finishes_requests_and_writes_queued_audit_events() {
    let database = fresh_database(Db::Sqlite).unwrap();
    let mut settings = base_settings(&database.url);
    let secret = machine_client(&settings, "svc");
    settings.push(("PORTCULLIS_SHUTDOWN_DELAY", "2".into()));
    settings.push(("PORTCULLIS_SHUTDOWN_GRACE", "8".into()));
    let mut server = Instance::start(&settings).await;
    let http = reqwest::Client::new();
    // A burst of tokens: their audit rows are still queued when the signal comes.
    let issue = || {
        http.post(server.url("/token"))
            .basic_auth("svc", Some(&secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    let mut issued = 0;
    for _ in 0..20 {
        let answers = futures_util::future::join_all((0..10).map(|_| issue())).await;
        for answer in answers {
            assert_eq!(answer.unwrap().status(), 200);
            issued += 1;
        }
    }
    let slow = slow_token_request(server.port, "svc", &secret, Duration::from_millis(3000));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    server.signal("TERM");
    // Readiness fails at once, while the listener still serves (shutdown_delay).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["reason"], "shutting down");
    assert_eq!(
        issue().await.unwrap().status(),
        200,
        "still serving during the delay"
    );
    issued += 1;
    // The request in flight is answered, then the process exits 0 within delay + grace.
    let reply = tokio::task::spawn_blocking(move || slow.join().unwrap())
        .await
        .unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "in-flight request: {reply}"
    );
    issued += 1;
    let status = server.exit_within(Duration::from_secs(12)).await;
    let elapsed = signalled.elapsed();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit: {status:?}\n{}",
        server.output()
    );
    assert!(elapsed < Duration::from_secs(11), "{elapsed:?}");
    assert!(
        elapsed >= Duration::from_secs(2),
        "kept serving for shutdown_delay: {elapsed:?}"
    );
    // Every token issued has its audit row.
    let store = portcullis::store::Store::open(&database.url, 1).unwrap();
    let rows = store
        .query_audit_events(&portcullis::store::audit::AuditQuery {
            kind: Some("token_issued".into()),
            limit: 1000,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rows.len(), issued, "queued audit rows written before exit");
}

on_both_backends!(kill_9_during_key_rotation_leaves_a_consistent_keyring);

/// The keyring as `keys list --json` shows it: (kid, alg, state, remove_after).
fn keyring(settings: &[(&str, String)]) -> Vec<(String, String, String, Option<i64>)> {
    cli(settings, &["keys", "list", "--json"], None)
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().to_string(),
                k["alg"].as_str().unwrap().to_string(),
                k["state"].as_str().unwrap().to_string(),
                k["remove_after"].as_i64(),
            )
        })
        .collect()
}

async fn kill_9_during_key_rotation_leaves_a_consistent_keyring(db: Db) {
    let Some(database) = fresh_database(db) else {
        return;
    };
    let mut settings = base_settings(&database.url);
    // A next key may sign 2 s after it is published: rotations can follow each other fast.
    settings.push(("PORTCULLIS_JWKS_MAX_AGE", "0".into()));
    settings.push(("PORTCULLIS_KEYRING_POLL_INTERVAL", "1".into()));
    let mut before = keyring(&settings);
    let rotate = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["keys", "rotate"])
            .envs(settings.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "off")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // How long a whole rotation takes on this machine now: the kills are spread over it.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let started = Instant::now();
    assert!(rotate().wait().unwrap().success());
    let whole = started.elapsed();
    before = {
        let after = keyring(&settings);
        assert_ne!(after, before, "the unhurried rotation rotated");
        after
    };
    let rounds = 12u32;
    let mut rotations_seen = 0;
    for round in 0..rounds {
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let mut process = rotate();
        // Somewhere in key generation, the transaction, or after: spread over 0–120 % of it.
        std::thread::sleep(whole * (round * 10) / (rounds * 8));
        let _ = process.kill();
        let _ = process.wait();
        let after = keyring(&settings);
        for alg in ["ES256", "RS256"] {
            let active = after
                .iter()
                .filter(|k| k.1 == alg && k.2 == "active")
                .count();
            assert_eq!(active, 1, "round {round}: {alg} active keys: {after:?}");
        }
        let now = chrono::Utc::now().timestamp();
        for key in &before {
            let still_needed = key.3.is_none_or(|t| t > now);
            assert!(
                !still_needed || after.iter().any(|k| k.0 == key.0),
                "round {round}: {} vanished while still published: {after:?}",
                key.0
            );
        }
        let active_before: Vec<_> = before.iter().filter(|k| k.2 == "active").collect();
        if active_before
            .iter()
            .any(|k| after.iter().any(|a| a.0 == k.0 && a.2 == "retired"))
        {
            rotations_seen += 1;
        }
        before = after;
    }
    eprintln!("a whole rotation took {whole:?}; {rotations_seen} of {rounds} killed rounds had written it");
    // A server starts on what is left and issues tokens that verify against its JWKS.
    let server = Instance::start(&settings).await;
    let secret = machine_client(&settings, "svc");
    let http = reqwest::Client::new();
    let body: Value = http
        .post(server.url("/token"))
        .basic_auth("svc", Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks: Value = http
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    verify_with_jwks(body["access_token"].as_str().unwrap(), &jwks).unwrap();
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_sign_ins_hashes_a_bounded_number_of_passwords_at_once() {
    let database = fresh_database(Db::Sqlite).unwrap();
    let mut settings = base_settings(&database.url);
    // Only the hashing bound is under test here: no sign-in counter gets in the way.
    for (name, value) in [
        ("PORTCULLIS_LOGIN_IP_MAX_FAILURES", "1000000"),
        ("PORTCULLIS_LOGIN_USERNAME_SLOWDOWN_AFTER", "1000000"),
    ] {
        settings.push((name, value.into()));
    }
    let server = Instance::start(&settings).await;
    let pid = server.pid();
    // One browser session per sign-in, each with its CSRF token.
    let mut forms = Vec::new();
    for _ in 0..200 {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let page = http
            .get(server.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        forms.push((http, crate::helpers::hidden_field(&page, "csrf_token")));
    }
    let sign_in = |http: &reqwest::Client, csrf: &str, username: String| {
        http.post(server.url("/login"))
            .form(&[
                ("csrf_token", csrf),
                ("username", username.as_str()),
                ("password", "a wrong password"),
            ])
            .send()
    };
    // Warm: the first hash allocates what every later one reuses.
    let (http, csrf) = &forms[0];
    assert_eq!(
        sign_in(http, csrf, "warm".into()).await.unwrap().status(),
        401
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let answers = futures_util::future::join_all(
        forms
            .iter()
            .enumerate()
            .map(|(i, (http, csrf))| sign_in(http, csrf, format!("nobody{i}"))),
    )
    .await;
    sampling.abort();
    let mut statuses = std::collections::BTreeMap::new();
    for answer in answers {
        let answer = answer.unwrap();
        let status = answer.status().as_u16();
        if status == 503 {
            assert_eq!(answer.headers()["retry-after"], "1");
        }
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert!(
        statuses.keys().all(|s| *s == 401 || *s == 503),
        "{statuses:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "200 concurrent sign-ins {statuses:?}: RSS {} MiB before, {} MiB at the peak, {} MiB 2 s after",
        before / 1024,
        peak / 1024,
        after / 1024
    );
    assert!(
        peak - before < 150 * 1024,
        "RSS grew by {} MiB",
        (peak - before) / 1024
    );
    assert!(
        after < before + 40 * 1024,
        "memory returned after the burst: {} MiB over",
        after.saturating_sub(before) / 1024
    );
}
