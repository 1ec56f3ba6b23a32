//! How the shell prints results: aligned tables (psql's layout, expanded when asked or when a
//! row is wider than the terminal), JSON (one object per row) and CSV.
//!
//! Tables are laid out here rather than by comfy-table: psql's layout is a few lines, and
//! comfy-table took half of a 10,000-row `-c` round trip (`benches/sql_shell.rs`).

use std::io::{self, Write};

use serde_json::Value as Json;
use unicode_width::UnicodeWidthStr;

use super::session::{Column, QueryResult};

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// `\x`: expanded rows (one line per column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expanded {
    Off,
    On,
    /// When the table is wider than the terminal.
    Auto,
}

/// What the output looks like.
#[derive(Debug, Clone)]
pub struct Settings {
    pub format: Format,
    pub expanded: Expanded,
    pub timing: bool,
    /// Colour on standard error (a terminal, and no `NO_COLOR`).
    pub color: bool,
    /// The terminal's width, when standard output is one.
    pub width: Option<usize>,
}

/// A cell as text: NULL visible, timestamps (microseconds) and dates (days) readable,
/// nested values as compact JSON.
pub fn cell_text(value: &Json, column: Option<&Column>) -> String {
    let kind = column.and_then(|c| c.data_type.as_str()).unwrap_or("");
    match value {
        Json::Null => "NULL".into(),
        Json::String(s) => s.clone(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => match (kind, n.as_i64()) {
            ("Timestamp" | "DateTime", Some(us)) => chrono::DateTime::from_timestamp_micros(us)
                .map_or_else(
                    || n.to_string(),
                    |t| t.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
                ),
            ("Date", Some(days)) => chrono::NaiveDate::from_num_days_from_ce_opt(
                i32::try_from(days + 719_163).unwrap_or(i32::MAX),
            )
            .map_or_else(|| n.to_string(), |d| d.to_string()),
            ("Time", Some(us)) => chrono::NaiveTime::from_num_seconds_from_midnight_opt(
                u32::try_from(us.div_euclid(1_000_000)).unwrap_or(u32::MAX),
                u32::try_from(us.rem_euclid(1_000_000) * 1000).unwrap_or(0),
            )
            .map_or_else(|| n.to_string(), |t| t.to_string()),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Whether a column's values line up on the right (numbers).
fn numeric(column: &Column) -> bool {
    matches!(
        column.data_type.as_str(),
        Some("SmallInt" | "Int" | "BigInt" | "Float" | "Double")
    ) || column.data_type.get("Decimal").is_some()
}

/// Prints one statement's result.
pub fn print_result(out: &mut impl Write, r: &QueryResult, s: &Settings) -> io::Result<()> {
    let Some(rows) = &r.rows else {
        // A statement without rows: its message (to stderr when stdout carries data).
        let message = r.message.as_deref().unwrap_or("OK");
        return match s.format {
            Format::Table => writeln!(out, "{message}"),
            Format::Json => writeln!(
                out,
                "{}",
                serde_json::json!({"message": message, "row_count": r.row_count})
            ),
            Format::Csv => {
                eprintln!("{message}");
                Ok(())
            }
        };
    };
    match s.format {
        Format::Table => print_table(out, &r.schema, rows, s),
        Format::Json => print_json(out, &r.schema, rows),
        Format::Csv => print_csv(out, &r.schema, rows),
    }
}

fn footer(n: usize) -> String {
    if n == 1 {
        "(1 row)".into()
    } else {
        format!("({n} rows)")
    }
}

fn print_table(
    out: &mut impl Write,
    schema: &[Column],
    rows: &[Vec<Json>],
    s: &Settings,
) -> io::Result<()> {
    let texts: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(i, v)| cell_text(v, schema.get(i)))
                .collect()
        })
        .collect();
    let names: Vec<&str> = schema.iter().map(|c| c.name.as_str()).collect();
    let expanded = match s.expanded {
        Expanded::On => true,
        Expanded::Off => false,
        Expanded::Auto => s.width.is_some_and(|w| table_width(&names, &texts) > w),
    };
    if expanded {
        return print_expanded(out, &names, &texts);
    }
    let right: Vec<bool> = schema.iter().map(numeric).collect();
    let widths = column_widths(&names, &texts);
    aligned_line(out, &widths, &right, names.iter().map(|n| Some(*n)))?;
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    writeln!(out, "{}", rule.join("+"))?;
    for row in &texts {
        // A cell of several lines makes its row as tall.
        let mut lines: Vec<std::str::Lines<'_>> = row.iter().map(|c| c.lines()).collect();
        let height = row
            .iter()
            .map(|c| c.lines().count().max(1))
            .max()
            .unwrap_or(1);
        for _ in 0..height {
            aligned_line(out, &widths, &right, lines.iter_mut().map(Iterator::next))?;
        }
    }
    writeln!(out, "{}", footer(rows.len()))
}

/// One line of a table: each cell padded to its column's width (numbers on the right), ` | `
/// between them, no trailing blanks.
fn aligned_line<'a>(
    out: &mut impl Write,
    widths: &[usize],
    right: &[bool],
    cells: impl Iterator<Item = Option<&'a str>>,
) -> io::Result<()> {
    let mut line = String::new();
    for (i, (cell, width)) in cells.zip(widths).enumerate() {
        let cell = cell.unwrap_or("");
        let pad = width.saturating_sub(cell.width());
        line.push_str(if i == 0 { " " } else { " | " });
        if right.get(i) == Some(&true) {
            line.extend(std::iter::repeat_n(' ', pad));
            line.push_str(cell);
        } else {
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    writeln!(out, "{}", line.trim_end())
}

/// Each column's width: its widest line, header included.
fn column_widths(names: &[&str], rows: &[Vec<String>]) -> Vec<usize> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .flat_map(|c| c.lines())
                .map(UnicodeWidthStr::width)
                .chain([n.width()])
                .max()
                .unwrap_or(0)
        })
        .collect()
}

