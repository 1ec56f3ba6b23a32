//! The interactive loop: line editing and history (rustyline), statements spanning lines
//! until their `;`, and tab completion of keywords, backslash commands, namespaces, tables
//! and the columns of the tables a statement names.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Editor, Helper};
use serde_json::Value as Json;

use super::{Shell, Stop};

/// The names completion offers, as of the last load.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Reload before the next prompt (set at start and after DDL or USE).
    pub stale: bool,
    loaded: bool,
    namespaces: Vec<String>,
    /// (namespace, table, its columns).
    tables: Vec<(String, String, Vec<String>)>,
}

/// Words completion offers besides names.
const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "NULL",
    "IS",
    "IN",
    "LIKE",
    "ILIKE",
    "BETWEEN",
    "ORDER",
    "BY",
    "GROUP",
    "HAVING",
    "LIMIT",
    "OFFSET",
    "AS",
    "ON",
    "JOIN",
    "LEFT",
    "RIGHT",
    "INNER",
    "OUTER",
    "DISTINCT",
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "ASC",
    "DESC",
    "INSERT",
    "INTO",
    "VALUES",
    "UPDATE",
    "SET",
    "DELETE",
    "CREATE",
    "DROP",
    "ALTER",
    "TABLE",
    "USER",
    "SHARED",
    "STREAM",
    "NAMESPACE",
    "NAMESPACES",
    "TABLES",
    "PRIMARY",
    "KEY",
    "DEFAULT",
    "IF",
    "EXISTS",
    "SHOW",
    "DESCRIBE",
    "USE",
    "SUBSCRIBE",
    "TO",
    "FLUSH",
    "STORAGE",
    "BIGINT",
    "INT",
    "SMALLINT",
    "TEXT",
    "BOOLEAN",
    "DOUBLE",
    "FLOAT",
    "TIMESTAMP",
    "DATE",
    "JSON",
    "UUID",
    "DECIMAL",
    "FILE",
    "EMBEDDING",
    "WITH",
    "PASSWORD",
    "ROLE",
    "EXPLAIN",
    "TRUE",
    "FALSE",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "SNOWFLAKE_ID",
    "NOW",
    "AS OF",
];

/// The line editor's helper: completion from the shared catalog, and a statement is only
/// finished at its `;`.
struct ShellHelper {
    catalog: Rc<RefCell<Catalog>>,
    namespace: Rc<RefCell<Option<String>>>,
}

impl Helper for ShellHelper {}
impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}

impl Validator for ShellHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        let input = ctx.input().trim();
        let done = input.is_empty()
            || input.starts_with('\\')
            || ["quit", "exit"].contains(&input)
            || super::terminated(input);
        Ok(if done {
            ValidationResult::Valid(None)
        } else {
            ValidationResult::Incomplete
        })
    }
}

/// Where the word being completed starts in `before`.
fn word_start(before: &str) -> usize {
    before
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_alphanumeric() || matches!(c, '_' | '.' | '\\')))
        .map_or(0, |(i, c)| i + c.len_utf8())
}

impl Catalog {
    /// What may complete `word` in `line` with `namespace` current.
    fn candidates(&self, line: &str, word: &str, namespace: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let lower_line = line.to_ascii_lowercase();
        if word.starts_with('\\') {
            out.extend(super::meta::NAMES.iter().map(|n| n.to_string()));
            return out;
        }
        if let Some((ns, _)) = word.split_once('.') {
            for (n, t, _) in &self.tables {
                if n.eq_ignore_ascii_case(ns) {
                    out.insert(format!("{n}.{t}"));
                }
            }
            return out;
        }
        let lower = word.chars().next().is_some_and(char::is_lowercase);
        if !line.trim_start().starts_with('\\') {
            out.extend(KEYWORDS.iter().map(|k| {
                if lower {
                    k.to_ascii_lowercase()
                } else {
                    (*k).to_owned()
                }
            }));
        }
        out.extend(self.namespaces.iter().cloned());
        for (n, t, columns) in &self.tables {
            out.insert(format!("{n}.{t}"));
            let here = n == namespace;
            if here {
                out.insert(t.clone());
            }
            // The columns of the tables this statement names.
            let named = lower_line.contains(&format!("{n}.{t}"))
                || (here
                    && lower_line
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .any(|w| w == t));
            if named {
                out.extend(columns.iter().cloned());
            }
        }
        out
    }

    /// Fills the catalog from `SHOW NAMESPACES` and `SHOW TABLES` (whose rows hold each
    /// table's columns).
    fn load(&mut self, shell: &mut Shell) {
        self.stale = false;
        self.loaded = true;
        let rows = |shell: &mut Shell, sql: &str| {
            let answer = shell.rt.block_on(shell.session.sql(sql)).ok()?;
            answer.results.into_iter().next()
        };
        if let Some(r) = rows(shell, "SHOW NAMESPACES") {
            let names = super::cells(&r, "namespace_id");
            self.namespaces = names
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
        }
        if let Some(r) = rows(shell, "SHOW TABLES") {
            let ns = super::cells(&r, "namespace_id");
            let names = super::cells(&r, "table_name");
            let columns = super::cells(&r, "columns");
            self.tables = ns
                .iter()
                .zip(&names)
                .zip(columns.iter().chain(std::iter::repeat(&Json::Null)))
                .filter_map(|((n, t), c)| {
                    let columns: Vec<Json> = c
                        .as_str()
                        .and_then(|c| serde_json::from_str(c).ok())
                        .unwrap_or_default();
                    let columns = columns
                        .iter()
                        .filter_map(|c| c["column_name"].as_str().map(str::to_owned))
                        .collect();
                    Some((n.as_str()?.to_owned(), t.as_str()?.to_owned(), columns))
                })
                .collect();
        }
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = line.get(..pos).unwrap_or(line);
        let start = word_start(before);
        let word = &before[start..];
        let namespace = self
            .namespace
            .borrow()
            .clone()
            .unwrap_or_else(|| "default".into());
        let found = self.catalog.borrow().candidates(line, word, &namespace);
        let lower = word.to_lowercase();
        let pairs = found
            .into_iter()
            .filter(|c| c.to_lowercase().starts_with(&lower) && c.len() > word.len())
            .map(|c| Pair {
                display: c.clone(),
                replacement: c,
            })
            .collect();
        Ok((start, pairs))
    }
}

