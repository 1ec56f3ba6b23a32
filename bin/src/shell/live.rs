//! Live mode: `\watch SELECT …` (a live query: its rows, then each change with its `_seq`)
//! and `\tail table` (the table's log tail), until Ctrl-C. A dropped connection is resumed:
//! a live query `from` the last `_seq` shown, a tail from its cursor.

use std::io::Write;
use std::time::Duration;

use futures::SinkExt;
use serde_json::{Map, Value as Json, json};
use tokio_tungstenite::tungstenite::Message;

use super::render::{self, Format, Settings};
use super::session::{Column, QueryResult, Session};
use crate::client::End;

/// A value in a change line: bare, or quoted when it would not read as one word.
fn value_text(v: &Json) -> String {
    match v {
        Json::String(s)
            if s.is_empty() || s.contains(|c: char| c.is_whitespace() || ",'=".contains(c)) =>
        {
            format!("'{}'", s.replace('\'', "''"))
        }
        v => render::cell_text(v, None),
    }
}

/// One change as a line: `insert  _seq=…  id=1 title='a b'`; an update shows each changed
/// column as `old -> new`. Columns in `order` first (the table's), then any others.
pub fn change_line(
    op: &str,
    seq: &str,
    new: Option<&Map<String, Json>>,
    old: Option<&Map<String, Json>>,
    order: &[String],
) -> String {
    let mut line = format!("{op:<6} _seq={seq} ");
    let Some(shown) = new.or(old) else {
        return line;
    };
    let rest = shown.keys().filter(|k| !order.contains(k));
    for name in order.iter().chain(rest).filter(|n| !n.starts_with('_')) {
        let Some(value) = shown.get(name) else {
            continue;
        };
        line.push(' ');
        line.push_str(name);
        line.push('=');
        match (op, new.is_some(), old.and_then(|o| o.get(name))) {
            ("update", true, Some(before)) if before != value => {
                line.push_str(&value_text(before));
                line.push_str(" -> ");
            }
            _ => {}
        }
        line.push_str(&value_text(value));
    }
    line
}

fn colored(s: &Settings, op: &str, line: &str) -> String {
    let code = match op {
        "insert" => "32",
        "update" => "33",
        "delete" => "31",
        _ => return line.to_owned(),
    };
    if s.color {
        format!("\x1b[{code}m{line}\x1b[0m")
    } else {
        line.to_owned()
    }
}

fn seq_of(row: &Json) -> Option<i64> {
    match &row["_seq"] {
        Json::String(s) => s.parse().ok(),
        v => v.as_i64(),
    }
}

/// What one watch has seen, across connections.
struct Watch {
    schema: Vec<Column>,
    initial: Vec<Vec<Json>>,
    /// The newest `_seq` shown: where a resumed subscription starts.
    last_seq: Option<i64>,
    /// The initial rows have been shown (later connections show what they missed as changes).
    shown: bool,
}

impl Watch {
    fn saw(&mut self, row: &Json) {
        if let Some(seq) = seq_of(row) {
            self.last_seq = Some(self.last_seq.map_or(seq, |l| l.max(seq)));
        }
    }
}

