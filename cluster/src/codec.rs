//! The bytes a raft entry and the vote occupy on disk: bincode 2.0.1 with an explicit,
//! pinned configuration (`cluster/FORMAT.md`). The frame around an entry (term, index,
//! checksum) is `folddb-log`'s; this is only its payload.

use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, StoredMembership, Vote};

use crate::TypeConfig;
use crate::error::{Error, Result};

/// Version byte that opens every encoded entry payload and vote.
pub const CODEC_VERSION: u8 = 1;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<{ 1 << 30 }>()
}

/// The version byte, then `value` in the pinned bincode configuration.
fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![CODEC_VERSION];
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .expect("encoding into a Vec cannot fail");
    out
}

/// The inverse of [`encode`]: refuses a wrong version, a short body and trailing bytes.
fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, String> {
    let (version, body) = bytes.split_first().ok_or("empty")?;
    if *version != CODEC_VERSION {
        return Err(format!("codec version {version}, expected {CODEC_VERSION}"));
    }
    let (value, used): (T, usize) =
        bincode::serde::decode_from_slice(body, config()).map_err(|e| e.to_string())?;
    if used != body.len() {
        return Err(format!("{} trailing bytes", body.len() - used));
    }
    Ok(value)
}

/// Encodes an entry's payload (its log id lives in the frame).
/// A raft RPC's request or answer between nodes (`cluster/FORMAT.md`): the same version byte
/// and bincode configuration as the entries the log stores.
pub fn encode_message<T: serde::Serialize>(value: &T) -> Vec<u8> {
    encode(value)
}

/// The inverse of [`encode_message`]; the error says why the bytes are not a `T`.
pub fn decode_message<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> std::result::Result<T, String> {
    decode(bytes)
}

pub fn encode_payload(payload: &EntryPayload<TypeConfig>) -> Vec<u8> {
    encode(payload)
}

/// The log payload of a normal entry carrying `command` (the materializer's entry bytes):
/// what a node appends for a proposal, for tools that write logs directly.
pub fn encode_command(command: Vec<u8>) -> Vec<u8> {
    encode_payload(&EntryPayload::Normal(crate::Command(command)))
}

/// The log payload of a blank entry (no command): what a log's first entry, index 0, may
/// be, for tools that write logs directly.
pub fn encode_blank() -> Vec<u8> {
    encode_payload(&EntryPayload::Blank)
}

/// Rebuilds an entry from its frame's term and index and its payload bytes.
pub fn decode_entry(term: u64, index: u64, bytes: &[u8]) -> Result<Entry<TypeConfig>> {
    let payload = decode(bytes).map_err(|reason| Error::BadEntry { index, reason })?;
    Ok(Entry {
        log_id: log_id(term, index),
        payload,
    })
}

/// The log id of `(term, index)`; the node id is not part of it (`single-term-leader`).
pub fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 0), index)
}

pub fn encode_vote(vote: &Vote<u64>) -> Vec<u8> {
    encode(vote)
}

pub fn decode_vote(bytes: &[u8], file: &std::path::Path) -> Result<Vote<u64>> {
    decode(bytes).map_err(|reason| Error::BadVote {
        file: file.to_path_buf(),
        reason,
    })
}

/// Encodes a snapshot's description (its `.meta` file beside the snapshot file).
pub fn encode_snapshot_meta(meta: &openraft::SnapshotMeta<u64, BasicNode>) -> Vec<u8> {
    encode(meta)
}

pub fn decode_snapshot_meta(bytes: &[u8]) -> Result<openraft::SnapshotMeta<u64, BasicNode>> {
    decode(bytes).map_err(|reason| Error::BadSnapshot {
        reason: format!("snapshot description: {reason}"),
    })
}

/// Encodes raft's stored membership (kept in the hot tier's `meta` family).
pub fn encode_membership(m: &StoredMembership<u64, BasicNode>) -> Vec<u8> {
    encode(m)
}

pub fn decode_membership(bytes: &[u8]) -> Result<StoredMembership<u64, BasicNode>> {
    decode(bytes).map_err(|reason| Error::BadSnapshot {
        reason: format!("stored membership: {reason}"),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::Membership;

    use super::*;
    use crate::Command;

    #[test]
    fn payloads_round_trip() {
        let payloads = [
            EntryPayload::<TypeConfig>::Blank,
            EntryPayload::Normal(Command(b"insert".to_vec())),
            EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1, 2, 3])], None)),
        ];
        for p in payloads {
            let bytes = encode_payload(&p);
            let e = decode_entry(4, 9, &bytes).unwrap();
            assert_eq!(e.log_id, log_id(4, 9));
            assert_eq!(format!("{:?}", e.payload), format!("{p:?}"));
        }
    }

    #[test]
    fn golden_normal_payload_bytes() {
        // version 1, variant 1 (Normal), varint length 3, the bytes.
        let bytes = encode_payload(&EntryPayload::Normal(Command(b"abc".to_vec())));
        assert_eq!(bytes, [1, 1, 3, b'a', b'b', b'c']);
    }

    #[test]
    fn damaged_payloads_are_errors_not_panics() {
        let good = encode_payload(&EntryPayload::Normal(Command(vec![7; 40])));
        assert!(decode_entry(1, 1, &[]).is_err());
        assert!(decode_entry(1, 1, &[2, 0]).is_err());
        for cut in 1..good.len() {
            assert!(decode_entry(1, 1, &good[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(decode_entry(1, 1, &long).is_err());
        // A huge claimed length is refused by the limit, not allocated.
        assert!(decode_entry(1, 1, &[1, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]).is_err());
    }

    #[test]
    fn votes_round_trip() {
        let v = Vote::new(7, 3);
        let bytes = encode_vote(&v);
        assert_eq!(decode_vote(&bytes, std::path::Path::new("v")).unwrap(), v);
        assert!(decode_vote(&bytes[..bytes.len() - 1], std::path::Path::new("v")).is_err());
    }
}
