//! Sign-in protection that locks the attacker, never the account's owner: the (username,
//! address) pair lock, the per-address limit, the username-wide slowdown that a known device
//! is exempt from, parallel guesses, and clearing the counters. Each scenario runs with the
//! counters in memory and in Redis; addresses come through a trusted proxy's
//! `X-Forwarded-For`.

use futures_util::future::join_all;

use crate::helpers::{admin_token, hidden_field, spawn_app_with, unique, Db, TestApp, PASSWORD};

/// The one message of a failed sign-in, whatever the reason.
const FAILED: &str = "The username or password is incorrect.";

/// A server whose clients all come through a proxy on loopback; counters in Redis or memory.
async fn protected_app(
    redis: bool,
    tune: impl FnOnce(&mut portcullis::config::Settings),
) -> Option<TestApp> {
    let redis_url = if redis {
        Some(crate::helpers::redis_url_or_skip(
            "sign-in protection in Redis",
        )?)
    } else {
        None
    };
    spawn_app_with(Db::Sqlite, |s| {
        s.trusted_proxies = vec!["127.0.0.1".into()];
        s.redis_url = redis_url;
        tune(s);
    })
    .await
}

/// A network of this test's own: counters in a shared Redis outlive tests.
fn network() -> String {
    let n = unique("");
    let byte = |i: usize| u16::from_str_radix(n.get(i..i + 2).unwrap(), 36).unwrap() % 250;
    format!("10.{}.{}", byte(0), byte(2))
}

/// A browser at a client address, with its session's CSRF token.
struct Device {
    http: reqwest::Client,
    address: String,
    /// Renewed with the session at each successful sign-in.
    csrf: std::sync::Mutex<String>,
    base: String,
}

struct Answer {
    status: u16,
    body: String,
    retry_after: Option<u64>,
}

impl Device {
    async fn open(app: &TestApp, address: &str) -> Device {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let device = Device {
            http,
            address: address.to_string(),
            csrf: std::sync::Mutex::new(String::new()),
            base: app.address.clone(),
        };
        device.read_csrf().await;
        device
    }

    async fn read_csrf(&self) {
        let page = self
            .http
            .get(format!("{}/login", self.base))
            .header("x-forwarded-for", &self.address)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        *self.csrf.lock().unwrap() = hidden_field(&page, "csrf_token");
    }

    async fn sign_in(&self, username: &str, password: &str) -> Answer {
        let csrf = self.csrf.lock().unwrap().clone();
        let response = self
            .http
            .post(format!("{}/login", self.base))
            .header("x-forwarded-for", &self.address)
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("username", username),
                ("password", password),
            ])
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        if status == 200 {
            self.read_csrf().await;
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Answer {
            status,
            body: response.text().await.unwrap(),
            retry_after,
        }
    }
}

fn assert_failed(answer: &Answer, context: &str) {
    assert_eq!(answer.status, 401, "{context}: {}", answer.body);
    assert!(answer.body.contains(FAILED), "{context}: {}", answer.body);
    assert!(answer.retry_after.is_none(), "{context}: no hint of a lock");
}

fn assert_signed_in(answer: &Answer, context: &str) {
    assert_eq!(answer.status, 200, "{context}: {}", answer.body);
    assert!(answer.body.contains("You are signed in"), "{context}");
}

async fn evaluated_failures(app: &TestApp, username: &str) -> usize {
    // Events are written in batches: let the last arrive.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    app.audit_events_at_least("login_failed", 1)
        .await
        .iter()
        .filter(|e| e.details["username"] == username)
        .count()
}

async fn an_attacker_cannot_keep_the_owner_out(redis: bool) {
    let Some(app) = protected_app(redis, |_| {}).await else {
        return;
    };
    let net = network();
    let alice = unique("alice");
    app.user(&alice, &[]);
    let home = format!("{net}.200");
    let known = Device::open(&app, &home).await;
    assert_signed_in(&known.sign_in(&alice, PASSWORD).await, "first sign-in");

    // 1,000 failures from 100 other addresses, 10 each, 20 at a time.
    let mut refused = 0;
    for wave in 0..5 {
        let mut devices = Vec::new();
        for i in 0..20 {
            devices.push(Device::open(&app, &format!("{net}.{}", wave * 20 + i)).await);
        }
        for _ in 0..10 {
            let answers = join_all(devices.iter().map(|d| d.sign_in(&alice, "wrong guess"))).await;
            for answer in answers {
                match answer.status {
                    401 => assert_failed(&answer, "attacker"),
                    429 => {
                        refused += 1;
                        let wait = answer.retry_after.unwrap();
                        assert!(wait <= app.settings.login_username_max_delay, "{wait}");
                    }
                    other => panic!("attacker got {other}: {}", answer.body),
                }
            }
        }
    }
    assert!(
        refused > 900,
        "the username-wide slowdown spaced the attack: {refused}"
    );

    // Her known browser signs in at once.
    assert_signed_in(&known.sign_in(&alice, PASSWORD).await, "known browser");
    // A fresh browser of hers, on her own address, is at most slowed by seconds.
    let fresh = Device::open(&app, &home).await;
    let mut waited = 0;
    loop {
        let answer = fresh.sign_in(&alice, PASSWORD).await;
        if answer.status == 200 {
            assert_signed_in(&answer, "fresh browser");
            break;
        }
        assert_eq!(answer.status, 429, "{}", answer.body);
        let wait = answer.retry_after.unwrap();
        assert!(wait <= app.settings.login_username_max_delay);
        waited += wait;
        assert!(waited <= 60, "slowed, not locked for the window");
        app.clock.advance(i64::try_from(wait).unwrap());
    }
}

