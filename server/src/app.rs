//! The application's shared state, independent of the HTTP framework: the CLI and the server
//! both build it from [`Settings`].

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use crate::audit::Audit;
use crate::authorization::AuthorizationService;
use crate::client_address::TrustedProxies;
use crate::clients::ClientRegistry;
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::credential_limits::{CredentialLimits, Policy};
use crate::jose::kek::KeyEncryptionKey;
use crate::jose::keyring::{KeyringManager, RotationPolicy};
use crate::limits::Limiter;
use crate::redis_link::RedisLink;
use crate::secrets::SecretHasher;
use crate::session::index::SessionIndex;
use crate::session::known_device::KnownDevices;
use crate::store::cluster_state::{AUDIT_PURGE, AUTHORIZATION, CLIENTS, KEYRING};
use crate::store::Store;
use crate::tokens::deny_list::DenyList;
use crate::users::{PasswordPolicy, UserService};

/// Purpose string for the client-secret hashing key derived from the KEK.
const CLIENT_SECRET_PURPOSE: &str = "portcullis client secret hmac v1";
const KNOWN_DEVICE_PURPOSE: &str = "portcullis known device cookie v1";
const DPOP_NONCE_PURPOSE: &str = "portcullis dpop nonce v1";

/// How many password hashes may run at once by default: two per core, within a 256 MiB
/// budget of Argon2 memory.
pub fn default_password_hash_concurrency(memory_kib: u32) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let budget = 256 * 1024 / usize::try_from(memory_kib.max(1)).unwrap_or(usize::MAX);
    (cores * 2).min(budget).max(1)
}

#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    store: Store,
    clients: ClientRegistry,
    users: UserService,
    authorization: AuthorizationService,
    audit: Audit,
    keyring: KeyringManager,
    kek: Arc<KeyEncryptionKey>,
    clock: SharedClock,
    clients_generation: AtomicI64,
    authorization_generation: AtomicI64,
    /// Set at start when Redis is configured; the database otherwise.
    redis_deny_list: std::sync::OnceLock<DenyList>,
    /// Replaced by the Redis limiter at start when Redis is configured.
    limiter: std::sync::OnceLock<Limiter>,
    memory_limiter: Limiter,
    /// Set at start when Redis is configured.
    redis: std::sync::OnceLock<RedisLink>,
    credential_limits: std::sync::OnceLock<CredentialLimits>,
    memory_credential_limits: CredentialLimits,
    sign_in_policy: Policy,
    client_authentication_policy: Policy,
    trusted_proxies: TrustedProxies,
    known_devices: KnownDevices,
    /// Keys the stateless DPoP nonces (RFC 9449 §8): every instance makes and accepts the same.
    dpop_nonce_key: ring::hmac::Key,
    /// Argon2 costs `password_hash_memory_kib` per hash: at most this many run at once.
    password_permits: Arc<tokio::sync::Semaphore>,
    /// Set when a shutdown began: readiness fails so load balancers stop sending.
    shutting_down: AtomicBool,
    /// Each person's signed-in sessions when Redis is not configured.
    memory_session_index: SessionIndex,
}

/// The audience of access tokens for the admin API.
pub fn admin_audience(settings: &Settings) -> String {
    format!("{}/admin/v1", settings.issuer)
}

/// Deletes the audit events older than `audit_retention`; how many went.
pub fn purge_audit(store: &Store, settings: &Settings, now: i64) -> Result<usize, String> {
    let retention = i64::try_from(settings.audit_retention).unwrap_or(i64::MAX / 4);
    store
        .purge_audit_events(now.saturating_sub(retention))
        .map_err(|e| e.to_string())
}

/// The pieces every command needs: the store and the KEK.
pub struct Foundation {
    pub store: Store,
    pub kek: Arc<KeyEncryptionKey>,
}

impl Foundation {
    pub fn open(settings: &Settings) -> Result<Foundation, String> {
        let store = Store::open_with_deadline(
            &settings.database_url,
            settings.database_pool_size,
            settings.database_timeout(),
        )?;
        let kek = Arc::new(KeyEncryptionKey::load_or_create(settings)?);
        // A KEK that cannot open the stored keys would also hash client secrets differently
        // from the servers: refuse early rather than provision clients that never work.
        let (_, keys) = store.load_keyring().map_err(|e| e.to_string())?;
        if let Some(key) = keys.first() {
            kek.open(&key.kid, &key.private_key_encrypted)
                .map_err(|e| {
                    format!("setting `key_encryption_key`: {e}; use the key the servers use")
                })?;
        }
        Ok(Foundation { store, kek })
    }

