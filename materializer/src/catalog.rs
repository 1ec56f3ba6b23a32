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

    /// The hot-tier family holding the table's rows: `streams` for STREAM tables.
    pub fn family(&self) -> Family {
        if self.kind == TableKind::Stream {
            Family::Streams
        } else {
            Family::Rows
        }
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

/// The storage every node has: its own `data/storage` directory.
pub const LOCAL_STORAGE: &str = "local";
/// The default templates (API.md 3.10): a table's cold directory under its storage's base.
pub const DEFAULT_SHARED_TEMPLATE: &str = "{namespace}/{tableName}";
pub const DEFAULT_USER_TEMPLATE: &str = "{namespace}/{tableName}/{userId}";

/// What backs a storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StorageKind {
    /// A directory of the node's filesystem.
    Filesystem,
    /// An S3-compatible object store.
    S3,
}

impl StorageKind {
    /// The name in `system.storages` and `CREATE STORAGE … TYPE '…'`.
    pub fn name(self) -> &'static str {
        match self {
            StorageKind::Filesystem => "filesystem",
            StorageKind::S3 => "s3",
        }
    }
}

/// A storage (API.md 3.10): where the cold tier of the tables naming it in `STORAGE_ID`
/// lives, and how a table's directory there is named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageDef {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub kind: StorageKind,
    /// Filesystem: an absolute directory (empty for `local`: the node's `data/storage`).
    /// S3: `s3://bucket` or `s3://bucket/prefix`.
    pub base_directory: String,
    pub region: Option<String>,
    /// A JSON object (S3: `access_key_id`, `secret_access_key`, `session_token`); never
    /// shown to non-admins.
    pub credentials: Option<String>,
    /// A JSON object of backend settings (S3: `endpoint`, `allow_http`, …).
    pub config: String,
    pub shared_tables_template: String,
    pub user_tables_template: String,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl StorageDef {
    /// The built-in `local` storage.
    pub fn local() -> StorageDef {
        StorageDef {
            id: LOCAL_STORAGE.into(),
            name: "Local storage".into(),
            description: Some("The node's data directory (data/storage)".into()),
            kind: StorageKind::Filesystem,
            base_directory: String::new(),
            region: None,
            credentials: None,
            config: "{}".into(),
            shared_tables_template: DEFAULT_SHARED_TEMPLATE.into(),
            user_tables_template: DEFAULT_USER_TEMPLATE.into(),
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    /// The directory of `namespace.table` (and, for USER tables, of `user`'s rows) relative
    /// to the storage's base: its template with the placeholders filled in. `user` is
    /// escaped into one path component.
    pub fn table_path(&self, namespace: &str, table: &str, user: Option<&str>) -> String {
        let template = if user.is_some() {
            &self.user_tables_template
        } else {
            &self.shared_tables_template
        };
        let user = user.map(escape_path_component).unwrap_or_default();
        render(template, namespace, table, &user)
    }

    /// The directory holding every user's directory of USER table `namespace.table`: the
    /// user template without its last component (the one naming the user).
    pub fn user_tables_dir(&self, namespace: &str, table: &str) -> String {
        let template = self.user_tables_template.trim_matches('/');
        let parent = template.rsplit_once('/').map_or("", |(p, _)| p);
        render(parent, namespace, table, "")
    }
}

/// `template` with its placeholders filled in, without leading or trailing `/`.
fn render(template: &str, namespace: &str, table: &str, user: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push_str(match &rest[open + 1..open + close] {
            "namespace" => namespace,
            "tableName" | "table" => table,
            "userId" | "user_id" => user,
            other => other,
        });
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out.trim_matches('/').to_owned()
}

/// A path template as the reference's clients write it, in FoldDB's terms: the
/// reference's other spellings of the placeholders (`{table_name}`, `{namespace_id}`,
/// `{user-id}`, …) become `{tableName}`, `{namespace}`, `{userId}`; a user template whose
/// directories above the user's do not name the namespace and the table gets them, just
/// above the user's directory (`users/{userId}` → `users/{namespace}/{tableName}/{userId}`),
/// so no two tables share a directory.
pub fn normalize_template(template: &str, user: bool) -> String {
    let mut t = template.trim().to_owned();
    for (from, to) in [
        ("{table_name}", "{tableName}"),
        ("{table-id}", "{tableName}"),
        ("{table_id}", "{tableName}"),
        ("{namespace_id}", "{namespace}"),
        ("{namespaceId}", "{namespace}"),
        ("{namespace-id}", "{namespace}"),
        ("{user-id}", "{userId}"),
        ("{user_id}", "{userId}"),
        ("{table}", "{tableName}"),
    ] {
        t = t.replace(from, to);
    }
    if !user {
        return t;
    }
    let trimmed = t.trim_end_matches('/');
    let (parent, last) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
    let has = |names: &[&str]| names.iter().any(|n| parent.contains(n));
    // A leading `/` stays (and is refused by `check_template`).
    let mut dirs: Vec<&str> = if trimmed.contains('/') {
        parent.split('/').collect()
    } else {
        Vec::new()
    };
    if !has(&["{namespace}"]) {
        dirs.push("{namespace}");
    }
    if !has(&["{tableName}", "{table}"]) {
        dirs.push("{tableName}");
    }
    dirs.push(last);
    dirs.join("/")
}

/// Checks a path template (`SHARED_TABLES_TEMPLATE`, `USER_TABLES_TEMPLATE`): relative,
/// placeholders only `{namespace}`, `{tableName}` (or `{table}`) and, in user templates,
/// `{userId}` (or `{user_id}`). Both must name the namespace and the table, so no two tables
/// share a directory; a user template ends with the user's own directory.
pub fn check_template(template: &str, user: bool) -> std::result::Result<(), String> {
    let what = if user {
        "USER_TABLES_TEMPLATE"
    } else {
        "SHARED_TABLES_TEMPLATE"
    };
    let mut seen = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("{what} '{template}' has an unclosed '{{'"));
        };
        let name = &rest[open + 1..open + close];
        let known = match name {
            "namespace" => "namespace",
            "tableName" | "table" => "tableName",
            "userId" | "user_id" if user => "userId",
            _ => {
                let allowed = if user {
                    "{namespace}, {tableName}, {userId}"
                } else {
                    "{namespace}, {tableName}"
                };
                return Err(format!(
                    "{what} '{template}' has an unknown placeholder '{{{name}}}': allowed are {allowed}"
                ));
            }
        };
        seen.push(known);
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("{what} '{template}' has an unopened '}}'"));
    }
    if template.starts_with('/') || template.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!(
            "{what} '{template}' must be a relative path without '.' or '..' components"
        ));
    }
    for needed in ["namespace", "tableName"] {
        if !seen.contains(&needed) {
            return Err(format!("{what} '{template}' must contain {{{needed}}}"));
        }
    }
    if user {
        let last = template
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("");
        if !last.contains("{userId}") && !last.contains("{user_id}") {
            return Err(format!(
                "{what} '{template}' must end with the user's directory: its last component \
                 must contain {{userId}} (like '{{userId}}' or 'usr_{{userId}}')"
            ));
        }
        if seen.iter().filter(|s| **s == "userId").count() != 1 {
            return Err(format!("{what} '{template}' must contain {{userId}} once"));
        }
        let parent = template
            .trim_end_matches('/')
            .rsplit_once('/')
            .map_or("", |(p, _)| p);
        let names_table = (parent.contains("{tableName}") || parent.contains("{table}"))
            && parent.contains("{namespace}");
        if !names_table {
            return Err(format!(
                "{what} '{template}' must name {{namespace}} and {{tableName}} above the user's \
                 directory, so that no two tables share a directory"
            ));
        }
    }
    Ok(())
}

