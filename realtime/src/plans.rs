//! Subscription plans shared between connections.
//!
//! Many clients subscribe with the same SQL (an application's one query per screen): parsing
//! it and compiling its projection and filter for each of them is most of what a subscribe
//! costs. A plan depends on the caller (user and role: permissions, `CURRENT_USER()`), the
//! SQL text, and the definition of the table it reads; it is reused while that definition is
//! the same one it was planned against (any ALTER, a drop and re-create, a changed access
//! level make it plan afresh).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use folddb_materializer::catalog;
use folddb_query::live::{LiveError, LiveQuery};
use folddb_query::{Caller, Engine};

/// Plans kept at most, by default; past it, plans no subscription holds any more are
/// dropped, and a new one that finds no room is used without being kept.
pub const MAX_PLANS: usize = 4096;

type Key = (String, &'static str, String);

/// The plans of the node's subscriptions, by caller and SQL.
#[derive(Debug)]
pub struct Plans {
    plans: Mutex<HashMap<Key, Arc<LiveQuery>>>,
    capacity: usize,
}

impl Default for Plans {
    fn default() -> Plans {
        Plans::with_capacity(MAX_PLANS)
    }
}

impl Plans {
    pub fn new() -> Plans {
        Plans::default()
    }

    /// Keeping at most `capacity` plans.
    pub fn with_capacity(capacity: usize) -> Plans {
        Plans {
            plans: Mutex::default(),
            capacity,
        }
    }

    /// `caller`'s plan of subscription query `sql`: a kept one when the table's definition
    /// has not changed since, else a new one (kept when there is room).
    pub fn plan(
        &self,
        engine: &Engine,
        caller: &Caller,
        sql: &str,
    ) -> Result<Arc<LiveQuery>, LiveError> {
        let key = (caller.user.clone(), caller.role.name(), sql.to_owned());
        let kept = self.lock().get(&key).cloned();
        if let Some(plan) = kept {
            let def = &plan.def;
            let current = catalog::table(engine.store().as_ref(), &def.namespace, &def.name);
            if matches!(current, Ok(Some(d)) if d == *def) {
                return Ok(plan);
            }
        }
        let plan = Arc::new(engine.plan_live(caller, sql)?);
        let mut plans = self.lock();
        if plans.len() >= self.capacity {
            plans.retain(|_, p| Arc::strong_count(p) > 1);
        }
        if plans.len() < self.capacity {
            plans.insert(key, plan.clone());
        }
        Ok(plan)
    }

    /// How many plans are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<LiveQuery>>> {
        self.plans.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use folddb_materializer::{EventFold, FoldInPlace, HotStore, Role};
    use folddb_query::{Caller, Engine, SqlRequest};

    use super::*;

    fn engine(dir: &std::path::Path) -> Engine {
        let store = Arc::new(HotStore::open_data_dir(dir).expect("store"));
        let local = FoldInPlace::new(store.clone(), EventFold::default()).expect("proposer");
        Engine::new(store, Arc::new(local), 1)
    }

    fn run(engine: &Engine, caller: &Caller, sql: &str) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(engine.execute(
            caller,
            &SqlRequest {
                sql: sql.into(),
                params: None,
                namespace: None,
            },
        ))
        .expect("executed");
    }

    #[test]
    fn a_plan_is_shared_until_its_table_changes() {
        let dir = tempfile::tempdir().expect("tmp");
        let engine = engine(dir.path());
        let admin = Caller {
            user: "admin".into(),
            role: Role::Dba,
        };
        let alice = Caller {
            user: "alice".into(),
            role: Role::User,
        };
        run(
            &engine,
            &admin,
            "CREATE NAMESPACE app; CREATE USER TABLE app.t (id BIGINT PRIMARY KEY, n INT)",
        );
        let plans = Plans::new();
        let sql = "SELECT * FROM app.t";
        let a = plans.plan(&engine, &admin, sql).expect("planned");
        let b = plans.plan(&engine, &admin, sql).expect("planned");
        assert!(Arc::ptr_eq(&a, &b), "the same caller and SQL share a plan");
        // Another user's plan sees other rows: its own.
        let c = plans.plan(&engine, &alice, sql).expect("planned");
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!((a.scope.as_str(), c.scope.as_str()), ("admin", "alice"));
        // A changed table is planned afresh: `*` now has the new column.
        run(&engine, &admin, "ALTER TABLE app.t ADD COLUMN note TEXT");
        let d = plans.plan(&engine, &admin, sql).expect("planned");
        assert!(!Arc::ptr_eq(&a, &d));
        assert!(d.def.column("note").is_some());
        assert!(Arc::ptr_eq(
            &d,
            &plans.plan(&engine, &admin, sql).expect("planned")
        ));
        // A dropped table is an error, not a kept plan.
        run(&engine, &admin, "DROP TABLE app.t");
        let gone = plans.plan(&engine, &admin, sql).expect_err("no table");
        assert_eq!(gone.code, "NOT_FOUND");
    }

    #[test]
    fn plans_no_subscription_holds_make_room() {
        let dir = tempfile::tempdir().expect("tmp");
        let engine = engine(dir.path());
        let admin = Caller {
            user: "admin".into(),
            role: Role::Dba,
        };
        run(
            &engine,
            &admin,
            "CREATE NAMESPACE app; CREATE SHARED TABLE app.t (id BIGINT PRIMARY KEY, n INT)",
        );
        let plans = Plans::with_capacity(8);
        let held = plans
            .plan(&engine, &admin, "SELECT * FROM app.t WHERE n = 0")
            .expect("planned");
        for i in 1..20 {
            let sql = format!("SELECT * FROM app.t WHERE n = {i}");
            plans.plan(&engine, &admin, &sql).expect("planned");
        }
        assert!(plans.len() <= 8);
        let again = plans
            .plan(&engine, &admin, "SELECT * FROM app.t WHERE n = 0")
            .expect("planned");
        assert!(Arc::ptr_eq(&held, &again), "a held plan is kept");
    }
}
