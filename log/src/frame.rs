//! The pure byte codec of segment headers and frames: no I/O, no state. `log/FORMAT.md`
//! ("Segment header", "Frame") is the normative layout; this file implements it.

use crate::{LogIndex, Term};

/// Magic bytes that open every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FOLDLOG\0";
/// The segment format this build writes and reads. Versions are never reused.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the segment header; the first frame starts here.
pub const SEGMENT_HEADER_BYTES: usize = 32;
/// `length` + `crc` fields.
pub const FRAME_PREFIX_BYTES: usize = 8;
/// `term` + `index` fields, covered by the CRC together with the payload.
pub const FRAME_FIXED_BODY_BYTES: usize = 16;
/// A frame with an empty payload.
pub const FRAME_MIN_BYTES: usize = FRAME_PREFIX_BYTES + FRAME_FIXED_BODY_BYTES;
/// Hard upper bound on a payload, whatever the configuration says: the body length must fit
/// the `u32` length field with room to spare.
pub const PAYLOAD_HARD_LIMIT_BYTES: u32 = 1 << 30;

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub version: u32,
    pub first_index: LogIndex,
}

/// Why a segment header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    TooShort,
    BadMagic,
    BadChecksum { stored: u32, computed: u32 },
    UnsupportedVersion(u32),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::TooShort => write!(f, "file is shorter than the 32-byte header"),
            HeaderError::BadMagic => write!(f, "magic bytes are not FOLDLOG\\0"),
            HeaderError::BadChecksum { stored, computed } => {
                write!(
                    f,
                    "header checksum stored {stored:#010x}, computed {computed:#010x}"
                )
            }
            HeaderError::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
        }
    }
}

/// Encodes a segment header of the current format version.
pub fn encode_header(first_index: LogIndex) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // 12..16: flags, zero in version 1.
    h[16..24].copy_from_slice(&first_index.0.to_le_bytes());
    let crc = crc32fast::hash(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    // 28..32: reserved, zero.
    h
}

/// Decodes and checks a segment header.
pub fn decode_header(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return Err(HeaderError::TooShort);
    }
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err(HeaderError::BadMagic);
    }
    let stored = read_u32(bytes, 24);
    let computed = crc32fast::hash(&bytes[0..24]);
    if stored != computed {
        return Err(HeaderError::BadChecksum { stored, computed });
    }
    let version = read_u32(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    Ok(SegmentHeader {
        version,
        first_index: LogIndex(read_u64(bytes, 16)),
    })
}

/// Total encoded size of a frame carrying `payload_len` bytes.
pub fn frame_len(payload_len: usize) -> usize {
    FRAME_MIN_BYTES + payload_len
}

/// Appends one encoded frame to `buf`. The caller has checked the payload against
/// [`PAYLOAD_HARD_LIMIT_BYTES`].
pub fn encode_frame(buf: &mut Vec<u8>, term: Term, index: LogIndex, payload: &[u8]) {
    let body_len = FRAME_FIXED_BODY_BYTES + payload.len();
    let length = u32::try_from(body_len).expect("payload checked against the hard limit");
    let start = buf.len();
    buf.extend_from_slice(&length.to_le_bytes());
    buf.extend_from_slice(&[0u8; 4]);
    buf.extend_from_slice(&term.0.to_le_bytes());
    buf.extend_from_slice(&index.0.to_le_bytes());
    buf.extend_from_slice(payload);
    let crc = crc32fast::hash(&buf[start + FRAME_PREFIX_BYTES..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A frame that decoded and passed its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub term: Term,
    pub index: LogIndex,
    pub payload: &'a [u8],
    /// Encoded size, prefix included: the next frame starts this many bytes later.
    pub encoded_len: usize,
}

/// The outcome of decoding the bytes at one position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A complete frame whose checksum matches.
    Frame(Frame<'a>),
    /// Eight zero bytes where a frame would start (or fewer than eight bytes, all zero): the
    /// end of the written data in a zero-filled segment.
    End,
    /// Something that is neither a frame nor the end.
    Invalid(Invalid),
}

/// Why the bytes at a position are not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// The length field is below the minimum or above the payload limit.
    BadLength(u32),
    /// The frame runs past the end of the available bytes.
    Incomplete { needed: usize, available: usize },
    /// The body does not match its checksum.
    Checksum { stored: u32, computed: u32 },
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::BadLength(n) => write!(f, "frame length field {n} is out of bounds"),
            Invalid::Incomplete { needed, available } => write!(
                f,
                "frame needs {needed} bytes but only {available} remain in the segment"
            ),
            Invalid::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
        }
    }
}

