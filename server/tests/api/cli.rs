//! The `portcullis` command: provisioning, keys, settings errors, and a server that sees
//! changes the CLI makes while it runs.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::helpers::{spawn_app_with, test_kek_base64, Db, API};

fn portcullis(database_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORTCULLIS_DATABASE_URL", database_url)
        .env("PORTCULLIS_KEY_ENCRYPTION_KEY", test_kek_base64())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout_json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_created_by_the_cli_get_tokens_from_a_running_server() {
    // A short poll interval: the server picks up the CLI's change from the database.
    let app = spawn_app_with(Db::Sqlite, |s| s.keyring_poll_interval = 1)
        .await
        .unwrap();
    let url = app.database.url.clone();
    // Make the server cache a miss first, so invalidation matters.
    let miss = app
        .post_token(
            &[("grant_type", "client_credentials")],
            Some(("cli-svc", "x")),
        )
        .await;
    assert_eq!(miss.status(), 401);

    let created = stdout_json(&portcullis(
        &url,
        &[
            "client",
            "create",
            "--id",
            "cli-svc",
            "--name",
            "CLI service",
            "--grant-type",
            "client_credentials",
            "--scope",
            "models:read models:invoke",
            "--scope",
            "extra",
            "--audience",
            API,
        ],
    ));
    assert_eq!(created["client_id"], "cli-svc");
    assert_eq!(
        created["scope"],
        serde_json::json!(["models:read", "models:invoke", "extra"])
    );
    let secret = created["client_secret"].as_str().unwrap().to_string();
    assert!(
        secret.len() >= 43,
        "generated secrets carry at least 256 bits"
    );

    let response = app
        .post_token(
            &[("grant_type", "client_credentials")],
            Some(("cli-svc", &secret)),
        )
        .await;
    assert_eq!(response.status(), 200);

    // The secret is shown once: never in list output, never stored in clear.
    let listed = portcullis(&url, &["client", "list"]);
    let listed_text = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(!listed_text.contains(&secret));
    assert_eq!(stdout_json(&listed)[0]["client_id"], "cli-svc");
    let raw_db = std::fs::read(&url).unwrap();
    assert!(!String::from_utf8_lossy(&raw_db).contains(&secret));

    // Edited by the CLI (a full replacement): the running server applies it.
    let updated = stdout_json(&portcullis(
        &url,
        &[
            "client",
            "update",
            "--id",
            "cli-svc",
            "--name",
            "CLI service, renamed",
            "--grant-type",
            "client_credentials",
            "--scope",
            "models:read",
            "--audience",
            API,
        ],
    ));
    assert_eq!(updated["client_name"], "CLI service, renamed");
    assert!(updated.get("client_secret").is_none(), "the secret stays");
    let failed = portcullis(
        &url,
        &[
            "client",
            "update",
            "--id",
            "nobody",
            "--name",
            "N",
            "--grant-type",
            "client_credentials",
        ],
    );
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("no client nobody"));
    let mut narrowed = false;
    for _ in 0..40 {
        let response = app
            .post_token(
                &[("grant_type", "client_credentials"), ("scope", "extra")],
                Some(("cli-svc", &secret)),
            )
            .await;
        if response.status() == 400 {
            narrowed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(narrowed, "a removed scope keeps being granted");

    // Its secret rotated by the CLI: the new one works and the old one stops.
    let rotated = stdout_json(&portcullis(
        &url,
        &["client", "rotate-secret", "--id", "cli-svc"],
    ));
    let new_secret = rotated["client_secret"].as_str().unwrap().to_string();
    let mut switched = false;
    for _ in 0..40 {
        let old = app
            .post_token(
                &[("grant_type", "client_credentials")],
                Some(("cli-svc", &secret)),
            )
            .await;
        if old.status() == 401 {
            switched = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(switched, "the old secret keeps working");
    let response = app
        .post_token(
            &[("grant_type", "client_credentials")],
            Some(("cli-svc", &new_secret)),
        )
        .await;
    assert_eq!(response.status(), 200);
    let secret = new_secret;

    // Deleted by the CLI: the running server stops issuing within the poll interval.
    stdout_json(&portcullis(&url, &["client", "delete", "--id", "cli-svc"]));
    let mut refused = false;
    for _ in 0..40 {
        let response = app
            .post_token(
                &[("grant_type", "client_credentials")],
                Some(("cli-svc", &secret)),
            )
            .await;
        if response.status() == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused, "a deleted client keeps getting tokens");
}

#[test]
fn invalid_registrations_and_settings_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("cli.db").display().to_string();
    let short = portcullis(
        &url,
        &[
            "client",
            "create",
            "--id",
            "x",
            "--name",
            "X",
            "--secret",
            "short",
            "--grant-type",
            "client_credentials",
        ],
    );
    assert!(!short.status.success());
    let message = String::from_utf8_lossy(&short.stderr);
    assert!(
        message.contains("client_secret") && message.contains("32"),
        "{message}"
    );

    let supplied = stdout_json(&portcullis(
        &url,
        &[
            "client",
            "create",
            "--id",
            "y",
            "--name",
            "Y",
            "--secret",
            "0123456789abcdef0123456789abcdef",
            "--grant-type",
            "client_credentials",
        ],
    ));
    assert!(
        supplied.get("client_secret").is_none(),
        "supplied secrets are not echoed"
    );
    let duplicate = portcullis(
        &url,
        &[
            "client",
            "create",
            "--id",
            "y",
            "--name",
            "Y",
            "--grant-type",
            "client_credentials",
        ],
    );
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));

    // A bad setting: one line naming it, non-zero exit.
    let bad = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["client", "list"])
        .env("PORTCULLIS_DATABASE_URL", &url)
        .env("PORTCULLIS_ACCESS_TOKEN_TTL", "soon")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("access_token_ttl"), "{stderr}");

    let insecure = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve"])
        .env("PORTCULLIS_DATABASE_URL", &url)
        .env("PORTCULLIS_ISSUER", "http://auth.example.com")
        .output()
        .unwrap();
    assert!(!insecure.status.success());
    assert!(String::from_utf8_lossy(&insecure.stderr).contains("issuer"));
}

#[test]
fn keys_list_and_rotate_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("keys.db").display().to_string();
    let listed = stdout_json(&portcullis(&url, &["keys", "list", "--json"]));
    let keys = listed.as_array().unwrap();
    assert_eq!(keys.iter().filter(|k| k["state"] == "active").count(), 2);
    assert_eq!(keys.iter().filter(|k| k["state"] == "next").count(), 2);
    // The next keys were just created: rotating now would sign with an unpublished key.
    let early = portcullis(&url, &["keys", "rotate"]);
    assert!(!early.status.success());
    assert!(String::from_utf8_lossy(&early.stderr).contains("may sign from"));
    let table = portcullis(&url, &["keys", "list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("active"));
}
