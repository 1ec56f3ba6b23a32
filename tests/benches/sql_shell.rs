//! `folddb sql` next to psql (#22): start-up to the first prompt (in a pseudo-terminal), and
//! a `-c "SELECT …"` round trip of a 10,000-row result printed as a table and as CSV (the
//! whole output read from a pipe). Starts `folddb` (whichever `folddb_tests` finds) on a
//! loopback port with a temporary data directory; with `FOLDDB_BENCH_PSQL` set to a
//! PostgreSQL URL, the same 10,000 rows are loaded there and psql is measured the same way.
//! Prints the medians of one run, and their ratios.
//!
//! `FOLDDB_BENCH_PSQL=postgresql://postgres@127.0.0.1:15432/postgres \
//!  cargo bench -p folddb-tests --bench sql_shell [-- ROUNDS]`

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use folddb_tests::{DBA, Server, folddb_bin};

const ROWS: usize = 10_000;

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

/// The time `cmd` takes to run to its end with its output read (and checked) from a pipe.
fn round_trip(cmd: &mut Command, expect_lines: usize) -> Duration {
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("runs");
    let took = start.elapsed();
    assert!(out.status.success(), "{cmd:?} failed");
    let lines = out.stdout.iter().filter(|&&b| b == b'\n').count();
    assert!(lines >= expect_lines, "{cmd:?}: {lines} lines");
    took
}

/// The time from spawning `cmd` in a pseudo-terminal to `prompt` appearing (read from the
/// terminal as it comes, not polled).
fn to_prompt(cmd: Command, prompt: &str, quit: &str) -> Duration {
    use std::io::{Read, Write};
    let start = Instant::now();
    let process = rexpect::process::PtyProcess::new(cmd).expect("a pty");
    let mut tty = process.get_file_handle().expect("the pty");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(prompt) {
        let n = tty.read(&mut buf).expect("output before the prompt");
        assert!(
            n > 0,
            "ended before the prompt: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let took = start.elapsed();
    tty.write_all(format!("{quit}\r").as_bytes()).expect("quit");
    process.wait().expect("it quits");
    took
}

struct Client {
    name: &'static str,
    start: Box<dyn Fn() -> Duration>,
    table: Box<dyn Fn() -> Duration>,
    csv: Box<dyn Fn() -> Duration>,
}

fn folddb_client(url: String, config: std::path::PathBuf) -> Client {
    let sql = move |extra: &[&str]| {
        let mut cmd = Command::new(folddb_bin());
        cmd.args(["sql", "--url", &url])
            .args(extra)
            .env("XDG_CONFIG_HOME", &config)
            .env("NO_COLOR", "1");
        cmd
    };
    let select = "SELECT id, title, amount, done FROM app.big ORDER BY id";
    let (s1, s2, s3) = (sql.clone(), sql.clone(), sql);
    Client {
        name: "folddb sql",
        start: Box::new(move || to_prompt(s1(&[]), "folddb> ", "\\q")),
        table: Box::new(move || round_trip(&mut s2(&["-c", select]), ROWS + 2)),
        csv: Box::new(move || round_trip(&mut s3(&["--format", "csv", "-c", select]), ROWS + 1)),
    }
}

fn psql_client(url: String) -> Client {
    let psql = move |extra: &[&str]| {
        let mut cmd = Command::new("psql");
        cmd.arg(&url)
            .args(["-X", "-q"])
            .args(extra)
            .env("PAGER", "");
        cmd
    };
    let select = "SELECT id, title, amount, done FROM big ORDER BY id";
    let (s1, s2, s3) = (psql.clone(), psql.clone(), psql);
    Client {
        name: "psql",
        start: Box::new(move || to_prompt(s1(&[]), "=#", "\\q")),
        table: Box::new(move || round_trip(&mut s2(&["-P", "pager=off", "-c", select]), ROWS + 2)),
        csv: Box::new(move || round_trip(&mut s3(&["--csv", "-c", select]), ROWS + 1)),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(21);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&dir.path().join("data")).await;
    let token = server.setup_and_login().await;
    server
        .ok_all(
            &token,
            &[
                "CREATE NAMESPACE app",
                "CREATE SHARED TABLE app.big (id BIGINT PRIMARY KEY, title TEXT, amount DOUBLE, done BOOLEAN)",
            ],
        )
        .await;
    for chunk in (1..=ROWS).collect::<Vec<_>>().chunks(1000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| {
                format!(
                    "({i}, 'row number {i}', {}, {})",
                    *i as f64 * 0.5,
                    i % 2 == 0
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO app.big (id, title, amount, done) VALUES {}",
            values.join(",")
        );
        server.ok(&token, &sql).await;
    }
    // A kept session, as after a first interactive login.
    let config = dir.path().join("config");
    let login = Command::new(folddb_bin())
        .args([
            "sql",
            "--url",
            &server.url(""),
            "--user",
            DBA.0,
            "-c",
            "SELECT 1",
        ])
        .env("XDG_CONFIG_HOME", &config)
        .env("FOLDDB_PASSWORD", DBA.1)
        .output()
        .expect("folddb sql runs");
    assert!(login.status.success());

    let mut clients = vec![folddb_client(server.url(""), config)];
    if let Ok(url) = std::env::var("FOLDDB_BENCH_PSQL") {
        let load = format!(
            "DROP TABLE IF EXISTS big; CREATE TABLE big AS SELECT i::bigint AS id, \
             'row number ' || i AS title, i * 0.5::float8 AS amount, i % 2 = 0 AS done \
             FROM generate_series(1, {ROWS}) i; ALTER TABLE big ADD PRIMARY KEY (id)"
        );
        let out = Command::new("psql")
            .args([&url, "-X", "-q", "-c", &load])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        clients.push(psql_client(url));
    }

    println!("{rounds} rounds each, medians; {ROWS} rows of (BIGINT, TEXT, DOUBLE, BOOLEAN)");
    // One warm-up of each, then the rounds, the clients taking turns.
    let mut samples = vec![[Vec::new(), Vec::new(), Vec::new()]; clients.len()];
    for round in 0..=rounds {
        for (c, mine) in clients.iter().zip(&mut samples) {
            let taken = [(c.start)(), (c.table)(), (c.csv)()];
            if round > 0 {
                for (list, t) in mine.iter_mut().zip(taken) {
                    list.push(t);
                }
            }
        }
    }
    let mut figures = Vec::new();
    for (c, mine) in clients.iter().zip(samples) {
        let f = mine.map(median);
        println!(
            "{:<11} start-up to prompt {:>7.2} ms   -c table {:>7.2} ms   -c csv {:>7.2} ms",
            c.name, f[0], f[1], f[2]
        );
        figures.push(f);
    }
    if let [ours, theirs] = figures.as_slice() {
        println!(
            "folddb sql / psql: start-up {:.2}x   table {:.2}x   csv {:.2}x",
            ours[0] / theirs[0],
            ours[1] / theirs[1],
            ours[2] / theirs[2]
        );
    }
    server.stop();
}
