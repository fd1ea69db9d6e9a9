//! The keyring: which keys sign, which are published, and when they rotate.
//!
//! Lifecycle per algorithm: **next** (published, not signing) → **active** (signing) →
//! **retired** (published until every token it signed has expired, plus the JWKS cache
//! lifetime) → deleted. A key is published for at least the JWKS cache lifetime (plus one poll
//! interval, so every process serves it) before it signs, so verifiers that cache the JWKS
//! always know a kid before they meet it.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::jwt::SigningKey;
use super::kek::KeyEncryptionKey;
use super::keys::{self, Signer, Verifier};
use super::{b64, Algorithm};
use crate::clock::SharedClock;
use crate::store::signing_keys::{KeyTransition, KeyringChange, StoredKey};
use crate::store::{Store, StoreError};

pub const NEXT: &str = "next";
pub const ACTIVE: &str = "active";
pub const RETIRED: &str = "retired";

/// Timing rules, in seconds, derived from the settings.
#[derive(Debug, Clone, Copy)]
pub struct RotationPolicy {
    /// How long a key signs before the next one takes over.
    pub rotation_period: i64,
    /// How long a new key is published before it may sign.
    pub publish_before_use: i64,
    /// How long a retired key stays published.
    pub keep_retired_for: i64,
}

impl RotationPolicy {
    pub fn from_settings(settings: &crate::config::Settings) -> RotationPolicy {
        let secs = |v: u64| i64::try_from(v).unwrap_or(i64::MAX / 4);
        // +1: the clock reads whole seconds, so a bound may be met up to a second early.
        let cache = secs(settings.jwks_max_age) + secs(settings.keyring_poll_interval) + 1;
        RotationPolicy {
            rotation_period: secs(settings.key_rotation_period),
            publish_before_use: cache,
            // A lagging process may sign with the old key for one more poll interval.
            keep_retired_for: secs(settings.max_token_ttl()) + cache,
        }
    }
}

/// One immutable view of the keys; swapped whole when anything changes.
pub struct Keyring {
    pub generation: i64,
    pub records: Vec<StoredKey>,
    active: HashMap<Algorithm, Arc<SigningKey>>,
    verifiers: HashMap<String, Verifier>,
    jwks: Bytes,
    etag: String,
}

impl Keyring {
    fn build(
        generation: i64,
        records: Vec<StoredKey>,
        kek: &KeyEncryptionKey,
    ) -> Result<Keyring, String> {
        let mut active = HashMap::new();
        let mut verifiers = HashMap::new();
        let mut published = Vec::new();
        for record in &records {
            let alg = Algorithm::parse(&record.alg)
                .ok_or_else(|| format!("key {}: unknown alg {}", record.kid, record.alg))?;
            let jwk: Map<String, Value> = serde_json::from_str(&record.public_jwk)
                .map_err(|e| format!("key {}: public JWK: {e}", record.kid))?;
            verifiers.insert(record.kid.clone(), Verifier::from_jwk(&jwk)?);
            published.push(Value::Object(jwk));
            if record.state == ACTIVE {
                let der = kek
                    .open(&record.kid, &record.private_key_encrypted)
                    .map_err(|e| format!("signing key {}: {e}", record.kid))?;
                let signer = Signer::from_der(alg, &der)?;
                active.insert(
                    alg,
                    Arc::new(SigningKey::new(record.kid.clone(), alg, signer)),
                );
            }
        }
        let jwks = serde_json::to_vec(&serde_json::json!({ "keys": published }))
            .map_err(|e| e.to_string())?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &jwks);
        let etag = format!("\"{}\"", b64(digest.as_ref().get(..16).unwrap_or_default()));
        Ok(Keyring {
            generation,
            records,
            active,
            verifiers,
            jwks: Bytes::from(jwks),
            etag,
        })
    }

    /// The key that signs with `alg` now.
    pub fn signing_key(&self, alg: Algorithm) -> Option<&Arc<SigningKey>> {
        self.active.get(&alg)
    }

    pub fn verifier(&self, kid: &str) -> Option<&Verifier> {
        self.verifiers.get(kid)
    }

    /// The pre-serialised JWKS document (RFC 7517 §5): public members only.
    pub fn jwks(&self) -> &Bytes {
        &self.jwks
    }

    pub fn etag(&self) -> &str {
        &self.etag
    }
}

/// A key to create as part of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub alg: Algorithm,
    pub state: &'static str,
}

/// What maintenance would do now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub transitions: Vec<KeyTransition>,
    pub delete: Vec<String>,
    pub create: Vec<NewKey>,
    /// Rotations that are due or asked for but must wait: the next key is too new.
    pub waiting: Vec<String>,
    pub rotated: Vec<Algorithm>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.transitions.is_empty() && self.delete.is_empty() && self.create.is_empty()
    }
}

