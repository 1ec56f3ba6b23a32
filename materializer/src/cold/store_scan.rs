//! Reading one table scope in primary-key order, as its reader pulls: the hot tier's
//! versions merged with the segments' (the newest version of a key wins: a hot one over any
//! cold one, a later segment's over an earlier one's), tombstones and expired versions
//! dropped, produced as Arrow batches of the projected columns.
//!
//! Both sides come in key order (RocksDB iterates keys in order; a segment is written sorted
//! by key), so the merge holds one batch per segment and one output batch: its memory is
//! bounded by the batch size, not by the table. Where one source's keys run ahead of every
//! other's, the run is taken as a slice of the segment's batch, without a per-row merge.

use arrow::array::BooleanArray;
use arrow::compute::{concat_batches, take_record_batch};

use super::*;

/// The rows a segment cursor reads from Parquet at a time.
const SCAN_BATCH_ROWS: usize = 8 * 1024;
/// The first output batch holds this many rows at most, each next one twice as many up to
/// [`SCAN_BATCH_ROWS`]: a `LIMIT` answers after little work, a full scan runs in full batches.
const FIRST_BATCH_ROWS: usize = 1024;

/// A failure of a scan: reading the node's state, or the cold tier.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    State(#[from] crate::Error),
    #[error(transparent)]
    Cold(#[from] ColdError),
}

/// What a scan reads and how it shows it.
pub struct ScanSpec<'a> {
    pub def: &'a TableDef,
    /// Columns to produce, by position in the table's schema ([`table_schema`]).
    pub projection: &'a [usize],
    /// Whether tombstones are produced (queries that filter on `_deleted`).
    pub show_deleted: bool,
    /// STREAM tables: versions with a `_seq` below this are past their TTL and not shown.
    pub min_seq: Option<i64>,
    /// The query keeps no version with a `_seq` below this (its filter says so, and the
    /// caller still applies it): hot versions below it are not produced, and a segment
    /// whose versions all are is not read at all. Its newer versions are elsewhere, and its
    /// keys can only hide older versions, which are below it too.
    pub seq_floor: Option<i64>,
    /// At most this many rows are produced.
    pub limit: Option<usize>,
    /// Whether a segment may hold rows the query wants, by its statistics. A segment ruled
    /// out is not read; its keys still hide their older versions.
    pub may_match: &'a (dyn Fn(&SegmentMeta) -> bool + Sync),
    /// The primary keys the query can want: no row outside is produced.
    pub keys: &'a KeyRange,
}

/// A range of primary keys in key encoding (`materializer/FORMAT.md`, "rows"): from `from`
/// (inclusive) up to `to` (exclusive); `None` is unbounded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRange {
    pub from: Option<Vec<u8>>,
    pub to: Option<Vec<u8>>,
}

/// Every segment may match: the statistics rule nothing out.
fn every_segment(_: &SegmentMeta) -> bool {
    true
}

/// Every primary key.
static EVERY_KEY: KeyRange = KeyRange {
    from: None,
    to: None,
};

impl<'a> ScanSpec<'a> {
    /// `projection` of every visible row of `def`, tombstones left out, nothing pruned.
    pub fn visible(def: &'a TableDef, projection: &'a [usize]) -> ScanSpec<'a> {
        ScanSpec {
            def,
            projection,
            show_deleted: false,
            min_seq: None,
            seq_floor: None,
            limit: None,
            may_match: &every_segment,
            keys: &EVERY_KEY,
        }
    }
}

impl std::fmt::Debug for ScanSpec<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanSpec")
            .field("table", &self.def.qualified_name())
            .field("projection", &self.projection)
            .field("show_deleted", &self.show_deleted)
            .field("min_seq", &self.min_seq)
            .field("seq_floor", &self.seq_floor)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// One key of the hot tier: its whole row key and its encoded version (`None`: the key is
/// hidden, and nothing of it is produced).
#[derive(Debug)]
pub struct HotItem {
    pub key: Box<[u8]>,
    pub value: Option<Box<[u8]>>,
}

/// The hot side of a merge: a scope's hot keys in order, read in place.
pub trait HotSource {
    /// The current key (a whole row key); `None` past the last one.
    fn key(&self) -> Option<&[u8]>;
    /// The current key's encoded version; `None`: the key is hidden.
    fn value(&self) -> Option<&[u8]>;
    /// Whether the current key has no hot version here: the key left the hot tier after the
    /// merge's in-memory rows were taken, and the segments decide it, not those rows.
    fn falls_through(&self) -> bool {
        false
    }
    fn advance(&mut self) -> crate::Result<()>;
}

