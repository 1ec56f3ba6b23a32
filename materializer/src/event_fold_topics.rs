//! The fold of the topic ops (API.md 3.12, 4.5; `materializer/FORMAT.md`, "`topics`"):
//! topic DDL, consumer groups' claims and acknowledgements, dead letters and retention.

use super::*;

/// The topic ops (API.md 3.12).
pub(super) fn topic_op(ctx: &mut Ctx<'_>, op: &Op) -> Result<OpResult, OpError> {
    use crate::topics::{self, GroupOffset, TopicDef};
    let existing = |ctx: &Ctx<'_>, id: &str| -> Result<TopicDef, OpError> {
        topics::topic(&ctx.state(), id)?.ok_or_else(|| not_found(format!("Topic '{id}' not found")))
    };
    match op {
        Op::CreateTopic {
            id,
            partitions,
            if_not_exists,
            max_deliveries,
            dead_letter,
            retention_seconds,
        } => {
            if topics::topic(&ctx.state(), id)?.is_some() {
                return if *if_not_exists {
                    Ok(done(0))
                } else {
                    Err(exists(format!("Topic '{id}' already exists")))
                };
            }
            if id.is_empty() {
                return Err(invalid("A topic needs a name"));
            }
            if !(1..=topics::MAX_PARTITIONS).contains(partitions) {
                return Err(invalid(format!(
                    "A topic has from 1 to {} partitions, not {partitions}",
                    topics::MAX_PARTITIONS
                )));
            }
            if *max_deliveries == Some(0) {
                return Err(invalid("max_deliveries must be at least 1"));
            }
            let dead_letter = match (dead_letter, max_deliveries) {
                (Some(d), _) => Some(d.clone()),
                (None, Some(_)) => Some(format!("{id}.dlq")),
                (None, None) => None,
            };
            if dead_letter.as_deref() == Some(id.as_str()) {
                return Err(invalid("A topic cannot be its own dead-letter topic"));
            }
            let topic = |id: &str, partitions, dead_letter| TopicDef {
                id: id.to_owned(),
                partitions,
                retention_seconds: topics::DEFAULT_RETENTION_SECONDS,
                retention_max_bytes: topics::DEFAULT_RETENTION_BYTES,
                routes: Vec::new(),
                created_at_ms: ctx.stamp_ms,
                updated_at_ms: ctx.stamp_ms,
                max_deliveries: None,
                dead_letter,
            };
            let mut def = topic(id, *partitions, dead_letter.clone());
            def.max_deliveries = *max_deliveries;
            if let Some(seconds) = retention_seconds {
                def.retention_seconds = *seconds;
            }
            if let Some(dlq) = &dead_letter
                && topics::topic(&ctx.state(), dlq)?.is_none()
            {
                topics::put_topic(ctx.batch, &topic(dlq, 1, None));
            }
            topics::put_topic(ctx.batch, &def);
            Ok(done(1))
        }
        Op::DropTopic { id, if_exists } => {
            if topics::topic(&ctx.state(), id)?.is_none() {
                return if *if_exists {
                    Ok(done(0))
                } else {
                    Err(not_found(format!("Topic '{id}' not found")))
                };
            }
            topics::drop_topic(ctx.batch, id);
            Ok(done(1))
        }
        Op::ClearTopic { id } => {
            existing(ctx, id)?;
            topics::clear_topic(ctx.batch, id);
            Ok(done(1))
        }
        Op::AddTopicRoute { topic, route } => {
            let mut def = existing(ctx, topic)?;
            // The table the route names, still there under that name.
            let (ns, name) = route
                .table_name
                .split_once('.')
                .unwrap_or(("default", route.table_name.as_str()));
            if catalog::table(&ctx.state(), ns, name)?.is_none_or(|t| t.id != route.table) {
                return Err(not_found(format!("Table '{}' not found", route.table_name)));
            }
            if def
                .routes
                .iter()
                .any(|r| r.table == route.table && r.op == route.op)
            {
                return Err(exists(format!(
                    "Route {} ON {} already exists in topic '{topic}'",
                    route.table_name,
                    route.op.name().to_ascii_uppercase()
                )));
            }
            def.routes.push(route.clone());
            def.updated_at_ms = ctx.stamp_ms;
            topics::put_topic(ctx.batch, &def);
            Ok(done(1))
        }
        Op::AckTopic {
            topic,
            group,
            partition,
            upto,
        } => {
            let head = partition_head(ctx, topic, *partition)?;
            if *upto >= head {
                return Err(invalid(format!(
                    "Offset {upto} is out of range: partition {partition} of topic '{topic}' \
                     has offsets below {head}"
                )));
            }
            let old = topics::group_state(&ctx.state(), topic, group, *partition)?;
            if old.offset.as_ref().is_some_and(|c| c.last_acked >= *upto) {
                return Ok(done(0));
            }
            let mut new = old.clone();
            new.offset = Some(GroupOffset {
                last_acked: *upto,
                updated_at_ms: ctx.stamp_ms,
            });
            topics::put_group_state(ctx.batch, topic, group, *partition, &old, new, ctx.stamp_ms);
            Ok(done(1))
        }
        Op::AckTopicRange {
            topic,
            group,
            partition,
            from,
            to,
        } => {
            offsets_in(ctx, topic, *partition, *from, *to)?;
            let old = topics::group_state(&ctx.state(), topic, group, *partition)?;
            if old.next().is_some_and(|n| *to < n) {
                return Ok(done(0));
            }
            never_delivered(&old, group, *partition, *from, *to)?;
            let mut new = old.clone();
            new.acked.push((*from, to + 1));
            new.claims.retain(|(a, c)| !(*from <= *a && c.to <= to + 1));
            topics::put_group_state(ctx.batch, topic, group, *partition, &old, new, ctx.stamp_ms);
            Ok(done(1))
        }
        Op::ClaimTopic {
            topic,
            group,
            partition,
            claim,
            start,
            limit,
            visibility_ms,
        } => {
            let head = partition_head(ctx, topic, *partition)?;
            if *limit == 0 {
                return Err(invalid("A claim takes at least one message"));
            }
            let old = topics::group_state(&ctx.state(), topic, group, *partition)?;
            let mut new = old.clone();
            if new.next().is_none() {
                new.cursor = Some((*start).min(head));
            }
            let def = existing(ctx, topic)?;
            let (mut live, mut taken) = (0, None);
            // A range whose every message was sent too often gives way to the next one.
            for _ in 0..16 {
                let Some(range) = new.claimable(*start, head, *limit, ctx.stamp_ms) else {
                    break;
                };
                new = topics::with_claim(new, claim, range, ctx.stamp_ms, *visibility_ms);
                live = range.1 - range.0;
                // Sent too often: to the dead-letter topic, instead of once more.
                if let Some(max) = def.max_deliveries {
                    for offset in range.0..range.1 {
                        if new.deliveries_of(offset) > max {
                            dead_letter(ctx, &def, *partition, offset)?;
                            new.acked.push((offset, offset + 1));
                            live -= 1;
                        }
                    }
                }
                if live > 0 {
                    taken = Some(range);
                    break;
                }
                new.claims.retain(|(_, c)| c.id != *claim);
            }
            if new != old {
                topics::put_group_state(
                    ctx.batch,
                    topic,
                    group,
                    *partition,
                    &old,
                    new,
                    ctx.stamp_ms,
                );
            }
            // The range taken, for the consumer (an outcome, never stored).
            Ok(OpResult {
                seqs: taken.map_or_else(Vec::new, |(a, b)| vec![a as i64, b as i64]),
                ..done(live)
            })
        }
        Op::SettleTopic {
            topic,
            group,
            partition,
            from,
            to,
            reject,
        } => {
            offsets_in(ctx, topic, *partition, *from, *to)?;
            let def = existing(ctx, topic)?;
            let old = topics::group_state(&ctx.state(), topic, group, *partition)?;
            never_delivered(&old, group, *partition, *from, *to)?;
            let mut new = old.clone();
            new.release(*from, to + 1);
            if *reject {
                for offset in *from..=*to {
                    if !old.is_acked(offset) {
                        dead_letter(ctx, &def, *partition, offset)?;
                    }
                }
                new.acked.push((*from, to + 1));
            }
            topics::put_group_state(ctx.batch, topic, group, *partition, &old, new, ctx.stamp_ms);
            Ok(done(to - from + 1))
        }
        Op::TrimTopic {
            topic,
            partition,
            before,
        } => {
            let head = partition_head(ctx, topic, *partition)?;
            topics::trim(ctx.batch, topic, *partition, (*before).min(head));
            Ok(done(1))
        }
        Op::SetTopicRetention {
            topic,
            seconds,
            max_bytes,
        } => {
            let mut def = existing(ctx, topic)?;
            if seconds == &Some(0) || max_bytes == &Some(0) {
                return Err(invalid("retention limits must be at least 1".to_owned()));
            }
            def.retention_seconds = seconds.unwrap_or(def.retention_seconds);
            def.retention_max_bytes = max_bytes.unwrap_or(def.retention_max_bytes);
            def.updated_at_ms = ctx.stamp_ms;
            topics::put_topic(ctx.batch, &def);
            Ok(done(1))
        }
        _ => Err(invalid("not a topic operation")),
    }
}