/// The width of the aligned table of `names` and `rows`: widest line of each column, plus
/// " | " between them and a space at each end.
fn table_width(names: &[&str], rows: &[Vec<String>]) -> usize {
    column_widths(names, rows).iter().sum::<usize>() + 3 * names.len().saturating_sub(1) + 2
}

/// psql's `\x` layout: `-[ RECORD n ]-`, then `column | value` per line.
fn print_expanded(out: &mut impl Write, names: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let label = names.iter().map(|n| n.width()).max().unwrap_or(0);
    for (n, row) in rows.iter().enumerate() {
        writeln!(
            out,
            "-[ RECORD {} ]{}",
            n + 1,
            "-".repeat(label.saturating_sub(8))
        )?;
        for (name, value) in names.iter().zip(row) {
            let pad = label - name.width();
            let mut lines = value.lines();
            writeln!(out, "{name}{:pad$} | {}", "", lines.next().unwrap_or(""))?;
            for more in lines {
                writeln!(out, "{:label$} | {more}", "")?;
            }
        }
    }
    if rows.is_empty() {
        writeln!(out, "(0 rows)")?;
    }
    Ok(())
}

/// A JSON array of row objects, one per line, columns in the result's order.
fn print_json(out: &mut impl Write, schema: &[Column], rows: &[Vec<Json>]) -> io::Result<()> {
    writeln!(out, "[")?;
    for (n, row) in rows.iter().enumerate() {
        write!(out, "{{")?;
        for (i, (c, v)) in schema.iter().zip(row).enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(out, "{sep}{}:{v}", Json::String(c.name.clone()))?;
        }
        writeln!(out, "}}{}", if n + 1 < rows.len() { "," } else { "" })?;
    }
    writeln!(out, "]")
}

