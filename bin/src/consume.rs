//! `folddb consume`: a topic's worker from a terminal (a topic stream,
//! `realtime/PROTOCOL.md` §3). Logs in over HTTP, opens `/v1/ws`, and prints each message of
//! one partition as a JSON line with its payload decoded. With `--group`, it is one consumer
//! of the group: it acknowledges each batch once printed (at-least-once: a batch it dies
//! before printing goes to the group again after the visibility timeout). It grants credit
//! as it prints, resumes after a dropped connection, and exits cleanly on Ctrl-C.

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
    /// Messages the server may send ahead of what has been printed (credit is granted back
    /// in steps of half of it).
    #[arg(long, default_value_t = 100)]
    window: u64,
}

pub fn run(args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::select! {
            r = follow(&args) => r,
            _ = tokio::signal::ctrl_c() => Ok(ExitCode::SUCCESS),
        }
    })
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
    let mut used = 0u64;
    loop {
        let msg = match crate::client::next_message(&mut ws, &mut ping).await {
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
                let mut replies = Vec::new();
                if let (Some(_), Some(first), Some(last)) =
                    (&args.group, offsets.first(), offsets.last())
                {
                    replies.push(json!({"type": "topic_ack", "id": "cli",
                                        "from_offset": first, "upto_offset": last}));
                }
                used += batch.len() as u64;
                if used * 2 >= args.window.max(1) {
                    replies.push(json!({"type": "topic_credit", "id": "cli", "credit": used}));
                    used = 0;
                }
                for r in replies {
                    if let Err(e) = ws.send(Message::text(r.to_string())).await {
                        return End::Dropped(e.into());
                    }
                }
            }
            Some("topic_acked") if msg["success"] == false => {
                eprintln!("consume: an acknowledgement was refused: {msg}");
            }
            // Past the connection's message rate: that ack or grant was dropped (its
            // messages go to the group again after the visibility timeout).
            Some("error") if msg["subscription_id"] != "cli" => {
                eprintln!("consume: {msg}");
            }
            Some("error") => return End::Refused(msg),
            _ => {}
        }
    }
}
