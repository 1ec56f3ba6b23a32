//! [`Engine`]: one SQL request from text to results (API.md 1.7). Split, classify and
//! authorize every statement first; then run them in order, stopping at the first failure.
//! Queries run in DataFusion over the hot tier; writes are planned into events (every
//! non-deterministic value resolved here) and proposed through the log — there is no other
//! write path.
//!
//! [`Engine::run`] dispatches each statement to one call, in the module of its concern:
//! - `engine_authz.rs`: who may run what (roles, SHARED access levels, system tables,
//!   EXECUTE AS USER), checked for the whole batch before any statement runs;
//! - `engine_dml.rs`: INSERT / UPDATE / DELETE planned into ops, and transactions;
//! - `engine_ddl.rs`: namespaces and tables; `engine_users.rs`: users;
//! - `engine_storage.rs`: storages, STORAGE FLUSH / COMPACT / CHECK and their jobs;
//! - `engine_files.rs`: FILE uploads (multipart requests) and downloads;
//! - `engine_meta.rs`: DESCRIBE, SHOW STATS, SUBSCRIBE TO;
//! - `engine_results.rs`: how answers are shaped (messages, rows, RETURNING).
//!
//! This file keeps the request loop (split, limits, parameters, timeouts), queries through
//! DataFusion and the point-select fast path.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use datafusion::catalog::MemoryCatalogProviderList;
use datafusion::common::ScalarValue;
use datafusion::execution::context::{SQLOptions, SessionContext, SessionState};
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionConfig;
use datafusion::sql::sqlparser::ast::{
    self as sql, AssignmentTarget, Expr, FromTable, SetExpr, TableFactor, TableObject,
    UnaryOperator,
};
use folddb_materializer::UserDef;
use folddb_materializer::row::row_key;
use folddb_materializer::{
    AccessLevel, ColumnDef, Command, DataType, DefaultExpr, EventFold, Family, HotStore, JobKind,
    Op, OpResult, Outcome, Preview, Propose, ProposeError, Role, RowChange, RowDelete,
    SEQ_OWN_WRITE, TableDef, TableId, TableKind, TableOptions, Value, catalog,
};
use serde_json::Value as Json;

use crate::convert::{self, Literal, arrow_to_value, cell_json, coerce};
use crate::dialect::{
    self, AlterChange, ClusterCommand, ColumnSpec, CreateTable, DefaultSpec, RESERVED_COLUMNS,
    Statement, StorageTarget, TableName, UserAuth, UserChange,
};
use crate::error::Error;
use crate::ids::{self, SnowflakeIds};
use crate::prepared::Prepared;
use crate::provider::{Caller, FoldCatalog, View};
pub use crate::request::{
    ColumnInfo, ErrorCode, Limits, QueryResult, SqlError, SqlRequest, SqlResponse,
};
use crate::system::{self, Rows};
use folddb_materializer::cold::ColdStore;
use folddb_materializer::cold::job as cold_job;

#[path = "engine_authz.rs"]
mod authz;
#[path = "engine_backup.rs"]
mod backup_exec;
#[path = "engine_ddl.rs"]
mod ddl;
#[path = "engine_dml.rs"]
mod dml;
#[path = "engine_export.rs"]
pub mod export;
#[path = "engine_files.rs"]
pub mod files;
#[path = "engine_meta.rs"]
mod meta;
#[path = "engine_query.rs"]
mod query_exec;
#[path = "engine_results.rs"]
mod results;
#[path = "engine_storage.rs"]
mod storage;
#[path = "engine_topics.rs"]
mod topics;
#[path = "engine_users.rs"]
mod users;
pub use authz::audit;
use authz::{alter_allowed, denied, grant_allowed, may_read};
use ddl::{flush_policy, plan_create_table};
use dml::{Evaluated, eval_literal, scalar};
use results::*;
pub use topics::{ConsumeRequest, Consumed, Delivered, may_consume};

/// The catalog every namespace is a schema of: the reference's name, which its clients
/// filter `information_schema` by (`table_catalog = 'kalam'`).
pub const CATALOG: &str = "kalam";
pub use results::{Answer, RowStream};

