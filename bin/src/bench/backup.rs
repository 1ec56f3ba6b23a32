//! The `backup` scenario of `folddb bench sql` (#21): `BACKUP DATABASE` and `RESTORE
//! DATABASE` of a namespace of `--backup-mb` MiB of rows (1 GiB by default; three quarters
//! flushed to the cold tier, the rest hot), against copying the backup's files directly on
//! this machine (read, write, sync: what moving those bytes costs at least).
//!
//! The server must run on this machine (the bench reads the backup it wrote to time the
//! direct copy, and removes it after). Each restore is checked: the same row count and sum.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value as Json;

use super::Latency;
use super::files::mib_per_s;
use super::sql::{Client, Outcome};

/// Bytes of each row's payload.
const ROW_BYTES: usize = 1024;
/// Rows per INSERT.
const BATCH: u64 = 400;
const BACKUPS: usize = 3;
const RESTORES: usize = 3;

/// Printable bytes that compress about as well as text does.
fn payload(n: u64) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.";
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..ROW_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            CHARS[(x % CHARS.len() as u64) as usize] as char
        })
        .collect()
}

/// Waits for job `id`: its message, or an error if it failed.
async fn wait_job(client: &Client, id: &str) -> anyhow::Result<String> {
    loop {
        let r = client
            .sql(&format!(
                "SELECT status, message FROM system.jobs WHERE job_id = '{id}'"
            ))
            .await?;
        let row = &r["results"][0]["rows"][0];
        match row[0].as_str() {
            Some("completed") => return Ok(row[1].as_str().unwrap_or_default().to_owned()),
            Some("failed" | "cancelled") => bail!("job {id}: {}", row[1]),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn job_id(answer: &Json) -> anyhow::Result<String> {
    let message = answer["results"][0]["message"]
        .as_str()
        .context("message")?;
    Ok(message
        .rsplit("Job ID: ")
        .next()
        .and_then(|m| m.split_whitespace().next())
        .context("job id")?
        .trim_end_matches('.')
        .to_owned())
}

async fn count_and_sum(client: &Client, table: &str) -> anyhow::Result<(String, String)> {
    let r = client
        .sql(&format!("SELECT COUNT(*), SUM(n) FROM {table}"))
        .await?;
    let row = &r["results"][0]["rows"][0];
    Ok((row[0].to_string(), row[1].to_string()))
}

/// Copies every file under `from` to `to`, syncing each: the bytes copied.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<u64> {
    std::fs::create_dir_all(to)?;
    let mut bytes = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            bytes += copy_tree(&entry.path(), &target)?;
        } else {
            let mut out = std::fs::File::create(&target)?;
            bytes += std::io::copy(&mut std::fs::File::open(entry.path())?, &mut out)?;
            out.flush()?;
            out.sync_all()?;
        }
    }
    Ok(bytes)
}

