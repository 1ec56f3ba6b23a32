//! Log tails (`realtime/PROTOCOL.md`): a client follows the committed row changes of the
//! change journal from a cursor, filtered by namespace, tables, operations and owner, with
//! credit-based flow control. The journal is the buffer: a tail holds only its position,
//! its filters and its credit, and reads the next records when the client has granted
//! credit and more have been applied. Nothing is dropped; a position the journal's trim
//! has passed is an explicit error.

use std::collections::{HashMap, HashSet};

use folddb_materializer::journal::{self, CatalogChange, Change, ChangeOp, Record};
use folddb_materializer::{TableDef, TableId, TableKind, catalog};
use folddb_query::live::{LiveError, LiveQuery};
use folddb_query::{Caller, Engine};
use serde::Deserialize;
use serde_json::{Value as Json, json};

/// Most records in one `tail_batch`.
pub const MAX_BATCH: usize = 1000;
/// Most changes one read looks at (records the filters leave out included).
const SCAN_LIMIT: usize = 10_000;
/// Most credit a tail may hold.
pub const MAX_CREDIT: u64 = 1_000_000;
/// Credit a `tail` without one starts with.
pub const DEFAULT_CREDIT: u64 = 1000;

/// A `tail` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailRequest {
    pub id: String,
    /// `"earliest"`, `"now"`, a log index (the changes of the entries after it), a cursor
    /// string `"<index>:<ordinal>"` from a batch (the changes after it), or `{"seq": s}`
    /// (the changes with a `_seq` above s). Default `"now"`.
    #[serde(default)]
    pub from: Option<Json>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub tables: Vec<String>,
    /// Any of `insert`, `update`, `delete`, and `ddl` (catalog and user changes: dba and
    /// system only); all when absent.
    #[serde(default)]
    pub ops: Option<Vec<String>>,
    /// Only the rows of this owner (USER tables); dba and system only, for others.
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub credit: Option<u64>,
}

fn bad(code: &'static str, message: impl Into<String>) -> LiveError {
    LiveError {
        code,
        message: message.into(),
    }
}

fn store_error(e: folddb_materializer::Error) -> LiveError {
    bad("TAIL_FAILED", format!("reading the change journal: {e}"))
}

/// What a tail knows of one table.
struct Known {
    def: TableDef,
    /// The table's rows as JSON objects (its `SELECT *`); `None`: the caller may not read
    /// it.
    rows: Option<LiveQuery>,
}

/// One log tail of a connection.
pub struct Tail {
    id: String,
    caller: Caller,
    /// Where the next read starts: (log index, ordinal).
    next: (u64, u32),
    /// Changes at or below this `_seq` are skipped (a tail from a `_seq`).
    above_seq: Option<i64>,
    namespace: Option<String>,
    tables: Option<HashSet<TableId>>,
    /// insert, update, delete, ddl.
    ops: [bool; 4],
    owner: Option<String>,
    credit: u64,
    known: HashMap<TableId, Known>,
    /// The cursor of the last record sent.
    cursor: Option<(u64, u32)>,
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tail")
            .field("id", &self.id)
            .field("next", &self.next)
            .field("cursor", &self.cursor)
            .field("credit", &self.credit)
            .finish()
    }
}

fn op_index(op: ChangeOp) -> usize {
    match op {
        ChangeOp::Insert => 0,
        ChangeOp::Update => 1,
        ChangeOp::Delete => 2,
    }
}

fn op_name(op: ChangeOp) -> &'static str {
    ["insert", "update", "delete"][op_index(op)]
}

fn cursor_text((index, ordinal): (u64, u32)) -> String {
    format!("{index}:{ordinal}")
}

