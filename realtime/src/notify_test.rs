//! The notification rules against a planned subscription over a real engine: a row
//! entering the filter is an insert, one leaving it a delete, one staying in it an update
//! told as a delta; other rows, tables and owners tell nothing.

use std::sync::Arc;

use folddb_materializer::{
    EventFold, FoldInPlace, HotStore, Role, RowEvent, RowVersion, TableId, Value,
};
use folddb_query::{Caller, Engine, SqlRequest};
use serde_json::json;

use super::*;

fn version(seq: i64, id: i64, room: &str, n: i32) -> RowVersion {
    RowVersion {
        seq,
        deleted: false,
        cells: vec![
            (1, Value::BigInt(id)),
            (2, Value::Text(room.into())),
            (3, Value::Int(n)),
        ],
    }
}

fn event(table: TableId, old: Option<RowVersion>, new: Option<RowVersion>) -> RowEvent {
    let pk = old.as_ref().or(new.as_ref()).expect("an image").cells[0]
        .1
        .clone();
    RowEvent {
        table,
        scope: String::new(),
        pk,
        old,
        new,
    }
}

#[test]
fn changes_become_inserts_updates_and_deletes_as_rows_cross_the_filter() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(HotStore::open_data_dir(dir.path()).expect("store"));
    let local = FoldInPlace::new(store.clone(), EventFold::default()).expect("proposer");
    let engine = Engine::new(store, Arc::new(local), 1);
    let admin = Caller {
        user: "admin".into(),
        role: Role::Dba,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sql = "CREATE NAMESPACE app; \
               CREATE SHARED TABLE app.t (id BIGINT PRIMARY KEY, room TEXT, n INT)";
    runtime
        .block_on(engine.execute(
            &admin,
            &SqlRequest {
                sql: sql.into(),
                params: None,
                namespace: None,
            },
        ))
        .expect("created");
    let q = engine
        .plan_live(&admin, "SELECT id, room, n FROM app.t WHERE room = 'r1'")
        .expect("planned");
    let t = q.def.id;
    let events = [
        // 1 enters (insert), 2 never matches.
        event(t, None, Some(version(10, 1, "r1", 5))),
        event(t, None, Some(version(11, 2, "r2", 5))),
        // 1 stays in with n changed: a delta naming the key, `_seq` and what changed.
        event(
            t,
            Some(version(10, 1, "r1", 5)),
            Some(version(12, 1, "r1", 6)),
        ),
        // 1 leaves (delete); 2 enters (insert).
        event(
            t,
            Some(version(12, 1, "r1", 6)),
            Some(version(13, 1, "r2", 6)),
        ),
        event(
            t,
            Some(version(11, 2, "r2", 5)),
            Some(version(14, 2, "r1", 5)),
        ),
        // 2 is deleted (a tombstone): a delete with its last image.
        event(
            t,
            Some(version(14, 2, "r1", 5)),
            Some(RowVersion {
                deleted: true,
                ..version(15, 2, "r1", 5)
            }),
        ),
        // Another table's row tells nothing.
        event(TableId(t.0 + 1), None, Some(version(16, 3, "r1", 1))),
    ];
    let notes = notify(&q, &events).expect("notified");
    let obj = |v: serde_json::Value| v.as_object().expect("object").clone();
    // `_seq` (a string, as 64-bit integers are on the wire) identifies the version.
    assert_eq!(
        notes,
        [
            Notification::Insert(obj(json!({"id": "1", "room": "r1", "n": 5, "_seq": "10"}))),
            Notification::Update {
                new: obj(json!({"id": "1", "room": "r1", "n": 6, "_seq": "12"})),
                old: obj(json!({"id": "1", "n": 5, "_seq": "10"})),
            },
            // A delete tells the old values, stamped with the `_seq` of the version that
            // removed the row from the view (API.md 2.4: newer than any the subscriber saw).
            Notification::Delete(obj(json!({"id": "1", "room": "r1", "n": 6, "_seq": "13"}))),
            Notification::Insert(obj(json!({"id": "2", "room": "r1", "n": 5, "_seq": "14"}))),
            Notification::Delete(obj(json!({"id": "2", "room": "r1", "n": 5, "_seq": "15"}))),
        ]
    );
    assert_eq!(newest_seq(&q, &events[..6]), Some(15));
    // With `_deleted` in the view, a tombstone's delete says so.
    let all = engine
        .plan_live(&admin, "SELECT * FROM app.t")
        .expect("planned");
    let deleted = notify(&all, &events[5..6]).expect("notified");
    let [Notification::Delete(row)] = deleted.as_slice() else {
        panic!("a delete: {deleted:?}")
    };
    assert_eq!(
        (&row["_seq"], &row["_deleted"]),
        (&json!("15"), &json!(true))
    );
    // The initial data already held 1 at `_seq` 10: its insert is not told again.
    let unseen =
        notify_unseen(&q, &events[..1], |key, seq| key == "1" && seq == 10).expect("notified");
    assert!(unseen.is_empty());
    assert_eq!(
        whole_update(&q, obj(json!({"id": "1", "room": "r1", "n": 9}))),
        Notification::Update {
            new: obj(json!({"id": "1", "room": "r1", "n": 9})),
            old: obj(json!({"id": "1"})),
        }
    );
}
