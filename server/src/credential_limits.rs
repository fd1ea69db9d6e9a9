//! Limits on guessing passwords and client secrets, that an attacker cannot turn against the
//! account's owner (docs/configuration.md, "Sign-in protection").
//!
//! Three counters, in Redis when configured (shared by every instance), in memory otherwise:
//! - **pair** (subject, address): after `pair_max` failures that pair waits, longer each time
//!   (`lockouts`). This is the lock an attacker hits; the owner elsewhere does not.
//! - **address** across subjects: past `address_max` failures within `address_window`, the
//!   address is refused (password spraying).
//! - **subject** across addresses (people only): never a lock. Past `subject_slowdown_after`
//!   failures, attempts from a browser that is not a known device of the person are spaced by
//!   a delay growing with the count, capped at `subject_max_delay`.
//!
//! Passwords are **reserved** before they are checked ([`CredentialLimits::reserve`]): one
//! atomic step counts the attempt as a failure and decides whether it may go on, so parallel
//! guesses cannot all pass a check made before any of them failed. Success gives the
//! reservation back and clears the pair. Client secrets cost a keyed hash, not 19 MiB of
//! Argon2, and a busy client sends many requests at once, which a pre-count would take for
//! guesses; so their outcome is **settled** atomically after the check
//! ([`CredentialLimits::settle_client`]): a right secret arriving once the limit is reached is
//! refused like a wrong one, so no more than the limit of guesses can ever succeed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex};

use crate::redis_link::{RedisLink, RedisUnavailable};

/// The thresholds of one kind of credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Failures of one (subject, address) pair before it must wait.
    pub pair_max: u64,
    /// The waits after the `pair_max`-th failure, the one after, and so on (the last repeats).
    pub lockouts: Vec<i64>,
    /// How long pair and subject failures are remembered after the last one.
    pub window: i64,
    /// Failures per address within `address_window` before it is refused; 0: no limit.
    pub address_max: u64,
    pub address_window: i64,
    /// Subject-wide failures past which unknown devices are slowed; 0: no subject counter.
    pub subject_slowdown_after: u64,
    pub subject_max_delay: i64,
}

impl Policy {
    /// People signing in with a password.
    pub fn sign_in(settings: &crate::config::Settings) -> Policy {
        let secs = |v: u64| i64::try_from(v).unwrap_or(i64::MAX / 4);
        Policy {
            pair_max: settings.login_pair_max_failures.max(1),
            lockouts: settings
                .login_pair_lockouts
                .iter()
                .map(|&v| secs(v))
                .collect(),
            window: secs(settings.login_failure_window),
            address_max: settings.login_ip_max_failures,
            address_window: secs(settings.login_ip_failure_window),
            subject_slowdown_after: settings.login_username_slowdown_after,
            subject_max_delay: secs(settings.login_username_max_delay),
        }
    }

    /// Clients authenticating with a secret or an assertion at the token, introspection and
    /// revocation endpoints. No client-wide counter: it would let anyone slow a service down.
    pub fn client_authentication(settings: &crate::config::Settings) -> Policy {
        Policy {
            address_max: settings.token_auth_failures_per_ip_per_minute,
            address_window: 60,
            subject_slowdown_after: 0,
            subject_max_delay: 0,
            ..Policy::sign_in(settings)
        }
    }

    fn lockout(&self, failures: u64) -> i64 {
        let step = usize::try_from(failures.saturating_sub(self.pair_max)).unwrap_or(usize::MAX);
        self.lockouts
            .get(step)
            .or(self.lockouts.last())
            .copied()
            .unwrap_or(60)
    }

    fn longest_lockout(&self) -> i64 {
        self.lockouts.iter().copied().max().unwrap_or(60)
    }

    /// The spacing between attempts once a subject is past the slowdown threshold: one second,
    /// doubling every ten further failures.
    fn subject_delay(&self, failures: u64) -> i64 {
        let doublings = (failures.saturating_sub(self.subject_slowdown_after) / 10).min(20);
        (1i64 << doublings).min(self.subject_max_delay.max(1))
    }
}

/// Why an attempt may not go on, and for how many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This (subject, address) pair failed too often: the attacker's lock.
    PairLocked(u64),
    /// This address failed too often across subjects.
    AddressBlocked(u64),
    /// The subject is under attack from elsewhere: attempts from unknown devices are spaced.
    SubjectSlowed(u64),
}

