//! A minimal S3-compatible object store on a loopback port, for the black-box tests of S3
//! storages: path-style PUT, GET, DELETE and ListObjectsV2 (with prefix and delimiter) over
//! an in-memory map, no authentication. Only what FoldDB's cold tier asks of a bucket.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use warp::Filter;
use warp::http::{Method, Response, StatusCode};

/// The objects of every bucket, by `bucket/key`.
pub type Objects = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// A running fake S3.
#[derive(Debug)]
pub struct FakeS3 {
    pub port: u16,
    pub objects: Objects,
    /// While set, every request is answered 503 (the service out of reach).
    down: Arc<AtomicBool>,
    /// Requests received, answered or not.
    requests: Arc<AtomicU64>,
}

impl FakeS3 {
    /// Starts it on the current runtime.
    pub async fn start() -> FakeS3 {
        let objects: Objects = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let port = listener.local_addr().expect("an address").port();
        let state = objects.clone();
        let (down, requests) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (is_down, count) = (down.clone(), requests.clone());
        let routes = warp::method()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::body::bytes())
            .map(
                move |method: Method,
                      path: warp::path::FullPath,
                      query: String,
                      body: bytes::Bytes| {
                    count.fetch_add(1, Ordering::SeqCst);
                    if is_down.load(Ordering::SeqCst) {
                        return respond(StatusCode::SERVICE_UNAVAILABLE, &[], Vec::new());
                    }
                    handle(&state, &method, path.as_str(), &query, &body)
                },
            );
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        FakeS3 {
            port,
            objects,
            down,
            requests,
        }
    }

    /// Takes the service out of reach (every request answered 503), or back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// How many requests it has received so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The keys under `bucket/prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        objects
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

const LAST_MODIFIED: &str = "Tue, 24 Nov 2026 00:00:00 GMT";

fn respond(status: StatusCode, headers: &[(&str, String)], body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, v.as_str());
    }
    r.body(body).unwrap_or_default()
}

fn handle(
    objects: &Objects,
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
) -> Response<Vec<u8>> {
    let path = decode(path.trim_start_matches('/'));
    let (bucket, key) = path.split_once('/').unwrap_or((path.as_str(), ""));
    let mut objects = objects.lock().unwrap_or_else(|p| p.into_inner());
    let full = format!("{bucket}/{key}");
    let etag = |b: &[u8]| format!("\"{:08x}\"", crc(b));
    match *method {
        Method::PUT => {
            let tag = etag(body);
            objects.insert(full, body.to_vec());
            respond(StatusCode::OK, &[("ETag", tag)], Vec::new())
        }
        Method::DELETE => {
            objects.remove(&full);
            respond(StatusCode::NO_CONTENT, &[], Vec::new())
        }
        Method::GET | Method::HEAD if key.is_empty() => {
            let params: BTreeMap<String, String> = query
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (decode(k), decode(v)))
                .collect();
            let prefix = params.get("prefix").cloned().unwrap_or_default();
            let delimiter = params.get("delimiter").cloned().unwrap_or_default();
            let mut contents = String::new();
            let mut dirs = BTreeSet::new();
            let within = format!("{bucket}/");
            for (k, v) in objects.iter() {
                let Some(k) = k.strip_prefix(&within) else {
                    continue;
                };
                let Some(rest) = k.strip_prefix(&prefix) else {
                    continue;
                };
                if !delimiter.is_empty()
                    && let Some(at) = rest.find(&delimiter)
                {
                    dirs.insert(format!("{prefix}{}", &rest[..at + delimiter.len()]));
                    continue;
                }
                contents.push_str(&format!(
                    "<Contents><Key>{}</Key><LastModified>2026-11-24T00:00:00.000Z</LastModified><ETag>{}</ETag><Size>{}</Size></Contents>",
                    xml_escape(k),
                    xml_escape(&etag(v)),
                    v.len()
                ));
            }
            let prefixes: String = dirs
                .iter()
                .map(|d| format!("<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>", xml_escape(d)))
                .collect();
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>{bucket}</Name><Prefix>{}</Prefix><IsTruncated>false</IsTruncated>{contents}{prefixes}</ListBucketResult>",
                xml_escape(&prefix)
            );
            respond(
                StatusCode::OK,
                &[("Content-Type", "application/xml".into())],
                xml.into_bytes(),
            )
        }
        Method::GET | Method::HEAD => match objects.get(&full) {
            Some(v) => respond(
                StatusCode::OK,
                &[
                    ("ETag", etag(v)),
                    ("Last-Modified", LAST_MODIFIED.into()),
                    ("Content-Length", v.len().to_string()),
                ],
                if *method == Method::HEAD {
                    Vec::new()
                } else {
                    v.clone()
                },
            ),
            None => respond(
                StatusCode::NOT_FOUND,
                &[("Content-Type", "application/xml".into())],
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>{}</Key></Error>",
                    xml_escape(key)
                )
                .into_bytes(),
            ),
        },
        // DeleteObjects: `POST /bucket?delete` with the keys in XML.
        Method::POST if key.is_empty() && query.split('&').any(|p| p == "delete" || p == "delete=") => {
            let text = String::from_utf8_lossy(body);
            let mut deleted = String::new();
            for part in text.split("<Key>").skip(1) {
                let Some((k, _)) = part.split_once("</Key>") else {
                    continue;
                };
                let k = xml_unescape(k);
                objects.remove(&format!("{bucket}/{k}"));
                deleted.push_str(&format!("<Deleted><Key>{}</Key></Deleted>", xml_escape(&k)));
            }
            respond(
                StatusCode::OK,
                &[("Content-Type", "application/xml".into())],
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DeleteResult>{deleted}</DeleteResult>"
                )
                .into_bytes(),
            )
        }
        _ => respond(StatusCode::NOT_IMPLEMENTED, &[], Vec::new()),
    }
}

/// A cheap content tag (not a cryptographic one): FNV-1a.
fn crc(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}
