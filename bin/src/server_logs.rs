//! The server's most recent log lines, kept in memory for `system.server_logs`: a
//! `tracing` layer beside the one writing stderr, seeing the same filtered events.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use folddb_query::node_info::{LogLine, RecentLogs};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Lines kept; older ones are dropped.
pub const KEPT_LINES: usize = 1000;

#[derive(Debug)]
pub struct LogRing {
    lines: Mutex<VecDeque<LogLine>>,
    capacity: usize,
}

impl LogRing {
    pub fn new(capacity: usize) -> Arc<LogRing> {
        Arc::new(LogRing {
            lines: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity,
        })
    }

    fn push(&self, line: LogLine) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == self.capacity {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The layer that feeds this ring.
    pub fn layer(self: &Arc<Self>) -> RingLayer {
        RingLayer(self.clone())
    }
}

impl RecentLogs for LogRing {
    fn recent(&self) -> Vec<LogLine> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().cloned().collect()
    }
}

pub struct RingLayer(Arc<LogRing>);

/// An event's message, then its other fields as ` name=value`.
#[derive(Default)]
struct Message {
    message: String,
    fields: String,
}

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut m = Message::default();
        event.record(&mut m);
        let meta = event.metadata();
        self.0.push(LogLine {
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            level: meta.level().to_string(),
            thread: std::thread::current().name().map(str::to_owned),
            target: Some(meta.target().to_owned()),
            line: meta.line(),
            message: m.message + &m.fields,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn the_ring_keeps_the_newest_lines_with_their_fields() {
        let ring = LogRing::new(2);
        let subscriber = tracing_subscriber::registry().with(ring.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!("first");
            tracing::info!(table = "app.t", rows = 3, "flushed");
            tracing::error!(error = %"disk full", "second");
        });
        let lines = ring.recent();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0].level, "INFO");
        assert_eq!(lines[0].message, "flushed table=app.t rows=3");
        assert_eq!(lines[1].level, "ERROR");
        assert_eq!(lines[1].message, "second error=disk full");
        assert!(lines[1].line.is_some());
        assert!(
            chrono::DateTime::parse_from_rfc3339(&lines[1].timestamp).is_ok(),
            "{}",
            lines[1].timestamp
        );
    }
}
