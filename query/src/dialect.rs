//! The SQL dialect: classifying a statement by its leading words (API.md 3.1) and parsing
//! FoldDB's own statements (namespaces, table DDL with `WITH` options, SHOW / DESCRIBE,
//! transactions). Queries go to DataFusion; INSERT / UPDATE / DELETE to sqlparser's AST.
//! Pure: no state, no I/O.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use folddb_materializer::{DataType, DefaultExpr, Role, TableKind};

use crate::convert::Literal;

#[path = "dialect_cursor.rs"]
mod cursor;
use cursor::Cursor;
#[path = "dialect_backup.rs"]
mod backup;
pub use backup::BackupCommand;
#[path = "dialect_cluster.rs"]
mod cluster;
pub use cluster::ClusterCommand;
#[path = "dialect_storage.rs"]
mod storage;
#[path = "dialect_topic.rs"]
mod topic;
#[path = "dialect_users.rs"]
mod users;
pub use storage::{StorageField, StorageSpec};
use storage::{parse_alter_storage, parse_create_storage};
pub use topic::{ConsumeStart, DEFAULT_CONSUME_LIMIT, MAX_CONSUME_LIMIT, Settlement, TopicCommand};
use users::{parse_alter_user, parse_create_user};

/// One classified statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// SELECT / WITH / VALUES: DataFusion.
    Query,
    Insert,
    Update,
    Delete,
    /// EXPLAIN, SET (other than SET NAMESPACE), SHOW COLUMNS, SHOW ALL, DESCRIBE <x>:
    /// DataFusion meta commands, for dba and system only.
    Meta,
    CreateNamespace {
        name: String,
        if_not_exists: bool,
    },
    DropNamespace {
        name: String,
        if_exists: bool,
    },
    AlterNamespace {
        name: String,
        description: Option<String>,
    },
    ShowNamespaces,
    Use(String),
    CreateTable(CreateTable),
    AlterTable {
        table: TableName,
        change: AlterChange,
    },
    DropTable {
        table: TableName,
        if_exists: bool,
    },
    ShowTables {
        namespace: Option<String>,
    },
    Describe {
        table: TableName,
        history: bool,
    },
    ShowStats(TableName),
    Begin,
    Commit,
    Rollback,
    CreateUser {
        id: String,
        auth: UserAuth,
        role: Role,
        email: Option<String>,
    },
    AlterUser {
        id: String,
        change: UserChange,
    },
    DropUser {
        id: String,
        if_exists: bool,
    },
    /// `KILL LIVE QUERY '<live_id>'` (API.md 3.11).
    KillLiveQuery(String),
    /// `KILL JOB '<job_id>'` (API.md 3.11).
    KillJob(String),
    /// `STORAGE FLUSH TABLE ns.t`, `STORAGE FLUSH ALL [IN [NAMESPACE] ns]` and the same with
    /// `COMPACT` (API.md 3.10).
    Storage {
        compact: bool,
        target: StorageTarget,
    },
    /// `STORAGE CHECK id [EXTENDED]`.
    StorageCheck {
        storage: String,
        extended: bool,
    },
    /// `CREATE STORAGE [IF NOT EXISTS] id TYPE '…' …` (API.md 3.10).
    CreateStorage {
        id: String,
        if_not_exists: bool,
        spec: StorageSpec,
    },
    /// `ALTER STORAGE id SET field '…' [, SET field '…' …]`.
    AlterStorage {
        id: String,
        changes: Vec<(StorageField, String)>,
    },
    /// `DROP STORAGE [IF EXISTS] id`.
    DropStorage {
        id: String,
        if_exists: bool,
    },
    /// `SHOW STORAGES`.
    ShowStorages,
    /// `SHOW MANIFEST`.
    ShowManifest,
    /// `SUBSCRIBE TO ns.t [WHERE …] [OPTIONS (…)]` or `SUBSCRIBE TO SELECT …` (API.md 3.11,
    /// 1.7.3): over HTTP it only checks the query and says how to subscribe over `/v1/ws`.
    Subscribe {
        /// The subscription's `SELECT`.
        select: String,
        /// The options as the `subscribe` message carries them (`last_rows`, `batch_size`,
        /// `from`), in the order written.
        options: Vec<(String, i64)>,
    },
    /// `EXECUTE AS USER '<id>' ( <statement> )` (API.md 3.9): `sql` is the text inside the
    /// parentheses, not yet checked to be one statement.
    ExecuteAs {
        user: String,
        sql: String,
    },
    /// `CLUSTER …` (API.md 3.13).
    Cluster(ClusterCommand),
    /// Topic DDL, `CONSUME` and `ACK` (API.md 3.12).
    Topic(TopicCommand),
    /// `BACKUP` / `RESTORE DATABASE`, `SHOW BACKUPS`, `EXPORT USER DATA`, `SHOW EXPORT`
    /// (API.md 3.13).
    Backup(BackupCommand),
}

