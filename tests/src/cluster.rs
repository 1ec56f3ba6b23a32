//! A cluster of real `folddb serve` processes on loopback ports, for the cluster tests:
//! founders started with one peer list, nodes that join later, the agreed leader.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Server, free_port};

pub const SECRET: &str = "cluster-test-secret";

#[derive(Debug)]
pub struct Cluster {
    pub dirs: Vec<tempfile::TempDir>,
    pub ports: Vec<u16>,
    pub nodes: Vec<Option<Server>>,
    /// How many of the nodes were started as the cluster's first members; the others join.
    pub founders: usize,
    /// Environment each node is started with besides the cluster's, by index.
    pub env: Vec<Vec<(String, String)>>,
}

impl Cluster {
    fn peers(ports: &[u16]) -> String {
        ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts node `i` (id `i + 1`) on its data directory: a founder with the founders'
    /// peer list, any other node with the same list, which it is not on: it waits to join.
    pub async fn start_node(&mut self, i: usize) {
        let peers = Cluster::peers(&self.ports[..self.founders]);
        let id = (i + 1).to_string();
        let mut env = vec![
            ("FOLDDB_NODE_ID", id.as_str()),
            ("FOLDDB_PEERS", peers.as_str()),
            ("FOLDDB_CLUSTER_SECRET", SECRET),
        ];
        if let Some(extra) = self.env.get(i) {
            env.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        let server = Server::start_on(self.dirs[i].path(), self.ports[i], &env).await;
        self.nodes[i] = Some(server);
    }

    /// Starts `n` founding members.
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with_env(n, Vec::new()).await
    }

    /// Starts `n` founding members, node `i` with `env[i]` in its environment.
    pub async fn start_with_env(n: usize, env: Vec<Vec<(String, String)>>) -> Cluster {
        let mut c = Cluster {
            dirs: (0..n).map(|_| tempfile::tempdir().expect("tmp")).collect(),
            ports: (0..n).map(|_| free_port()).collect(),
            nodes: (0..n).map(|_| None).collect(),
            founders: n,
            env,
        };
        for i in 0..n {
            c.start_node(i).await;
        }
        c
    }

    /// Starts one more node, not a founder: it waits to be added with CLUSTER JOIN. Its
    /// index.
    pub async fn start_joiner(&mut self) -> usize {
        self.dirs.push(tempfile::tempdir().expect("tmp"));
        self.ports.push(free_port());
        self.nodes.push(None);
        let i = self.nodes.len() - 1;
        self.start_node(i).await;
        i
    }

    pub fn node(&self, i: usize) -> &Server {
        self.nodes[i].as_ref().expect("the node is running")
    }

    pub async fn health(s: &Server) -> Value {
        s.client
            .get(s.url("/v1/api/cluster/health"))
            .send()
            .await
            .expect("cluster health answers")
            .json()
            .await
            .expect("JSON")
    }

    /// Waits until every running node names the same leader, one of the running nodes: its
    /// index.
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut seen = Vec::new();
            for s in self.nodes.iter().flatten() {
                let h = Cluster::health(s).await;
                let leader = h["nodes"]
                    .as_array()
                    .and_then(|ns| ns.iter().find(|n| n["is_leader"] == true))
                    .and_then(|n| n["node_id"].as_u64());
                seen.push(leader);
            }
            if let Some(Some(l)) = seen.first().copied()
                && seen.iter().all(|s| *s == Some(l))
                && self.nodes[(l - 1) as usize].is_some()
            {
                return (l - 1) as usize;
            }
            assert!(Instant::now() < deadline, "no agreed leader: {seen:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Rows of `SELECT id FROM app.t ORDER BY id` through `s`.
pub async fn ids(s: &Server, token: &str) -> Vec<i64> {
    let r = s.ok(token, "SELECT id FROM app.t ORDER BY id").await;
    crate::rows(&r)
        .iter()
        .map(|row| {
            row[0]
                .as_i64()
                .or_else(|| row[0].as_str().and_then(|t| t.parse().ok()))
                .expect("an id")
        })
        .collect()
}

/// Retries `sql` through `s` while the cluster answers 503 (an election under way).
pub async fn write(s: &Server, token: &str, sql: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = s.sql(token, sql).await;
        if status == 200 {
            assert_eq!(body["status"], "success", "{sql}: {body}");
            return;
        }
        assert_eq!(status, 503, "{sql}: {body}");
        assert!(Instant::now() < deadline, "{sql}: still {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A cluster of `n` founders with its users set up and `ddl` run through the leader: the
/// cluster, the leader's index and the dba's token.
pub async fn with_tables(n: usize, ddl: &str) -> (Cluster, usize, String) {
    let c = Cluster::start(n).await;
    let leader = c.leader().await;
    let token = setup(c.node((leader + 1) % n)).await;
    write(c.node(leader), &token, ddl).await;
    (c, leader, token)
}

/// The table most cluster tests write to.
pub const TABLE_T: &str =
    "CREATE NAMESPACE app; CREATE SHARED TABLE app.t (id BIGINT PRIMARY KEY, v TEXT)";

/// Waits until `s` answers reads again and reads `want` from app.t (`who` names it in the
/// failure).
pub async fn converges(s: &Server, token: &str, want: &[i64], who: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = s.sql(token, "SELECT 1").await;
        if status == 200 && ids(s, token).await == want {
            return;
        }
        assert!(Instant::now() < deadline, "{who} did not catch up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sets up the cluster's first users (retrying while no leader is elected) and logs in as
/// the dba: its token.
pub async fn setup(s: &Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = s
            .post(
                "/v1/api/auth/setup",
                None,
                &json!({"user": "admin", "password": "kalamdb123", "root_password": "rootpass123"}),
            )
            .await;
        if status == 200 || status == 409 {
            return s.login("admin", "kalamdb123").await;
        }
        assert!(Instant::now() < deadline, "setup: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What writers learnt of their inserts: acknowledged, or sent with no answer (their outcome
/// is unknown: they may or may not be in the table, but only they may be there besides the
/// acknowledged ones).
#[derive(Debug, Default)]
pub struct Sent {
    pub acknowledged: std::collections::BTreeSet<i64>,
    pub unknown: std::collections::BTreeSet<i64>,
}

impl Sent {
    /// Asserts that node `node` (index) read every acknowledged id and no id never sent:
    /// the ids it read, as a set.
    pub fn check(&self, seen: Vec<i64>, node: usize) -> std::collections::BTreeSet<i64> {
        let seen: std::collections::BTreeSet<i64> = seen.into_iter().collect();
        let lost: Vec<_> = self.acknowledged.difference(&seen).collect();
        assert!(
            lost.is_empty(),
            "node {}: acknowledged writes lost: {lost:?}",
            node + 1
        );
        let strays: Vec<_> = seen
            .iter()
            .filter(|id| !self.acknowledged.contains(id) && !self.unknown.contains(id))
            .collect();
        assert!(
            strays.is_empty(),
            "node {}: rows never sent: {strays:?}",
            node + 1
        );
        seen
    }
}

/// Writers inserting distinct ids into `app.t (id BIGINT PRIMARY KEY, v TEXT)`, each
/// through every node of the cluster in turn, until stopped.
#[derive(Debug)]
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<Sent>>,
}

impl Load {
    pub fn start(c: &Cluster, token: &str, writers: i64) -> Load {
        Load::start_with(c, token, writers, |id, w| {
            format!("INSERT INTO app.t (id, v) VALUES ({id}, 'w{w}')")
        })
    }

    /// [`Load::start`] with the statement `insert(id, writer)` for each write.
    pub fn start_with(
        c: &Cluster,
        token: &str,
        writers: i64,
        insert: fn(i64, i64) -> String,
    ) -> Load {
        let urls: Vec<String> = (0..c.nodes.len())
            .map(|i| format!("http://127.0.0.1:{}/v1/api/sql", c.ports[i]))
            .collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers = (0..writers)
            .map(|w| {
                let (urls, token, stop) = (urls.clone(), token.to_owned(), stop.clone());
                tokio::spawn(write_until(w, urls, token, stop, insert))
            })
            .collect();
        Load { stop, writers }
    }

    /// Stops the writers: what they learnt, together.
    pub async fn stop(self) -> Sent {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut all = Sent::default();
        for w in self.writers {
            let sent = w.await.expect("a writer");
            all.acknowledged.extend(sent.acknowledged);
            all.unknown.extend(sent.unknown);
        }
        all
    }
}

async fn write_until(
    w: i64,
    urls: Vec<String>,
    token: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    insert: fn(i64, i64) -> String,
) -> Sent {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client");
    let mut sent = Sent::default();
    let mut n = 0i64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let id = w * 1_000_000 + n;
        let url = &urls[(n as usize + w as usize) % urls.len()];
        n += 1;
        let answer = client
            .post(url)
            .bearer_auth(&token)
            .json(&json!({ "sql": insert(id, w) }))
            .send()
            .await;
        let Ok(r) = answer else {
            sent.unknown.insert(id);
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        match status {
            200 => {
                assert_eq!(body["status"], "success", "{body}");
                sent.acknowledged.insert(id);
            }
            // Refused before anything was proposed: not written.
            503 if body["error"]["code"] != "INTERNAL_ERROR" => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => {
                sent.unknown.insert(id);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    sent
}

/// A member's environment: a snapshot every `every` entries, raft keeping `keep` before it.
pub fn snapshots_every(every: u64, keep: u64) -> Vec<(String, String)> {
    vec![
        (
            "FOLDDB_CLUSTER_SNAPSHOT_EVERY_ENTRIES".to_owned(),
            every.to_string(),
        ),
        (
            "FOLDDB_CLUSTER_SNAPSHOT_KEEP_ENTRIES".to_owned(),
            keep.to_string(),
        ),
    ]
}
