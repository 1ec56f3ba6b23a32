//! Tests of `dialect`, kept beside it (STYLE.md: a sibling `*_test.rs` once they grow).
use super::*;
use proptest::prelude::*;

proptest! {
    /// No text makes the classifier panic; it answers a statement or an error.
    #[test]
    fn classify_never_panics(sql in "(?s).{0,120}") {
        let _ = classify(&sql);
    }

    #[test]
    fn ddl_prefixes_with_noise_never_panic(tail in "[a-z0-9 (),'=._-]{0,80}") {
        for head in ["CREATE TABLE ", "CREATE USER TABLE t (", "ALTER TABLE t ", "DROP ", "SHOW ", "DESCRIBE TABLE "] {
            let _ = classify(&format!("{head}{tail}"));
        }
    }
}

#[test]
fn keyword_calls_lose_their_parentheses_and_nothing_else_changes() {
    assert_eq!(
        normalize_keyword_calls("UPDATE t SET o = CURRENT_USER( ) WHERE x = 'current_user()'"),
        "UPDATE t SET o = CURRENT_USER WHERE x = 'current_user()'"
    );
    assert_eq!(
        normalize_keyword_calls("SELECT current_role(), 1"),
        "SELECT current_role, 1"
    );
    let plain = "SELECT \"current_user\"() FROM t";
    assert_eq!(normalize_keyword_calls(plain), plain);
}

#[test]
fn classifies_by_leading_words() {
    assert_eq!(classify("select 1"), Ok(Statement::Query));
    assert_eq!(
        classify("WITH x AS (SELECT 1) SELECT * FROM x"),
        Ok(Statement::Query)
    );
    assert_eq!(classify("insert into t values (1)"), Ok(Statement::Insert));
    assert_eq!(classify("EXPLAIN SELECT 1"), Ok(Statement::Meta));
    assert_eq!(classify("BEGIN"), Ok(Statement::Begin));
    assert_eq!(classify("start transaction"), Ok(Statement::Begin));
    assert_eq!(classify("COMMIT"), Ok(Statement::Commit));
    assert_eq!(classify("use app"), Ok(Statement::Use("app".into())));
    assert_eq!(
        classify("SET NAMESPACE app"),
        Ok(Statement::Use("app".into()))
    );
    assert_eq!(
        classify("CREATE NAMESPACE IF NOT EXISTS App"),
        Ok(Statement::CreateNamespace {
            name: "app".into(),
            if_not_exists: true
        })
    );
    assert!(classify("CREATE NAMESPACE system").is_err());
    assert!(classify("GRANT ALL ON x TO y").is_err());
    assert!(classify("CREATE NAMESPACE 1abc").is_err());
}

#[test]
fn parses_create_table_with_options() {
    let sql = "CREATE USER TABLE IF NOT EXISTS app.todos (
        id BIGINT PRIMARY KEY DEFAULT SNOWFLAKE_ID(),
        title TEXT NOT NULL,
        price DECIMAL(10, 2) DEFAULT 0,
        emb EMBEDDING(3),
        at TIMESTAMP DEFAULT NOW(),
        n SERIAL
    ) WITH (FLUSH_POLICY = 'rows:100', STORAGE_ID = 'local')";
    let Ok(Statement::CreateTable(t)) = classify(sql) else {
        panic!("{:?}", classify(sql));
    };
    assert_eq!(t.kind, Some(TableKind::User));
    assert!(t.if_not_exists);
    assert_eq!(t.table.namespace.as_deref(), Some("app"));
    assert_eq!(t.columns.len(), 6);
    assert!(t.columns[0].primary_key);
    assert_eq!(
        t.columns[0].default,
        Some(DefaultSpec::Expr(DefaultExpr::SnowflakeId))
    );
    assert!(t.columns[1].not_null);
    assert_eq!(
        t.columns[2].data_type,
        DataType::Decimal {
            precision: 10,
            scale: 2
        }
    );
    assert_eq!(t.columns[3].data_type, DataType::Embedding(3));
    assert_eq!(
        t.columns[4].default,
        Some(DefaultSpec::Expr(DefaultExpr::Now))
    );
    assert_eq!(
        t.columns[5].default,
        Some(DefaultSpec::Expr(DefaultExpr::SnowflakeId))
    );
    assert_eq!(
        t.options,
        vec![
            ("FLUSH_POLICY".into(), "rows:100".into()),
            ("STORAGE_ID".into(), "local".into())
        ]
    );
}

