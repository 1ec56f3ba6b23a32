//! FILE columns (#21, API.md 1.7.1, 1.8, 3.5), against the real binary: a multipart INSERT
//! stores each file in the table scope's storage (a directory, or an S3 bucket on a
//! loopback endpoint) and the row holds its `FileRef`; the file downloads byte for byte,
//! in ranges too, to whom may read it; bad uploads and downloads are refused and change
//! nothing.

use folddb_tests::s3::S3;
use folddb_tests::{Server, blob, rows};
use serde_json::Value;

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A server on a new data directory with namespace `app` and the tables `create` makes:
/// the directory (kept while it runs), its `data`, the server and a DBA's token.
async fn with_tables(create: &[&str]) -> (tempfile::TempDir, std::path::PathBuf, Server, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let s = Server::start(&data).await;
    let admin = s.setup_and_login().await;
    s.ok(&admin, "CREATE NAMESPACE app").await;
    s.ok_all(&admin, create).await;
    (dir, data, s, admin)
}

/// A part of a multipart request: name, file name, content type, bytes.
type Part<'a> = (&'a str, Option<&'a str>, &'a str, &'a [u8]);

/// The `FileRef` of column `col` (by position) of the first row of `answer`.
fn file_ref(answer: &Value, col: usize) -> Value {
    let cell = rows(answer)[0][col].clone();
    serde_json::from_str(cell.as_str().expect("a FILE cell is JSON text")).expect("FileRef JSON")
}

/// The download path of `r` in table `ns.t`.
fn path_of(table: &str, r: &Value) -> String {
    let (ns, t) = table.split_once('.').expect("ns.t");
    let id = r["id"].as_str().expect("id");
    let name = r["name"].as_str().expect("name");
    let stored = stored_name(id, name);
    format!(
        "/v1/files/{ns}/{t}/{}/{stored}",
        r["sub"].as_str().expect("sub")
    )
}

/// API.md 3.5's stored name, as a client computes it.
fn stored_name(id: &str, name: &str) -> String {
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    let mut s = String::new();
    for c in stem.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c);
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    let s = s.trim_matches('-');
    let mut out = id.to_owned();
    if !s.is_empty() {
        out = format!("{out}-{s}");
    }
    if !ext.is_empty() {
        out = format!("{out}.{}", ext.to_lowercase());
    }
    out
}

async fn upload_round_trip(s: &Server, admin: &str, table: &str) -> (Vec<u8>, Value) {
    let pdf = blob(7, 3 * 1024 * 1024 + 17);
    let (status, answer) = s
        .multipart(
            admin,
            &format!("INSERT INTO {table} (id, title, doc) VALUES (1, 'q3', FILE(\"report\"))"),
            &[(
                "file:report",
                Some("Report Q3.pdf"),
                "application/pdf",
                &pdf,
            )],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let read = s
        .ok(admin, &format!("SELECT id, doc FROM {table} WHERE id = 1"))
        .await;
    let r = file_ref(&read, 1);
    assert_eq!(r["name"], "Report Q3.pdf");
    assert_eq!(r["size"], pdf.len() as u64);
    assert_eq!(r["mime"], "application/pdf");
    assert_eq!(r["sub"], "f0001");
    assert_eq!(r["sha256"], sha256_hex(&pdf).as_str(), "{r}");
    let (status, headers, body) = s.get(&path_of(table, &r), Some(admin), &[]).await;
    assert_eq!(status, 200);
    assert!(body == pdf, "the download is byte-identical");
    assert_eq!(headers["content-type"], "application/pdf");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap_or_default()
            .starts_with("inline; filename=\""),
        "{headers:?}"
    );
    // Ranges: the middle, the tail, past the end.
    let path = path_of(table, &r);
    let (status, headers, body) = s
        .get(&path, Some(admin), &[("range", "bytes=1000-1999")])
        .await;
    assert_eq!(status, 206);
    assert_eq!(body, pdf[1000..2000]);
    assert_eq!(
        headers["content-range"],
        format!("bytes 1000-1999/{}", pdf.len()).as_str()
    );
    let (status, _, body) = s.get(&path, Some(admin), &[("range", "bytes=-10")]).await;
    assert_eq!(status, 206);
    assert_eq!(body, pdf[pdf.len() - 10..]);
    let (status, headers, _) = s
        .get(&path, Some(admin), &[("range", "bytes=99999999-")])
        .await;
    assert_eq!(status, 416);
    assert_eq!(
        headers["content-range"],
        format!("bytes */{}", pdf.len()).as_str()
    );
    (pdf, r)
}

