//! PostgreSQL passes the conformance suite, on the database's own clock
//! (the suite's `advance` waits).
use async_trait::async_trait;
use interlock_store::Store;
use interlock_store::conformance::{Harness, run_all};
use interlock_store_postgres::testing::TestDb;
use interlock_store_postgres::{PgOptions, PgStore};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Pg {
    dbs: Mutex<Vec<TestDb>>,
}

#[async_trait]
impl Harness for Pg {
    async fn store(&self) -> Arc<dyn Store> {
        let db = TestDb::create().await.expect("checked before the suite");
        let mut opts = PgOptions::new(&db.url);
        opts.pool_size = 4;
        let store = PgStore::open(opts).await.expect("opens");
        self.dbs.lock().unwrap().push(db);
        Arc::new(store)
    }

    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_suite() {
    // One probe, so a missing server gives one clear line (or, under
    // CI=true, a failure naming the variable).
    if TestDb::create().await.is_none() {
        return;
    }
    run_all(&Pg::default()).await;
}
