//! The catalog: namespaces, tables (with every schema version), and users. All of it is
//! folded from the log like the rows are, and lives in the hot tier's `catalog` family
//! (key layout: `materializer/FORMAT.md`, "catalog").

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Result;
use crate::hot::{Family, HotBatch, HotStore};
use crate::value::{DataType, Value};

/// A table's id: assigned at apply, in log order, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableId(pub u64);

/// The three kinds of table a user can create (API.md 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TableKind {
    User,
    Shared,
    Stream,
}

impl TableKind {
    /// The name in messages and system tables: `USER`, `SHARED`, `STREAM`.
    pub fn name(self) -> &'static str {
        match self {
            TableKind::User => "USER",
            TableKind::Shared => "SHARED",
            TableKind::Stream => "STREAM",
        }
    }

    /// Whether rows belong to a user (the row key carries the owner).
    pub fn is_per_user(self) -> bool {
        matches!(self, TableKind::User | TableKind::Stream)
    }
}

/// A user's role (API.md 1.3), lowercase on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    User,
    Service,
    Dba,
    System,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Service => "service",
            Role::Dba => "dba",
            Role::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s.to_ascii_lowercase().as_str() {
            "user" => Some(Role::User),
            "service" => Some(Role::Service),
            "dba" => Some(Role::Dba),
            "system" => Some(Role::System),
            _ => None,
        }
    }

    /// dba and system: the roles that administer the server.
    pub fn is_admin(self) -> bool {
        matches!(self, Role::Dba | Role::System)
    }
}

/// Who may read a SHARED table (API.md 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AccessLevel {
    Public,
    Private,
    Restricted,
    Dba,
}

impl AccessLevel {
    pub fn name(self) -> &'static str {
        match self {
            AccessLevel::Public => "PUBLIC",
            AccessLevel::Private => "PRIVATE",
            AccessLevel::Restricted => "RESTRICTED",
            AccessLevel::Dba => "DBA",
        }
    }

    pub fn parse(s: &str) -> Option<AccessLevel> {
        match s.to_ascii_uppercase().as_str() {
            "PUBLIC" => Some(AccessLevel::Public),
            "PRIVATE" => Some(AccessLevel::Private),
            "RESTRICTED" => Some(AccessLevel::Restricted),
            "DBA" => Some(AccessLevel::Dba),
            _ => None,
        }
    }
}

/// A column default. Non-deterministic defaults are resolved by the planner before proposing
/// (apply never evaluates them); the definition is kept for DESCRIBE and later inserts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DefaultExpr {
    Literal(Value),
    Now,
    SnowflakeId,
    UuidV7,
    Ulid,
    CurrentUser,
}

impl DefaultExpr {
    /// The SQL text shown by DESCRIBE.
    pub fn sql(&self) -> String {
        match self {
            DefaultExpr::Literal(v) => v.sql_literal(),
            DefaultExpr::Now => "NOW()".into(),
            DefaultExpr::SnowflakeId => "SNOWFLAKE_ID()".into(),
            DefaultExpr::UuidV7 => "UUID_V7()".into(),
            DefaultExpr::Ulid => "ULID()".into(),
            DefaultExpr::CurrentUser => "CURRENT_USER()".into(),
        }
    }
}

/// One column of a table. `id` is stable across renames; rows store cells by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub id: u32,
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
    pub default: Option<DefaultExpr>,
    pub unique: bool,
}

/// The `WITH (…)` options of CREATE TABLE (API.md 3.3), validated by the planner. The ones a
/// later issue acts on (flush policy, retention, TTL eviction) are stored now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableOptions {
    pub storage_id: String,
    pub use_user_storage: bool,
    /// `rows:N`, `interval:S` or both, as given (validated).
    pub flush_policy: Option<String>,
    pub deleted_retention_hours: Option<u64>,
    pub ttl_seconds: Option<u64>,
    pub access_level: Option<AccessLevel>,
}