/// The SQL engine of one node.
pub struct Engine {
    store: Arc<HotStore>,
    proposer: Arc<dyn Propose>,
    base: SessionState,
    ids: Arc<SnowflakeIds>,
    limits: Limits,
    live: Option<Arc<dyn crate::live::LiveSource>>,
    node: Arc<crate::node_info::NodeInfo>,
    /// Where clients open live queries (`SUBSCRIBE TO` over HTTP answers it).
    ws_url: String,
    /// Added to this node's clock when it stamps a command it proposes: a seam for tests of
    /// clocks that disagree between nodes (`FOLDDB_TEST_CLOCK_SKEW_MS`); 0 otherwise.
    clock_skew_ms: i64,
    /// The cold tier under the hot one, and the fold that drives it (transactions preview
    /// their writes with it).
    cold: Option<Arc<ColdStore>>,
    fold: EventFold,
    /// Jobs proposed and not yet applied (`system.jobs`, `KILL JOB`).
    jobs: Arc<crate::jobs::Jobs>,
    /// Held by a flush or compaction job from its first write to its settling, and by the
    /// cold-tier sweeps: a sweep never removes a file a commit still to come names.
    cold_jobs: Arc<tokio::sync::Mutex<()>>,
    /// The flush policy of tables created without one (rows, interval in seconds); `None`:
    /// such tables are flushed only when asked.
    default_flush_policy: Option<FlushPolicy>,
    /// This node is a member of a cluster: its cold jobs write only to storages every member
    /// reads (object stores), remove only their own files, and the segments a compaction
    /// replaced only after this long (see [`Engine::in_cluster`]).
    cold_in_cluster: Option<std::time::Duration>,
    /// In a cluster: how a job's files of a storage that is a directory of each node reach a
    /// majority of the members before its commit is proposed (see [`Engine::with_replicas`]).
    replicas: Option<Arc<dyn folddb_materializer::cold::Replicas>>,
    /// In a cluster: when each file of a node-local storage that no manifest lists was first
    /// seen unlisted (see [`Engine::sweep_node_local`]).
    unlisted_since: Arc<std::sync::Mutex<HashMap<String, std::time::Instant>>>,
    /// Where queries are planned and run (`None`: the caller's runtime).
    executor: Option<tokio::runtime::Handle>,
    /// How long a consumer of a topic's group holds what it was sent (API.md 4.5).
    topic_visibility_ms: u64,
    /// The vector indexes this node built (each build a `VI-…` job).
    vectors: Arc<folddb_materializer::vector_index::VectorIndexes>,
    /// By table and scope: the FILE subfolder uploads go to and the files it holds.
    file_counts: Arc<std::sync::Mutex<files::FileCounts>>,
    /// The server's data directory: relative backup paths, restore marks, user exports.
    data_dir: Option<std::path::PathBuf>,
    /// A restore waits this long after each table (tests: a crash during a restore).
    restore_pause: std::time::Duration,
}

/// A FLUSH_POLICY: flush once this many row versions are pending, or once this many
/// seconds have passed since the last flush with rows pending.
pub type FlushPolicy = (Option<u64>, Option<u64>);

/// A FLUSH_POLICY text (`rows:N`, `interval:S` or both, API.md 3.3), checked.
pub fn parse_flush_policy(text: &str) -> Result<FlushPolicy, String> {
    flush_policy(text)
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

type StmtResult<T> = Result<T, Error>;

/// Where a statement runs: who asks, what it reads, and the namespace unqualified names
/// resolve in.
#[derive(Clone, Copy)]
struct At<'a> {
    caller: &'a Caller,
    view: &'a View,
    namespace: &'a str,
}

/// What one statement left for the response.
enum Out {
    Result(QueryResult),
    Inserted(u64),
    Updated(u64),
    Deleted(u64),
    /// ROLLBACK: the staged counts to take back, and its message.
    RolledBack([u64; 3], QueryResult),
    /// A query's rows, still to be pulled (a request's only statement).
    Rows(RowStream),
}

/// A write as planned: the ops, and how to report it.
struct Planned {
    ops: Vec<Op>,
    kind: WriteKind,
    /// Rows to return for `RETURNING`, completed with `_seq` once applied.
    returning: Option<Returning>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    Insert,
    Update,
    Delete,
}

struct Returning {
    schema: Vec<ColumnInfo>,
    /// Each row's cells, with `_seq` filled in from the outcome at `seq_index`.
    rows: Vec<Vec<Json>>,
    seq_index: Option<usize>,
}

/// An explicit transaction (API.md 1.7.5): its writes, staged to go to the log as one
/// command on COMMIT, and folded into a preview that its later statements read through.
struct Staged {
    ops: Vec<Op>,
    counts: [u64; 3],
    preview: Preview,
}