/// What a STORAGE FLUSH or COMPACT covers.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageTarget {
    Table(TableName),
    /// Every table, or every table of one namespace.
    All(Option<String>),
}

/// How a new user authenticates.
#[derive(Clone, PartialEq)]
pub enum UserAuth {
    Password(String),
    /// No password: the user acts only through EXECUTE AS or internal tokens.
    Internal,
    /// An external identity (provider and subject, as JSON).
    OAuth(String),
}

impl std::fmt::Debug for UserAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserAuth::Password(_) => f.write_str("Password(<redacted>)"),
            UserAuth::Internal => f.write_str("Internal"),
            UserAuth::OAuth(j) => write!(f, "OAuth({j})"),
        }
    }
}

/// What ALTER USER changes.
#[derive(Clone, PartialEq)]
pub enum UserChange {
    Password(String),
    Role(Role),
    Email(Option<String>),
}

impl std::fmt::Debug for UserChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserChange::Password(_) => f.write_str("Password(<redacted>)"),
            UserChange::Role(r) => write!(f, "Role({})", r.name()),
            UserChange::Email(e) => write!(f, "Email({e:?})"),
        }
    }
}

/// Role words of API.md 3.8.
pub fn role_word(w: &str) -> Option<Role> {
    match w.to_ascii_lowercase().as_str() {
        "user" | "viewer" | "readonly" => Some(Role::User),
        "service" | "developer" | "analyst" => Some(Role::Service),
        "dba" | "admin" => Some(Role::Dba),
        "system" => Some(Role::System),
        _ => None,
    }
}

/// Checks a user id: 1 to 128 of ASCII letters, digits, `_`, `-`, `.`, `@`.
pub fn validate_user_id(id: &str) -> Result<(), ParseError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Invalid user id '{}': use 1 to 128 ASCII letters, digits, '_', '-', '.' or '@'",
            id.chars().take(140).collect::<String>()
        ))
    }
}

/// Most bytes of a password (bcrypt reads 72; longer ones are refused, not truncated).
pub const MAX_PASSWORD_BYTES: usize = 72;

impl Statement {
    /// Whether only dba and system may run it, checked before any statement of the batch
    /// runs (API.md 3.1).
    pub fn admin_only(&self) -> bool {
        matches!(
            self,
            Statement::Meta
                | Statement::CreateNamespace { .. }
                | Statement::DropNamespace { .. }
                | Statement::AlterNamespace { .. }
                | Statement::DropTable { .. }
                | Statement::CreateUser { .. }
                | Statement::AlterUser { .. }
                | Statement::DropUser { .. }
                | Statement::KillLiveQuery(_)
                | Statement::KillJob(_)
                | Statement::Storage { .. }
                | Statement::StorageCheck { .. }
                | Statement::ShowManifest
                | Statement::CreateStorage { .. }
                | Statement::AlterStorage { .. }
                | Statement::DropStorage { .. }
                | Statement::Cluster(_)
                | Statement::Backup(
                    BackupCommand::Backup { .. }
                        | BackupCommand::Restore { .. }
                        | BackupCommand::ShowBackups { .. }
                )
                | Statement::Topic(
                    TopicCommand::Create { .. }
                        | TopicCommand::Drop { .. }
                        | TopicCommand::Clear { .. }
                        | TopicCommand::AddSource { .. }
                        | TopicCommand::SetRetention { .. }
                )
        )
    }
}

/// A possibly qualified table name, lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub namespace: Option<String>,
    pub name: String,
}

/// A column as CREATE TABLE or ALTER TABLE … ADD declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: String,
    pub data_type: DataType,
    pub not_null: bool,
    pub default: Option<DefaultSpec>,
    pub primary_key: bool,
    pub unique: bool,
}

