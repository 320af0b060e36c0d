//! The in-memory backend passes the conformance suite.
use async_trait::async_trait;
use interlock_core::ManualClock;
use interlock_store::Store;
use interlock_store::conformance::{Harness, run_all};
use interlock_store::memory::MemStore;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Mem {
    clock: Mutex<Option<Arc<ManualClock>>>,
}

#[async_trait]
impl Harness for Mem {
    async fn store(&self) -> Arc<dyn Store> {
        let clock = ManualClock::new(1_700_000_000_000_000);
        *self.clock.lock().unwrap() = Some(clock.clone());
        Arc::new(MemStore::new(clock))
    }

    async fn advance(&self, by: Duration) {
        self.clock.lock().unwrap().as_ref().unwrap().advance(by);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memstore_passes_the_conformance_suite() {
    run_all(&Mem {
        clock: Mutex::new(None),
    })
    .await;
}