/// The next offset of partition `partition` of topic `topic`; rejected when there is no
/// such topic or partition.
fn partition_head(ctx: &Ctx<'_>, topic: &str, partition: u32) -> Result<u64, OpError> {
    use crate::topics;
    let def = topics::topic(&ctx.state(), topic)?
        .ok_or_else(|| not_found(format!("Topic '{topic}' not found")))?;
    if partition >= def.partitions {
        return Err(invalid(format!(
            "Topic '{topic}' has no partition {partition} (it has {})",
            def.partitions
        )));
    }
    Ok(topics::head(&ctx.state(), topic, partition)?)
}

/// Copies message `offset` of partition `partition` of topic `def` to its dead-letter topic,
/// when it has one that exists (else the message is only dropped).
fn dead_letter(
    ctx: &mut Ctx<'_>,
    def: &crate::topics::TopicDef,
    partition: u32,
    offset: u64,
) -> Result<(), OpError> {
    use crate::topics;
    let Some(dlq) = &def.dead_letter else {
        return Ok(());
    };
    let (Some(dlq), Some(message)) = (
        topics::topic(&ctx.state(), dlq)?,
        topics::message(&ctx.state(), &def.id, partition, offset)?,
    ) else {
        return Ok(());
    };
    for (k, v) in topics::publish(&ctx.state(), &dlq, &message)? {
        ctx.batch.put(Family::Topics, k, v);
    }
    Ok(())
}