/// Escapes a user id into one path component: bytes outside `[A-Za-z0-9_.-]` (and a
/// leading `.`) become `%XX`, so no id leaves its directory.
pub fn escape_path_component(id: &str) -> String {
    let mut safe = String::new();
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-".contains(&b) && !(safe.is_empty() && b == b'.') {
            safe.push(b as char);
        } else {
            safe.push_str(&format!("%{b:02X}"));
        }
    }
    safe
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

/// How a vector index ranks rows (API.md 3.3, `USING COSINE|L2|DOT`): by cosine distance,
/// by Euclidean distance, or by inner product (largest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VectorMetric {
    Cosine,
    L2,
    Dot,
}

impl VectorMetric {
    /// The name in `USING …`, `DESCRIBE` and `system.tables`.
    pub fn name(self) -> &'static str {
        match self {
            VectorMetric::Cosine => "COSINE",
            VectorMetric::L2 => "L2",
            VectorMetric::Dot => "DOT",
        }
    }

    pub fn parse(s: &str) -> Option<VectorMetric> {
        match s.to_ascii_uppercase().as_str() {
            "COSINE" => Some(VectorMetric::Cosine),
            "L2" | "EUCLIDEAN" => Some(VectorMetric::L2),
            "DOT" | "IP" | "INNER_PRODUCT" => Some(VectorMetric::Dot),
            _ => None,
        }
    }
}