/// A table's definition at one schema version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    pub id: TableId,
    pub namespace: String,
    pub name: String,
    pub kind: TableKind,
    pub columns: Vec<ColumnDef>,
    /// The primary-key column's id (USER and SHARED tables have exactly one).
    pub primary_key: Option<u32>,
    pub options: TableOptions,
    pub schema_version: u32,
    pub next_column_id: u32,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// What the last schema change did, for DESCRIBE TABLE … HISTORY.
    pub change: String,
}

impl TableDef {
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn column_by_id(&self, id: u32) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.id == id)
    }

    pub fn pk_column(&self) -> Option<&ColumnDef> {
        self.primary_key.and_then(|id| self.column_by_id(id))
    }

    /// Whether rows carry `_deleted` (STREAM tables delete physically).
    pub fn has_soft_delete(&self) -> bool {
        self.kind != TableKind::Stream
    }
}

/// A namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceDef {
    pub name: String,
    pub description: Option<String>,
    pub created_at_ms: u64,
}

/// A user (API.md 1.3). An empty `password_hash` means no password login (root before setup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserDef {
    pub id: String,
    pub role: Role,
    pub email: Option<String>,
    pub password_hash: String,
    pub auth_type: String,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub deleted_at_ms: Option<u64>,
}

impl TableDef {
    /// `namespace.name (id BIGINT PRIMARY KEY, v TEXT)` of `kind`, as a CREATE TABLE op
    /// carries it (id and version assigned at apply): for tests and examples.
    pub fn example(namespace: &str, name: &str, kind: TableKind) -> TableDef {
        let column = |id: u32, name: &str, data_type, nullable| ColumnDef {
            id,
            name: name.into(),
            data_type,
            nullable,
            default: None,
            unique: id == 1,
        };
        TableDef {
            id: TableId(0),
            namespace: namespace.into(),
            name: name.into(),
            kind,
            columns: vec![
                column(1, "id", DataType::BigInt, false),
                column(2, "v", DataType::Text, true),
            ],
            primary_key: Some(1),
            options: TableOptions {
                storage_id: "local".into(),
                use_user_storage: false,
                flush_policy: None,
                deleted_retention_hours: None,
                ttl_seconds: (kind == TableKind::Stream).then_some(60),
                access_level: (kind == TableKind::Shared).then_some(AccessLevel::Private),
            },
            schema_version: 0,
            next_column_id: 3,
            created_at_ms: 0,
            updated_at_ms: 0,
            change: "created".into(),
        }
    }
}

/// One entry of `system.audit_log` (API.md 3.7): logins, user and permission changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// A `_seq` from the log: unique, and in log order.
    pub id: i64,
    pub at_ms: u64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: Option<String>,
    pub ip: Option<String>,
    pub subject: Option<String>,
}

// Catalog keys: a two-byte kind tag, then the parts separated by 0x00 (names never hold NUL:
// identifiers are validated ASCII).
const NAMESPACE: &[u8] = b"n\0";
const TABLE: &[u8] = b"t\0";
const HISTORY: &[u8] = b"h\0";
const USER: &[u8] = b"u\0";
const AUDIT: &[u8] = b"a\0";
const JOB: &[u8] = b"j\0";

pub(crate) fn job_key(id: &str) -> Vec<u8> {
    [JOB, id.as_bytes()].concat()
}

/// The record of job `id`, once its entry is applied.
pub fn job(state: &dyn StateRead, id: &str) -> Result<Option<crate::cold::JobRecord>> {
    get_decoded(state, &job_key(id), "a job")
}

/// Every finished job (flush, compaction, eviction), by id.
pub fn jobs(state: &dyn StateRead) -> Result<Vec<crate::cold::JobRecord>> {
    decode_all(state.scan_prefix(Family::Catalog, JOB)?, "a job")
}

pub(crate) fn audit_key(id: i64) -> Vec<u8> {
    [AUDIT, &id.to_be_bytes()].concat()
}

pub(crate) fn namespace_key(name: &str) -> Vec<u8> {
    [NAMESPACE, name.as_bytes()].concat()
}

