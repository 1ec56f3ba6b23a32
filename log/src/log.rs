//! The [`Log`] handle: one writer, many readers, group commit.
//!
//! Appends write their frames into the active segment under one lock and return once the
//! entries are readable. A dedicated sync thread calls `fdatasync` whenever the written
//! watermark is ahead of the durable one, so every append that lands while a sync is running
//! shares the next one (group commit). Callers await durability separately
//! ([`Log::wait_durable`]), which is the shape openraft's `RaftLogStorage::append` wants.
//!
//! Segments are zero-filled when created: on ext4 a write + `fdatasync` inside zero-filled
//! space costs a fraction of one that grows the file or lands in `fallocate`d (unwritten)
//! extents. The next segment is prepared ahead of time on a background thread, so rolling
//! costs a header write and a rename; a writer that outruns the preparer gets an allocated
//! file instead of a stall.

use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::dir::{DirScan, FrameSpan, segment_name};
use crate::error::{Error, Result};
use crate::frame::{self, PAYLOAD_HARD_LIMIT_BYTES, SEGMENT_HEADER_BYTES};
use crate::meta::{self, PURGE_MARKER};
use crate::storage::{FsStorage, Storage, StorageFile, write_zeros};
use crate::{Entry, LogIndex, Term};

const SPARE_NAME: &str = "spare.tmp";

/// What happens to segments that lie wholly below the purge marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Keep every segment: the log is the event history (the default).
    #[default]
    KeepAll,
    /// Delete sealed segments whose every entry is purged.
    DeletePurged,
}

/// Log settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Roll to a new segment once the active one would grow past this size.
    /// Default 64 MiB; 4 KiB to 1 GiB.
    pub segment_size_bytes: u64,
    /// Largest payload one entry may carry. Default 64 MiB; at most 1 GiB.
    pub max_payload_bytes: u32,
    /// Physical deletion of purged segments. Default: keep everything.
    pub retention: Retention,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_size_bytes: 64 << 20,
            max_payload_bytes: 64 << 20,
            retention: Retention::KeepAll,
        }
    }
}

impl LogConfig {
    /// Checks the settings; never clamps.
    pub fn validate(&self) -> Result<()> {
        if !(4096..=1 << 30).contains(&self.segment_size_bytes) {
            return Err(Error::InvalidConfig(format!(
                "segment_size_bytes must be between 4096 and 1073741824, got {}",
                self.segment_size_bytes
            )));
        }
        if self.max_payload_bytes == 0 || self.max_payload_bytes > PAYLOAD_HARD_LIMIT_BYTES {
            return Err(Error::InvalidConfig(format!(
                "max_payload_bytes must be between 1 and {PAYLOAD_HARD_LIMIT_BYTES}, got {}",
                self.max_payload_bytes
            )));
        }
        Ok(())
    }
}

/// The durable watermark as broadcast to waiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DurableMark {
    index: Option<LogIndex>,
    poisoned: bool,
}

/// The segmented, append-only log. Cheap to clone; all clones share one log. Dropping the
/// last clone syncs what was written and stops the background threads.
///
/// Methods that touch the disk block; call them from a blocking context
/// (`spawn_blocking` or a thread of your own). [`Log::wait_durable`] and [`Tailer`] are the
/// async parts.
#[derive(Debug, Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    sync_thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    config: LogConfig,
    state: Mutex<State>,
    /// Signalled when there is something to sync, or on close.
    sync_wanted: Condvar,
    /// The durable watermark, published only while `state` is locked so that it changes in
    /// the same order as the state it mirrors.
    durable_tx: watch::Sender<DurableMark>,
}

#[derive(Debug)]
struct State {
    /// Sorted by first index; the last is the active segment. Never empty once the first
    /// entry has been appended.
    segments: Vec<Segment>,
    purged: Option<(LogIndex, Term)>,
    last_term: Option<Term>,
    durable: Option<LogIndex>,
    poisoned: Option<String>,
    /// Bumped by every truncation, so that a sync or read that raced one can tell.
    epoch: u64,
    closing: bool,
    spare: Spare,
    spare_thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Segment {
    first: LogIndex,
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    /// Byte offset of each frame; frame `k` holds index `first + k`.
    offsets: Vec<u32>,
    /// Where the next frame goes.
    end: u64,
}

impl Segment {
    fn last(&self) -> Option<LogIndex> {
        (!self.offsets.is_empty()).then(|| LogIndex(self.first.0 + self.offsets.len() as u64 - 1))
    }

