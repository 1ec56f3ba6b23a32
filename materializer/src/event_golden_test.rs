//! Golden bytes of the event codec: an entry's payload is in the log for ever, so the order
//! of `Op`'s variants and of their fields is a format (`materializer/FORMAT.md`, "Entries").
//! Reordering, inserting or removing a variant or field fails here.

use super::*;
use crate::catalog::{StorageDef, StorageKind, TableDef, TableId, TableKind, UserDef};
use crate::cold::store::{ColumnStats, SegmentColumn};
use crate::value::{DataType, Value};

fn user(id: &str) -> UserDef {
    UserDef {
        id: id.into(),
        role: crate::catalog::Role::Dba,
        email: None,
        password_hash: "h".into(),
        auth_type: "password".into(),
        created_at_ms: 1,
        updated_at_ms: 2,
        deleted_at_ms: None,
    }
}

fn storage() -> StorageDef {
    StorageDef {
        id: "s3a".into(),
        name: "S3 A".into(),
        description: None,
        kind: StorageKind::Filesystem,
        base_directory: "/srv/cold".into(),
        region: None,
        credentials: None,
        config: "{}".into(),
        shared_tables_template: "{namespace}/{tableName}".into(),
        user_tables_template: "{namespace}/{tableName}/{userId}".into(),
        created_at_ms: 0,
        updated_at_ms: 0,
    }
}

/// One op of every variant, with the variant index the payload carries for it.
fn every_op() -> Vec<(u8, Op)> {
    let t = TableId(7);
    let def = TableDef::example("app", "t", TableKind::User);
    vec![
        (
            0,
            Op::CreateNamespace {
                name: "app".into(),
                description: None,
                if_not_exists: false,
            },
        ),
        (
            1,
            Op::DropNamespace {
                name: "app".into(),
                if_exists: true,
            },
        ),
        (
            2,
            Op::AlterNamespace {
                name: "app".into(),
                description: Some("d".into()),
            },
        ),
        (
            3,
            Op::CreateTable {
                table: def.clone(),
                if_not_exists: false,
            },
        ),
        (
            4,
            Op::AlterTable {
                table: def,
                expected_version: 1,
            },
        ),
        (
            5,
            Op::DropTable {
                namespace: "app".into(),
                name: "t".into(),
                if_exists: false,
            },
        ),
        (
            6,
            Op::Insert {
                table: t,
                schema_version: 1,
                scope: "u".into(),
                rows: vec![],
            },
        ),
        (
            7,
            Op::UpdateV1 {
                table: t,
                schema_version: 1,
                scope: "u".into(),
                rows: vec![],
            },
        ),
        (
            8,
            Op::DeleteV1 {
                table: t,
                scope: "u".into(),
                rows: vec![(Value::BigInt(1), 5)],
            },
        ),
        (
            9,
            Op::PutUser {
                user: user("ann"),
                create: true,
            },
        ),
        (
            10,
            Op::Audit {
                actor: "root".into(),
                action: "a".into(),
                target: "t".into(),
                details: None,
                ip: None,
                subject: None,
            },
        ),
        (
            11,
            Op::Flush {
                table: t,
                job: "FL-1".into(),
            },
        ),
        (
            12,
            Op::Compact {
                table: t,
                job: "CO-1".into(),
            },
        ),
        (
            13,
            Op::EvictStream {
                table: t,
                job: "SE-1".into(),
            },
        ),
        (
            14,
            Op::CreateStorage {
                storage: storage(),
                if_not_exists: false,
            },
        ),
        (15, Op::AlterStorage { storage: storage() }),
        (
            16,
            Op::DropStorage {
                id: "s3a".into(),
                if_exists: false,
            },
        ),
        (
            17,
            Op::Setup {
                root: user("root"),
                dba: user("admin"),
            },
        ),
        (
            18,
            Op::CommitFlushInline {
                table: TableId(3),
                job: "FL-1".into(),
                as_of: 41,
                through_seq: 77,
                segments: vec![ScopeSegment {
                    scope: "alice".into(),
                    segment: segment(),
                }],
            },
        ),
        (
            19,
            Op::CommitCompact {
                table: TableId(3),
                job: "CO-1".into(),
                as_of: 42,
                horizon: 5,
                scopes: vec![CompactedScope {
                    scope: String::new(),
                    replaced: vec!["batch-FL-1.parquet".into()],
                    segment: None,
                }],
            },
        ),
        (
            20,
            Op::Update {
                table: t,
                schema_version: 2,
                scope: "u".into(),
                rows: vec![RowChange {
                    pk: Value::BigInt(1),
                    expected_seq: 5,
                    old: vec![(1, Value::BigInt(1)), (2, Value::Text("a".into()))],
                    cells: vec![(1, Value::BigInt(1)), (2, Value::Text("b".into()))],
                }],
            },
        ),
        (21, delete_with_image()),
        (
            22,
            Op::CommitFlush {
                table: TableId(3),
                job: "FL-2".into(),
                as_of: 43,
                through_seq: 79,
                segments: vec![ScopeSegment {
                    scope: String::new(),
                    segment: segment(),
                }],
            },
        ),
        (23, trim()),
        (
            24,
            Op::CreateTopic {
                id: "app.feed".into(),
                partitions: 4,
                if_not_exists: false,
                max_deliveries: Some(3),
                dead_letter: None,
                retention_seconds: Some(60),
            },
        ),
        (
            25,
            Op::DropTopic {
                id: "app.feed".into(),
                if_exists: true,
            },
        ),
        (
            26,
            Op::ClearTopic {
                id: "app.feed".into(),
            },
        ),
        (27, add_route()),
        (
            28,
            Op::AckTopic {
                topic: "app.feed".into(),
                group: "g".into(),
                partition: 0,
                upto: 9,
            },
        ),
        (
            29,
            Op::ClaimTopic {
                topic: "app.feed".into(),
                group: "g".into(),
                partition: 1,
                claim: "c1".into(),
                start: 0,
                limit: 10,
                visibility_ms: 60_000,
            },
        ),
        (
            30,
            Op::AckTopicRange {
                topic: "app.feed".into(),
                group: "g".into(),
                partition: 1,
                from: 3,
                to: 5,
            },
        ),
        (
            31,
            Op::SettleTopic {
                topic: "app.feed".into(),
                group: "g".into(),
                partition: 1,
                from: 3,
                to: 3,
                reject: true,
            },
        ),
        (
            32,
            Op::TrimTopic {
                topic: "app.feed".into(),
                partition: 0,
                before: 10,
            },
        ),
        (
            33,
            Op::SetTopicRetention {
                topic: "app.feed".into(),
                seconds: None,
                max_bytes: Some(1 << 20),
            },
        ),
        (
            34,
            Op::CreateVectorIndex {
                namespace: "app".into(),
                table: "docs".into(),
                column: "e".into(),
                metric: crate::catalog::VectorMetric::Cosine,
            },
        ),
        (
            35,
            Op::DropVectorIndex {
                namespace: "app".into(),
                table: "docs".into(),
                column: "e".into(),
            },
        ),
    ]
}