impl Staged {
    /// Adds one statement's ops, or fails with the precondition they break (a duplicate
    /// key, say) as the transaction stands. A change to a row the transaction already wrote
    /// expects [`SEQ_OWN_WRITE`] rather than the `_seq` the preview gave it.
    fn stage(&mut self, store: &HotStore, actor: &str, mut ops: Vec<Op>) -> StmtResult<()> {
        for op in &mut ops {
            match op {
                Op::Update {
                    table, scope, rows, ..
                } => {
                    for r in rows {
                        if self.preview.wrote(&row_key(*table, scope, &r.pk)) {
                            r.expected_seq = SEQ_OWN_WRITE;
                        }
                    }
                }
                Op::Delete { table, scope, rows } => {
                    for r in rows {
                        if self.preview.wrote(&row_key(*table, scope, &r.pk)) {
                            r.expected_seq = SEQ_OWN_WRITE;
                        }
                    }
                }
                _ => {}
            }
        }
        let cmd = Command {
            stamp_ms: now_ms(),
            actor: actor.to_owned(),
            ops,
        };
        let outcome = self.preview.apply(store, &cmd).map_err(|e| {
            Error::Internal(format!(
                "the hot tier failed while checking the transaction: {e}"
            ))
        })?;
        match outcome {
            Outcome::Applied(_) => {
                self.ops.extend(cmd.ops);
                Ok(())
            }
            Outcome::Rejected { error, kind, .. } => Err(Error::Rejected {
                kind,
                message: error,
            }),
        }
    }
}

impl Engine {
    pub fn new(store: Arc<HotStore>, proposer: Arc<dyn Propose>, node_id: u16) -> Engine {
        // A query's filters and aggregates run on every core (DataFusion splits a scan's
        // batches among them), as plain DataFusion does.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(CATALOG, "default")
            .with_target_partitions(cores);
        let mut base = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_optimizer_rule(Arc::new(crate::vector_plan::NearestRule))
            .build();
        if let Err(e) = datafusion_functions_json::register_all(&mut base) {
            tracing::warn!(error = %e, "JSON functions are unavailable");
        }
        let ids = Arc::new(SnowflakeIds::new(node_id));
        let vector = crate::vector::functions();
        for f in crate::functions::generators(ids.clone())
            .into_iter()
            .chain(vector)
        {
            use datafusion::execution::FunctionRegistry;
            if let Err(e) = base.register_udf(Arc::new(f)) {
                tracing::warn!(error = %e, "a SQL function is unavailable");
            }
        }
        let jobs: Arc<crate::jobs::Jobs> = Arc::default();
        let vectors = Arc::new(folddb_materializer::vector_index::VectorIndexes::new(Some(
            jobs.clone(),
        )));
        Engine {
            store,
            proposer,
            base,
            ids,
            limits: Limits::default(),
            live: None,
            node: Arc::default(),
            ws_url: "ws://127.0.0.1:8080/v1/ws".to_owned(),
            clock_skew_ms: 0,
            cold: None,
            fold: EventFold::default(),
            jobs,
            vectors,
            cold_jobs: Arc::default(),
            default_flush_policy: None,
            cold_in_cluster: None,
            replicas: None,
            unlisted_since: Arc::default(),
            executor: None,
            topic_visibility_ms: 60_000,
            file_counts: Arc::default(),
            data_dir: None,
            restore_pause: std::time::Duration::ZERO,
        }
    }

    /// How long a consumer of a topic's group holds the messages it was sent before the
    /// group's other consumers are sent them (default 60 s).
    pub fn with_topic_visibility(mut self, visibility: std::time::Duration) -> Engine {
        self.topic_visibility_ms = u64::try_from(visibility.as_millis()).unwrap_or(u64::MAX);
        self
    }

    pub fn with_limits(mut self, limits: Limits) -> Engine {
        // One memory pool for every query of the node, and the size-guarded functions.
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_limit(limits.query_memory_bytes, 1.0)
            .build_arc();
        match runtime {
            Ok(runtime) => {
                self.base = SessionStateBuilder::new_from_existing(self.base.clone())
                    .with_runtime_env(runtime)
                    .build();
            }
            Err(e) => tracing::warn!(error = %e, "the query memory limit could not be set"),
        }
        // Rebuilding the state registers its functions again in no set order: FoldDB's
        // vector functions must win over DataFusion's of the same name (`dot_product`, an
        // alias of its list `inner_product`).
        let vector = crate::vector::functions();
        for f in crate::functions::size_guarded(&self.base, limits.max_value_bytes)
            .into_iter()
            .chain(vector)
        {
            use datafusion::execution::FunctionRegistry;
            if let Err(e) = self.base.register_udf(Arc::new(f)) {
                tracing::warn!(error = %e, "a size guard could not be installed");
            }
        }
        self.limits = limits;
        self
    }

    /// What the `system` views say about the serving node.
    pub fn with_node_info(mut self, node: crate::node_info::NodeInfo) -> Engine {
        self.node = Arc::new(node);
        self
    }

