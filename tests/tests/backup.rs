//! BACKUP / RESTORE DATABASE, SHOW BACKUPS, EXPORT USER DATA and SHOW EXPORT (#21, API.md
//! 1.8, 3.13), against the real binary: a backup taken while writes go on restores, on
//! another server, to exactly the state of its log index (the log replayed to that index
//! says what that state is); a damaged backup, a bad path, a namespace that exists are
//! refused and change nothing; a restore cut off by SIGKILL is undone at the next start; an
//! export holds exactly its caller's rows and files.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use folddb_tests::{Server, blob, rows};
use serde_json::Value;

const USERS: [&str; 2] = ["alice", "bob"];

/// Namespace `app`: a USER table with FILE cells (rows of alice and bob), a SHARED table
/// partly flushed to the cold tier, then changed (updates over cold rows, deletes).
async fn fill(s: &Server, admin: &str) {
    s.ok_all(
        admin,
        &[
            "CREATE NAMESPACE app",
            "CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT, doc FILE)",
            "CREATE SHARED TABLE app.items (id BIGINT PRIMARY KEY, n INT, v DOUBLE, tag TEXT)",
        ],
    )
    .await;
    for (u, user) in USERS.iter().enumerate() {
        let token = s.user(admin, user, &format!("{user}-pass-1"), "user").await;
        for i in 0..3u64 {
            let bytes = blob(u as u64 * 10 + i, 40_000 + i as usize);
            let (status, answer) = s
                .multipart(
                    &token,
                    &format!(
                        "INSERT INTO app.notes (id, body, doc) VALUES ({i}, '{user} note {i}', \
                         FILE(\"f\"))"
                    ),
                    &[(
                        "file:f",
                        Some("note.bin"),
                        "application/octet-stream",
                        &bytes,
                    )],
                )
                .await;
            assert_eq!(status, 200, "{answer}");
        }
        s.ok(
            &token,
            "INSERT INTO app.notes (id, body) VALUES (10, 'no file')",
        )
        .await;
    }
    let values: Vec<String> = (0..500)
        .map(|i| format!("({i}, {}, {}.5, 't{}')", i * 3, i, i % 7))
        .collect();
    s.ok(
        admin,
        &format!(
            "INSERT INTO app.items (id, n, v, tag) VALUES {}",
            values.join(", ")
        ),
    )
    .await;
    let (_, status, message) = s.run_job(admin, "STORAGE FLUSH TABLE app.items").await;
    assert_eq!(status, "completed", "{message}");
    s.ok_all(
        admin,
        &[
            "UPDATE app.items SET n = -1 WHERE id < 50",
            "DELETE FROM app.items WHERE id >= 450",
            "INSERT INTO app.items (id, n, v, tag) VALUES (1000, 1, 1.0, 'hot')",
        ],
    )
    .await;
}

/// Every row of namespace `app`, as the API answers them, table by table and (USER tables)
/// user by user.
async fn dump(s: &Server, admin: &str) -> Vec<(String, Value)> {
    let mut out = vec![(
        "items".to_owned(),
        Value::Array(rows(
            &s.ok(admin, "SELECT id, n, v, tag FROM app.items ORDER BY id")
                .await,
        )),
    )];
    for user in USERS {
        let answer = s
            .ok(
                admin,
                &format!(
                    "EXECUTE AS USER '{user}' (SELECT id, body, doc FROM app.notes ORDER BY id)"
                ),
            )
            .await;
        out.push((format!("notes of {user}"), Value::Array(rows(&answer))));
    }
    out
}