/// A route of the DELETEs of table 3 where column 2 is above 1 into topic `t`, with the key
/// payload.
fn add_route() -> Op {
    Op::AddTopicRoute {
        topic: "t".into(),
        route: crate::topics::Route {
            table: TableId(3),
            table_name: "a.b".into(),
            op: crate::topics::RouteOp::Delete,
            payload: crate::topics::Payload::Key,
            filter: Some(crate::topics::Filter::Cmp {
                column: 2,
                op: crate::topics::CmpOp::Gt,
                value: Value::Int(1),
            }),
            filter_sql: Some("n > 1".into()),
        },
    }
}

/// [`add_route`], byte for byte. Read as: codec version 1, variant 27 (AddTopicRoute):
/// topic "t", route: table 3, table_name "a.b", op variant 2 (Delete), payload variant 0
/// (Key), filter Some (01): Cmp (variant 0), column 2, op Gt (variant 4), value Int (variant
/// 3) zigzag 02 = 1; filter_sql Some (01) of 5 bytes "n > 1".
const GOLDEN_ROUTE: &str = "011b01740303612e62020001000204030201056e203e2031";

#[test]
fn a_route_encodes_to_its_golden_bytes() {
    let bytes = codec::encode(&add_route());
    assert_eq!(hex(&bytes), GOLDEN_ROUTE);
}

/// A hot-tier trim of the keys from 0x0001 up to (not including) 0x00ff.
fn trim() -> Op {
    Op::TrimHot {
        table: TableId(3),
        from: vec![0, 1],
        to: Some(vec![0, 0xff]),
    }
}