pub(super) async fn backup_restore(
    client: &Client,
    run_id: u64,
    mib: u64,
) -> anyhow::Result<Vec<Outcome>> {
    let ns = format!("bk{run_id}");
    let table = format!("{ns}.t");
    client.sql(&format!("CREATE NAMESPACE {ns}")).await?;
    client
        .sql(&format!(
            "CREATE SHARED TABLE {table} (id BIGINT PRIMARY KEY, n BIGINT NOT NULL, payload TEXT)"
        ))
        .await?;
    let rows = (mib << 20) / ROW_BYTES as u64;
    let logical = rows * ROW_BYTES as u64;
    let load = |from: u64, to: u64| {
        let table = table.clone();
        async move {
            let mut n = from;
            while n < to {
                let end = (n + BATCH).min(to);
                let values: Vec<String> = (n..end)
                    .map(|i| format!("({i}, {}, '{}')", i % 1000, payload(i)))
                    .collect();
                client
                    .exec(&format!(
                        "INSERT INTO {table} (id, n, payload) VALUES {}",
                        values.join(", ")
                    ))
                    .await?;
                n = end;
            }
            anyhow::Ok(())
        }
    };
    let cold = rows * 3 / 4;
    eprintln!("backup: loading {rows} rows ({mib} MiB of payload)");
    futures::future::try_join_all((0..4).map(|k| load(cold * k / 4, cold * (k + 1) / 4))).await?;
    let flush = client.sql(&format!("STORAGE FLUSH TABLE {table}")).await?;
    wait_job(client, &job_id(&flush)?).await?;
    load(cold, rows).await?;
    let expected = count_and_sum(client, &table).await?;

    let mut backup_samples = Vec::new();
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut on_disk = 0u64;
    for i in 0..BACKUPS {
        let name = format!("bench-{run_id}-{i}");
        let t = Instant::now();
        let answer = client
            .sql(&format!("BACKUP DATABASE {ns} TO '{name}'"))
            .await?;
        let message = wait_job(client, &job_id(&answer)?).await?;
        backup_samples.push(t.elapsed());
        let path = message
            .rsplit(" to '")
            .next()
            .and_then(|p| p.strip_suffix('\''))
            .context("the backup's path")?;
        paths.push(PathBuf::from(path));
        eprintln!("backup {i}: {:.1} s: {message}", t.elapsed().as_secs_f64());
    }
    // The direct copy of the same files.
    let mut copy_samples = Vec::new();
    let copies = tempfile::tempdir()?;
    for i in 0..BACKUPS {
        let t = Instant::now();
        on_disk = copy_tree(&paths[0], &copies.path().join(i.to_string()))?;
        copy_samples.push(t.elapsed());
    }
    drop(copies);
    let mut restore_samples = Vec::new();
    for i in 0..RESTORES {
        client.sql(&format!("DROP NAMESPACE {ns} CASCADE")).await?;
        let t = Instant::now();
        let answer = client
            .sql(&format!(
                "RESTORE DATABASE {ns} FROM '{}'",
                paths[i % paths.len()].display()
            ))
            .await?;
        let message = wait_job(client, &job_id(&answer)?).await?;
        restore_samples.push(t.elapsed());
        eprintln!("restore {i}: {:.1} s: {message}", t.elapsed().as_secs_f64());
        let got = count_and_sum(client, &table).await?;
        if got != expected {
            bail!("restore {i}: {got:?} rows and sum, the backup had {expected:?}");
        }
    }
    for p in &paths {
        let _ = std::fs::remove_dir_all(p);
    }
    client.sql(&format!("DROP NAMESPACE {ns} CASCADE")).await?;
    let median = |s: &[Duration]| Duration::from_secs_f64(Latency::of(s.to_vec()).p50_us / 1e6);
    let (backup, copy, restore) = (
        median(&backup_samples),
        median(&copy_samples),
        median(&restore_samples),
    );
    let copy_rate = mib_per_s(on_disk, copy);
    Ok(vec![
        Outcome {
            name: format!("BACKUP DATABASE, {mib} MiB namespace"),
            rows,
            elapsed: backup,
            latency: Latency::of(backup_samples),
            note: format!(
                "median of {BACKUPS}: {:.1} MiB/s of rows ({:.1} MiB/s written: the backup is \
                 {:.0} MiB); copying its files directly: {copy_rate:.1} MiB/s ({:.2}x)",
                mib_per_s(logical, backup),
                mib_per_s(on_disk, backup),
                on_disk as f64 / (1 << 20) as f64,
                mib_per_s(on_disk, backup) / copy_rate
            ),
            server_cpu_us: None,
        },
        Outcome {
            name: format!("RESTORE DATABASE, {mib} MiB namespace"),
            rows,
            elapsed: restore,
            latency: Latency::of(restore_samples),
            note: format!(
                "median of {RESTORES}: {:.1} MiB/s of rows, checksums first, rows through the \
                 log; copying the backup's files directly: {copy_rate:.1} MiB/s",
                mib_per_s(logical, restore)
            ),
            server_cpu_us: None,
        },
    ])
}