/// A [`HotSource`] over owned items.
#[derive(Debug)]
pub struct Items<I> {
    iter: I,
    current: Option<HotItem>,
}

impl<I: Iterator<Item = crate::Result<HotItem>>> Items<I> {
    pub fn new(mut iter: I) -> crate::Result<Items<I>> {
        let current = iter.next().transpose()?;
        Ok(Items { iter, current })
    }
}

impl<I: Iterator<Item = crate::Result<HotItem>>> HotSource for Items<I> {
    fn key(&self) -> Option<&[u8]> {
        self.current.as_ref().map(|h| &*h.key)
    }

    fn value(&self) -> Option<&[u8]> {
        self.current.as_ref().and_then(|h| h.value.as_deref())
    }

    fn advance(&mut self) -> crate::Result<()> {
        self.current = self.iter.next().transpose()?;
        Ok(())
    }
}

/// Merges `hot` (the scope's hot keys in order, each key starting with `hot_prefix_len`
/// bytes of scope prefix) and `in_memory` (hot rows already in columns; the caller gives
/// one or the other) with the segments of `scope`, giving each output batch to `sink` until
/// it answers `false` or the rows run out.
pub fn merge(
    scope: Option<&ScopeState>,
    hot: &mut dyn HotSource,
    hot_prefix_len: usize,
    in_memory: Option<InMemory>,
    spec: &ScanSpec<'_>,
    sink: &mut dyn FnMut(RecordBatch) -> bool,
) -> Result<(), ScanError> {
    let schema: SchemaRef = Arc::new(
        table_schema(spec.def)
            .project(spec.projection)
            .map_err(|e| fail("")(e.to_string()))?,
    );
    let mut cursors = Vec::new();
    if let Some(scope) = scope {
        for seg in &scope.segments {
            if spec.seq_floor.is_some_and(|f| seg.meta.max_seq < f) {
                continue;
            }
            cursors.push(Cursor::open(&scope.dir, seg, spec)?);
        }
    }
    // Newest last: where several sources hold a key, the last one's version is the key's.
    let in_memory_at = in_memory.is_some().then_some(cursors.len());
    cursors.extend(in_memory.map(|rows| Cursor::in_memory(rows, spec)));
    let mut out = Output {
        schema,
        sources: Vec::new(),
        hot_rows: Vec::new(),
        pieces: Vec::new(),
        rows: 0,
        target: FIRST_BATCH_ROWS,
        emitted: 0,
    };
    let limit = spec.limit.unwrap_or(usize::MAX);
    let mut at: Vec<usize> = Vec::with_capacity(cursors.len());
    loop {
        let room = out.target.min(limit - out.emitted) - out.rows;
        if room == 0 {
            if !out.emit(spec, sink)? || out.emitted >= limit {
                return Ok(());
            }
            cursors.iter_mut().for_each(Cursor::forget_source);
            continue;
        }
        // Which sources hold the smallest key, and the next key after it.
        let (hot_at, bound_run) = {
            let hot_key = hot.key().map(|k| &k[hot_prefix_len..]);
            let mut min = hot_key;
            for c in &cursors {
                if let Some(k) = c.key()
                    && min.is_none_or(|m| k < m)
                {
                    min = Some(k);
                }
            }
            let Some(min) = min else { break };
            at.clear();
            at.extend((0..cursors.len()).filter(|&i| cursors[i].key() == Some(min)));
            let hot_at = hot_key == Some(min);
            // A lone cold key: how many of its cursor's next keys come before any other
            // source's.
            let run = (!hot_at && at.len() == 1).then(|| {
                let mut bound = hot_key;
                for (i, c) in cursors.iter().enumerate() {
                    if i != at[0]
                        && let Some(k) = c.key()
                        && bound.is_none_or(|b| k < b)
                    {
                        bound = Some(k);
                    }
                }
                cursors[at[0]].run_len(bound, room)
            });
            (hot_at, run)
        };
        if hot_at && hot.falls_through() {
            // The in-memory rows' version of the key is gone; the segments' stays.
            hot.advance()?;
            if let Some(i) = in_memory_at.filter(|i| at.contains(i)) {
                cursors[i].advance(1)?;
            }
        } else if hot_at {
            if let Some(bytes) = hot.value() {
                out.push_hot(spec, bytes)?;
            }
            hot.advance()?;
            for &i in &at {
                cursors[i].advance(1)?;
            }
        } else if let Some(run) = bound_run {
            let c = &mut cursors[at[0]];
            c.take(run, spec.show_deleted, &mut out);
            c.advance(run)?;
        } else {
            // Several segments hold the key: the newest one's version is the key's.
            let newest = *at.last().expect("some segment holds the smallest key");
            cursors[newest].take(1, spec.show_deleted, &mut out);
            for &i in &at {
                cursors[i].advance(1)?;
            }
        }
    }
    if out.rows > 0 {
        out.emit(spec, sink)?;
    }
    Ok(())
}

