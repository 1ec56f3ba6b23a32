//! `folddb sql`, the shell, driven as a user would: non-interactive modes (`-c`, `-f`, a
//! pipe) with their output formats and exit statuses, the kept session, and the interactive
//! REPL under a pseudo-terminal (completion, multi-line statements, history, `\d`, live mode
//! receiving another client's changes, resuming after the server restarts).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use folddb_tests::{DBA, Server, folddb_bin, free_port, text};
use rexpect::session::PtySession;
use serde_json::{Value as Json, json};

/// `folddb sql --url <server> args…` with its config directory in `config`.
fn shell(url: &str, config: &Path) -> Command {
    let mut cmd = Command::new(folddb_bin());
    cmd.args(["sql", "--url", url])
        .env("XDG_CONFIG_HOME", config)
        .env("HOME", config)
        .env_remove("FOLDDB_PASSWORD")
        .env("NO_COLOR", "1");
    cmd
}

fn run(mut cmd: Command, stdin: Option<&str>) -> (Output, String, String) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("folddb sql starts");
    let input = stdin.unwrap_or("").to_owned();
    let mut pipe = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = pipe.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("folddb sql ends");
    let _ = writer.join();
    let (stdout, stderr) = text(&out);
    (out, stdout, stderr)
}

async fn server_with_todos(dir: &Path) -> (Server, String) {
    let server = Server::start(&dir.join("data")).await;
    let token = server.setup_and_login().await;
    server
        .ok_all(
            &token,
            &[
                "CREATE NAMESPACE app",
                "CREATE USER TABLE app.todos (id BIGINT PRIMARY KEY, title TEXT NOT NULL, \
                 note TEXT, done BOOLEAN DEFAULT false)",
                "INSERT INTO app.todos (id, title, note) VALUES (1, 'buy milk', NULL), \
                 (2, 'naïve, \"quoted\"', 'n'), (10, 'x', NULL)",
            ],
        )
        .await;
    (server, token)
}