    fn holds(&self, index: LogIndex) -> bool {
        index >= self.first && self.last().is_some_and(|l| index <= l)
    }

    /// The byte range of frames `k0..k1`.
    fn span(&self, k0: usize, k1: usize) -> (u64, u64) {
        let start = u64::from(self.offsets[k0]);
        let end = self.offsets.get(k1).map_or(self.end, |o| u64::from(*o));
        (start, end)
    }
}

#[derive(Debug)]
enum Spare {
    Absent,
    Preparing(std::sync::mpsc::Receiver<Result<Arc<dyn StorageFile>>>),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the state consistent before it can panic, so a poisoned
    // mutex (a panic elsewhere) does not make the state unusable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    fn last_index(&self) -> Option<LogIndex> {
        self.segments.iter().rev().find_map(Segment::last)
    }

    /// The first entry of the run of entries still on disk, purged or not, that ends at the
    /// last one (a snapshot installed past the end leaves a gap before what follows it).
    fn first_retained(&self) -> Option<LogIndex> {
        let mut held = self
            .segments
            .iter()
            .rev()
            .filter_map(|s| s.last().map(|l| (s.first, l)));
        let (mut first, _) = held.next()?;
        for (f, l) in held {
            if l.0 + 1 != first.0 {
                break;
            }
            first = f;
        }
        Some(first)
    }

    /// The first index a read may ask for, if the log holds any readable entry.
    fn first_index(&self) -> Option<LogIndex> {
        let last = self.last_index()?;
        let first = self
            .segments
            .iter()
            .find_map(|s| s.last().map(|_| s.first))?;
        let first = match self.purged {
            Some((p, _)) => first.max(LogIndex(p.0 + 1)),
            None => first,
        };
        (first <= last).then_some(first)
    }

    /// The index the next append must carry; `None` for an empty log never purged, which
    /// accepts any first index.
    fn next_index(&self) -> Option<LogIndex> {
        let after_last = self.last_index().map(|l| LogIndex(l.0 + 1));
        let after_purge = self.purged.map(|(p, _)| LogIndex(p.0 + 1));
        after_last.max(after_purge)
    }

