//! `folddb subscribe`: watch a live query from a terminal. Logs in over HTTP, opens
//! `/v1/ws` with the token, subscribes, and prints every server message as one JSON line
//! until interrupted (API.md 2).

use std::process::ExitCode;

use clap::Args;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// The subscription: `SELECT <columns | *> FROM namespace.table [WHERE …]`.
    sql: String,
    #[command(flatten)]
    server: crate::client::ServerArgs,
    /// Resume after this `_seq` (only newer versions, then live changes).
    #[arg(long)]
    from: Option<i64>,
    /// Rows per initial batch.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
}

pub fn run(args: SubscribeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(watch(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn watch(args: SubscribeArgs) -> anyhow::Result<()> {
    let base = args.server.url.trim_end_matches('/');
    let token = crate::client::login(
        &reqwest::Client::new(),
        base,
        &args.server.user,
        &args.server.password,
    )
    .await?;
    let mut ws = crate::client::open_ws(base, &token).await?;
    let mut options = json!({"batch_size": args.batch_size});
    if let Some(from) = args.from {
        options["from"] = json!(from);
    }
    let subscribe = json!({"type": "subscribe",
        "subscription": {"id": "cli", "sql": args.sql, "options": options}});
    ws.send(Message::text(subscribe.to_string())).await?;
    let mut ping = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            frame = ws.next() => {
                let Some(frame) = frame else { return Ok(()) };
                let Some(msg) = crate::client::server_message(frame?) else { continue };
                let msg = msg?;
                println!("{msg}");
                if msg["batch_control"]["has_more"] == true {
                    let next = json!({"type": "next_batch", "subscription_id": "cli",
                        "last_seq_id": msg["batch_control"]["last_seq_id"]});
                    ws.send(Message::text(next.to_string())).await?;
                }
            }
            _ = ping.tick() => ws.send(Message::text(r#"{"type":"ping"}"#)).await?,
        }
    }
}