#[tokio::test(flavor = "multi_thread")]
async fn scripts_get_tables_json_csv_and_exit_statuses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, token) = server_with_todos(dir.path()).await;
    let url = server.url("");
    let config = dir.path().join("config");
    let select = "SELECT id, title, note FROM app.todos ORDER BY id";

    // Logging in with FOLDDB_PASSWORD: a table, NULLs visible, numbers on the right.
    let mut cmd = shell(&url, &config);
    cmd.args(["--user", DBA.0, "-c", select])
        .env("FOLDDB_PASSWORD", DBA.1);
    let (out, stdout, stderr) = run(cmd, None);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout,
        " id | title           | note\n\
         ----+-----------------+------\n  \
          1 | buy milk        | NULL\n  \
          2 | naïve, \"quoted\" | n\n \
         10 | x               | NULL\n\
         (3 rows)\n"
    );

    // The session is kept, private: the next run needs neither --user nor the password.
    let dir_mode = std::fs::metadata(config.join("folddb"))
        .expect("config dir")
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let creds = config.join("folddb/credentials.json");
    let mode = std::fs::metadata(&creds)
        .expect("credentials kept")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut cmd = shell(&url, &config);
    cmd.args(["--format", "csv", "-c", select]);
    let (out, stdout, stderr) = run(cmd, None);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout,
        "id,title,note\n1,buy milk,\n2,\"naïve, \"\"quoted\"\"\",n\n10,x,\n"
    );

    // JSON: exactly the rows the API returns, keyed by column.
    let mut cmd = shell(&url, &config);
    cmd.args(["--format", "json", "-c", select]);
    let (out, stdout, _) = run(cmd, None);
    assert!(out.status.success());
    let printed: Vec<Json> = serde_json::from_str(&stdout).expect("JSON output");
    let api = folddb_tests::rows(&server.ok(&token, select).await);
    assert_eq!(printed.len(), api.len());
    for (p, a) in printed.iter().zip(&api) {
        assert_eq!(p["id"], a[0]);
        assert_eq!(p["title"], a[1]);
        assert_eq!(p["note"], a[2]);
    }

    // An expired access token is refreshed with the kept refresh token.
    let mut kept: Json =
        serde_json::from_slice(&std::fs::read(&creds).expect("read")).expect("json");
    let session = &mut kept["sessions"][&url];
    session["access_token"] = json!("not-a-token");
    session["expires_at"] = json!("2000-01-01T00:00:00+00:00");
    std::fs::write(&creds, kept.to_string()).expect("write");
    let mut cmd = shell(&url, &config);
    cmd.args(["-c", "SELECT COUNT(*) AS n FROM app.todos"]);
    let (out, stdout, stderr) = run(cmd, None);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(" 3\n"), "{stdout}");
    let kept: Json = serde_json::from_slice(&std::fs::read(&creds).expect("read")).expect("json");
    assert_ne!(kept["sessions"][&url]["access_token"], "not-a-token");

    // A file: USE carried to later statements, a backslash command, and the first failure
    // stops it (exit 1) before the statements after it.
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        "USE app;\nINSERT INTO todos (id, title)\n  VALUES (20, 'from a file');\n\\dt app\n\
         SELECT title FROM todos WHERE id = 20;\nSELECT * FROM missing_table;\n\
         INSERT INTO todos (id, title) VALUES (21, 'never');\n",
    )
    .expect("script");
    let mut cmd = shell(&url, &config);
    cmd.arg("-f").arg(&script);
    let (out, stdout, stderr) = run(cmd, None);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("Inserted 1 row(s)"), "{stdout}");
    assert!(
        stdout.contains(" app          | todos      | USER"),
        "{stdout}"
    );
    assert!(stdout.contains(" from a file\n(1 row)"), "{stdout}");
    assert!(stderr.starts_with("ERROR ["), "{stderr}");
    assert!(stderr.contains("missing_table"), "{stderr}");
    let n = server
        .ok(&token, "SELECT COUNT(*) FROM app.todos WHERE id = 21")
        .await;
    assert_eq!(
        folddb_tests::rows(&n)[0][0],
        "0",
        "nothing after the failure ran"
    );

    // A pipe.
    let (out, stdout, _) = run(shell(&url, &config), Some("SHOW NAMESPACES;\n"));
    assert!(out.status.success());
    assert!(stdout.contains(" app "), "{stdout}");

    // Bad input: a clear line each, and the exit status says what failed.
    let mut cmd = shell(&url, &config);
    cmd.args(["-c", "\\nope"]);
    let (out, _, stderr) = run(cmd, None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr,
        "error: invalid command \\nope; \\? lists the commands\n"
    );
    let mut cmd = shell(&url, &config);
    cmd.args(["-c", "SELEC oops"]);
    let (out, _, stderr) = run(cmd, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.starts_with("ERROR [INVALID_SQL]"), "{stderr}");

    let mut cmd = shell(&url, &dir.path().join("other-config"));
    cmd.args(["--user", DBA.0, "-c", "SELECT 1"])
        .env("FOLDDB_PASSWORD", "wrong");
    let (out, stdout, stderr) = run(cmd, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout.is_empty());
    assert!(stderr.contains("Invalid credentials"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let mut cmd = shell(&url, &dir.path().join("other-config"));
    cmd.args(["-c", "SELECT 1"]);
    let (out, _, stderr) = run(cmd, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("--user"), "{stderr}");

    let mut cmd = shell(&url, &config);
    cmd.args(["--token", "forged.token.value", "-c", "SELECT 1"]);
    let (out, _, stderr) = run(cmd, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.starts_with("ERROR [INVALID_CREDENTIALS]"),
        "{stderr}"
    );

    let mut cmd = shell(&url, &config);
    cmd.args([
        "--token",
        &token,
        "--format",
        "csv",
        "-c",
        "SELECT 1 AS one",
    ]);
    let (out, stdout, _) = run(cmd, None);
    assert!(out.status.success());
    assert_eq!(stdout, "one\n1\n");

    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let mut cmd = shell(&nowhere, &config);
    cmd.args(["--user", DBA.0, "-c", "SELECT 1"])
        .env("FOLDDB_PASSWORD", DBA.1);
    let (out, _, stderr) = run(cmd, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.starts_with(&format!("error: cannot reach the server at {nowhere}")),
        "{stderr}"
    );

    // --logout forgets the session.
    let mut cmd = shell(&url, &config);
    cmd.arg("--logout");
    assert!(run(cmd, None).0.status.success());
    let mut cmd = shell(&url, &config);
    cmd.args(["-c", "SELECT 1"]);
    assert_eq!(run(cmd, None).0.status.code(), Some(2));
    server.stop();
}

/// Types `text` at the terminal.
fn keys(p: &mut PtySession, text: &str) {
    p.send(text).expect("typed");
    p.flush().expect("sent");
}

/// The shell in a pseudo-terminal, logged in as the DBA.
fn interactive(url: &str, config: &Path) -> PtySession {
    let mut cmd = shell(url, config);
    cmd.args(["--user", DBA.0])
        .env("FOLDDB_PASSWORD", DBA.1)
        .env("TERM", "xterm");
    let mut p = rexpect::session::spawn_command(cmd, Some(20_000)).expect("a pty");
    p.exp_string("\\? for help").expect("the banner");
    p.exp_string("folddb> ").expect("the prompt");
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn the_repl_completes_spans_lines_remembers_and_describes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, _) = server_with_todos(dir.path()).await;
    let url = server.url("");
    let config = dir.path().join("config");
    let mut p = interactive(&url, &config);

    p.send_line("USE app;").expect("send");
    p.exp_string("folddb app> ")
        .expect("USE carried into the prompt");
    // Tab completes a table of the current namespace, then a column of the named table.
    keys(&mut p, "SELECT id, title FROM tod");
    keys(&mut p, "\t");
    keys(&mut p, " WHERE tit");
    keys(&mut p, "\t");
    keys(&mut p, " = 'buy milk';\r");
    p.exp_string("buy milk").expect("completed query ran");
    p.exp_string("(1 row)").expect("row count");
    p.exp_string("Time: ").expect("timing");
    // A statement over two lines runs at its `;`.
    p.send_line("SELECT COUNT(*) AS n").expect("send");
    p.send_line("FROM todos;").expect("send");
    p.exp_regex(r"n\s*\r?\n-+\r?\n\s*3\r?\n\(1 row\)")
        .expect("multi-line result");
    // \d: type, columns, keys.
    p.send_line("\\d todos").expect("send");
    p.exp_string("USER table app.todos").expect("table type");
    p.exp_regex(r"id\s*\|\s*BigInt\s*\|\s*false\s*\|\s*true")
        .expect("the key column");
    p.exp_string("(6 rows)")
        .expect("columns incl. _seq and _deleted");
    // Errors: one line, and the shell goes on.
    p.send_line("\\nope").expect("send");
    p.exp_string("invalid command \\nope").expect("meta error");
    p.send_line("SELECT * FROM nowhere;").expect("send");
    p.exp_string("ERROR [").expect("statement error");
    p.send_line("\\dn").expect("send");
    p.exp_string(" app ").expect("namespaces");
    // \i runs a file's statements.
    let file = dir.path().join("include.sql");
    std::fs::write(&file, "SELECT 'from a file' AS src;\n").expect("file");
    p.send_line(&format!("\\i {}", file.display()))
        .expect("send");
    p.exp_string("from a file").expect("\\i ran the file");
    // Ctrl-C gives up on a long query; the shell goes on.
    p.send_line("SELECT COUNT(*) FROM generate_series(1, 100000000000);")
        .expect("send");
    std::thread::sleep(Duration::from_millis(500));
    p.send_control('c').expect("Ctrl-C");
    p.exp_string("Cancelled").expect("the query given up");
    p.exp_string("folddb app> ").expect("back at the prompt");
    // A statement with a password is not kept in the history.
    p.send_line("ALTER USER nobody SET PASSWORD 'secret-pass-1';")
        .expect("send");
    p.exp_string("ERROR [").expect("no such user");
    p.send_line("\\q").expect("send");
    p.exp_eof().expect("\\q ends it");

    // History across sessions, private.
    let history = config.join("folddb/history");
    let mode = std::fs::metadata(&history)
        .expect("history kept")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let kept = std::fs::read_to_string(&history).expect("history");
    assert!(kept.contains("FROM todos;"), "{kept}");
    assert!(!kept.contains("secret-pass-1"), "{kept}");
    let mut p = interactive(&url, &config);
    // Up past `\q`, the long query and `\i` to `\dn`.
    for _ in 0..4 {
        keys(&mut p, "\x1b[A");
    }
    keys(&mut p, "\r");
    p.exp_string("folddb> \\dn").expect("recalled from history");
    p.exp_string("table_count").expect("and run");
    p.send_control('d').expect("Ctrl-D");
    p.exp_eof().expect("Ctrl-D ends it");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_shows_another_clients_changes_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, token) = server_with_todos(dir.path()).await;
    let port = server.port;
    let url = server.url("");
    let config = dir.path().join("config");
    let mut p = interactive(&url, &config);

    p.send_line("\\watch SELECT id, title FROM app.todos WHERE id < 100")
        .expect("send");
    p.exp_string("(3 rows)").expect("the initial rows");
    p.exp_string("Watching for changes").expect("watching");
    server
        .ok(
            &token,
            "INSERT INTO app.todos (id, title) VALUES (5, 'watch me')",
        )
        .await;
    p.exp_regex(r"insert _seq=\d+  id=5 title='watch me'")
        .expect("the insert");
    server
        .ok(
            &token,
            "UPDATE app.todos SET title = 'watched' WHERE id = 5",
        )
        .await;
    p.exp_regex(r"update _seq=\d+  id=5 title='watch me' -> watched")
        .expect("the update");
    server
        .ok(
            &token,
            "INSERT INTO app.todos (id, title) VALUES (500, 'filtered out')",
        )
        .await;
    server
        .ok(&token, "DELETE FROM app.todos WHERE id = 5")
        .await;
    let (before, _) = p
        .exp_regex(r"delete _seq=\d+  id=5 title=watched")
        .expect("the delete");
    assert!(!before.contains("filtered out"), "{before}");

    // The server restarts: the watch resumes after the last _seq it showed.
    server.stop();
    p.exp_string("connection lost").expect("the drop is said");
    let server = Server::start_on(&dir.path().join("data"), port, &[]).await;
    let token = server.login(DBA.0, DBA.1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server
        .ok(
            &token,
            "INSERT INTO app.todos (id, title) VALUES (6, 'after restart')",
        )
        .await;
    p.exp_regex(r"(insert|change) _seq=\d+  id=6 title='after restart'")
        .expect("resumed");

    // Ctrl-C ends live mode, not the shell.
    p.send_control('c').expect("Ctrl-C");
    p.exp_string("folddb> ").expect("back at the prompt");
    p.send_line("\\tail app.todos").expect("send");
    p.exp_string("Following app.todos").expect("tailing");
    server
        .ok(
            &token,
            "INSERT INTO app.todos (id, title) VALUES (7, 'tailed')",
        )
        .await;
    p.exp_regex(r"insert _seq=\d+  id=7 title=tailed note=NULL done=false  \(owner admin\)")
        .expect("tail record");
    p.send_control('c').expect("Ctrl-C");
    p.exp_string("folddb> ").expect("back at the prompt");
    p.send_line("SELECT title FROM app.todos WHERE id = 7;")
        .expect("send");
    p.exp_string("tailed").expect("the shell still works");
    p.send_line("\\q").expect("send");
    p.exp_eof().expect("quit");
    server.stop();
}