/// Runs `connect` (one connection's worth) again after each dropped connection, backing off
/// up to 5 s, until it is refused (an error). `connect` says where it would resume, or `None`
/// while nothing was shown yet: a first connection that fails is an error, not retried.
async fn resuming(
    s: &Settings,
    mut connect: impl AsyncFnMut() -> (End, Option<String>),
) -> anyhow::Result<()> {
    let mut wait = Duration::from_millis(250);
    loop {
        match connect().await {
            (End::Refused(msg), _) => anyhow::bail!(
                "{}: {}",
                msg["code"].as_str().unwrap_or("ERROR"),
                msg["message"].as_str().unwrap_or("")
            ),
            (End::Dropped(e), None) => return Err(e),
            (End::Dropped(e), Some(from)) => {
                let text = format!("connection lost ({e:#}); resuming after {from} in {wait:?}");
                render::print_error(s, &text);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// `\watch sql` until the subscription is refused (an error) or the caller stops it.
pub async fn watch(session: &mut Session, sql: &str, s: &Settings) -> anyhow::Result<()> {
    let mut state = Watch {
        schema: Vec::new(),
        initial: Vec::new(),
        last_seq: None,
        shown: false,
    };
    resuming(s, async || {
        let mut options = json!({"batch_size": 1000});
        if let Some(seq) = state.last_seq.filter(|_| state.shown) {
            options["from"] = json!(seq);
        }
        let request = json!({"type": "subscribe",
            "subscription": {"id": "shell", "sql": sql, "options": options}});
        let end = match open(session, &request).await {
            Ok(ws) => follow(ws, &mut state, s).await,
            Err(end) => end,
        };
        let from = state
            .last_seq
            .map_or("the start".into(), |q| format!("_seq {q}"));
        (end, Some(from).filter(|_| state.shown))
    })
    .await
}

/// `/v1/ws` with the session's token, `request` sent.
async fn open(session: &mut Session, request: &Json) -> Result<crate::client::Ws, End> {
    let token = session.token().await.map_err(|e| End::Dropped(e.into()))?;
    crate::client::open_and_send(&session.base, &token, request).await
}

/// One connection of a watch.
async fn follow(mut ws: crate::client::Ws, state: &mut Watch, s: &Settings) -> End {
    let mut ping = tokio::time::interval(Duration::from_secs(5));
    let mut out = std::io::stdout();
    loop {
        let msg = match crate::client::next_message(&mut ws, &mut ping).await {
            Ok(m) => m,
            Err(e) => return End::Dropped(e),
        };
        match msg["type"].as_str() {
            Some("subscription_ack") => {
                if let Ok(schema) = serde_json::from_value(msg["schema"].clone()) {
                    state.schema = schema;
                }
            }
            Some("initial_data_batch") => {
                let rows = msg["rows"].as_array().map_or(&[][..], Vec::as_slice);
                for row in rows {
                    state.saw(row);
                    if state.shown {
                        // Missed while disconnected: the newest version of each changed row.
                        let order = names(&state.schema);
                        let line =
                            change_line("change", &seq_text(row), row.as_object(), None, &order);
                        let _ = writeln!(out, "{line}");
                    } else {
                        state
                            .initial
                            .push(state.schema.iter().map(|c| row[&c.name].clone()).collect());
                    }
                }
                let control = &msg["batch_control"];
                if control["has_more"] == true {
                    let next = json!({"type": "next_batch", "subscription_id": "shell",
                        "last_seq_id": control["last_seq_id"]});
                    if let Err(e) = ws.send(Message::text(next.to_string())).await {
                        return End::Dropped(e.into());
                    }
                } else if !state.shown {
                    state.shown = true;
                    let result = QueryResult {
                        schema: state.schema.clone(),
                        rows: Some(std::mem::take(&mut state.initial)),
                        ..QueryResult::default()
                    };
                    let _ = render::print_result(&mut out, &result, s);
                    if s.format == Format::Table {
                        let _ = writeln!(out, "Watching for changes (Ctrl-C to stop)…");
                    }
                }
            }
            Some("change") => {
                let op = msg["change_type"].as_str().unwrap_or("change");
                let new = msg["rows"][0].as_object();
                let old = msg["old_values"][0].as_object();
                let row = new
                    .or(old)
                    .map(|r| Json::Object(r.clone()))
                    .unwrap_or_default();
                state.saw(&row);
                let text = match s.format {
                    Format::Json => msg.to_string(),
                    _ => colored(
                        s,
                        op,
                        &change_line(op, &seq_text(&row), new, old, &names(&state.schema)),
                    ),
                };
                let _ = writeln!(out, "{text}");
            }
            Some("error") => return End::Refused(msg),
            _ => {}
        }
        let _ = out.flush();
    }
}

fn names(schema: &[Column]) -> Vec<String> {
    schema.iter().map(|c| c.name.clone()).collect()
}

fn seq_text(row: &Json) -> String {
    seq_of(row).map_or_else(|| "?".into(), |q| q.to_string())
}

/// `\tail table`: the table's committed changes from now on, until the caller stops it.
pub async fn tail(session: &mut Session, table: &str, s: &Settings) -> anyhow::Result<()> {
    let mut from = json!("now");
    let mut started = false;
    // The table's column order, for the lines (records' images are keyed by name).
    let order: Vec<String> = match session.sql(&format!("DESCRIBE TABLE {table}")).await {
        Ok(a) => a.results.first().map_or_else(Vec::new, |r| {
            super::cells(r, "column_name")
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        }),
        Err(e) => anyhow::bail!("{e}"),
    };
    resuming(s, async || {
        let request = json!({"type": "tail",
            "tail": {"id": "cli", "from": from.clone(), "credit": TAIL_WINDOW, "tables": [table]}});
        let end = match open(session, &request).await {
            Ok(ws) => {
                if !started && s.format == Format::Table {
                    println!("Following {table} (Ctrl-C to stop)…");
                }
                started = true;
                crate::tail::follow_records(ws, TAIL_WINDOW, &mut from, |r| {
                    println!("{}", record_line(r, s, &order));
                })
                .await
            }
            Err(end) => end,
        };
        (end, Some(from.to_string()).filter(|_| started))
    })
    .await
}

/// Records a tail may be sent ahead of what is printed.
const TAIL_WINDOW: u64 = 10_000;

/// A tail record as a change line (JSON as is with `--format json`).
fn record_line(r: &Json, s: &Settings, order: &[String]) -> String {
    if s.format == Format::Json {
        return r.to_string();
    }
    let op = r["op"].as_str().unwrap_or("?");
    if op == "ddl" {
        let field = |k: &str| r[k].as_str().unwrap_or("");
        return format!(
            "ddl    {} {} {} (by {})",
            field("kind"),
            field("target"),
            field("detail"),
            field("actor")
        );
    }
    let seq = r["seq"].as_str().unwrap_or("?");
    let mut line = change_line(op, seq, r["new"].as_object(), r["old"].as_object(), order);
    if let Some(owner) = r["owner"].as_str() {
        line.push_str(&format!("  (owner {owner})"));
    }
    colored(s, op, &line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Json) -> Map<String, Json> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn change_lines_show_each_operation() {
        let new = obj(json!({"id": "2", "title": "watch me", "_seq": "9"}));
        assert_eq!(
            change_line("insert", "9", Some(&new), None, &[]),
            "insert _seq=9  id=2 title='watch me'"
        );
        let after = obj(json!({"id": "2", "title": "watched", "_seq": "10"}));
        let before = obj(json!({"id": "2", "title": "watch me", "_seq": "9"}));
        assert_eq!(
            change_line("update", "10", Some(&after), Some(&before), &[]),
            "update _seq=10  id=2 title='watch me' -> watched"
        );
        assert_eq!(
            change_line("delete", "11", None, Some(&after), &[]),
            "delete _seq=11  id=2 title=watched"
        );
        let order = ["title".to_owned(), "id".to_owned()];
        assert_eq!(
            change_line("insert", "9", Some(&new), None, &order),
            "insert _seq=9  title='watch me' id=2"
        );
        assert_eq!(value_text(&json!("it's")), "'it''s'");
        assert_eq!(value_text(&Json::Null), "NULL");
    }
}