async fn ten_failures_lock_that_pair_only(redis: bool) {
    let Some(app) = protected_app(redis, |_| {}).await else {
        return;
    };
    let net = network();
    let (bob, carol) = (unique("bob"), unique("carol"));
    app.user(&bob, &[]);
    app.user(&carol, &[]);
    let attacker = Device::open(&app, &format!("{net}.1")).await;
    for i in 0..10 {
        assert_failed(
            &attacker.sign_in(&bob, "wrong guess").await,
            &format!("guess {i}"),
        );
    }
    // The pair waits: even the right password is answered like a wrong one.
    assert_failed(&attacker.sign_in(&bob, PASSWORD).await, "locked pair");
    // Bob elsewhere, and someone else from the same address, are not locked.
    assert_signed_in(
        &Device::open(&app, &format!("{net}.2"))
            .await
            .sign_in(&bob, PASSWORD)
            .await,
        "bob from another address",
    );
    assert_signed_in(
        &attacker.sign_in(&carol, PASSWORD).await,
        "carol from that address",
    );
    // The first wait is a minute; then the right password works and clears the pair.
    app.clock.advance(60);
    assert_signed_in(&attacker.sign_in(&bob, PASSWORD).await, "after the wait");
    assert_failed(
        &attacker.sign_in(&bob, "wrong again").await,
        "counting from zero",
    );
    assert_signed_in(&attacker.sign_in(&bob, PASSWORD).await, "not locked");
    assert_eq!(evaluated_failures(&app, &bob).await, 11);
    // The audit log names the client's address, as the trusted proxy forwarded it.
    let events = app.audit_events_at_least("login_failed", 11).await;
    assert!(events
        .iter()
        .filter(|e| e.details["username"] == bob.as_str())
        .all(|e| e.details["ip"] == format!("{net}.1").as_str()));
}

async fn parallel_guesses_are_all_counted(redis: bool) {
    let Some(app) = protected_app(redis, |s| s.login_ip_max_failures = 51).await else {
        return;
    };
    let net = network();
    let dave = unique("dave");
    app.user(&dave, &[]);
    let address = format!("{net}.9");
    let mut devices = Vec::new();
    for _ in 0..50 {
        devices.push(Device::open(&app, &address).await);
    }
    let answers = join_all(devices.iter().map(|d| d.sign_in(&dave, "wrong guess"))).await;
    for answer in &answers {
        assert_failed(answer, "parallel guess");
    }
    // At most the pair's threshold of them was checked against the password...
    let evaluated = evaluated_failures(&app, &dave).await;
    assert!(
        (1..=10).contains(&evaluated),
        "{evaluated} guesses evaluated"
    );
    // ...the right one now meets the lock...
    assert_failed(
        &devices[0].sign_in(&dave, PASSWORD).await,
        "locked after the burst",
    );
    // ...and every one of the 50 (and that one) counted against the address.
    let someone = unique("someone");
    app.user(&someone, &[]);
    let answer = devices[1].sign_in(&someone, PASSWORD).await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert!(answer.retry_after.unwrap() > 3600, "the 24-hour window");
}