pub(crate) fn table_key(namespace: &str, name: &str) -> Vec<u8> {
    [TABLE, namespace.as_bytes(), b"\0", name.as_bytes()].concat()
}

pub(crate) fn table_prefix(namespace: &str) -> Vec<u8> {
    [TABLE, namespace.as_bytes(), b"\0"].concat()
}

pub(crate) fn history_key(id: TableId, version: u32) -> Vec<u8> {
    [HISTORY, &id.0.to_be_bytes()[..], &version.to_be_bytes()[..]].concat()
}

pub(crate) fn user_key(id: &str) -> Vec<u8> {
    [USER, id.as_bytes()].concat()
}

/// Read access to state: the store itself, or the store as an entry being folded will leave
/// it.
pub trait StateRead {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn scan_prefix(&self, family: Family, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
}

impl StateRead for HotStore {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>> {
        HotStore::get(self, family, key)
    }
    fn scan_prefix(&self, family: Family, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        HotStore::scan_prefix(self, family, prefix)
    }
}

/// The store seen through a batch that is being built.
pub(crate) struct Pending<'a> {
    pub store: &'a HotStore,
    pub batch: &'a HotBatch,
}

impl StateRead for Pending<'_> {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.batch.get(self.store, family, key)
    }
    fn scan_prefix(&self, family: Family, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.batch.scan_prefix(self.store, family, prefix)
    }
}

fn decode_all<T: serde::de::DeserializeOwned>(
    rows: Vec<(Vec<u8>, Vec<u8>)>,
    what: &'static str,
) -> Result<Vec<T>> {
    rows.into_iter()
        .map(|(_, v)| codec::decode(&v, what))
        .collect()
}

fn get_decoded<T: serde::de::DeserializeOwned>(
    state: &dyn StateRead,
    key: &[u8],
    what: &'static str,
) -> Result<Option<T>> {
    state
        .get(Family::Catalog, key)?
        .map(|v| codec::decode(&v, what))
        .transpose()
}

pub fn namespace(state: &dyn StateRead, name: &str) -> Result<Option<NamespaceDef>> {
    get_decoded(state, &namespace_key(name), "a namespace")
}

/// Every namespace, by name.
pub fn namespaces(state: &dyn StateRead) -> Result<Vec<NamespaceDef>> {
    decode_all(
        state.scan_prefix(Family::Catalog, NAMESPACE)?,
        "a namespace",
    )
}

/// The current definition of `namespace.name`.
pub fn table(state: &dyn StateRead, namespace: &str, name: &str) -> Result<Option<TableDef>> {
    get_decoded(state, &table_key(namespace, name), "a table")
}

/// Every table of `namespace` (every table when `None`), by namespace and name.
pub fn tables(state: &dyn StateRead, namespace: Option<&str>) -> Result<Vec<TableDef>> {
    let prefix = namespace.map_or_else(|| TABLE.to_vec(), table_prefix);
    decode_all(state.scan_prefix(Family::Catalog, &prefix)?, "a table")
}

/// Every schema version of table `id`, oldest first.
pub fn table_history(state: &dyn StateRead, id: TableId) -> Result<Vec<TableDef>> {
    let prefix = [HISTORY, &id.0.to_be_bytes()[..]].concat();
    decode_all(
        state.scan_prefix(Family::Catalog, &prefix)?,
        "a table version",
    )
}

pub fn user(state: &dyn StateRead, id: &str) -> Result<Option<UserDef>> {
    get_decoded(state, &user_key(id), "a user")
}

/// The audit log, oldest first.
pub fn audit_log(state: &dyn StateRead) -> Result<Vec<AuditEntry>> {
    decode_all(state.scan_prefix(Family::Catalog, AUDIT)?, "an audit entry")
}

/// Every user, by id.
pub fn users(state: &dyn StateRead) -> Result<Vec<UserDef>> {
    decode_all(state.scan_prefix(Family::Catalog, USER)?, "a user")
}
