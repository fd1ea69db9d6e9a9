//! Browser sessions: in Redis when configured (shared by every instance), in-process otherwise;
//! CSRF tokens.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_session::Session;
use actix_web::cookie::time::Duration;

use crate::redis_link::RedisLink;

pub mod index;
pub mod known_device;

type State = HashMap<String, String>;

/// The session store chosen at start: Redis (shared by every instance) or this process.
#[derive(Clone)]
pub struct SessionBackend {
    store: Store,
    /// How long a session lives in the store while nobody signed in with it: a flood of
    /// anonymous authorization requests ages out in minutes, not `session_ttl`.
    anonymous_ttl: Duration,
}

#[derive(Clone)]
enum Store {
    Redis(RedisSessions),
    Memory(MemoryStore),
}

/// The session key that marks a signed-in session.
pub const SIGNED_IN: &str = "signed_in";
/// A page of ours to return to after signing in (the device page), when no authorization
/// request waits.
pub const RETURN_TO: &str = "return_to";

impl SessionBackend {
    /// In Redis when a link is given, else in this process, holding at most `memory_max`
    /// sessions (the oldest go first).
    pub fn new(
        redis: Option<RedisLink>,
        anonymous_ttl: std::time::Duration,
        memory_max: usize,
    ) -> SessionBackend {
        let store = match redis {
            Some(link) => Store::Redis(RedisSessions { link }),
            None => Store::Memory(MemoryStore::with_capacity(memory_max)),
        };
        SessionBackend {
            store,
            anonymous_ttl: Duration::seconds(i64::try_from(anonymous_ttl.as_secs()).unwrap_or(600)),
        }
    }

    fn ttl_for(&self, state: &State, ttl: &Duration) -> Duration {
        if state.contains_key(SIGNED_IN) {
            *ttl
        } else {
            (*ttl).min(self.anonymous_ttl)
        }
    }

    /// Sessions held in this process (0 with Redis).
    pub fn len_in_memory(&self) -> usize {
        match &self.store {
            Store::Memory(s) => s.len(),
            Store::Redis(_) => 0,
        }
    }
}

impl SessionStore for SessionBackend {
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        match &self.store {
            Store::Redis(s) => s.load(key).await,
            Store::Memory(s) => Ok(s.load(key)),
        }
    }

    async fn save(&self, state: State, ttl: &Duration) -> Result<SessionKey, SaveError> {
        let ttl = self.ttl_for(&state, ttl);
        match &self.store {
            Store::Redis(s) => s.save(state, &ttl).await,
            Store::Memory(s) => s.save(state, &ttl).map_err(SaveError::Other),
        }
    }

    async fn update(
        &self,
        key: SessionKey,
        state: State,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        let ttl = self.ttl_for(&state, ttl);
        match &self.store {
            Store::Redis(s) => s.update(key, state, &ttl).await,
            Store::Memory(s) => s.update(key, state, &ttl).map_err(UpdateError::Other),
        }
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> Result<(), anyhow::Error> {
        match &self.store {
            Store::Redis(s) => s.update_ttl(key, ttl).await,
            Store::Memory(s) => {
                s.touch(key, ttl);
                Ok(())
            }
        }
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        match &self.store {
            Store::Redis(s) => s.delete(key).await,
            Store::Memory(s) => {
                s.remove(key);
                Ok(())
            }
        }
    }
}

/// Sessions in Redis, as JSON under `portcullis:session:<key>`, expiring by themselves. Every
/// call has the link's deadline: with Redis away the pages answer 503 at once instead of
/// waiting (see `routes::unavailable_page`).
#[derive(Clone)]
pub struct RedisSessions {
    link: RedisLink,
}

fn redis_key(key: &str) -> String {
    format!("portcullis:session:{key}")
}

fn ttl_seconds(ttl: &Duration) -> u64 {
    u64::try_from(ttl.whole_seconds()).unwrap_or(1).max(1)
}

