//! Fan-out of the node's change feed to the connections that watch the changed rows.
//!
//! One dispatcher task reads the feed; connections register interest in (table, owner)
//! pairs while they hold a subscription on them, and get only the change sets that touch
//! one of their pairs — a write to one user's rows wakes that user's connections, not
//! every connection of the node. Each connection's queue is bounded: when it is full the
//! connection is told how many change sets it missed, never silently left behind.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use folddb_materializer::{ChangeSet, TableId};
use tokio::sync::{broadcast, mpsc};

/// Change sets queued per connection before it counts as lagging.
pub const CONNECTION_QUEUE: usize = 4096;

/// A connection's end of the hub.
#[derive(Debug)]
pub struct Inbox {
    pub changes: mpsc::Receiver<Arc<ChangeSet>>,
    /// Change sets dropped because the queue was full (or the dispatcher lagged); the
    /// connection takes and reports them.
    pub missed: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Outlet {
    tx: mpsc::Sender<Arc<ChangeSet>>,
    missed: Arc<AtomicU64>,
    /// (table, owner) → how many of the connection's subscriptions watch it.
    watching: HashMap<(TableId, String), usize>,
}

#[derive(Debug, Default)]
struct Inner {
    connections: HashMap<u64, Outlet>,
    /// (table, owner) → connections watching it.
    index: HashMap<(TableId, String), HashSet<u64>>,
}

#[derive(Debug)]
pub struct Hub {
    inner: Mutex<Inner>,
    queue: usize,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub::new(CONNECTION_QUEUE)
    }
}

impl Hub {
    /// A hub whose connections queue up to `queue` change sets each.
    pub fn new(queue: usize) -> Hub {
        Hub {
            inner: Mutex::default(),
            queue: queue.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection's inbox (nothing arrives until it watches something).
    pub fn connect(&self, connection: u64) -> Inbox {
        let (tx, changes) = mpsc::channel(self.queue);
        let missed = Arc::new(AtomicU64::new(0));
        self.lock().connections.insert(
            connection,
            Outlet {
                tx,
                missed: missed.clone(),
                watching: HashMap::new(),
            },
        );
        Inbox { changes, missed }
    }

    pub fn disconnect(&self, connection: u64) {
        let mut inner = self.lock();
        if let Some(outlet) = inner.connections.remove(&connection) {
            for key in outlet.watching.keys() {
                unindex(&mut inner.index, key, connection);
            }
        }
    }

    /// One more subscription of `connection` on `table`'s rows of `owner`.
    pub fn watch(&self, connection: u64, table: TableId, owner: &str) {
        let mut inner = self.lock();
        let key = (table, owner.to_owned());
        let Some(outlet) = inner.connections.get_mut(&connection) else {
            return;
        };
        *outlet.watching.entry(key.clone()).or_default() += 1;
        inner.index.entry(key).or_default().insert(connection);
    }

    /// One subscription fewer.
    pub fn unwatch(&self, connection: u64, table: TableId, owner: &str) {
        let mut inner = self.lock();
        let key = (table, owner.to_owned());
        let Some(outlet) = inner.connections.get_mut(&connection) else {
            return;
        };
        let gone = match outlet.watching.get_mut(&key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                outlet.watching.remove(&key);
                true
            }
            None => false,
        };
        if gone {
            unindex(&mut inner.index, &key, connection);
        }
    }

    /// Hands one change set to every connection watching a row it changed.
    pub fn dispatch(&self, set: &Arc<ChangeSet>) {
        let inner = self.lock();
        let mut targets = HashSet::new();
        let mut keys = HashSet::new();
        for e in &set.events {
            if keys.insert((e.table, e.scope.as_str()))
                && let Some(conns) = inner.index.get(&(e.table, e.scope.clone()))
            {
                targets.extend(conns.iter().copied());
            }
        }
        for c in targets {
            if let Some(outlet) = inner.connections.get(&c)
                && outlet.tx.try_send(set.clone()).is_err()
            {
                outlet.missed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The dispatcher told of a lag in the feed itself: every connection missed them.
    fn missed_everywhere(&self, n: u64) {
        for outlet in self.lock().connections.values() {
            outlet.missed.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Runs the dispatcher until the feed closes.
    pub async fn run(self: Arc<Self>, mut feed: broadcast::Receiver<Arc<ChangeSet>>) {
        loop {
            match feed.recv().await {
                Ok(set) => self.dispatch(&set),
                Err(broadcast::error::RecvError::Lagged(n)) => self.missed_everywhere(n),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

fn unindex(index: &mut HashMap<(TableId, String), HashSet<u64>>, key: &(TableId, String), c: u64) {
    if let Some(set) = index.get_mut(key) {
        set.remove(&c);
        if set.is_empty() {
            index.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use folddb_log::LogIndex;
    use folddb_materializer::{RowEvent, Value};

    fn set(index: u64, table: u64, owner: &str) -> Arc<ChangeSet> {
        Arc::new(ChangeSet {
            index: LogIndex(index),
            events: vec![RowEvent {
                table: TableId(table),
                scope: owner.into(),
                pk: Value::BigInt(1),
                old: None,
                new: None,
            }],
        })
    }

    #[test]
    fn only_watchers_of_the_changed_rows_get_the_change_set() {
        let hub = Hub::default();
        let mut alice = hub.connect(1);
        let mut bob = hub.connect(2);
        hub.watch(1, TableId(7), "alice");
        hub.watch(1, TableId(7), "alice");
        hub.watch(2, TableId(7), "bob");
        hub.dispatch(&set(10, 7, "alice"));
        hub.dispatch(&set(11, 7, "bob"));
        hub.dispatch(&set(12, 8, "alice"));
        assert_eq!(alice.changes.try_recv().map(|s| s.index.0).ok(), Some(10));
        assert!(alice.changes.try_recv().is_err());
        assert_eq!(bob.changes.try_recv().map(|s| s.index.0).ok(), Some(11));
        // Two subscriptions on the pair: it stays watched until both are gone.
        hub.unwatch(1, TableId(7), "alice");
        hub.dispatch(&set(13, 7, "alice"));
        assert_eq!(alice.changes.try_recv().map(|s| s.index.0).ok(), Some(13));
        hub.unwatch(1, TableId(7), "alice");
        hub.dispatch(&set(14, 7, "alice"));
        assert!(alice.changes.try_recv().is_err());
    }

    #[test]
    fn a_full_queue_is_counted_not_hidden() {
        let hub = Hub::default();
        let inbox = hub.connect(1);
        hub.watch(1, TableId(1), "");
        for i in 0..CONNECTION_QUEUE as u64 + 3 {
            hub.dispatch(&set(i, 1, ""));
        }
        assert_eq!(inbox.missed.load(Ordering::Relaxed), 3);
        hub.disconnect(1);
        assert!(hub.lock().index.is_empty());
    }
}