/// A DEFAULT as written: a function of API.md 3.3, or a literal the planner types against
/// its column.
#[derive(Debug, Clone, PartialEq)]
pub enum DefaultSpec {
    Expr(DefaultExpr),
    Literal(Literal),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateTable {
    pub kind: Option<TableKind>,
    pub if_not_exists: bool,
    pub table: TableName,
    pub columns: Vec<ColumnSpec>,
    /// `PRIMARY KEY (a, …)` after the columns.
    pub primary_key: Vec<String>,
    /// `WITH (KEY = value, …)`, keys uppercase, values as text.
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AlterChange {
    AddColumn(ColumnSpec),
    DropColumn(String),
    ModifyColumn {
        name: String,
        data_type: DataType,
        not_null: Option<bool>,
    },
    SetNotNull(String, bool),
    SetDefault(String, Option<DefaultSpec>),
    RenameColumn {
        from: String,
        to: String,
    },
    SetAccessLevel(String),
    /// `CREATE [VECTOR] INDEX column [USING COSINE|L2|DOT]` (COSINE when not given).
    CreateIndex {
        column: String,
        metric: folddb_materializer::VectorMetric,
    },
    /// `DROP [VECTOR] INDEX column`.
    DropIndex(String),
}

/// Why a statement was refused by the dialect: the `INVALID_SQL` message.
pub type ParseError = String;

const RESERVED_NAMESPACES: &[&str] = &[
    "system",
    "sys",
    "root",
    "kalamdb",
    "kalam",
    "main",
    "default",
    "sql",
    "admin",
    "internal",
    "information_schema",
    "pg_catalog",
    "datafusion",
];

/// Column names reserved for system columns (API.md 3.1).
pub const RESERVED_COLUMNS: &[&str] = &[
    "_seq",
    "_deleted",
    "_id",
    "_row_id",
    "_rowid",
    "_key",
    "_updated",
    "_created",
    "_timestamp",
    "_version",
    "_hash",
];

/// Words refused as names whatever the parser makes of them (the reference refuses them
/// too).
const CRITICAL_WORDS: &[&str] = &[
    "TABLE",
    "TABLES",
    "TABLESPACE",
    "INDEX",
    "VIEW",
    "SCHEMA",
    "DATABASE",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "ALTER",
];

/// Whether `name` is a reserved word, as the reference decides (API.md 3.1): one of the
/// words the SQL parser cannot take as a table alias, column alias, table factor or
/// identifier, or one of [`CRITICAL_WORDS`]. Other keywords (`key`, `value`, `default`,
/// `primary`, …) are fine names.
fn reserved_word(name: &str) -> bool {
    use datafusion::sql::sqlparser::keywords::{
        ALL_KEYWORDS, ALL_KEYWORDS_INDEX, RESERVED_FOR_COLUMN_ALIAS, RESERVED_FOR_IDENTIFIER,
        RESERVED_FOR_TABLE_ALIAS, RESERVED_FOR_TABLE_FACTOR,
    };
    let upper = name.to_ascii_uppercase();
    if CRITICAL_WORDS.contains(&upper.as_str()) {
        return true;
    }
    let Ok(i) = ALL_KEYWORDS.binary_search(&upper.as_str()) else {
        return false;
    };
    let Some(k) = ALL_KEYWORDS_INDEX.get(i) else {
        return false;
    };
    [
        RESERVED_FOR_TABLE_ALIAS,
        RESERVED_FOR_COLUMN_ALIAS,
        RESERVED_FOR_TABLE_FACTOR,
        RESERVED_FOR_IDENTIFIER,
    ]
    .iter()
    .any(|list| list.contains(k))
}

/// Checks an identifier against API.md 3.1's rules.
pub fn validate_name(kind: &str, name: &str) -> Result<(), ParseError> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let first_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if !ok_chars || !first_ok || name.len() > 64 {
        return Err(format!(
            "Invalid {kind} name '{name}': use ASCII letters, digits and underscores, start with a \
             letter, at most 64 characters"
        ));
    }
    if reserved_word(name) {
        return Err(format!(
            "Invalid {kind} name '{name}': it is a reserved word"
        ));
    }
    Ok(())
}

/// Checks a namespace name, including the reserved ones.
pub fn validate_namespace(name: &str) -> Result<(), ParseError> {
    validate_name("namespace", name)?;
    if RESERVED_NAMESPACES.contains(&name) {
        return Err(format!("Namespace name '{name}' is reserved"));
    }
    Ok(())
}

/// Classifies (and for FoldDB's own statements, parses) one statement.
pub fn classify(sql: &str) -> Result<Statement, ParseError> {
    classify_prepared(&crate::prepared::Prepared::new(sql)?)
}

/// [`classify`] of a statement already tokenized.
pub fn classify_prepared(p: &crate::prepared::Prepared) -> Result<Statement, ParseError> {
    classify_typed(p).map_err(|e| e.message().to_owned())
}

/// [`classify_prepared`], failing with the typed error: a statement past the nesting limits
/// is refused as over a limit, any other as invalid SQL.
pub fn classify_typed(p: &crate::prepared::Prepared) -> Result<Statement, crate::error::Error> {
    // Before anything parses it into a tree as deep as its longest chain.
    crate::nesting::check(p.tokens()).map_err(|message| crate::error::Error::Limit {
        code: crate::request::ErrorCode::InvalidSql,
        message,
    })?;
    // The statements DataFusion and the write planner parse are known by their first word;
    // only FoldDB's own statements are walked token by token.
    let first = p
        .tokens()
        .find(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon));
    if let Some(Token::Word(w)) = first
        && w.quote_style.is_none()
    {
        let known = match w.value.to_ascii_lowercase().as_str() {
            "select" | "with" | "values" => Some(Statement::Query),
            "insert" => Some(Statement::Insert),
            "update" => Some(Statement::Update),
            "delete" => Some(Statement::Delete),
            "explain" => Some(Statement::Meta),
            _ => None,
        };
        if let Some(statement) = known {
            return Ok(statement);
        }
    }
    let c = Cursor::from_tokens(p.tokens());
    classify_cursor(p.text(), c).map_err(crate::error::Error::InvalidSql)
}

