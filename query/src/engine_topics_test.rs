//! Tests of the topic engine against a store folded in place (a one-node log without raft):
//! what a consumer gets when the log applies other consumers' entries around its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use folddb_materializer::event::{decode_outcomes, encode_entry};
use folddb_materializer::{
    Command, EventFold, Fold, HotBatch, HotStore, LogIndex, Op, Outcome, Propose, ProposeFuture,
    Role, Term,
};

use super::*;
use crate::request::SqlRequest;

/// Applies each command as the next entry, at once; after a claim, applies the command
/// queued in `after_claim` too (another client's entry that the log orders right after it).
struct InPlace {
    store: Arc<HotStore>,
    index: AtomicU64,
    after_claim: Mutex<Option<Command>>,
}

impl InPlace {
    fn apply(&self, command: Command) -> Outcome {
        let index = LogIndex(self.index.fetch_add(1, Ordering::SeqCst) + 1);
        let mut batch = HotBatch::default();
        let out = EventFold::default()
            .fold(&self.store, index, &encode_entry(&[command]), &mut batch)
            .expect("fold");
        self.store.apply(index, Term(1), batch).expect("apply");
        decode_outcomes(&out).expect("outcomes").remove(0)
    }
}

impl Propose for InPlace {
    fn propose(&self, command: Command) -> ProposeFuture<'_> {
        Box::pin(async move {
            let claim = command
                .ops
                .iter()
                .any(|o| matches!(o, Op::ClaimTopic { .. }));
            let outcome = self.apply(command);
            if claim {
                let next = self.after_claim.lock().expect("lock").take();
                if let Some(next) = next {
                    self.apply(next);
                }
            }
            Ok(outcome)
        })
    }
}

#[tokio::test]
async fn a_claim_another_consumers_ack_passed_returns_nothing_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(HotStore::open(dir.path()).expect("open"));
    let log = Arc::new(InPlace {
        store: store.clone(),
        index: AtomicU64::new(0),
        after_claim: Mutex::new(None),
    });
    let engine = Engine::new(store, log.clone(), 1);
    let admin = Caller {
        user: "root".into(),
        role: Role::System,
    };
    for sql in [
        "CREATE NAMESPACE app",
        "CREATE SHARED TABLE app.t (id BIGINT PRIMARY KEY)",
        "CREATE TOPIC app.q",
        "ALTER TOPIC app.q ADD SOURCE app.t ON INSERT",
        "INSERT INTO app.t (id) VALUES (1), (2), (3)",
    ] {
        let request = SqlRequest {
            sql: sql.into(),
            params: None,
            namespace: None,
        };
        engine.execute(&admin, &request).await.expect(sql);
    }
    let request = ConsumeRequest {
        topic: "app.q".into(),
        group: Some("g".into()),
        partition: 0,
        start: ConsumeStart::Earliest,
        limit: 2,
    };
    // Another consumer acknowledges everything right after this one's claim is applied.
    *log.after_claim.lock().expect("lock") = Some(Command {
        stamp_ms: now_ms(),
        actor: "other".into(),
        ops: vec![Op::AckTopic {
            topic: "app.q".into(),
            group: "g".into(),
            partition: 0,
            upto: 2,
        }],
    });
    let started = std::time::Instant::now();
    let got = engine
        .consume_claimed(&admin, &request)
        .await
        .expect("consumed");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "answered at once, not after waiting out its deadline"
    );
    assert!(got.messages.is_empty(), "{got:?}");
    assert_eq!(got.next_offset, 2);
    // Nothing is left to claim, and a later claim starts after the acknowledged offset.
    let again = engine
        .consume_claimed(&admin, &request)
        .await
        .expect("consumed");
    assert!(again.messages.is_empty(), "{again:?}");
}
