//! Retention of topic messages (`materializer/FORMAT.md`, "`topics`"): where a trim may
//! cut a partition, by age and by bytes, and the trim itself.

use super::*;

/// Removes the messages, and the byte marks, of a partition below offset `before`.
pub fn trim(batch: &mut HotBatch, id: &str, partition: u32, before: u64) {
    batch.delete_range(
        Family::Topics,
        message_key(id, partition, 0),
        message_key(id, partition, before),
    );
    batch.delete_range(
        Family::Topics,
        mark_key(id, partition, 0),
        mark_key(id, partition, before),
    );
}

/// Where a trim must cut partition `partition` of topic `def` so that it holds at most
/// `max_bytes` of messages (the newest): `None` when it does already. Exact: the byte marks
/// (at most [`MARK_BYTES`] apart) bound it, and the messages between two marks settle it;
/// reads at most `limit` messages, cutting short of the goal past them (the next round
/// goes on).
pub fn oversize_before(
    store: &crate::HotStore,
    def: &TopicDef,
    partition: u32,
    max_bytes: u64,
    limit: usize,
) -> crate::Result<Option<u64>> {
    let id = &def.id;
    let (head, total) = head_and_bytes(store, id, partition)?;
    let prefix = partition_prefix(id, partition);
    let Some(first) = store
        .scan_range(Family::Topics, &prefix, &prefix, 1)?
        .first()
        .and_then(|(k, _)| offset_of(k))
    else {
        return Ok(None);
    };
    // The marks at or after the first message: (offset, bytes before it).
    let mark_prefix = {
        let mut p = topic_prefix(MARK, id);
        p.extend_from_slice(&partition.to_be_bytes());
        p
    };
    let marks: Vec<(u64, u64)> = store
        .scan_range(
            Family::Topics,
            &mark_key(id, partition, first),
            &mark_prefix,
            usize::MAX,
        )?
        .into_iter()
        .filter_map(|(k, v)| {
            let bytes = <[u8; 8]>::try_from(v.as_slice()).ok()?;
            Some((offset_of(&k)?, u64::from_be_bytes(bytes)))
        })
        .collect();
    // Start from the last mark that still leaves too much (none: from the first message,
    // whose byte position the next mark, or the head, gives).
    let held_after = |before_bytes: u64| total.saturating_sub(before_bytes);
    let (mut at, mut before_bytes) =
        match marks.iter().rev().find(|(_, b)| held_after(*b) > max_bytes) {
            Some(&(o, b)) => (o, b),
            None => {
                let (next, next_bytes) = marks.first().copied().unwrap_or((head, total));
                let between: u64 = store
                    .scan_range(
                        Family::Topics,
                        &message_key(id, partition, first),
                        &prefix,
                        limit,
                    )?
                    .into_iter()
                    .take_while(|(k, _)| offset_of(k).is_some_and(|o| o < next))
                    .map(|(_, v)| v.len() as u64)
                    .sum();
                (first, next_bytes.saturating_sub(between))
            }
        };
    if at == first && held_after(before_bytes) <= max_bytes {
        return Ok(None);
    }
    for (k, v) in store.scan_range(
        Family::Topics,
        &message_key(id, partition, at),
        &prefix,
        limit,
    )? {
        if held_after(before_bytes) <= max_bytes {
            break;
        }
        let Some(o) = offset_of(&k) else { break };
        before_bytes += v.len() as u64;
        at = o + 1;
    }
    Ok((at > first).then_some(at))
}

