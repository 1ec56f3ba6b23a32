//! Login protection (API.md 1.2, 1.3): a per-IP rate limit on the auth endpoints and the
//! account lockout after consecutive failed logins. Both live in the serving node's memory:
//! they guard this node's endpoints and reset when it restarts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Entries kept before stale ones are swept.
const SWEEP_AT: usize = 10_000;
/// Login names tracked for lockout at most. Past it, names that are not locked are let go
/// first; an attacker spraying names is still held back by the per-IP rate limit.
pub const MAX_TRACKED_NAMES: usize = 100_000;
/// Distinct (name, address) pairs of failed logins recorded per audit interval; the rest are
/// counted in one summary entry.
pub const MAX_AUDITED_FAILURES: usize = 100;

/// One login name's recent failures.
#[derive(Debug, Clone, Copy)]
struct Failures {
    /// Consecutive failures not yet forgiven.
    count: u32,
    /// Locked until (unix seconds; 0: not locked).
    until: u64,
    /// The last failure (unix seconds): counts older than the lockout window are forgiven.
    last: u64,
}

/// Failed logins since the audit log was last told: per (name, address), how many, and
/// whether one of them locked the account; then how many attempts found no room.
#[derive(Debug, Default)]
pub struct FailedLogins {
    pub by_source: HashMap<(String, IpAddr), (u32, bool)>,
    pub unrecorded: u64,
}

/// A fixed one-second window per key: how many requests each key made this second.
#[derive(Debug)]
pub struct RatePerSecond<K> {
    limit: u32,
    windows: Mutex<HashMap<K, (u64, u32)>>,
}