/// Decides the keyring's next state (pure: no I/O, time passed in).
pub fn plan(keys: &[StoredKey], now: i64, policy: &RotationPolicy, force: bool) -> Plan {
    let mut plan = Plan::default();
    for alg in Algorithm::ALL {
        let of_alg: Vec<&StoredKey> = keys.iter().filter(|k| k.alg == alg.as_str()).collect();
        for key in &of_alg {
            if key.state == RETIRED && key.remove_after.is_some_and(|t| t <= now) {
                plan.delete.push(key.kid.clone());
            }
        }
        let mut active: Vec<&StoredKey> = of_alg
            .iter()
            .copied()
            .filter(|k| k.state == ACTIVE)
            .collect();
        active.sort_by_key(|k| std::cmp::Reverse(k.activated_at.unwrap_or(k.created_at)));
        let next = of_alg
            .iter()
            .copied()
            .filter(|k| k.state == NEXT)
            .max_by_key(|k| k.created_at);
        let retire = |key: &StoredKey| KeyTransition {
            kid: key.kid.clone(),
            state: RETIRED.into(),
            activated_at: key.activated_at,
            retired_at: Some(now),
            remove_after: Some(now + policy.keep_retired_for),
        };
        let promote = |key: &StoredKey| KeyTransition {
            kid: key.kid.clone(),
            state: ACTIVE.into(),
            activated_at: Some(now),
            retired_at: None,
            remove_after: None,
        };
        // More than one active key (never written by us): keep the newest.
        for extra in active.iter().skip(1) {
            plan.transitions.push(retire(extra));
        }
        match (active.first(), next) {
            (None, Some(next)) => {
                // Nothing signs: the next key must, however new.
                plan.transitions.push(promote(next));
                plan.create.push(NewKey { alg, state: NEXT });
            }
            (None, None) => {
                // First start: no token exists yet, so a fresh key may sign at once.
                plan.create.push(NewKey { alg, state: ACTIVE });
                plan.create.push(NewKey { alg, state: NEXT });
            }
            (Some(current), next) => {
                let due = current
                    .activated_at
                    .is_some_and(|t| now >= t.saturating_add(policy.rotation_period));
                match next {
                    None => plan.create.push(NewKey { alg, state: NEXT }),
                    Some(next) if due || force => {
                        let eligible_at = next.created_at + policy.publish_before_use;
                        if now >= eligible_at {
                            plan.transitions.push(retire(current));
                            plan.transitions.push(promote(next));
                            plan.create.push(NewKey { alg, state: NEXT });
                            plan.rotated.push(alg);
                        } else {
                            plan.waiting.push(format!(
                                "{}: next key {} has been published for {}s and may sign from {} (after {}s)",
                                alg.as_str(),
                                next.kid,
                                now - next.created_at,
                                format_time(eligible_at),
                                policy.publish_before_use
                            ));
                        }
                    }
                    Some(_) => {}
                }
            }
        }
    }
    plan
}

pub fn format_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| unix.to_string())
}

#[derive(Debug)]
pub enum KeyringError {
    Store(StoreError),
    Keys(String),
}