/// The output batch being built: pieces of segment batches and of hot rows, in key order.
struct Output {
    schema: SchemaRef,
    /// The segment batches the pieces take rows from.
    sources: Vec<RecordBatch>,
    /// Encoded versions of the hot rows the pieces take.
    hot_rows: Vec<Box<[u8]>>,
    pieces: Vec<Piece>,
    rows: usize,
    /// Rows at which the batch is given out.
    target: usize,
    /// Rows given out so far.
    emitted: usize,
}

#[derive(Debug, Clone, Copy)]
enum Piece {
    Cold {
        source: usize,
        start: usize,
        len: usize,
    },
    Hot {
        start: usize,
        len: usize,
    },
}

impl Output {
    fn push_hot(&mut self, spec: &ScanSpec<'_>, bytes: &[u8]) -> Result<(), ScanError> {
        let (seq, deleted) = crate::hot_columns::head(bytes)?;
        let below = |min: Option<i64>| min.is_some_and(|min| seq < min);
        if (deleted && !spec.show_deleted) || below(spec.min_seq) || below(spec.seq_floor) {
            return Ok(());
        }
        if !spec.projection.is_empty() {
            self.hot_rows.push(bytes.into());
        }
        let start = self.hot_rows.len().saturating_sub(1);
        match self.pieces.last_mut() {
            Some(Piece::Hot { len, .. }) => *len += 1,
            _ => self.pieces.push(Piece::Hot { start, len: 1 }),
        }
        self.rows += 1;
        Ok(())
    }

    fn push_cold(&mut self, source: usize, start: usize, len: usize) {
        if len == 0 {
            return;
        }
        match self.pieces.last_mut() {
            Some(Piece::Cold {
                source: s,
                start: st,
                len: l,
            }) if *s == source && *st + *l == start => *l += len,
            _ => self.pieces.push(Piece::Cold { source, start, len }),
        }
        self.rows += len;
    }

    /// Gives the batch to `sink`; whether the sink wants more.
    fn emit(
        &mut self,
        spec: &ScanSpec<'_>,
        sink: &mut dyn FnMut(RecordBatch) -> bool,
    ) -> Result<bool, ScanError> {
        let rows = self.rows;
        let arrow = |e: arrow::error::ArrowError| fail("")(e.to_string());
        let batch = if spec.projection.is_empty() {
            let options = RecordBatchOptions::new().with_row_count(Some(rows));
            RecordBatch::try_new_with_options(self.schema.clone(), vec![], &options)
                .map_err(arrow)?
        } else {
            let hot = if self.hot_rows.is_empty() {
                None
            } else {
                let columns =
                    crate::hot_columns::columns(spec.def, spec.projection, &self.hot_rows)?;
                Some(RecordBatch::try_new(self.schema.clone(), columns).map_err(arrow)?)
            };
            let slices: Vec<RecordBatch> = self
                .pieces
                .iter()
                .map(|p| match *p {
                    Piece::Cold { source, start, len } => self.sources[source].slice(start, len),
                    Piece::Hot { start, len } => hot
                        .as_ref()
                        .expect("hot pieces come with hot rows")
                        .slice(start, len),
                })
                .collect();
            match slices.as_slice() {
                [one] => one.clone(),
                _ => concat_batches(&self.schema, &slices).map_err(arrow)?,
            }
        };
        self.sources.clear();
        self.hot_rows.clear();
        self.pieces.clear();
        self.rows = 0;
        self.emitted += rows;
        self.target = (self.target * 2).min(SCAN_BATCH_ROWS);
        Ok(sink(batch))
    }
}

