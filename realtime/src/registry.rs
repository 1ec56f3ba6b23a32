//! The node's open subscriptions across connections: the per-user limit (API.md 2.5),
//! `system.live`, and `KILL LIVE QUERY`, which reaches the owning connection through its
//! kill channel.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use folddb_query::live::{LiveInfo, LiveSource};
use tokio::sync::mpsc;

#[derive(Debug, Default)]
struct Inner {
    subs: BTreeMap<String, (u64, LiveInfo)>,
    /// Connection → the live ids it holds: a connection's end costs its own subscriptions,
    /// not every subscription of the node.
    by_connection: HashMap<u64, HashSet<String>>,
    /// User → how many subscriptions they hold, for the limit.
    per_user: HashMap<String, usize>,
    /// Connection → where to send the subscription ids to close.
    kills: HashMap<u64, mpsc::UnboundedSender<String>>,
}

impl Inner {
    fn insert(&mut self, connection: u64, info: LiveInfo) {
        *self.per_user.entry(info.user_id.clone()).or_default() += 1;
        self.by_connection
            .entry(connection)
            .or_default()
            .insert(info.live_id.clone());
        self.subs.insert(info.live_id.clone(), (connection, info));
    }

    fn remove(&mut self, live_id: &str) -> Option<(u64, LiveInfo)> {
        let (connection, info) = self.subs.remove(live_id)?;
        if let Some(ids) = self.by_connection.get_mut(&connection) {
            ids.remove(live_id);
            if ids.is_empty() {
                self.by_connection.remove(&connection);
            }
        }
        if let Some(n) = self.per_user.get_mut(&info.user_id) {
            *n -= 1;
            if *n == 0 {
                self.per_user.remove(&info.user_id);
            }
        }
        Some((connection, info))
    }
}

#[derive(Debug)]
pub struct Registry {
    node_id: u64,
    max_per_user: usize,
    next_connection: AtomicU64,
    inner: Mutex<Inner>,
}

/// What a subscription is, for `system.live`.
#[derive(Debug, Clone)]
pub struct Registration<'a> {
    pub subscription_id: &'a str,
    pub user_id: &'a str,
    pub namespace: &'a str,
    pub table: &'a str,
    pub query: &'a str,
    pub options: String,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Registry {
    pub fn new(node_id: u64, max_per_user: usize) -> Registry {
        Registry {
            node_id,
            max_per_user,
            next_connection: AtomicU64::new(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new connection: its id, and where kills for it arrive.
    pub fn connect(&self) -> (u64, mpsc::UnboundedReceiver<String>) {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().kills.insert(id, tx);
        (id, rx)
    }

    /// Forgets a connection and its subscriptions.
    pub fn disconnect(&self, connection: u64) {
        let mut inner = self.lock();
        inner.kills.remove(&connection);
        for live_id in inner.by_connection.remove(&connection).unwrap_or_default() {
            inner.remove(&live_id);
        }
    }

    /// Registers a subscription: its live id, or why the user may not have another.
    pub fn register(&self, connection: u64, r: Registration<'_>) -> crate::Result<String> {
        let mut inner = self.lock();
        let held = inner.per_user.get(r.user_id).copied().unwrap_or(0);
        if held >= self.max_per_user {
            return Err(crate::Error::SubscriptionLimit {
                user: r.user_id.to_owned(),
                held,
                limit: self.max_per_user,
            });
        }
        let live_id = format!("{}-{connection}-{}", r.user_id, r.subscription_id);
        let now = now_ms();
        let info = LiveInfo {
            live_id: live_id.clone(),
            connection_id: connection.to_string(),
            subscription_id: r.subscription_id.to_owned(),
            namespace: r.namespace.to_owned(),
            table: r.table.to_owned(),
            user_id: r.user_id.to_owned(),
            query: r.query.to_owned(),
            options: r.options,
            created_at_ms: now,
            last_update_ms: now,
            changes: 0,
            node_id: self.node_id,
        };
        // The same id again on its connection replaces the old entry.
        inner.remove(&live_id);
        inner.insert(connection, info);
        Ok(live_id)
    }

    pub fn unregister(&self, live_id: &str) {
        self.lock().remove(live_id);
    }

    /// Counts `n` change messages delivered to `live_id`.
    pub fn delivered(&self, live_id: &str, n: u64) {
        if let Some((_, info)) = self.lock().subs.get_mut(live_id) {
            info.changes += n;
            info.last_update_ms = now_ms();
        }
    }
}

impl LiveSource for Registry {
    fn list(&self) -> Vec<LiveInfo> {
        self.lock().subs.values().map(|(_, l)| l.clone()).collect()
    }

    fn kill(&self, live_id: &str) -> bool {
        let mut inner = self.lock();
        let Some((connection, info)) = inner.remove(live_id) else {
            return false;
        };
        if let Some(tx) = inner.kills.get(&connection) {
            let _ = tx.send(info.subscription_id);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg<'a>(sub: &'a str, user: &'a str) -> Registration<'a> {
        Registration {
            subscription_id: sub,
            user_id: user,
            namespace: "app",
            table: "t",
            query: "SELECT * FROM app.t",
            options: "{}".into(),
        }
    }

    #[test]
    fn limits_per_user_listing_and_kill() {
        let r = Registry::new(1, 2);
        let (c1, mut kills) = r.connect();
        let (c2, _k2) = r.connect();
        let a = r.register(c1, reg("s1", "alice")).expect("first");
        assert_eq!(a, format!("alice-{c1}-s1"));
        r.register(c2, reg("s2", "alice"))
            .expect("second, other connection");
        assert!(
            r.register(c2, reg("s3", "alice")).is_err(),
            "third is over the limit"
        );
        r.register(c2, reg("s3", "bob")).expect("bob has his own");
        r.delivered(&a, 3);
        let listed = r.list();
        assert_eq!(listed.len(), 3);
        assert_eq!(
            listed.iter().find(|l| l.live_id == a).map(|l| l.changes),
            Some(3)
        );
        assert!(r.kill(&a));
        assert_eq!(kills.try_recv().ok().as_deref(), Some("s1"));
        assert!(!r.kill(&a), "already gone");
        r.disconnect(c2);
        assert!(r.list().is_empty());
        // What a kill or a disconnect freed counts again toward the limit.
        r.register(c1, reg("s4", "alice")).expect("room again");
        r.register(c1, reg("s5", "alice")).expect("room again");
        assert!(r.register(c1, reg("s6", "alice")).is_err());
        r.unregister(&format!("alice-{c1}-s4"));
        r.register(c1, reg("s6", "alice"))
            .expect("freed by unregister");
    }
}
