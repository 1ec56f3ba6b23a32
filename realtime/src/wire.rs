//! Framing of `/v1/ws` (API.md 2.2): JSON text frames, or MessagePack binary frames once a
//! connection asked for them; server messages of 512 bytes or more gzip'ed into a binary
//! frame when that makes them smaller, unless the connection turned compression off.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde_json::Value as Json;

use crate::session::ClientMessage;

/// Server messages this long or longer are gzip'ed (when that makes them smaller).
pub const GZIP_THRESHOLD: usize = 512;
/// The gzip magic bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// One frame to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

/// How one connection frames its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire {
    pub msgpack: bool,
    pub gzip: bool,
}

impl Default for Wire {
    /// JSON, compression on: the reference's default.
    fn default() -> Wire {
        Wire {
            msgpack: false,
            gzip: true,
        }
    }
}

impl Wire {
    /// The `protocol` object of `auth_success`.
    pub fn protocol(&self) -> Json {
        serde_json::json!({
            "serialization": if self.msgpack { "msgpack" } else { "json" },
            "compression": if self.gzip { "gzip" } else { "none" },
        })
    }

    /// A server message as the frame to send.
    pub fn encode(&self, msg: &Json) -> Frame {
        if !self.msgpack {
            return self.encode_text(&msg.to_string());
        }
        match rmp_serde::to_vec_named(msg) {
            Ok(b) => Frame::Binary(self.squeeze(&b).unwrap_or(b)),
            // A JSON value always encodes; should it not, the client still gets it.
            Err(_) => Frame::Text(msg.to_string()),
        }
    }

    /// A server message already encoded as JSON text (shared between connections).
    pub fn encode_text(&self, text: &str) -> Frame {
        if self.msgpack {
            return match serde_json::from_str::<Json>(text) {
                Ok(j) => self.encode(&j),
                Err(_) => Frame::Text(text.to_owned()),
            };
        }
        match self.squeeze(text.as_bytes()) {
            Some(z) => Frame::Binary(z),
            None => Frame::Text(text.to_owned()),
        }
    }

    /// `bytes` gzip'ed, when compression is on, they are long enough and it makes them
    /// smaller.
    fn squeeze(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        if !self.gzip || bytes.len() < GZIP_THRESHOLD {
            return None;
        }
        gzip(bytes).filter(|z| z.len() < bytes.len())
    }

    /// A binary client frame: MessagePack (maybe gzip'ed) on a msgpack connection. The
    /// error is the close reason of API.md 2.2.
    pub fn decode_binary(&self, bytes: &[u8], max: usize) -> crate::Result<ClientMessage> {
        let invalid = |reason| crate::Error::InvalidMessage { reason };
        let plain;
        let body = if bytes.starts_with(&GZIP_MAGIC) {
            plain = gunzip(bytes, max).map_err(invalid)?;
            plain.as_slice()
        } else {
            bytes
        };
        rmp_serde::from_slice(body).map_err(|e| invalid(e.to_string()))
    }
}

fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut z = GzEncoder::new(Vec::with_capacity(bytes.len() / 4), Compression::fast());
    z.write_all(bytes).ok()?;
    z.finish().ok()
}

/// Inflates at most `max` bytes: a small frame must not become a huge message.
fn gunzip(bytes: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    GzDecoder::new(bytes)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip: {e}"))?;
    if out.len() > max {
        return Err("inflates past the frame limit".into());
    }
    Ok(out)
}