/// The history file, created private (0600) before rustyline writes to it.
fn history_path() -> Option<std::path::PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = super::config_dir().ok()?.join("history");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .ok()?;
    Some(path)
}

/// The prompt: `folddb app> `.
fn prompt(shell: &Shell) -> String {
    match &shell.session.namespace {
        Some(ns) => format!("folddb {ns}> "),
        None => "folddb> ".into(),
    }
}

pub fn run(shell: &mut Shell) -> Result<(), Stop> {
    let who = shell.rt.block_on(shell.session.me());
    match &who {
        Ok((user, role)) => println!(
            "folddb sql {} — {} as {user} ({role}). \\? for help, \\q to quit.",
            env!("CARGO_PKG_VERSION"),
            shell.session.base
        ),
        Err(e) => {
            super::render::print_error(&shell.settings, &super::failure_text(e));
            return Err(if e.is_connection() {
                Stop::Connection
            } else {
                Stop::Failed
            });
        }
    }
    let config = rustyline::Config::builder()
        .auto_add_history(false)
        .history_ignore_space(true)
        .max_history_size(5000)
        .map_err(|_| Stop::Failed)?
        .completion_type(rustyline::CompletionType::List)
        .build();
    let mut editor: Editor<ShellHelper, FileHistory> = match Editor::with_config(config) {
        Ok(e) => e,
        Err(e) => {
            super::render::print_error(&shell.settings, &format!("error: no line editor: {e}"));
            return Err(Stop::Failed);
        }
    };
    let namespace = Rc::new(RefCell::new(shell.session.namespace.clone()));
    shell.catalog.borrow_mut().stale = true;
    editor.set_helper(Some(ShellHelper {
        catalog: shell.catalog.clone(),
        namespace: namespace.clone(),
    }));
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    loop {
        if shell.catalog.borrow().stale || !shell.catalog.borrow().loaded {
            let mut catalog = std::mem::take(&mut *shell.catalog.borrow_mut());
            catalog.load(shell);
            *shell.catalog.borrow_mut() = catalog;
        }
        namespace.replace(shell.session.namespace.clone());
        let line = match editor.readline(&prompt(shell)) {
            Ok(line) => line,
            // Ctrl-C drops the statement being typed; Ctrl-D ends the session.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => return Ok(()),
            Err(e) => {
                super::render::print_error(
                    &shell.settings,
                    &format!("error: reading the terminal: {e}"),
                );
                return Err(Stop::Failed);
            }
        };
        let input = line.trim();
        if input.is_empty() {
            continue;
        }
        // Not kept: a line starting with a space, and statements that carry a password.
        if !input.to_ascii_uppercase().contains("PASSWORD") {
            let _ = editor.add_history_entry(line.trim_end());
            if let Some(h) = &history {
                let _ = editor.append_history(h);
            }
        }
        if ["quit", "exit"].contains(&input) {
            return Ok(());
        }
        // A failure was printed; the session goes on.
        match shell.run_text(input) {
            Err(Stop::Quit) => return Ok(()),
            Ok(()) | Err(Stop::Failed | Stop::Connection) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog {
            stale: false,
            loaded: true,
            namespaces: vec!["app".into(), "default".into()],
            tables: vec![
                (
                    "app".into(),
                    "todos".into(),
                    vec!["id".into(), "title".into()],
                ),
                ("app".into(), "tags".into(), vec!["tag".into()]),
                ("other".into(), "things".into(), vec!["thing_id".into()]),
            ],
        }
    }

    fn complete(line: &str, namespace: &str) -> Vec<String> {
        let word = &line[word_start(line)..];
        let lower = word.to_lowercase();
        catalog()
            .candidates(line, word, namespace)
            .into_iter()
            .filter(|c| c.to_lowercase().starts_with(&lower) && c.len() > word.len())
            .collect()
    }

    #[test]
    fn completion_offers_keywords_names_and_the_named_tables_columns() {
        assert_eq!(complete("SEL", "default"), ["SELECT"]);
        assert_eq!(complete("sel", "default"), ["select"]);
        assert_eq!(
            complete("SELECT * FROM app.t", "default"),
            ["app.tags", "app.todos"]
        );
        // Columns only of the tables the statement names.
        assert_eq!(complete("SELECT ti", "default"), ["timestamp"]);
        assert_eq!(
            complete("SELECT * FROM app.todos WHERE ti", "default"),
            ["timestamp", "title"]
        );
        assert_eq!(complete("SELECT * FROM todos WHERE tit", "app"), ["title"]);
        assert_eq!(complete("SELECT * FROM to", "app"), ["todos"]);
        assert_eq!(complete("\\d", "app"), ["\\dn", "\\dt", "\\du"]);
        assert_eq!(complete("\\d app.to", "app"), ["app.todos"]);
    }
}
