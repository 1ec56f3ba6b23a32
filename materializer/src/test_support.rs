//! Helpers shared by the crate's tests: one SHARED table `app.t` (id BIGINT key, a TEXT
//! column) and the commands that fill it.

use crate::catalog::{TableDef, TableId, TableKind};
use crate::event::{Command, Op};
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
