//! Fuzzes what the log does with bytes from disk: the frame decoder, the segment header and
//! the recovery scanner must never panic, and what they accept must be self-consistent.
//! Run: `cd log/fuzz && cargo +nightly fuzz run scan_segment`.

#![no_main]

use folddb_log::frame::{self, Decoded};
use folddb_log::scan::{self, Tail};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The raw decoder on arbitrary bytes.
    if let Decoded::Frame(f) = frame::decode_frame(data, 1 << 20) {
        assert!(f.encoded_len <= data.len());
        assert_eq!(f.encoded_len, frame::frame_len(f.payload.len()));
    }
    // The scanner, on the bytes behind a valid header (so it gets past the magic), both as
    // the active segment and as a sealed one.
    let mut segment = frame::encode_header(folddb_log::LogIndex(1)).to_vec();
    segment.extend_from_slice(data);
    for sealed in [false, true] {
        let Ok(s) = scan::scan_segment(&segment, sealed, 1 << 20) else {
            panic!("a valid header must scan");
        };
        assert!(s.end as usize <= segment.len());
        // Every frame it kept decodes in place with the index it claims.
        for (k, off) in s.offsets.iter().enumerate() {
            match frame::decode_frame(&segment[*off as usize..], 1 << 20) {
                Decoded::Frame(f) => assert_eq!(f.index.0, 1 + k as u64),
                other => panic!("kept frame at {off} does not decode: {other:?}"),
            }
        }
        if sealed {
            assert!(!matches!(s.tail, Tail::Torn { .. }), "a sealed segment is never torn");
        }
    }
});