fn classify_cursor(sql: &str, mut c: Cursor) -> Result<Statement, ParseError> {
    let Some(first) = c.peek_word() else {
        if c.toks.first() == Some(&Token::LParen) {
            return Ok(Statement::Query);
        }
        return Err(format!("Unsupported statement type: {}", head(sql)));
    };
    match first.as_str() {
        "select" | "with" | "values" => Ok(Statement::Query),
        "insert" => Ok(Statement::Insert),
        "update" => Ok(Statement::Update),
        "delete" => Ok(Statement::Delete),
        "explain" => Ok(Statement::Meta),
        "begin" => {
            c.next();
            let _ = c.keyword("transaction") || c.keyword("work");
            c.end().map(|_| Statement::Begin)
        }
        "start" => {
            c.next();
            c.expect("transaction")?;
            c.end().map(|_| Statement::Begin)
        }
        "commit" | "end" => {
            c.next();
            let _ = c.keyword("transaction") || c.keyword("work");
            c.end().map(|_| Statement::Commit)
        }
        "rollback" | "abort" => {
            c.next();
            let _ = c.keyword("transaction") || c.keyword("work");
            c.end().map(|_| Statement::Rollback)
        }
        "use" => {
            c.next();
            c.keyword("namespace");
            let name = c.ident()?;
            c.end().map(|_| Statement::Use(name))
        }
        "set" => {
            c.next();
            if c.keyword("namespace") {
                let name = c.ident()?;
                c.end().map(|_| Statement::Use(name))
            } else {
                Ok(Statement::Meta)
            }
        }
        "show" => {
            c.next();
            if c.keyword("namespaces") {
                c.end().map(|_| Statement::ShowNamespaces)
            } else if c.keyword("tables") {
                let namespace = if c.keyword("in") || c.keyword("from") {
                    c.keyword("namespace");
                    Some(c.ident()?)
                } else {
                    None
                };
                c.end().map(|_| Statement::ShowTables { namespace })
            } else if c.keyword("stats") {
                c.expect("for")?;
                c.expect("table")?;
                let t = c.table_name()?;
                c.end().map(|_| Statement::ShowStats(t))
            } else if c.keyword("storages") {
                c.end().map(|_| Statement::ShowStorages)
            } else if c.keyword("manifest") || c.keyword("manifests") {
                c.end().map(|_| Statement::ShowManifest)
            } else if c.keyword("backups") || c.keyword("backup") {
                backup::parse_show_backups(&mut c)
            } else if c.keyword("export") || c.keyword("exports") {
                c.end()
                    .map(|_| Statement::Backup(BackupCommand::ShowExport))
            } else if c.keyword("columns") || c.keyword("all") {
                Ok(Statement::Meta)
            } else {
                Err(format!("Unsupported statement type: {}", head(sql)))
            }
        }
        "describe" | "desc" => {
            c.next();
            if c.keyword("table") {
                let table = c.table_name()?;
                let history = c.keyword("history");
                c.end().map(|_| Statement::Describe { table, history })
            } else {
                Ok(Statement::Meta)
            }
        }
        "create" => {
            c.next();
            if c.peek_word().as_deref() == Some("user") && !c.word_at(1, "table") {
                c.next();
                return parse_create_user(&mut c);
            }
            if c.keyword("storage") {
                return parse_create_storage(&mut c);
            }
            if c.keyword("topic") {
                return topic::parse_create_topic(&mut c);
            }
            if c.keyword("namespace") || c.keyword("schema") {
                let if_not_exists = c.if_not_exists()?;
                let name = c.ident()?;
                validate_namespace(&name)?;
                c.end().map(|_| Statement::CreateNamespace {
                    name,
                    if_not_exists,
                })
            } else {
                parse_create_table(&mut c).map(Statement::CreateTable)
            }
        }
        "drop" => {
            c.next();
            if c.peek_word().as_deref() == Some("user") && !c.word_at(1, "table") {
                c.next();
                let if_exists = c.if_exists()?;
                let id = c.user_id()?;
                return c.end().map(|_| Statement::DropUser { id, if_exists });
            }
            if c.keyword("storage") {
                let if_exists = c.if_exists()?;
                let id = c.ident()?;
                return c.end().map(|_| Statement::DropStorage { id, if_exists });
            }
            if c.keyword("topic") {
                return topic::parse_drop_topic(&mut c);
            }
            if c.keyword("namespace") || c.keyword("schema") {
                let if_exists = c.if_exists()?;
                let name = c.ident()?;
                c.keyword("cascade");
                c.end()
                    .map(|_| Statement::DropNamespace { name, if_exists })
            } else {
                let _ = c.table_kind();
                c.expect("table")?;
                let if_exists = c.if_exists()?;
                let table = c.table_name()?;
                c.end().map(|_| Statement::DropTable { table, if_exists })
            }
        }
        "alter" => {
            c.next();
            if c.keyword("user") {
                return parse_alter_user(&mut c);
            }
            if c.keyword("storage") {
                return parse_alter_storage(&mut c);
            }
            if c.keyword("topic") {
                return topic::parse_alter_topic(&mut c);
            }
            if c.keyword("namespace") {
                let name = c.ident()?;
                c.expect("set")?;
                c.expect("description")?;
                let description = match c.next() {
                    Some(Token::SingleQuotedString(s)) => Some(s),
                    Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("null") => None,
                    _ => return Err("ALTER NAMESPACE … SET DESCRIPTION needs a string".into()),
                };
                c.end()
                    .map(|_| Statement::AlterNamespace { name, description })
            } else {
                c.expect("table")?;
                let table = c.table_name()?;
                let change = parse_alter(&mut c)?;
                c.end().map(|_| Statement::AlterTable { table, change })
            }
        }
        "execute" | "exec" => parse_execute_as(sql),
        "clear" => {
            c.next();
            c.expect("topic")?;
            topic::parse_clear_topic(&mut c)
        }
        "consume" => {
            c.next();
            topic::parse_consume(&mut c)
        }
        "ack" => {
            c.next();
            topic::parse_ack(&mut c)
        }
        "release" => {
            c.next();
            topic::parse_settle(&mut c, Settlement::Release)
        }
        "reject" => {
            c.next();
            topic::parse_settle(&mut c, Settlement::Reject)
        }
        "subscribe" => parse_subscribe(sql),
        "storage" => {
            c.next();
            let compact = if c.keyword("flush") {
                false
            } else if c.keyword("compact") {
                true
            } else if c.keyword("check") {
                let storage = c.ident()?;
                let extended = c.keyword("extended");
                return c
                    .end()
                    .map(|_| Statement::StorageCheck { storage, extended });
            } else {
                return Err("STORAGE expects FLUSH, COMPACT or CHECK".into());
            };
            let target = if c.keyword("table") {
                let table = c.table_name()?;
                if table.namespace.is_none() {
                    return Err(format!(
                        "STORAGE {} TABLE needs a qualified name: namespace.table",
                        if compact { "COMPACT" } else { "FLUSH" }
                    ));
                }
                StorageTarget::Table(table)
            } else if c.keyword("all") {
                if c.keyword("in") {
                    c.keyword("namespace");
                    StorageTarget::All(Some(c.ident()?))
                } else {
                    StorageTarget::All(None)
                }
            } else {
                return Err("STORAGE FLUSH / COMPACT expects TABLE ns.t or ALL".into());
            };
            c.end().map(|_| Statement::Storage { compact, target })
        }
        "cluster" => {
            c.next();
            cluster::parse_cluster(&mut c)
        }
        "backup" => {
            c.next();
            backup::parse_backup(&mut c)
        }
        "restore" => {
            c.next();
            backup::parse_restore(&mut c)
        }
        "export" => {
            c.next();
            backup::parse_export(&mut c)
        }
        "kill" => {
            c.next();
            if c.keyword("job") {
                let id = match c.next() {
                    Some(Token::SingleQuotedString(s)) => s,
                    Some(Token::Word(w)) => w.value,
                    _ => return Err("KILL JOB expects a job_id from system.jobs".into()),
                };
                return c.end().map(|_| Statement::KillJob(id));
            }
            c.expect("live")?;
            c.expect("query")?;
            let id = match c.next() {
                Some(Token::SingleQuotedString(s)) => s,
                Some(Token::Word(w)) => w.value,
                _ => return Err("KILL LIVE QUERY expects a live_id from system.live".into()),
            };
            c.end().map(|_| Statement::KillLiveQuery(id))
        }
        _ => Err(format!("Unsupported statement type: {}", head(sql))),
    }
}

