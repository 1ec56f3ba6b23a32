//! A real S3-compatible service for the black-box tests of S3 storages: moto's standalone
//! server (installed by `.ci/setup` from PyPI into a virtualenv; started through
//! `tests/moto_server.py`, which works around a moto bug in checking signatures), one per
//! test, on a loopback port, behind a small TCP relay that can take it out of reach.
//!
//! moto checks what a real bucket checks and the old hand-written fake did not: every
//! request is signed (SigV4, with an access key it issued through its IAM API), multipart
//! uploads take parts of a minimum size, listings are paginated with continuation tokens,
//! and errors come back as S3's XML. To exercise the last two with little data, its page
//! size is 2 keys and its minimum part size 1 KiB ([`S3::MIN_PART_BYTES`]).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use object_store::ObjectStore;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Where `.ci/setup` installs moto's virtualenv, under the home directory.
const MOTO_HOME: &str = ".cache/folddb-moto";

/// The launcher, in this crate's folder.
fn launcher() -> PathBuf {
    crate::workspace_root().join("tests/moto_server.py")
}

/// A running moto server with one bucket, [`S3::BUCKET`], and a user allowed `s3:*`.
#[derive(Debug)]
pub struct S3 {
    _moto: Child,
    /// The relay's port: what FoldDB is pointed at.
    port: u16,
    pub access_key: String,
    pub secret_key: String,
    /// The bucket, reached directly (never through the relay), signed with the same key.
    store: object_store::aws::AmazonS3,
    /// While set, the relay closes every connection at once (the service out of reach).
    down: Arc<AtomicBool>,
    /// Connections the relay accepted, served or not.
    connections: Arc<AtomicU64>,
    /// Bumped by [`S3::set_down`] to cut the connections in flight.
    cut: watch::Sender<u64>,
}

/// The Python of moto's virtualenv: `$FOLDDB_MOTO/bin/python`, `$FOLDDB_MOTO` defaulting to
/// where `.ci/setup` puts it.
fn moto_python() -> PathBuf {
    let venv = std::env::var_os("FOLDDB_MOTO")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(MOTO_HOME)))
        .unwrap_or_else(|| PathBuf::from(MOTO_HOME));
    venv.join("bin/python")
}

/// The text of the first `<tag>` in `xml`.
fn xml_field(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(xml[start..end].to_owned())
}

impl S3 {
    pub const BUCKET: &str = "lake";
    /// The smallest part but the last that moto accepts in a multipart upload.
    pub const MIN_PART_BYTES: usize = 1024;

    /// `CREATE STORAGE id` in `bucket` (`bucket[/prefix]`) of this endpoint, signing with
    /// `secret`, with moto's smallest part size (segments are uploaded in parts).
    pub fn storage_sql(&self, id: &str, bucket: &str, secret: &str) -> String {
        format!(
            "CREATE STORAGE {id} TYPE 's3' BUCKET '{bucket}' REGION 'us-east-1' \
             CREDENTIALS '{{\"access_key_id\": \"{}\", \"secret_access_key\": \"{secret}\"}}' \
             CONFIG '{{\"endpoint\": \"{}\", \"allow_http\": true, \"max_retries\": 0, \
             \"multipart_part_bytes\": {}}}'",
            self.access_key,
            self.endpoint(),
            S3::MIN_PART_BYTES
        )
    }