/// Upload → query → download, byte-identical, from a table of the node's directory: the
/// file sits in the scope's `f0001/` beside its cold data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_file_downloads_byte_for_byte() {
    let (_dir, data, s, admin) = with_tables(&[
        "CREATE SHARED TABLE app.docs (id BIGINT PRIMARY KEY, title TEXT, doc FILE)",
    ])
    .await;
    let (pdf, r) = upload_round_trip(&s, &admin, "app.docs").await;
    let on_disk = data.join("storage/app/docs/f0001").join(stored_name(
        r["id"].as_str().unwrap_or_default(),
        "Report Q3.pdf",
    ));
    assert_eq!(std::fs::read(&on_disk).expect("stored on disk"), pdf);
    // An UPDATE takes a file too; the row then holds the new reference.
    let (status, answer) = s
        .multipart(
            &admin,
            "UPDATE app.docs SET doc = FILE('v2') WHERE id = 1",
            &[(
                "file:v2",
                Some("notes.txt"),
                "text/plain",
                b"second version",
            )],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let read = s
        .ok(&admin, "SELECT id, doc FROM app.docs WHERE id = 1")
        .await;
    let v2 = file_ref(&read, 1);
    assert_eq!(v2["name"], "notes.txt");
    let (status, headers, body) = s.get(&path_of("app.docs", &v2), Some(&admin), &[]).await;
    assert_eq!((status, body.as_slice()), (200, &b"second version"[..]));
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/plain")
    );
    // The same after a restart, from the same files.
    s.stop();
    let s = Server::start(&data).await;
    let admin = s.login("admin", "kalamdb123").await;
    let (status, _, body) = s.get(&path_of("app.docs", &r), Some(&admin), &[]).await;
    assert_eq!(status, 200);
    assert!(body == pdf);
}

/// The same against an S3-compatible endpoint on a loopback port: the file is an object
/// under the table's prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_a_table_on_s3_are_objects_in_its_bucket() {
    let s3 = S3::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(&dir.path().join("data")).await;
    let admin = s.setup_and_login().await;
    s.ok_all(
        &admin,
        &[
            &s3.storage_sql("lake", "lake/folddb", &s3.secret_key),
            "CREATE NAMESPACE app",
            "CREATE SHARED TABLE app.docs (id BIGINT PRIMARY KEY, title TEXT, doc FILE) \
             WITH (STORAGE_ID = 'lake')",
        ],
    )
    .await;
    let (pdf, r) = upload_round_trip(&s, &admin, "app.docs").await;
    let objects = s3.objects("lake/folddb/app/docs/f0001/").await;
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(objects[0].1, pdf.len() as u64);
    assert!(objects[0].0.ends_with(&stored_name(
        r["id"].as_str().unwrap_or_default(),
        "Report Q3.pdf"
    )));
}

