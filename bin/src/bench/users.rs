//! `folddb bench sql --scenarios isolation,login`: what per-user isolation and logins cost.
//!
//! * isolation: the same load — each client inserts one row into a USER table and reads it
//!   back by primary key — first with every client signed in as one user, then with every
//!   client a different user. The ratio of the two rates is what isolation costs.
//! * login: password logins per second at the server's bcrypt cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value as Json, json};

use super::sql::{Client, Outcome, SqlBenchArgs, load, login};

const PASSWORD: &str = "bench-user-pass-1";

/// Creates (once) and signs in `bench_u<i>` for each of `n` users.
async fn users(admin: &Client, n: usize) -> anyhow::Result<Vec<Arc<Client>>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("bench_u{i}");
        if let Err(e) = admin
            .sql(&format!(
                "CREATE USER {name} WITH PASSWORD '{PASSWORD}' ROLE user"
            ))
            .await
            && !e.to_string().contains("already exists")
        {
            return Err(e);
        }
        let token = sign_in(&admin.http, &admin.url, &name).await?;
        out.push(Arc::new(Client {
            http: admin.http.clone(),
            url: admin.url.clone(),
            token,
        }));
    }
    Ok(out)
}

async fn sign_in(http: &reqwest::Client, url: &str, user: &str) -> anyhow::Result<String> {
    let r = http
        .post(format!("{url}/v1/api/auth/login"))
        .json(&json!({"user": user, "password": PASSWORD}))
        .send()
        .await?;
    let status = r.status();
    let body: Json = r.json().await?;
    anyhow::ensure!(status.is_success(), "login as {user}: {status} {body}");
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("login answer without access_token")
}

pub(super) async fn isolation(
    admin: &Arc<Client>,
    args: &SqlBenchArgs,
    duration: Duration,
) -> anyhow::Result<Vec<Outcome>> {
    let table = format!("bench.iso{}", crate::auth::now_s());
    admin.sql("CREATE NAMESPACE IF NOT EXISTS bench").await?;
    admin
        .sql(&format!(
            "CREATE USER TABLE {table} (id BIGINT PRIMARY KEY, v TEXT)"
        ))
        .await?;
    let clients = users(admin, args.users).await?;
    let next_id = Arc::new(AtomicU64::new(1));
    let op = {
        let (table, next_id) = (table.clone(), next_id.clone());
        move |c: Arc<Client>| {
            let (table, next_id) = (table.clone(), next_id.clone());
            async move {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                c.sql(&format!("INSERT INTO {table} (id, v) VALUES ({id}, 'x')"))
                    .await?;
                let r = c
                    .sql(&format!("SELECT * FROM {table} WHERE id = {id}"))
                    .await?;
                anyhow::ensure!(
                    r["results"][0]["row_count"].as_u64() == Some(1),
                    "a user did not read back its own row {id}"
                );
                Ok(2)
            }
        }
    };
    let tasks = args.users;
    let one = load(
        &clients[..1],
        &format!("insert+read own row, 1 user x {tasks} clients"),
        tasks,
        duration,
        op.clone(),
    )
    .await?;
    let mut many = load(
        &clients,
        &format!("insert+read own row, {tasks} users"),
        tasks,
        duration,
        op,
    )
    .await?;
    many.note = format!(
        "isolation ratio {tasks} users / 1 user = {:.3} (statements/s)",
        many.rate() / one.rate()
    );
    Ok(vec![one, many])
}

pub(super) async fn logins(
    admin: &Arc<Client>,
    args: &SqlBenchArgs,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    // One known user to log in as, and a check that the bench's own credentials work.
    users(admin, 1).await?;
    login(&admin.http, &args.server).await?;
    let url = admin.url.clone();
    let mut o = load(
        std::slice::from_ref(admin),
        &format!("password login, {} clients", args.login_clients),
        args.login_clients,
        duration,
        move |c| {
            let url = url.clone();
            async move {
                sign_in(&c.http, &url, "bench_u0").await?;
                Ok(1)
            }
        },
    )
    .await?;
    o.note = "at the server's configured bcrypt cost; the auth rate limit (20/s/IP) caps it".into();
    Ok(o)
}