#[test]
fn parses_alter_table_forms() {
    let alter = |sql: &str| match classify(sql) {
        Ok(Statement::AlterTable { change, .. }) => change,
        other => panic!("{sql}: {other:?}"),
    };
    assert!(matches!(
        alter("ALTER TABLE t ADD COLUMN c INT NOT NULL DEFAULT 1"),
        AlterChange::AddColumn(ColumnSpec { not_null: true, .. })
    ));
    assert_eq!(
        alter("ALTER TABLE t DROP c"),
        AlterChange::DropColumn("c".into())
    );
    assert_eq!(
        alter("ALTER TABLE t RENAME COLUMN a TO b"),
        AlterChange::RenameColumn {
            from: "a".into(),
            to: "b".into()
        }
    );
    assert_eq!(
        alter("ALTER TABLE t ALTER COLUMN c DROP NOT NULL"),
        AlterChange::SetNotNull("c".into(), false)
    );
    assert_eq!(
        alter("ALTER TABLE t SET TBLPROPERTIES (ACCESS_LEVEL = 'PUBLIC')"),
        AlterChange::SetAccessLevel("PUBLIC".into())
    );
}

#[test]
fn subscribe_to_a_table_or_a_select_with_options() {
    let sub = |sql: &str| match classify(sql) {
        Ok(Statement::Subscribe { select, options }) => Ok((select, options)),
        Ok(other) => panic!("{sql} classified as {other:?}"),
        Err(e) => Err(e),
    };
    assert_eq!(
        sub("SUBSCRIBE TO app.msgs WHERE room = 'a' OPTIONS (last_rows=10, batch_size = 5);"),
        Ok((
            "SELECT * FROM app.msgs WHERE room = 'a'".to_owned(),
            vec![("last_rows".to_owned(), 10), ("batch_size".to_owned(), 5)]
        ))
    );
    assert_eq!(
        sub("subscribe to SELECT id FROM app.t OPTIONS (from_seq_id=42)"),
        Ok((
            "SELECT id FROM app.t".to_owned(),
            vec![("from".to_owned(), 42)]
        ))
    );
    assert_eq!(
        sub("SUBSCRIBE TO app.t"),
        Ok(("SELECT * FROM app.t".to_owned(), vec![]))
    );
    assert!(sub("SUBSCRIBE TO").is_err());
    assert!(sub("SUBSCRIBE app.t").is_err());
    assert!(sub("SUBSCRIBE TO app.t OPTIONS (colour=1)").is_err());
    assert!(sub("SUBSCRIBE TO app.t OPTIONS (batch_size=x)").is_err());
}

/// The first-word shortcut of `classify_typed` answers what walking the tokens answers.
#[test]
fn the_first_word_shortcut_agrees_with_the_cursor() {
    for sql in [
        "SELECT 1",
        "  -- a comment\n select * from t",
        "/* c */ WITH x AS (SELECT 1) SELECT * FROM x",
        "VALUES (1)",
        "insert into app.t (id) values (1)",
        "UPDATE app.t SET v = 1",
        "DELETE FROM app.t",
        "EXPLAIN SELECT 1",
        "(SELECT 1)",
        "\"select\" 1",
        ";SELECT 1",
        "CREATE NAMESPACE app",
        "BEGIN",
    ] {
        let p = crate::prepared::Prepared::new(sql).expect("tokenizes");
        let walked = classify_cursor(p.text(), Cursor::from_tokens(p.tokens()));
        let typed = classify_typed(&p).map_err(|e| e.message().to_owned());
        assert_eq!(typed, walked, "{sql}");
    }
}

