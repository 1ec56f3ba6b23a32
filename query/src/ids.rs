//! Generated ids, resolved by the planner before a write is proposed (apply never generates
//! anything): `SNOWFLAKE_ID()`, `UUID_V7()`, `ULID()` (API.md 3.6).

use std::sync::atomic::{AtomicU64, Ordering};

use folddb_materializer::seq::SEQ_EPOCH_UNIX_MS;

/// Snowflake ids: 41 bits of ms since 2024-01-01, 10 bits of node id, 12 bits of sequence.
/// Strictly increasing within one process, even when the clock steps back.
#[derive(Debug)]
pub struct SnowflakeIds {
    node: u64,
    last: AtomicU64,
}

impl SnowflakeIds {
    pub fn new(node: u16) -> SnowflakeIds {
        SnowflakeIds {
            node: u64::from(node & 0x3ff),
            last: AtomicU64::new(0),
        }
    }

    pub fn next(&self, now_unix_ms: u64) -> i64 {
        let ms = now_unix_ms.saturating_sub(SEQ_EPOCH_UNIX_MS);
        let candidate = (ms << 22) | (self.node << 12);
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let next = if candidate > prev {
                candidate
            } else {
                // Same millisecond (or a clock step back): the next sequence number. Past
                // 4096 per millisecond this carries into the node bits' neighbour, which only
                // runs the id's time slightly ahead; uniqueness and order hold.
                prev + 1
            };
            match self
                .last
                .compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next as i64,
                Err(p) => prev = p,
            }
        }
    }
}

/// A UUID version 7 (RFC 9562), hyphenated.
pub fn uuid_v7() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

/// A ULID: 26 characters of Crockford base32.
pub fn ulid() -> String {
    ulid::Ulid::new().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snowflakes_increase_and_encode_their_time() {
        let ids = SnowflakeIds::new(1);
        let a = ids.next(SEQ_EPOCH_UNIX_MS + 1000);
        let b = ids.next(SEQ_EPOCH_UNIX_MS + 1000);
        let c = ids.next(SEQ_EPOCH_UNIX_MS + 999);
        assert!(a < b && b < c);
        assert_eq!(
            (a >> 22) as u64 + SEQ_EPOCH_UNIX_MS,
            SEQ_EPOCH_UNIX_MS + 1000
        );
        assert_eq!(uuid_v7().len(), 36);
        assert_eq!(ulid().len(), 26);
    }
}
