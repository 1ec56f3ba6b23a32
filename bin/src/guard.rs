//! Login protection (API.md 1.2, 1.3): a per-IP rate limit on the auth endpoints and the
//! account lockout after consecutive failed logins. Both live in the serving node's memory:
//! they guard this node's endpoints and reset when it restarts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Entries kept before stale ones are swept.
const SWEEP_AT: usize = 10_000;

#[derive(Debug)]
pub struct Guard {
    per_ip_per_sec: u32,
    max_failures: u32,
    lockout_s: u64,
    /// IP → (second, requests in it).
    windows: Mutex<HashMap<IpAddr, (u64, u32)>>,
    /// Login name → (consecutive failures, locked until, unix seconds). Keyed by the name
    /// given, whether or not such a user exists, so a lock says nothing about existence.
    failures: Mutex<HashMap<String, (u32, u64)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Guard {
    pub fn new(per_ip_per_sec: u32, max_failures: u32, lockout_minutes: u64) -> Guard {
        Guard {
            per_ip_per_sec,
            max_failures,
            lockout_s: lockout_minutes * 60,
            windows: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one auth request from `ip` at `now_s`; false when it is over the limit.
    pub fn admit(&self, ip: IpAddr, now_s: u64) -> bool {
        let mut w = lock(&self.windows);
        if w.len() > SWEEP_AT {
            w.retain(|_, (second, _)| *second >= now_s);
        }
        let entry = w.entry(ip).or_insert((now_s, 0));
        if entry.0 != now_s {
            *entry = (now_s, 0);
        }
        entry.1 += 1;
        entry.1 <= self.per_ip_per_sec
    }

    /// Whether logins as `name` are locked at `now_s`.
    pub fn locked(&self, name: &str, now_s: u64) -> bool {
        lock(&self.failures)
            .get(name)
            .is_some_and(|(_, until)| *until > now_s)
    }

    /// Records a failed login; true when this failure locked the account.
    pub fn failed(&self, name: &str, now_s: u64) -> bool {
        let mut f = lock(&self.failures);
        if f.len() > SWEEP_AT {
            f.retain(|_, (count, until)| *until > now_s || *count > 0);
        }
        let entry = f.entry(name.to_owned()).or_insert((0, 0));
        entry.0 += 1;
        if entry.0 >= self.max_failures {
            *entry = (0, now_s + self.lockout_s);
            return true;
        }
        false
    }

    /// A successful login clears the count.
    pub fn succeeded(&self, name: &str) {
        lock(&self.failures).remove(name);
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
}
