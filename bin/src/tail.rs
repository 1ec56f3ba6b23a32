//! `folddb tail`: follow the committed row changes from a terminal (a log tail,
//! `realtime/PROTOCOL.md`). Logs in over HTTP, opens `/v1/ws`, tails from `--from`, and
//! prints each change record as one JSON line. It grants credit as it prints, resumes from
//! the last record's cursor after a dropped connection, and exits cleanly on Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use futures::SinkExt;

use crate::client::End;
use serde_json::{Value as Json, json};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    server: crate::client::ServerArgs,
    /// Where to start: `earliest` (the oldest change kept), `now`, a log index (the changes
    /// of the entries after it) or a cursor `<index>:<ordinal>` (the changes after it).
    #[arg(long, default_value = "now")]
    from: String,
    /// Only this table (`namespace.table`); repeat for more.
    #[arg(long = "table")]
    tables: Vec<String>,
    /// Only the tables of this namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// Only these operations (`insert`, `update`, `delete`); repeat for more.
    #[arg(long = "op")]
    ops: Vec<String>,
    /// Only this owner's rows of USER tables (dba and system; others see their own).
    #[arg(long)]
    owner: Option<String>,
    /// Records the server may send ahead of what has been printed (credit is granted back
    /// in steps of half of it).
    #[arg(long, default_value_t = 10_000)]
    window: u64,
}

pub fn run(args: TailArgs) -> anyhow::Result<ExitCode> {
    crate::client::until_ctrl_c(follow(&args))
}

async fn follow(args: &TailArgs) -> anyhow::Result<ExitCode> {
    let base = args.server.url.trim_end_matches('/').to_owned();
    let http = reqwest::Client::new();
    let mut from = match args.from.parse::<u64>() {
        Ok(index) => json!(index),
        Err(_) => json!(args.from),
    };
    crate::client::resuming("tail", async || {
        let end = session(args, &http, &base, &mut from).await;
        (end, from.to_string())
    })
    .await
}

/// One connection's worth of tailing; `from` follows what has been printed.
async fn session(args: &TailArgs, http: &reqwest::Client, base: &str, from: &mut Json) -> End {
    let mut tail = json!({"id": "cli", "from": from.clone(), "credit": args.window});
    if !args.tables.is_empty() {
        tail["tables"] = json!(args.tables);
    }
    if let Some(ns) = &args.namespace {
        tail["namespace"] = json!(ns);
    }
    if !args.ops.is_empty() {
        tail["ops"] = json!(args.ops);
    }
    if let Some(owner) = &args.owner {
        tail["owner"] = json!(owner);
    }
    let request = json!({"type": "tail", "tail": tail});
    match crate::client::open_with(http, base, &args.server, &request).await {
        Ok(ws) => follow_records(ws, args.window, from, |r| println!("{r}")).await,
        Err(end) => end,
    }
}

/// Follows a tail already requested on `ws`, handing each record to `print`; `from` follows
/// what was handed over (a cursor to resume from). Credit is granted back in steps of half
/// of `window`, since each message counts toward the connection's message rate limit.
pub async fn follow_records(
    mut ws: crate::client::Ws,
    window: u64,
    from: &mut Json,
    mut print: impl FnMut(&Json),
) -> End {
    let mut ping = tokio::time::interval(Duration::from_secs(5));
    let mut used = 0u64;
    loop {
        let msg = match crate::client::next_message(&mut ws, &mut ping).await {
            Ok(m) => m,
            Err(e) => return End::Dropped(e),
        };
        match msg["type"].as_str() {
            Some("tail_ack") => {
                // Until a record arrives, a resume starts where this tail did.
                if let Some(start) = msg["start"].as_u64() {
                    *from = json!(start.saturating_sub(1));
                }
            }
            Some("tail_batch") => {
                let records = msg["records"].as_array().map_or(&[][..], Vec::as_slice);
                records.iter().for_each(&mut print);
                if let Some(cursor) = msg["cursor"].as_str() {
                    *from = json!(cursor);
                }
                used += records.len() as u64;
                if used * 2 >= window.max(1) {
                    let grant = json!({"type": "tail_credit", "id": "cli", "credit": used});
                    if let Err(e) = ws.send(Message::text(grant.to_string())).await {
                        return End::Dropped(e.into());
                    }
                    used = 0;
                }
            }
            Some("error") => return End::Refused(msg),
            _ => {}
        }
    }
}
