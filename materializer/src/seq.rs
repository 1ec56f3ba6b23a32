//! `_seq`: the id of a row version, derived from the log so that every replica and every
//! replay assigns the same value (DESIGN.md, "Identity and order"; API.md 4.2).
//!
//! Layout (the reference's Snowflake layout): milliseconds since 2024-01-01T00:00:00Z shifted
//! left 22 bits, plus a 22-bit counter. The leader stamps each entry with its clock when it
//! proposes; apply turns the stamp into `_seq` values with [`SeqClock`], in log order, forcing
//! every value to be greater than the one before. No clock is read at apply.

/// Unix time of the Snowflake epoch, 2024-01-01T00:00:00Z, in milliseconds.
pub const SEQ_EPOCH_UNIX_MS: u64 = 1_704_067_200_000;
/// Bits below the millisecond part.
pub const COUNTER_BITS: u32 = 22;
/// The largest millisecond offset that keeps a `_seq` positive in a BIGINT (41 bits).
const MAX_MS: u64 = (1 << 41) - 1;

/// A row version's `_seq` (a BIGINT on the wire; never negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub i64);

impl Seq {
    /// The first `_seq` of the millisecond `unix_ms` (clamped to the epoch and to 41 bits).
    pub fn at_unix_ms(unix_ms: u64) -> Seq {
        let ms = unix_ms.saturating_sub(SEQ_EPOCH_UNIX_MS).min(MAX_MS);
        Seq((ms << COUNTER_BITS) as i64)
    }

    /// The write time this `_seq` encodes: `(_seq >> 22) + 1704067200000`.
    pub fn unix_ms(self) -> u64 {
        ((self.0 as u64) >> COUNTER_BITS) + SEQ_EPOCH_UNIX_MS
    }
}

impl std::fmt::Display for Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Assigns `_seq` values in log order. Its whole state is the last value assigned; stored in
/// the same batch as the applied index (wired in with the event schema, issue #3), it lets a
/// replay resume with exactly the values the first run assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeqClock {
    last: Option<Seq>,
}

impl SeqClock {
    /// A clock that continues after `last` (`None` before the first version ever).
    pub fn resume(last: Option<Seq>) -> SeqClock {
        SeqClock { last }
    }

    /// The last value assigned.
    pub fn last(&self) -> Option<Seq> {
        self.last
    }

    /// The `_seq` of the next version, written by an entry the leader stamped `stamp_unix_ms`.
    ///
    /// It is the stamp's millisecond when that is later than everything assigned so far, and
    /// otherwise one more than the last value: a leader change to a node with a slower clock,
    /// or more versions in one millisecond, never makes `_seq` go backwards or repeat. (Past
    /// 2^22 versions within one millisecond the counter carries into the millisecond part, so
    /// the encoded time runs slightly ahead; order and uniqueness hold regardless.)
    pub fn next(&mut self, stamp_unix_ms: u64) -> Seq {
        let candidate = Seq::at_unix_ms(stamp_unix_ms);
        let seq = match self.last {
            Some(last) if candidate <= last => Seq(last.0 + 1),
            _ => candidate,
        };
        self.last = Some(seq);
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_matches_the_api() {
        let t = SEQ_EPOCH_UNIX_MS + 123_456;
        let s = Seq::at_unix_ms(t);
        assert_eq!(s.0, 123_456 << 22);
        assert_eq!(s.unix_ms(), t);
        // API.md: time of write = (_seq >> 22) + 1704067200000.
        assert_eq!(((s.0 >> 22) as u64) + 1_704_067_200_000, t);
        assert_eq!(
            Seq::at_unix_ms(0),
            Seq(0),
            "stamps before the epoch clamp to it"
        );
        assert!(Seq::at_unix_ms(u64::MAX).0 > 0, "never negative");
    }

    #[test]
    fn same_millisecond_counts_up_and_slow_clocks_do_not_go_back() {
        let mut c = SeqClock::default();
        let base = SEQ_EPOCH_UNIX_MS + 1_000;
        let a = c.next(base);
        let b = c.next(base);
        let d = c.next(base - 500); // a new leader with a slower clock
        let e = c.next(base + 1);
        assert_eq!(b.0, a.0 + 1);
        assert_eq!(d.0, b.0 + 1);
        assert!(e > d);
        assert_eq!(e, Seq::at_unix_ms(base + 1));
        assert_eq!(c.last(), Some(e));
    }

    proptest! {
        /// Any stamps, in any order: strictly increasing, deterministic, and resumable from
        /// the stored last value with the same results (what replay relies on).
        #[test]
        fn strictly_increasing_deterministic_and_resumable(
            stamps in proptest::collection::vec(0u64..SEQ_EPOCH_UNIX_MS * 2, 1..200),
            split in any::<proptest::sample::Index>(),
        ) {
            let mut c = SeqClock::default();
            let seqs: Vec<Seq> = stamps.iter().map(|s| c.next(*s)).collect();
            prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(seqs.iter().all(|s| s.0 >= 0));

            let mut again = SeqClock::default();
            let replayed: Vec<Seq> = stamps.iter().map(|s| again.next(*s)).collect();
            prop_assert_eq!(&replayed, &seqs);

            let k = split.index(stamps.len());
            let mut resumed = SeqClock::resume(if k == 0 { None } else { Some(seqs[k - 1]) });
            let tail: Vec<Seq> = stamps[k..].iter().map(|s| resumed.next(*s)).collect();
            prop_assert_eq!(&tail[..], &seqs[k..]);
        }

        /// With a clock that never goes back and under 2^22 versions per millisecond, the
        /// encoded time is the stamp itself.
        #[test]
        fn monotone_stamps_encode_their_time(
            deltas in proptest::collection::vec(0u64..5, 1..200),
        ) {
            let mut c = SeqClock::default();
            let mut t = SEQ_EPOCH_UNIX_MS + 10_000;
            for d in deltas {
                t += d;
                prop_assert_eq!(c.next(t).unix_ms(), t);
            }
        }
    }
}