impl RedisSessions {
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        let name = redis_key(key.as_ref());
        let text: Option<String> = self
            .link
            .run(|mut c| async move { redis::cmd("GET").arg(name).query_async(&mut c).await })
            .await
            .map_err(|e| LoadError::Other(e.into()))?;
        match text {
            // A state that does not parse is treated as no session (a fresh one is made).
            Some(text) => Ok(serde_json::from_str(&text).ok()),
            None => Ok(None),
        }
    }

    /// `SET … NX`: a new key never overwrites another session.
    async fn save(&self, state: State, ttl: &Duration) -> Result<SessionKey, SaveError> {
        let body = serde_json::to_string(&state).map_err(|e| SaveError::Serialization(e.into()))?;
        let key = crate::secrets::generate_token()
            .map_err(|e| SaveError::Other(anyhow::Error::msg(e)))?;
        let name = redis_key(&key);
        let seconds = ttl_seconds(ttl);
        let stored: Option<String> = self
            .link
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(name)
                    .arg(body)
                    .arg("NX")
                    .arg("EX")
                    .arg(seconds)
                    .query_async(&mut c)
                    .await
            })
            .await
            .map_err(|e| SaveError::Other(e.into()))?;
        if stored.is_none() {
            return Err(SaveError::Other(anyhow::Error::msg(
                "session key collision",
            )));
        }
        SessionKey::try_from(key).map_err(|e| SaveError::Other(e.into()))
    }

    /// `SET … XX`: an update of a session that expired meanwhile makes a new one.
    async fn update(
        &self,
        key: SessionKey,
        state: State,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        let body =
            serde_json::to_string(&state).map_err(|e| UpdateError::Serialization(e.into()))?;
        let name = redis_key(key.as_ref());
        let seconds = ttl_seconds(ttl);
        let updated: Option<String> = self
            .link
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(name)
                    .arg(body)
                    .arg("XX")
                    .arg("EX")
                    .arg(seconds)
                    .query_async(&mut c)
                    .await
            })
            .await
            .map_err(|e| UpdateError::Other(e.into()))?;
        match updated {
            Some(_) => Ok(key),
            None => self.save(state, ttl).await.map_err(|e| match e {
                SaveError::Serialization(e) => UpdateError::Serialization(e),
                SaveError::Other(e) => UpdateError::Other(e),
            }),
        }
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> Result<(), anyhow::Error> {
        let name = redis_key(key.as_ref());
        let seconds = ttl_seconds(ttl);
        self.link
            .run(|mut c| async move {
                redis::cmd("EXPIRE")
                    .arg(name)
                    .arg(seconds)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
            .map_err(anyhow::Error::from)
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        let name = redis_key(key.as_ref());
        self.link
            .run(|mut c| async move { redis::cmd("DEL").arg(name).query_async::<()>(&mut c).await })
            .await
            .map_err(anyhow::Error::from)
    }
}

/// Sessions in this process's memory (the zero-configuration default; not shared), at most
/// `capacity` of them: past it, the oldest are forgotten first.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Sessions>>,
}

#[derive(Default)]
struct Sessions {
    by_key: HashMap<String, (State, Instant)>,
    /// Keys in the order they were created (some may be gone already).
    created: VecDeque<String>,
    capacity: usize,
}

fn expiry(ttl: &Duration) -> Instant {
    let secs = u64::try_from(ttl.whole_seconds()).unwrap_or(0);
    Instant::now() + std::time::Duration::from_secs(secs)
}

impl Sessions {
    /// Makes room for one more: expired sessions go, then the oldest while at capacity.
    fn make_room(&mut self) {
        let now = Instant::now();
        if self.by_key.len() >= self.capacity {
            self.by_key.retain(|_, (_, until)| *until > now);
            let by_key = &self.by_key;
            self.created.retain(|k| by_key.contains_key(k));
        }
        while self.by_key.len() >= self.capacity.max(1) {
            match self.created.pop_front() {
                Some(oldest) => {
                    self.by_key.remove(&oldest);
                }
                None => break,
            }
        }
    }
}

