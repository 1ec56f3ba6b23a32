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

use folddb_materializer::{ChangeSet, RowEvent, TableId};
use folddb_query::live::Guard;
use tokio::sync::{broadcast, mpsc};

/// Change sets queued per connection before it counts as lagging.
pub const CONNECTION_QUEUE: usize = 4096;

/// The change messages one subscription gets from one change set, encoded once and shared
/// by every subscription that gets the same rows: the same SQL over the same version of the
/// table's schema, for the same user and role. Each entry is the row's key, the `_seq` of
/// the version it tells of, whether the row is in the view after it, and the message's JSON
/// text without its subscription id (see `session::with_id`).
pub type Encoded = crate::Result<Vec<(String, i64, bool, Arc<str>)>>;

/// Who gets the same rows from a change set: user, role, SQL, and the table and schema
/// version the SQL was planned against.
pub type EncodingKey = (String, &'static str, String, TableId, u32);

/// One change set on its way to the connections it concerns, with the encodings they share.
#[derive(Debug)]
pub struct Delivery {
    pub set: Arc<ChangeSet>,
    encoded: Mutex<HashMap<EncodingKey, Arc<Encoded>>>,
}

impl Delivery {
    pub fn new(set: Arc<ChangeSet>) -> Delivery {
        Delivery {
            set,
            encoded: Mutex::default(),
        }
    }

    /// The encoding for `key`, computed by the first connection that asks.
    pub fn shared(&self, key: EncodingKey, encode: impl FnOnce() -> Encoded) -> Arc<Encoded> {
        let mut cache = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(key)
            .or_insert_with(|| Arc::new(encode()))
            .clone()
    }
}

impl std::ops::Deref for Delivery {
    type Target = ChangeSet;
    fn deref(&self) -> &ChangeSet {
        &self.set
    }
}

/// A connection's end of the hub.
#[derive(Debug)]
pub struct Inbox {
    pub changes: mpsc::Receiver<Arc<Delivery>>,
    /// Change sets dropped because the queue was full (or the dispatcher lagged); the
    /// connection takes and reports them.
    pub missed: Arc<AtomicU64>,
}

/// What a subscription watches: a table's rows of one owner, and, when its filter has one,
/// the [`Guard`] every row it can be told of satisfies in its old or new image.
type Pair = (TableId, String);
type Watch = (Pair, Option<Guard>);

#[derive(Debug)]
struct Outlet {
    tx: mpsc::Sender<Arc<Delivery>>,
    missed: Arc<AtomicU64>,
    /// What the connection watches → how many of its subscriptions watch it.
    watching: HashMap<Watch, usize>,
}

/// The connections watching one (table, owner).
#[derive(Debug, Default)]
struct Watchers {
    /// Those with a subscription without a guard: every change of the pair.
    all: HashSet<u64>,
    /// Guarded ones, by column, then value.
    by: HashMap<u32, HashMap<String, HashSet<u64>>>,
}

impl Watchers {
    fn add(&mut self, guard: &Option<Guard>, c: u64) {
        match guard {
            None => {
                self.all.insert(c);
            }
            Some(g) => {
                self.by
                    .entry(g.column)
                    .or_default()
                    .entry(g.value.clone())
                    .or_default()
                    .insert(c);
            }
        }
    }

    fn remove(&mut self, guard: &Option<Guard>, c: u64) {
        match guard {
            None => {
                self.all.remove(&c);
            }
            Some(g) => {
                if let Some(values) = self.by.get_mut(&g.column) {
                    if let Some(conns) = values.get_mut(&g.value) {
                        conns.remove(&c);
                        if conns.is_empty() {
                            values.remove(&g.value);
                        }
                    }
                    if values.is_empty() {
                        self.by.remove(&g.column);
                    }
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.all.is_empty() && self.by.is_empty()
    }

    /// The connections a change of a row with these images may concern.
    fn targets(&self, e: &RowEvent, out: &mut HashSet<u64>) {
        out.extend(self.all.iter().copied());
        for (column, values) in &self.by {
            for image in [&e.old, &e.new].into_iter().flatten() {
                match image.cell(*column) {
                    Some(v) => {
                        if let Some(conns) = values.get(&v.plain()) {
                            out.extend(conns.iter().copied());
                        }
                    }
                    // No cell (written before the column existed): cannot be ruled out.
                    None => values.values().for_each(|c| out.extend(c.iter().copied())),
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    connections: HashMap<u64, Outlet>,
    index: HashMap<Pair, Watchers>,
}

#[derive(Debug)]
pub struct Hub {
    inner: Mutex<Inner>,
    queue: usize,
    /// The index of the last change set dispatched: what wakes log tails.
    applied: tokio::sync::watch::Sender<u64>,
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
            applied: tokio::sync::watch::channel(0).0,
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
            for (pair, guard) in outlet.watching.keys() {
                unindex(&mut inner.index, pair, guard, connection);
            }
        }
    }

    /// One more subscription of `connection` on `table`'s rows of `owner` (only those
    /// satisfying `guard`, when given).
    pub fn watch(&self, connection: u64, table: TableId, owner: &str, guard: Option<&Guard>) {
        let mut inner = self.lock();
        let key: Watch = ((table, owner.to_owned()), guard.cloned());
        let Some(outlet) = inner.connections.get_mut(&connection) else {
            return;
        };
        *outlet.watching.entry(key.clone()).or_default() += 1;
        let (pair, guard) = key;
        inner.index.entry(pair).or_default().add(&guard, connection);
    }

    /// One subscription fewer.
    pub fn unwatch(&self, connection: u64, table: TableId, owner: &str, guard: Option<&Guard>) {
        let mut inner = self.lock();
        let key: Watch = ((table, owner.to_owned()), guard.cloned());
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
            unindex(&mut inner.index, &key.0, &key.1, connection);
        }
    }

    /// Hands one change set to every connection watching a row it changed.
    pub fn dispatch(&self, set: &Arc<ChangeSet>) {
        let inner = self.lock();
        let delivery = Arc::new(Delivery::new(set.clone()));
        let mut targets = HashSet::new();
        let mut last: Option<(TableId, &str, Option<&Watchers>)> = None;
        for e in &set.events {
            let watchers = match last {
                Some((t, o, w)) if t == e.table && o == e.scope => w,
                _ => {
                    let w = inner.index.get(&(e.table, e.scope.clone()));
                    last = Some((e.table, e.scope.as_str(), w));
                    w
                }
            };
            if let Some(w) = watchers {
                w.targets(e, &mut targets);
            }
        }
        let mut dropped = 0u64;
        for c in targets {
            if let Some(outlet) = inner.connections.get(&c)
                && outlet.tx.try_send(delivery.clone()).is_err()
            {
                outlet.missed.fetch_add(1, Ordering::Relaxed);
                dropped += 1;
            }
        }
        if dropped > 0 {
            metrics::counter!("folddb_live_queue_drops_total").increment(dropped);
        }
    }

    /// Changes as each applied change set is dispatched (its log index): log tails wait on
    /// it for more to read.
    pub fn applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// The state was replaced under every connection (a snapshot installed): each catches
    /// up from the journal, as one that missed change sets does.
    fn resync_everywhere(&self) {
        let inner = self.lock();
        for outlet in inner.connections.values() {
            outlet.missed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The dispatcher told of a lag in the feed itself: every connection missed them.
    fn missed_everywhere(&self, n: u64) {
        let inner = self.lock();
        for outlet in inner.connections.values() {
            outlet.missed.fetch_add(n, Ordering::Relaxed);
        }
        metrics::counter!("folddb_live_queue_drops_total")
            .increment(n.saturating_mul(inner.connections.len() as u64));
    }

    /// Connections, and the change sets queued for them: in all, and at most for one.
    pub fn queues(&self) -> (usize, usize, usize) {
        let inner = self.lock();
        let depths = inner
            .connections
            .values()
            .map(|o| o.tx.max_capacity() - o.tx.capacity());
        let (mut total, mut max) = (0, 0);
        for d in depths {
            total += d;
            max = max.max(d);
        }
        (inner.connections.len(), total, max)
    }

    /// Runs the dispatcher until the feed closes.
    pub async fn run(self: Arc<Self>, mut feed: broadcast::Receiver<Arc<ChangeSet>>) {
        loop {
            match feed.recv().await {
                // Every connection catches up from the journal, as after a lag.
                Ok(set) if set.replaced => {
                    self.resync_everywhere();
                    self.applied.send_replace(set.index.0);
                }
                Ok(set) => {
                    self.dispatch(&set);
                    self.applied.send_replace(set.index.0);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => self.missed_everywhere(n),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

fn unindex(index: &mut HashMap<Pair, Watchers>, pair: &Pair, guard: &Option<Guard>, c: u64) {
    if let Some(w) = index.get_mut(pair) {
        w.remove(guard, c);
        if w.is_empty() {
            index.remove(pair);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use folddb_log::LogIndex;
    use folddb_materializer::{RowVersion, Value};

    fn set(index: u64, table: u64, owner: &str) -> Arc<ChangeSet> {
        Arc::new(ChangeSet {
            index: LogIndex(index),
            replaced: false,
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
        hub.watch(1, TableId(7), "alice", None);
        hub.watch(1, TableId(7), "alice", None);
        hub.watch(2, TableId(7), "bob", None);
        hub.dispatch(&set(10, 7, "alice"));
        hub.dispatch(&set(11, 7, "bob"));
        hub.dispatch(&set(12, 8, "alice"));
        assert_eq!(alice.changes.try_recv().map(|s| s.index.0).ok(), Some(10));
        assert!(alice.changes.try_recv().is_err());
        assert_eq!(bob.changes.try_recv().map(|s| s.index.0).ok(), Some(11));
        // Two subscriptions on the pair: it stays watched until both are gone.
        hub.unwatch(1, TableId(7), "alice", None);
        hub.dispatch(&set(13, 7, "alice"));
        assert_eq!(alice.changes.try_recv().map(|s| s.index.0).ok(), Some(13));
        hub.unwatch(1, TableId(7), "alice", None);
        hub.dispatch(&set(14, 7, "alice"));
        assert!(alice.changes.try_recv().is_err());
    }

    #[test]
    fn a_full_queue_is_counted_not_hidden() {
        let hub = Hub::default();
        let inbox = hub.connect(1);
        hub.watch(1, TableId(1), "", None);
        for i in 0..CONNECTION_QUEUE as u64 + 3 {
            hub.dispatch(&set(i, 1, ""));
        }
        assert_eq!(inbox.missed.load(Ordering::Relaxed), 3);
        hub.disconnect(1);
        assert!(hub.lock().index.is_empty());
    }

    fn row(table: u64, n: i64, old: Option<&str>, new: Option<&str>) -> Arc<ChangeSet> {
        let image = |room: &str| RowVersion {
            seq: n,
            deleted: false,
            cells: vec![(1, Value::BigInt(n)), (2, Value::Text(room.into()))],
        };
        Arc::new(ChangeSet {
            index: LogIndex(n as u64),
            replaced: false,
            events: vec![RowEvent {
                table: TableId(table),
                scope: String::new(),
                pk: Value::BigInt(n),
                old: old.map(image),
                new: new.map(image),
            }],
        })
    }

    #[test]
    fn guarded_watchers_get_only_changes_whose_images_hold_their_value() {
        let hub = Hub::default();
        let mut a = hub.connect(1);
        let mut b = hub.connect(2);
        let mut all = hub.connect(3);
        let room = |v: &str| Guard {
            column: 2,
            value: v.into(),
        };
        hub.watch(1, TableId(7), "", Some(&room("a")));
        hub.watch(2, TableId(7), "", Some(&room("b")));
        hub.watch(3, TableId(7), "", None);
        hub.dispatch(&row(7, 1, None, Some("a")));
        hub.dispatch(&row(7, 2, None, Some("c")));
        // Moving a row from b to a concerns both: it leaves one filter and enters the other.
        hub.dispatch(&row(7, 3, Some("b"), Some("a")));
        let got = |i: &mut Inbox| {
            let mut v = Vec::new();
            while let Ok(s) = i.changes.try_recv() {
                v.push(s.index.0);
            }
            v
        };
        assert_eq!(got(&mut a), [1, 3]);
        assert_eq!(got(&mut b), [3]);
        assert_eq!(got(&mut all), [1, 2, 3]);
        // A row without the guarded cell cannot be ruled out.
        hub.dispatch(&Arc::new(ChangeSet {
            index: LogIndex(4),
            replaced: false,
            events: vec![RowEvent {
                table: TableId(7),
                scope: String::new(),
                pk: Value::BigInt(4),
                old: None,
                new: Some(RowVersion {
                    seq: 4,
                    deleted: false,
                    cells: vec![(1, Value::BigInt(4))],
                }),
            }],
        }));
        assert_eq!((got(&mut a), got(&mut b)), (vec![4], vec![4]));
        hub.unwatch(1, TableId(7), "", Some(&room("a")));
        hub.unwatch(2, TableId(7), "", Some(&room("b")));
        hub.unwatch(3, TableId(7), "", None);
        assert!(hub.lock().index.is_empty());
    }

    #[test]
    fn a_delivery_encodes_once_per_key() {
        let d = Delivery::new(set(1, 7, ""));
        let calls = std::cell::Cell::new(0);
        let key = |sql: &str| ("u".to_owned(), "user", sql.to_owned(), TableId(7), 1);
        let encode = || {
            calls.set(calls.get() + 1);
            Ok(vec![("1".to_owned(), 1, true, Arc::from("{}"))])
        };
        let a = d.shared(key("SELECT * FROM a.t"), encode);
        let b = d.shared(key("SELECT * FROM a.t"), encode);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(calls.get(), 1);
        d.shared(key("SELECT id FROM a.t"), encode);
        assert_eq!(calls.get(), 2);
    }
}