async fn an_address_spraying_usernames_is_refused(redis: bool) {
    let Some(app) = protected_app(redis, |s| s.login_ip_max_failures = 5).await else {
        return;
    };
    let net = network();
    let erin = unique("erin");
    app.user(&erin, &[]);
    let sprayer = Device::open(&app, &format!("{net}.66")).await;
    for i in 0..5 {
        assert_failed(
            &sprayer.sign_in(&unique("user"), "Summer2026!").await,
            &format!("{i}"),
        );
    }
    let refused = sprayer.sign_in(&erin, PASSWORD).await;
    assert_eq!(refused.status, 429);
    assert!(
        refused.body.contains("from your network"),
        "{}",
        refused.body
    );
    assert_signed_in(
        &Device::open(&app, &format!("{net}.67"))
            .await
            .sign_in(&erin, PASSWORD)
            .await,
        "another address",
    );
    // A spoofed header from a peer that is not a trusted proxy changes nothing: the server
    // below trusts no proxy, so the header is ignored and the peer (loopback) is counted.
    let Some(untrusting) = spawn_app_with(Db::Sqlite, |s| s.login_ip_max_failures = 2).await else {
        return;
    };
    untrusting.user(&erin, &[]);
    for i in 0..2 {
        let device = Device::open(&untrusting, &format!("{net}.{}", 100 + i)).await;
        assert_failed(&device.sign_in(&unique("user"), "guess").await, "spoofed");
    }
    let device = Device::open(&untrusting, &format!("{net}.150")).await;
    assert_eq!(device.sign_in(&erin, PASSWORD).await.status, 429);
}

async fn every_failure_looks_the_same(redis: bool) {
    let Some(app) = protected_app(redis, |_| {}).await else {
        return;
    };
    let net = network();
    let (frank, gina) = (unique("frank"), unique("gina"));
    app.user(&frank, &[]);
    app.user(&gina, &[]);
    app.app.users().set_disabled(&gina, true).unwrap();
    let device = Device::open(&app, &format!("{net}.5")).await;
    let wrong = device.sign_in(&frank, "wrong password").await;
    let unknown = device.sign_in(&unique("nobody"), PASSWORD).await;
    let disabled = device.sign_in(&gina, PASSWORD).await;
    let locker = Device::open(&app, &format!("{net}.6")).await;
    for _ in 0..10 {
        locker.sign_in(&frank, "wrong password").await;
    }
    let locked = locker.sign_in(&frank, PASSWORD).await;
    let strip = |a: &Answer| {
        // The page echoes the username and carries its CSRF token; the rest must match.
        let mut body = a.body.clone();
        for name in [&frank, &gina] {
            body = body.replace(name.as_str(), "");
        }
        body.lines()
            .filter(|l| !l.contains("csrf_token") && !l.contains("name=\"username\""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (answer, what) in [
        (&wrong, "wrong"),
        (&unknown, "unknown"),
        (&disabled, "disabled"),
        (&locked, "locked"),
    ] {
        assert_failed(answer, what);
        assert_eq!(
            strip(answer),
            strip(&wrong),
            "{what} differs from a wrong password"
        );
    }
}

/// Ten wrong passwords from `device`, after which the right one meets the lock.
async fn lock_pair(device: &Device, username: &str) {
    for _ in 0..10 {
        device.sign_in(username, "wrong password").await;
    }
    assert_failed(&device.sign_in(username, PASSWORD).await, "locked");
}

async fn unlock_and_new_passwords_clear_the_counters(redis: bool) {
    let Some(app) = protected_app(redis, |_| {}).await else {
        return;
    };
    let net = network();
    let hana = unique("hana");
    app.user(&hana, &[]);
    let device = Device::open(&app, &format!("{net}.7")).await;
    // The CLI.
    lock_pair(&device, &hana).await;
    let output = app.cli(&["user", "unlock", "--username", &hana]);
    assert_eq!(output["unlocked"], hana.as_str());
    assert_signed_in(&device.sign_in(&hana, PASSWORD).await, "after user unlock");
    // The admin API.
    lock_pair(&device, &hana).await;
    let (token, _) = admin_token(&app).await;
    let response = app
        .http
        .post(app.url(&format!("/admin/v1/users/{hana}/unlock")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_signed_in(
        &device.sign_in(&hana, PASSWORD).await,
        "after the admin API",
    );
    let missing = app
        .http
        .post(app.url("/admin/v1/users/nobody-here/unlock"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // A new password.
    lock_pair(&device, &hana).await;
    app.app
        .users()
        .set_password(&hana, "a brand new password")
        .unwrap();
    assert_signed_in(
        &device.sign_in(&hana, "a brand new password").await,
        "after set-password",
    );
}

macro_rules! memory_and_redis {
    ($($name:ident),* $(,)?) => {
        mod in_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(false).await }
            )*
        }
        mod in_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(true).await }
            )*
        }
    };
}

memory_and_redis!(
    an_attacker_cannot_keep_the_owner_out,
    ten_failures_lock_that_pair_only,
    parallel_guesses_are_all_counted,
    an_address_spraying_usernames_is_refused,
    every_failure_looks_the_same,
    unlock_and_new_passwords_clear_the_counters,
);
