//! Helpers for FoldDB's black-box tests: build and locate the real `folddb` binary, run it,
//! and find the repository's fixtures. Tests in `tests/tests/` speak to the binary only as a
//! user or client would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod cluster;
pub mod s3;
pub mod ws;

/// The `folddb` binary of this workspace, built (once per test process) if needed.
///
/// Cargo does not build another package's binary for a test, so this runs `cargo build` for
/// it; when the binary is up to date that is a no-op taking well under a second.
pub fn folddb_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("FOLDDB_BIN") {
            return PathBuf::from(bin);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        // The same package and target selection as `cargo test --workspace`, so that cargo
        // resolves the same dependency features and reuses the test build's artifacts (with
        // `-p folddb` alone it would resolve different features and rebuild DataFusion).
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--workspace", "--all-targets"])
            .current_dir(workspace_root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building folddb failed");
        target_dir().join("debug").join("folddb")
    })
}

/// The workspace root (the parent of this crate).
///
/// Read at run time first: cargo and nextest set `CARGO_MANIFEST_DIR` for the checkout being
/// tested, while the compile-time value names wherever the binary was built, and a build
/// cache shared between checkouts (CI's clone and a working tree) reuses test binaries
/// without rebuilding them when the sources match.
pub fn workspace_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// The cargo target directory this test binary was built into.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            workspace_root().join(dir)
        };
    }
    // The test executable lives in <target>/debug/deps/.
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Runs `folddb` with `args` and waits for it.
pub fn run_folddb<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(folddb_bin())
        .args(args)
        .output()
        .expect("folddb starts")
}

/// A copy of the log fixture `name` (format v1) in a fresh temporary directory.
pub fn log_fixture(name: &str) -> tempfile::TempDir {
    let src = workspace_root().join("log/fixtures/v1").join(name);
    let tmp = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(&src).expect("fixture exists") {
        let entry = entry.expect("fixture entry");
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).expect("copy");
    }
    tmp
}

