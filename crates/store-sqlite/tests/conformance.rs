//! SQLite passes the conformance suite, on a pinned clock.
use async_trait::async_trait;
use interlock_core::ManualClock;
use interlock_store::Store;
use interlock_store::conformance::{Harness, run_all};
use interlock_store_sqlite::{SqliteOptions, SqliteStore};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Sqlite {
    clock: Mutex<Option<Arc<ManualClock>>>,
    dirs: Mutex<Vec<tempfile::TempDir>>,
}

#[async_trait]
impl Harness for Sqlite {
    async fn store(&self) -> Arc<dyn Store> {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_700_000_000_000_000);
        let mut opts = SqliteOptions::new(dir.path().join("interlock.db"));
        opts.clock = clock.clone();
        let store = SqliteStore::open(opts).unwrap();
        *self.clock.lock().unwrap() = Some(clock);
        self.dirs.lock().unwrap().push(dir);
        Arc::new(store)
    }

    async fn advance(&self, by: Duration) {
        self.clock.lock().unwrap().as_ref().unwrap().advance(by);
    }

    fn exclusive(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_conformance_suite() {
    run_all(&Sqlite::default()).await;
}