/// `EXECUTE AS USER <id> ( <sql> )`: the id from the tokens before the first parenthesis,
/// the statement text from between it and the last one.
fn parse_execute_as(sql: &str) -> Result<Statement, ParseError> {
    let usage = "EXECUTE AS USER expects: EXECUTE AS USER '<user_id>' ( <single SQL statement> )";
    let (Some(open), Some(close)) = (sql.find('('), sql.rfind(')')) else {
        return Err(usage.into());
    };
    let rest = sql[close + 1..].trim();
    if close < open || !(rest.is_empty() || rest == ";") {
        return Err(usage.into());
    }
    let mut c = Cursor::new(&sql[..open])?;
    if !(c.keyword("execute") || c.keyword("exec")) || !c.keyword("as") || !c.keyword("user") {
        return Err(usage.into());
    }
    let user = c.user_id()?;
    c.end().map_err(|_| usage.to_owned())?;
    Ok(Statement::ExecuteAs {
        user,
        sql: sql[open + 1..close].trim().to_owned(),
    })
}

/// `SUBSCRIBE TO <table> [WHERE …] | <SELECT …>` then an optional trailing
/// `OPTIONS (name = integer, …)`.
fn parse_subscribe(sql: &str) -> Result<Statement, ParseError> {
    let usage = "SUBSCRIBE expects: SUBSCRIBE TO ns.table [WHERE …] [OPTIONS (last_rows=N, batch_size=N, from=SEQ)] or SUBSCRIBE TO SELECT …";
    let text = sql.trim().trim_end_matches(';').trim_end();
    let mut c = Cursor::new(text)?;
    if !c.keyword("subscribe") || !c.keyword("to") {
        return Err(usage.into());
    }
    // The rest after "SUBSCRIBE TO", by position in the original text.
    let lower = text.to_ascii_lowercase();
    let to = lower.find("subscribe").map_or(0, |i| i + "subscribe".len());
    let to = lower[to..].find("to").map_or(to, |i| to + i + 2);
    let mut body = text[to..].trim();
    let mut options = Vec::new();
    let body_lower = body.to_ascii_lowercase();
    if body.ends_with(')')
        && let Some(at) = body_lower.rfind("options")
        && body[at + "options".len()..].trim_start().starts_with('(')
    {
        let inner = body[at + "options".len()..].trim();
        let inner = &inner[1..inner.len() - 1];
        for pair in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("OPTIONS expects name=value pairs, got '{pair}'"))?;
            let k = k.trim().to_ascii_lowercase();
            let k = if k == "from_seq_id" {
                "from".to_owned()
            } else {
                k
            };
            if !["last_rows", "batch_size", "from"].contains(&k.as_str()) {
                return Err(format!(
                    "Unknown SUBSCRIBE option '{k}' (last_rows, batch_size, from)"
                ));
            }
            let v: i64 = v
                .trim()
                .parse()
                .map_err(|_| format!("SUBSCRIBE option {k} needs an integer"))?;
            if v < 0 || (k == "batch_size" && v == 0) {
                return Err(format!("SUBSCRIBE option {k} must be positive"));
            }
            options.push((k, v));
        }
        body = body[..at].trim_end();
    }
    if body.is_empty() {
        return Err(usage.into());
    }
    let select = if body.to_ascii_lowercase().starts_with("select") {
        body.to_owned()
    } else {
        format!("SELECT * FROM {body}")
    };
    Ok(Statement::Subscribe { select, options })
}

