//! Browser sessions: actix-session on Redis when configured, in-process otherwise; CSRF tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_session::storage::{
    LoadError, RedisSessionStore, SaveError, SessionKey, SessionStore, UpdateError,
};
use actix_session::Session;
use actix_web::cookie::time::Duration;

type State = HashMap<String, String>;

/// The session store chosen at start: Redis (shared by every instance) or this process.
#[derive(Clone)]
pub enum SessionBackend {
    Redis(RedisSessionStore),
    Memory(MemoryStore),
}

impl SessionBackend {
    pub async fn connect(redis_url: Option<&str>) -> Result<SessionBackend, String> {
        match redis_url {
            Some(url) => {
                let connect = RedisSessionStore::builder(url)
                    .cache_keygen(|key| format!("portcullis:session:{key}"))
                    .build();
                // An unreachable Redis must fail the start with a message, not hang it.
                tokio::time::timeout(std::time::Duration::from_secs(10), connect)
                    .await
                    .map_err(|_| {
                        "setting `redis_url`: no answer from Redis within 10 s".to_string()
                    })?
                    .map(SessionBackend::Redis)
                    .map_err(|e| format!("setting `redis_url`: cannot connect: {e}"))
            }
            None => Ok(SessionBackend::Memory(MemoryStore::default())),
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
