//! The materializer's value codec: one version byte, then bincode 2.0.1 in the same pinned
//! configuration as `cluster/FORMAT.md` (standard, little-endian, varint, 1 GiB decode
//! limit). Used for events, results, catalog entries and row versions
//! (`materializer/FORMAT.md`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The codec version written today.
pub const VERSION: u8 = 1;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<{ 1 << 30 }>()
}

/// `value` as bytes: [`VERSION`], then bincode.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![VERSION];
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .expect("serde types of this crate always encode into a Vec");
    out
}

/// The value the start of `bytes` encodes (a struct's leading fields: the rest is not
/// read); `what` names it in the error. Refuses another version and a truncated body.
pub fn decode_head<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T> {
    match bytes.split_first() {
        Some((&VERSION, body)) => bincode::serde::decode_from_slice(body, config())
            .map(|(value, _)| value)
            .map_err(|e| Error::Decode {
                what,
                reason: e.to_string(),
            }),
        Some((v, _)) => Err(Error::Decode {
            what,
            reason: format!("unknown codec version {v}"),
        }),
        None => Err(Error::Decode {
            what,
            reason: "empty".into(),
        }),
    }
}

/// The value `bytes` encode; `what` names it in the error. Refuses another version, a
/// truncated body and trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T> {
    let bad = |reason: String| Error::Decode { what, reason };
    match bytes.split_first() {
        Some((&VERSION, body)) => {
            let (value, used) = bincode::serde::decode_from_slice(body, config())
                .map_err(|e| bad(e.to_string()))?;
            if used != body.len() {
                return Err(bad(format!("{} trailing bytes", body.len() - used)));
            }
            Ok(value)
        }
        Some((v, _)) => Err(bad(format!("unknown codec version {v}"))),
        None => Err(bad("empty".into())),
    }
}
