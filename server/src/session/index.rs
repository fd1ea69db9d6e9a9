//! Each person's signed-in browser sessions, for the account page: which devices are signed in
//! (user agent, address, sign-in time), and signing any of them out.
//!
//! A sign-in gets a random session id (`sid`, kept in the session's `SignedIn`) and a record
//! here. A session counts as signed in only while its record exists (checked by
//! `endpoints::authorize::signed_in`), so deleting the record signs that browser out wherever
//! its cookie is. In Redis (`portcullis:user-sessions:<subject>`, a hash sid → record, shared
//! by every instance, every call within the link's deadline) when configured, else in this
//! process, beside the in-memory sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::redis_link::{RedisLink, RedisUnavailable};

/// At most this many sessions are remembered per person; past it the oldest are forgotten
/// (and so signed out).
pub const MAX_PER_USER: usize = 50;

/// The longest user agent kept.
const MAX_USER_AGENT: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub sid: String,
    pub user_agent: String,
    pub address: String,
    pub signed_in_at: i64,
    /// The absolute end of the sign-in (`session_max_lifetime` after it).
    pub expires_at: i64,
}

impl SessionRecord {
    pub fn new(
        sid: String,
        user_agent: &str,
        address: String,
        signed_in_at: i64,
        expires_at: i64,
    ) -> SessionRecord {
        let user_agent: String = user_agent
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_USER_AGENT)
            .collect();
        SessionRecord {
            sid,
            user_agent,
            address,
            signed_in_at,
            expires_at,
        }
    }
}

type Memory = Arc<Mutex<HashMap<String, Vec<SessionRecord>>>>;

#[derive(Clone)]
pub enum SessionIndex {
    Redis(RedisLink),
    Memory(Memory),
}

fn key(user_id: &str) -> String {
    format!("portcullis:user-sessions:{user_id}")
}

/// Newest first, the live ones only, at most `MAX_PER_USER`; and the sids to forget.
fn sorted_live(mut records: Vec<SessionRecord>, now: i64) -> (Vec<SessionRecord>, Vec<String>) {
    records.sort_by(|a, b| b.signed_in_at.cmp(&a.signed_in_at).then(a.sid.cmp(&b.sid)));
    let mut live = Vec::new();
    let mut gone = Vec::new();
    for record in records {
        if record.expires_at > now && live.len() < MAX_PER_USER {
            live.push(record);
        } else {
            gone.push(record.sid);
        }
    }
    (live, gone)
}

impl SessionIndex {
    pub fn memory() -> SessionIndex {
        SessionIndex::Memory(Memory::default())
    }

    fn lock(memory: &Memory) -> std::sync::MutexGuard<'_, HashMap<String, Vec<SessionRecord>>> {
        memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a new sign-in.
    pub async fn add(
        &self,
        user_id: &str,
        record: SessionRecord,
        now: i64,
    ) -> Result<(), RedisUnavailable> {
        match self {
            SessionIndex::Memory(memory) => {
                let mut map = Self::lock(memory);
                let records = map.entry(user_id.to_string()).or_default();
                records.push(record);
                let (live, _) = sorted_live(std::mem::take(records), now);
                *records = live;
                Ok(())
            }
            SessionIndex::Redis(link) => {
                let name = key(user_id);
                let body =
                    serde_json::to_string(&record).map_err(|e| RedisUnavailable(e.to_string()))?;
                // The newest record lives longest: the hash expires with it.
                let ttl = u64::try_from(record.expires_at - now).unwrap_or(1).max(1);
                let sid = record.sid.clone();
                link.run(|mut c| async move {
                    redis::pipe()
                        .cmd("HSET")
                        .arg(&name)
                        .arg(sid)
                        .arg(body)
                        .ignore()
                        .cmd("EXPIRE")
                        .arg(&name)
                        .arg(ttl)
                        .ignore()
                        .query_async::<()>(&mut c)
                        .await
                })
                .await?;
                // Forget the expired and those past the cap.
                self.list(user_id, now).await.map(|_| ())
            }
        }
    }

    /// The person's live sessions, newest first.
    pub async fn list(
        &self,
        user_id: &str,
        now: i64,
    ) -> Result<Vec<SessionRecord>, RedisUnavailable> {
        match self {
            SessionIndex::Memory(memory) => {
                let mut map = Self::lock(memory);
                let Some(records) = map.get_mut(user_id) else {
                    return Ok(Vec::new());
                };
                let (live, _) = sorted_live(std::mem::take(records), now);
                *records = live.clone();
                if live.is_empty() {
                    map.remove(user_id);
                }
                Ok(live)
            }
            SessionIndex::Redis(link) => {
                let name = key(user_id);
                let all: HashMap<String, String> = {
                    let name = name.clone();
                    link.run(|mut c| async move {
                        redis::cmd("HGETALL").arg(name).query_async(&mut c).await
                    })
                    .await?
                };
                let mut unreadable = Vec::new();
                let mut records = Vec::new();
                for (sid, text) in all {
                    match serde_json::from_str::<SessionRecord>(&text) {
                        Ok(record) if record.sid == sid => records.push(record),
                        _ => unreadable.push(sid),
                    }
                }
                let (live, mut gone) = sorted_live(records, now);
                gone.extend(unreadable);
                if !gone.is_empty() {
                    link.run(|mut c| async move {
                        redis::cmd("HDEL")
                            .arg(name)
                            .arg(gone)
                            .query_async::<()>(&mut c)
                            .await
                    })
                    .await?;
                }
                Ok(live)
            }
        }
    }