    /// Skews the time this node stamps the commands it proposes by `ms` (a test seam: nodes
    /// whose clocks disagree; `_seq` order must not follow the clocks).
    pub fn with_clock_skew_ms(mut self, ms: i64) -> Engine {
        self.clock_skew_ms = ms;
        self
    }

    /// The `/v1/ws` URL `SUBSCRIBE TO` over HTTP points clients to.
    pub fn with_ws_url(mut self, url: impl Into<String>) -> Engine {
        self.ws_url = url.into();
        self
    }

    /// Reads and transactions see `cold` under the hot tier; `fold` is the fold the node
    /// applies entries with (built over the same cold tier).
    pub fn with_cold(mut self, cold: Arc<ColdStore>, fold: EventFold) -> Engine {
        self.cold = Some(cold);
        self.fold = fold;
        self
    }

    /// Vector indexes are saved in directory `dir` of the node's disk and loaded from it
    /// after a restart (`materializer/FORMAT.md`, "Vector index snapshots"), instead of
    /// being built again from the rows; each build starts after `build_delay` (tests: a
    /// crash during a build).
    pub fn with_vector_snapshots(
        mut self,
        dir: impl Into<std::path::PathBuf>,
        build_delay: std::time::Duration,
    ) -> Engine {
        self.vectors = Arc::new(
            folddb_materializer::vector_index::VectorIndexes::new(Some(self.jobs.clone()))
                .with_snapshots(dir)
                .with_build_delay(build_delay),
        );
        self
    }

    /// Tables created without a FLUSH_POLICY are flushed by `policy` (`None`: only when
    /// asked).
    pub fn with_default_flush_policy(mut self, policy: Option<FlushPolicy>) -> Engine {
        self.default_flush_policy = policy;
        self
    }

    /// This node is a member of a cluster. Every member folds the same commits. On object
    /// storage the cold tier is one set of files all of them read: a job settles by
    /// publishing manifests and removing only its own files (other members' jobs may be
    /// writing beside them; no sweep at start), and the segments a compaction replaced are
    /// removed `grace` after its commit applied here (a member that has not applied it yet,
    /// or a scan that started before, may still read them). A `filesystem` storage is a
    /// directory of each node: without [`Engine::with_replicas`] its tables are not flushed
    /// (their rows stay in the replicated hot tier).
    pub fn in_cluster(mut self, grace: std::time::Duration) -> Engine {
        self.cold_in_cluster = Some(grace);
        self
    }

    /// In a cluster, a job on a table whose storage is a directory of each node has
    /// `replicas` copy its files to a majority of the members before it proposes the commit;
    /// each member holds its own copy of every file (`folddb_cluster::files`).
    pub fn with_replicas(
        mut self,
        replicas: Arc<dyn folddb_materializer::cold::Replicas>,
    ) -> Engine {
        self.replicas = Some(replicas);
        self
    }

    /// Queries are planned and run on `executor`, a runtime apart from the one that serves
    /// requests (the server gives its threads a lower CPU priority): a long scan or
    /// aggregation then cannot hold up the point reads, writes and live deliveries of other
    /// connections. Their batches come back through a channel of two.
    pub fn with_executor(mut self, executor: tokio::runtime::Handle) -> Engine {
        self.executor = Some(executor);
        self
    }

    pub fn cold(&self) -> Option<&Arc<ColdStore>> {
        self.cold.as_ref()
    }

    pub fn jobs(&self) -> &Arc<crate::jobs::Jobs> {
        &self.jobs
    }

    /// The committed state, hot and cold.
    pub(crate) fn committed(&self) -> View {
        View::committed(self.store.clone())
            .with_cold(self.cold.clone())
            .with_vectors(self.vectors.clone())
    }

    /// The node's live queries, for `system.live` and `KILL LIVE QUERY`.
    pub fn with_live(mut self, live: Arc<dyn crate::live::LiveSource>) -> Engine {
        self.live = Some(live);
        self
    }

    pub fn store(&self) -> &Arc<HotStore> {
        &self.store
    }

    /// Runs one query as `caller` against the committed state: its batches.
    pub async fn read_as(
        &self,
        caller: &Caller,
        sql_text: &str,
    ) -> Result<Vec<RecordBatch>, SqlError> {
        self.read_typed(caller, sql_text)
            .await
            .map_err(|e| SqlError::from(e).for_role(caller.role))
    }

    /// [`Engine::read_as`], failing with the typed error.
    pub(crate) async fn read_typed(
        &self,
        caller: &Caller,
        sql_text: &str,
    ) -> StmtResult<Vec<RecordBatch>> {
        let view = self.committed();
        let at = At {
            caller,
            view: &view,
            namespace: "default",
        };
        self.query(&at, sql_text, &[], false, None)
            .await
            .map(|(_, batches)| batches)
    }