impl MemoryStore {
    pub fn with_capacity(capacity: usize) -> MemoryStore {
        MemoryStore {
            inner: Arc::new(Mutex::new(Sessions {
                capacity: capacity.max(1),
                ..Sessions::default()
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn load(&self, key: &SessionKey) -> Option<State> {
        self.lock()
            .by_key
            .get(key.as_ref())
            .filter(|(_, until)| *until > Instant::now())
            .map(|(state, _)| state.clone())
    }

    fn save(&self, state: State, ttl: &Duration) -> Result<SessionKey, anyhow::Error> {
        let key = crate::secrets::generate_token().map_err(anyhow::Error::msg)?;
        let key = SessionKey::try_from(key).map_err(anyhow::Error::from)?;
        let mut sessions = self.lock();
        sessions.make_room();
        sessions
            .by_key
            .insert(key.as_ref().to_string(), (state, expiry(ttl)));
        sessions.created.push_back(key.as_ref().to_string());
        Ok(key)
    }

    fn update(
        &self,
        key: SessionKey,
        state: State,
        ttl: &Duration,
    ) -> Result<SessionKey, anyhow::Error> {
        let mut sessions = self.lock();
        if let Some(entry) = sessions.by_key.get_mut(key.as_ref()) {
            *entry = (state, expiry(ttl));
            Ok(key)
        } else {
            drop(sessions);
            self.save(state, ttl)
        }
    }

    fn touch(&self, key: &SessionKey, ttl: &Duration) {
        if let Some(entry) = self.lock().by_key.get_mut(key.as_ref()) {
            entry.1 = expiry(ttl);
        }
    }

    fn remove(&self, key: &SessionKey) {
        self.lock().by_key.remove(key.as_ref());
    }
}

const CSRF_KEY: &str = "csrf";

/// The session's CSRF token, created on first use.
pub fn csrf_token(session: &Session) -> Result<String, String> {
    if let Ok(Some(token)) = session.get::<String>(CSRF_KEY) {
        return Ok(token);
    }
    let token = crate::secrets::generate_token()?;
    session
        .insert(CSRF_KEY, &token)
        .map_err(|e| e.to_string())?;
    Ok(token)
}

/// Constant-time check of a submitted CSRF token against the session's.
pub fn csrf_matches(session: &Session, submitted: &str) -> bool {
    match session.get::<String>(CSRF_KEY) {
        Ok(Some(expected)) => bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            submitted.as_bytes(),
        )),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(n: usize) -> State {
        HashMap::from([("n".to_string(), n.to_string())])
    }

    #[test]
    fn the_memory_store_forgets_the_oldest_past_its_capacity() {
        let store = MemoryStore::with_capacity(3);
        let ttl = Duration::seconds(60);
        let keys: Vec<SessionKey> = (0..5)
            .map(|n| store.save(state(n), &ttl).unwrap())
            .collect();
        assert_eq!(store.len(), 3);
        assert!(store.load(&keys[0]).is_none() && store.load(&keys[1]).is_none());
        for (n, key) in keys.iter().enumerate().skip(2) {
            assert_eq!(store.load(key), Some(state(n)));
        }
    }

    #[test]
    fn anonymous_sessions_get_the_short_lifetime() {
        let backend = SessionBackend::new(None, std::time::Duration::from_secs(600), 10);
        let long = Duration::hours(8);
        assert_eq!(
            backend.ttl_for(&State::new(), &long),
            Duration::seconds(600)
        );
        let signed_in = HashMap::from([(SIGNED_IN.to_string(), "{}".to_string())]);
        assert_eq!(backend.ttl_for(&signed_in, &long), long);
    }
}
