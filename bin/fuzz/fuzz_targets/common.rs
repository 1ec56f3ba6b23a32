//! One engine per fuzzing process, as the server builds it: a hot store in a temporary
//! directory, the cold tier beside it, and a proposer that folds each command straight
//! into the store (the log itself has its own fuzz target, `log/fuzz`).

use std::sync::{Arc, OnceLock};

use folddb_materializer::{EventFold, FoldInPlace, HotStore, Role};
use folddb_materializer::cold::ColdStore;
use folddb_query::{Caller, Engine, SqlRequest};

pub struct Fixture {
    pub runtime: tokio::runtime::Runtime,
    pub engine: Engine,
    _dir: tempfile::TempDir,
}

/// Tables every input can reach: a SHARED and a USER table with rows of each type family.
const SETUP: &str = "CREATE NAMESPACE fz;
CREATE SHARED TABLE fz.s (id BIGINT PRIMARY KEY, g INT, name TEXT, x DOUBLE, d DECIMAL(10,2), \
 b BOOLEAN, t TIMESTAMP, j JSON) WITH (ACCESS_LEVEL = 'PUBLIC');
CREATE USER TABLE fz.u (id BIGINT PRIMARY KEY, note TEXT, n INT);
INSERT INTO fz.s VALUES (1, 1, 'one', 1.5, 1.25, true, '2026-01-01T00:00:00Z', '{\"a\": 1}'),
 (2, 2, 'two', -2.5, 2.50, false, '2026-02-01T00:00:00Z', '[1, 2]'),
 (3, 1, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO fz.u VALUES (1, 'mine', 7), (2, NULL, 8);";

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Arc::new(HotStore::open_data_dir(dir.path()).expect("a fresh hot store"));
        let cold = Arc::new(ColdStore::new(dir.path().join("storage")));
        let fold = EventFold::new(cold.clone());
        let local = FoldInPlace::new(store.clone(), fold.clone()).expect("a proposer");
        let engine = Engine::new(store, Arc::new(local), 1).with_cold(cold, fold);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let fixture = Fixture {
            runtime,
            engine,
            _dir: dir,
        };
        fixture.restore();
        fixture
    })
}

impl Fixture {
    /// Runs `sql` as `caller`: the response, or the error's code and message.
    pub fn run(&self, caller: &Caller, sql: &str) -> Result<String, String> {
        let request = SqlRequest {
            sql: sql.into(),
            params: None,
            namespace: None,
        };
        match self.runtime.block_on(self.engine.execute(caller, &request)) {
            Ok(response) => serde_json::to_string(&response.results).map_err(|e| e.to_string()),
            Err(e) => Err(format!("{:?}: {}", e.code, e.message)),
        }
    }

    /// (Re)creates what an input may have dropped or changed: each statement on its own,
    /// those that find their object already there fail harmlessly. The inserts go to each
    /// user's own rows of `fz.u`.
    pub fn restore(&self) {
        for user in ["alice", "bob"] {
            let caller = Caller {
                user: user.into(),
                role: Role::Dba,
            };
            for statement in SETUP.split(";\n") {
                let _ = self.run(&caller, statement);
            }
        }
    }
}

/// The caller an input speaks as, chosen by one byte: any authenticated user.
pub fn caller(byte: u8) -> Caller {
    let (user, role) = match byte % 3 {
        0 => ("alice", Role::User),
        1 => ("bob", Role::User),
        _ => ("svc", Role::Service),
    };
    Caller {
        user: user.into(),
        role,
    }
}