/// One segment's keys in order, with its rows when the query reads them.
struct Cursor {
    keys: Arc<KeyIndex>,
    /// Position in key order.
    at: usize,
    /// The position in key order where the scan's key range ends.
    end: usize,
    data: Option<Data>,
    /// Whether the loaded batches' `deleted` flags are every row to leave out, whatever
    /// `show_deleted` says (cached hot rows: tombstones and versions below the scan's floor).
    hidden_final: bool,
}

/// Hot rows already in columns (a scope's cached hot tier, [`crate::scan`]), merged as the
/// newest source: `batch` holds the projected columns of the versions in key order, `keys`
/// their keys after the scope prefix, and `hidden` the rows the scan leaves out.
#[derive(Debug, Clone)]
pub struct InMemory {
    pub(crate) keys: Arc<KeyIndex>,
    pub batch: RecordBatch,
    pub hidden: BooleanArray,
}

/// The rows of a segment the query reads, a batch at a time, in key order.
struct Data {
    batches: Box<dyn Iterator<Item = Result<Loaded, ColdError>>>,
    /// Whether the batches skip rows (row groups ruled out by their statistics): keys with
    /// no row loaded give nothing, and the batches may end before the keys do.
    gaps: bool,
    loaded: Option<Loaded>,
    /// The loaded batch's index in the output's sources, once a piece takes from it.
    source: Option<usize>,
}

/// A batch of a segment: its projected columns and which rows are tombstones. Row `r` of it
/// is the segment's key position `first + r`.
struct Loaded {
    batch: RecordBatch,
    deleted: BooleanArray,
    first: usize,
}

impl Cursor {
    fn open(dir: &Loc, seg: &Arc<Segment>, spec: &ScanSpec<'_>) -> Result<Cursor, ColdError> {
        let def = spec.def;
        let keys = seg.keys(dir, def.primary_key)?;
        let (start, end) = keys.bounds(spec.keys);
        let ruled_out = (seg.matches(def) && !(spec.may_match)(&seg.meta)) || start == end;
        let data = if ruled_out {
            None
        } else {
            let (batches, gaps) = segment_batches(dir, seg, spec, &keys, start..end)?;
            Some(Data {
                batches,
                gaps,
                loaded: None,
                source: None,
            })
        };
        let mut cursor = Cursor {
            keys,
            at: start,
            end,
            data,
            hidden_final: false,
        };
        cursor.load()?;
        Ok(cursor)
    }

    fn in_memory(rows: InMemory, spec: &ScanSpec<'_>) -> Cursor {
        let (start, end) = rows.keys.bounds(spec.keys);
        Cursor {
            keys: rows.keys,
            at: start,
            end,
            data: Some(Data {
                batches: Box::new(std::iter::empty()),
                gaps: false,
                loaded: Some(Loaded {
                    batch: rows.batch,
                    deleted: rows.hidden,
                    first: 0,
                }),
                source: None,
            }),
            hidden_final: true,
        }
    }

    fn key(&self) -> Option<&[u8]> {
        (self.at < self.end).then(|| self.keys.key(self.keys.order[self.at] as usize))
    }

    /// How many keys from the current one on (at least 1, at most `room`, and none past the
    /// loaded batch) come before `bound`.
    fn run_len(&self, bound: Option<&[u8]>, room: usize) -> usize {
        let end = match &self.data {
            // In a gap before the loaded batch, the run ends where the batch starts.
            Some(Data {
                loaded: Some(l), ..
            }) if self.at < l.first => l.first,
            Some(Data {
                loaded: Some(l), ..
            }) => l.first + l.batch.num_rows(),
            _ => self.end,
        }
        .min(self.end)
        .min(self.at + room);
        let Some(bound) = bound else {
            return end - self.at;
        };
        let order = &self.keys.order[self.at..end];
        order
            .partition_point(|&r| self.keys.key(r as usize) < bound)
            .max(1)
    }

    /// Adds the next `n` rows (all in the loaded batch) to `out`, but tombstones unless
    /// `show_deleted`. A segment ruled out by its statistics adds nothing.
    fn take(&mut self, n: usize, show_deleted: bool, out: &mut Output) {
        let Some(data) = &mut self.data else { return };
        let Some(l) = &data.loaded else { return };
        // Keys in a gap (rows of a row group ruled out) give nothing.
        let Some(start) = self.at.checked_sub(l.first) else {
            return;
        };
        let show_deleted = show_deleted && !self.hidden_final;
        let source = *data.source.get_or_insert_with(|| {
            out.sources.push(l.batch.clone());
            out.sources.len() - 1
        });
        if show_deleted || l.deleted.slice(start, n).true_count() == 0 {
            out.push_cold(source, start, n);
            return;
        }
        let mut from = start;
        for r in start..start + n {
            if l.deleted.value(r) {
                out.push_cold(source, from, r - from);
                from = r + 1;
            }
        }
        out.push_cold(source, from, start + n - from);
    }

