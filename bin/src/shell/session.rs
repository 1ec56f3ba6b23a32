//! The shell's connection: who it is logged in as, the token it sends (kept, with its refresh
//! token, in the user's config directory), and one SQL request (API.md 1.7).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

/// A column of a result (`schema`).
#[derive(Debug, Clone, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(default)]
    pub data_type: Json,
}

/// One statement's result.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct QueryResult {
    #[serde(default)]
    pub schema: Vec<Column>,
    pub rows: Option<Vec<Vec<Json>>>,
    #[serde(default)]
    pub row_count: u64,
    pub message: Option<String>,
}

/// A successful answer to `POST /v1/api/sql`, and how long it took.
#[derive(Debug)]
pub struct Answer {
    pub results: Vec<QueryResult>,
    /// The server's own time (ms).
    pub took_ms: f64,
    /// The round trip, as this client saw it.
    pub elapsed: Duration,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The server answered with an error: the statement, or the credentials, were refused.
    #[error("{code}: {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
    },
    /// No answer: the server is unreachable, or the connection broke.
    #[error("{0}")]
    Unreachable(String),
}

impl Failure {
    /// Whether there is no session to speak with: the server was not reached, or refused
    /// the credentials (exit status 2, not 1).
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            Failure::Unreachable(_) | Failure::Server { status: 401, .. }
        )
    }
}

/// Tokens as login and refresh return them, and as they are kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tokens {
    user: String,
    access_token: String,
    refresh_token: Option<String>,
    expires_at: Option<String>,
    refresh_expires_at: Option<String>,
}

/// Whether an RFC 3339 expiry is still more than a minute away (unknown: assume so).
fn fresh(expiry: Option<&str>) -> bool {
    expiry
        .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
        .is_none_or(|e| e > chrono::Utc::now() + chrono::Duration::seconds(60))
}

/// `credentials.json` in the config directory: the last session per server URL. Written
/// whole to a private temporary file and renamed, so it is never readable by others nor
/// half-written.
#[derive(Debug, Clone)]
pub struct TokenStore {
    path: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoreFile {
    version: u32,
    #[serde(default)]
    sessions: std::collections::BTreeMap<String, Tokens>,
}

impl TokenStore {
    pub fn new(dir: PathBuf) -> Self {
        TokenStore {
            path: dir.join("credentials.json"),
        }
    }

    fn read(&self) -> StoreFile {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice::<StoreFile>(&b).ok())
            .filter(|f| f.version == 1)
            .unwrap_or_default()
    }

    fn get(&self, url: &str) -> Option<Tokens> {
        self.read().sessions.remove(url)
    }

    /// Forgets the session kept for `url`.
    pub fn forget(&self, url: &str) -> std::io::Result<()> {
        self.put(url, None)
    }

