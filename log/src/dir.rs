//! Reading a log directory without changing it: the segments, what each holds, the purge
//! marker. [`crate::Log::open`] builds on it and then repairs a torn tail; the `folddb log`
//! tools use it as it is, so inspecting a log never writes to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::frame::{self, Decoded};
use crate::meta::{self, PURGE_MARKER};
use crate::scan::{self, Problem, Scan, Tail};
use crate::storage::{FsStorage, Storage, StorageFile, read_all};
use crate::{Entry, LogIndex, Term};

/// Suffix of segment files; the stem is the first index, zero-padded to 20 digits.
pub const SEGMENT_SUFFIX: &str = ".seg";

/// The file name of the segment whose first index is `first`.
pub fn segment_name(first: LogIndex) -> String {
    format!("{:020}{SEGMENT_SUFFIX}", first.0)
}

fn parse_segment_name(name: &str) -> Option<LogIndex> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok().map(LogIndex))
        .flatten()
}

/// One segment as found on disk.
#[derive(Debug)]
pub struct ScannedSegment {
    pub path: PathBuf,
    pub file: Arc<dyn StorageFile>,
    pub file_len: u64,
    pub scan: Scan,
}

/// A log directory as found on disk.
#[derive(Debug)]
pub struct DirScan {
    pub dir: PathBuf,
    /// Sorted by first index; the last one is the active segment.
    pub segments: Vec<ScannedSegment>,
    pub purged: Option<(LogIndex, Term)>,
    /// Leftover `*.tmp` files of interrupted segment creations or metadata replacements.
    pub tmp_files: Vec<String>,
    max_payload: u32,
}

impl DirScan {
    /// Scans `dir` on the real filesystem.
    pub fn read(dir: &Path, max_payload: u32) -> Result<DirScan> {
        Self::read_with(&FsStorage, dir, max_payload)
    }

    /// Scans `dir`. Fails on anything it cannot read or parse at all (a bad header, an
    /// unreadable file); damage inside a segment is reported in its [`Scan::tail`].
    pub fn read_with(storage: &dyn Storage, dir: &Path, max_payload: u32) -> Result<DirScan> {
        let mut names = storage.list(dir).map_err(|e| Error::io(dir, e))?;
        names.sort();
        let mut segments: Vec<(LogIndex, String)> = Vec::new();
        let mut tmp_files = Vec::new();
        for name in names {
            if let Some(first) = parse_segment_name(&name) {
                segments.push((first, name));
            } else if name.ends_with(".tmp") {
                tmp_files.push(name);
            }
        }
        let purged = match meta::read_meta(storage, dir, PURGE_MARKER)? {
            Some(payload) => Some(meta::decode_purge(&payload, &dir.join(PURGE_MARKER))?),
            None => None,
        };
        let count = segments.len();
        let mut scanned = Vec::with_capacity(count);
        for (i, (first, name)) in segments.into_iter().enumerate() {
            let path = dir.join(&name);
            let file = storage.open(&path).map_err(|e| Error::io(&path, e))?;
            let bytes = read_all(file.as_ref()).map_err(|e| Error::io(&path, e))?;
            let sealed = i + 1 < count;
            let scan =
                scan::scan_segment(&bytes, sealed, max_payload).map_err(|e| Error::BadHeader {
                    segment: path.clone(),
                    reason: e.to_string(),
                })?;
            if scan.first_index != first {
                return Err(Error::BadHeader {
                    segment: path,
                    reason: format!(
                        "header says first index {} but the file name says {}",
                        scan.first_index, first
                    ),
                });
            }
            scanned.push(ScannedSegment {
                path,
                file,
                file_len: bytes.len() as u64,
                scan,
            });
        }
        Ok(DirScan {
            dir: dir.to_path_buf(),
            segments: scanned,
            purged,
            tmp_files,
            max_payload,
        })
    }

    /// The first corruption found: damage inside a segment, or entries missing between two
    /// segments that the purge marker does not explain. A torn tail is not corruption.
    pub fn corruption(&self) -> Option<Error> {
        for s in &self.segments {
            if let Tail::Corrupt { offset, problem } = &s.scan.tail {
                return Some(match problem {
                    Problem::Checksum { stored, computed } => Error::ChecksumMismatch {
                        segment: s.path.clone(),
                        offset: *offset,
                        stored: *stored,
                        computed: *computed,
                    },
                    Problem::Other(reason) => Error::CorruptFrame {
                        segment: s.path.clone(),
                        offset: *offset,
                        reason: reason.clone(),
                    },
                });
            }
        }
        let purged = self.purged.map(|(i, _)| i);
        // Past a purge marker the log goes on at the next index.
        if let (Some(p), Some(head)) = (
            purged,
            self.segments.iter().find(|s| s.scan.last_index().is_some()),
        ) && head.scan.first_index.0 > p.0.saturating_add(1)
        {
            return Some(Error::MissingHead {
                segment: head.path.clone(),
                first: head.scan.first_index,
                expected: LogIndex(p.0 + 1),
            });
        }
        for pair in self.segments.windows(2) {
            let Some(last) = pair[0].scan.last_index() else {
                continue;
            };
            let next_first = pair[1].scan.first_index;
            let explained = purged.is_some_and(|p| next_first.0 <= p.0.saturating_add(1));
            if last.0.checked_add(1) != Some(next_first.0) && !explained {
                return Some(Error::Gap {
                    segment: pair[0].path.clone(),
                    last,
                    next_first,
                });
            }
        }
        None
    }

