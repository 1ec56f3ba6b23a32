//! `folddb sql`: the interactive SQL shell, and the same for scripts (`-c`, `-f`, a pipe).
//!
//! It logs in once and keeps the session (access and refresh tokens) in the user's config
//! directory, private to them; runs statements one by one over `POST /v1/api/sql`; prints
//! them as tables, JSON or CSV; and watches live queries and log tails over `/v1/ws`.

mod live;
mod meta;
mod render;
mod repl;
mod session;

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use meta::Meta;
use render::{Expanded, Format, Settings};
use session::{Failure, Login, Session, TokenStore};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  folddb sql --user admin                          interactive (password asked once, then kept)
  folddb sql -c 'SELECT * FROM app.todos'          one statement; exit status 1 if it fails
  folddb sql -f setup.sql                          a file of statements, stopping at the first error
  echo 'SHOW NAMESPACES;' | folddb sql --format csv
  FOLDDB_PASSWORD=… folddb sql --user ci -c '\\dt app'

Sessions are kept in $XDG_CONFIG_HOME/folddb/credentials.json (mode 0600), one per server.
Exit status: 0 success, 1 a statement failed, 2 no connection or login.")]
pub struct SqlArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// User to log in as (the password is asked for, or read from FOLDDB_PASSWORD). Default:
    /// the user of the session kept for this server.
    #[arg(long, short = 'u')]
    user: Option<String>,
    /// An access token to send as is (nothing is kept or refreshed).
    #[arg(long, conflicts_with = "user")]
    token: Option<String>,
    /// Run this SQL (or backslash command) and exit; repeat for more.
    #[arg(short = 'c', long = "command")]
    command: Vec<String>,
    /// Run the SQL and commands in this file and exit.
    #[arg(short = 'f', long = "file", conflicts_with = "command")]
    file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Namespace of unqualified table names (as `USE ns`).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Print how long each statement took (the default in a terminal).
    #[arg(long)]
    timing: bool,
    /// Forget the session kept for this server, and exit.
    #[arg(long)]
    logout: bool,
}

/// Why running input stopped.
#[derive(Debug)]
enum Stop {
    /// `\q`.
    Quit,
    /// A statement or command failed (exit status 1).
    Failed,
    /// The server could not be reached (exit status 2).
    Connection,
}

/// A running shell: its session, its output settings, the runtime requests run on.
pub struct Shell {
    rt: tokio::runtime::Runtime,
    session: Session,
    settings: Settings,
    interactive: bool,
    /// Names for completion, reloaded after DDL.
    catalog: std::rc::Rc<std::cell::RefCell<repl::Catalog>>,
}

/// The shell's directory in the user's config directory: created private (0700).
fn config_dir() -> anyhow::Result<PathBuf> {
    let dir = dirs::config_dir()
        .ok_or_else(|| anyhow::anyhow!("no config directory: set XDG_CONFIG_HOME or HOME"))?
        .join("folddb");
    private_dir(&dir)?;
    Ok(dir)
}

/// Creates `dir` (and its parents) if missing, readable by its owner only.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    Ok(())
}

