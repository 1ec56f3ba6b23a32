//! Fuzzes `/v1/ws` client messages after authentication: a text (JSON) or binary
//! (MessagePack, maybe gzip'ed) frame is decoded, and what decodes is handled by a session
//! over the real engine (subscriptions with any SQL and options, next-batch, unsubscribe).
//! No input may panic or hang; a refused frame carries its close reason.
//! Run: `cd bin/fuzz && cargo fuzz run -s none ws` (see README, "Development").

#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::{Arc, OnceLock};

use folddb_realtime::{ClientMessage, Hub, Registry, Session, Wire};
use libfuzzer_sys::fuzz_target;

/// Largest inflated frame, as the server's default.
const MAX_FRAME: usize = 1 << 20;

fn live() -> &'static (Arc<Registry>, Arc<Hub>) {
    static LIVE: OnceLock<(Arc<Registry>, Arc<Hub>)> = OnceLock::new();
    LIVE.get_or_init(|| (Arc::new(Registry::new(1, 10)), Arc::new(Hub::new(64))))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, frame)) = data.split_first() else {
        return;
    };
    let msgpack = mode & 0x80 != 0;
    let decoded = if msgpack {
        Wire {
            msgpack: true,
            gzip: true,
        }
        .decode_binary(frame, MAX_FRAME)
    } else {
        ClientMessage::parse(&String::from_utf8_lossy(frame))
    };
    let msg = match decoded {
        Ok(msg) => msg,
        Err(reason) => {
            assert!(reason.starts_with("Invalid message"), "{reason}");
            return;
        }
    };
    let fx = common::fixture();
    let (registry, hub) = live();
    let (connection, _kills) = registry.connect();
    let (mut session, _inbox) = Session::new(registry.clone(), hub.clone(), connection);
    session.authenticated(common::caller(mode), Wire::default().protocol());
    // The message, then the same again (a second subscribe with the same id, a next-batch
    // after the first): what a client may send twice.
    for _ in 0..2 {
        let sent = fx
            .runtime
            .block_on(session.handle(&fx.engine, msg.clone()));
        for out in sent {
            if let folddb_realtime::session::Outgoing::Json(j) = out {
                assert!(j.get("type").is_some(), "a server message without a type: {j}");
            }
        }
    }
});