/// Refuses offsets `from..=to` unless the partition holds them (below its next offset).
fn offsets_in(
    ctx: &Ctx<'_>,
    topic: &str,
    partition: u32,
    from: u64,
    to: u64,
) -> Result<(), OpError> {
    let head = partition_head(ctx, topic, partition)?;
    if from > to || to >= head {
        return Err(invalid(format!(
            "Offsets {from} to {to} are out of range: partition {partition} of topic \
             '{topic}' has offsets below {head}"
        )));
    }
    Ok(())
}

/// Removes the routes of table `table` from every topic (its DROP): a table created later
/// under the same name is another table, and takes no route it did not get.
pub(super) fn drop_routes_of(ctx: &mut Ctx<'_>, table: TableId) -> Result<(), OpError> {
    use crate::topics;
    for mut def in topics::topics(&ctx.state())? {
        let before = def.routes.len();
        def.routes.retain(|r| r.table != table);
        if def.routes.len() != before {
            def.updated_at_ms = ctx.stamp_ms;
            topics::put_topic(ctx.batch, &def);
        }
    }
    Ok(())
}

/// Refuses to settle offsets `from..=to` that were never sent to the group (neither
/// acknowledged nor claimed): a consumer settles only what it was given.
fn never_delivered(
    state: &crate::topics::GroupState,
    group: &str,
    partition: u32,
    from: u64,
    to: u64,
) -> Result<(), OpError> {
    if state.delivered(from, to + 1) {
        return Ok(());
    }
    Err(invalid(format!(
        "Offsets {from} to {to} of partition {partition} were not all sent to group \
         '{group}': a consumer acknowledges, releases or rejects only messages it claimed"
    )))
}