/// Who may download what (API.md 1.8): a USER table's file from the caller's own scope, or
/// another user's with `user_id` for roles that may act as that user; a SHARED table's by its
/// access level; never without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_follow_the_permission_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(&dir.path().join("data")).await;
    let admin = s.setup_and_login().await;
    s.ok_all(
        &admin,
        &[
            "CREATE NAMESPACE app",
            "CREATE USER TABLE app.mine (id BIGINT PRIMARY KEY, doc FILE)",
            "CREATE SHARED TABLE app.private (id BIGINT PRIMARY KEY, doc FILE)",
            "CREATE SHARED TABLE app.public (id BIGINT PRIMARY KEY, doc FILE) \
             WITH (ACCESS_LEVEL = 'PUBLIC')",
            "CREATE STREAM TABLE app.events (id BIGINT PRIMARY KEY, doc FILE) \
             WITH (TTL_SECONDS = 60)",
        ],
    )
    .await;
    let alice = s.user(&admin, "alice", "alice-pass-1", "user").await;
    let bob = s.user(&admin, "bob", "bob-pass-12", "user").await;
    let service = s.user(&admin, "svc", "svc-pass-123", "service").await;
    let insert = "INSERT INTO app.mine (id, doc) VALUES (1, FILE(\"f\"))";
    let (status, answer) = s
        .multipart(
            &alice,
            insert,
            &[("file:f", Some("a.txt"), "text/plain", b"alice's")],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let r = file_ref(&s.ok(&alice, "SELECT id, doc FROM app.mine").await, 1);
    let path = path_of("app.mine", &r);
    let get = |token: Option<String>, path: String| {
        let s = &s;
        async move { s.get(&path, token.as_deref(), &[]).await.0 }
    };
    assert_eq!(get(Some(alice.clone()), path.clone()).await, 200);
    // Bob's own scope has no such file; bob may not act as alice.
    assert_eq!(get(Some(bob.clone()), path.clone()).await, 404);
    let as_alice = format!("{path}?user_id=alice");
    assert_eq!(get(Some(bob.clone()), as_alice.clone()).await, 403);
    assert_eq!(get(Some(service.clone()), as_alice.clone()).await, 200);
    assert_eq!(get(Some(admin.clone()), as_alice.clone()).await, 200);
    assert_eq!(get(None, path.clone()).await, 401);
    assert_eq!(get(Some("not-a-jwt".into()), path.clone()).await, 401);

    // SHARED: PRIVATE for service and up, PUBLIC for everyone; user_id is not for them.
    for (table, user_reads) in [("app.private", false), ("app.public", true)] {
        let (status, answer) = s
            .multipart(
                &admin,
                &format!("INSERT INTO {table} (id, doc) VALUES (1, FILE('f'))"),
                &[(
                    "file:f",
                    Some("s.bin"),
                    "application/octet-stream",
                    b"shared",
                )],
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        let r = file_ref(
            &s.ok(&admin, &format!("SELECT id, doc FROM {table}")).await,
            1,
        );
        let path = path_of(table, &r);
        let expected = if user_reads { 200 } else { 403 };
        assert_eq!(
            get(Some(alice.clone()), path.clone()).await,
            expected,
            "{table}"
        );
        assert_eq!(
            get(Some(service.clone()), path.clone()).await,
            200,
            "{table}"
        );
        assert_eq!(
            get(Some(admin.clone()), format!("{path}?user_id=alice")).await,
            400
        );
    }
    // A user may not write files into a PRIVATE shared table either.
    let (status, answer) = s
        .multipart(
            &alice,
            "INSERT INTO app.private (id, doc) VALUES (2, FILE('f'))",
            &[("file:f", Some("x.bin"), "application/octet-stream", b"x")],
        )
        .await;
    assert_eq!(status, 403, "{answer}");
    // STREAM tables hold no files; unknown tables and files are 404s.
    let (status, answer) = s
        .multipart(
            &alice,
            "INSERT INTO app.events (id, doc) VALUES (1, FILE('f'))",
            &[("file:f", Some("x.bin"), "application/octet-stream", b"x")],
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("INVALID_INPUT"))
    );
    assert_eq!(
        get(
            Some(admin.clone()),
            "/v1/files/app/events/f0001/1.bin".into()
        )
        .await,
        400
    );
    let (status, _, body) = s
        .get("/v1/files/app/nope/f0001/1.bin", Some(&admin), &[])
        .await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("Table 'app.nope' not found"));
    let (status, _, body) = s
        .get(
            "/v1/files/app/mine/f0001/999-missing.txt",
            Some(&alice),
            &[],
        )
        .await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("FILE_NOT_FOUND"));
}