impl Refusal {
    pub fn retry_after(self) -> u64 {
        match self {
            Refusal::PairLocked(s) | Refusal::AddressBlocked(s) | Refusal::SubjectSlowed(s) => {
                s.max(1)
            }
        }
    }
}

/// A reserved attempt: give it back with [`CredentialLimits::succeeded`] when it succeeds.
#[derive(Debug, Clone)]
pub struct Reservation {
    keys: Keys,
    subject_counted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Keys {
    pair: String,
    address: String,
    subject: String,
}

/// The network an address is counted as: itself for IPv4, its /64 for IPv6 — one subscriber
/// usually holds a whole /64 and could otherwise take a fresh address for every guess.
pub fn counted_network(address: IpAddr) -> String {
    match address {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.to_string(), |v4| v4.to_string()),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

impl Keys {
    /// Subjects are hashed: what a person types as a username is unbounded and arbitrary.
    fn new(kind: &str, subject: &str, address: IpAddr) -> Keys {
        let digest = ring::digest::digest(&ring::digest::SHA256, subject.as_bytes());
        let subject = crate::jose::b64(digest.as_ref().get(..18).unwrap_or_default());
        let address = counted_network(address);
        Keys {
            pair: format!("portcullis:cred:{kind}:pair:{subject}:{address}"),
            address: format!("portcullis:cred:{kind}:addr:{address}"),
            subject: format!("portcullis:cred:{kind}:subj:{subject}"),
        }
    }
}

#[derive(Clone)]
pub enum CredentialLimits {
    Memory(Arc<Mutex<Counters>>),
    Redis(RedisLink),
}

impl Default for CredentialLimits {
    fn default() -> Self {
        CredentialLimits::Memory(Arc::default())
    }
}

impl CredentialLimits {
    /// Counts a password attempt before it is checked; `Err(refusal)` when it may not go on.
    /// `known_device`: the browser holds this person's known-device cookie, which exempts it
    /// from the subject-wide counter.
    pub async fn reserve(
        &self,
        policy: &Policy,
        subject: &str,
        address: IpAddr,
        known_device: bool,
        now: i64,
    ) -> Result<Result<Reservation, Refusal>, RedisUnavailable> {
        let keys = Keys::new("login", subject, address);
        let subject_counted = policy.subject_slowdown_after > 0 && !known_device;
        let verdict = match self {
            CredentialLimits::Memory(counters) => {
                let mut counters = counters.lock().unwrap_or_else(|p| p.into_inner());
                counters.prune(now);
                counters.reserve(policy, &keys, subject_counted, now)
            }
            CredentialLimits::Redis(link) => {
                redis_reserve(link, policy, &keys, subject_counted, now).await?
            }
        };
        Ok(match verdict {
            None => Ok(Reservation {
                keys,
                subject_counted,
            }),
            Some(refusal) => Err(refusal),
        })
    }

    /// The reserved attempt succeeded: the pair starts over, the reservation is given back.
    pub async fn succeeded(&self, reservation: &Reservation) -> Result<(), RedisUnavailable> {
        let keys = &reservation.keys;
        match self {
            CredentialLimits::Memory(counters) => {
                let mut counters = counters.lock().unwrap_or_else(|p| p.into_inner());
                counters.pairs.remove(&keys.pair);
                if let Some(address) = counters.addresses.get_mut(&keys.address) {
                    address.failures = address.failures.saturating_sub(1);
                }
                if reservation.subject_counted {
                    if let Some(subject) = counters.subjects.get_mut(&keys.subject) {
                        subject.failures = subject.failures.saturating_sub(1);
                    }
                }
                Ok(())
            }
            CredentialLimits::Redis(link) => {
                let script = &*RELEASE_SCRIPT;
                let (pair, address, subject) = (
                    keys.pair.clone(),
                    keys.address.clone(),
                    keys.subject.clone(),
                );
                let subject_counted = u8::from(reservation.subject_counted);
                link.run(|mut c| async move {
                    script
                        .key(pair)
                        .key(address)
                        .key(subject)
                        .arg(subject_counted)
                        .invoke_async::<()>(&mut c)
                        .await
                })
                .await
            }
        }
    }

    /// Settles a client's authentication after its secret or assertion was checked: a failure
    /// is counted, and either outcome is refused once the pair or the address is over its limit.
    pub async fn settle_client(
        &self,
        policy: &Policy,
        client_id: &str,
        address: IpAddr,
        succeeded: bool,
        now: i64,
    ) -> Result<Option<Refusal>, RedisUnavailable> {
        let keys = Keys::new("client", client_id, address);
        match self {
            CredentialLimits::Memory(counters) => {
                let mut counters = counters.lock().unwrap_or_else(|p| p.into_inner());
                if !succeeded {
                    counters.prune(now);
                }
                Ok(counters.settle(policy, &keys, succeeded, now))
            }
            CredentialLimits::Redis(link) => {
                redis_settle(link, policy, &keys, succeeded, now).await
            }
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Pair {
    failures: u64,
    locked_until: i64,
    last: i64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Address {
    failures: u64,
    since: i64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Subject {
    failures: u64,
    last: i64,
    next: i64,
}

/// In-process counters (the zero-configuration default).
#[derive(Default)]
pub struct Counters {
    pairs: HashMap<String, Pair>,
    addresses: HashMap<String, Address>,
    subjects: HashMap<String, Subject>,
    /// When old entries were last swept out.
    pruned_at: i64,
    /// The longest any entry matters after its last change (from the last policy seen).
    horizon: i64,
}

impl Counters {
    /// Forgets entries that no longer matter, at most once a minute — or at once when a map
    /// outgrew `MAX_ENTRIES` (a spray from many addresses), then also the oldest half of it,
    /// so memory stays bounded whatever the traffic.
    fn prune(&mut self, now: i64) {
        let crowded = self.pairs.len() > MAX_ENTRIES
            || self.addresses.len() > MAX_ENTRIES
            || self.subjects.len() > MAX_ENTRIES;
        if now - self.pruned_at < 60 && !crowded {
            return;
        }
        self.pruned_at = now;
        let horizon = self.horizon;
        self.pairs
            .retain(|_, p| now - p.last.max(p.locked_until) < horizon);
        self.addresses.retain(|_, a| now - a.since < horizon);
        self.subjects.retain(|_, s| now - s.last < horizon);
        keep_newest_half(&mut self.pairs, |p| p.last.max(p.locked_until));
        keep_newest_half(&mut self.addresses, |a| a.since);
        keep_newest_half(&mut self.subjects, |s| s.last);
    }

    fn address_state(&self, policy: &Policy, keys: &Keys, now: i64) -> Address {
        match self.addresses.get(&keys.address) {
            Some(a) if now - a.since < policy.address_window => *a,
            _ => Address {
                failures: 0,
                since: now,
            },
        }
    }

    fn pair_state(&self, policy: &Policy, keys: &Keys, now: i64) -> Pair {
        match self.pairs.get(&keys.pair) {
            Some(p) if now - p.last.max(p.locked_until) < policy.window => *p,
            _ => Pair::default(),
        }
    }

    fn note_horizon(&mut self, policy: &Policy) {
        self.horizon = self
            .horizon
            .max(policy.window + policy.longest_lockout())
            .max(policy.address_window);
    }

    /// The same decision as the `RESERVE` script.
    fn reserve(
        &mut self,
        policy: &Policy,
        keys: &Keys,
        subject_counted: bool,
        now: i64,
    ) -> Option<Refusal> {
        self.note_horizon(policy);
        let mut address = self.address_state(policy, keys, now);
        if policy.address_max > 0 && address.failures >= policy.address_max {
            return Some(Refusal::AddressBlocked(seconds(
                address.since + policy.address_window - now,
            )));
        }
        let mut pair = self.pair_state(policy, keys, now);
        if pair.locked_until > now {
            // Still a failure of this address: a locked pair hammered on is spraying too.
            address.failures += 1;
            self.addresses.insert(keys.address.clone(), address);
            return Some(Refusal::PairLocked(seconds(pair.locked_until - now)));
        }
        if subject_counted {
            let mut subject = match self.subjects.get(&keys.subject) {
                Some(s) if now - s.last < policy.window => *s,
                _ => Subject::default(),
            };
            if subject.failures >= policy.subject_slowdown_after {
                if subject.next > now {
                    return Some(Refusal::SubjectSlowed(seconds(subject.next - now)));
                }
                subject.next = now + policy.subject_delay(subject.failures);
            }
            subject.failures += 1;
            subject.last = now;
            self.subjects.insert(keys.subject.clone(), subject);
        }
        pair.failures += 1;
        pair.last = now;
        if pair.failures >= policy.pair_max {
            pair.locked_until = now + policy.lockout(pair.failures);
        }
        self.pairs.insert(keys.pair.clone(), pair);
        if policy.address_max > 0 {
            address.failures += 1;
            self.addresses.insert(keys.address.clone(), address);
        }
        None
    }

    /// The same decision as the `SETTLE` script.
    fn settle(
        &mut self,
        policy: &Policy,
        keys: &Keys,
        succeeded: bool,
        now: i64,
    ) -> Option<Refusal> {
        self.note_horizon(policy);
        let mut address = self.address_state(policy, keys, now);
        let mut pair = self.pair_state(policy, keys, now);
        let address_over = |a: &Address| policy.address_max > 0 && a.failures >= policy.address_max;
        if address_over(&address) {
            return Some(Refusal::AddressBlocked(seconds(
                address.since + policy.address_window - now,
            )));
        }
        if pair.locked_until > now {
            return Some(Refusal::PairLocked(seconds(pair.locked_until - now)));
        }
        if succeeded {
            // The client proved itself: its pair starts over (say, after a secret rotation).
            if pair.failures > 0 {
                self.pairs.remove(&keys.pair);
            }
            return None;
        }
        pair.failures += 1;
        pair.last = now;
        if pair.failures >= policy.pair_max {
            pair.locked_until = now + policy.lockout(pair.failures);
        }
        self.pairs.insert(keys.pair.clone(), pair);
        if policy.address_max > 0 {
            address.failures += 1;
            self.addresses.insert(keys.address.clone(), address);
        }
        None
    }
}

/// Entries per in-memory map before the oldest are forgotten (each is ~100 bytes).
const MAX_ENTRIES: usize = 100_000;

fn keep_newest_half<T>(map: &mut HashMap<String, T>, age: impl Fn(&T) -> i64) {
    if map.len() <= MAX_ENTRIES {
        return;
    }
    let mut times: Vec<i64> = map.values().map(&age).collect();
    let middle = times.len() / 2;
    let (_, cut, _) = times.select_nth_unstable(middle);
    let cut = *cut;
    map.retain(|_, entry| age(entry) >= cut);
}

fn seconds(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(1).max(1)
}

/// KEYS: pair, address, subject. ARGV: now, pair_max, window, address_max, address_window,
/// subject counted (0/1), slowdown_after, max_delay, lockouts…
/// Returns {0, 0} to go on, or {1 pair locked | 2 address blocked | 3 slowed, seconds}.
const RESERVE: &str = r"
local now = tonumber(ARGV[1])
local pair_max = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local address_max = tonumber(ARGV[4])
local address_window = tonumber(ARGV[5])
local subject_counted = ARGV[6] == '1'
local slowdown_after = tonumber(ARGV[7])
local max_delay = tonumber(ARGV[8])
local lockouts = {}
for i = 9, #ARGV do lockouts[#lockouts + 1] = tonumber(ARGV[i]) end
local longest = 0
for _, v in ipairs(lockouts) do if v > longest then longest = v end end
local function num(v) if v then return tonumber(v) end return 0 end

local a = redis.call('HMGET', KEYS[2], 'f', 's')
local af, asince = num(a[1]), num(a[2])
if now - asince >= address_window then af = 0; asince = now end
if address_max > 0 and af >= address_max then return {2, asince + address_window - now} end

local p = redis.call('HMGET', KEYS[1], 'f', 'lock', 'last')
local pf, plock, plast = num(p[1]), num(p[2]), num(p[3])
if now - math.max(plast, plock) >= window then pf = 0; plock = 0 end
if plock > now then
  redis.call('HSET', KEYS[2], 'f', af + 1, 's', asince)
  redis.call('EXPIRE', KEYS[2], address_window)
  return {1, plock - now}
end

if subject_counted then
  local s = redis.call('HMGET', KEYS[3], 'f', 'last', 'next')
  local sf, slast, snext = num(s[1]), num(s[2]), num(s[3])
  if now - slast >= window then sf = 0; snext = 0 end
  if sf >= slowdown_after then
    if snext > now then return {3, snext - now} end
    local doublings = math.min(math.floor((sf - slowdown_after) / 10), 20)
    snext = now + math.min(math.max(max_delay, 1), 2 ^ doublings)
  end
  redis.call('HSET', KEYS[3], 'f', sf + 1, 'last', now, 'next', snext)
  redis.call('EXPIRE', KEYS[3], window + max_delay)
end

pf = pf + 1
if pf >= pair_max then
  plock = now + lockouts[math.min(pf - pair_max + 1, #lockouts)]
end
redis.call('HSET', KEYS[1], 'f', pf, 'lock', plock, 'last', now)
redis.call('EXPIRE', KEYS[1], window + longest)
if address_max > 0 then
  redis.call('HSET', KEYS[2], 'f', af + 1, 's', asince)
  redis.call('EXPIRE', KEYS[2], address_window)
end
return {0, 0}
";

/// KEYS: pair, address, subject. ARGV: subject counted (0/1).
const RELEASE: &str = r"
redis.call('DEL', KEYS[1])
local function give_back(key)
  local f = tonumber(redis.call('HGET', key, 'f') or '0')
  if f > 0 then redis.call('HSET', key, 'f', f - 1) end
end
give_back(KEYS[2])
if ARGV[1] == '1' then give_back(KEYS[3]) end
return 0
";

/// KEYS: pair, address. ARGV: now, pair_max, window, address_max, address_window, succeeded
/// (0/1), lockouts… Returns as `RESERVE`.
const SETTLE: &str = r"
local now = tonumber(ARGV[1])
local pair_max = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local address_max = tonumber(ARGV[4])
local address_window = tonumber(ARGV[5])
local succeeded = ARGV[6] == '1'
local lockouts = {}
for i = 7, #ARGV do lockouts[#lockouts + 1] = tonumber(ARGV[i]) end
local longest = 0
for _, v in ipairs(lockouts) do if v > longest then longest = v end end
local function num(v) if v then return tonumber(v) end return 0 end

local a = redis.call('HMGET', KEYS[2], 'f', 's')
local af, asince = num(a[1]), num(a[2])
if now - asince >= address_window then af = 0; asince = now end
if address_max > 0 and af >= address_max then return {2, asince + address_window - now} end
local p = redis.call('HMGET', KEYS[1], 'f', 'lock', 'last')
local pf, plock, plast = num(p[1]), num(p[2]), num(p[3])
if now - math.max(plast, plock) >= window then pf = 0; plock = 0 end
if plock > now then return {1, plock - now} end
if succeeded then
  -- The client proved itself: its pair starts over (say, after a secret rotation).
  if pf > 0 then redis.call('DEL', KEYS[1]) end
  return {0, 0}
end
pf = pf + 1
if pf >= pair_max then
  plock = now + lockouts[math.min(pf - pair_max + 1, #lockouts)]
end
redis.call('HSET', KEYS[1], 'f', pf, 'lock', plock, 'last', now)
redis.call('EXPIRE', KEYS[1], window + longest)
if address_max > 0 then
  redis.call('HSET', KEYS[2], 'f', af + 1, 's', asince)
  redis.call('EXPIRE', KEYS[2], address_window)
end
return {0, 0}
";

// Loaded once; `EVALSHA` with a fallback to `EVAL` when Redis forgot them (a restart).
static RESERVE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RESERVE));
static RELEASE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RELEASE));
static SETTLE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SETTLE));

fn refusal_of(code: i64, seconds_left: i64) -> Option<Refusal> {
    let s = seconds(seconds_left);
    match code {
        1 => Some(Refusal::PairLocked(s)),
        2 => Some(Refusal::AddressBlocked(s)),
        3 => Some(Refusal::SubjectSlowed(s)),
        _ => None,
    }
}

async fn redis_reserve(
    link: &RedisLink,
    policy: &Policy,
    keys: &Keys,
    subject_counted: bool,
    now: i64,
) -> Result<Option<Refusal>, RedisUnavailable> {
    let mut invocation = RESERVE_SCRIPT.prepare_invoke();
    invocation
        .key(&keys.pair)
        .key(&keys.address)
        .key(&keys.subject)
        .arg(now)
        .arg(policy.pair_max)
        .arg(policy.window)
        .arg(policy.address_max)
        .arg(policy.address_window)
        .arg(u8::from(subject_counted))
        .arg(policy.subject_slowdown_after)
        .arg(policy.subject_max_delay);
    for lockout in &policy.lockouts {
        invocation.arg(*lockout);
    }
    let (code, left): (i64, i64) = link
        .run(|mut c| async move { invocation.invoke_async(&mut c).await })
        .await?;
    Ok(refusal_of(code, left))
}

async fn redis_settle(
    link: &RedisLink,
    policy: &Policy,
    keys: &Keys,
    succeeded: bool,
    now: i64,
) -> Result<Option<Refusal>, RedisUnavailable> {
    let mut invocation = SETTLE_SCRIPT.prepare_invoke();
    invocation
        .key(&keys.pair)
        .key(&keys.address)
        .arg(now)
        .arg(policy.pair_max)
        .arg(policy.window)
        .arg(policy.address_max)
        .arg(policy.address_window)
        .arg(u8::from(succeeded));
    for lockout in &policy.lockouts {
        invocation.arg(*lockout);
    }
    let (code, left): (i64, i64) = link
        .run(|mut c| async move { invocation.invoke_async(&mut c).await })
        .await?;
    Ok(refusal_of(code, left))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            pair_max: 3,
            lockouts: vec![60, 300, 900],
            window: 3600,
            address_max: 10,
            address_window: 86_400,
            subject_slowdown_after: 5,
            subject_max_delay: 30,
        }
    }

    const T: i64 = 1_000_000;

    /// One password attempt by `who` from 10.0.0.`from`, `at` seconds after `T`.
    async fn reserve(
        limits: &CredentialLimits,
        p: &Policy,
        (who, from, known): (&str, u8, bool),
        at: i64,
    ) -> Result<Reservation, Refusal> {
        let address = IpAddr::from([10, 0, 0, from]);
        limits
            .reserve(p, who, address, known, T + at)
            .await
            .unwrap()
    }

    /// One client authentication by "svc" from 10.0.0.`from`.
    async fn settle(limits: &CredentialLimits, p: &Policy, from: u8, ok: bool) -> Option<Refusal> {
        let address = IpAddr::from([10, 0, 0, from]);
        limits
            .settle_client(p, "svc", address, ok, T)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_pair_locks_after_its_failures_with_growing_waits() {
        let (limits, p) = (CredentialLimits::default(), policy());
        let alice = ("alice", 1, false);
        for _ in 0..3 {
            assert!(reserve(&limits, &p, alice, 0).await.is_ok());
        }
        let locked = reserve(&limits, &p, alice, 1).await;
        assert_eq!(locked.unwrap_err(), Refusal::PairLocked(59));
        // Another address, and another subject, are not locked.
        assert!(reserve(&limits, &p, ("alice", 2, false), 1).await.is_ok());
        assert!(reserve(&limits, &p, ("bob", 1, false), 1).await.is_ok());
        // After the wait one more try; failing it, a longer wait, then the longest.
        assert!(reserve(&limits, &p, alice, 60).await.is_ok());
        let locked = reserve(&limits, &p, alice, 61).await;
        assert_eq!(locked.unwrap_err(), Refusal::PairLocked(299));
        assert!(reserve(&limits, &p, alice, 360).await.is_ok());
        assert!(reserve(&limits, &p, alice, 1260).await.is_ok());
        let locked = reserve(&limits, &p, alice, 1261).await;
        assert_eq!(locked.unwrap_err(), Refusal::PairLocked(899));
    }

    #[tokio::test]
    async fn success_clears_the_pair_and_gives_the_reservation_back() {
        let (limits, p) = (CredentialLimits::default(), policy());
        let alice = ("alice", 1, false);
        reserve(&limits, &p, alice, 0).await.unwrap();
        let right = reserve(&limits, &p, alice, 0).await.unwrap();
        limits.succeeded(&right).await.unwrap();
        for _ in 0..2 {
            assert!(reserve(&limits, &p, alice, 0).await.is_ok());
        }
    }

    #[tokio::test]
    async fn a_subject_under_attack_is_slowed_for_unknown_devices_only() {
        let limits = CredentialLimits::default();
        let p = Policy {
            pair_max: 100,
            ..policy()
        };
        for from in 0..5 {
            assert!(reserve(&limits, &p, ("alice", from, false), 0)
                .await
                .is_ok());
        }
        // The sixth from anywhere goes on and sets the spacing; the seventh waits a second.
        assert!(reserve(&limits, &p, ("alice", 50, false), 0).await.is_ok());
        let slowed = reserve(&limits, &p, ("alice", 51, false), 0).await;
        assert_eq!(slowed.unwrap_err(), Refusal::SubjectSlowed(1));
        let known = reserve(&limits, &p, ("alice", 51, true), 0).await;
        assert!(known.is_ok(), "a known device is exempt");
        assert!(reserve(&limits, &p, ("alice", 51, false), 1).await.is_ok());
    }

    #[tokio::test]
    async fn an_address_is_blocked_across_subjects() {
        let (limits, p) = (CredentialLimits::default(), policy());
        for i in 0..10 {
            let name = format!("user{i}");
            assert!(reserve(&limits, &p, (&name, 1, false), 0).await.is_ok());
        }
        let blocked = reserve(&limits, &p, ("another", 1, false), 0).await;
        assert!(matches!(blocked, Err(Refusal::AddressBlocked(_))));
        let next_day = reserve(&limits, &p, ("another", 1, false), 86_400).await;
        assert!(next_day.is_ok());
    }

    #[tokio::test]
    async fn an_ipv6_network_counts_as_one_address() {
        let (limits, p) = (CredentialLimits::default(), policy());
        for host in 1..=3u16 {
            let address = IpAddr::from([0x2001, 0xdb8, 1, 2, 0, 0, 0, host]);
            let attempt = limits
                .reserve(&p, "alice", address, false, T)
                .await
                .unwrap();
            assert!(attempt.is_ok());
        }
        let next = IpAddr::from([0x2001, 0xdb8, 1, 2, 0xffff, 0, 0, 9]);
        let locked = limits.reserve(&p, "alice", next, false, T).await.unwrap();
        assert!(matches!(locked, Err(Refusal::PairLocked(_))), "same /64");
        let elsewhere = IpAddr::from([0x2001, 0xdb8, 1, 3, 0, 0, 0, 1]);
        let other = limits
            .reserve(&p, "alice", elsewhere, false, T)
            .await
            .unwrap();
        assert!(other.is_ok(), "another /64");
    }

    #[test]
    fn the_in_memory_maps_stay_bounded() {
        // Nothing too old (only the size cap applies), pruned a moment ago.
        let mut counters = Counters {
            horizon: 10_000_000,
            pruned_at: 100_000,
            ..Counters::default()
        };
        for i in 0..(MAX_ENTRIES + 10) {
            let last = i64::try_from(i).unwrap();
            counters.pairs.insert(
                i.to_string(),
                Pair {
                    failures: 1,
                    locked_until: 0,
                    last,
                },
            );
        }
        counters.prune(100_010);
        assert!(
            counters.pairs.len() <= MAX_ENTRIES / 2 + 10,
            "{}",
            counters.pairs.len()
        );
        assert!(
            counters.pairs.contains_key(&(MAX_ENTRIES + 9).to_string()),
            "newest kept"
        );
    }

    #[tokio::test]
    async fn a_right_client_secret_after_the_limit_is_refused_too() {
        let (limits, p) = (CredentialLimits::default(), policy());
        assert_eq!(settle(&limits, &p, 1, true).await, None);
        // Failures below the limit are forgotten once the right secret is shown.
        for _ in 0..2 {
            assert_eq!(settle(&limits, &p, 1, false).await, None);
        }
        assert_eq!(settle(&limits, &p, 1, true).await, None);
        for _ in 0..3 {
            assert_eq!(settle(&limits, &p, 1, false).await, None);
        }
        assert_eq!(
            settle(&limits, &p, 1, true).await,
            Some(Refusal::PairLocked(60))
        );
        assert_eq!(settle(&limits, &p, 2, true).await, None);
    }
}
