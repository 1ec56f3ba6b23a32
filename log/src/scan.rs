//! Scanning a segment's bytes at open: which frames are valid, where the data ends, and
//! whether what follows is a torn write (discard) or corruption (refuse). A pure function of
//! the bytes; `log/FORMAT.md`, "Recovery", states the rules this implements.

use crate::frame::{
    self, Decoded, FRAME_FIXED_BODY_BYTES, FRAME_MIN_BYTES, FRAME_PREFIX_BYTES, HeaderError,
    Invalid, SEGMENT_HEADER_BYTES,
};
use crate::mem_storage::SECTOR_BYTES;
use crate::{LogIndex, Term};

/// What a segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub first_index: LogIndex,
    /// Byte offset of each valid frame; frame `i` holds index `first_index + i`.
    pub offsets: Vec<u32>,
    pub first_term: Option<Term>,
    pub last_term: Option<Term>,
    /// Offset just past the last valid frame.
    pub end: u64,
    pub tail: Tail,
}

impl Scan {
    pub fn last_index(&self) -> Option<LogIndex> {
        (!self.offsets.is_empty())
            .then(|| LogIndex(self.first_index.0 + self.offsets.len() as u64 - 1))
    }
}

/// What follows the last valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Zeros (or nothing) up to the end of the file.
    Clean,
    /// An unfinished write in the last segment: bytes `offset..dirty_end` are to be zeroed.
    Torn {
        offset: u64,
        dirty_end: u64,
        reason: String,
    },
    /// Damage that a crash cannot explain.
    Corrupt { offset: u64, problem: Problem },
}

/// Why a frame position is corrupt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Checksum { stored: u32, computed: u32 },
    Other(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            Problem::Other(reason) => f.write_str(reason),
        }
    }
}

/// Scans one segment. `sealed` is true for every segment but the last; in a sealed segment
/// nothing can be torn, so any damage is corruption.
pub fn scan_segment(bytes: &[u8], sealed: bool, max_payload: u32) -> Result<Scan, HeaderError> {
    let header = frame::decode_header(bytes)?;
    let mut scan = Scan {
        first_index: header.first_index,
        offsets: Vec::new(),
        first_term: None,
        last_term: None,
        end: SEGMENT_HEADER_BYTES as u64,
        tail: Tail::Clean,
    };
    let mut pos = SEGMENT_HEADER_BYTES;
    loop {
        let expected = LogIndex(header.first_index.0 + scan.offsets.len() as u64);
        match frame::decode_frame(&bytes[pos..], max_payload) {
            Decoded::Frame(f) if f.index == expected && u32::try_from(pos).is_ok() => {
                scan.offsets.push(pos as u32);
                scan.first_term.get_or_insert(f.term);
                scan.last_term = Some(f.term);
                pos += f.encoded_len;
                scan.end = pos as u64;
            }
            Decoded::End => {
                scan.tail = after_end(bytes, pos, sealed);
                return Ok(scan);
            }
            Decoded::Frame(f) => {
                let why = format!(
                    "frame holds index {} where {} was expected",
                    f.index, expected
                );
                let span_end = pos + f.encoded_len;
                scan.tail = classify(bytes, pos, span_end, sealed, expected, max_payload, why);
                return Ok(scan);
            }
            Decoded::Invalid(invalid) => {
                let rest = &bytes[pos..];
                let length = if rest.len() >= 4 {
                    frame::read_u32(rest, 0) as usize
                } else {
                    0
                };
                let span_end = if length >= FRAME_FIXED_BODY_BYTES {
                    pos + FRAME_PREFIX_BYTES + length
                } else {
                    pos + FRAME_PREFIX_BYTES
                };
                scan.tail = match (sealed, &invalid) {
                    (true, Invalid::Checksum { stored, computed }) => Tail::Corrupt {
                        offset: pos as u64,
                        problem: Problem::Checksum {
                            stored: *stored,
                            computed: *computed,
                        },
                    },
                    _ => classify(
                        bytes,
                        pos,
                        span_end,
                        sealed,
                        expected,
                        max_payload,
                        invalid.to_string(),
                    ),
                };
                return Ok(scan);
            }
        }
    }
}

/// The data ended with a zero frame prefix at `pos`. Anything non-zero after it is an
/// unsynced write that landed out of order (last segment) or damage (sealed segment).
fn after_end(bytes: &[u8], pos: usize, sealed: bool) -> Tail {
    let Some(first_dirty) = bytes[pos..].iter().position(|b| *b != 0) else {
        return Tail::Clean;
    };
    if sealed {
        return Tail::Corrupt {
            offset: (pos + first_dirty) as u64,
            problem: Problem::Other("non-zero bytes after the end of a sealed segment".into()),
        };
    }
    Tail::Torn {
        offset: pos as u64,
        dirty_end: dirty_end(bytes, pos),
        reason: "unsynced bytes after the end of the log".into(),
    }
}