/// `CURRENT_USER()` and `CURRENT_ROLE()` as KalamDB clients write them: SQL spells these
/// without parentheses, and the parser refuses the parentheses, so they are dropped here
/// (outside quotes and comments). Other text is returned as is.
pub fn normalize_keyword_calls(sql: &str) -> std::borrow::Cow<'_, str> {
    let lower = sql.to_ascii_lowercase();
    if !lower.contains("current_user") && !lower.contains("current_role") {
        return sql.into();
    }
    let Ok(toks) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return sql.into();
    };
    let is_call = |i: usize| {
        let word = matches!(&toks[i], Token::Word(w) if w.quote_style.is_none()
            && (w.value.eq_ignore_ascii_case("current_user") || w.value.eq_ignore_ascii_case("current_role")));
        let rest: Vec<&Token> = toks[i + 1..]
            .iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .take(2)
            .collect();
        word && matches!(rest.as_slice(), [Token::LParen, Token::RParen])
    };
    let calls: Vec<usize> = (0..toks.len()).filter(|&i| is_call(i)).collect();
    if calls.is_empty() {
        return sql.into();
    }
    let mut out = String::with_capacity(sql.len());
    let mut skip = 0;
    for (i, t) in toks.iter().enumerate() {
        if skip > 0 && matches!(t, Token::Whitespace(_) | Token::LParen | Token::RParen) {
            if !matches!(t, Token::Whitespace(_)) {
                skip -= 1;
            }
            continue;
        }
        skip = 0;
        out.push_str(&t.to_string());
        if calls.contains(&i) {
            skip = 2;
        }
    }
    out.into()
}

/// What a table name rewritten from `<table> AS OF <point>` carries after the table's name:
/// `<name>@as_of@<point>`, where the point is a `_seq`, or `t` and Unix milliseconds.
pub const AS_OF_MARK: &str = "@as_of@";