/// A line read from the terminal (echoed).
fn ask(prompt: &str) -> std::io::Result<String> {
    let mut err = std::io::stderr();
    write!(err, "{prompt}")?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// The terminal's width, if standard output is one.
fn terminal_width() -> Option<usize> {
    let out = std::io::stdout();
    if !out.is_terminal() {
        return None;
    }
    rustix::termios::tcgetwinsize(&out)
        .ok()
        .map(|w| usize::from(w.ws_col))
        .filter(|&w| w > 0)
}

pub fn run(args: SqlArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let interactive =
        args.command.is_empty() && args.file.is_none() && std::io::stdin().is_terminal();
    let base = args.url.trim_end_matches('/').to_owned();
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let settings = Settings {
        format: args.format,
        expanded: if interactive {
            Expanded::Auto
        } else {
            Expanded::Off
        },
        timing: args.timing || interactive,
        color,
        width: terminal_width(),
    };
    let store = TokenStore::new(config_dir()?);
    if args.logout {
        store.forget(&base)?;
        eprintln!("Forgot the session for {base}.");
        return Ok(ExitCode::SUCCESS);
    }
    let connected = match args.token {
        Some(token) => Ok(Session::with_token(&base, token)),
        None => rt.block_on(Session::connect(
            &base,
            store,
            Login {
                user: args.user,
                prompt: std::io::stdin().is_terminal(),
            },
        )),
    };
    let mut session = match connected {
        Ok(s) => s,
        Err(e) => {
            render::print_error(&settings, &failure_text(&e));
            return Ok(ExitCode::from(2));
        }
    };
    session.namespace = args.namespace;
    let mut shell = Shell {
        rt,
        session,
        settings,
        interactive,
        catalog: Default::default(),
    };
    let input = if !args.command.is_empty() {
        Some(args.command)
    } else if let Some(file) = &args.file {
        match std::fs::read_to_string(file) {
            Ok(text) => Some(vec![text]),
            Err(e) => {
                render::print_error(
                    &shell.settings,
                    &format!("cannot read {}: {e}", file.display()),
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    } else if !interactive {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Some(vec![text])
    } else {
        None
    };
    let outcome = match input {
        Some(texts) => texts.iter().try_for_each(|t| shell.run_text(t)),
        None => repl::run(&mut shell),
    };
    Ok(match outcome {
        Ok(()) | Err(Stop::Quit) => ExitCode::SUCCESS,
        Err(Stop::Failed) => ExitCode::FAILURE,
        Err(Stop::Connection) => ExitCode::from(2),
    })
}

/// A failure as one line: `ERROR [CODE]: message`, or why the server was not reached.
fn failure_text(e: &Failure) -> String {
    match e {
        Failure::Server { code, message, .. } => format!("ERROR [{code}]: {message}"),
        Failure::Unreachable(why) => format!("error: {why}"),
    }
}

/// Whether `text` ends where a statement does: outside quotes, comments and parentheses,
/// after a `;`.
pub fn terminated(text: &str) -> bool {
    let trimmed = text.trim_end();
    trimmed.ends_with(';')
        && folddb_query::split::split_statements(&format!("{trimmed}\nx"))
            .is_ok_and(|parts| parts.last() == Some(&"x"))
}

/// The namespace a `USE ns` / `USE NAMESPACE ns` / `SET NAMESPACE ns` statement names.
fn used_namespace(statement: &str) -> Option<String> {
    let words: Vec<&str> = statement.split_whitespace().collect();
    let name = match words.as_slice() {
        [u, n] if u.eq_ignore_ascii_case("use") => n,
        [u, k, n]
            if (u.eq_ignore_ascii_case("use") || u.eq_ignore_ascii_case("set"))
                && k.eq_ignore_ascii_case("namespace") =>
        {
            n
        }
        _ => return None,
    };
    Some(
        name.trim_end_matches(';')
            .trim_matches(['"', '`', '\''])
            .to_ascii_lowercase(),
    )
}

/// The first word of a statement, upper-cased.
fn first_word(statement: &str) -> String {
    statement
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

impl Shell {
    /// Runs a script's text: backslash commands (a line each) and statements (ending in
    /// `;`, a last one without), stopping at the first failure.
    fn run_text(&mut self, text: &str) -> Result<(), Stop> {
        let mut buffer = String::new();
        for line in text.lines() {
            if buffer.trim().is_empty() && line.trim_start().starts_with('\\') {
                buffer.clear();
                self.run_meta(line.trim())?;
                continue;
            }
            buffer.push_str(line);
            buffer.push('\n');
            if terminated(&buffer) {
                self.run_sql(&std::mem::take(&mut buffer))?;
            }
        }
        if buffer.trim().is_empty() {
            Ok(())
        } else {
            self.run_sql(&buffer)
        }
    }

    /// Runs each statement of `text` as its own request.
    fn run_sql(&mut self, text: &str) -> Result<(), Stop> {
        let statements = match folddb_query::split::split_statements(text) {
            Ok(s) => s,
            Err(e) => {
                render::print_error(&self.settings, &format!("ERROR [INVALID_SQL]: {e}"));
                return Err(Stop::Failed);
            }
        };
        for statement in statements {
            let upper = first_word(statement);
            if upper == "SUBSCRIBE" {
                let query = statement
                    .split_whitespace()
                    .skip(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                self.live(Meta::Watch(query))?;
                continue;
            }
            self.statement(statement)?;
            if let Some(ns) = used_namespace(statement) {
                self.session.namespace = Some(ns);
            }
            if matches!(upper.as_str(), "CREATE" | "DROP" | "ALTER" | "USE" | "SET") {
                self.catalog.borrow_mut().stale = true;
            }
        }
        Ok(())
    }

    /// Sends one request and waits for it: Ctrl-C in a terminal gives up on it.
    fn request(&mut self, sql: &str) -> Result<session::Answer, Stop> {
        let session = &mut self.session;
        let answer = if self.interactive {
            self.rt.block_on(async {
                tokio::select! {
                    a = session.sql(sql) => Some(a),
                    _ = tokio::signal::ctrl_c() => None,
                }
            })
        } else {
            Some(self.rt.block_on(session.sql(sql)))
        };
        match answer {
            None => {
                render::print_error(
                    &self.settings,
                    "Cancelled (the server may still finish the statement).",
                );
                Err(Stop::Failed)
            }
            Some(Ok(a)) => Ok(a),
            Some(Err(e)) => {
                render::print_error(&self.settings, &failure_text(&e));
                Err(if e.is_connection() {
                    Stop::Connection
                } else {
                    Stop::Failed
                })
            }
        }
    }

    /// Runs one statement and prints its results.
    fn statement(&mut self, sql: &str) -> Result<(), Stop> {
        let answer = self.request(sql)?;
        // The terminal may have been resized since.
        self.settings.width = terminal_width();
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for r in &answer.results {
            if let Err(e) = render::print_result(&mut out, r, &self.settings) {
                return self.broken_pipe(&e);
            }
        }
        if self.settings.timing {
            let time = format!(
                "Time: {:.3} ms (server {:.3} ms)",
                answer.elapsed.as_secs_f64() * 1e3,
                answer.took_ms
            );
            // Beside a table; out of the way of JSON and CSV.
            if self.settings.format == Format::Table {
                let _ = writeln!(out, "{time}");
            } else {
                eprintln!("{time}");
            }
        }
        out.flush().or_else(|e| self.broken_pipe(&e))
    }

    /// Output that cannot be written (a closed pipe): stop quietly, as a failure.
    fn broken_pipe(&self, e: &std::io::Error) -> Result<(), Stop> {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            render::print_error(&self.settings, &format!("error: writing the output: {e}"));
        }
        Err(Stop::Failed)
    }

    /// Runs a query whose result only some columns of are shown.
    fn show(&mut self, sql: &str, columns: &[&str]) -> Result<(), Stop> {
        let mut answer = self.request(sql)?;
        for r in &mut answer.results {
            project(r, columns);
            let mut out = std::io::stdout().lock();
            if let Err(e) = render::print_result(&mut out, r, &self.settings) {
                return self.broken_pipe(&e);
            }
        }
        Ok(())
    }

    fn run_meta(&mut self, line: &str) -> Result<(), Stop> {
        let command = match meta::parse(line) {
            Ok(c) => c,
            Err(e) => {
                render::print_error(&self.settings, &format!("error: {e}"));
                return Err(Stop::Failed);
            }
        };
        let say = |text: String| println!("{text}");
        match command {
            Meta::Quit => return Err(Stop::Quit),
            Meta::Help => say(meta::HELP.to_owned()),
            Meta::ConnInfo => {
                let ns = self.session.namespace.as_deref().unwrap_or("default");
                let who = self.session.user();
                let who = if who.is_empty() { "the --token's user" } else { who };
                say(format!("Connected to {} as {who}, namespace {ns}.", self.session.base));
            }
            Meta::Timing(on) => {
                self.settings.timing = on.unwrap_or(!self.settings.timing);
                say(format!("Timing is {}.", if self.settings.timing { "on" } else { "off" }));
            }
            Meta::Expanded(mode) => {
                self.settings.expanded = mode.unwrap_or(match self.settings.expanded {
                    Expanded::On => Expanded::Off,
                    _ => Expanded::On,
                });
                say(format!("Expanded display is {:?}.", self.settings.expanded).to_lowercase());
            }
            Meta::Format(f) => {
                self.settings.format = f;
                say(format!("Output format is {f:?}.").to_lowercase());
            }
            Meta::Namespaces => self.show("SHOW NAMESPACES", &["namespace_id", "description", "table_count", "created_at"])?,
            Meta::Tables(ns) => {
                let sql = ns.map_or("SHOW TABLES".into(), |ns| format!("SHOW TABLES IN {ns}"));
                self.show(&sql, &["namespace_id", "table_name", "table_type", "storage_id", "created_at"])?;
            }
            Meta::Describe(table) => self.describe(&table)?,
            Meta::Users => self.show(
                "SELECT user_id, role, email, auth_type, created_at, last_login_at FROM system.users \
                 WHERE deleted_at IS NULL ORDER BY user_id",
                &[],
            )?,
            Meta::Live => self.show(
                "SELECT live_id, user_id, namespace_id, table_name, query, status, changes, created_at \
                 FROM system.live ORDER BY created_at",
                &[],
            )?,
            Meta::Include(file) => {
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    render::print_error(&self.settings, &format!("error: cannot read {file}: {e}"));
                    Stop::Failed
                })?;
                self.run_text(&text)?;
            }
            live @ (Meta::Watch(_) | Meta::Tail(_)) => self.live(live)?,
        }
        Ok(())
    }

    /// `\d table`: its type and options, then its columns.
    fn describe(&mut self, table: &str) -> Result<(), Stop> {
        let (ns, name) = match table.split_once('.') {
            Some((ns, t)) => (ns.to_owned(), t.to_owned()),
            None => (
                self.session
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                table.to_owned(),
            ),
        };
        let tables = self.request(&format!("SHOW TABLES IN {ns}"))?;
        let Some(r) = tables.results.first() else {
            return Err(Stop::Failed);
        };
        let at = |n: &str| r.schema.iter().position(|c| c.name == n);
        let row = r.rows.iter().flatten().find(|row| {
            at("table_name")
                .and_then(|i| row.get(i))
                .and_then(|v| v.as_str())
                == Some(name.as_str())
        });
        let Some(row) = row else {
            render::print_error(&self.settings, &format!("error: no table {ns}.{name}"));
            return Err(Stop::Failed);
        };
        let field = |n: &str| at(n).and_then(|i| row.get(i)).cloned().unwrap_or_default();
        let kind = field("table_type");
        println!(
            "{} table {ns}.{name} (schema version {}, storage {})",
            kind.as_str().unwrap_or("?"),
            field("schema_version"),
            field("storage_id").as_str().unwrap_or("?"),
        );
        self.show(
            &format!("DESCRIBE TABLE {ns}.{name}"),
            &[
                "column_name",
                "data_type",
                "is_nullable",
                "is_primary_key",
                "column_default",
                "column_comment",
            ],
        )?;
        let options: serde_json::Value = field("options")
            .as_str()
            .and_then(|o| serde_json::from_str(o).ok())
            .unwrap_or_default();
        let set: Vec<String> = options
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k}={}", render::cell_text(v, None)))
            .collect();
        if !set.is_empty() {
            println!("Options: {}", set.join(", "));
        }
        Ok(())
    }

    /// `\watch` and `\tail`: until Ctrl-C, or the server refuses.
    fn live(&mut self, what: Meta) -> Result<(), Stop> {
        let (session, settings) = (&mut self.session, &self.settings);
        let outcome = self.rt.block_on(async {
            let run = async {
                match &what {
                    Meta::Tail(table) => live::tail(session, table, settings).await,
                    Meta::Watch(sql) => live::watch(session, sql, settings).await,
                    _ => Ok(()),
                }
            };
            tokio::select! {
                r = run => r,
                _ = tokio::signal::ctrl_c() => Ok(()),
            }
        });
        outcome.map_err(|e| {
            render::print_error(settings, &format!("ERROR {e:#}"));
            Stop::Failed
        })
    }
}

/// The values of column `name` in `r`.
fn cells(r: &session::QueryResult, name: &str) -> Vec<serde_json::Value> {
    let Some(i) = r.schema.iter().position(|c| c.name == name) else {
        return Vec::new();
    };
    r.rows
        .iter()
        .flatten()
        .map(|row| row.get(i).cloned().unwrap_or_default())
        .collect()
}

/// Keeps only `columns` of `r` (all when empty), in that order.
fn project(r: &mut session::QueryResult, columns: &[&str]) {
    if columns.is_empty() {
        return;
    }
    let keep: Vec<usize> = columns
        .iter()
        .filter_map(|name| r.schema.iter().position(|c| c.name == *name))
        .collect();
    r.schema = keep.iter().map(|&i| r.schema[i].clone()).collect();
    if let Some(rows) = &mut r.rows {
        for row in rows {
            *row = keep
                .iter()
                .map(|&i| row.get(i).cloned().unwrap_or_default())
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_is_complete_at_a_semicolon_outside_quotes_and_comments() {
        assert!(terminated("SELECT 1;"));
        assert!(terminated("SELECT 1;  \n"));
        assert!(terminated("SELECT ';';"));
        assert!(!terminated("SELECT 1"));
        assert!(!terminated("SELECT ';"));
        assert!(!terminated("SELECT 1 -- a comment;"));
        assert!(!terminated("EXECUTE AS USER 'a' (SELECT 1;"));
        assert!(!terminated("SELECT /* ; */ 1 /* ;"));
    }

    #[test]
    fn use_statements_name_their_namespace() {
        assert_eq!(used_namespace("USE app"), Some("app".into()));
        assert_eq!(used_namespace("use namespace App;"), Some("app".into()));
        assert_eq!(used_namespace("SET NAMESPACE \"x\""), Some("x".into()));
        assert_eq!(used_namespace("SET x = 1"), None);
        assert_eq!(used_namespace("SELECT * FROM app.t"), None);
    }
}