impl Tail {
    /// Opens tail `req` for `caller`; its `tail_ack`.
    pub fn open(
        engine: &Engine,
        caller: &Caller,
        req: TailRequest,
    ) -> Result<(Tail, Json), LiveError> {
        let store = engine.store();
        let horizon = journal::horizon(store).map_err(store_error)?;
        let applied = store
            .applied_index()
            .map_err(store_error)?
            .map_or(0, |i| i.0);
        let admin = caller.role.is_admin();
        if let Some(owner) = &req.owner
            && !admin
            && owner != &caller.user
        {
            return Err(bad(
                "PERMISSION_DENIED",
                format!(
                    "Permission denied: role {} tails only its own rows, not those of {owner}",
                    caller.role.name()
                ),
            ));
        }
        let mut ops = [true; 4];
        if let Some(names) = &req.ops {
            ops = [false; 4];
            for name in names {
                match name.to_ascii_lowercase().as_str() {
                    "insert" => ops[0] = true,
                    "update" => ops[1] = true,
                    "delete" => ops[2] = true,
                    "ddl" => ops[3] = true,
                    other => {
                        return Err(bad(
                            "INVALID_TAIL",
                            format!("unknown op {other:?}: insert, update, delete or ddl"),
                        ));
                    }
                }
            }
        }
        let mut tail = Tail {
            id: req.id.clone(),
            caller: caller.clone(),
            next: (applied + 1, 0),
            above_seq: None,
            namespace: req.namespace.map(|n| n.to_ascii_lowercase()),
            tables: None,
            ops,
            owner: req.owner,
            credit: req.credit.unwrap_or(DEFAULT_CREDIT).min(MAX_CREDIT),
            known: HashMap::new(),
            cursor: None,
        };
        if let Some(ns) = &tail.namespace
            && catalog::namespace(store.as_ref(), ns)
                .map_err(store_error)?
                .is_none()
        {
            return Err(bad(
                "NAMESPACE_NOT_FOUND",
                format!("Namespace '{ns}' not found"),
            ));
        }
        if !req.tables.is_empty() {
            let mut ids = HashSet::new();
            for name in &req.tables {
                let lower = name.to_ascii_lowercase();
                let Some((ns, t)) = lower.split_once('.') else {
                    return Err(bad(
                        "INVALID_TAIL",
                        format!("table {name:?} is not namespace.table"),
                    ));
                };
                let def = catalog::table(store.as_ref(), ns, t)
                    .map_err(store_error)?
                    .filter(|d| d.kind != TableKind::Stream)
                    .ok_or_else(|| {
                        bad(
                            "TABLE_NOT_FOUND",
                            format!("Table '{ns}.{t}' not found (STREAM tables are not journaled)"),
                        )
                    })?;
                let known = tail.learn(engine, def);
                if known.rows.is_none() {
                    return Err(bad(
                        "PERMISSION_DENIED",
                        format!(
                            "Permission denied: role {} may not read {name}",
                            caller.role.name()
                        ),
                    ));
                }
                ids.insert(known.def.id);
            }
            tail.tables = Some(ids);
        }
        let from = req.from.unwrap_or_else(|| json!("now"));
        tail.next = match &from {
            Json::String(s) if s == "now" => (applied + 1, 0),
            Json::String(s) if s == "earliest" => (horizon, 0),
            Json::String(s) => {
                let parsed = s
                    .split_once(':')
                    .and_then(|(i, o)| Some((i.parse::<u64>().ok()?, o.parse::<u32>().ok()?)));
                let Some((index, ordinal)) = parsed else {
                    return Err(bad(
                        "INVALID_CURSOR",
                        format!(
                            "from {s:?}: \"earliest\", \"now\", a log index, a cursor \"<index>:<ordinal>\" or {{\"seq\": n}}"
                        ),
                    ));
                };
                (index, ordinal.saturating_add(1))
            }
            Json::Number(n) => match n.as_u64() {
                Some(i) => (i.saturating_add(1), 0),
                None => return Err(bad("INVALID_CURSOR", format!("from {n}: not a log index"))),
            },
            Json::Object(o) => match o.get("seq").and_then(Json::as_i64) {
                Some(seq) => {
                    tail.above_seq = Some(seq);
                    let newest = folddb_materializer::EventFold::last_seq(store)
                        .map_err(store_error)?
                        .unwrap_or(0);
                    if seq > newest {
                        return Err(bad(
                            "INVALID_CURSOR",
                            format!(
                                "from _seq {seq} is newer than anything applied (newest _seq {newest})"
                            ),
                        ));
                    }
                    if let Some(h) = journal::horizon_seq(store).map_err(store_error)?
                        && seq < h
                    {
                        return Err(expired(&format!("_seq {seq}"), horizon));
                    }
                    (
                        journal::index_for_seq(store, seq, applied + 1).map_err(store_error)?,
                        0,
                    )
                }
                None => return Err(bad("INVALID_CURSOR", "from {…}: expected {\"seq\": n}")),
            },
            other => return Err(bad("INVALID_CURSOR", format!("from {other}: not a cursor"))),
        };
        if tail.next.0 > applied + 1 {
            return Err(bad(
                "INVALID_CURSOR",
                format!("from {from}: past the last applied log index {applied}"),
            ));
        }
        if tail.next.0 < horizon && tail.above_seq.is_none() {
            return Err(expired(&format!("from {from}"), horizon));
        }
        let ack = json!({
            "type": "tail_ack",
            "id": tail.id,
            "horizon": horizon,
            "applied": applied,
            "start": tail.next.0,
            "credit": tail.credit,
        });
        Ok((tail, ack))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The client grants `n` more records.
    pub fn grant(&mut self, n: u64) {
        self.credit = self.credit.saturating_add(n).min(MAX_CREDIT);
    }

    pub fn has_credit(&self) -> bool {
        self.credit > 0
    }

    /// The table `def`, as this tail sees it.
    fn learn(&mut self, engine: &Engine, def: TableDef) -> &Known {
        let stale = self
            .known
            .get(&def.id)
            .is_none_or(|k| k.def.schema_version != def.schema_version);
        if stale {
            let sql = format!("SELECT * FROM \"{}\".\"{}\"", def.namespace, def.name);
            let rows = engine.plan_live(&self.caller, &sql).ok();
            self.known.insert(
                def.id,
                Known {
                    def: def.clone(),
                    rows,
                },
            );
        }
        &self.known[&def.id]
    }

    /// Re-reads the catalog's tables (new ones, changed schemas).
    fn refresh(&mut self, engine: &Engine) -> Result<(), LiveError> {
        for def in catalog::tables(engine.store().as_ref(), None).map_err(store_error)? {
            self.learn(engine, def);
        }
        Ok(())
    }

    /// Whether catalog change `c` is one this tail delivers: to dba and system, when it
    /// names no tables or owner, within its namespace.
    fn wants_catalog(&self, c: &CatalogChange) -> bool {
        self.caller.role.is_admin()
            && self.ops[3]
            && self.tables.is_none()
            && self.owner.is_none()
            && self.namespace.as_ref().is_none_or(|ns| {
                c.target == *ns
                    || c.target
                        .strip_prefix(ns.as_str())
                        .is_some_and(|t| t.starts_with('.'))
            })
    }

    /// Whether change `c` is one this tail delivers.
    fn wants(&self, c: &Change) -> bool {
        if !self.ops[op_index(c.op)] || self.above_seq.is_some_and(|s| c.seq <= s) {
            return false;
        }
        if self.tables.as_ref().is_some_and(|t| !t.contains(&c.table)) {
            return false;
        }
        let Some(known) = self.known.get(&c.table) else {
            return false;
        };
        if known.rows.is_none()
            || self
                .namespace
                .as_ref()
                .is_some_and(|n| n != &known.def.namespace)
        {
            return false;
        }
        if let Some(owner) = &self.owner
            && owner != &c.scope
        {
            return false;
        }
        // A USER table's rows: only the caller's own, unless it is an administrator.
        known.def.kind != TableKind::User
            || self.caller.role.is_admin()
            || c.scope == self.caller.user
    }

    /// The next `tail_batch`, if the client has credit and there are records for it; and
    /// whether more may follow at once.
    pub fn pump(&mut self, engine: &Engine) -> Result<(Option<Json>, bool), LiveError> {
        if self.credit == 0 {
            return Ok((None, false));
        }
        let store = engine.store();
        let horizon = journal::horizon(store).map_err(store_error)?;
        if self.next.0 < horizon {
            return Err(expired(
                &format!("the tail's position {}", cursor_text(self.next)),
                horizon,
            ));
        }
        let want = usize::try_from(self.credit)
            .unwrap_or(usize::MAX)
            .min(MAX_BATCH);
        let mut picked = Vec::new();
        let mut scanned = 0;
        let mut refreshed = false;
        let mut full = false;
        while picked.len() < want && scanned < SCAN_LIMIT {
            let chunk = journal::records_from(store, self.next.0, self.next.1, MAX_BATCH)
                .map_err(store_error)?;
            let end = chunk.len() < MAX_BATCH;
            for r in chunk {
                let wanted = match &r {
                    Record::Row(c) => {
                        if !refreshed && !self.known.contains_key(&c.table) {
                            self.refresh(engine)?;
                            refreshed = true;
                        }
                        self.wants(c)
                    }
                    Record::Catalog(c) => {
                        // Tables it made or changed are learnt afresh.
                        refreshed = false;
                        self.wants_catalog(c)
                    }
                };
                scanned += 1;
                let (index, ordinal) = r.position();
                self.next = (index, ordinal.saturating_add(1));
                if wanted {
                    picked.push(r);
                    if picked.len() == want {
                        full = true;
                        break;
                    }
                }
            }
            if end {
                break;
            }
        }
        let more = full || scanned >= SCAN_LIMIT;
        if picked.is_empty() {
            return Ok((None, more));
        }
        let last = picked.last().map(Record::position);
        let records = self.render(picked)?;
        self.credit -= records.len() as u64;
        self.cursor = last;
        let batch = json!({
            "type": "tail_batch",
            "id": self.id,
            "records": records,
            "cursor": last.map(cursor_text),
        });
        Ok((Some(batch), more && self.credit > 0))
    }

    /// The records of `changes`, in order: their images as the tables' rows, converted a
    /// table at a time.
    fn render(&self, records: Vec<Record>) -> Result<Vec<Json>, LiveError> {
        let mut out = Vec::with_capacity(records.len());
        let mut rows = Vec::new();
        // Row changes are converted a run at a time, catalog changes in place.
        for r in records {
            match r {
                Record::Row(c) => rows.push(c),
                Record::Catalog(c) => {
                    out.extend(self.render_rows(std::mem::take(&mut rows))?);
                    out.push(json!({
                        "index": c.index,
                        "ordinal": c.ordinal,
                        "seq": c.seq.to_string(),
                        "op": "ddl",
                        "kind": c.kind,
                        "target": c.target,
                        "detail": c.detail,
                        "actor": c.actor,
                        "ts": c.stamp_ms,
                    }));
                }
            }
        }
        out.extend(self.render_rows(rows)?);
        Ok(out)
    }

    fn render_rows(&self, changes: Vec<Change>) -> Result<Vec<Json>, LiveError> {
        let mut by_table: HashMap<TableId, Vec<usize>> = HashMap::new();
        for (k, c) in changes.iter().enumerate() {
            by_table.entry(c.table).or_default().push(k);
        }
        let mut images: Vec<(Json, Json)> = vec![(Json::Null, Json::Null); changes.len()];
        for (table, at) in by_table {
            let Some(q) = self.known.get(&table).and_then(|k| k.rows.as_ref()) else {
                continue;
            };
            let live = |v: &Option<folddb_materializer::RowVersion>| {
                v.as_ref().filter(|v| !v.deleted).cloned()
            };
            let mut versions = Vec::new();
            let mut slots = Vec::new();
            for &k in &at {
                for (side, v) in [(0, live(&changes[k].old)), (1, live(&changes[k].new))] {
                    if let Some(v) = v {
                        versions.push(v);
                        slots.push((k, side));
                    }
                }
            }
            let conversion = |m: String| bad("CONVERSION_ERROR", m);
            let batch = q.images(&versions).map_err(conversion)?;
            let cols = q.project(&batch).map_err(conversion)?;
            for (r, (k, side)) in slots.into_iter().enumerate() {
                let obj = Json::Object(q.object(&cols, r).map_err(conversion)?);
                if side == 0 {
                    images[k].0 = obj;
                } else {
                    images[k].1 = obj;
                }
            }
        }
        Ok(changes
            .into_iter()
            .zip(images)
            .map(|(c, (old, new))| {
                let table = self
                    .known
                    .get(&c.table)
                    .map(|k| k.def.qualified_name())
                    .unwrap_or_default();
                json!({
                    "index": c.index,
                    "ordinal": c.ordinal,
                    "seq": c.seq.to_string(),
                    "table": table,
                    "op": op_name(c.op),
                    "owner": (!c.scope.is_empty()).then_some(&c.scope),
                    "old": old,
                    "new": new,
                    "ts": c.unix_ms(),
                })
            })
            .collect())
    }
}

fn expired(what: &str, horizon: u64) -> LiveError {
    bad(
        crate::session::CURSOR_EXPIRED,
        format!(
            "{what} is older than the change journal's horizon (log index {horizon}): the changes before it are no longer kept; tail from \"earliest\" or \"now\""
        ),
    )
}