    /// The torn tail of the last segment, if any: `(segment, offset, dirty_end, reason)`.
    pub fn torn_tail(&self) -> Option<(&Path, u64, u64, &str)> {
        let last = self.segments.last()?;
        match &last.scan.tail {
            Tail::Torn {
                offset,
                dirty_end,
                reason,
            } => Some((&last.path, *offset, *dirty_end, reason)),
            _ => None,
        }
    }

    /// Up to `limit` entries from index `from` on (from the first present entry if `None`),
    /// as they are on disk, purged ones included.
    pub fn read_entries(&self, from: Option<LogIndex>, limit: usize) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for s in &self.segments {
            let n = s.scan.offsets.len() as u64;
            let first = s.scan.first_index.0;
            let start = from.map_or(first, |f| f.0.max(first));
            if start >= first + n || out.len() >= limit {
                continue;
            }
            let k0 = (start - first) as usize;
            let k1 = k0.saturating_add(limit - out.len()).min(n as usize);
            let span = FrameSpan {
                path: &s.path,
                file: s.file.as_ref(),
                start: u64::from(s.scan.offsets[k0]),
                end: s.scan.offsets.get(k1).map_or(s.scan.end, |o| u64::from(*o)),
                first: LogIndex(start),
                count: k1 - k0,
            };
            out.extend(span.read(self.max_payload)?);
        }
        Ok(out)
    }
}

/// A run of consecutive frames within one segment.
pub(crate) struct FrameSpan<'a> {
    pub path: &'a Path,
    pub file: &'a dyn StorageFile,
    pub start: u64,
    pub end: u64,
    pub first: LogIndex,
    pub count: usize,
}

impl FrameSpan<'_> {
    /// Reads and checks the frames: every checksum, and that they hold the expected indices.
    pub fn read(&self, max_payload: u32) -> Result<Vec<Entry>> {
        let len = usize::try_from(self.end - self.start).map_err(|_| Error::CorruptFrame {
            segment: self.path.to_path_buf(),
            offset: self.start,
            reason: "span too large".into(),
        })?;
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, self.start)
            .map_err(|e| Error::io(self.path, e))?;
        let mut out = Vec::with_capacity(self.count);
        let mut pos = 0usize;
        for k in 0..self.count {
            let offset = self.start + pos as u64;
            let expected = LogIndex(self.first.0 + k as u64);
            match frame::decode_frame(&buf[pos..], max_payload) {
                Decoded::Frame(f) if f.index == expected => {
                    out.push(Entry {
                        index: f.index,
                        term: f.term,
                        payload: f.payload.to_vec(),
                    });
                    pos += f.encoded_len;
                }
                Decoded::Frame(f) => {
                    return Err(Error::CorruptFrame {
                        segment: self.path.to_path_buf(),
                        offset,
                        reason: format!(
                            "frame holds index {} where {expected} was expected",
                            f.index
                        ),
                    });
                }
                Decoded::Invalid(frame::Invalid::Checksum { stored, computed }) => {
                    return Err(Error::ChecksumMismatch {
                        segment: self.path.to_path_buf(),
                        offset,
                        stored,
                        computed,
                    });
                }
                other => {
                    let reason = match other {
                        Decoded::Invalid(i) => i.to_string(),
                        _ => "zeros where a frame was expected".to_owned(),
                    };
                    return Err(Error::CorruptFrame {
                        segment: self.path.to_path_buf(),
                        offset,
                        reason,
                    });
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        assert_eq!(segment_name(LogIndex(42)), "00000000000000000042.seg");
        assert_eq!(
            parse_segment_name("00000000000000000042.seg"),
            Some(LogIndex(42))
        );
        assert_eq!(parse_segment_name("42.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.seg"), None);
        assert_eq!(parse_segment_name("00000000000000000042.seg.tmp"), None);
    }

    #[test]
    fn read_entries_honours_from_and_limit_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::LogConfig {
            segment_size_bytes: 4096,
            ..crate::LogConfig::default()
        };
        {
            let log = crate::Log::open(dir.path(), config).unwrap();
            for _ in 0..300 {
                log.append_next(Term(1), &[&[1u8; 40]]).unwrap();
            }
        }
        let scan = DirScan::read(dir.path(), 1 << 20).unwrap();
        assert!(scan.segments.len() > 2);
        let idx = |v: Vec<Entry>| v.iter().map(|e| e.index.0).collect::<Vec<_>>();
        assert_eq!(
            idx(scan.read_entries(None, usize::MAX).unwrap()),
            (1..=300).collect::<Vec<_>>()
        );
        assert_eq!(
            idx(scan.read_entries(Some(LogIndex(299)), usize::MAX).unwrap()),
            [299, 300]
        );
        assert_eq!(
            idx(scan.read_entries(Some(LogIndex(60)), 3).unwrap()),
            [60, 61, 62]
        );
        assert!(
            scan.read_entries(Some(LogIndex(301)), 5)
                .unwrap()
                .is_empty()
        );
    }
}
