//! `folddb consume`: a topic's worker from a terminal (a topic stream,
//! `realtime/PROTOCOL.md` §3). Logs in over HTTP, opens `/v1/ws`, and prints each message of
//! one partition as a JSON line with its payload decoded. With `--group`, it is one consumer
//! of the group: it acknowledges what it printed (at-least-once: what it dies before
//! acknowledging goes to the group again after the visibility timeout). Acknowledgements and
//! credit go back together at most every 100 ms, within the connection's message rate. It
//! resumes after a dropped connection, and exits cleanly on Ctrl-C.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use clap::Args;
use futures::SinkExt;
use serde_json::{Value as Json, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::End;

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    server: crate::client::ServerArgs,
    /// The topic's id.
    #[arg(long)]
    topic: String,
    /// The consumer group; without one, messages are read and nothing is acknowledged.
    #[arg(long)]
    group: Option<String>,
    #[arg(long, default_value_t = 0)]
    partition: u32,
    /// Where to start: `latest`, `earliest` or an offset (a group that has acknowledged
    /// messages goes on after them).
    #[arg(long, default_value = "latest")]
    from: String,
    /// Messages the server may send ahead of what has been printed (and, with a group, that
    /// this worker holds claimed): credit is granted back at most every 100 ms, so it also
    /// bounds the rate, at ten windows a second.
    #[arg(long, default_value_t = 1000)]
    window: u64,
}

pub fn run(args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    crate::client::until_ctrl_c(follow(&args))
}

async fn follow(args: &ConsumeArgs) -> anyhow::Result<ExitCode> {
    let base = args.server.url.trim_end_matches('/').to_owned();
    let http = reqwest::Client::new();
    let mut start = match args.from.parse::<u64>() {
        Ok(offset) => json!({"Offset": offset}),
        Err(_) => json!(args.from),
    };
    crate::client::resuming("consume", async || {
        let end = session(args, &http, &base, &mut start).await;
        (end, start.to_string())
    })
    .await
}

/// One message as printed: its fields, with the payload decoded from base64 (and as JSON
/// when it is JSON, as routes write it).
fn printed(m: &Json) -> Json {
    let mut out = m.clone();
    let decoded = m["payload"]
        .as_str()
        .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok());
    if let Some(bytes) = decoded {
        out["payload"] = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
    }
    out
}

/// One connection's worth of consuming; `start` follows what has been printed.
async fn session(args: &ConsumeArgs, http: &reqwest::Client, base: &str, start: &mut Json) -> End {
    let mut consume = json!({"id": "cli", "topic_id": args.topic, "partition_id": args.partition,
                             "start": start.clone(), "credit": args.window});
    if let Some(g) = &args.group {
        consume["group_id"] = json!(g);
    }
    let request = json!({"type": "topic_consume", "consume": consume});
    let mut ws = match crate::client::open_with(http, base, &args.server, &request).await {
        Ok(ws) => ws,
        Err(end) => return end,
    };
    let mut ping = tokio::time::interval(Duration::from_secs(5));
    // Printed and not yet acknowledged (ranges, merged while contiguous), and printed and not
    // yet granted back: both sent together at most every FLUSH_EVERY, since each message
    // counts toward the connection's message rate limit (a dropped grant would stall the
    // stream for good).
    let mut pending: Vec<(u64, u64)> = Vec::new();
    let mut used = 0u64;
    let mut flushed = tokio::time::Instant::now();
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let next = crate::client::next_message(&mut ws, &mut ping);
        let msg = match due {
            Some(at) => match tokio::time::timeout_at(at, next).await {
                Ok(m) => m,
                Err(_) => {
                    if let Err(e) = flush(&mut ws, &mut pending, &mut used).await {
                        return End::Dropped(e);
                    }
                    flushed = tokio::time::Instant::now();
                    due = None;
                    continue;
                }
            },
            None => next.await,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => return End::Dropped(e),
        };
        match msg["type"].as_str() {
            Some("topic_messages") => {
                let batch = msg["messages"].as_array().map_or(&[][..], Vec::as_slice);
                let mut out = std::io::stdout().lock();
                for m in batch {
                    if let Err(e) = writeln!(out, "{}", printed(m)) {
                        return End::Dropped(e.into());
                    }
                }
                if let Err(e) = out.flush() {
                    return End::Dropped(e.into());
                }
                drop(out);
                if let Some(next) = msg["next_offset"].as_u64() {
                    *start = json!({"Offset": next});
                }
                let offsets: Vec<u64> = batch.iter().filter_map(|m| m["offset"].as_u64()).collect();
                if let (Some(_), Some(&first), Some(&last)) =
                    (&args.group, offsets.first(), offsets.last())
                {
                    match pending.last_mut() {
                        Some(range) if range.1 + 1 == first => range.1 = last,
                        _ => pending.push((first, last)),
                    }
                }
                used += batch.len() as u64;
                if !pending.is_empty() || used * 2 >= args.window.max(1) {
                    due.get_or_insert(flushed + FLUSH_EVERY);
                }
            }
            Some("topic_acked") if msg["success"] == false => {
                eprintln!("consume: an acknowledgement was refused: {msg}");
            }
            // Past the connection's message rate: that message was dropped.
            Some("error") if msg["subscription_id"] != "cli" => {
                eprintln!("consume: {msg}");
            }
            Some("error") => return End::Refused(msg),
            _ => {}
        }
    }
}

/// The shortest time between two sends of acknowledgements and credit.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Sends the acknowledgements of `pending`, one per range, then the credit `used` gives
/// back, and forgets both.
async fn flush(
    ws: &mut crate::client::Ws,
    pending: &mut Vec<(u64, u64)>,
    used: &mut u64,
) -> anyhow::Result<()> {
    for (first, last) in pending.drain(..) {
        let ack = json!({"type": "topic_ack", "id": "cli", "from_offset": first,
                         "upto_offset": last});
        ws.send(Message::text(ack.to_string())).await?;
    }
    if *used > 0 {
        let grant = json!({"type": "topic_credit", "id": "cli", "credit": *used});
        ws.send(Message::text(grant.to_string())).await?;
        *used = 0;
    }
    Ok(())
}