    /// Proposes `ops` as one command by `actor` and waits for the outcome.
    pub async fn propose_ops(&self, actor: &str, ops: Vec<Op>) -> Result<Vec<OpResult>, SqlError> {
        self.propose(actor, ops).await.map_err(SqlError::from)
    }

    async fn propose(&self, actor: &str, ops: Vec<Op>) -> StmtResult<Vec<OpResult>> {
        let cmd = Command {
            stamp_ms: now_ms().saturating_add_signed(self.clock_skew_ms),
            actor: actor.to_owned(),
            ops,
        };
        match self.proposer.propose(cmd).await {
            Ok(Outcome::Applied(results)) => Ok(results),
            Ok(Outcome::Rejected { error, kind, .. }) => Err(Error::Rejected {
                kind,
                message: error,
            }),
            Err(ProposeError::NotAccepted(m)) => Err(Error::Unavailable(m)),
            Err(e @ ProposeError::Unknown(_)) => Err(Error::Internal(e.to_string())),
        }
    }

    /// Proposes one catalog op: `noop` when `IF [NOT] EXISTS` made it change nothing, else
    /// `done`.
    async fn propose_catalog(
        &self,
        caller: &Caller,
        op: Op,
        noop: String,
        done: String,
    ) -> StmtResult<String> {
        let r = self.propose(&caller.user, vec![op]).await?;
        Ok(if r.first().is_some_and(|r| r.affected == 0) {
            noop
        } else {
            done
        })
    }

    /// Runs one request (API.md 1.7.2, from step 3), its whole answer held in memory.
    pub async fn execute(
        &self,
        caller: &Caller,
        request: &SqlRequest,
    ) -> Result<SqlResponse, SqlError> {
        match self.execute_streamed(caller, request).await? {
            Answer::Whole(r) => Ok(r),
            Answer::Rows(rows) => Ok(SqlResponse {
                results: vec![rows.collect(self.limits.max_result_bytes).await?],
                single_query: true,
            }),
        }
    }

    /// Runs one request (API.md 1.7.2, from step 3). A request whose only statement is a
    /// query answers with its rows still to be pulled, in any number (the caller writes them
    /// as they come); every other answer is whole, and its rows at most
    /// [`Limits::max_result_bytes`].
    pub async fn execute_streamed(
        &self,
        caller: &Caller,
        request: &SqlRequest,
    ) -> Result<Answer, SqlError> {
        self.execute_inner(caller, request)
            .await
            .map_err(|e| e.for_role(caller.role))
    }