/// Uploads that break the rules are refused with their code, and change nothing: no row,
/// no file left in the storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_and_leave_nothing() {
    let (_dir, data, s, admin) = with_tables(&[
        "CREATE SHARED TABLE app.docs (id BIGINT PRIMARY KEY, doc FILE)",
        "INSERT INTO app.docs (id) VALUES (1)",
    ])
    .await;
    let insert = |id: i64| format!("INSERT INTO app.docs (id, doc) VALUES ({id}, FILE('f'))");
    let small: &[u8] = b"bytes";
    let too_big = vec![0u8; (25 << 20) + 1];
    let many: Vec<(String, Vec<u8>)> = (0..21).map(|i| (format!("file:f{i}"), vec![1u8])).collect();
    let many_parts: Vec<Part<'_>> = many
        .iter()
        .map(|(n, b)| {
            (
                n.as_str(),
                Some("x.bin"),
                "application/octet-stream",
                b.as_slice(),
            )
        })
        .collect();
    let cases: Vec<(String, Vec<Part<'_>>, u16, &str)> = vec![
        (
            insert(2),
            vec![(
                "file:f",
                Some("big.bin"),
                "application/octet-stream",
                &too_big,
            )],
            400,
            "FILE_TOO_LARGE",
        ),
        (insert(2), many_parts, 400, "TOO_MANY_FILES"),
        (insert(2), vec![], 400, "MISSING_FILE"),
        (
            insert(2),
            vec![
                ("file:f", Some("a"), "text/plain", small),
                ("file:g", Some("b"), "text/plain", small),
            ],
            400,
            "EXTRA_FILE",
        ),
        (
            format!("{}; SELECT 1", insert(2)),
            vec![("file:f", Some("a"), "text/plain", small)],
            400,
            "INVALID_INPUT",
        ),
        (
            "SELECT FILE('f')".into(),
            vec![("file:f", Some("a"), "text/plain", small)],
            400,
            "INVALID_INPUT",
        ),
        (
            insert(2),
            vec![("bogus", None, "text/plain", small)],
            400,
            "INVALID_INPUT",
        ),
        // Refused when it runs (a duplicate key): its file is removed again.
        (
            insert(1),
            vec![("file:f", Some("a"), "text/plain", small)],
            400,
            "SQL_EXECUTION_ERROR",
        ),
    ];
    for (sql, parts, status, code) in cases {
        let (got, answer) = s.multipart(&admin, &sql, &parts).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{sql}: {answer}"
        );
    }
    // FILE placeholders need a multipart request.
    let (status, code) = s.fails(&admin, &insert(3)).await;
    assert_eq!((status, code.as_str()), (400, "INVALID_INPUT"));
    // Nothing changed: one row, no file.
    let count = s.ok(&admin, "SELECT COUNT(*) AS n FROM app.docs").await;
    assert_eq!(rows(&count)[0][0], "1");
    let stored: Vec<_> = std::fs::read_dir(data.join("storage/app/docs/f0001"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(stored.is_empty(), "{stored:?}");
    // Download paths that try to leave the table are refused.
    for path in [
        "/v1/files/app/docs/f0001/..%2F..%2Fmanifest.json",
        "/v1/files/app/docs/f0001/%2e%2e",
        "/v1/files/app/docs/..%2Fx/a.txt",
        "/v1/files/app/docs/f0001/a%5Cb",
        "/v1/files/app/docs/f0001",
    ] {
        let (status, _, body) = s.get(path, Some(&admin), &[]).await;
        assert_eq!(status, 400, "{path}: {}", String::from_utf8_lossy(&body));
    }
    // And the server carries on.
    let (status, answer) = s
        .multipart(
            &admin,
            &insert(4),
            &[("file:f", Some("ok.txt"), "text/plain", small)],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
}

/// A node killed (SIGKILL) while uploads run: after a restart every acknowledged upload's
/// row is there, and every row's file downloads with the bytes its `sha256` names — no row
/// points at a missing file (files are durable before their row is proposed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_uploads_leaves_no_row_without_its_file() {
    let (_dir, data, s, admin) =
        with_tables(&["CREATE USER TABLE app.docs (id BIGINT PRIMARY KEY, doc FILE)"]).await;
    // Uploads one after another until the server dies under them: the ids acknowledged.
    let uploads = async {
        let mut acknowledged = Vec::new();
        for id in 0..1000i64 {
            let bytes = blob(id as u64, 64 * 1024 + id as usize);
            let sent = s
                .try_multipart(
                    &admin,
                    &format!("INSERT INTO app.docs (id, doc) VALUES ({id}, FILE('f'))"),
                    &[(
                        "file:f",
                        Some("part.bin"),
                        "application/octet-stream",
                        &bytes,
                    )],
                )
                .await;
            match sent {
                Ok((200, _)) => acknowledged.push(id),
                _ => break,
            }
        }
        acknowledged
    };
    let kill = async {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        s.sigkill();
    };
    let (acknowledged, ()) = tokio::join!(uploads, kill);
    assert!(
        (1..1000).contains(&acknowledged.len()),
        "the kill came in the middle of the uploads: {}",
        acknowledged.len()
    );
    s.kill();

    let s = Server::start(&data).await;
    let admin = s.login("admin", "kalamdb123").await;
    let answer = s
        .ok(&admin, "SELECT id, doc FROM app.docs ORDER BY id")
        .await;
    let found = rows(&answer);
    let ids: Vec<i64> = found
        .iter()
        .map(|r| r[0].as_str().and_then(|s| s.parse().ok()).expect("an id"))
        .collect();
    for id in &acknowledged {
        assert!(ids.contains(id), "acknowledged upload {id} is lost");
    }
    for row in &found {
        let r: Value = serde_json::from_str(row[1].as_str().expect("FILE text")).expect("FileRef");
        let (status, _, body) = s.get(&path_of("app.docs", &r), Some(&admin), &[]).await;
        assert_eq!(status, 200, "row {} points at a missing file: {r}", row[0]);
        assert_eq!(r["sha256"], sha256_hex(&body).as_str());
    }
}

/// Files no row references any more go (`CL-…` jobs): one stored for a statement that never
/// committed (as a crash leaves it) at the next sweep; one replaced by an UPDATE or whose row
/// was deleted once the journal no longer holds the version that named it (until then an
/// `AS OF` read may still want it); the current file stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_no_row_references_any_more_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let s = Server::start_with(
        &data,
        &[
            ("FOLDDB_FILE_CLEANUP_INTERVAL_SECONDS", "1"),
            ("FOLDDB_FILE_CLEANUP_GRACE_SECONDS", "0"),
            ("FOLDDB_JOURNAL_RETENTION_SECONDS", "6"),
            ("FOLDDB_JOURNAL_TRIM_INTERVAL_SECONDS", "1"),
        ],
    )
    .await;
    let admin = s.setup_and_login().await;
    s.ok_all(
        &admin,
        &[
            "CREATE NAMESPACE app",
            "CREATE SHARED TABLE app.docs (id BIGINT PRIMARY KEY, doc FILE)",
        ],
    )
    .await;
    let upload = |sql: String, bytes: &'static [u8]| {
        let (s, admin) = (&s, admin.clone());
        async move {
            let (status, answer) = s
                .multipart(
                    &admin,
                    &sql,
                    &[("file:f", Some("f.txt"), "text/plain", bytes)],
                )
                .await;
            assert_eq!(status, 200, "{sql}: {answer}");
        }
    };
    let file_of = |id: i64| {
        let (s, admin) = (&s, admin.clone());
        async move {
            file_ref(
                &s.ok(
                    &admin,
                    &format!("SELECT id, doc FROM app.docs WHERE id = {id}"),
                )
                .await,
                1,
            )
        }
    };
    upload(
        "INSERT INTO app.docs (id, doc) VALUES (1, FILE('f'))".into(),
        b"first",
    )
    .await;
    upload(
        "INSERT INTO app.docs (id, doc) VALUES (2, FILE('f'))".into(),
        b"deleted",
    )
    .await;
    let (first, deleted) = (file_of(1).await, file_of(2).await);
    upload(
        "UPDATE app.docs SET doc = FILE('f') WHERE id = 1".into(),
        b"second",
    )
    .await;
    let second = file_of(1).await;
    s.ok(&admin, "DELETE FROM app.docs WHERE id = 2").await;
    let subfolder = data.join("storage/app/docs/f0001");
    std::fs::write(subfolder.join("1-orphan.txt"), b"never committed").expect("orphan");
    let status = |r: Value| {
        let (s, admin) = (&s, admin.clone());
        async move { s.get(&path_of("app.docs", &r), Some(&admin), &[]).await.0 }
    };
    // The journal still holds the versions that named the replaced and the deleted file.
    assert_eq!(status(first.clone()).await, 200);
    assert_eq!(status(deleted.clone()).await, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut orphan_went_first = false;
    loop {
        let orphan = subfolder.join("1-orphan.txt").exists();
        let (a, d) = (status(first.clone()).await, status(deleted.clone()).await);
        if !orphan && a == 200 {
            orphan_went_first = true;
        }
        if !orphan && a == 404 && d == 404 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "orphan {orphan}, replaced {a}, deleted {d}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        orphan_went_first,
        "the orphan went before the journal let the others go"
    );
    let (code, _, body) = s
        .get(&path_of("app.docs", &second), Some(&admin), &[])
        .await;
    assert_eq!((code, body.as_slice()), (200, &b"second"[..]));
    let jobs = s
        .ok(
            &admin,
            "SELECT job_id, status FROM system.jobs WHERE job_type = 'cleanup'",
        )
        .await;
    let jobs = rows(&jobs);
    assert!(!jobs.is_empty());
    for j in &jobs {
        assert!(j[0].as_str().unwrap_or_default().starts_with("CL-"), "{j}");
        assert_eq!(j[1], "completed");
    }
}