fn message(answer: &Value) -> String {
    answer["results"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn job_of(answer: &Value) -> String {
    message(answer)
        .rsplit("Job ID: ")
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_writes_restores_to_exactly_the_state_of_its_log_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let s = Arc::new(Server::start(&data).await);
    let admin = s.setup_and_login().await;
    fill(&s, &admin).await;

    // Writes go on while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (s, admin, stop, written) = (s.clone(), admin.clone(), stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut id = 2000;
            while !stop.load(Ordering::Relaxed) {
                s.ok(
                    &admin,
                    &format!(
                        "INSERT INTO app.items (id, n, v, tag) VALUES ({id}, {id}, 0.25, 'w'); \
                         UPDATE app.items SET n = n + 1 WHERE id = 7"
                    ),
                )
                .await;
                id += 1;
                written.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while written.load(Ordering::Relaxed) < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let target = dir.path().join("backup-all");
    let (id, status, msg) = s
        .run_job(
            &admin,
            &format!("BACKUP DATABASE TO '{}'", target.display()),
        )
        .await;
    assert!(id.starts_with("BK-"), "{id}");
    assert_eq!(status, "completed", "{msg}");
    let after = written.load(Ordering::Relaxed);
    while written.load(Ordering::Relaxed) < after + 20 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");

    let shown = s.ok(&admin, "SHOW BACKUPS FOR DATABASE app").await;
    let listed = rows(&shown);
    assert_eq!(listed.len(), 1, "{shown}");
    assert_eq!(listed[0][0], id.as_str());
    assert_eq!(listed[0][2], target.display().to_string());
    assert_eq!(listed[0][10], true, "the backup is present");
    let index: u64 = listed[0][3]
        .as_str()
        .map_or_else(|| listed[0][3].as_u64(), |t| t.parse().ok())
        .expect("log_index");
    assert!(msg.contains(&format!("as of log index {index}")), "{msg}");
    let source_now = dump(&s, &admin).await;
    let s = Arc::into_inner(s).expect("the writer is done");
    s.stop();

    // What the state was at that index: the log replayed to it.
    let replayed = dir.path().join("replayed");
    folddb_tests::replay(&data, &replayed, Some(index));
    let r = Server::start(&replayed).await;
    let r_admin = r.login("admin", "kalamdb123").await;
    let expected = dump(&r, &r_admin).await;
    r.stop();
    assert_ne!(
        expected, source_now,
        "writes went on after the backup: the states differ"
    );

    // Restored on a new server, every table's rows are those of the index.
    let fresh = tempfile::tempdir().expect("tempdir");
    let f = Server::start(&fresh.path().join("data")).await;
    let f_admin = f.setup_and_login().await;
    let answer = f
        .ok(
            &f_admin,
            &format!("RESTORE DATABASE FROM '{}'", target.display()),
        )
        .await;
    let job = job_of(&answer);
    assert!(job.starts_with("RS-"), "{answer}");
    let (status, msg) = f.wait_job(&f_admin, &job).await;
    assert_eq!(status, "completed", "{msg}");
    assert_eq!(dump(&f, &f_admin).await, expected);
    // Users came back with their passwords; their files with their bytes.
    let alice = f.login("alice", "alice-pass-1").await;
    let doc = rows(&f.ok(&alice, "SELECT doc FROM app.notes WHERE id = 1").await)[0][0].clone();
    let r: Value = serde_json::from_str(doc.as_str().expect("FileRef")).expect("json");
    let path = format!(
        "/v1/files/app/notes/{}/{}-note.bin",
        r["sub"].as_str().expect("sub"),
        r["id"].as_str().expect("id")
    );
    let (status, _, body) = f.get(&path, Some(&alice), &[]).await;
    assert_eq!(status, 200);
    assert!(
        body == blob(1, 40_001),
        "the restored file is byte-identical"
    );
    // The restore went through the log: a restart replays it.
    let data_f = fresh.path().join("data");
    f.stop();
    let f = Server::start(&data_f).await;
    let f_admin = f.login("admin", "kalamdb123").await;
    assert_eq!(dump(&f, &f_admin).await, expected);
    f.stop();
}

/// Runs `sql`, which must fail at once (400, `SQL_EXECUTION_ERROR`, as the reference answers
/// a missing or taken name) saying `says`.
async fn refused(s: &Server, token: &str, sql: &str, says: &str) {
    let (status, body) = s.sql(token, sql).await;
    assert_eq!(status, 400, "{sql}: {body}");
    assert_eq!(body["error"]["code"], "SQL_EXECUTION_ERROR", "{body}");
    let m = body["error"]["message"].as_str().unwrap_or_default();
    assert!(m.contains(says), "{sql}: {m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_backups_and_restores_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(&dir.path().join("data")).await;
    let admin = s.setup_and_login().await;
    fill(&s, &admin).await;
    let alice = s.login("alice", "alice-pass-1").await;
    let target = dir.path().join("b-app");
    let shown = target.display().to_string();

    // Only dba/system.
    let (status, code) = s
        .fails(&alice, &format!("BACKUP DATABASE app TO '{shown}'"))
        .await;
    assert_eq!((status, code.as_str()), (403, "PERMISSION_DENIED"));
    let (status, _) = s
        .fails(&alice, &format!("RESTORE DATABASE app FROM '{shown}'"))
        .await;
    assert_eq!(status, 403);
    // Paths: traversal, the data directory, a missing parent.
    for bad in [
        "../outside".to_owned(),
        format!("{}/../x", dir.path().display()),
        format!("{}/data/log", dir.path().display()),
        format!("{}/no/such/dir", dir.path().display()),
    ] {
        let (status, code) = s
            .fails(&admin, &format!("BACKUP DATABASE app TO '{bad}'"))
            .await;
        assert_eq!((status, code.as_str()), (400, "INVALID_INPUT"), "{bad}");
    }
    refused(
        &s,
        &admin,
        &format!("BACKUP DATABASE nope TO '{shown}'"),
        "does not exist",
    )
    .await;
    // A statement refused at once started no job.
    let jobs = s
        .ok(
            &admin,
            "SELECT job_id FROM system.jobs WHERE job_type = 'backup'",
        )
        .await;
    assert!(rows(&jobs).is_empty(), "{jobs}");
    let answer = s
        .ok(
            &admin,
            &format!("BACKUP DATABASE IF EXISTS nope TO '{shown}'"),
        )
        .await;
    assert!(message(&answer).contains("nothing backed up"), "{answer}");

    let (_, status, msg) = s
        .run_job(&admin, &format!("BACKUP DATABASE app TO '{shown}'"))
        .await;
    assert_eq!(status, "completed", "{msg}");
    // A directory that exists is never written into.
    let sql = format!("BACKUP DATABASE app TO '{shown}'");
    refused(&s, &admin, &sql, "already exists").await;
    // Restore: a missing path is an immediate error; an existing namespace is refused.
    let sql = format!(
        "RESTORE DATABASE app FROM '{}/missing'",
        dir.path().display()
    );
    refused(&s, &admin, &sql, "not found").await;
    let sql = format!("RESTORE DATABASE app FROM '{shown}'");
    refused(&s, &admin, &sql, "Namespace 'app' already exists").await;
    let answer = s
        .ok(
            &admin,
            &format!("RESTORE DATABASE IF NOT EXISTS app FROM '{shown}'"),
        )
        .await;
    assert!(message(&answer).contains("nothing restored"), "{answer}");

    // A damaged backup, restored where `app` was dropped: refused, nothing created.
    let before = dump(&s, &admin).await;
    s.ok(&admin, "DROP NAMESPACE app CASCADE").await;
    let part = target.join("tables/app/items/part-00000.parquet");
    let good = std::fs::read(&part).expect("part");
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x01;
    std::fs::write(&part, &bad).expect("write");
    let (_, status, msg) = s
        .run_job(&admin, &format!("RESTORE DATABASE app FROM '{shown}'"))
        .await;
    assert_eq!(status, "failed");
    assert!(
        msg.contains("damaged") && msg.contains("part-00000"),
        "{msg}"
    );
    let namespaces = s.ok(&admin, "SHOW NAMESPACES").await;
    assert!(
        !rows(&namespaces).iter().any(|r| r[0] == "app"),
        "{namespaces}"
    );
    // backup.json itself damaged: refused at once.
    std::fs::write(&part, &good).expect("write");
    let manifest = target.join("backup.json");
    let text = std::fs::read(&manifest).expect("manifest");
    let mut bad = text.clone();
    bad[10] ^= 0x02;
    std::fs::write(&manifest, &bad).expect("write");
    let (status, code) = s
        .fails(&admin, &format!("RESTORE DATABASE app FROM '{shown}'"))
        .await;
    assert_eq!((status, code.as_str()), (400, "INVALID_INPUT"));
    std::fs::write(&manifest, &text).expect("write");
    // Whole again: it restores what was there.
    let (_, status, msg) = s
        .run_job(&admin, &format!("RESTORE DATABASE app FROM '{shown}'"))
        .await;
    assert_eq!(status, "completed", "{msg}");
    assert_eq!(dump(&s, &admin).await, before);
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_cut_off_by_sigkill_is_undone_when_the_server_starts_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let s = Server::start(&data).await;
    let admin = s.setup_and_login().await;
    fill(&s, &admin).await;
    let target = dir.path().join("b-app");
    let shown = target.display().to_string();
    let (_, status, msg) = s
        .run_job(&admin, &format!("BACKUP DATABASE app TO '{shown}'"))
        .await;
    assert_eq!(status, "completed", "{msg}");
    let before = dump(&s, &admin).await;
    s.ok(&admin, "DROP NAMESPACE app CASCADE").await;
    s.stop();

    // Each restored table is followed by a pause: the crash comes after the first.
    let s = Server::start_with(&data, &[("FOLDDB_TEST_RESTORE_PAUSE_MS", "60000")]).await;
    let admin = s.login("admin", "kalamdb123").await;
    let answer = s
        .ok(&admin, &format!("RESTORE DATABASE app FROM '{shown}'"))
        .await;
    let job = job_of(&answer);
    let mut restored_some = false;
    for _ in 0..300 {
        let jobs = s
            .ok(
                &admin,
                &format!("SELECT message FROM system.jobs WHERE job_id = '{job}'"),
            )
            .await;
        if rows(&jobs)
            .first()
            .and_then(|r| r[0].as_str())
            .is_some_and(|m| m.starts_with("restored "))
        {
            restored_some = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(restored_some, "the restore reached its first pause");
    let tables = s.ok(&admin, "SHOW TABLES IN app").await;
    assert_eq!(rows(&tables).len(), 2, "half restored: {tables}");
    s.sigkill();
    drop(s);

    let s = Server::start(&data).await;
    let admin = s.login("admin", "kalamdb123").await;
    let mut gone = false;
    for _ in 0..200 {
        let namespaces = s.ok(&admin, "SHOW NAMESPACES").await;
        if !rows(&namespaces).iter().any(|r| r[0] == "app") {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "the half restore was undone");
    assert!(
        std::fs::read_dir(data.join("restores"))
            .expect("restores")
            .next()
            .is_none(),
        "its mark is gone"
    );
    // And the backup still restores whole.
    let (_, status, msg) = s
        .run_job(&admin, &format!("RESTORE DATABASE app FROM '{shown}'"))
        .await;
    assert_eq!(status, "completed", "{msg}");
    assert_eq!(dump(&s, &admin).await, before);
    s.stop();
}

/// The files of zip `bytes`, by name.
fn unzip(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
    let mut out = std::collections::BTreeMap::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).expect("entry");
        let mut content = Vec::new();
        f.read_to_end(&mut content).expect("read");
        out.insert(f.name().to_owned(), content);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_holds_exactly_its_callers_rows_and_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(&dir.path().join("data")).await;
    let admin = s.setup_and_login().await;
    fill(&s, &admin).await;
    let alice = s.login("alice", "alice-pass-1").await;
    let bob = s.login("bob", "bob-pass-1").await;

    let answer = s.ok(&alice, "EXPORT USER DATA").await;
    let job = job_of(&answer);
    assert!(job.starts_with("UE-"), "{answer}");
    assert!(message(&answer).contains("SHOW EXPORT"), "{answer}");
    let mut url = String::new();
    for _ in 0..300 {
        let shown = s.ok(&alice, "SHOW EXPORT").await;
        let listed = rows(&shown);
        assert_eq!(listed.len(), 1, "{shown}");
        assert_eq!(listed[0][0], job.as_str());
        if listed[0][1] == "completed" {
            url = listed[0][4].as_str().expect("download_url").to_owned();
            break;
        }
        assert_ne!(listed[0][1], "failed", "{shown}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let path = format!("/v1/exports/alice/{job}");
    assert!(url.ends_with(&path), "{url}");
    // Bob sees none of alice's exports.
    assert!(rows(&s.ok(&bob, "SHOW EXPORT").await).is_empty());

    let (status, headers, body) = s.get(&path, Some(&alice), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/zip");
    let files = unzip(&body);
    let notes: Vec<Value> =
        serde_json::from_slice(&files["app.notes.json"]).expect("notes as JSON");
    let own = rows(
        &s.ok(&alice, "SELECT id, body, doc FROM app.notes ORDER BY id")
            .await,
    );
    assert_eq!(notes.len(), own.len());
    for (got, want) in notes.iter().zip(&own) {
        assert_eq!(got["id"], want[0]);
        assert_eq!(got["body"], want[1]);
        assert_eq!(got["doc"], want[2]);
        assert!(got["body"].as_str().is_some_and(|b| !b.starts_with("bob")));
    }
    // Her three files, byte for byte, and nothing of bob's or of the SHARED table.
    let stored: Vec<&String> = files.keys().filter(|k| k.starts_with("files/")).collect();
    assert_eq!(stored.len(), 3, "{stored:?}");
    for i in 0..3u64 {
        let doc: Value =
            serde_json::from_str(own[i as usize][2].as_str().expect("doc")).expect("ref");
        let name = format!(
            "files/app.notes/{}/{}-note.bin",
            doc["sub"].as_str().expect("sub"),
            doc["id"].as_str().expect("id")
        );
        assert!(files[&name] == blob(i, 40_000 + i as usize), "{name}");
    }
    assert!(!files.contains_key("app.items.json"));
    let about: Value = serde_json::from_slice(&files["export.json"]).expect("export.json");
    assert_eq!(about["user_id"], "alice");

    // Bob may not download it; the admin may; an unknown export is 404.
    let (status, _, _) = s.get(&path, Some(&bob), &[]).await;
    assert_eq!(status, 403);
    let (status, _, _) = s.get(&path, None, &[]).await;
    assert_eq!(status, 401);
    let (status, _, same) = s.get(&path, Some(&admin), &[]).await;
    assert_eq!(status, 200);
    assert!(same == body);
    for missing in ["/v1/exports/alice/UE-nope", "/v1/exports/alice/..%2F..%2Fx"] {
        let (status, _, body) = s.get(missing, Some(&alice), &[]).await;
        assert_eq!(status, 404, "{missing}");
        let body: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["code"], "EXPORT_NOT_FOUND");
    }
    s.stop();
}

/// Copies directory `from` (recursively) to `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A backup of format 1 as an earlier build wrote it (`query/fixtures/backup/format-1`,
/// `query/FORMAT.md`): every later build restores it to the same rows and files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_backup_fixture_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = dir.path().join("format-1");
    copy_dir(
        &folddb_tests::workspace_root().join("query/fixtures/backup/format-1"),
        &fixture,
    );
    let s = Server::start(&dir.path().join("data")).await;
    let admin = s.setup_and_login().await;
    let (_, status, msg) = s
        .run_job(
            &admin,
            &format!("RESTORE DATABASE fx FROM '{}'", fixture.display()),
        )
        .await;
    assert_eq!(status, "completed", "{msg}");
    assert!(msg.contains("as of log index 14"), "{msg}");
    let items = s
        .ok(&admin, "SELECT id, price, e, ok FROM fx.items ORDER BY id")
        .await;
    assert_eq!(
        serde_json::to_string(&rows(&items)).expect("json"),
        r#"[[1,"9.99",[1.0,0.0,0.0],true],[2,"0.50",[0.0,1.0,0.0],false],[3,"100.25",[0.5,0.5,0.0],null]]"#
    );
    let described = s.ok(&admin, "DESCRIBE TABLE fx.items").await;
    assert!(
        described.to_string().contains("vector index USING COSINE"),
        "{described}"
    );
    let alice = s.user(&admin, "alice", "alice-pass-1", "user").await;
    let notes = s
        .ok(&alice, "SELECT id, body, at, doc FROM fx.notes ORDER BY id")
        .await;
    let notes = rows(&notes);
    assert_eq!(notes.len(), 2);
    assert_eq!(notes[0][1], "first");
    assert_eq!(notes[1][1], "no file");
    assert!(notes[1][3].is_null());
    let doc: Value = serde_json::from_str(notes[0][3].as_str().expect("doc")).expect("ref");
    assert_eq!(doc["id"], "386727242476032000");
    let (status, _, body) = s
        .get(
            "/v1/files/fx/notes/f0001/386727242476032000-f.txt",
            Some(&alice),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, b"fixture file, format 1\n");
    s.stop();
}