    fn advance(&mut self, n: usize) -> Result<(), ColdError> {
        self.at += n;
        self.load()
    }

    /// Loads the batch holding the current key, when the loaded one is past.
    fn load(&mut self) -> Result<(), ColdError> {
        let Some(data) = &mut self.data else {
            return Ok(());
        };
        while self.at < self.end
            && data
                .loaded
                .as_ref()
                .is_none_or(|l| self.at >= l.first + l.batch.num_rows())
        {
            data.source = None;
            data.loaded = match data.batches.next() {
                Some(l) => Some(l?),
                // The keys after the last row group read give nothing.
                None if data.gaps => {
                    data.loaded = None;
                    return Ok(());
                }
                None => {
                    return Err(fail("")(format!(
                        "a segment ended before its {} keys",
                        self.keys.rows()
                    )));
                }
            };
        }
        Ok(())
    }

    fn forget_source(&mut self) {
        if let Some(d) = &mut self.data {
            d.source = None;
        }
    }
}

/// The batches of `seg` a scan reads, in key order, projected to the table's current
/// columns; and whether they skip rows (row groups whose statistics rule the scan out).
fn segment_batches(
    dir: &Loc,
    seg: &Arc<Segment>,
    spec: &ScanSpec<'_>,
    keys: &KeyIndex,
    range: std::ops::Range<usize>,
) -> Result<(Batches, bool), ColdError> {
    let def = spec.def.clone();
    let projection = spec.projection.to_vec();
    let meta = seg.meta.clone();
    let path = dir.locate(&meta.file);
    let n = meta.columns.len();
    let current = seg.matches(&def);
    // A segment of the current columns is read as it is: the projected columns and
    // `_deleted`. One of an earlier schema is read whole and converted by column id.
    let roots: Option<Vec<usize>> = current.then(|| {
        let mut roots = projection.clone();
        roots.push(n + 1);
        roots.sort_unstable();
        roots.dedup();
        roots
    });
    // In key order, the range's rows are the file's rows `range`, less the row groups ruled
    // out; otherwise every row is read.
    let ranges = if keys.sorted() && current {
        selected(dir, seg, spec, &range)?
    } else {
        vec![range.clone()]
    };
    let gaps = ranges.as_slice() != std::slice::from_ref(&range);
    let reader = if keys.sorted() {
        let mut selectors = Vec::with_capacity(2 * ranges.len() + 1);
        let mut at = 0;
        for r in &ranges {
            selectors.push(RowSelector::skip(r.start - at));
            selectors.push(RowSelector::select(r.len()));
            at = r.end;
        }
        open_selected(
            dir,
            seg,
            roots.as_deref(),
            Some(RowSelection::from(selectors)),
            SCAN_BATCH_ROWS,
        )?
    } else {
        open_range(dir, seg, roots.as_deref(), None, SCAN_BATCH_ROWS)?
    };
    let schema: SchemaRef = Arc::new(
        table_schema(&def)
            .project(&projection)
            .map_err(|e| fail(&path)(e.to_string()))?,
    );
    let convert = move |batch: RecordBatch| -> Result<(RecordBatch, BooleanArray), String> {
        let rows = batch.num_rows();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        match &roots {
            Some(roots) => {
                let at = |i: usize| roots.binary_search(&i).unwrap_or_default();
                let deleted = batch
                    .column(at(n + 1))
                    .as_boolean_opt()
                    .ok_or("_deleted is not BOOLEAN")?
                    .clone();
                let columns = projection.iter().map(|&p| batch.column(at(p)).clone());
                let out =
                    RecordBatch::try_new_with_options(schema.clone(), columns.collect(), &options)
                        .map_err(|e| e.to_string())?;
                Ok((out, deleted))
            }
            None => {
                let versions = versions_in(&meta, &batch)?;
                let deleted: BooleanArray = versions.iter().map(|v| Some(v.deleted)).collect();
                let columns = crate::convert::rows_columns(&def, &projection, &versions);
                let out = RecordBatch::try_new_with_options(schema.clone(), columns, &options)
                    .map_err(|e| e.to_string())?;
                Ok((out, deleted))
            }
        }
    };
    let damaged = {
        let path = path.clone();
        move |e: String| fail(&path)(format!("damaged segment: {e}"))
    };
    if keys.sorted() {
        // A batch of the reader may hold the end of one selected range and the start of the
        // next: it is cut where the ranges are, each piece at its key position.
        let mut ranges: std::collections::VecDeque<_> = ranges.into();
        let batches = reader.flat_map(move |batch| -> Vec<Result<Loaded, ColdError>> {
            let (batch, deleted) = match batch
                .map_err(|e| damaged(e.to_string()))
                .and_then(|b| convert(b).map_err(&damaged))
            {
                Ok(b) => b,
                Err(e) => return vec![Err(e)],
            };
            let mut pieces = Vec::new();
            let mut offset = 0;
            while offset < batch.num_rows() {
                let Some(r) = ranges.front_mut() else {
                    pieces.push(Err(damaged("more rows than were selected".into())));
                    break;
                };
                let n = r.len().min(batch.num_rows() - offset);
                pieces.push(Ok(Loaded {
                    batch: batch.slice(offset, n),
                    deleted: deleted.slice(offset, n),
                    first: r.start,
                }));
                r.start += n;
                offset += n;
                if r.start == r.end {
                    ranges.pop_front();
                }
            }
            pieces
        });
        return Ok((Box::new(batches), gaps));
    }
    // Not in key order (written by an early build): read whole, then put in key order.
    let mut parts = Vec::new();
    let mut flags = Vec::new();
    for batch in reader {
        let (batch, deleted) =
            convert(batch.map_err(|e| damaged(e.to_string()))?).map_err(&damaged)?;
        parts.push(batch);
        flags.extend(deleted.iter().map(|d| d.unwrap_or(false)));
    }
    let order = arrow::array::UInt32Array::from(keys.order.clone());
    let whole = concat_batches(&schema_of(&parts, spec)?, &parts)
        .and_then(|b| take_record_batch(&b, &order))
        .map_err(|e| fail(&path)(e.to_string()))?;
    let deleted: BooleanArray = keys
        .order
        .iter()
        .map(|&r| Some(flags[r as usize]))
        .collect();
    Ok((
        Box::new(std::iter::once(Ok(Loaded {
            batch: whole,
            deleted,
            first: 0,
        }))),
        false,
    ))
}