/// Decides whether the invalid frame at `pos` (spanning `pos..span_end` by its own length
/// field) is a torn write or corruption.
fn classify(
    bytes: &[u8],
    pos: usize,
    span_end: usize,
    sealed: bool,
    expected: LogIndex,
    max_payload: u32,
    reason: String,
) -> Tail {
    let corrupt = |reason: String| Tail::Corrupt {
        offset: pos as u64,
        problem: Problem::Other(reason),
    };
    if sealed {
        return corrupt(reason);
    }
    let torn = Tail::Torn {
        offset: pos as u64,
        dirty_end: dirty_end(bytes, pos),
        reason: reason.clone(),
    };
    // No intact frame after this one: it is the tail, whatever the damage looks like.
    let Some(next) = next_valid_frame(bytes, pos + 1, expected, max_payload) else {
        return torn;
    };
    // Intact frames follow. A torn write explains that only if this frame's own bytes stop
    // before them and part of it was never written (a zero sector); anything else is damage.
    if span_end <= next && has_zero_sector(bytes, pos, span_end.min(bytes.len())) {
        return torn;
    }
    corrupt(format!(
        "{reason}; an intact frame follows at byte offset {next}"
    ))
}

/// Offset one past the last non-zero byte at or after `pos`.
fn dirty_end(bytes: &[u8], pos: usize) -> u64 {
    bytes[pos..]
        .iter()
        .rposition(|b| *b != 0)
        .map_or(pos, |i| pos + i + 1) as u64
}

/// Whether some sector's share of `start..end` is all zeros (never written).
fn has_zero_sector(bytes: &[u8], start: usize, end: usize) -> bool {
    let mut at = start;
    while at < end {
        let chunk_end = ((at / SECTOR_BYTES + 1) * SECTOR_BYTES).min(end);
        if bytes[at..chunk_end].iter().all(|b| *b == 0) {
            return true;
        }
        at = chunk_end;
    }
    false
}