/// Rewrites each `<table> AS OF <_seq>` and `<table> AS OF TIMESTAMP '<time>'` (also
/// `AS OF '<time>'`) into the one quoted table name `"<table>@as_of@<point>"` (see
/// [`AS_OF_MARK`]), which the namespace's schema answers with the table as it was then
/// (`crate::as_of`). A time is RFC 3339 or `YYYY-MM-DD HH:MM:SS[.fff]` (UTC unless it says
/// otherwise).
pub fn rewrite_as_of(sql: &str) -> Result<std::borrow::Cow<'_, str>, String> {
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::Word;
    let lower = sql.to_ascii_lowercase();
    if !(lower.contains("as") && lower.contains("of")) {
        return Ok(sql.into());
    }
    let Ok(mut toks) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(sql.into());
    };
    let word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    let time = |s: &str| -> Result<String, String> {
        let nanos = datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(s)
            .map_err(|e| format!("AS OF TIMESTAMP '{s}': not a time ({e})"))?;
        let ms = u64::try_from(nanos.div_euclid(1_000_000))
            .map_err(|_| format!("AS OF TIMESTAMP '{s}': before 1970"))?;
        Ok(format!("t{ms}"))
    };
    let sig: Vec<usize> = (0..toks.len())
        .filter(|&i| !matches!(toks[i], Token::Whitespace(_)))
        .collect();
    let mut drop = vec![false; toks.len()];
    let mut changed = false;
    for k in 1..sig.len() {
        let (Some(&of), true) = (sig.get(k + 1), word(&toks[sig[k]], "as")) else {
            continue;
        };
        if !word(&toks[of], "of") {
            continue;
        }
        let Token::Word(table) = &toks[sig[k - 1]] else {
            continue;
        };
        let at = |j: usize| sig.get(k + j).map(|&i| &toks[i]);
        let (point, used) = match (at(2), at(3)) {
            (Some(Token::Number(n, _)), _) => match n.parse::<i64>() {
                Ok(seq) if seq >= 0 => (seq.to_string(), 1),
                _ => return Err(format!("AS OF {n}: a _seq is a non-negative integer")),
            },
            (Some(t), Some(Token::SingleQuotedString(s))) if word(t, "timestamp") => (time(s)?, 2),
            (Some(Token::SingleQuotedString(s)), _) => (time(s)?, 1),
            _ => continue,
        };
        let name = match table.quote_style {
            Some(_) => table.value.clone(),
            None => table.value.to_ascii_lowercase(),
        };
        toks[sig[k - 1]] = Token::Word(Word {
            value: format!("{name}{AS_OF_MARK}{point}"),
            quote_style: Some('"'),
            keyword: Keyword::NoKeyword,
        });
        for d in drop
            .iter_mut()
            .take(sig[k + 1 + used] + 1)
            .skip(sig[k - 1] + 1)
        {
            *d = true;
        }
        changed = true;
    }
    if !changed {
        return Ok(sql.into());
    }
    let mut out = String::with_capacity(sql.len() + 16);
    for (t, gone) in toks.iter().zip(drop) {
        if !gone {
            out.push_str(&t.to_string());
        }
    }
    Ok(out.into())
}

