//! Storage conformance: the same assertions against SQLite and Postgres.

use portcullis::clients::{AuthMethod, Client, ClientKind, GrantType};
use portcullis::config::RegistrationPolicy;
use portcullis::store::cluster_state::{CLIENTS, KEYRING};
use portcullis::store::registration::InitialAccessToken;
use portcullis::store::signing_keys::{KeyTransition, KeyringChange, StoredKey};
use portcullis::store::{Store, StoreError};

use crate::helpers::{fresh_database, Db};
use crate::on_both_backends;

on_both_backends!(
    clients_round_trip_and_conflict,
    keyring_changes_apply_only_from_the_generation_they_were_planned_on,
    migrations_are_idempotent,
    dynamic_clients_and_initial_access_tokens,
    an_audit_batch_written_twice_is_stored_once,
);

fn sample_client(id: &str) -> Client {
    Client {
        id: id.into(),
        name: "Sample «unicode» client".into(),
        secret_hash: Some("hmac-sha256$abc".into()),
        auth_method: AuthMethod::ClientSecretPost,
        grant_types: vec![GrantType::ClientCredentials, GrantType::RefreshToken],
        scopes: vec!["a".into(), "b:c".into()],
        audiences: vec!["https://x.example".into()],
        redirect_uris: vec!["https://app.example/cb?x=1".into()],
        post_logout_redirect_uris: vec![],
        roles: vec!["admin".into()],
        jwks: None,
        id_token_signed_response_alg: None,
        introspection_audiences: vec![],
        require_pushed_authorization_requests: false,
        dpop_bound_access_tokens: false,
        created_at: 1_700_000_000,
        updated_at: 1_700_000_001,
        kind: ClientKind::Static,
        registered_with: None,
        last_used_at: None,
        registration_token_hash: None,
        registration_metadata: None,
    }
}

fn open(db: Db) -> Option<(Store, crate::helpers::TestDatabase)> {
    let database = fresh_database(db)?;
    let store = Store::open(&database.url, 2).unwrap();
    Some((store, database))
}

async fn clients_round_trip_and_conflict(db: Db) {
    let Some((store, _db)) = open(db) else { return };
    let generation = store.generation(CLIENTS).unwrap();
    let client = sample_client("one");
    store.insert_client(&client).unwrap();
    assert_eq!(
        store.generation(CLIENTS).unwrap(),
        generation + 1,
        "a change bumps the counter"
    );
    assert_eq!(store.find_client("one").unwrap(), Some(client.clone()));
    assert_eq!(
        store.find_client("ONE").unwrap(),
        None,
        "ids are case-sensitive"
    );
    assert!(matches!(
        store.insert_client(&client),
        Err(StoreError::Conflict(_))
    ));
    store.insert_client(&sample_client("two")).unwrap();
    let ids: Vec<String> = store
        .list_clients()
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, vec!["one", "two"]);
    assert!(store.delete_client("one", 0).unwrap());
    assert!(!store.delete_client("one", 0).unwrap());
    assert_eq!(store.find_client("one").unwrap(), None);
    assert_eq!(store.generation(CLIENTS).unwrap(), generation + 3);
}

fn key(kid: &str, state: &str) -> StoredKey {
    StoredKey {
        kid: kid.into(),
        alg: "ES256".into(),
        state: state.into(),
        public_jwk: "{}".into(),
        private_key_encrypted: "sealed".into(),
        created_at: 10,
        activated_at: None,
        retired_at: None,
        remove_after: None,
    }
}

async fn keyring_changes_apply_only_from_the_generation_they_were_planned_on(db: Db) {
    let Some((store, _db)) = open(db) else { return };
    let (generation, keys) = store.load_keyring().unwrap();
    assert!(keys.is_empty());
    let first = KeyringChange {
        insert: vec![key("k1", "active"), key("k2", "next")],
        ..KeyringChange::default()
    };
    assert!(store.apply_keyring_change(generation, &first).unwrap());
    // A second writer that planned from the same generation loses and writes nothing.
    let stale = KeyringChange {
        insert: vec![key("k3", "next")],
        ..KeyringChange::default()
    };
    assert!(!store.apply_keyring_change(generation, &stale).unwrap());
    let (now, keys) = store.load_keyring().unwrap();
    assert_eq!(now, generation + 1);
    assert_eq!(
        keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
        vec!["k1", "k2"]
    );
    assert_eq!(store.generation(KEYRING).unwrap(), now);

    let rotate = KeyringChange {
        transition: vec![KeyTransition {
            kid: "k1".into(),
            state: "retired".into(),
            activated_at: Some(10),
            retired_at: Some(20),
            remove_after: Some(30),
        }],
        delete: vec!["k2".into()],
        ..KeyringChange::default()
    };
    assert!(store.apply_keyring_change(now, &rotate).unwrap());
    let (_, keys) = store.load_keyring().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (
            keys[0].state.as_str(),
            keys[0].retired_at,
            keys[0].remove_after
        ),
        ("retired", Some(20), Some(30))
    );
}

async fn migrations_are_idempotent(db: Db) {
    let Some(database) = fresh_database(db) else {
        return;
    };
    let store = Store::open(&database.url, 1).unwrap();
    store.insert_client(&sample_client("kept")).unwrap();
    drop(store);
    // Opening again (as every start and `portcullis migrate` does) keeps the data.
    let again = Store::open(&database.url, 1).unwrap();
    assert!(again.find_client("kept").unwrap().is_some());
    again.ping().unwrap();
}