    fn put(&self, url: &str, tokens: Option<&Tokens>) -> std::io::Result<()> {
        let mut file = self.read();
        file.version = 1;
        match tokens {
            Some(t) => file.sessions.insert(url.to_owned(), t.clone()),
            None => file.sessions.remove(url),
        };
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        super::private_dir(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?; // created 0600
        tmp.write_all(&serde_json::to_vec_pretty(&file)?)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// How the shell logs in when it has to.
#[derive(Debug, Clone)]
pub struct Login {
    /// The user to log in as (`--user`, else the stored session's).
    pub user: Option<String>,
    /// Whether a password may be asked for on the terminal.
    pub prompt: bool,
}

/// A logged-in connection to one server.
#[derive(Debug)]
pub struct Session {
    http: reqwest::Client,
    pub base: String,
    tokens: Tokens,
    /// None with `--token`: nothing is stored, nothing refreshed.
    store: Option<TokenStore>,
    login: Login,
    /// `USE ns`: sent as `namespace_id` with every request.
    pub namespace: Option<String>,
}

fn unreachable(base: &str, e: &reqwest::Error) -> Failure {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Failure::Unreachable(format!("cannot reach the server at {base}: {cause}"))
}

/// The error an answer carries: the SQL envelope's `error` object, or auth's flat shape.
fn failure(status: u16, body: &Json) -> Failure {
    let (code, message) = match &body["error"] {
        Json::Object(e) => (e.get("code"), e.get("message")),
        other => (Some(other), body.get("message")),
    };
    let text = |v: Option<&Json>, default: &str| {
        v.and_then(Json::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(default)
            .to_owned()
    };
    Failure::Server {
        status,
        code: text(code, &format!("HTTP_{status}")),
        message: text(message, "the server gave no reason"),
    }
}

impl Session {
    /// Connects with a token given on the command line: used as is.
    pub fn with_token(base: &str, token: String) -> Self {
        Session {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            tokens: Tokens {
                user: String::new(),
                access_token: token,
                refresh_token: None,
                expires_at: None,
                refresh_expires_at: None,
            },
            store: None,
            login: Login {
                user: None,
                prompt: false,
            },
            namespace: None,
        }
    }

    /// Connects as `login` says: the stored session for `base` if it is this user's and
    /// still good (refreshed if only its access token expired), else a password login.
    pub async fn connect(base: &str, store: TokenStore, login: Login) -> Result<Self, Failure> {
        let stored = store
            .get(base)
            .filter(|t| login.user.as_ref().is_none_or(|u| *u == t.user));
        let mut session = Session {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            tokens: stored.clone().unwrap_or(Tokens {
                user: login.user.clone().unwrap_or_default(),
                access_token: String::new(),
                refresh_token: None,
                expires_at: None,
                refresh_expires_at: None,
            }),
            store: Some(store),
            login,
            namespace: None,
        };
        match stored {
            Some(t) if fresh(t.expires_at.as_deref()) => {}
            Some(_) if session.refresh().await.is_ok() => {}
            _ => session.log_in().await?,
        }
        Ok(session)
    }

    /// The user this session speaks as ("" with `--token`).
    pub fn user(&self) -> &str {
        &self.tokens.user
    }

    /// The current access token (for `/v1/ws`), refreshed first if it is about to expire.
    pub async fn token(&mut self) -> Result<String, Failure> {
        if !fresh(self.tokens.expires_at.as_deref()) {
            self.reauthenticate().await?;
        }
        Ok(self.tokens.access_token.clone())
    }

    async fn post_auth(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: Json,
    ) -> Result<Json, Failure> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req.send().await.map_err(|e| unreachable(&self.base, &e))?;
        let status = resp.status().as_u16();
        let body: Json = resp.json().await.unwrap_or(Json::Null);
        if status != 200 || body["access_token"].as_str().is_none() {
            return Err(failure(status, &body));
        }
        Ok(body)
    }

    fn keep(&mut self, user: String, body: &Json) {
        let s = |k: &str| body[k].as_str().map(str::to_owned);
        self.tokens = Tokens {
            user,
            access_token: s("access_token").unwrap_or_default(),
            refresh_token: s("refresh_token"),
            expires_at: s("expires_at"),
            refresh_expires_at: s("refresh_expires_at"),
        };
        if let Some(store) = &self.store
            && let Err(e) = store.put(&self.base, Some(&self.tokens))
        {
            eprintln!(
                "warning: could not keep the session in {}: {e}",
                store.path.display()
            );
        }
    }

    async fn refresh(&mut self) -> Result<(), Failure> {
        let Some(refresh) = self
            .tokens
            .refresh_token
            .clone()
            .filter(|_| fresh(self.tokens.refresh_expires_at.as_deref()))
        else {
            return Err(Failure::Server {
                status: 401,
                code: "TOKEN_EXPIRED".into(),
                message: "the session has expired".into(),
            });
        };
        let body = self
            .post_auth("/v1/api/auth/refresh", Some(&refresh), json!({}))
            .await?;
        self.keep(self.tokens.user.clone(), &body);
        Ok(())
    }

    /// Logs in with a password: `FOLDDB_PASSWORD`, else asked for on the terminal.
    async fn log_in(&mut self) -> Result<(), Failure> {
        let refused = |message: &str| Failure::Server {
            status: 401,
            code: "LOGIN_REQUIRED".into(),
            message: message.into(),
        };
        let user = match self
            .login
            .user
            .clone()
            .or_else(|| Some(self.tokens.user.clone()).filter(|u| !u.is_empty()))
        {
            Some(u) => u,
            None if self.login.prompt => {
                super::ask("User: ").map_err(|e| refused(&format!("no user name: {e}")))?
            }
            None => {
                return Err(refused(
                    "no session: give --user (and FOLDDB_PASSWORD) or --token",
                ));
            }
        };
        let password = match std::env::var("FOLDDB_PASSWORD") {
            Ok(p) => p,
            Err(_) if self.login.prompt => {
                rpassword::prompt_password(format!("Password for {user}: "))
                    .map_err(|e| refused(&format!("no password: {e}")))?
            }
            Err(_) => {
                return Err(refused(&format!(
                    "no stored session for {user}: set FOLDDB_PASSWORD or run folddb sql in a terminal"
                )));
            }
        };
        let body = self
            .post_auth(
                "/v1/api/auth/login",
                None,
                json!({"user": user, "password": password}),
            )
            .await?;
        self.keep(user, &body);
        Ok(())
    }

    /// After a 401: refresh, else log in again (when there is someone to ask).
    async fn reauthenticate(&mut self) -> Result<(), Failure> {
        if self.store.is_none() {
            return Err(Failure::Server {
                status: 401,
                code: "TOKEN_EXPIRED".into(),
                message: "the --token given was refused or has expired".into(),
            });
        }
        if self.refresh().await.is_ok() {
            return Ok(());
        }
        self.log_in().await
    }

    /// Runs `sql` (one or more statements) as this session, with `USE`'s namespace.
    pub async fn sql(&mut self, sql: &str) -> Result<Answer, Failure> {
        let mut body = json!({"sql": sql});
        if let Some(ns) = &self.namespace {
            body["namespace_id"] = json!(ns);
        }
        let (status, bytes, elapsed) = self.call(Some(&body)).await?;
        #[derive(Deserialize)]
        struct Envelope {
            status: Option<String>,
            #[serde(default)]
            results: Vec<QueryResult>,
            #[serde(default)]
            took: f64,
        }
        match serde_json::from_slice::<Envelope>(&bytes) {
            Ok(e) if status == 200 && e.status.as_deref() == Some("success") => Ok(Answer {
                results: e.results,
                took_ms: e.took,
                elapsed,
            }),
            _ => Err(failure(
                status,
                &serde_json::from_slice(&bytes).unwrap_or(Json::Null),
            )),
        }
    }

    /// Who the server says this session is: its user id and role (`GET /v1/api/auth/me`).
    pub async fn me(&mut self) -> Result<(String, String), Failure> {
        let (status, bytes, _) = self.call(None).await?;
        let body: Json = serde_json::from_slice(&bytes).unwrap_or(Json::Null);
        if status != 200 {
            return Err(failure(status, &body));
        }
        let text = |k: &str| body["user"][k].as_str().unwrap_or("?").to_owned();
        Ok((text("id"), text("role")))
    }

    /// `POST /v1/api/sql` with `body`, or `GET /v1/api/auth/me` without: the status, the
    /// body and the round trip. A refused token is refreshed (or the password asked for
    /// again) and the request sent once more.
    async fn call(
        &mut self,
        body: Option<&Json>,
    ) -> Result<(u16, bytes::Bytes, Duration), Failure> {
        let first = self.send(body).await?;
        if first.0 != 401 || self.store.is_none() {
            return Ok(first);
        }
        self.reauthenticate().await?;
        self.send(body).await
    }

    async fn send(&self, body: Option<&Json>) -> Result<(u16, bytes::Bytes, Duration), Failure> {
        let start = Instant::now();
        let req = match body {
            Some(b) => self.http.post(format!("{}/v1/api/sql", self.base)).json(b),
            None => self.http.get(format!("{}/v1/api/auth/me", self.base)),
        };
        let resp = req
            .bearer_auth(&self.tokens.access_token)
            .send()
            .await
            .map_err(|e| unreachable(&self.base, &e))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| unreachable(&self.base, &e))?;
        Ok((status, bytes, start.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The version-1 file of `bin/FORMAT.md` reads back; what does not parse holds nothing.
    #[test]
    fn a_version_1_credentials_file_reads_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = TokenStore::new(dir.path().join("folddb"));
        std::fs::create_dir_all(dir.path().join("folddb")).expect("dir");
        let golden = r#"{"version":1,"sessions":{"http://127.0.0.1:8080":{"user":"admin",
            "access_token":"a.b.c","refresh_token":null,"expires_at":"2026-12-04T07:01:32+00:00",
            "refresh_expires_at":null}}}"#;
        std::fs::write(&store.path, golden).expect("write");
        let t = store.get("http://127.0.0.1:8080").expect("the session");
        assert_eq!(
            (t.user.as_str(), t.access_token.as_str()),
            ("admin", "a.b.c")
        );
        assert!(store.get("http://127.0.0.1:9090").is_none());

        let mut t2 = t.clone();
        t2.user = "bob".into();
        store.put("http://127.0.0.1:9090", Some(&t2)).expect("put");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&store.path)
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            store.get("http://127.0.0.1:8080").map(|t| t.user),
            Some("admin".into())
        );
        store.forget("http://127.0.0.1:8080").expect("forget");
        assert!(store.get("http://127.0.0.1:8080").is_none());
        assert_eq!(
            store.get("http://127.0.0.1:9090").map(|t| t.user),
            Some("bob".into())
        );

        std::fs::write(
            &store.path,
            golden.replace("\"version\":1", "\"version\":2"),
        )
        .expect("write");
        assert!(
            store.get("http://127.0.0.1:8080").is_none(),
            "a later version is not read"
        );
        std::fs::write(&store.path, b"{not json").expect("write");
        assert!(store.get("http://127.0.0.1:9090").is_none());
    }

    #[test]
    fn expiries_within_a_minute_count_as_expired() {
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc3339();
        let later = (chrono::Utc::now() + chrono::Duration::seconds(600)).to_rfc3339();
        assert!(!fresh(Some(&soon)));
        assert!(fresh(Some(&later)));
        assert!(fresh(None));
        assert!(fresh(Some("not a time")));
    }
}