/// `folddb log replay` rebuilds the rows from the log, which holds each file's reference and
/// not its bytes: it copies every referenced file from the original's storage, checked
/// against its SHA-256, and names each one that is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_copies_the_files_its_rows_reference_and_names_the_missing() {
    let (dir, data, s, admin) = with_tables(&[
        "CREATE SHARED TABLE app.docs (id BIGINT PRIMARY KEY, doc FILE)",
        "CREATE USER TABLE app.mine (id BIGINT PRIMARY KEY, doc FILE)",
    ])
    .await;
    let alice = s.user(&admin, "alice", "alice-pass-1", "user").await;
    let shared = blob(1, 100_000);
    let own = blob(2, 5_000);
    for (token, table, bytes) in [(&admin, "app.docs", &shared), (&alice, "app.mine", &own)] {
        let (status, answer) = s
            .multipart(
                token,
                &format!("INSERT INTO {table} (id, doc) VALUES (1, FILE('f'))"),
                &[("file:f", Some("f.bin"), "application/octet-stream", bytes)],
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let shared_ref = file_ref(&s.ok(&admin, "SELECT id, doc FROM app.docs").await, 1);
    let own_ref = file_ref(&s.ok(&alice, "SELECT id, doc FROM app.mine").await, 1);
    s.stop();

    let replayed = dir.path().join("replayed");
    let out = folddb_tests::replay(&data, &replayed, None);
    assert!(out.contains("copied 2 files"), "{out}");
    assert!(!out.contains("missing"), "{out}");
    let r = Server::start(&replayed).await;
    let admin = r.login("admin", "kalamdb123").await;
    let alice = r.login("alice", "alice-pass-1").await;
    let (status, _, body) = r
        .get(&path_of("app.docs", &shared_ref), Some(&admin), &[])
        .await;
    assert_eq!(status, 200);
    assert!(body == shared);
    let (status, _, body) = r
        .get(&path_of("app.mine", &own_ref), Some(&alice), &[])
        .await;
    assert_eq!(status, 200);
    assert!(body == own);
    r.stop();

    // One file gone from the original, one damaged: both named.
    let stored = |table: &str, scope: &str, r: &Value| {
        let id = r["id"].as_str().unwrap_or_default();
        data.join("storage/app")
            .join(table)
            .join(scope)
            .join("f0001")
            .join(stored_name(id, "f.bin"))
    };
    std::fs::remove_file(stored("docs", "", &shared_ref)).expect("remove");
    let damaged = stored("mine", "alice", &own_ref);
    let mut bytes = std::fs::read(&damaged).expect("read");
    bytes[0] ^= 1;
    std::fs::write(&damaged, bytes).expect("write");
    let again = dir.path().join("again");
    let out = folddb_tests::replay(&data, &again, None);
    assert!(
        out.contains("2 files the rows reference are missing or damaged"),
        "{out}"
    );
    assert!(out.contains("not found"), "{out}");
    assert!(out.contains("its SHA-256 is"), "{out}");
}