/// The offset below which partition `partition` of topic `def` holds only messages older
/// than `cutoff_ms` (its retention): where a trim may cut. Reads at most `limit` messages.
pub fn expired_before(
    store: &crate::HotStore,
    def: &TopicDef,
    partition: u32,
    cutoff_ms: u64,
    limit: usize,
) -> crate::Result<Option<u64>> {
    let prefix = partition_prefix(&def.id, partition);
    let found = store.scan_range(Family::Topics, &prefix, &prefix, limit)?;
    let mut before = None;
    for (k, v) in found {
        let m: Message = codec::decode(&v, "a topic message")?;
        if m.timestamp_ms >= cutoff_ms {
            break;
        }
        before = offset_of(&k).map(|o| o + 1);
    }
    Ok(before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use folddb_log::{LogIndex, Term};
    use proptest::prelude::*;

    fn def() -> TopicDef {
        TopicDef {
            id: "app.feed".into(),
            partitions: 1,
            retention_seconds: DEFAULT_RETENTION_SECONDS,
            retention_max_bytes: DEFAULT_RETENTION_BYTES,
            routes: Vec::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
            max_deliveries: None,
            dead_letter: None,
        }
    }

    /// A store whose partition 0 had messages of payloads `sizes` long, then lost those
    /// below `trimmed` (a trim by age, anywhere).
    fn partition(sizes: &[usize], trimmed: u64) -> (tempfile::TempDir, crate::HotStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = crate::HotStore::open(dir.path()).expect("open");
        let def = def();
        let mut index = 0;
        let mut apply = |batch: HotBatch| {
            index += 1;
            store.apply(LogIndex(index), Term(1), batch).expect("apply");
        };
        for (i, n) in sizes.iter().enumerate() {
            let message = Message {
                table: "app.t".into(),
                op: RouteOp::Insert,
                key: Some("k".into()),
                payload: vec![b'x'; *n],
                user: None,
                timestamp_ms: i as u64,
                index: i as u64,
            };
            let mut batch = HotBatch::default();
            for (k, v) in publish(&store, &def, &message).expect("publish") {
                batch.put(Family::Topics, k, v);
            }
            apply(batch);
        }
        let mut batch = HotBatch::default();
        trim(&mut batch, &def.id, 0, trimmed);
        apply(batch);
        (dir, store)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// The cut is exactly the first offset from which the partition's messages fit in
        /// the limit, whatever the marks and earlier trims.
        #[test]
        fn a_byte_limit_cuts_at_the_first_offset_that_fits(
            sizes in proptest::collection::vec(0usize..40_000, 1..120),
            trim_at in 0usize..120,
            max_bytes in 1u64..2_000_000,
        ) {
            let trimmed = (trim_at % (sizes.len() + 1)) as u64;
            let (_dir, store) = partition(&sizes, trimmed);
            let prefix = partition_prefix("app.feed", 0);
            let held: Vec<(u64, u64)> = store
                .scan_range(Family::Topics, &prefix, &prefix, usize::MAX)
                .expect("scan")
                .into_iter()
                .map(|(k, v)| (offset_of(&k).expect("offset"), v.len() as u64))
                .collect();
            prop_assert_eq!(held.first().map(|h| h.0), (trimmed < sizes.len() as u64).then_some(trimmed));
            let fits = |from: u64| held.iter().filter(|h| h.0 >= from).map(|h| h.1).sum::<u64>() <= max_bytes;
            let want = match held.first() {
                Some(&(first, _)) if !fits(first) => {
                    (first..=sizes.len() as u64).find(|c| fits(*c))
                }
                _ => None,
            };
            let got = oversize_before(&store, &def(), 0, max_bytes, usize::MAX).expect("cut");
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn the_head_counts_the_bytes_of_every_message_and_marks_follow_them() {
        let (_dir, store) = partition(&[70_000, 10, 70_000], 0);
        let (next, bytes) = head_and_bytes(&store, "app.feed", 0).expect("head");
        assert_eq!(next, 3);
        let prefix = partition_prefix("app.feed", 0);
        let stored: u64 = store
            .scan_range(Family::Topics, &prefix, &prefix, usize::MAX)
            .expect("scan")
            .iter()
            .map(|(_, v)| v.len() as u64)
            .sum();
        assert_eq!(bytes, stored);
        // Each 70,000-byte message passes a multiple of 64 KiB: marks at offsets 1 and 3.
        let marks = store
            .scan_prefix(Family::Topics, &topic_prefix(MARK, "app.feed"))
            .expect("marks");
        let at: Vec<u64> = marks.iter().filter_map(|(k, _)| offset_of(k)).collect();
        assert_eq!(at, [1, 3]);
    }
}