    async fn execute_inner(
        &self,
        caller: &Caller,
        request: &SqlRequest,
    ) -> Result<Answer, SqlError> {
        if request.sql.len() > self.limits.max_sql_bytes {
            return Err(SqlError::from(Error::Limit {
                code: ErrorCode::InvalidSql,
                message: format!(
                    "SQL text is {} bytes, more than the limit of {} bytes",
                    request.sql.len(),
                    self.limits.max_sql_bytes
                ),
            }));
        }
        let statements = crate::split::split_statements(&request.sql)
            .map_err(|e| SqlError::new(ErrorCode::BatchParseError, e.to_string()))?;
        if statements.is_empty() {
            return Err(SqlError::new(
                ErrorCode::EmptySql,
                "SQL query cannot be empty",
            ));
        }
        if statements.len() > self.limits.max_statements {
            return Err(SqlError::from(Error::Limit {
                code: ErrorCode::InvalidSql,
                message: format!(
                    "The request holds {} statements, more than the limit of {}; send them in \
                     several requests",
                    statements.len(),
                    self.limits.max_statements
                ),
            }));
        }
        let deadline = tokio::time::Instant::now() + self.limits.statement_timeout;
        let params = self.params(request, statements.len())?;
        let mut rewritten: Vec<std::borrow::Cow<'_, str>> = Vec::with_capacity(statements.len());
        for (i, stmt) in statements.into_iter().enumerate() {
            let stmt = dialect::rewrite_as_of(stmt)
                .map_err(|m| SqlError::from(Error::InvalidSql(m)).in_statement(i, stmt))?;
            rewritten.push(match stmt {
                std::borrow::Cow::Borrowed(s) => dialect::normalize_keyword_calls(s),
                std::borrow::Cow::Owned(s) => {
                    std::borrow::Cow::Owned(dialect::normalize_keyword_calls(&s).into_owned())
                }
            });
        }
        let statements = rewritten;
        let mut namespace = request
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .map(|n| n.to_ascii_lowercase())
            .unwrap_or_else(|| "default".to_owned());
        // Classify and authorize every statement before any runs (API.md 3.8).
        let mut classified = Vec::with_capacity(statements.len());
        let mut ns = namespace.clone();
        for (i, stmt) in statements.iter().enumerate() {
            let fail = |e: Error| SqlError::from(e).in_statement(i, stmt);
            let p = Prepared::new(stmt).map_err(|m| fail(Error::InvalidSql(m)))?;
            let c = dialect::classify_typed(&p).map_err(fail)?;
            self.authorize(caller, &ns, &c, &p).map_err(fail)?;
            if let Statement::Use(n) = &c {
                ns = n.clone();
            }
            classified.push((p, c));
        }
        let mut results = Vec::new();
        let mut counts = [0u64; 3];
        let mut tx: Option<Staged> = None;
        let single = statements.len() == 1;
        // Whom the DML counts speak for: the EXECUTE AS target when one ran the writes.
        let mut dml_as = caller.clone();
        for (i, (stmt, statement)) in statements.iter().zip(&classified).enumerate() {
            let c = &statement.1;
            if let Statement::ExecuteAs { user, .. } = c {
                dml_as.user = user.clone();
            }
            let fail = |e: Error| SqlError::from(e).in_statement(i, stmt);
            metrics::counter!("folddb_sql_statements_total", "kind" => c.kind()).increment(1);
            let stream = single.then_some(deadline);
            let run = self.run(caller, &mut namespace, &mut tx, statement, &params, stream);
            let out = match tokio::time::timeout_at(deadline, run).await {
                Ok(out) => out.map_err(fail)?,
                Err(_) => return Err(fail(self.timed_out(c))),
            };
            match out {
                Out::Result(r) => results.push(r),
                Out::Inserted(n) => counts[0] += n,
                Out::Updated(n) => counts[1] += n,
                Out::Deleted(n) => counts[2] += n,
                Out::RolledBack(staged, r) => {
                    for (c, s) in counts.iter_mut().zip(staged) {
                        *c -= s;
                    }
                    results.push(r);
                }
                // Only a request's single statement streams: nothing follows it.
                Out::Rows(rows) => return Ok(Answer::Rows(rows)),
            }
        }
        if tx.is_some() {
            return Err(SqlError::new(
                ErrorCode::SqlExecutionError,
                "Request completed with an open explicit transaction; rolled back automatically",
            ));
        }
        let single_query = single && results.len() == 1 && results[0].rows.is_some();
        if single && results.is_empty() {
            // A lone DML statement reports its own count.
            let inner = match &classified[0].1 {
                Statement::ExecuteAs { sql, .. } => dialect::classify(sql).ok(),
                _ => None,
            };
            let (n, verb) = match inner.as_ref().unwrap_or(&classified[0].1) {
                Statement::Update => (counts[1], "Updated"),
                Statement::Delete => (counts[2], "Deleted"),
                _ => (counts[0], "Inserted"),
            };
            results.push(message(&dml_as, n, format!("{verb} {n} row(s)")));
        } else {
            for (n, verb, kind) in [
                (counts[0], "Inserted", Statement::Insert),
                (counts[1], "Updated", Statement::Update),
                (counts[2], "Deleted", Statement::Delete),
            ] {
                if n > 0 || classified.iter().any(|(_, c)| *c == kind) {
                    results.push(message(&dml_as, n, format!("{verb} {n} row(s)")));
                }
            }
        }
        Ok(Answer::Whole(SqlResponse {
            results,
            single_query,
        }))
    }

    /// Why statement `c` was cancelled at the statement timeout.
    fn timed_out(&self, c: &Statement) -> Error {
        let writes = !matches!(c, Statement::Query | Statement::Meta);
        timed_out(self.limits.statement_timeout, writes)
    }

