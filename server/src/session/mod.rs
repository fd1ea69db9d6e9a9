//! Browser sessions: in Redis when configured (shared by every instance), in-process otherwise;
//! CSRF tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_session::Session;
use actix_web::cookie::time::Duration;

use crate::redis_link::RedisLink;

pub mod known_device;

type State = HashMap<String, String>;

/// The session store chosen at start: Redis (shared by every instance) or this process.
#[derive(Clone)]
pub enum SessionBackend {
    Redis(RedisSessions),
    Memory(MemoryStore),
}

impl SessionBackend {
    pub fn new(redis: Option<RedisLink>) -> SessionBackend {
        match redis {
            Some(link) => SessionBackend::Redis(RedisSessions { link }),
            None => SessionBackend::Memory(MemoryStore::default()),
        }
    }
}

impl SessionStore for SessionBackend {
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        match self {
            SessionBackend::Redis(s) => s.load(key).await,
            SessionBackend::Memory(s) => Ok(s.load(key)),
        }
    }

    async fn save(&self, state: State, ttl: &Duration) -> Result<SessionKey, SaveError> {
        match self {
            SessionBackend::Redis(s) => s.save(state, ttl).await,
            SessionBackend::Memory(s) => s.save(state, ttl).map_err(SaveError::Other),
        }
    }

    async fn update(
        &self,
        key: SessionKey,
        state: State,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        match self {
            SessionBackend::Redis(s) => s.update(key, state, ttl).await,
            SessionBackend::Memory(s) => s.update(key, state, ttl).map_err(UpdateError::Other),
        }
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> Result<(), anyhow::Error> {
        match self {
            SessionBackend::Redis(s) => s.update_ttl(key, ttl).await,
            SessionBackend::Memory(s) => {
                s.touch(key, ttl);
                Ok(())
            }
        }
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        match self {
            SessionBackend::Redis(s) => s.delete(key).await,
            SessionBackend::Memory(s) => {
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

/// Sessions in this process's memory (the zero-configuration default; not shared).
#[derive(Clone, Default)]
pub struct MemoryStore {
    sessions: Arc<Mutex<HashMap<String, (State, Instant)>>>,
}

fn expiry(ttl: &Duration) -> Instant {
    let secs = u64::try_from(ttl.whole_seconds()).unwrap_or(0);
    Instant::now() + std::time::Duration::from_secs(secs)
}

impl MemoryStore {
    fn load(&self, key: &SessionKey) -> Option<State> {
        let sessions = self.sessions.lock().ok()?;
        sessions
            .get(key.as_ref())
            .filter(|(_, until)| *until > Instant::now())
            .map(|(state, _)| state.clone())
    }

    fn save(&self, state: State, ttl: &Duration) -> Result<SessionKey, anyhow::Error> {
        let key = crate::secrets::generate_token().map_err(anyhow::Error::msg)?;
        let key = SessionKey::try_from(key).map_err(anyhow::Error::from)?;
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| anyhow::Error::msg("session store poisoned"))?;
        // Forget expired sessions as new ones arrive, so memory stays bounded by live ones.
        let now = Instant::now();
        sessions.retain(|_, (_, until)| *until > now);
        sessions.insert(key.as_ref().to_string(), (state, expiry(ttl)));
        Ok(key)
    }

    fn update(
        &self,
        key: SessionKey,
        state: State,
        ttl: &Duration,
    ) -> Result<SessionKey, anyhow::Error> {
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| anyhow::Error::msg("session store poisoned"))?;
        if sessions.contains_key(key.as_ref()) {
            sessions.insert(key.as_ref().to_string(), (state, expiry(ttl)));
            Ok(key)
        } else {
            drop(sessions);
            self.save(state, ttl)
        }
    }

    fn touch(&self, key: &SessionKey, ttl: &Duration) {
        if let Ok(mut sessions) = self.sessions.lock() {
            if let Some(entry) = sessions.get_mut(key.as_ref()) {
                entry.1 = expiry(ttl);
            }
        }
    }

    fn remove(&self, key: &SessionKey) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(key.as_ref());
        }
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