    /// Starts moto, creates the user, its key and the bucket, and the relay.
    pub async fn start() -> S3 {
        let python = moto_python();
        let mut moto = Command::new(&python)
            .arg(launcher())
            .args(["-H", "127.0.0.1", "-p", "0"])
            // The first 4 actions (below) need no signature; every later one does.
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "4")
            .env("S3_UPLOAD_PART_MIN_SIZE", S3::MIN_PART_BYTES.to_string())
            .env("MOTO_S3_DEFAULT_MAX_KEYS", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}. `bash .ci/setup` installs moto under ~/{MOTO_HOME}; \
                     FOLDDB_MOTO names another virtualenv with it",
                    python.display()
                )
            });
        let stderr = moto.stderr.take().expect("moto's stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let port = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("Running on http://127.0.0.1:").nth(1) {
                    return rest.trim().parse::<u16>().ok();
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("moto says where it listens (is it installed? `bash .ci/setup`)");
        // It logs every request: keep its pipe drained.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let iam = |action: &str, extra: &[(&str, &str)]| {
            let mut form = vec![
                ("Action", action.to_owned()),
                ("Version", "2010-05-08".to_owned()),
                ("UserName", "folddb".to_owned()),
            ];
            form.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
            // Unsigned (moto lets the first actions through) but scoped to IAM, which is
            // how moto routes a request.
            http.post(&base)
                .header(
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=bootstrap/20260101/us-east-1/iam/aws4_request, \
                     SignedHeaders=host, Signature=0",
                )
                .form(&form)
                .send()
        };
        let ok = |what: &str, r: reqwest::Result<reqwest::Response>| {
            let r = r.unwrap_or_else(|e| panic!("moto {what}: {e}"));
            assert!(r.status().is_success(), "moto {what}: {}", r.status());
            r
        };
        ok("CreateUser", iam("CreateUser", &[]).await);
        let key = ok("CreateAccessKey", iam("CreateAccessKey", &[]).await)
            .text()
            .await
            .expect("CreateAccessKey's answer");
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        ok(
            "PutUserPolicy",
            iam(
                "PutUserPolicy",
                &[("PolicyName", "s3"), ("PolicyDocument", policy)],
            )
            .await,
        );
        ok(
            "CreateBucket",
            http.put(format!("{base}/{}", S3::BUCKET)).send().await,
        );
        let access_key = xml_field(&key, "AccessKeyId").expect("an access key id");
        let secret_key = xml_field(&key, "SecretAccessKey").expect("a secret key");
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(S3::BUCKET)
            .with_region("us-east-1")
            .with_endpoint(&base)
            .with_allow_http(true)
            .with_access_key_id(&access_key)
            .with_secret_access_key(&secret_key)
            .build()
            .expect("a client of moto's bucket");

        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let relay_port = listener.local_addr().expect("an address").port();
        let (down, connections) = (Arc::new(AtomicBool::new(false)), Arc::default());
        let (cut, _) = watch::channel(0);
        tokio::spawn(relay(
            listener,
            port,
            down.clone(),
            Arc::clone(&connections),
            cut.clone(),
        ));
        S3 {
            _moto: moto,
            port: relay_port,
            access_key,
            secret_key,
            store,
            down,
            connections,
            cut,
        }
    }

    /// Takes the service out of reach (connections in flight cut, new ones closed at once),
    /// or back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.cut.send_modify(|n| *n += 1);
        }
    }

    /// How many connections reached the relay so far, served or not.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// The endpoint to give FoldDB (the relay).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The objects under `prefix` (`bucket/…`, any string prefix) with their sizes, sorted,
    /// listed with signed requests straight from moto.
    pub async fn objects(&self, prefix: &str) -> Vec<(String, u64)> {
        let objects: Vec<_> = self
            .store
            .list(None)
            .try_collect()
            .await
            .expect("list moto's bucket");
        let mut found: Vec<(String, u64)> = objects
            .iter()
            .map(|o| (format!("{}/{}", S3::BUCKET, o.location), o.size))
            .filter(|(k, _)| k.starts_with(prefix))
            .collect();
        found.sort();
        found
    }

    /// Writes object `key` (`bucket/…`) straight to moto: what a job that crashed after
    /// writing it would leave.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) {
        let path = key
            .strip_prefix(&format!("{}/", S3::BUCKET))
            .expect("a key of the bucket");
        use object_store::ObjectStoreExt;
        self.store
            .put(&object_store::path::Path::from(path), bytes.into())
            .await
            .expect("put into moto's bucket");
    }

    /// The keys under `prefix`, sorted.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        self.objects(prefix)
            .await
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }
}

/// Relays each connection to moto's `port` until it ends or is cut.
async fn relay(
    listener: TcpListener,
    port: u16,
    down: Arc<AtomicBool>,
    connections: Arc<AtomicU64>,
    cut: watch::Sender<u64>,
) {
    while let Ok((mut client, _)) = listener.accept().await {
        connections.fetch_add(1, Ordering::SeqCst);
        if down.load(Ordering::SeqCst) {
            continue;
        }
        let mut cut = cut.subscribe();
        tokio::spawn(async move {
            let Ok(mut moto) = TcpStream::connect(("127.0.0.1", port)).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut moto) => {}
                _ = cut.changed() => {}
            }
        });
    }
}