    pub fn client_registry(&self, clock: SharedClock) -> ClientRegistry {
        ClientRegistry::new(
            self.store.clone(),
            SecretHasher::new(&self.kek.derive(CLIENT_SECRET_PURPOSE)),
            clock,
        )
    }

    pub fn authorization(
        &self,
        settings: &Settings,
        clock: SharedClock,
    ) -> Result<AuthorizationService, String> {
        AuthorizationService::open(self.store.clone(), clock, admin_audience(settings))
            .map_err(|e| e.to_string())
    }

    pub fn users(&self, settings: &Settings, clock: SharedClock) -> Result<UserService, String> {
        let passwords = PasswordPolicy::new(
            settings.password_hash_memory_kib,
            settings.password_hash_iterations,
            settings.password_hash_parallelism,
        )?;
        Ok(UserService::new(self.store.clone(), clock, passwords))
    }

    pub fn keyring(
        &self,
        settings: &Settings,
        clock: SharedClock,
    ) -> Result<KeyringManager, String> {
        KeyringManager::open(
            self.store.clone(),
            self.kek.clone(),
            clock,
            RotationPolicy::from_settings(settings),
        )
        .map_err(|e| format!("signing keys: {e}"))
    }
}

impl App {
    /// Opens the database (applying migrations), loads or creates the keys.
    pub fn build(settings: Settings, clock: SharedClock) -> Result<App, String> {
        let foundation = Foundation::open(&settings)?;
        let keyring = foundation.keyring(&settings, clock.clone())?;
        let clients = foundation.client_registry(clock.clone());
        if settings.client_id_metadata_documents {
            clients.use_metadata_documents(
                crate::clients::metadata_document::MetadataDocuments::new(
                    &settings,
                    clock.clone(),
                )?,
            );
        }
        let users = foundation.users(&settings, clock.clone())?;
        let authorization = foundation.authorization(&settings, clock.clone())?;
        let audit = Audit::start(foundation.store.clone(), clock.clone());
        let authorization_generation = foundation
            .store
            .generation(AUTHORIZATION)
            .map_err(|e| e.to_string())?;
        let clients_generation = foundation
            .store
            .generation(CLIENTS)
            .map_err(|e| e.to_string())?;
        let trusted_proxies =
            TrustedProxies::new(settings.trusted_proxy_networks().map_err(|e| e.0)?);
        let known_devices = KnownDevices::new(
            &foundation.kek.derive(KNOWN_DEVICE_PURPOSE),
            i64::try_from(settings.known_device_ttl).unwrap_or(i64::MAX / 4),
        );
        let dpop_nonce_key = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            &foundation.kek.derive(DPOP_NONCE_PURPOSE),
        );
        let permits = match settings.password_hash_concurrency {
            0 => default_password_hash_concurrency(settings.password_hash_memory_kib),
            n => n,
        };
        Ok(App {
            inner: Arc::new(Inner {
                store: foundation.store,
                clients,
                users,
                authorization,
                audit,
                keyring,
                kek: foundation.kek,
                clock,
                clients_generation: AtomicI64::new(clients_generation),
                authorization_generation: AtomicI64::new(authorization_generation),
                redis_deny_list: std::sync::OnceLock::new(),
                limiter: std::sync::OnceLock::new(),
                memory_limiter: Limiter::Memory(std::sync::Arc::default()),
                redis: std::sync::OnceLock::new(),
                credential_limits: std::sync::OnceLock::new(),
                memory_credential_limits: CredentialLimits::default(),
                sign_in_policy: Policy::sign_in(&settings),
                client_authentication_policy: Policy::client_authentication(&settings),
                trusted_proxies,
                known_devices,
                dpop_nonce_key,
                password_permits: Arc::new(tokio::sync::Semaphore::new(permits)),
                shutting_down: AtomicBool::new(false),
                memory_session_index: SessionIndex::memory(),
                settings,
            }),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn clients(&self) -> &ClientRegistry {
        &self.inner.clients
    }

    pub fn authorization(&self) -> &AuthorizationService {
        &self.inner.authorization
    }

    pub fn audit(&self) -> &Audit {
        &self.inner.audit
    }

    pub fn users(&self) -> &UserService {
        &self.inner.users
    }

    /// A 64-byte key for signing and encrypting the session cookie, derived from the KEK so
    /// every instance sharing the KEK accepts the same cookies.
    pub fn cookie_key(&self) -> [u8; 64] {
        let mut key = [0u8; 64];
        let (a, b) = key.split_at_mut(32);
        a.copy_from_slice(
            &self
                .inner
                .kek
                .derive("portcullis session cookie signing v1"),
        );
        b.copy_from_slice(
            &self
                .inner
                .kek
                .derive("portcullis session cookie encryption v1"),
        );
        key
    }

    pub fn keyring(&self) -> &KeyringManager {
        &self.inner.keyring
    }

    /// Where revoked access tokens are recorded.
    pub fn deny_list(&self) -> DenyList {
        self.inner
            .redis_deny_list
            .get()
            .cloned()
            .unwrap_or_else(|| DenyList::Database(self.inner.store.clone()))
    }

    pub fn limiter(&self) -> &Limiter {
        self.inner
            .limiter
            .get()
            .unwrap_or(&self.inner.memory_limiter)
    }

    /// Moves sessions' neighbours to Redis: the deny list, the limits and the sign-in counters.
    pub fn use_redis(&self, link: RedisLink) {
        let _ = self.inner.limiter.set(Limiter::Redis(link.clone()));
        let _ = self
            .inner
            .redis_deny_list
            .set(DenyList::Redis(link.clone()));
        let _ = self
            .inner
            .credential_limits
            .set(CredentialLimits::Redis(link.clone()));
        let _ = self.inner.redis.set(link);
    }

    pub fn redis(&self) -> Option<&RedisLink> {
        self.inner.redis.get()
    }

    /// Each person's signed-in browser sessions: in Redis beside the sessions when
    /// configured, else in this process.
    pub fn session_index(&self) -> SessionIndex {
        match self.redis() {
            Some(link) => SessionIndex::Redis(link.clone()),
            None => self.inner.memory_session_index.clone(),
        }
    }

    pub fn credential_limits(&self) -> &CredentialLimits {
        self.inner
            .credential_limits
            .get()
            .unwrap_or(&self.inner.memory_credential_limits)
    }

    pub fn sign_in_policy(&self) -> &Policy {
        &self.inner.sign_in_policy
    }

    pub fn client_authentication_policy(&self) -> &Policy {
        &self.inner.client_authentication_policy
    }

    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.inner.trusted_proxies
    }

    pub fn known_devices(&self) -> &KnownDevices {
        &self.inner.known_devices
    }

    pub fn dpop_nonce_key(&self) -> &ring::hmac::Key {
        &self.inner.dpop_nonce_key
    }

    /// Records a DPoP proof's `jti` (per key) until `expires_at`; false when it was seen
    /// before — a replay (RFC 9449 §11.1). In Redis when configured, else in the database:
    /// shared by every instance either way.
    pub async fn remember_dpop_proof(
        &self,
        jkt: &str,
        jti: &str,
        expires_at: i64,
    ) -> Result<bool, crate::store::StoreError> {
        let digest = ring::digest::digest(&ring::digest::SHA256, format!("{jkt}.{jti}").as_bytes());
        let key = crate::jose::b64(digest.as_ref());
        match self.redis() {
            Some(link) => {
                let ttl = u64::try_from(expires_at - self.now()).unwrap_or(1).max(1);
                let name = format!("portcullis:dpop:{key}");
                let stored: Option<String> = link
                    .run(|mut c| async move {
                        redis::cmd("SET")
                            .arg(name)
                            .arg(1)
                            .arg("NX")
                            .arg("EX")
                            .arg(ttl)
                            .query_async(&mut c)
                            .await
                    })
                    .await
                    .map_err(|e| crate::store::StoreError::Unavailable(e.to_string()))?;
                Ok(stored.is_some())
            }
            None => {
                self.inner
                    .store
                    .run(move |s| s.record_dpop_proof(&key, expires_at))
                    .await
            }
        }
    }

    pub fn password_permits(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.inner.password_permits
    }

    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    /// Revokes a grant: its refresh tokens, and its access tokens until they expire.
    pub async fn revoke_grant(&self, grant_id: &str) -> Result<(), crate::store::StoreError> {
        let now = self.now();
        let id = grant_id.to_string();
        let jtis = self
            .inner
            .store
            .run(move |s| s.revoke_grant(&id, now))
            .await?;
        let until = now + i64::try_from(self.inner.settings.max_access_token_ttl).unwrap_or(86_400);
        let deny = self.deny_list();
        for jti in jtis {
            deny.deny(&jti, until, now).await?;
        }
        Ok(())
    }

    /// Takes back what a person granted a client (the account page's "remove access"): every
    /// grant's refresh tokens and access tokens (`revoke_grant`), and the remembered consent,
    /// so the next authorization asks again. Grants are revoked before the consent goes (a
    /// failure leaves the app listed, to try again) and once more after it, for a code issued
    /// meanwhile. A delegation (`delegate:<agent>`) was part of the consent: tokens the agent
    /// exchanged from these grants die with them. True when there was anything to remove.
    pub async fn remove_access(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<bool, crate::store::StoreError> {
        let mut found = self.revoke_grants_of(user_id, client_id).await? > 0;
        let (user, client) = (user_id.to_string(), client_id.to_string());
        found |= self
            .inner
            .store
            .run(move |s| s.delete_consent(&user, &client))
            .await?;
        found |= self.revoke_grants_of(user_id, client_id).await? > 0;
        Ok(found)
    }

    async fn revoke_grants_of(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<usize, crate::store::StoreError> {
        let (user, client) = (user_id.to_string(), client_id.to_string());
        let grants = self
            .inner
            .store
            .run(move |s| s.active_grants(&user, &client))
            .await?;
        for grant in &grants {
            self.revoke_grant(grant).await?;
        }
        Ok(grants.len())
    }

    pub fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    /// One poll of the shared database: pick up changes other processes made (clients, keys)
    /// and perform any key rotation that is due. Blocking; run it off the request workers.
    pub fn sync_with_cluster(&self) -> Result<(), String> {
        let generations = self.inner.store.generations().map_err(|e| e.to_string())?;
        for (name, generation) in generations {
            if name == CLIENTS
                && self
                    .inner
                    .clients_generation
                    .swap(generation, Ordering::SeqCst)
                    != generation
            {
                self.inner.clients.invalidate();
            }
            if name == AUTHORIZATION {
                // Remember the generation only once its model is loaded (a failed reload is
                // retried at the next poll).
                if self.inner.authorization_generation.load(Ordering::SeqCst) != generation {
                    self.inner
                        .authorization
                        .reload()
                        .map_err(|e| e.to_string())?;
                    self.inner
                        .authorization_generation
                        .store(generation, Ordering::SeqCst);
                }
            }
            if name == KEYRING && generation != self.inner.keyring.current().generation {
                self.inner
                    .keyring
                    .refresh_if_changed()
                    .map_err(|e| e.to_string())?;
            }
        }
        let outcome = self
            .inner
            .keyring
            .maintain(false)
            .map_err(|e| e.to_string())?;
        for alg in outcome.rotated {
            self.inner.audit.record(
                "key_rotated",
                None,
                None,
                serde_json::json!({ "alg": alg.as_str(), "trigger": "schedule" }),
            );
        }
        self.inner
            .store
            .purge_expired(self.now())
            .map_err(|e| e.to_string())?;
        self.purge_registrations()?;
        self.purge_audit_if_due()?;
        Ok(())
    }

    /// Deletes the dynamic clients unused for `dynamic_client_expiry` (RFC 7591 clients
    /// nobody looks after) and the initial access tokens that expired.
    fn purge_registrations(&self) -> Result<(), String> {
        let now = self.now();
        let expiry =
            i64::try_from(self.inner.settings.dynamic_client_expiry).unwrap_or(i64::MAX / 4);
        let deleted = self
            .inner
            .clients
            .purge_unused(now.saturating_sub(expiry))
            .map_err(|e| e.to_string())?;
        for id in deleted {
            self.inner.audit.record(
                "client_deleted",
                Some(&id),
                None,
                serde_json::json!({ "by": "expiry", "unused_for": expiry }),
            );
        }
        self.inner
            .store
            .purge_initial_tokens(now)
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Deletes audit events older than `audit_retention`, at most hourly, and on one instance
    /// at a time (whichever takes the lease).
    fn purge_audit_if_due(&self) -> Result<(), String> {
        let now = self.now();
        let store = &self.inner.store;
        if store
            .take_lease(AUDIT_PURGE, now, 3600)
            .map_err(|e| e.to_string())?
        {
            let deleted = purge_audit(store, &self.inner.settings, now)?;
            if deleted > 0 {
                tracing::info!(deleted, "audit events past their retention deleted");
            }
        }
        Ok(())
    }
}
