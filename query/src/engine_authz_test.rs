//! The authorization rules on their own: roles, SHARED access levels, ALTER, and the tables
//! a statement names however it hides them.

use super::*;

fn caller(role: Role) -> Caller {
    Caller {
        user: "u1".into(),
        role,
    }
}

fn shared(level: Option<AccessLevel>) -> TableDef {
    let mut def = TableDef::example("app", "t", TableKind::Shared);
    def.options.access_level = level;
    def
}

fn code(r: StmtResult<()>) -> Option<ErrorCode> {
    r.err().map(|e| e.code())
}

#[test]
fn only_system_grants_or_manages_the_system_role() {
    for role in [Role::User, Role::Service, Role::Dba] {
        assert_eq!(
            code(grant_allowed(&caller(role), Role::System)),
            Some(ErrorCode::PermissionDenied),
            "{role:?}"
        );
        assert_eq!(code(grant_allowed(&caller(role), Role::Dba)), None);
    }
    assert_eq!(
        code(grant_allowed(&caller(Role::System), Role::System)),
        None
    );
}

#[test]
fn shared_tables_are_read_and_written_by_their_access_level() {
    use AccessLevel::*;
    // (level, role, may read, may write)
    let table = [
        (Some(Public), Role::User, true, false),
        (Some(Public), Role::Service, true, true),
        (Some(Private), Role::User, false, false),
        (None, Role::User, false, false),
        (Some(Private), Role::Service, true, true),
        (Some(Restricted), Role::User, false, false),
        (Some(Restricted), Role::Service, true, true),
        (Some(Dba), Role::Service, false, false),
        (Some(Dba), Role::Dba, true, true),
        (Some(Dba), Role::System, true, true),
    ];
    for (level, role, read, write) in table {
        let def = shared(level);
        let who = caller(role);
        assert_eq!(
            may_read(&who, &def).is_ok(),
            read,
            "{level:?} {role:?} read"
        );
        assert_eq!(
            shared_allowed(&who, &def, true).is_ok(),
            write,
            "{level:?} {role:?} write"
        );
    }
    // USER tables are not governed by access levels: every user reads their own rows.
    let user_table = TableDef::example("app", "t", TableKind::User);
    assert!(may_read(&caller(Role::User), &user_table).is_ok());
}

#[test]
fn altering_any_table_needs_role_service_or_above() {
    for kind in [TableKind::User, TableKind::Shared, TableKind::Stream] {
        let def = TableDef::example("app", "t", kind);
        let Err(Error::PermissionDenied(message)) = alter_allowed(&caller(Role::User), &def) else {
            panic!("role user altered a {kind:?} table");
        };
        assert!(message.contains("service, dba or system"), "{message}");
        for role in [Role::Service, Role::Dba, Role::System] {
            assert!(
                alter_allowed(&caller(role), &def).is_ok(),
                "{role:?} {kind:?}"
            );
        }
    }
}

#[test]
fn named_tables_finds_every_table_a_statement_touches() {
    let named = |sql: &str| {
        let mut v = named_tables("app", &Prepared::new(sql).expect("tokenizes"));
        v.sort();
        v
    };
    let t = |ns: &str, name: &str, written: bool| (ns.to_owned(), name.to_owned(), written);
    assert_eq!(
        named("SELECT * FROM a JOIN other.b ON a.id = b.id"),
        [t("app", "a", false), t("other", "b", false)]
    );
    assert_eq!(
        named("WITH x AS (SELECT * FROM hidden.t) SELECT * FROM x WHERE id IN (SELECT id FROM c)"),
        [
            t("app", "c", false),
            t("app", "x", false),
            t("hidden", "t", false)
        ]
    );
    assert_eq!(
        named("SELECT 1 UNION ALL SELECT v FROM Deep.T2"),
        [t("deep", "t2", false)]
    );
    assert_eq!(
        named("INSERT INTO app.dst SELECT * FROM secret.src"),
        [t("app", "dst", true), t("secret", "src", false)]
    );
    assert_eq!(
        named("UPDATE w SET v = 1 WHERE id IN (SELECT id FROM r)"),
        [t("app", "r", false), t("app", "w", true)]
    );
    assert_eq!(named("DELETE FROM ns.d"), [t("ns", "d", true)]);
    // A three-part name is catalog.namespace.table.
    assert_eq!(named("SELECT * FROM c.ns.t"), [t("ns", "t", false)]);
    // What does not parse names nothing here; it fails when it runs.
    assert!(named("SELEC * FROM t").is_empty());
}

#[test]
fn system_tables_are_recognised_in_any_spelling_but_not_in_strings() {
    let references_system =
        |sql: &str| references_system(Prepared::new(sql).expect("tokenizes").tokens());
    assert!(references_system("SELECT * FROM system.users"));
    assert!(references_system("select * from SYSTEM . users"));
    assert!(references_system(
        "SELECT * FROM t WHERE id IN (SELECT 1 FROM System.jobs)"
    ));
    assert!(!references_system("SELECT 'system.users' AS s"));
    assert!(!references_system("SELECT * FROM app.system_users"));
    assert!(!references_system("SELECT * FROM mysystem.t"));
}