/// A delete as builds with the cold key index propose it: with the row's old image.
fn delete_with_image() -> Op {
    Op::Delete {
        table: TableId(3),
        scope: "alice".into(),
        rows: vec![RowDelete {
            pk: Value::BigInt(7),
            expected_seq: 77,
            old: vec![(1, Value::BigInt(7)), (2, Value::Null)],
        }],
    }
}

/// [`delete_with_image`], byte for byte. Read as: codec version 1, variant 21 (Delete):
/// table 3, scope "alice", 1 row: pk BigInt (variant 4) zigzag 0x0e = 7, expected `_seq`
/// zigzag 0x9a = 77, old image of 2 cells: (1, BigInt 7), (2, Null = variant 0).
const GOLDEN_DELETE: &str = "01150305616c69636501040e9a0201040e0200";

#[test]
fn a_delete_with_its_old_image_encodes_to_its_golden_bytes() {
    let op = delete_with_image();
    let bytes = codec::encode(&op);
    assert_eq!(hex(&bytes), GOLDEN_DELETE);
    assert_eq!(codec::decode::<Op>(&bytes, "an op").expect("decodes"), op);
}

/// A segment's description as a commit entry carries it: its fields are a log format too.
pub(crate) fn segment() -> SegmentMeta {
    SegmentMeta {
        file: "batch-FL-1.parquet".into(),
        index: 41,
        rows: 2,
        tombstones: 1,
        bytes: 900,
        min_seq: 70,
        max_seq: 77,
        min_key: "01".into(),
        max_key: "02".into(),
        schema_version: 1,
        columns: vec![SegmentColumn {
            id: 1,
            name: "id".into(),
            data_type: DataType::BigInt,
        }],
        stats: vec![ColumnStats {
            name: "id".into(),
            nulls: 0,
            min: Some("1".into()),
            max: None,
        }],
    }
}

/// A flush commit, byte for byte. Read as: codec version 1, variant 18 (CommitFlushInline): table
/// 3, job "FL-1", as_of 41, through_seq zigzag 0x9a = 77, 1 segment: scope "alice", file
/// "batch-FL-1.parquet", index 41, rows 2, tombstones 1, bytes 900 (`fb` + 0x0384 LE),
/// min_seq 70 and max_seq 77 (zigzag 0x8c, 0x9a), keys "01" and "02", schema version 1, 1
/// column (id 1, "id", BigInt = variant 3), 1 stat ("id", 0 nulls, Some "1", None).
const GOLDEN_COMMIT: &str = "01120304464c2d31299a0105616c6963651262617463682d464c2d312e70617271\
                             756574290201fb84038c9a02303102303201010102696403010269640001013100";

#[test]
fn a_commit_entry_encodes_to_its_golden_bytes() {
    let (_, op) = every_op().swap_remove(18);
    let bytes = codec::encode(&op);
    assert_eq!(hex(&bytes), GOLDEN_COMMIT);
    assert_eq!(codec::decode::<Op>(&bytes, "an op").expect("decodes"), op);
}

/// Today's flush commit has the fields of the inline one, in the same order: its bytes are
/// [`GOLDEN_COMMIT`]'s but for the variant, 22.
#[test]
fn a_flush_commit_keeps_the_inline_commits_layout() {
    let Op::CommitFlushInline {
        table,
        job,
        as_of,
        through_seq,
        segments,
    } = every_op().swap_remove(18).1
    else {
        panic!("variant 18 is the inline commit");
    };
    let op = Op::CommitFlush {
        table,
        job,
        as_of,
        through_seq,
        segments,
    };
    let bytes = codec::encode(&op);
    assert_eq!(hex(&bytes), GOLDEN_COMMIT.replacen("0112", "0116", 1));
}

/// A trim, byte for byte. Read as: codec version 1, variant 23 (TrimHot): table 3, `from`
/// of 2 bytes 00 01, `to` Some (01) of 2 bytes 00 ff.
const GOLDEN_TRIM: &str = "011703020001010200ff";

#[test]
fn a_trim_entry_encodes_to_its_golden_bytes() {
    let bytes = codec::encode(&trim());
    assert_eq!(hex(&bytes), GOLDEN_TRIM);
    assert_eq!(
        codec::decode::<Op>(&bytes, "an op").expect("decodes"),
        trim()
    );
}

#[test]
fn every_op_variant_keeps_its_index_in_the_payload() {
    for (index, op) in every_op() {
        let bytes = codec::encode(&op);
        assert_eq!(bytes[0], codec::VERSION);
        assert_eq!(bytes[1], index, "{op:?}");
        let back: Op = codec::decode(&bytes, "an op").expect("decodes");
        assert_eq!(back, op);
    }
}