#[test]
fn as_of_becomes_a_marked_table_name() {
    let r = |s| rewrite_as_of(s).expect("rewrites").into_owned();
    assert_eq!(
        r("SELECT * FROM app.T AS OF 123 WHERE id = 1"),
        "SELECT * FROM app.\"t@as_of@123\" WHERE id = 1"
    );
    assert_eq!(
        r("SELECT a.x FROM t as of TIMESTAMP '2026-12-01T00:00:00Z' a"),
        "SELECT a.x FROM \"t@as_of@t1796083200000\" a"
    );
    assert_eq!(
        r("SELECT 1 FROM x AS OF '2026-12-01 00:00:01'"),
        "SELECT 1 FROM \"x@as_of@t1796083201000\""
    );
    // Not a point in time: left alone.
    let plain = "SELECT a AS of, 'as of 1' FROM t";
    assert_eq!(r(plain), plain);
    assert!(rewrite_as_of("SELECT * FROM t AS OF TIMESTAMP 'yesterday'").is_err());
    assert!(rewrite_as_of("SELECT * FROM t AS OF 1.5").is_err());
}

#[test]
fn names_the_reference_accepts_are_accepted_and_its_reserved_words_refused() {
    for ok in [
        "key",
        "value",
        "default",
        "primary",
        "namespace",
        "user",
        "status",
        "KEY",
    ] {
        assert!(validate_name("column", ok).is_ok(), "{ok}");
    }
    for refused in [
        "select", "FROM", "where", "table", "drop", "exists", "join", "limit",
    ] {
        let e = validate_name("column", refused).expect_err(refused);
        assert!(e.contains("reserved word"), "{e}");
    }
}