    fn params(&self, request: &SqlRequest, statements: usize) -> Result<Vec<Literal>, SqlError> {
        let Some(params) = &request.params else {
            return Ok(Vec::new());
        };
        if params.is_empty() {
            return Ok(Vec::new());
        }
        if statements > 1 {
            return Err(SqlError::new(
                ErrorCode::ParamsWithBatch,
                "Parameters are not supported with multiple statements",
            ));
        }
        if params.len() > self.limits.max_params {
            return Err(SqlError::new(
                ErrorCode::SqlExecutionError,
                format!(
                    "Too many parameters: {} (maximum {})",
                    params.len(),
                    self.limits.max_params
                ),
            ));
        }
        params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let size = p.to_string().len();
                if size > self.limits.max_param_bytes {
                    return Err(SqlError::new(
                        ErrorCode::SqlExecutionError,
                        format!(
                            "Parameter ${} is {size} bytes (maximum {})",
                            i + 1,
                            self.limits.max_param_bytes
                        ),
                    ));
                }
                Literal::from_param(p).map_err(|m| {
                    SqlError::new(
                        ErrorCode::InvalidParameter,
                        format!("Parameter ${} invalid: {m}", i + 1),
                    )
                })
            })
            .collect()
    }

    async fn run(
        &self,
        caller: &Caller,
        namespace: &mut String,
        tx: &mut Option<Staged>,
        (p, stmt): &(Prepared, Statement),
        params: &[Literal],
        stream: Option<tokio::time::Instant>,
    ) -> StmtResult<Out> {
        // Reads inside a transaction see its writes.
        let reads_rows = matches!(
            stmt,
            Statement::Query
                | Statement::Meta
                | Statement::Insert
                | Statement::Update
                | Statement::Delete
        );
        let view = &match tx {
            Some(staged) if reads_rows => {
                View::with_writes(self.store.clone(), Arc::new(staged.preview.batch().clone()))
                    .with_cold(self.cold.clone())
            }
            _ => self.committed(),
        };
        match stmt {
            Statement::Query | Statement::Meta => {
                let at = &At {
                    caller,
                    view,
                    namespace,
                };
                if matches!(stmt, Statement::Query)
                    && let Some(r) = self.point_select(at, p, params)
                {
                    return Ok(Out::Result(r?));
                }
                let allow = matches!(stmt, Statement::Meta);
                let cap = Some(self.limits.max_result_bytes);
                // A query's tree, parsed once for authorization, is what DataFusion plans.
                let ast = if allow { None } else { p.ast().ok() };
                if let Some(deadline) = stream
                    && !allow
                {
                    let (schema, rest) =
                        self.query_stream(at, p.text(), ast, params, false).await?;
                    if !schema.fields().is_empty() {
                        let timeout = self.limits.statement_timeout;
                        let rows = RowStream::start(caller, &schema, rest, deadline, timeout);
                        return Ok(Out::Rows(rows.await?));
                    }
                    let batches = collect_capped(rest, None, cap).await?;
                    return Ok(Out::Result(rows_result(caller, &schema, &batches)?));
                }
                let (schema, batches) = self
                    .query_parsed(at, p.text(), ast, params, allow, cap)
                    .await?;
                Ok(Out::Result(rows_result(caller, &schema, &batches)?))
            }
            Statement::Insert | Statement::Update | Statement::Delete => {
                let at = &At {
                    caller,
                    view,
                    namespace,
                };
                self.write(at, stmt, tx, p, params).await
            }
            Statement::Begin => self.begin(caller, tx),
            Statement::Commit => self.commit(caller, tx).await,
            Statement::Rollback => self.rollback(caller, tx),
            Statement::Subscribe { select, options } => {
                self.subscribe_statement(caller, select, options)
            }
            Statement::KillJob(id) => msg(caller, self.jobs.kill(id).map_err(Error::NotAllowed)?),
            Statement::Cluster(command) => msg(caller, self.cluster_command(command).await?),
            Statement::Topic(command) => self.topic_command(caller, namespace, command).await,
            Statement::Backup(command) => self.backup_command(caller, command).await,
            Statement::Storage { compact, target } => msg(
                caller,
                self.storage_command(caller, namespace, *compact, target)?,
            ),
            Statement::StorageCheck { storage, extended } => Ok(Out::Result(table_result(
                caller,
                &self.storage_check(storage, *extended)?,
            )?)),
            Statement::ShowStorages => Ok(Out::Result(table_result(
                caller,
                &system::storages(&self.store, self.cold.as_deref(), caller.role.is_admin())?,
            )?)),
            Statement::CreateStorage {
                id,
                if_not_exists,
                spec,
            } => self.create_storage(caller, id, *if_not_exists, spec).await,
            Statement::AlterStorage { id, changes } => {
                self.alter_storage(caller, id, changes).await
            }
            Statement::DropStorage { id, if_exists } => {
                self.drop_storage(caller, id, *if_exists).await
            }
            Statement::ShowManifest => Ok(Out::Result(table_result(
                caller,
                &system::manifest(&self.store, self.cold.as_deref())?,
            )?)),
            Statement::KillLiveQuery(id) => {
                if self.live.as_ref().is_some_and(|l| l.kill(id)) {
                    msg(caller, format!("Live query killed: {id}"))
                } else {
                    Err(Error::NotFound(format!("Live query '{id}' not found")))
                }
            }
            Statement::ExecuteAs { user, sql } => {
                let (target, inner, inner_p) = self.impersonate(caller, user, sql)?;
                let statement = (inner_p, inner);
                Box::pin(self.run(&target, namespace, tx, &statement, params, None)).await
            }
            Statement::CreateUser {
                id,
                auth,
                role,
                email,
            } => self.create_user(caller, id, auth, *role, email).await,
            Statement::AlterUser { id, change } => self.alter_user(caller, id, change).await,
            Statement::DropUser { id, if_exists } => self.drop_user(caller, id, *if_exists).await,
            Statement::Use(ns) => self.use_namespace(caller, namespace, ns),
            Statement::CreateNamespace {
                name,
                if_not_exists,
            } => self.create_namespace(caller, name, *if_not_exists).await,
            Statement::DropNamespace { name, if_exists } => {
                self.drop_namespace(caller, name, *if_exists).await
            }
            Statement::AlterNamespace { name, description } => {
                self.alter_namespace(caller, name, description).await
            }
            Statement::ShowNamespaces => Ok(Out::Result(table_result(
                caller,
                &system::namespaces(&self.store)?,
            )?)),
            Statement::ShowTables { namespace: ns } => Ok(Out::Result(table_result(
                caller,
                &system::schemas(&self.store, ns.as_deref(), true)?,
            )?)),
            Statement::Describe { table, history } => {
                self.describe(caller, namespace, table, *history)
            }
            Statement::ShowStats(table) => self.show_stats(caller, namespace, table),
            Statement::CreateTable(ct) => self.create_table(caller, namespace, ct).await,
            Statement::AlterTable { table, change } => {
                self.alter_table(caller, namespace, table, change).await
            }
            Statement::DropTable { table, if_exists } => {
                self.drop_table(caller, namespace, table, *if_exists).await
            }
        }
    }

    /// The current definition of a (possibly unqualified) table.
    fn table(&self, namespace: &str, t: &TableName) -> StmtResult<TableDef> {
        let ns = t.namespace.as_deref().unwrap_or(namespace);
        if catalog::namespace(self.store.as_ref(), ns)?.is_none() {
            return Err(Error::NotFound(format!("Namespace '{ns}' does not exist")));
        }
        catalog::table(self.store.as_ref(), ns, &t.name)?.ok_or_else(|| {
            Error::NotFound(format!(
                "Table {ns}.{} does not exist (table not found)",
                t.name
            ))
        })
    }

    fn table_of_object(&self, namespace: &str, name: &sql::ObjectName) -> StmtResult<TableDef> {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(|i| i.value.to_ascii_lowercase())
            .collect();
        let t = match parts.as_slice() {
            [table] => TableName {
                namespace: None,
                name: table.clone(),
            },
            [ns, table] => TableName {
                namespace: Some(ns.clone()),
                name: table.clone(),
            },
            _ => {
                return Err(Error::InvalidSql(format!("Invalid table name {name}")));
            }
        };
        let def = self.table(namespace, &t)?;
        Ok(def)
    }

    /// Replaces a user's definition, with its audit entry, as one command.
    async fn replace_user(
        &self,
        caller: &Caller,
        user: UserDef,
        action: &str,
        details: Option<&str>,
    ) -> StmtResult<()> {
        let entry = audit(caller, action, &user.id, details);
        let put = Op::PutUser {
            user,
            create: false,
        };
        self.propose(&caller.user, vec![put, entry]).await.map(drop)
    }

    /// A bcrypt hash of a new password, computed off the async workers.
    async fn hash_password(&self, password: &str) -> StmtResult<String> {
        if password.is_empty() {
            return Err("Password cannot be empty".into());
        }
        if password.len() > dialect::MAX_PASSWORD_BYTES {
            return Err(format!(
                "Password is longer than {} bytes",
                dialect::MAX_PASSWORD_BYTES
            )
            .into());
        }
        let (password, cost) = (password.to_owned(), self.limits.bcrypt_cost);
        tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| Error::Internal(format!("hashing failed: {e}")))
    }

    fn scope(&self, def: &TableDef, caller: &Caller) -> StmtResult<String> {
        if def.kind.is_per_user() {
            return Ok(caller.user.clone());
        }
        if !matches!(caller.role, Role::Service | Role::Dba | Role::System) {
            return Err(Error::PermissionDenied(format!(
                "Permission denied: writing to SHARED table {} requires the service, dba or system role",
                def.qualified_name()
            )));
        }
        Ok(String::new())
    }
}

/// A statement's answer that is one message.
fn msg(caller: &Caller, m: String) -> StmtResult<Out> {
    Ok(Out::Result(message(caller, 0, m)))
}

fn count(kind: WriteKind, n: u64) -> Out {
    match kind {
        WriteKind::Insert => Out::Inserted(n),
        WriteKind::Update => Out::Updated(n),
        WriteKind::Delete => Out::Deleted(n),
    }
}