type Batches = Box<dyn Iterator<Item = Result<Loaded, ColdError>>>;

/// The rows of `range` (file rows of a segment in key order, of the table's current columns)
/// in the row groups whose statistics may hold rows the scan wants, as ranges in order.
fn selected(
    dir: &Loc,
    seg: &Segment,
    spec: &ScanSpec<'_>,
    range: &std::ops::Range<usize>,
) -> Result<Vec<std::ops::Range<usize>>, ColdError> {
    let groups = row_groups(dir, seg)?;
    if groups.len() < 2 {
        return Ok(vec![range.clone()]);
    }
    // Statistics only of the types pruning reads back exactly from Parquet's.
    let exact: Vec<&str> = spec
        .def
        .columns
        .iter()
        .filter(|c| {
            matches!(
                c.data_type,
                DataType::SmallInt | DataType::Int | DataType::BigInt | DataType::Text
            )
        })
        .map(|c| c.name.as_str())
        .collect();
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let mut at = 0;
    for (rows, mut stats) in groups {
        let group = at..at + rows;
        at += rows;
        let r = group.start.max(range.start)..group.end.min(range.end);
        if r.start >= r.end {
            continue;
        }
        stats.retain(|s| exact.contains(&s.name.as_str()));
        let meta = SegmentMeta {
            stats,
            ..seg.meta.clone()
        };
        if !(spec.may_match)(&meta) {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => out.push(r),
        }
    }
    Ok(out)
}

fn schema_of(parts: &[RecordBatch], spec: &ScanSpec<'_>) -> Result<SchemaRef, ColdError> {
    match parts.first() {
        Some(b) => Ok(b.schema()),
        None => table_schema(spec.def)
            .project(spec.projection)
            .map(Arc::new)
            .map_err(|e| fail("")(e.to_string())),
    }
}