#[test]
fn topic_statements_parse_as_the_contract_writes_them() {
    use folddb_materializer::topics::{Payload, RouteOp};
    let topic = |sql: &str| match classify(sql) {
        Ok(Statement::Topic(t)) => t,
        other => panic!("{sql}: {other:?}"),
    };
    assert_eq!(
        topic("CREATE TOPIC app.new_messages PARTITIONS 4"),
        TopicCommand::Create {
            id: "app.new_messages".into(),
            partitions: 4,
            if_not_exists: false,
            max_deliveries: None,
            dead_letter: None,
            retention_seconds: None,
            retention_max_bytes: None,
        }
    );
    assert_eq!(
        topic("create topic if not exists feed"),
        TopicCommand::Create {
            id: "feed".into(),
            partitions: 1,
            if_not_exists: true,
            max_deliveries: None,
            dead_letter: None,
            retention_seconds: None,
            retention_max_bytes: None,
        }
    );
    assert_eq!(
        topic("ALTER TOPIC t ADD SOURCE app.m ON UPDATE WITH (payload = 'diff')"),
        TopicCommand::AddSource {
            topic: "t".into(),
            table: TableName {
                namespace: Some("app".into()),
                name: "m".into(),
            },
            op: RouteOp::Update,
            payload: Payload::Diff,
            filter: None,
        }
    );
    match topic(
        "ALTER TOPIC t ADD SOURCE m ON INSERT WHERE (n > 1 AND v = 'a, b') WITH (payload = 'key')",
    ) {
        TopicCommand::AddSource {
            filter: Some(f),
            payload: Payload::Key,
            ..
        } => assert_eq!(f, "( n > 1 AND v = 'a, b' )"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        topic("CONSUME FROM a.b GROUP 'g1' FROM EARLIEST LIMIT 5"),
        TopicCommand::Consume {
            topic: "a.b".into(),
            group: Some("g1".into()),
            start: ConsumeStart::Earliest,
            limit: 5,
        }
    );
    assert_eq!(
        topic("CONSUME FROM a.b FROM 12"),
        TopicCommand::Consume {
            topic: "a.b".into(),
            group: None,
            start: ConsumeStart::Offset(12),
            limit: DEFAULT_CONSUME_LIMIT,
        }
    );
    assert_eq!(
        topic("ACK a.b GROUP 'g1' PARTITION 2 UPTO OFFSET 10"),
        TopicCommand::Ack {
            topic: "a.b".into(),
            group: "g1".into(),
            partition: 2,
            upto: 10,
        }
    );
    assert_eq!(
        topic("DROP TOPIC IF EXISTS a.b"),
        TopicCommand::Drop {
            id: "a.b".into(),
            if_exists: true,
        }
    );
    assert_eq!(
        topic("CREATE TOPIC t WITH (retention_max_bytes = 1048576, retention_seconds = 60)"),
        TopicCommand::Create {
            id: "t".into(),
            partitions: 1,
            if_not_exists: false,
            max_deliveries: None,
            dead_letter: None,
            retention_seconds: Some(60),
            retention_max_bytes: Some(1 << 20),
        }
    );
    assert_eq!(
        topic("ALTER TOPIC a.b SET (retention_max_bytes = 4096)"),
        TopicCommand::SetRetention {
            id: "a.b".into(),
            retention_seconds: None,
            retention_max_bytes: Some(4096),
        }
    );
    for bad in [
        "ALTER TOPIC a.b SET (retention_max_bytes = 0)",
        "ALTER TOPIC a.b SET (partitions = 2)",
        "ALTER TOPIC a.b SET ()",
        "CREATE TOPIC t WITH (retention_max_bytes = -1)",
    ] {
        assert!(classify(bad).is_err(), "{bad}");
    }
    assert_eq!(
        topic("CLEAR TOPIC a.b"),
        TopicCommand::Clear { id: "a.b".into() }
    );
    assert_eq!(
        topic("CREATE TOPIC t WITH (max_deliveries = 3, dead_letter = app.dead)"),
        TopicCommand::Create {
            id: "t".into(),
            partitions: 1,
            if_not_exists: false,
            max_deliveries: Some(3),
            dead_letter: Some("app.dead".into()),
            retention_seconds: None,
            retention_max_bytes: None,
        }
    );
    for (sql, kind) in [
        ("ACK t GROUP 'g' OFFSET 4", Settlement::Accept),
        ("RELEASE t GROUP 'g' OFFSET 4", Settlement::Release),
        ("REJECT t GROUP 'g' OFFSET 4", Settlement::Reject),
    ] {
        assert_eq!(
            topic(sql),
            TopicCommand::Settle {
                topic: "t".into(),
                group: "g".into(),
                partition: 0,
                offset: 4,
                kind,
            },
            "{sql}"
        );
    }
    for (bad, says) in [
        ("CREATE TOPIC t PARTITIONS 0", "PARTITIONS"),
        ("CREATE TOPIC t WITH (max_deliveries = 0)", "max_deliveries"),
        (
            "CREATE TOPIC t WITH (retention = 1)",
            "Unknown topic option",
        ),
        ("CREATE TOPIC t PARTITIONS 99999", "PARTITIONS"),
        ("CONSUME FROM t LIMIT -1", "negative"),
        ("CONSUME FROM t LIMIT 0", "LIMIT"),
        ("CONSUME FROM t FROM -3", "negative"),
        ("ACK t UPTO OFFSET 1", "GROUP"),
        ("ACK t GROUP 'g' UPTO OFFSET -1", "negative"),
        (
            "ALTER TOPIC t ADD SOURCE a.m ON MERGE",
            "INSERT, UPDATE or DELETE",
        ),
        (
            "ALTER TOPIC t ADD SOURCE a.m ON INSERT WITH (payload = 'all')",
            "payload",
        ),
        (
            "ALTER TOPIC t ADD SOURCE a.m ON INSERT WHERE WITH (payload = 'key')",
            "WHERE",
        ),
        ("CONSUME FROM t GROUP 'g' extra", "SQL parse error"),
    ] {
        let e = classify(bad).expect_err(bad);
        assert!(e.contains(says), "{bad}: {e}");
    }
    assert!(
        Statement::Topic(TopicCommand::Clear { id: "t".into() }).admin_only()
            && !Statement::Topic(topic("CONSUME FROM t")).admin_only()
    );
}