/// CSV with a header line; NULL is an empty field, other cells as in a table.
fn print_csv(out: &mut impl Write, schema: &[Column], rows: &[Vec<Json>]) -> io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(schema.iter().map(|c| c.name.as_str()))?;
    for row in rows {
        w.write_record(row.iter().enumerate().map(|(i, v)| match v {
            Json::Null => String::new(),
            v => cell_text(v, schema.get(i)),
        }))?;
    }
    w.flush()
}

/// An error line: `ERROR [CODE]: message`, red on a terminal.
pub fn print_error(s: &Settings, text: &str) {
    if s.color {
        eprintln!("\x1b[1;31m{text}\x1b[0m");
    } else {
        eprintln!("{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn col(name: &str, ty: &str) -> Column {
        Column {
            name: name.into(),
            data_type: json!(ty),
        }
    }

    fn settings(format: Format, expanded: Expanded, width: Option<usize>) -> Settings {
        Settings {
            format,
            expanded,
            timing: false,
            color: false,
            width,
        }
    }

    fn render(r: &QueryResult, s: &Settings) -> String {
        let mut out = Vec::new();
        print_result(&mut out, r, s).expect("writes to a Vec");
        String::from_utf8(out).expect("utf-8")
    }

    fn result() -> QueryResult {
        QueryResult {
            schema: vec![
                col("id", "BigInt"),
                col("title", "Text"),
                col("at", "Timestamp"),
            ],
            rows: Some(vec![
                vec![
                    json!("7"),
                    json!("héllo, \"world\""),
                    json!(1_796_278_121_744_000_i64),
                ],
                vec![json!("12345"), Json::Null, Json::Null],
            ]),
            row_count: 2,
            message: None,
        }
    }

    #[test]
    fn a_table_is_aligned_like_psql_with_nulls_visible() {
        let text = render(&result(), &settings(Format::Table, Expanded::Off, None));
        assert_eq!(
            text,
            "    id | title          | at\n\
             -------+----------------+-------------------------\n     \
             7 | héllo, \"world\" | 2026-12-03 06:08:41.744\n \
             12345 | NULL           | NULL\n\
             (2 rows)\n"
        );
    }

    #[test]
    fn a_row_wider_than_the_terminal_is_expanded() {
        let text = render(
            &result(),
            &settings(Format::Table, Expanded::Auto, Some(30)),
        );
        assert!(text.starts_with("-[ RECORD 1 ]"), "{text}");
        assert!(text.contains("\ntitle | héllo, \"world\"\n"), "{text}");
        assert!(text.contains("\nat    | NULL\n"), "{text}");
        let wide = render(
            &result(),
            &settings(Format::Table, Expanded::Auto, Some(200)),
        );
        assert!(wide.starts_with("    id | title"), "{wide}");
    }

    #[test]
    fn csv_quotes_and_leaves_null_empty() {
        let text = render(&result(), &settings(Format::Csv, Expanded::Off, None));
        assert_eq!(
            text,
            "id,title,at\n7,\"héllo, \"\"world\"\"\",2026-12-03 06:08:41.744\n12345,,\n"
        );
    }

    #[test]
    fn json_keeps_the_column_order_and_the_wire_values() {
        let text = render(&result(), &settings(Format::Json, Expanded::Off, None));
        let parsed: Json = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed[0]["title"], "héllo, \"world\"");
        assert_eq!(parsed[1]["title"], Json::Null);
        assert!(text.contains("{\"id\":\"7\",\"title\""), "{text}");
    }

    #[test]
    fn dates_and_times_are_readable() {
        assert_eq!(
            cell_text(&json!(20_425), Some(&col("d", "Date"))),
            "2025-12-03"
        );
        assert_eq!(
            cell_text(&json!(3_723_000_001_i64), Some(&col("t", "Time"))),
            "01:02:03.000001"
        );
        assert_eq!(cell_text(&json!([1, 2]), None), "[1,2]");
    }
}
