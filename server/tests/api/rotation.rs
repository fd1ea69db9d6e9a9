//! Key rotation with an injected clock: tokens signed before a rotation verify after it, and no
//! key leaves the JWKS while a token it signed is unexpired.

use serde_json::Value;

use crate::helpers::{spawn_app, verify_with_jwks, Db, API};
use crate::on_both_backends;

on_both_backends!(
    rotation_never_breaks_a_verifier,
    exactly_one_process_performs_a_due_rotation
);

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

async fn token(app: &crate::helpers::TestApp, secret: &str) -> String {
    let response = app
        .post_token(
            &[("grant_type", "client_credentials"), ("resource", API)],
            Some(("svc", secret)),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

fn kid_of(token: &str, jwks: &Value) -> String {
    verify_with_jwks(token, jwks).unwrap().0["kid"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn rotation_never_breaks_a_verifier(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let secret = app.machine_client("svc", "models:read");
    let policy = app.app.keyring().policy();
    let before = app.jwks().await;
    let old_token = token(&app, &secret).await;
    let old_kid = kid_of(&old_token, &before);

    // Not yet due: nothing changes.
    app.clock.advance(policy.rotation_period - 1);
    app.app.sync_with_cluster().unwrap();
    assert_eq!(kids(&app.jwks().await), kids(&before));

    // Due: the next key (published long ago) signs; the old one stays published.
    app.clock.advance(1);
    app.app.sync_with_cluster().unwrap();
    let after = app.jwks().await;
    assert!(
        kids(&after).contains(&old_kid),
        "retired key still published"
    );
    let new_token = token(&app, &secret).await;
    let new_kid = kid_of(&new_token, &after);
    assert_ne!(new_kid, old_kid);
    assert!(
        kids(&before).contains(&new_kid),
        "the new signing key was published before it signed"
    );
    // The old token still verifies against what a verifier fetches now.
    verify_with_jwks(&old_token, &after).unwrap();

    // A forced rotation right away must wait: the newest next key is too new to sign.
    let outcome = app.app.keyring().maintain(true).unwrap();
    assert!(outcome.rotated.is_empty());
    assert!(!outcome.waiting.is_empty());

    // The retired key stays until every token it signed has expired, plus the cache lifetime.
    let ttl = app.settings.access_token_ttl as i64;
    app.clock.advance(policy.keep_retired_for - 1);
    app.app.sync_with_cluster().unwrap();
    let still = app.jwks().await;
    assert!(
        kids(&still).contains(&old_kid),
        "removed while a token it signed may be cached"
    );
    assert!(policy.keep_retired_for > ttl + app.settings.jwks_max_age as i64 - 1);
    app.clock.advance(1);
    app.app.sync_with_cluster().unwrap();
    let gone = app.jwks().await;
    assert!(
        !kids(&gone).contains(&old_kid),
        "retired key removed after its tokens expired"
    );
    verify_with_jwks(&new_token, &gone).unwrap();
}

async fn exactly_one_process_performs_a_due_rotation(db: Db) {
    let Some(first) = spawn_app(db).await else {
        return;
    };
    // A second process on the same database, sharing the KEK.
    let mut settings = first.settings.clone();
    settings.bind = "127.0.0.1:0".into();
    let second = portcullis::app::App::build(settings, first.clock.clone()).unwrap();
    let records_before = first.app.keyring().current().records.len();
    assert_eq!(second.keyring().current().records.len(), records_before);

    first
        .clock
        .advance(first.app.keyring().policy().rotation_period);
    let (a, b) = (first.app.clone(), second.clone());
    let one = std::thread::spawn(move || a.keyring().maintain(false).unwrap());
    let two = std::thread::spawn(move || b.keyring().maintain(false).unwrap());
    let (one, two) = (one.join().unwrap(), two.join().unwrap());
    assert_eq!(
        [one.applied, two.applied].iter().filter(|x| **x).count(),
        1,
        "exactly one process applies the rotation"
    );
    // Both serve the same keyring: two retired + two active + two new next keys.
    first.app.sync_with_cluster().unwrap();
    second.sync_with_cluster().unwrap();
    let a = first.app.keyring().current();
    let b = second.keyring().current();
    assert_eq!(a.generation, b.generation);
    assert_eq!(a.records.len(), records_before + 2);
    assert_eq!(a.records, b.records);
    for alg in portcullis::jose::Algorithm::ALL {
        assert_eq!(
            a.signing_key(alg).map(|k| k.kid.clone()),
            b.signing_key(alg).map(|k| k.kid.clone())
        );
    }
}