/// Deterministic bytes that are not text.
pub fn blob(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Standard output and error of a finished command, as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `folddb serve` on a loopback port over a data directory it may outlive.
#[derive(Debug)]
pub struct Server {
    child: std::process::Child,
    pub port: u16,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
}

/// A free loopback port (bound and released; the server binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The JWT secret the tests start servers with.
pub const JWT_SECRET: &str = "test-secret";

/// The DBA user the tests set up, as KalamDB's harnesses do (API.md 1.3).
pub const DBA: (&str, &str) = ("admin", "kalamdb123");

impl Server {
    /// Starts the server over `data_dir` and waits until it answers `/health`.
    pub async fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[]).await
    }

    /// Starts the server with extra environment settings.
    pub async fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_on(data_dir, free_port(), env).await
    }

    /// Starts the server on loopback port `port` (a restart where clients expect it).
    pub async fn start_on(data_dir: &Path, port: u16, env: &[(&str, &str)]) -> Server {
        let child = Command::new(folddb_bin())
            .args(["serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            // Cheap hashing keeps the tests fast; the cost is a setting, not a behaviour.
            .env("FOLDDB_BCRYPT_COST", "4")
            .env("FOLDDB_JWT_SECRET", JWT_SECRET)
            // Tests log in often from one address, as KalamDB's harnesses do.
            .env("FOLDDB_RATE_LIMIT_AUTH_REQUESTS_PER_IP_PER_SEC", "100000")
            // Tests drive a server from one address and one user far harder than the
            // defaults allow a client (200 requests/s per address, 100 SQL/s per user);
            // the limits themselves are tested with their values set.
            .env("FOLDDB_RATE_LIMIT_REQUESTS_PER_IP_PER_SEC", "0")
            .env("FOLDDB_RATE_LIMIT_SQL_PER_USER_PER_SEC", "0")
            .env("FOLDDB_MAX_CONNECTIONS_PER_IP", "100000")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("folddb serve starts");
        let server = Server {
            child,
            port,
            data_dir: data_dir.to_path_buf(),
            client: reqwest::Client::new(),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Ok(r) = server.client.get(server.url("/health")).send().await
                && r.status().is_success()
            {
                return server;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The HTTP status of `GET /health`.
    pub async fn health_status(&self) -> u16 {
        self.client
            .get(self.url("/health"))
            .send()
            .await
            .expect("the server answers /health")
            .status()
            .as_u16()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// POSTs `body` as JSON, returning the status and the JSON answer.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("request sent");
        let status = r.status().as_u16();
        (status, r.json().await.expect("a JSON answer"))
    }

    /// Runs `sql` as the holder of `token`.
    pub async fn sql(&self, token: &str, sql: &str) -> (u16, serde_json::Value) {
        self.post(
            "/v1/api/sql",
            Some(token),
            &serde_json::json!({ "sql": sql }),
        )
        .await
    }

    /// POSTs a multipart SQL request (API.md 1.7.1) as the holder of `token`: part `sql`,
    /// then each of `parts` — (part name, file name, content type, bytes); a file part is
    /// named `file:<placeholder>`, a text part has no file name. The status and the answer.
    pub async fn multipart(
        &self,
        token: &str,
        sql: &str,
        parts: &[(&str, Option<&str>, &str, &[u8])],
    ) -> (u16, serde_json::Value) {
        self.try_multipart(token, sql, parts)
            .await
            .expect("request sent, a JSON answer")
    }

    /// [`Server::multipart`], with the failure to send it or read its answer (a server
    /// that died) an error.
    pub async fn try_multipart(
        &self,
        token: &str,
        sql: &str,
        parts: &[(&str, Option<&str>, &str, &[u8])],
    ) -> Result<(u16, serde_json::Value), reqwest::Error> {
        const BOUNDARY: &str = "folddb-test-boundary-7d1b";
        let mut body = Vec::new();
        let mut part = |name: &str, file: Option<&str>, mime: Option<&str>, bytes: &[u8]| {
            body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
            let mut disposition = format!("Content-Disposition: form-data; name=\"{name}\"");
            if let Some(f) = file {
                disposition.push_str(&format!("; filename=\"{f}\""));
            }
            body.extend_from_slice(disposition.as_bytes());
            body.extend_from_slice(b"\r\n");
            if let Some(m) = mime {
                body.extend_from_slice(format!("Content-Type: {m}\r\n").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        };
        part("sql", None, None, sql.as_bytes());
        for (name, file, mime, bytes) in parts {
            part(name, *file, Some(mime), bytes);
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        let r = self
            .client
            .post(self.url("/v1/api/sql"))
            .bearer_auth(token)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await?))
    }

    /// GETs `path` as the holder of `token` (if any), with extra `headers`: the status,
    /// the response headers and the body.
    pub async fn get(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.expect("request sent");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.bytes().await.expect("a body").to_vec())
    }

    /// Runs `sql`, expecting it to fail: the status and the error code.
    pub async fn fails(&self, token: &str, sql: &str) -> (u16, String) {
        let (status, body) = self.sql(token, sql).await;
        assert_eq!(body["status"], "error", "{sql} should fail: {body}");
        (
            status,
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
        )
    }

    /// Runs `sql` and asserts it succeeded; returns the answer.
    pub async fn ok(&self, token: &str, sql: &str) -> serde_json::Value {
        let (status, body) = self.sql(token, sql).await;
        assert_eq!(status, 200, "{sql} failed: {body}");
        assert_eq!(body["status"], "success", "{sql}: {body}");
        body
    }

    /// Runs each of `sqls` in order, asserting each succeeded.
    pub async fn ok_all(&self, token: &str, sqls: &[&str]) {
        for sql in sqls {
            self.ok(token, sql).await;
        }
    }

    /// Creates user `name` with `password` and `role` (as the DBA holding `admin`), then
    /// logs in as it: its token.
    pub async fn user(&self, admin: &str, name: &str, password: &str, role: &str) -> String {
        self.ok(
            admin,
            &format!("CREATE USER {name} WITH PASSWORD '{password}' ROLE {role}"),
        )
        .await;
        self.login(name, password).await
    }

    /// Waits until job `id` (`system.jobs`) ends; returns its status and message.
    pub async fn wait_job(&self, token: &str, id: &str) -> (String, String) {
        for _ in 0..300 {
            let answer = self
                .ok(
                    token,
                    &format!("SELECT status, message FROM system.jobs WHERE job_id = '{id}'"),
                )
                .await;
            if let Some(row) = rows(&answer).first() {
                let status = row[0].as_str().unwrap_or_default().to_owned();
                if !matches!(status.as_str(), "queued" | "running") {
                    return (status, row[1].as_str().unwrap_or_default().to_owned());
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("job {id} did not finish");
    }

    /// Runs a statement that starts one job (`STORAGE FLUSH TABLE …`, `STORAGE COMPACT
    /// TABLE …`) and waits for it: the job's id, final status and message.
    pub async fn run_job(&self, token: &str, sql: &str) -> (String, String, String) {
        let answer = self.ok(token, sql).await;
        let message = answer["results"][0]["message"].as_str().unwrap_or_default();
        let id = message
            .rsplit("Job ID: ")
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        assert!(id.len() > 3 && id.contains('-'), "no job id in {message:?}");
        let (status, message) = self.wait_job(token, &id).await;
        (id, status, message)
    }

    /// First-run setup (DBA `admin`), then a login as that DBA: its access token.
    pub async fn setup_and_login(&self) -> String {
        let (status, body) = self
            .post(
                "/v1/api/auth/setup",
                None,
                &serde_json::json!({"user": DBA.0, "password": DBA.1, "root_password": "rootpass123"}),
            )
            .await;
        assert!(status == 200 || status == 409, "setup: {status} {body}");
        self.login(DBA.0, DBA.1).await
    }

    pub async fn login(&self, user: &str, password: &str) -> String {
        let (status, body) = self
            .post(
                "/v1/api/auth/login",
                None,
                &serde_json::json!({"user": user, "password": password}),
            )
            .await;
        assert_eq!(status, 200, "login: {body}");
        body["access_token"].as_str().expect("a token").to_owned()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's peak resident memory so far (`VmHWM`), bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:") * 1024
    }

    /// The server's threads: each one's name and nice value.
    pub fn thread_priorities(&self) -> Vec<(String, i64)> {
        let tasks = format!("/proc/{}/task", self.pid());
        let mut out = Vec::new();
        for task in std::fs::read_dir(tasks).into_iter().flatten().flatten() {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let name = head.split_once('(').map_or("", |(_, n)| n).to_owned();
            // nice is field 19 of the line: 17 after the name.
            let nice = rest
                .split_whitespace()
                .nth(16)
                .and_then(|f| f.parse().ok())
                .unwrap_or(0);
            out.push((name, nice));
        }
        out
    }

    /// CPU time the server has used so far (user + system).
    pub fn cpu_time(&self) -> std::time::Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
        let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
        std::time::Duration::from_millis(ticks * 10)
    }

    /// The last log index the node applied (`/v1/api/cluster/health`), read a moment after
    /// the last write: raft's metrics trail the applies a little.
    pub async fn last_applied(&self) -> u64 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let body: serde_json::Value = self
            .client
            .get(self.url("/v1/api/cluster/health"))
            .send()
            .await
            .expect("health")
            .json()
            .await
            .expect("json");
        body["last_applied"]
            .as_u64()
            .or_else(|| body["nodes"][0]["last_applied"].as_u64())
            .unwrap_or_else(|| panic!("no last_applied in {body}"))
    }

    /// Kills the process without warning (SIGKILL).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGKILL while others still hold the server (its writers see errors from then
    /// on); the process is reaped when the last holder drops it.
    pub fn sigkill(&self) {
        self.signal("KILL");
    }

    /// Sends the signal `name` (`STOP`, `CONT`, `KILL`, …) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Stops the process cleanly (SIGTERM) and waits for it.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `folddb log replay <log_dir> --into <into> [--to-index N]`, asserting it succeeded:
/// what it printed.
pub fn replay(log_dir: &Path, into: &Path, to_index: Option<u64>) -> String {
    let mut args: Vec<std::ffi::OsString> = vec![
        "log".into(),
        "replay".into(),
        log_dir.into(),
        "--into".into(),
        into.into(),
    ];
    if let Some(n) = to_index {
        args.push("--to-index".into());
        args.push(n.to_string().into());
    }
    let out = run_folddb(args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    stdout
}

/// The JSON lines a child process prints on its standard output, as they come (the child
/// must have been spawned with a piped stdout): read each with [`JsonLines::next`].
#[derive(Debug)]
pub struct JsonLines(std::sync::mpsc::Receiver<String>);

impl JsonLines {
    pub fn of(child: &mut std::process::Child) -> JsonLines {
        use std::io::BufRead;
        let stdout = child.stdout.take().expect("a piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        JsonLines(rx)
    }

    /// The next line, parsed; panics if none comes within `wait`.
    pub fn next(&self, wait: std::time::Duration) -> serde_json::Value {
        let l = self.0.recv_timeout(wait).expect("a line in time");
        serde_json::from_str(&l).expect("a JSON line")
    }

    /// Every line printed until none comes within `wait`, parsed.
    pub fn until_quiet(&self, wait: std::time::Duration) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while let Ok(l) = self.0.recv_timeout(wait) {
            out.push(serde_json::from_str(&l).expect("a JSON line"));
        }
        out
    }

    /// Whether nothing more is printed within `wait`.
    pub fn quiet(&self, wait: std::time::Duration) -> bool {
        self.0.recv_timeout(wait).is_err()
    }
}

/// The rows of the first result of a SQL answer.
pub fn rows(answer: &serde_json::Value) -> Vec<serde_json::Value> {
    answer["results"][0]["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A `kB` field of `/proc/<pid>/status`, in KiB (0 when missing).
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