/// Decodes a server frame as a client does: text is JSON; binary is gzip'ed JSON, or
/// MessagePack (maybe gzip'ed) on a msgpack connection.
pub fn decode_server_frame(binary: bool, bytes: &[u8], msgpack: bool) -> Result<Json, String> {
    let plain;
    let body = if binary && bytes.starts_with(&GZIP_MAGIC) {
        plain = gunzip(bytes, usize::MAX - 1).map_err(|r| format!("Invalid message: {r}"))?;
        plain.as_slice()
    } else {
        bytes
    };
    if msgpack && binary {
        rmp_serde::from_slice(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    proptest! {
        /// Whatever a client sends — text, MessagePack, gzip'ed or not — decoding gives a
        /// message or an error, never a panic.
        #[test]
        fn any_client_frame_decodes_or_is_refused(
            text in ".{0,200}",
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            gzip in any::<bool>(),
        ) {
            let _ = crate::ClientMessage::parse(&text);
            let wire = Wire { msgpack: true, gzip: false };
            let mut framed = bytes.clone();
            if gzip {
                framed.splice(0..0, GZIP_MAGIC);
            }
            let _ = wire.decode_binary(&framed, 1 << 20);
        }

        /// Near-misses of real messages: every field shape the parser might trip on.
        #[test]
        fn near_valid_messages_decode_or_are_refused(
            kind in prop_oneof![Just("subscribe"), Just("next_batch"), Just("unsubscribe"),
                                Just("authenticate"), Just("ping"), Just("bogus")],
            field in prop_oneof![Just("subscription"), Just("subscription_id"), Just("token"),
                                 Just("options"), Just("last_seq_id")],
            value in prop_oneof![Just(json!(null)), Just(json!(-1)), Just(json!(1e300)),
                                 Just(json!("x")), Just(json!([1, 2])),
                                 Just(json!({"id": "s", "sql": "SELECT 1",
                                             "options": {"batch_size": -5, "from": "x"}}))],
        ) {
            let m = json!({"type": kind, field: value});
            let _ = crate::ClientMessage::parse(&m.to_string());
            if let Ok(b) = rmp_serde::to_vec_named(&m) {
                let _ = Wire { msgpack: true, gzip: false }.decode_binary(&b, 1 << 20);
            }
        }
    }

    fn big() -> Json {
        let rows: Vec<Json> = (0..50)
            .map(|i| json!({"id": i.to_string(), "title": "the same words again"}))
            .collect();
        json!({"type": "initial_data_batch", "subscription_id": "s", "rows": rows})
    }

    #[test]
    fn small_messages_stay_text_and_large_ones_are_gzipped() {
        let w = Wire::default();
        let small = json!({"type": "change", "subscription_id": "s"});
        assert_eq!(w.encode(&small), Frame::Text(small.to_string()));
        let Frame::Binary(z) = w.encode(&big()) else {
            panic!("a large message is gzipped")
        };
        assert!(z.starts_with(&GZIP_MAGIC));
        assert!(z.len() < big().to_string().len());
        assert_eq!(decode_server_frame(true, &z, false), Ok(big()));
        let off = Wire {
            gzip: false,
            ..Wire::default()
        };
        assert_eq!(off.encode(&big()), Frame::Text(big().to_string()));
    }

    #[test]
    fn msgpack_round_trips_both_ways() {
        let w = Wire {
            msgpack: true,
            gzip: false,
        };
        let Frame::Binary(b) = w.encode(&big()) else {
            panic!("msgpack is binary")
        };
        assert_eq!(decode_server_frame(true, &b, true), Ok(big()));
        let ping = rmp_serde::to_vec_named(&json!({"type": "ping"})).expect("encodes");
        assert_eq!(w.decode_binary(&ping, 1 << 20), Ok(ClientMessage::Ping));
        let z = gzip(&ping).expect("gzip");
        assert_eq!(w.decode_binary(&z, 1 << 20), Ok(ClientMessage::Ping));
        assert!(w.decode_binary(b"\x93garbage", 1 << 20).is_err());
    }

    #[test]
    fn a_gzip_bomb_is_refused() {
        let z = gzip(&vec![b' '; 10_000]).expect("gzip");
        let w = Wire {
            msgpack: true,
            gzip: true,
        };
        assert!(w.decode_binary(&z, 1000).is_err());
    }
}
