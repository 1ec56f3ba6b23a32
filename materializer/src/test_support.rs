//! Helpers shared by the crate's tests: one SHARED table `app.t` (id BIGINT key, a TEXT
//! column) and the commands that fill it.

use crate::SEQ_OWN_WRITE;
use crate::catalog::{TableDef, TableId, TableKind};
use crate::event::{Command, Op, RowChange, RowDelete};
use crate::value::Value;

pub(crate) fn table() -> TableDef {
    TableDef::example("app", "t", TableKind::Shared)
}

pub(crate) fn cmd(stamp_ms: u64, ops: Vec<Op>) -> Command {
    Command {
        stamp_ms,
        actor: "t".into(),
        ops,
    }
}

pub(crate) fn insert(ids: &[i64]) -> Op {
    Op::Insert {
        table: TableId(1),
        schema_version: 1,
        scope: String::new(),
        rows: ids
            .iter()
            .map(|i| vec![(1, Value::BigInt(*i)), (2, Value::Text(format!("v{i}")))])
            .collect(),
    }
}

pub(crate) fn setup() -> Vec<Command> {
    vec![
        cmd(
            1,
            vec![Op::CreateNamespace {
                name: "app".into(),
                description: None,
                if_not_exists: false,
            }],
        ),
        cmd(
            1,
            vec![Op::CreateTable {
                table: table(),
                if_not_exists: false,
            }],
        ),
    ]
}

/// Row 1's update from `v1` (the version with `_seq` `seq`) to `new`, then its delete by the
/// same command: the two ops of one command.
pub(crate) fn update_then_delete(seq: i64) -> Vec<Op> {
    let update = Op::Update {
        table: TableId(1),
        schema_version: 1,
        scope: String::new(),
        rows: vec![RowChange {
            pk: Value::BigInt(1),
            expected_seq: seq,
            old: vec![(1, Value::BigInt(1)), (2, Value::Text("v1".into()))],
            cells: vec![(1, Value::BigInt(1)), (2, Value::Text("new".into()))],
        }],
    };
    let delete = Op::Delete {
        table: TableId(1),
        scope: String::new(),
        rows: vec![own_delete(1)],
    };
    vec![update, delete]
}

/// A delete of row `id` that this same command wrote.
pub(crate) fn own_delete(id: i64) -> RowDelete {
    RowDelete {
        pk: Value::BigInt(id),
        expected_seq: SEQ_OWN_WRITE,
        old: Vec::new(),
    }
}