    /// Whether the session `sid` is still signed in.
    pub async fn contains(
        &self,
        user_id: &str,
        sid: &str,
        now: i64,
    ) -> Result<bool, RedisUnavailable> {
        match self {
            SessionIndex::Memory(memory) => Ok(Self::lock(memory)
                .get(user_id)
                .is_some_and(|r| r.iter().any(|r| r.sid == sid && r.expires_at > now))),
            SessionIndex::Redis(link) => {
                let (name, sid) = (key(user_id), sid.to_string());
                let text: Option<String> = link
                    .run(|mut c| async move {
                        redis::cmd("HGET")
                            .arg(name)
                            .arg(sid)
                            .query_async(&mut c)
                            .await
                    })
                    .await?;
                Ok(text
                    .and_then(|t| serde_json::from_str::<SessionRecord>(&t).ok())
                    .is_some_and(|r| r.expires_at > now))
            }
        }
    }

    /// Signs out the session `sid`; true when it was signed in.
    pub async fn remove(&self, user_id: &str, sid: &str) -> Result<bool, RedisUnavailable> {
        match self {
            SessionIndex::Memory(memory) => {
                let mut map = Self::lock(memory);
                let Some(records) = map.get_mut(user_id) else {
                    return Ok(false);
                };
                let before = records.len();
                records.retain(|r| r.sid != sid);
                Ok(records.len() < before)
            }
            SessionIndex::Redis(link) => {
                let (name, sid) = (key(user_id), sid.to_string());
                let removed: i64 = link
                    .run(|mut c| async move {
                        redis::cmd("HDEL")
                            .arg(name)
                            .arg(sid)
                            .query_async(&mut c)
                            .await
                    })
                    .await?;
                Ok(removed > 0)
            }
        }
    }

    /// Signs out every session of the person but `keep`; how many.
    pub async fn remove_all_except(
        &self,
        user_id: &str,
        keep: Option<&str>,
        now: i64,
    ) -> Result<usize, RedisUnavailable> {
        let others: Vec<String> = self
            .list(user_id, now)
            .await?
            .into_iter()
            .map(|r| r.sid)
            .filter(|sid| Some(sid.as_str()) != keep)
            .collect();
        if others.is_empty() {
            return Ok(0);
        }
        match self {
            SessionIndex::Memory(memory) => {
                if let Some(records) = Self::lock(memory).get_mut(user_id) {
                    records.retain(|r| !others.contains(&r.sid));
                }
                Ok(others.len())
            }
            SessionIndex::Redis(link) => {
                let name = key(user_id);
                let count = others.len();
                link.run(|mut c| async move {
                    redis::cmd("HDEL")
                        .arg(name)
                        .arg(others)
                        .query_async::<()>(&mut c)
                        .await
                })
                .await?;
                Ok(count)
            }
        }
    }
}

/// "Chrome on Linux" from a user agent, for people; the full string is shown beside it.
pub fn describe_user_agent(user_agent: &str) -> String {
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("HeadlessChrome/", "Headless Chrome"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(marker, _)| user_agent.contains(marker))
    .map(|(_, name)| *name);
    let system = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(marker, _)| user_agent.contains(marker))
    .map(|(_, name)| *name);
    match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b.to_string(),
        (None, Some(s)) => format!("A browser on {s}"),
        (None, None) if user_agent.is_empty() => "Unknown device".to_string(),
        (None, None) => "Another program".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sid: &str, at: i64) -> SessionRecord {
        SessionRecord::new(sid.into(), "ua", "127.0.0.1".into(), at, at + 100)
    }

    #[tokio::test]
    async fn the_memory_index_lists_removes_and_expires() {
        let index = SessionIndex::memory();
        index.add("u", record("a", 10), 10).await.unwrap();
        index.add("u", record("b", 20), 20).await.unwrap();
        index.add("v", record("c", 20), 20).await.unwrap();
        let listed = index.list("u", 30).await.unwrap();
        assert_eq!(
            listed.iter().map(|r| r.sid.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        assert!(index.contains("u", "a", 30).await.unwrap());
        assert!(!index.contains("u", "a", 110).await.unwrap(), "expired");
        assert!(!index.contains("u", "c", 30).await.unwrap(), "another's");
        assert!(index.remove("u", "a",).await.unwrap());
        assert!(!index.contains("u", "a", 30).await.unwrap());
        index.add("u", record("d", 25), 25).await.unwrap();
        assert_eq!(
            index.remove_all_except("u", Some("d"), 30).await.unwrap(),
            1
        );
        assert_eq!(index.list("u", 30).await.unwrap().len(), 1);
        assert!(index.contains("v", "c", 30).await.unwrap());
    }

    #[tokio::test]
    async fn the_oldest_go_past_the_cap() {
        let index = SessionIndex::memory();
        for n in 0..(MAX_PER_USER as i64 + 5) {
            index
                .add("u", record(&format!("s{n}"), n), n)
                .await
                .unwrap();
        }
        let listed = index.list("u", 60).await.unwrap();
        assert_eq!(listed.len(), MAX_PER_USER);
        assert!(!index.contains("u", "s0", 60).await.unwrap());
    }

    #[test]
    fn user_agents_are_described() {
        assert_eq!(
            describe_user_agent("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"),
            "Chrome on Linux"
        );
        assert_eq!(
            describe_user_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile Safari/604.1"),
            "Safari on iPhone"
        );
        assert_eq!(describe_user_agent(""), "Unknown device");
    }
}