/// A vector index on one EMBEDDING column of a USER or SHARED table
/// (`ALTER TABLE … CREATE VECTOR INDEX`). The index itself is not stored: every node builds
/// it from the table's rows and keeps it up to date from the change journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorIndexDef {
    pub table: TableId,
    /// The column's id (a rename keeps the index).
    pub column: u32,
    pub metric: VectorMetric,
    pub created_at_ms: u64,
    /// The log index of the entry that created it: an index dropped and created again is
    /// another index.
    pub created_index: u64,
}

// Catalog keys: a two-byte kind tag, then the parts separated by 0x00 (names never hold NUL:
// identifiers are validated ASCII).
const NAMESPACE: &[u8] = b"n\0";
const TABLE: &[u8] = b"t\0";
const HISTORY: &[u8] = b"h\0";
const USER: &[u8] = b"u\0";
const AUDIT: &[u8] = b"a\0";
const JOB: &[u8] = b"j\0";
const STORAGE: &[u8] = b"s\0";
const MANIFEST: &[u8] = b"c\0";
const FLUSHED: &[u8] = b"f\0";
const DROPPED_DIR: &[u8] = b"d\0";
const VECTOR_INDEX: &[u8] = b"v\0";

/// The key of the vector index on column `column` of `table`.
pub(crate) fn vector_index_key(table: TableId, column: u32) -> Vec<u8> {
    [
        VECTOR_INDEX,
        &table.0.to_be_bytes()[..],
        &column.to_be_bytes()[..],
    ]
    .concat()
}

pub(crate) fn vector_index_prefix(table: TableId) -> Vec<u8> {
    [VECTOR_INDEX, &table.0.to_be_bytes()[..]].concat()
}

/// The vector indexes of `table`, by column id.
pub fn vector_indexes(state: &dyn StateRead, table: TableId) -> Result<Vec<VectorIndexDef>> {
    decode_all(
        state.scan_prefix(Family::Catalog, &vector_index_prefix(table))?,
        "a vector index",
    )
}

/// The vector index on column `column` of `table`, if there is one.
pub fn vector_index(
    state: &dyn StateRead,
    table: TableId,
    column: u32,
) -> Result<Option<VectorIndexDef>> {
    get_decoded(state, &vector_index_key(table, column), "a vector index")
}

/// The key of a table scope's cold-tier manifest (`materializer/FORMAT.md`, "Cold tier").
pub fn manifest_key(table: TableId, scope: &str) -> Vec<u8> {
    [MANIFEST, &table.0.to_be_bytes()[..], scope.as_bytes()].concat()
}

/// The prefix of every manifest of a table.
pub(crate) fn manifest_prefix(table: TableId) -> Vec<u8> {
    [MANIFEST, &table.0.to_be_bytes()[..]].concat()
}

/// The key recording that a DROP removed a table whose cold tier was directory `dir` of
/// storage `storage`, a directory of each node: every member removes its own copy's files.
pub(crate) fn dropped_dir_key(storage: &str, dir: &str) -> Vec<u8> {
    [DROPPED_DIR, storage.as_bytes(), b"\0", dir.as_bytes()].concat()
}

/// Every (storage id, directory) a DROP removed (see [`dropped_dir_key`]).
pub fn dropped_dirs(state: &dyn StateRead) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (key, _) in state.scan_prefix(Family::Catalog, DROPPED_DIR)? {
        let rest = &key[DROPPED_DIR.len()..];
        let Some(cut) = rest.iter().position(|b| *b == 0) else {
            continue;
        };
        let (storage, dir) = (&rest[..cut], &rest[cut + 1..]);
        if let (Ok(storage), Ok(dir)) = (std::str::from_utf8(storage), std::str::from_utf8(dir)) {
            out.push((storage.to_owned(), dir.to_owned()));
        }
    }
    Ok(out)
}