impl std::fmt::Display for KeyringError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyringError::Store(e) => e.fmt(f),
            KeyringError::Keys(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for KeyringError {}

impl From<StoreError> for KeyringError {
    fn from(e: StoreError) -> Self {
        KeyringError::Store(e)
    }
}

/// What one maintenance pass did.
#[derive(Debug, Default)]
pub struct Maintenance {
    /// Algorithms whose active key changed in this pass.
    pub rotated: Vec<Algorithm>,
    pub waiting: Vec<String>,
    /// False when another process made the change first (we then load theirs).
    pub applied: bool,
}

/// Holds the current [`Keyring`] and keeps it in step with the database.
pub struct KeyringManager {
    store: Store,
    kek: Arc<KeyEncryptionKey>,
    clock: SharedClock,
    policy: RotationPolicy,
    current: ArcSwap<Keyring>,
}

impl KeyringManager {
    /// Loads the keyring, creating the first keys when there are none.
    pub fn open(
        store: Store,
        kek: Arc<KeyEncryptionKey>,
        clock: SharedClock,
        policy: RotationPolicy,
    ) -> Result<KeyringManager, KeyringError> {
        let (generation, records) = store.load_keyring()?;
        let keyring = Keyring::build(generation, records, &kek).map_err(KeyringError::Keys)?;
        let manager = KeyringManager {
            store,
            kek,
            clock,
            policy,
            current: ArcSwap::from_pointee(keyring),
        };
        manager.maintain(false)?;
        Ok(manager)
    }

    /// The keyring now (lock-free).
    pub fn current(&self) -> arc_swap::Guard<Arc<Keyring>> {
        self.current.load()
    }

    pub fn policy(&self) -> RotationPolicy {
        self.policy
    }

    /// Reloads when another process changed the keyring; true when it did.
    pub fn refresh_if_changed(&self) -> Result<bool, KeyringError> {
        let generation = self
            .store
            .generation(crate::store::cluster_state::KEYRING)?;
        if generation == self.current().generation {
            return Ok(false);
        }
        self.reload()?;
        Ok(true)
    }

    fn reload(&self) -> Result<(), KeyringError> {
        let (generation, records) = self.store.load_keyring()?;
        let keyring = Keyring::build(generation, records, &self.kek).map_err(KeyringError::Keys)?;
        self.current.store(Arc::new(keyring));
        Ok(())
    }

    /// Performs whatever is due (or a rotation on demand with `force`). With several processes
    /// on one database exactly one applies a given change: the write is conditional on the
    /// keyring generation it was planned from.
    pub fn maintain(&self, force: bool) -> Result<Maintenance, KeyringError> {
        for _attempt in 0..3 {
            let snapshot = self.current.load_full();
            let now = self.clock.now();
            let planned = plan(&snapshot.records, now, &self.policy, force);
            if planned.is_empty() {
                return Ok(Maintenance {
                    waiting: planned.waiting,
                    ..Maintenance::default()
                });
            }
            let change = self.materialise(&planned, now)?;
            let applied = self
                .store
                .apply_keyring_change(snapshot.generation, &change)?;
            self.reload()?;
            if applied {
                for alg in &planned.rotated {
                    tracing::info!(alg = alg.as_str(), "signing key rotated");
                }
                return Ok(Maintenance {
                    rotated: planned.rotated,
                    waiting: planned.waiting,
                    applied: true,
                });
            }
            // Another process changed the keyring first: plan again from what it wrote.
            if !force {
                return Ok(Maintenance::default());
            }
        }
        Ok(Maintenance::default())
    }

    fn materialise(&self, plan: &Plan, now: i64) -> Result<KeyringChange, KeyringError> {
        let mut insert = Vec::new();
        for new in &plan.create {
            let key = keys::generate(new.alg).map_err(KeyringError::Keys)?;
            let sealed = self
                .kek
                .seal(&key.kid, &key.private_der)
                .map_err(KeyringError::Keys)?;
            insert.push(StoredKey {
                kid: key.kid,
                alg: new.alg.as_str().into(),
                state: new.state.into(),
                public_jwk: Value::Object(key.public_jwk).to_string(),
                private_key_encrypted: sealed,
                created_at: now,
                activated_at: (new.state == ACTIVE).then_some(now),
                retired_at: None,
                remove_after: None,
            });
        }
        Ok(KeyringChange {
            insert,
            transition: plan.transitions.clone(),
            delete: plan.delete.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RotationPolicy = RotationPolicy {
        rotation_period: 1000,
        publish_before_use: 100,
        keep_retired_for: 500,
    };

    fn key(kid: &str, state: &str, created: i64, activated: Option<i64>) -> StoredKey {
        StoredKey {
            kid: kid.into(),
            alg: "ES256".into(),
            state: state.into(),
            public_jwk: "{}".into(),
            private_key_encrypted: String::new(),
            created_at: created,
            activated_at: activated,
            retired_at: None,
            remove_after: None,
        }
    }

    fn es256(plan: &Plan) -> Vec<&KeyTransition> {
        plan.transitions
            .iter()
            .filter(|t| t.kid.starts_with('k'))
            .collect()
    }

    #[test]
    fn empty_keyring_gets_an_active_and_a_next_key_per_algorithm() {
        let plan = plan(&[], 0, &POLICY, false);
        assert_eq!(plan.create.len(), 4);
        assert!(plan.create.contains(&NewKey {
            alg: Algorithm::Rs256,
            state: ACTIVE
        }));
        assert!(plan.create.contains(&NewKey {
            alg: Algorithm::Es256,
            state: NEXT
        }));
    }

    #[test]
    fn rotation_waits_for_the_period_then_promotes_next() {
        let keys = [key("k1", ACTIVE, 0, Some(0)), key("k2", NEXT, 0, None)];
        let early = plan(&keys, 999, &POLICY, false);
        assert!(es256(&early).is_empty());
        let due = plan(&keys, 1000, &POLICY, false);
        let moves = es256(&due);
        assert_eq!(moves.len(), 2);
        assert_eq!(
            (moves[0].kid.as_str(), moves[0].state.as_str()),
            ("k1", RETIRED)
        );
        assert_eq!(moves[0].remove_after, Some(1500));
        assert_eq!(
            (moves[1].kid.as_str(), moves[1].state.as_str()),
            ("k2", ACTIVE)
        );
        assert!(due.create.contains(&NewKey {
            alg: Algorithm::Es256,
            state: NEXT
        }));
    }

    #[test]
    fn a_next_key_never_signs_before_it_was_published_long_enough() {
        let keys = [key("k1", ACTIVE, 0, Some(0)), key("k2", NEXT, 950, None)];
        let plan = plan(&keys, 1000, &POLICY, true);
        assert!(es256(&plan).is_empty());
        assert!(
            plan.waiting.iter().any(|w| w.contains("k2")),
            "{:?}",
            plan.waiting
        );
    }

    #[test]
    fn retired_keys_are_removed_only_after_remove_after() {
        let mut retired = key("k0", RETIRED, 0, Some(0));
        retired.remove_after = Some(1500);
        let keys = [
            retired,
            key("k1", ACTIVE, 0, Some(1000)),
            key("k2", NEXT, 1000, None),
        ];
        assert!(plan(&keys, 1499, &POLICY, false).delete.is_empty());
        assert_eq!(
            plan(&keys, 1500, &POLICY, false).delete,
            vec!["k0".to_string()]
        );
    }
}
