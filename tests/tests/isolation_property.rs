//! Property: random interleavings of users and statements against the real binary never
//! return a row whose owner is not the caller (or the EXECUTE AS target), and every user's
//! view matches a model of what that user alone wrote.

use std::collections::{BTreeMap, BTreeSet};

use folddb_tests::{Server, rows};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

const USERS: [&str; 3] = ["alice", "bob", "carol"];

#[derive(Debug, Clone)]
enum Act {
    Insert(u8),
    Update(u8),
    Delete(u8),
    SelectAll,
    SelectKey(u8),
    /// The dba reads as this user through EXECUTE AS.
    AdminAs,
}

fn act() -> impl Strategy<Value = (usize, Act)> {
    let key = 0u8..6;
    (
        0..USERS.len(),
        prop_oneof![
            key.clone().prop_map(Act::Insert),
            key.clone().prop_map(Act::Update),
            key.clone().prop_map(Act::Delete),
            Just(Act::SelectAll),
            key.prop_map(Act::SelectKey),
            Just(Act::AdminAs),
        ],
    )
}

/// (id, owner) pairs of an answer whose columns are `id, owner`.
fn pairs(r: &Value) -> Vec<(String, String)> {
    rows(r)
        .iter()
        .map(|row| {
            (
                row[0].as_str().unwrap_or("").to_owned(),
                row[1].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn no_interleaving_leaks_a_row_across_users() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let s = rt.block_on(Server::start(dir.path()));
    let (admin, tokens) = rt.block_on(async {
        let admin = s.setup_and_login().await;
        s.ok(&admin, "CREATE NAMESPACE app").await;
        let mut tokens = Vec::new();
        for u in USERS {
            s.ok(
                &admin,
                &format!("CREATE USER {u} WITH PASSWORD '{u}-pass-1' ROLE user"),
            )
            .await;
            tokens.push(s.login(u, &format!("{u}-pass-1")).await);
        }
        (admin, tokens)
    });
    let case = std::sync::atomic::AtomicU32::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 12,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(act(), 1..40), |acts| {
        let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let table = format!("app.t{n}");
        rt.block_on(async {
            s.ok(
                &admin,
                &format!(
                    "CREATE USER TABLE {table} (id BIGINT PRIMARY KEY, owner TEXT DEFAULT CURRENT_USER())"
                ),
            )
            .await;
            let mut model: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
            for (u, a) in &acts {
                let (who, token) = (USERS[*u], &tokens[*u]);
                let mine = model.entry(*u).or_default();
                let check = |got: Vec<(String, String)>, as_user: &str| {
                    for (id, owner) in &got {
                        prop_assert_eq!(owner, as_user, "row {} leaked to {}", id, as_user);
                    }
                    Ok(got.into_iter().map(|(id, _)| id).collect::<BTreeSet<_>>())
                };
                match a {
                    Act::Insert(k) => {
                        let (code, _) = s
                            .sql(token, &format!("INSERT INTO {table} (id) VALUES ({k})"))
                            .await;
                        let fresh = mine.insert(k.to_string());
                        prop_assert_eq!(code == 200, fresh, "insert {} by {}", k, who);
                    }
                    Act::Update(k) => {
                        let r = s
                            .ok(
                                token,
                                &format!("UPDATE {table} SET owner = CURRENT_USER() WHERE id = {k}"),
                            )
                            .await;
                        let want = format!("Updated {} row(s)", u8::from(mine.contains(&k.to_string())));
                        prop_assert_eq!(r["results"][0]["message"].as_str(), Some(want.as_str()));
                    }
                    Act::Delete(k) => {
                        let r = s
                            .ok(token, &format!("DELETE FROM {table} WHERE id = {k}"))
                            .await;
                        let n = u8::from(mine.remove(&k.to_string()));
                        let want = format!("Deleted {n} row(s)");
                        prop_assert_eq!(r["results"][0]["message"].as_str(), Some(want.as_str()));
                    }
                    Act::SelectAll => {
                        let r = s.ok(token, &format!("SELECT id, owner FROM {table}")).await;
                        let got = check(pairs(&r), who)?;
                        prop_assert_eq!(&got, &*mine);
                        // COUNT(*) of a whole scope is the table's count of its rows.
                        let r = s.ok(token, &format!("SELECT COUNT(*) FROM {table}")).await;
                        prop_assert_eq!(rows(&r), vec![serde_json::json!([mine.len().to_string()])]);
                    }
                    Act::SelectKey(k) => {
                        let r = s
                            .ok(token, &format!("SELECT id, owner FROM {table} WHERE id = {k}"))
                            .await;
                        let got = check(pairs(&r), who)?;
                        prop_assert_eq!(got.len(), usize::from(mine.contains(&k.to_string())));
                    }
                    Act::AdminAs => {
                        let r = s
                            .ok(
                                &admin,
                                &format!("EXECUTE AS USER '{who}' (SELECT id, owner FROM {table})"),
                            )
                            .await;
                        let got = check(pairs(&r), who)?;
                        prop_assert_eq!(&got, &*mine);
                    }
                }
            }
            // The dba's own scope holds none of it.
            let r = s.ok(&admin, &format!("SELECT COUNT(*) FROM {table}")).await;
            prop_assert_eq!(rows(&r), vec![serde_json::json!(["0"])]);
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