/// The key of a table's flush mark: the `through_seq` of its last committed flush.
pub(crate) fn flushed_key(table: TableId) -> Vec<u8> {
    [FLUSHED, &table.0.to_be_bytes()[..]].concat()
}

/// The manifest of `table`'s `scope` ("" for SHARED tables); `None` when nothing of it was
/// ever flushed.
pub fn manifest(
    state: &dyn StateRead,
    table: TableId,
    scope: &str,
) -> Result<Option<crate::cold::Manifest>> {
    get_decoded(state, &manifest_key(table, scope), "a cold-tier manifest")
}

/// Every manifest of `table`, by scope.
pub fn manifests(state: &dyn StateRead, table: TableId) -> Result<Vec<crate::cold::Manifest>> {
    decode_all(
        state.scan_prefix(Family::Catalog, &manifest_prefix(table))?,
        "a cold-tier manifest",
    )
}

/// The `through_seq` of `table`'s last committed flush.
pub fn flushed_through(state: &dyn StateRead, table: TableId) -> Result<Option<i64>> {
    get_decoded(state, &flushed_key(table), "a flush mark")
}

pub(crate) fn storage_key(id: &str) -> Vec<u8> {
    [STORAGE, id.as_bytes()].concat()
}

/// Storage `id`: the built-in `local`, or one created with CREATE STORAGE.
pub fn storage(state: &dyn StateRead, id: &str) -> Result<Option<StorageDef>> {
    if id == LOCAL_STORAGE {
        return Ok(Some(StorageDef::local()));
    }
    get_decoded(state, &storage_key(id), "a storage")
}

/// Every storage: `local` first, then the created ones by id.
pub fn storages(state: &dyn StateRead) -> Result<Vec<StorageDef>> {
    let mut out = vec![StorageDef::local()];
    out.extend(decode_all::<StorageDef>(
        state.scan_prefix(Family::Catalog, STORAGE)?,
        "a storage",
    )?);
    Ok(out)
}

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

impl StateRead for crate::hot::HotSnapshot<'_> {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>> {
        crate::hot::HotSnapshot::get(self, family, key)
    }
    fn scan_prefix(&self, family: Family, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        crate::hot::HotSnapshot::scan_prefix(self, family, prefix)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_templates_are_accepted_and_kept_apart() {
        let n = |t: &str| normalize_template(t, true);
        assert_eq!(
            n("{namespace}/{tableName}/{userId}"),
            "{namespace}/{tableName}/{userId}"
        );
        assert_eq!(
            n("ns_{namespace_id}/t_{table_name}/usr_{user-id}"),
            "ns_{namespace}/t_{tableName}/usr_{userId}"
        );
        assert_eq!(
            n("users/{user_id}"),
            "users/{namespace}/{tableName}/{userId}"
        );
        assert_eq!(n("{userId}"), "{namespace}/{tableName}/{userId}");
        assert_eq!(n("/abs/{userId}"), "/abs/{namespace}/{tableName}/{userId}");
        for ok in [
            "ns_{namespace}/t_{tableName}/usr_{userId}",
            "users/{namespace}/{tableName}/{user_id}",
        ] {
            assert_eq!(check_template(ok, true), Ok(()), "{ok}");
        }
        for bad in [
            "/abs/{namespace}/{tableName}/{userId}",
            "../{namespace}/{tableName}/{userId}",
            "{namespace}/{tableName}/all",
            "{namespace}/{tableName}_{userId}",
            "{namespace}/{tableName}/{userId}/{userId}",
        ] {
            assert!(check_template(bad, true).is_err(), "{bad}");
        }
        let mut s = StorageDef::local();
        s.user_tables_template = "ns_{namespace}/t_{tableName}/usr_{userId}".into();
        assert_eq!(
            s.table_path("app", "u", Some("al/ice")),
            "ns_app/t_u/usr_al%2Fice"
        );
        assert_eq!(s.user_tables_dir("app", "u"), "ns_app/t_u");
    }
}