/// The first position at or after `from` holding a valid frame whose index is `expected` or
/// later.
fn next_valid_frame(
    bytes: &[u8],
    from: usize,
    expected: LogIndex,
    max_payload: u32,
) -> Option<usize> {
    let last_start = bytes.len().checked_sub(FRAME_MIN_BYTES)?;
    (from..=last_start).find(|&p| {
        let index = frame::read_u64(bytes, p + 16);
        index >= expected.0
            && index - expected.0 < (1 << 32)
            && matches!(frame::decode_frame(&bytes[p..], max_payload),
                Decoded::Frame(f) if f.index.0 == index)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_frame, encode_header};
    use proptest::prelude::*;

    const MAX: u32 = 1 << 20;

    /// A segment of `n` frames with payload sizes from `sizes`, followed by `zeros` zeros.
    fn segment(first: u64, sizes: &[usize], zeros: usize) -> (Vec<u8>, Vec<usize>) {
        let mut b = encode_header(LogIndex(first)).to_vec();
        let mut ends = Vec::new();
        for (i, s) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..*s).map(|j| (j * 7 + i + 1) as u8 | 1).collect();
            encode_frame(
                &mut b,
                Term(1 + i as u64 / 3),
                LogIndex(first + i as u64),
                &payload,
            );
            ends.push(b.len());
        }
        b.resize(b.len() + zeros, 0);
        (b, ends)
    }

    #[test]
    fn clean_segment() {
        let (b, ends) = segment(10, &[5, 300, 0, 1000], 4096);
        let s = scan_segment(&b, false, MAX).unwrap();
        assert_eq!(s.offsets.len(), 4);
        assert_eq!(s.last_index(), Some(LogIndex(13)));
        assert_eq!(s.end, *ends.last().unwrap() as u64);
        assert_eq!(s.tail, Tail::Clean);
        assert_eq!(s.last_term, Some(Term(2)));
    }

    #[test]
    fn flipped_bit_in_the_middle_of_the_last_segment_is_corruption() {
        let (mut b, ends) = segment(1, &[100, 100, 100, 100], 1024);
        b[ends[1] + 30] ^= 0x10; // inside frame 3's body
        let s = scan_segment(&b, false, MAX).unwrap();
        assert_eq!(s.offsets.len(), 2);
        assert!(
            matches!(s.tail, Tail::Corrupt { offset, .. } if offset == ends[1] as u64),
            "{:?}",
            s.tail
        );
    }

    #[test]
    fn flipped_length_bit_in_the_last_segment_is_corruption() {
        let (mut b, ends) = segment(1, &[100, 100, 100, 100], 100_000);
        b[ends[0] + 2] ^= 0x01; // frame 2's length grows by 64 KiB, into the zeros
        let s = scan_segment(&b, false, MAX).unwrap();
        assert!(
            matches!(s.tail, Tail::Corrupt { offset, .. } if offset == ends[0] as u64),
            "{:?}",
            s.tail
        );
    }

    #[test]
    fn torn_frame_followed_by_persisted_frames_is_torn() {
        // Frame 2 spans a sector boundary and its second sector was never written, while
        // the frame after it was: a power loss can persist unsynced sectors in any order.
        let (mut b, ends) = segment(1, &[400, 700, 50], 1024);
        let f2 = ends[0];
        let boundary = (f2 / 512 + 1) * 512;
        b[boundary..ends[1]].fill(0);
        let s = scan_segment(&b, false, MAX).unwrap();
        assert_eq!(s.offsets.len(), 1);
        assert!(
            matches!(s.tail, Tail::Torn { offset, dirty_end, .. }
            if offset == f2 as u64 && dirty_end == ends[2] as u64),
            "{:?}",
            s.tail
        );
    }

    #[test]
    fn damage_in_a_sealed_segment_is_always_corruption() {
        let (mut b, ends) = segment(1, &[100, 100], 0);
        let last = b.len() - 1;
        b[last] ^= 1;
        let s = scan_segment(&b, true, MAX).unwrap();
        assert!(
            matches!(s.tail, Tail::Corrupt { offset, problem: Problem::Checksum { .. } }
            if offset == ends[0] as u64)
        );
        let (mut b, _) = segment(1, &[100], 64);
        let last = b.len() - 1;
        b[last] = 9;
        assert!(matches!(
            scan_segment(&b, true, MAX).unwrap().tail,
            Tail::Corrupt { .. }
        ));
    }

    proptest! {
        /// Cutting the file anywhere (shorter file, or zeros from the cut on) leaves exactly
        /// the frames that end at or before the cut, and the rest is reported as torn.
        #[test]
        fn cut_anywhere_yields_the_complete_prefix(
            sizes in proptest::collection::vec(0usize..700, 1..8),
            cut_frac in 0.0f64..1.0,
            zero_fill in any::<bool>(),
        ) {
            let (full, ends) = segment(5, &sizes, 0);
            let cut = SEGMENT_HEADER_BYTES
                + ((full.len() - SEGMENT_HEADER_BYTES) as f64 * cut_frac) as usize;
            let mut b = full[..cut].to_vec();
            if zero_fill {
                b.resize(full.len() + 2048, 0);
            }
            let s = scan_segment(&b, false, MAX).unwrap();
            // A frame survives the cut if it ends before it, or (with zeros after the cut)
            // if every byte it lost was a zero anyway.
            let survives = |end: usize| {
                end <= cut || (zero_fill && full[cut..end].iter().all(|b| *b == 0))
            };
            let complete = ends.iter().take_while(|e| survives(**e)).count();
            prop_assert_eq!(s.offsets.len(), complete);
            let clean_cut = cut == SEGMENT_HEADER_BYTES || ends.contains(&cut);
            // A cut inside a frame is torn, unless what survived of it reads as zeros.
            prop_assert!(!clean_cut || s.tail == Tail::Clean, "{:?}", s.tail);
            let corrupt = matches!(s.tail, Tail::Corrupt { .. });
            prop_assert!(!corrupt, "{:?}", s.tail);
        }

        /// One flipped bit in a sealed segment is reported at the offset of its frame.
        #[test]
        fn flipped_bit_in_sealed_segment_names_the_frame(
            sizes in proptest::collection::vec(1usize..300, 1..6),
            bit in any::<proptest::sample::Index>(),
        ) {
            let (mut b, ends) = segment(1, &sizes, 0);
            let body_bits = (b.len() - SEGMENT_HEADER_BYTES) * 8;
            let bit = SEGMENT_HEADER_BYTES * 8 + bit.index(body_bits);
            b[bit / 8] ^= 1 << (bit % 8);
            let byte = bit / 8;
            let frame_start = std::iter::once(SEGMENT_HEADER_BYTES)
                .chain(ends.iter().copied())
                .filter(|s| *s <= byte)
                .max()
                .unwrap();
            let s = scan_segment(&b, true, MAX).unwrap();
            let is_corrupt_at_frame = matches!(s.tail,
                Tail::Corrupt { offset, .. } if offset == frame_start as u64);
            prop_assert!(is_corrupt_at_frame, "{:?} expected at {}", s.tail, frame_start);
        }
    }
}