impl<K: std::hash::Hash + Eq + Clone> RatePerSecond<K> {
    /// At most `limit` requests per key and second; 0 is unlimited.
    pub fn new(limit: u32) -> RatePerSecond<K> {
        RatePerSecond {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request of `key` at `now_s`; false when it is over the limit.
    pub fn admit(&self, key: &K, now_s: u64) -> bool {
        if self.limit == 0 {
            return true;
        }
        let mut w = lock(&self.windows);
        if w.len() > SWEEP_AT {
            w.retain(|_, (second, _)| *second >= now_s);
        }
        let entry = match w.get_mut(key) {
            Some(e) => e,
            None => w.entry(key.clone()).or_insert((now_s, 0)),
        };
        if entry.0 != now_s {
            *entry = (now_s, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= self.limit
    }
}

#[derive(Debug)]
pub struct Guard {
    max_failures: u32,
    lockout_s: u64,
    /// Auth requests per IP and second.
    auth_per_ip: RatePerSecond<IpAddr>,
    /// Login name → its failures. Keyed by the name given, whether or not such a user
    /// exists, so a lock says nothing about existence.
    failures: Mutex<(HashMap<String, Failures>, u64)>,
    /// Failed logins waiting to be written to the audit log, aggregated so that a flood of
    /// them costs one log entry per interval, not one each.
    to_audit: Mutex<FailedLogins>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Guard {
    pub fn new(per_ip_per_sec: u32, max_failures: u32, lockout_minutes: u64) -> Guard {
        Guard {
            max_failures,
            lockout_s: lockout_minutes * 60,
            auth_per_ip: RatePerSecond::new(per_ip_per_sec),
            failures: Mutex::new((HashMap::new(), 0)),
            to_audit: Mutex::new(FailedLogins::default()),
        }
    }

    /// Counts one auth request from `ip` at `now_s`; false when it is over the limit.
    pub fn admit(&self, ip: IpAddr, now_s: u64) -> bool {
        self.auth_per_ip.admit(&ip, now_s)
    }

    /// Whether logins as `name` are locked at `now_s`.
    pub fn locked(&self, name: &str, now_s: u64) -> bool {
        lock(&self.failures)
            .0
            .get(name)
            .is_some_and(|f| f.until > now_s)
    }

    /// Records a failed login; true when this failure locked the account.
    pub fn failed(&self, name: &str, now_s: u64) -> bool {
        let mut guard = lock(&self.failures);
        let (map, swept) = &mut *guard;
        // At most one sweep a second: what it forgets is a window's worth of history.
        if map.len() > SWEEP_AT && *swept != now_s {
            *swept = now_s;
            let window = self.lockout_s;
            map.retain(|_, f| f.until > now_s || f.last + window > now_s);
            if map.len() >= MAX_TRACKED_NAMES {
                map.retain(|_, f| f.until > now_s);
            }
        }
        if map.len() >= MAX_TRACKED_NAMES && !map.contains_key(name) {
            return false;
        }
        let f = map.entry(name.to_owned()).or_insert(Failures {
            count: 0,
            until: 0,
            last: now_s,
        });
        if f.last + self.lockout_s <= now_s {
            f.count = 0; // an old streak is forgiven
        }
        f.last = now_s;
        f.count += 1;
        if f.count >= self.max_failures {
            f.count = 0;
            f.until = now_s + self.lockout_s;
            return true;
        }
        false
    }

    /// A successful login clears the count.
    pub fn succeeded(&self, name: &str) {
        lock(&self.failures).0.remove(name);
    }

    /// Queues a failed login for the audit log.
    pub fn to_audit(&self, name: &str, ip: IpAddr, locked: bool) {
        let mut a = lock(&self.to_audit);
        let key = (name.to_owned(), ip);
        if a.by_source.len() >= MAX_AUDITED_FAILURES && !a.by_source.contains_key(&key) {
            a.unrecorded += 1;
            return;
        }
        let e = a.by_source.entry(key).or_insert((0, false));
        e.0 += 1;
        e.1 |= locked;
    }

    /// The failed logins queued since the last call.
    pub fn take_audit(&self) -> FailedLogins {
        std::mem::take(&mut *lock(&self.to_audit))
    }

    /// How many login names are tracked for lockout.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        lock(&self.failures).0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_is_per_ip_and_per_second() {
        let g = Guard::new(3, 5, 15);
        let (a, b): (IpAddr, IpAddr) = ([127, 0, 0, 1].into(), [127, 0, 0, 2].into());
        assert!((0..3).all(|_| g.admit(a, 100)));
        assert!(
            !g.admit(a, 100),
            "the fourth request in one second is refused"
        );
        assert!(g.admit(b, 100), "another IP has its own budget");
        assert!(g.admit(a, 101), "the next second starts afresh");
    }

    #[test]
    fn five_failures_lock_for_the_lockout_and_success_resets() {
        let g = Guard::new(20, 5, 15);
        for _ in 0..4 {
            assert!(!g.failed("alice", 1000));
        }
        g.succeeded("alice");
        for _ in 0..4 {
            assert!(!g.failed("alice", 1000));
        }
        assert!(!g.locked("alice", 1000));
        assert!(g.failed("alice", 1000), "the fifth failure in a row locks");
        assert!(g.locked("alice", 1000));
        assert!(g.locked("alice", 1000 + 15 * 60 - 1));
        assert!(!g.locked("alice", 1000 + 15 * 60));
        assert!(!g.locked("bob", 1000));
    }

    #[test]
    fn an_old_streak_is_forgiven_and_names_tracked_are_bounded() {
        let g = Guard::new(20, 3, 1);
        assert!(!g.failed("carol", 1000));
        assert!(!g.failed("carol", 1001));
        // A minute later the two failures no longer count towards a lock.
        assert!(!g.failed("carol", 1061));
        assert!(!g.failed("carol", 1062));
        assert!(g.failed("carol", 1063));
        // A spray of names: the map stays bounded, and locked names are kept.
        for i in 0..(MAX_TRACKED_NAMES + 5_000) {
            g.failed(&format!("n{i}"), 1063);
        }
        assert!(g.tracked() <= MAX_TRACKED_NAMES);
        assert!(g.locked("carol", 1063));
        // Once their window passed, a sweep lets them go.
        g.failed("late", 1063 + 61);
        assert!(g.tracked() < 10, "{}", g.tracked());
    }

    #[test]
    fn failed_logins_are_aggregated_for_the_audit_log_and_bounded() {
        let g = Guard::new(20, 5, 15);
        let ip: IpAddr = [127, 0, 0, 9].into();
        for _ in 0..3 {
            g.to_audit("dave", ip, false);
        }
        g.to_audit("dave", ip, true);
        for i in 0..(MAX_AUDITED_FAILURES + 10) {
            g.to_audit(&format!("x{i}"), ip, false);
        }
        let a = g.take_audit();
        assert_eq!(a.by_source[&("dave".to_owned(), ip)], (4, true));
        assert_eq!(a.by_source.len(), MAX_AUDITED_FAILURES);
        assert_eq!(a.unrecorded, 11);
        assert!(g.take_audit().by_source.is_empty());
    }
}
