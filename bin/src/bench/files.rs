//! The `files` scenario of `folddb bench sql` (#21): FILE uploads and downloads of 10 MiB
//! files over HTTP, one client, against writing and reading the same bytes directly on this
//! machine's disk (a temporary file, synced: what storing a file costs at least).
//!
//! Uploads are multipart INSERTs (API.md 1.7.1), downloads `GET /v1/files/…` (1.8); each
//! download is checked byte for byte against what was uploaded.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value as Json;

use super::Latency;
use super::sql::{Client, Outcome};

/// Bytes of each file.
const FILE_BYTES: usize = 10 << 20;
const BOUNDARY: &str = "folddb-bench-boundary";

/// Deterministic bytes of file `n` (not compressible).
fn content(n: u64) -> Vec<u8> {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(FILE_BYTES);
    while out.len() < FILE_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(FILE_BYTES);
    out
}

fn multipart(sql: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(bytes.len() + 512);
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"sql\"\r\n\r\n{sql}\r\n\
             --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file:f\"; \
             filename=\"bench.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// MiB per second.
pub(super) fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / elapsed.as_secs_f64()
}

/// Uploads then downloads 10 MiB files for `duration` each; the direct writes and reads of
/// the same bytes alongside.
pub(super) async fn upload_download(
    client: &Client,
    run_id: u64,
    duration: Duration,
) -> anyhow::Result<Vec<Outcome>> {
    let table = format!("bench.f{run_id}");
    client
        .sql(&format!(
            "CREATE SHARED TABLE {table} (id BIGINT PRIMARY KEY, doc FILE)"
        ))
        .await?;
    // Uploads.
    let mut uploaded = Vec::new();
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < duration || uploaded.is_empty() {
        let n = uploaded.len() as u64;
        let bytes = content(n);
        let body = multipart(
            &format!("INSERT INTO {table} (id, doc) VALUES ({n}, FILE('f'))"),
            &bytes,
        );
        let t = Instant::now();
        let r = client
            .http
            .post(format!("{}/v1/api/sql", client.url))
            .bearer_auth(&client.token)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body)
            .send()
            .await?;
        let status = r.status();
        let answer = r.text().await?;
        if !status.is_success() {
            bail!("upload {n}: {status}: {answer}");
        }
        samples.push(t.elapsed());
        uploaded.push(n);
    }
    let up_elapsed = started.elapsed();
    // The paths the server gives each file.
    let rows = client
        .sql(&format!("SELECT id, doc FROM {table} ORDER BY id"))
        .await?;
    let mut paths = Vec::new();
    for row in rows["results"][0]["rows"].as_array().context("rows")? {
        let r: Json = serde_json::from_str(row[1].as_str().context("a FILE cell")?)?;
        let (id, sub) = (
            r["id"].as_str().context("id")?,
            r["sub"].as_str().context("sub")?,
        );
        paths.push(format!(
            "{}/v1/files/{}/{sub}/{id}-bench.bin",
            client.url,
            table.replace('.', "/")
        ));
    }
    // Downloads, each checked.
    let mut down_samples = Vec::new();
    let started = Instant::now();
    let mut downloaded = 0usize;
    while started.elapsed() < duration || downloaded == 0 {
        let i = downloaded % paths.len();
        let t = Instant::now();
        let r = client
            .http
            .get(&paths[i])
            .bearer_auth(&client.token)
            .send()
            .await?;
        let status = r.status();
        let body = r.bytes().await?;
        down_samples.push(t.elapsed());
        if !status.is_success() || body.as_ref() != content(i as u64).as_slice() {
            bail!(
                "download {i}: {status}, {} bytes, not what was uploaded",
                body.len()
            );
        }
        downloaded += 1;
    }
    let down_elapsed = started.elapsed();
    // The same bytes written (and synced) and read directly.
    let dir = tempfile::tempdir()?;
    let bytes = content(0);
    let (mut write_samples, mut read_samples) = (Vec::new(), Vec::new());
    for n in 0..uploaded.len().max(3) {
        let path = dir.path().join(format!("{n}.bin"));
        let t = Instant::now();
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        write_samples.push(t.elapsed());
        let t = Instant::now();
        let mut back = Vec::with_capacity(bytes.len());
        std::fs::File::open(&path)?.read_to_end(&mut back)?;
        read_samples.push(t.elapsed());
    }
    let median = |s: &[Duration]| Latency::of(s.to_vec()).p50_us / 1e6;
    let direct_write = bytes.len() as f64 / (1 << 20) as f64 / median(&write_samples);
    let direct_read = bytes.len() as f64 / (1 << 20) as f64 / median(&read_samples);
    let up = mib_per_s((FILE_BYTES * uploaded.len()) as u64, up_elapsed);
    let down = mib_per_s((FILE_BYTES * downloaded) as u64, down_elapsed);
    Ok(vec![
        Outcome {
            name: "upload 10 MiB files, 1 client".into(),
            rows: uploaded.len() as u64,
            elapsed: up_elapsed,
            latency: Latency::of(samples),
            note: format!(
                "rows/s: files/s; {up:.1} MB/s; writing the bytes to a file directly \
                 (synced): {direct_write:.1} MB/s ({:.2}x)",
                up / direct_write
            ),
            server_cpu_us: None,
        },
        Outcome {
            name: "download 10 MiB files, 1 client".into(),
            rows: downloaded as u64,
            elapsed: down_elapsed,
            latency: Latency::of(down_samples),
            note: format!(
                "rows/s: files/s; {down:.1} MB/s; reading the file directly: \
                 {direct_read:.1} MB/s ({:.2}x)",
                down / direct_read
            ),
            server_cpu_us: None,
        },
    ])
}