/// A two-command entry: an INSERT of every common value type and a DELETE, byte for byte.
/// Read as: codec version 1, 2 commands; stamp (varint u64, `fd` + 8 bytes LE), actor
/// "alice", 1 op, variant 6 (Insert): table 3, schema version 2, scope "alice", 1 row of 5
/// cells: (1, BigInt zigzag 0x53 = -42), (2, Text "héllo"), (3, Null), (4, Double 1.5 LE),
/// (5, Boolean true); then stamp + 1, actor "svc", variant 8 (DeleteV1, as codec 1 entries
/// before old images carry it): table 3, scope "", 1 row (BigInt 7, expected `_seq` -1).
const GOLDEN_ENTRY: &str = "0102fd00280fd29a01000005616c6963650106030205616c696365010501045302\
                            080668c3a96c6c6f03000406000000000000f83f050101fd01280fd29a01000003\
                            7376630108030001040e01";

fn golden_commands() -> Vec<Command> {
    vec![
        Command {
            stamp_ms: 1_764_460_800_000,
            actor: "alice".into(),
            ops: vec![Op::Insert {
                table: TableId(3),
                schema_version: 2,
                scope: "alice".into(),
                rows: vec![vec![
                    (1, Value::BigInt(-42)),
                    (2, Value::Text("héllo".into())),
                    (3, Value::Null),
                    (4, Value::Double(1.5)),
                    (5, Value::Boolean(true)),
                ]],
            }],
        },
        Command {
            stamp_ms: 1_764_460_800_001,
            actor: "svc".into(),
            ops: vec![Op::DeleteV1 {
                table: TableId(3),
                scope: String::new(),
                rows: vec![(Value::BigInt(7), SEQ_OWN)],
            }],
        },
    ]
}

const SEQ_OWN: i64 = crate::event_fold::SEQ_OWN_WRITE;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn an_entry_encodes_to_its_golden_bytes_and_back() {
    let commands = golden_commands();
    let bytes = encode_entry(&commands);
    assert_eq!(hex(&bytes), GOLDEN_ENTRY);
    assert_eq!(decode_entry(&bytes).expect("decodes"), commands);
}

#[test]
fn outcomes_encode_to_their_golden_bytes() {
    let outcomes = vec![
        Outcome::Applied(vec![OpResult {
            affected: 3,
            ..OpResult::default()
        }]),
        Outcome::Rejected {
            op: 1,
            error: "no".into(),
            kind: RejectKind::Conflict,
        },
    ];
    let bytes = encode_outcomes(&outcomes);
    assert_eq!(hex(&bytes), GOLDEN_OUTCOMES);
    assert_eq!(decode_outcomes(&bytes).expect("decodes"), outcomes);
}

/// Version 1, 2 outcomes: Applied (variant 0) of 1 result {affected 3, no seqs, no schema
/// version}; Rejected (variant 1) at op 1 with "no", kind Conflict (variant 3).
const GOLDEN_OUTCOMES: &str = "010200010300000101026e6f03";

#[test]
fn a_row_versions_head_reads_without_its_cells() {
    let v = crate::RowVersion {
        seq: -77,
        deleted: true,
        cells: vec![(1, Value::Text("x".repeat(300)))],
    };
    assert_eq!(
        crate::RowVersion::head_of(&codec::encode(&v)).expect("head"),
        crate::row::VersionHead {
            seq: -77,
            deleted: true
        }
    );
    assert!(
        crate::RowVersion::head_of(&[9, 1]).is_err(),
        "another codec version"
    );
}

/// `ALTER TABLE app.docs CREATE VECTOR INDEX e USING L2`, byte for byte. Read as: codec
/// version 1, variant 34 (CreateVectorIndex): namespace "app", table "docs", column "e",
/// metric variant 1 (L2).
const GOLDEN_VECTOR_INDEX: &str = "01220361707004646f6373016501";

#[test]
fn a_vector_index_encodes_to_its_golden_bytes() {
    let op = Op::CreateVectorIndex {
        namespace: "app".into(),
        table: "docs".into(),
        column: "e".into(),
        metric: crate::catalog::VectorMetric::L2,
    };
    let bytes = codec::encode(&op);
    assert_eq!(hex(&bytes), GOLDEN_VECTOR_INDEX);
    assert_eq!(codec::decode::<Op>(&bytes, "an op").expect("decodes"), op);
}