fn initial_token(
    id: &str,
    hash: &str,
    expires_at: Option<i64>,
    max_uses: Option<i64>,
) -> InitialAccessToken {
    InitialAccessToken {
        id: id.into(),
        token_hash: hash.into(),
        description: "for «tests»".into(),
        created_at: 100,
        expires_at,
        max_uses,
        uses: 0,
    }
}

/// RFC 7591 clients round-trip with their registration; an initial access token is spent in
/// the registration's transaction, never past its uses or its expiry; unused dynamic clients
/// are found by their last use (or, never used, their creation).
async fn dynamic_clients_and_initial_access_tokens(db: Db) {
    let Some((store, _db)) = open(db) else { return };
    let dynamic = |id: &str| Client {
        kind: ClientKind::Dynamic,
        registered_with: Some(RegistrationPolicy::Token),
        registration_token_hash: Some(format!("hash-of-{id}")),
        registration_metadata: Some(r#"{"contacts":["ops@example.test"]}"#.into()),
        created_at: 1_000,
        ..sample_client(id)
    };
    store
        .insert_initial_token(&initial_token("iat-a", "h-a", None, Some(2)))
        .unwrap();
    store
        .insert_initial_token(&initial_token("iat-b", "h-b", Some(500), None))
        .unwrap();
    assert!(store
        .insert_dynamic_client(&dynamic("d1"), Some("h-a"), 200)
        .unwrap());
    assert!(store
        .insert_dynamic_client(&dynamic("d2"), Some("h-a"), 200)
        .unwrap());
    assert!(
        !store
            .insert_dynamic_client(&dynamic("d3"), Some("h-a"), 200)
            .unwrap(),
        "used up"
    );
    assert!(store
        .insert_dynamic_client(&dynamic("d3"), Some("h-b"), 499)
        .unwrap());
    assert!(
        !store
            .insert_dynamic_client(&dynamic("d4"), Some("h-b"), 500)
            .unwrap(),
        "expired"
    );
    assert!(
        !store
            .insert_dynamic_client(&dynamic("d4"), Some("nope"), 0)
            .unwrap(),
        "unknown"
    );
    assert_eq!(store.find_client("d4").unwrap(), None, "nothing written");
    assert_eq!(store.find_client("d1").unwrap(), Some(dynamic("d1")));
    let tokens = store.list_initial_tokens().unwrap();
    assert_eq!(
        tokens
            .iter()
            .map(|t| (t.id.as_str(), t.uses))
            .collect::<Vec<_>>(),
        vec![("iat-a", 2), ("iat-b", 1)]
    );
    assert_eq!(
        store.find_initial_token("h-a").unwrap().unwrap().id,
        "iat-a"
    );
    // Unused since before 2_000: all three (never used; created at 1_000), until one is used.
    assert_eq!(
        store.unused_dynamic_clients(2_000).unwrap(),
        vec!["d1", "d2", "d3"]
    );
    store.touch_client("d2", 1_500).unwrap();
    assert_eq!(
        store.unused_dynamic_clients(1_400).unwrap(),
        vec!["d1", "d3"]
    );
    assert_eq!(
        store.unused_dynamic_clients(900).unwrap(),
        Vec::<String>::new()
    );
    store.insert_client(&sample_client("static")).unwrap();
    assert!(!store
        .unused_dynamic_clients(i64::MAX)
        .unwrap()
        .contains(&"static".to_string()));
    // RFC 7592 §2.2: an update replaces the metadata of a dynamic client only.
    let mut changed = dynamic("d1");
    changed.name = "Renamed".into();
    changed.registration_metadata = None;
    assert!(store.update_dynamic_client(&changed).unwrap());
    assert_eq!(store.find_client("d1").unwrap().unwrap().name, "Renamed");
    let mut not_dynamic = sample_client("static");
    not_dynamic.name = "Renamed".into();
    assert!(!store.update_dynamic_client(&not_dynamic).unwrap());
    // Expired tokens are purged; the others stay.
    assert_eq!(store.purge_initial_tokens(501).unwrap(), 1);
    assert!(store.delete_initial_token("iat-a").unwrap());
    assert!(!store.delete_initial_token("iat-a").unwrap());
    assert!(store.list_initial_tokens().unwrap().is_empty());
}

/// The audit writer retries a batch whose write failed; when the failure came after the
/// commit (the connection cut on its way back), the second write must add nothing.
async fn an_audit_batch_written_twice_is_stored_once(db: Db) {
    let Some(database) = fresh_database(db) else {
        return;
    };
    let store = Store::open(&database.url, 1).unwrap();
    let event = |id: Option<&str>| portcullis::store::audit::NewAuditEvent {
        at: 1_700_000_000,
        kind: "token_issued".into(),
        client_id: Some("svc".into()),
        subject: None,
        details: "{}".into(),
        event_id: id.map(str::to_string),
    };
    let batch = [event(Some("p.1")), event(Some("p.2"))];
    store.insert_audit_events(&batch).unwrap();
    store.insert_audit_events(&batch).unwrap();
    // A batch that repeats one event and brings a new one: only the new one is added.
    store
        .insert_audit_events(&[event(Some("p.2")), event(Some("p.3"))])
        .unwrap();
    let stored = store
        .query_audit_events(&portcullis::store::audit::AuditQuery {
            kind: Some("token_issued".into()),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(stored.len(), 3);
}