/// The first words of a statement, for messages.
fn head(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn parse_create_table(c: &mut Cursor) -> Result<CreateTable, ParseError> {
    let kind = c.table_kind();
    c.expect("table")?;
    let if_not_exists = c.if_not_exists()?;
    let table = c.table_name()?;
    c.expect_token(&Token::LParen, "(")?;
    let mut columns = Vec::new();
    let mut primary_key = Vec::new();
    loop {
        if c.keyword("primary") {
            c.expect("key")?;
            c.expect_token(&Token::LParen, "(")?;
            loop {
                primary_key.push(c.ident()?);
                if !c.token(&Token::Comma) {
                    break;
                }
            }
            c.expect_token(&Token::RParen, ")")?;
        } else {
            columns.push(parse_column(c)?);
        }
        if c.token(&Token::Comma) {
            continue;
        }
        c.expect_token(&Token::RParen, ")")?;
        break;
    }
    if c.keyword("using") {
        c.ident()?;
    }
    let mut options = Vec::new();
    if c.keyword("with") {
        c.expect_token(&Token::LParen, "(")?;
        loop {
            let key = c.ident()?.to_ascii_uppercase();
            c.expect_token(&Token::Eq, "=")?;
            let value = match c.next() {
                Some(Token::SingleQuotedString(s)) | Some(Token::DoubleQuotedString(s)) => s,
                Some(Token::Number(n, _)) => n,
                Some(Token::Word(w)) => w.value,
                other => return Err(format!("WITH option {key} has no value (found {other:?})")),
            };
            options.push((key, value));
            if !c.token(&Token::Comma) {
                break;
            }
        }
        c.expect_token(&Token::RParen, ")")?;
    }
    c.end()?;
    Ok(CreateTable {
        kind,
        if_not_exists,
        table,
        columns,
        primary_key,
        options,
    })
}

fn parse_column(c: &mut Cursor) -> Result<ColumnSpec, ParseError> {
    let name = c.ident()?;
    let (data_type, serial) = parse_type(c)?;
    let mut spec = ColumnSpec {
        name,
        data_type,
        not_null: false,
        default: serial.then_some(DefaultSpec::Expr(DefaultExpr::SnowflakeId)),
        primary_key: false,
        unique: false,
    };
    loop {
        if c.keyword("not") {
            c.expect("null")?;
            spec.not_null = true;
        } else if c.keyword("null") {
            spec.not_null = false;
        } else if c.keyword("default") {
            spec.default = parse_default(c)?;
        } else if c.keyword("primary") {
            c.expect("key")?;
            spec.primary_key = true;
        } else if c.keyword("unique") {
            spec.unique = true;
        } else if c.keyword("auto_increment") || c.keyword("autoincrement") {
            spec.default = Some(DefaultSpec::Expr(DefaultExpr::SnowflakeId));
        } else if c.keyword("generated") {
            // GENERATED {ALWAYS | BY DEFAULT} AS IDENTITY
            while !c.keyword("identity") {
                if c.next().is_none() {
                    return Err("GENERATED … AS IDENTITY is incomplete".into());
                }
            }
            spec.default = Some(DefaultSpec::Expr(DefaultExpr::SnowflakeId));
        } else if c.keyword("comment") {
            c.next();
        } else {
            return Ok(spec);
        }
    }
}

/// A type name with its arguments; `true` for the SERIAL family (an implicit
/// `DEFAULT SNOWFLAKE_ID()`).
fn parse_type(c: &mut Cursor) -> Result<(DataType, bool), ParseError> {
    let mut name = c
        .word()
        .ok_or_else(|| "expected a data type".to_owned())?
        .to_ascii_uppercase();
    if name == "DOUBLE" && c.keyword("precision") {
        name = "DOUBLE PRECISION".into();
    }
    if matches!(
        name.as_str(),
        "SERIAL" | "BIGSERIAL" | "SMALLSERIAL" | "SERIAL8" | "SERIAL4"
    ) {
        return Ok((DataType::BigInt, true));
    }
    let mut args = Vec::new();
    if c.token(&Token::LParen) {
        loop {
            match c.next() {
                Some(Token::Number(n, _)) => args.push(
                    n.parse::<u32>()
                        .map_err(|_| format!("bad argument {n} for type {name}"))?,
                ),
                other => return Err(format!("bad argument {other:?} for type {name}")),
            }
            if !c.token(&Token::Comma) {
                break;
            }
        }
        c.expect_token(&Token::RParen, ")")?;
    }
    DataType::from_sql(&name, &args)
        .map(|t| (t, false))
        .map_err(|e| e.to_string())
}

/// A DEFAULT: a literal or one of the functions of API.md 3.3.
fn parse_default(c: &mut Cursor) -> Result<Option<DefaultSpec>, ParseError> {
    let negative = c.token(&Token::Minus);
    let lit = match c.next().ok_or("DEFAULT needs a value")? {
        Token::Number(n, _) => Literal::Number(if negative { format!("-{n}") } else { n }),
        Token::SingleQuotedString(s) => Literal::Str(s),
        Token::Word(w) => {
            let func = match w.value.to_ascii_uppercase().as_str() {
                "NULL" => return Ok(None),
                "TRUE" => return Ok(Some(DefaultSpec::Literal(Literal::Bool(true)))),
                "FALSE" => return Ok(Some(DefaultSpec::Literal(Literal::Bool(false)))),
                "NOW" | "CURRENT_TIMESTAMP" => DefaultExpr::Now,
                "SNOWFLAKE_ID" => DefaultExpr::SnowflakeId,
                "UUID_V7" => DefaultExpr::UuidV7,
                "ULID" => DefaultExpr::Ulid,
                "CURRENT_USER" | "KDB_CURRENT_USER" => DefaultExpr::CurrentUser,
                _ => return Err(format!("unsupported DEFAULT {}", w.value)),
            };
            if c.token(&Token::LParen) {
                c.expect_token(&Token::RParen, ")")?;
            }
            return Ok(Some(DefaultSpec::Expr(func)));
        }
        other => return Err(format!("unsupported DEFAULT {other}")),
    };
    Ok(Some(DefaultSpec::Literal(lit)))
}

#[path = "dialect_alter.rs"]
mod alter;
use alter::parse_alter;

#[cfg(test)]
#[path = "dialect_test.rs"]
mod tests;

#[path = "dialect_kind.rs"]
mod kind;