    fn check_usable(&self) -> Result<()> {
        if let Some(reason) = &self.poisoned {
            return Err(Error::Poisoned {
                reason: reason.clone(),
            });
        }
        if self.closing {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn range_text(&self) -> String {
        match (self.first_index(), self.last_index()) {
            (Some(f), Some(l)) => format!("{f}..={l}"),
            _ => "no entries".to_owned(),
        }
    }
}

impl Log {
    /// Opens (or creates) the log in `dir` on the real filesystem.
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig) -> Result<Log> {
        Self::open_with(Arc::new(FsStorage), dir, config)
    }

    /// Opens (or creates) the log in `dir` on `storage`, recovering from a crash: a torn
    /// write at the tail of the last segment is discarded with a warning; corruption
    /// anywhere else refuses to open, naming segment and byte offset.
    pub fn open_with(
        storage: Arc<dyn Storage>,
        dir: impl Into<PathBuf>,
        config: LogConfig,
    ) -> Result<Log> {
        config.validate()?;
        let dir = dir.into();
        storage
            .create_dir_all(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        let found = DirScan::read_with(storage.as_ref(), &dir, config.max_payload_bytes)?;
        if let Some(err) = found.corruption() {
            return Err(err);
        }
        for name in &found.tmp_files {
            let path = dir.join(name);
            storage.remove(&path).map_err(|e| Error::io(&path, e))?;
        }
        if let Some((segment, offset, dirty_end, reason)) = found.torn_tail() {
            tracing::warn!(
                segment = %segment.display(),
                offset,
                discarded_bytes = dirty_end - offset,
                reason,
                "discarding a torn write at the tail of the log"
            );
            let last = found.segments.last().expect("a torn tail has a segment");
            write_zeros(last.file.as_ref(), offset, dirty_end - offset)
                .map_err(|e| Error::io(segment, e))?;
        }
        let mut last_term = found.purged.map(|(_, t)| t);
        let mut segments = Vec::with_capacity(found.segments.len());
        for s in found.segments {
            if s.scan.last_term.is_some() {
                last_term = s.scan.last_term;
            }
            segments.push(Segment {
                first: s.scan.first_index,
                path: s.path,
                file: s.file,
                offsets: s.scan.offsets,
                end: s.scan.end,
            });
        }
        // What recovery read may sit only in the page cache (after a process crash): make it
        // durable before calling it durable.
        if let Some(active) = segments.last() {
            active
                .file
                .sync_data()
                .map_err(|e| Error::io(&active.path, e))?;
        }
        if !found.tmp_files.is_empty() {
            storage.sync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let state = State {
            segments,
            purged: found.purged,
            last_term,
            durable: None,
            poisoned: None,
            epoch: 0,
            closing: false,
            spare: Spare::Absent,
            spare_thread: None,
        };
        let last = state.last_index();
        let mut state = state;
        state.durable = last;
        let (durable_tx, _) = watch::channel(DurableMark {
            index: last,
            poisoned: false,
        });
        let shared = Arc::new(Shared {
            storage,
            dir,
            config,
            state: Mutex::new(state),
            sync_wanted: Condvar::new(),
            durable_tx,
        });
        let sync_shared = shared.clone();
        let sync_thread = std::thread::Builder::new()
            .name("folddb-log-sync".into())
            .spawn(move || sync_loop(&sync_shared))
            .map_err(|e| Error::io(&shared.dir, e))?;
        {
            let mut st = lock(&shared.state);
            prepare_spare(&shared, &mut st);
        }
        Ok(Log {
            inner: Arc::new(Inner {
                shared,
                sync_thread: Mutex::new(Some(sync_thread)),
            }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// The directory this log lives in.
    pub fn dir(&self) -> &Path {
        &self.shared().dir
    }

    /// Appends entries that continue the log exactly: the first must carry the log's next
    /// index (any index, if the log is empty and was never purged) and the rest follow one
    /// by one. Returns once they are readable; await [`Log::wait_durable`] for durability.
    pub fn append(&self, entries: &[Entry]) -> Result<Option<LogIndex>> {
        let Some(first) = entries.first() else {
            return Ok(None);
        };
        for (k, e) in entries.iter().enumerate() {
            if e.index.0 != first.index.0 + k as u64 {
                return Err(Error::NonContiguous {
                    expected: LogIndex(first.index.0 + k as u64),
                    got: e.index,
                });
            }
        }
        let range = self.write(
            Some(first.index),
            entries.iter().map(|e| (e.term, e.payload.as_slice())),
        )?;
        Ok(Some(*range.end()))
    }

    /// Appends payloads at the next indices (from 1 in an empty log), all with `term`.
    /// Returns the indices they got.
    pub fn append_next(&self, term: Term, payloads: &[&[u8]]) -> Result<RangeInclusive<LogIndex>> {
        if payloads.is_empty() {
            return Err(Error::EmptyAppend);
        }
        self.write(None, payloads.iter().map(|p| (term, *p)))
    }

    fn write<'a>(
        &self,
        first: Option<LogIndex>,
        items: impl ExactSizeIterator<Item = (Term, &'a [u8])> + Clone,
    ) -> Result<RangeInclusive<LogIndex>> {
        let shared = self.shared();
        let limit = shared.config.max_payload_bytes;
        for (_, p) in items.clone() {
            if p.len() > limit as usize {
                return Err(Error::PayloadTooLarge {
                    size: p.len(),
                    limit,
                });
            }
        }
        let mut st = lock(&shared.state);
        st.check_usable()?;
        let start = match (first, st.next_index()) {
            (Some(got), Some(expected)) if got != expected => {
                return Err(Error::NonContiguous { expected, got });
            }
            (Some(got), _) => got,
            (None, Some(next)) => next,
            (None, None) => LogIndex(1),
        };
        let entries = items.len();
        let started = std::time::Instant::now();
        let result = write_frames(shared, &mut st, start, items);
        metrics::histogram!("folddb_log_append_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("folddb_log_appended_entries_total").increment(entries as u64);
        if let Err(e) = &result {
            poison(shared, &mut st, format!("append failed: {e}"));
        }
        let last = result?;
        drop(st);
        shared.sync_wanted.notify_one();
        Ok(start..=last)
    }

    /// Waits until every entry up to `index` is durable.
    pub async fn wait_durable(&self, index: LogIndex) -> Result<()> {
        let shared = self.shared();
        let mut rx = shared.durable_tx.subscribe();
        loop {
            let mark = *rx.borrow_and_update();
            if mark.poisoned {
                return Err(self.poisoned_error());
            }
            if mark.index >= Some(index) {
                return Ok(());
            }
            rx.changed().await.map_err(|_| Error::Closed)?;
        }
    }

    fn poisoned_error(&self) -> Error {
        let st = lock(&self.shared().state);
        Error::Poisoned {
            reason: st.poisoned.clone().unwrap_or_default(),
        }
    }

    /// Reads the entries with indices in `range`, which must lie within
    /// [`Log::first_index`]`..=`[`Log::last_index`].
    pub fn read(&self, range: Range<LogIndex>) -> Result<Vec<Entry>> {
        self.read_within(range, false)
    }

    /// Reads the entries with indices in `range`, purged ones included while their segments
    /// are retained ([`Retention::KeepAll`]): within
    /// [`Log::first_retained_index`]`..=`[`Log::last_index`]. What a replay of the whole
    /// history reads; raft never asks for a purged entry.
    pub fn read_retained(&self, range: Range<LogIndex>) -> Result<Vec<Entry>> {
        self.read_within(range, true)
    }

    fn read_within(&self, range: Range<LogIndex>, retained: bool) -> Result<Vec<Entry>> {
        if range.start >= range.end {
            return Ok(Vec::new());
        }
        let shared = self.shared();
        let (plan, epoch) = {
            let st = lock(&shared.state);
            let first = if retained {
                st.first_retained()
            } else {
                st.first_index()
            };
            let (first, last) = match (first, st.last_index()) {
                (Some(f), Some(l)) => (f, l),
                _ => {
                    return Err(Error::OutOfRange {
                        index: range.start,
                        range: st.range_text(),
                    });
                }
            };
            for index in [range.start, LogIndex(range.end.0 - 1)] {
                if index < first || index > last {
                    return Err(Error::OutOfRange {
                        index,
                        range: st.range_text(),
                    });
                }
            }
            let mut plan = Vec::new();
            for s in &st.segments {
                let Some(seg_last) = s.last() else { continue };
                let lo = range.start.max(s.first);
                let hi = LogIndex((range.end.0 - 1).min(seg_last.0));
                if lo > hi {
                    continue;
                }
                let k0 = (lo.0 - s.first.0) as usize;
                let k1 = (hi.0 - s.first.0) as usize + 1;
                let (start, end) = s.span(k0, k1);
                plan.push((s.path.clone(), s.file.clone(), start, end, lo, k1 - k0));
            }
            (plan, st.epoch)
        };
        let mut out = Vec::with_capacity((range.end.0 - range.start.0) as usize);
        for (path, file, start, end, first, count) in &plan {
            let span = FrameSpan {
                path,
                file: file.as_ref(),
                start: *start,
                end: *end,
                first: *first,
                count: *count,
            };
            match span.read(shared.config.max_payload_bytes) {
                Ok(entries) => out.extend(entries),
                Err(e) if lock(&shared.state).epoch != epoch => {
                    tracing::debug!(error = %e, "read raced a truncation");
                    return Err(Error::Truncated { index: *first });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Removes every entry from `from` on (raft's conflict resolution). Durable when it
    /// returns. Truncating past the last entry does nothing.
    pub fn truncate(&self, from: LogIndex) -> Result<()> {
        let shared = self.shared();
        let mut st = lock(&shared.state);
        st.check_usable()?;
        let Some(last) = st.last_index() else {
            return Ok(());
        };
        if from > last {
            return Ok(());
        }
        if let Some((p, _)) = st.purged
            && from <= p
        {
            return Err(Error::OutOfRange {
                index: from,
                range: st.range_text(),
            });
        }
        let result = truncate_locked(shared, &mut st, from);
        if let Err(e) = &result {
            poison(shared, &mut st, format!("truncate failed: {e}"));
        }
        result?;
        st.epoch += 1;
        let new_last = st.last_index();
        st.durable = st.durable.min(new_last);
        st.last_term = match new_last {
            Some(l) => Some(term_at(&st, l, shared.config.max_payload_bytes)?),
            None => st.purged.map(|(_, t)| t),
        };
        // Published under the lock, like every watermark change: a value sent after
        // unlocking could land after a newer one from the sync thread and hide it forever.
        let durable = st.durable;
        shared.durable_tx.send_modify(|m| m.index = durable);
        Ok(())
    }

    /// Marks every entry up to and including `upto` as purged (raft's log compaction). The
    /// entries stay on disk unless [`Retention::DeletePurged`] is configured.
    pub fn purge(&self, upto: LogIndex, term: Term) -> Result<()> {
        let shared = self.shared();
        let mut st = lock(&shared.state);
        st.check_usable()?;
        if st.purged.is_some_and(|(p, _)| p >= upto) {
            return Ok(());
        }
        meta::write_meta(
            shared.storage.as_ref(),
            &shared.dir,
            PURGE_MARKER,
            &meta::encode_purge(upto, term),
        )?;
        st.purged = Some((upto, term));
        if st.last_index().is_none_or(|l| l <= upto) {
            st.last_term = Some(term);
        }
        if shared.config.retention == Retention::DeletePurged {
            let active = st.segments.len().saturating_sub(1);
            let doomed: Vec<usize> = (0..active)
                .filter(|&i| st.segments[i].last().is_none_or(|l| l <= upto))
                .collect();
            for &i in doomed.iter().rev() {
                let seg = st.segments.remove(i);
                shared
                    .storage
                    .remove(&seg.path)
                    .map_err(|e| Error::io(&seg.path, e))?;
            }
            if !doomed.is_empty() {
                shared
                    .storage
                    .sync_dir(&shared.dir)
                    .map_err(|e| Error::io(&shared.dir, e))?;
            }
        }
        Ok(())
    }

    /// The first readable index, if any entry is readable.
    pub fn first_index(&self) -> Option<LogIndex> {
        lock(&self.shared().state).first_index()
    }

    /// The first entry still on disk, purged or not ([`Log::read_retained`]).
    pub fn first_retained_index(&self) -> Option<LogIndex> {
        lock(&self.shared().state).first_retained()
    }

    /// The last written (readable) index.
    pub fn last_index(&self) -> Option<LogIndex> {
        lock(&self.shared().state).last_index()
    }

    /// The term of the last entry (or of the purge marker, if every entry is purged).
    pub fn last_term(&self) -> Option<Term> {
        lock(&self.shared().state).last_term
    }

    /// The highest index known durable.
    pub fn durable_index(&self) -> Option<LogIndex> {
        lock(&self.shared().state).durable
    }

    /// The first segment that holds an entry: its file and the index it starts at.
    pub fn first_segment(&self) -> Option<(PathBuf, LogIndex)> {
        lock(&self.shared().state)
            .segments
            .iter()
            .find(|s| s.last().is_some())
            .map(|s| (s.path.clone(), s.first))
    }

    /// The purge marker: every index up to it is logically gone.
    pub fn purged(&self) -> Option<(LogIndex, Term)> {
        lock(&self.shared().state).purged
    }

    /// A reader of durable entries from `from` on, in order.
    pub fn tail(&self, from: LogIndex) -> Tailer {
        Tailer {
            rx: self.shared().durable_tx.subscribe(),
            log: self.clone(),
            next: from,
        }
    }
}

/// Reads durable entries in order, waiting for more when it has caught up.
#[derive(Debug)]
pub struct Tailer {
    log: Log,
    next: LogIndex,
    rx: watch::Receiver<DurableMark>,
}

impl Tailer {
    /// The next index this tailer will return.
    pub fn position(&self) -> LogIndex {
        self.next
    }

    /// Up to `max` entries from the current position, waiting until at least one is durable.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<Entry>> {
        loop {
            let mark = *self.rx.borrow_and_update();
            if mark.poisoned {
                return Err(self.log.poisoned_error());
            }
            if let Some(durable) = mark.index
                && durable >= self.next
            {
                let end =
                    LogIndex((durable.0 + 1).min(self.next.0.saturating_add(max.max(1) as u64)));
                let entries = self.log.read(self.next..end)?;
                self.next = end;
                return Ok(entries);
            }
            self.rx.changed().await.map_err(|_| Error::Closed)?;
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        {
            let mut st = lock(&self.shared.state);
            st.closing = true;
        }
        self.shared.sync_wanted.notify_all();
        if let Some(h) = lock(&self.sync_thread).take() {
            let _ = h.join();
        }
        let spare = lock(&self.shared.state).spare_thread.take();
        if let Some(h) = spare {
            let _ = h.join();
        }
    }
}

fn poison(shared: &Shared, st: &mut State, reason: String) {
    tracing::error!(dir = %shared.dir.display(), %reason, "log poisoned");
    st.poisoned = Some(reason);
    shared.durable_tx.send_modify(|m| m.poisoned = true);
    shared.sync_wanted.notify_all();
}

/// Encodes and writes frames for `items` from index `start`, rolling segments as needed.
/// Returns the last index written.
fn write_frames<'a>(
    shared: &Shared,
    st: &mut State,
    start: LogIndex,
    items: impl ExactSizeIterator<Item = (Term, &'a [u8])>,
) -> Result<LogIndex> {
    let seg_size = shared.config.segment_size_bytes;
    // A new segment when there is none, or when this append does not continue the active
    // one (everything before it was purged).
    let continues = st
        .segments
        .last()
        .is_some_and(|s| s.last().map_or(s.first == start, |l| l.0 + 1 == start.0));
    if !continues {
        roll(shared, st, start)?;
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut offsets: Vec<u32> = Vec::new();
    let mut index = start;
    let mut last_term = st.last_term;
    for (term, payload) in items {
        let flen = frame::frame_len(payload.len()) as u64;
        let active = st.segments.last().expect("a segment exists after roll");
        let pos = active.end + buf.len() as u64;
        let active_has_frames = !active.offsets.is_empty() || !offsets.is_empty();
        if pos + flen > seg_size && active_has_frames {
            flush_frames(st, &mut buf, &mut offsets)?;
            st.last_term = last_term;
            roll(shared, st, index)?;
        }
        let active = st.segments.last().expect("a segment exists after roll");
        let pos = active.end + buf.len() as u64;
        offsets.push(
            u32::try_from(pos).map_err(|_| Error::InvalidConfig("segment too large".into()))?,
        );
        frame::encode_frame(&mut buf, term, index, payload);
        last_term = Some(term);
        index = LogIndex(index.0 + 1);
    }
    flush_frames(st, &mut buf, &mut offsets)?;
    st.last_term = last_term;
    Ok(LogIndex(index.0 - 1))
}

/// Writes buffered frames to the active segment and records their offsets.
fn flush_frames(st: &mut State, buf: &mut Vec<u8>, offsets: &mut Vec<u32>) -> Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let active = st
        .segments
        .last_mut()
        .expect("frames are written to a segment");
    active
        .file
        .write_all_at(buf, active.end)
        .map_err(|e| Error::io(&active.path, e))?;
    active.end += buf.len() as u64;
    active.offsets.append(offsets);
    buf.clear();
    Ok(())
}

/// Seals the active segment (durably, trimmed to its data) and starts a new one at `first`.
/// An active segment with no frames is removed instead of sealed.
fn roll(shared: &Shared, st: &mut State, first: LogIndex) -> Result<()> {
    if let Some(active) = st.segments.last() {
        if active.offsets.is_empty() {
            let seg = st.segments.pop().expect("checked above");
            shared
                .storage
                .remove(&seg.path)
                .map_err(|e| Error::io(&seg.path, e))?;
        } else {
            active
                .file
                .set_len(active.end)
                .and_then(|()| active.file.sync_data())
                .map_err(|e| Error::io(&active.path, e))?;
            // Everything written so far was in this segment and is now durable.
            let last = active.last();
            if last > st.durable && st.poisoned.is_none() {
                st.durable = last;
                shared.durable_tx.send_modify(|m| m.index = last);
            }
        }
    }
    let path = shared.dir.join(segment_name(first));
    let (file, tmp) = match take_spare(st) {
        Some(file) => (file, shared.dir.join(SPARE_NAME)),
        None => {
            // The writer outran the preparer. Zero-filling here would stall every appender
            // for a whole segment's worth of writes; allocating is instant, and allocated
            // space reads as zeros, which is all recovery needs. (Writes into it are slower
            // on ext4 when they are not block-aligned, so it is only the fallback.)
            let tmp = shared.dir.join(format!("{}.tmp", segment_name(first)));
            let size = shared.config.segment_size_bytes;
            (
                create_segment_file(shared.storage.as_ref(), &tmp, size, Prepare::Allocate)?,
                tmp,
            )
        }
    };
    file.write_all_at(&frame::encode_header(first), 0)
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io(&tmp, e))?;
    shared
        .storage
        .rename(&tmp, &path)
        .and_then(|()| shared.storage.sync_dir(&shared.dir))
        .map_err(|e| Error::io(&path, e))?;
    st.segments.push(Segment {
        first,
        path,
        file,
        offsets: Vec::new(),
        end: SEGMENT_HEADER_BYTES as u64,
    });
    prepare_spare(shared, st);
    Ok(())
}

/// How a new segment file's space is reserved.
#[derive(Debug, Clone, Copy)]
enum Prepare {
    /// Write zeros: the fastest file to append and fsync into, but it costs the bandwidth.
    ZeroFill,
    /// `fallocate`: instant.
    Allocate,
}

/// Creates a file of `len` bytes that read as zeros, durably.
fn create_segment_file(
    storage: &dyn Storage,
    path: &Path,
    len: u64,
    how: Prepare,
) -> Result<Arc<dyn StorageFile>> {
    let file = storage.create(path).map_err(|e| Error::io(path, e))?;
    match how {
        Prepare::ZeroFill => write_zeros(file.as_ref(), 0, len),
        Prepare::Allocate => file.allocate(len),
    }
    .and_then(|()| file.sync_data())
    .map_err(|e| Error::io(path, e))?;
    Ok(file)
}

/// Starts preparing the next segment file in the background, unless one is ready or under
/// way. The preparer hands the file back through a channel that [`roll`] polls.
fn prepare_spare(shared: &Shared, st: &mut State) {
    if !matches!(st.spare, Spare::Absent) || st.closing {
        return;
    }
    // Reap the previous preparer, which has finished: its file was taken.
    if let Some(h) = st.spare_thread.take() {
        let _ = h.join();
    }
    let storage = shared.storage.clone();
    let path = shared.dir.join(SPARE_NAME);
    let len = shared.config.segment_size_bytes;
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("folddb-log-spare".into())
        .spawn(move || {
            let _ = tx.send(create_segment_file(
                storage.as_ref(),
                &path,
                len,
                Prepare::ZeroFill,
            ));
        });
    match spawned {
        Ok(h) => {
            st.spare_thread = Some(h);
            st.spare = Spare::Preparing(rx);
        }
        Err(e) => tracing::warn!(error = %e, "could not start the segment preparer"),
    }
}

/// Takes the prepared spare segment file, if it is ready.
fn take_spare(st: &mut State) -> Option<Arc<dyn StorageFile>> {
    let Spare::Preparing(rx) = &st.spare else {
        return None;
    };
    match rx.try_recv() {
        Ok(Ok(file)) => {
            st.spare = Spare::Absent;
            Some(file)
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "preparing a spare segment failed; creating one inline");
            st.spare = Spare::Absent;
            None
        }
        Err(std::sync::mpsc::TryRecvError::Empty) => None,
        Err(std::sync::mpsc::TryRecvError::Disconnected) => {
            st.spare = Spare::Absent;
            None
        }
    }
}

/// Removes every entry from `from` on; the caller has checked `from` is within the log.
fn truncate_locked(shared: &Shared, st: &mut State, from: LogIndex) -> Result<()> {
    let mut removed_any = false;
    while st.segments.len() > 1 && st.segments.last().is_some_and(|s| s.first >= from) {
        let seg = st.segments.pop().expect("checked above");
        shared
            .storage
            .remove(&seg.path)
            .map_err(|e| Error::io(&seg.path, e))?;
        removed_any = true;
    }
    if removed_any {
        shared
            .storage
            .sync_dir(&shared.dir)
            .map_err(|e| Error::io(&shared.dir, e))?;
    }
    let seg_size = shared.config.segment_size_bytes;
    let active = st.segments.last_mut().expect("from lies within the log");
    if from < active.first {
        // Only possible when the sole segment starts after `from`, which the caller rules out.
        return Ok(());
    }
    let k = (from.0 - active.first.0) as usize;
    if k < active.offsets.len() {
        let cut = u64::from(active.offsets[k]);
        let file_len = active.file.size().map_err(|e| Error::io(&active.path, e))?;
        // Zero the discarded frames, and refill a segment that was trimmed when it was sealed
        // so that later appends land in allocated space again.
        let zero_to = file_len.max(seg_size);
        write_zeros(active.file.as_ref(), cut, zero_to - cut)
            .and_then(|()| active.file.sync_data())
            .map_err(|e| Error::io(&active.path, e))?;
        active.offsets.truncate(k);
        active.end = cut;
    }
    Ok(())
}

/// The term of the entry at `index`, read from its frame.
fn term_at(st: &State, index: LogIndex, max_payload: u32) -> Result<Term> {
    let seg = st
        .segments
        .iter()
        .find(|s| s.holds(index))
        .ok_or_else(|| Error::OutOfRange {
            index,
            range: st.range_text(),
        })?;
    let k = (index.0 - seg.first.0) as usize;
    let (start, end) = seg.span(k, k + 1);
    let span = FrameSpan {
        path: &seg.path,
        file: seg.file.as_ref(),
        start,
        end,
        first: index,
        count: 1,
    };
    let entry = span.read(max_payload)?;
    Ok(entry[0].term)
}

/// The sync thread: whenever entries are written but not durable, `fdatasync` the active
/// segment and advance the durable watermark to what was written before the sync began.
fn sync_loop(shared: &Shared) {
    let mut st = lock(&shared.state);
    loop {
        if st.poisoned.is_some() {
            return;
        }
        let target = st.last_index();
        if target <= st.durable {
            if st.closing {
                return;
            }
            st = shared
                .sync_wanted
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
            continue;
        }
        let Some(active) = st.segments.last() else {
            return;
        };
        let (file, path, epoch) = (active.file.clone(), active.path.clone(), st.epoch);
        // The entries this sync makes durable: one group commit.
        let group = target
            .map_or(0, |t| t.0)
            .saturating_sub(st.durable.map_or(0, |d| d.0));
        drop(st);
        let started = std::time::Instant::now();
        let result = file.sync_data();
        metrics::histogram!("folddb_log_fsync_seconds").record(started.elapsed().as_secs_f64());
        st = lock(&shared.state);
        match result {
            Ok(()) => {
                metrics::histogram!("folddb_log_group_commit_entries").record(group as f64);
                // A truncation during the sync may have removed what it covered; go round.
                if st.epoch == epoch && target > st.durable && st.poisoned.is_none() {
                    st.durable = target;
                    shared.durable_tx.send_modify(|m| m.index = target);
                }
            }
            Err(e) => {
                let reason = format!("fdatasync of {} failed: {e}", path.display());
                poison(shared, &mut st, reason);
            }
        }
    }
}