/// Decodes the frame at the start of `bytes`. `max_payload` bounds the length field so that
/// garbage is never trusted as a huge allocation.
pub fn decode_frame(bytes: &[u8], max_payload: u32) -> Decoded<'_> {
    if bytes.len() < FRAME_PREFIX_BYTES {
        if bytes.iter().all(|b| *b == 0) {
            return Decoded::End;
        }
        return Decoded::Invalid(Invalid::Incomplete {
            needed: FRAME_PREFIX_BYTES,
            available: bytes.len(),
        });
    }
    let length = read_u32(bytes, 0);
    let stored = read_u32(bytes, 4);
    if length == 0 && stored == 0 {
        return Decoded::End;
    }
    let max_body = u64::from(max_payload.min(PAYLOAD_HARD_LIMIT_BYTES)) + 16;
    if (length as usize) < FRAME_FIXED_BODY_BYTES || u64::from(length) > max_body {
        return Decoded::Invalid(Invalid::BadLength(length));
    }
    let encoded_len = FRAME_PREFIX_BYTES + length as usize;
    if bytes.len() < encoded_len {
        return Decoded::Invalid(Invalid::Incomplete {
            needed: encoded_len,
            available: bytes.len(),
        });
    }
    let body = &bytes[FRAME_PREFIX_BYTES..encoded_len];
    let computed = crc32fast::hash(body);
    if computed != stored {
        return Decoded::Invalid(Invalid::Checksum { stored, computed });
    }
    Decoded::Frame(Frame {
        term: Term(read_u64(body, 0)),
        index: LogIndex(read_u64(body, 8)),
        payload: &body[FRAME_FIXED_BODY_BYTES..],
        encoded_len,
    })
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_frame_bytes() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, Term(2), LogIndex(7), b"abc");
        let crc = crc32fast::hash(&buf[8..]);
        let mut expected = vec![19, 0, 0, 0];
        expected.extend_from_slice(&crc.to_le_bytes());
        expected.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(b"abc");
        assert_eq!(buf, expected);
        // CRC-32/IEEE ("check" value of the catalogue) pins the algorithm itself.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn golden_header_bytes() {
        let h = encode_header(LogIndex(0x0102));
        assert_eq!(&h[0..8], b"FOLDLOG\0");
        assert_eq!(&h[8..12], &[1, 0, 0, 0]);
        assert_eq!(&h[12..16], &[0, 0, 0, 0]);
        assert_eq!(&h[16..24], &[2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(read_u32(&h, 24), crc32fast::hash(&h[0..24]));
        assert_eq!(&h[28..32], &[0, 0, 0, 0]);
        assert_eq!(
            decode_header(&h),
            Ok(SegmentHeader {
                version: 1,
                first_index: LogIndex(0x0102)
            })
        );
    }

    #[test]
    fn header_rejections() {
        let h = encode_header(LogIndex(5));
        assert_eq!(decode_header(&h[..31]), Err(HeaderError::TooShort));
        let mut bad = h;
        bad[0] = b'X';
        assert_eq!(decode_header(&bad), Err(HeaderError::BadMagic));
        let mut bad = h;
        bad[17] ^= 1;
        assert!(matches!(
            decode_header(&bad),
            Err(HeaderError::BadChecksum { .. })
        ));
        let mut v2 = h;
        v2[8] = 2;
        let crc = crc32fast::hash(&v2[0..24]);
        v2[24..28].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_header(&v2), Err(HeaderError::UnsupportedVersion(2)));
    }

    #[test]
    fn zeros_are_the_end_and_garbage_is_not() {
        assert_eq!(decode_frame(&[0u8; 64], 1024), Decoded::End);
        assert_eq!(decode_frame(&[0u8; 3], 1024), Decoded::End);
        assert_eq!(decode_frame(&[], 1024), Decoded::End);
        assert!(matches!(
            decode_frame(&[1, 0, 0], 1024),
            Decoded::Invalid(Invalid::Incomplete { .. })
        ));
        assert_eq!(
            decode_frame(&[5, 0, 0, 0, 1, 1, 1, 1], 1024),
            Decoded::Invalid(Invalid::BadLength(5))
        );
        let mut huge = vec![0u8; 64];
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_frame(&huge, 1024),
            Decoded::Invalid(Invalid::BadLength(u32::MAX))
        );
    }

    proptest! {
        #[test]
        fn frame_round_trip(term in any::<u64>(), index in any::<u64>(),
                            payload in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut buf = Vec::new();
            encode_frame(&mut buf, Term(term), LogIndex(index), &payload);
            prop_assert_eq!(buf.len(), frame_len(payload.len()));
            buf.extend_from_slice(&[0u8; 16]);
            match decode_frame(&buf, 1024) {
                Decoded::Frame(f) => {
                    prop_assert_eq!(f.term, Term(term));
                    prop_assert_eq!(f.index, LogIndex(index));
                    prop_assert_eq!(f.payload, &payload[..]);
                    prop_assert_eq!(f.encoded_len, frame_len(payload.len()));
                }
                other => prop_assert!(false, "decoded {:?}", other),
            }
        }

        #[test]
        fn any_prefix_of_a_frame_is_never_a_frame(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            cut in 0usize..224,
        ) {
            let mut buf = Vec::new();
            encode_frame(&mut buf, Term(1), LogIndex(1), &payload);
            let cut = cut.min(buf.len() - 1);
            prop_assert!(!matches!(decode_frame(&buf[..cut], 1024), Decoded::Frame(_)));
        }

        #[test]
        fn any_flipped_bit_is_detected(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            bit in any::<proptest::sample::Index>(),
        ) {
            let mut buf = Vec::new();
            encode_frame(&mut buf, Term(3), LogIndex(9), &payload);
            let bit = bit.index(buf.len() * 8);
            buf[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(!matches!(decode_frame(&buf, 1024), Decoded::Frame(_)));
        }
    }
}
