//! Small metadata files replaced atomically: the purge marker now, raft's vote later.
//! Layout and replacement protocol: `log/FORMAT.md`, "Metadata files".

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::frame::{read_u32, read_u64};
use crate::storage::{Storage, read_all};
use crate::{LogIndex, Term};

pub const META_MAGIC: [u8; 8] = *b"FOLDMETA";
pub const META_VERSION: u32 = 1;
const META_HEADER_BYTES: usize = 20;
/// Metadata files are small by design; anything larger is damage.
const META_MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Name of the purge marker in the log directory.
pub const PURGE_MARKER: &str = "purged.meta";

/// Encodes a metadata file.
pub fn encode_meta(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("metadata payloads are small");
    let mut out = Vec::with_capacity(META_HEADER_BYTES + payload.len());
    out.extend_from_slice(&META_MAGIC);
    out.extend_from_slice(&META_VERSION.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Decodes a metadata file's bytes; `file` names it in errors.
pub fn decode_meta(bytes: &[u8], file: &Path) -> Result<Vec<u8>> {
    let bad = |reason: &str| Error::BadMetaFile {
        file: file.to_path_buf(),
        reason: reason.to_owned(),
    };
    if bytes.len() < META_HEADER_BYTES || bytes[0..8] != META_MAGIC {
        return Err(bad("missing FOLDMETA header"));
    }
    let version = read_u32(bytes, 8);
    if version != META_VERSION {
        return Err(Error::UnsupportedVersion {
            file: file.to_path_buf(),
            found: version,
            supported: META_VERSION,
        });
    }
    let len = read_u32(bytes, 12) as usize;
    if len > META_MAX_PAYLOAD_BYTES || bytes.len() != META_HEADER_BYTES + len {
        return Err(bad("length field does not match the file size"));
    }
    let payload = &bytes[META_HEADER_BYTES..];
    if crc32fast::hash(payload) != read_u32(bytes, 16) {
        return Err(bad("checksum mismatch"));
    }
    Ok(payload.to_vec())
}

/// Replaces `dir/name` with `payload`: write `name.tmp`, fsync, rename, fsync the directory.
/// A crash at any point leaves either the old file or the new one.
pub fn write_meta(storage: &dyn Storage, dir: &Path, name: &str, payload: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp: PathBuf = dir.join(format!("{name}.tmp"));
    let f = storage.create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all_at(&encode_meta(payload), 0)
        .map_err(|e| Error::io(&tmp, e))?;
    f.sync_data().map_err(|e| Error::io(&tmp, e))?;
    storage
        .rename(&tmp, &path)
        .map_err(|e| Error::io(&path, e))?;
    storage.sync_dir(dir).map_err(|e| Error::io(dir, e))
}

/// Reads `dir/name`; `None` if it does not exist.
pub fn read_meta(storage: &dyn Storage, dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    if !storage.exists(&path).map_err(|e| Error::io(&path, e))? {
        return Ok(None);
    }
    let f = storage.open(&path).map_err(|e| Error::io(&path, e))?;
    let bytes = read_all(f.as_ref()).map_err(|e| Error::io(&path, e))?;
    decode_meta(&bytes, &path).map(Some)
}

/// The purge marker's payload: every index up to and including `index` is logically gone.
pub fn encode_purge(index: LogIndex, term: Term) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&index.0.to_le_bytes());
    b[8..16].copy_from_slice(&term.0.to_le_bytes());
    b
}

pub fn decode_purge(payload: &[u8], file: &Path) -> Result<(LogIndex, Term)> {
    if payload.len() != 16 {
        return Err(Error::BadMetaFile {
            file: file.to_path_buf(),
            reason: format!(
                "purge marker payload is {} bytes, expected 16",
                payload.len()
            ),
        });
    }
    Ok((LogIndex(read_u64(payload, 0)), Term(read_u64(payload, 8))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStorage;

    #[test]
    fn golden_meta_bytes_and_round_trip() {
        let bytes = encode_meta(b"hi");
        let mut expected = b"FOLDMETA".to_vec();
        expected.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
        expected.extend_from_slice(&crc32fast::hash(b"hi").to_le_bytes());
        expected.extend_from_slice(b"hi");
        assert_eq!(bytes, expected);
        assert_eq!(decode_meta(&bytes, Path::new("x")).unwrap(), b"hi");
    }

    #[test]
    fn damaged_meta_is_refused() {
        let mut bytes = encode_meta(b"hello");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        assert!(matches!(
            decode_meta(&bytes, Path::new("x")),
            Err(Error::BadMetaFile { .. })
        ));
        assert!(decode_meta(&bytes[..10], Path::new("x")).is_err());
    }

    #[test]
    fn write_then_read_replaces_atomically() {
        let s = MemStorage::new();
        let dir = Path::new("/d");
        assert_eq!(read_meta(&s, dir, "m").unwrap(), None);
        write_meta(&s, dir, "m", b"one").unwrap();
        write_meta(&s, dir, "m", b"two").unwrap();
        assert_eq!(
            read_meta(&s, dir, "m").unwrap().as_deref(),
            Some(&b"two"[..])
        );
        assert!(!s.exists(&dir.join("m.tmp")).unwrap());
    }
}
