//! What the targets check inputs against, built once: the built-in job
//! catalog (as the server builds it), the shipped `configs/policies.json`,
//! the sample request of `samples/requests/erase-aab.yaml`, and a fixed
//! clock reading so runs are reproducible.

use interlock_core::{Block, Job, Micros, WorkReq};
use interlock_engine::{Buckets, Registry};
use interlock_inventory::Inventory;
use interlock_jobs::{BuiltinDeps, EraseTarget, builtin_registry};
use interlock_policy::PolicySet;
use interlock_store::memory::MemStore;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// The shipped policy file, compiled in so a target never reads a file.
pub const SHIPPED_POLICIES: &str = include_str!("../../../configs/policies.json");

/// 2026-06-01T00:00:00Z in microseconds: "now" for the token-bucket and
/// token-expiry checks.
pub const NOW_MICROS: Micros = 1_780_272_000_000_000;

/// [`NOW_MICROS`] as a `SystemTime`.
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(NOW_MICROS as u64)
}

/// The registry of built-in jobs, built as `interlockd` builds it (with an
/// empty inventory and no buckets: only the schemas matter here).
pub fn catalog() -> &'static Registry {
    static CATALOG: OnceLock<Registry> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let clock = interlock_core::ManualClock::new(NOW_MICROS);
        let store = Arc::new(MemStore::new(clock.clone()));
        // A relative path without a directory: opening it creates nothing,
        // and nothing is ever recorded to it (no job runs here).
        let target = EraseTarget::open(Path::new("interlock-fuzzing-erase-target.log"))
            .expect("opening an erase target without a directory does no I/O that can fail");
        builtin_registry(BuiltinDeps {
            http: Default::default(),
            inventory: interlock_inventory::LiveInventory::new(Inventory::default()),
            buckets: Arc::new(Buckets::new(store, clock)),
            erase_duration: Duration::ZERO,
            erase_target: Arc::new(target),
        })
    })
}

/// `configs/policies.json` as shipped, parsed against [`catalog`].
pub fn shipped_policies() -> &'static PolicySet {
    static SET: OnceLock<PolicySet> = OnceLock::new();
    SET.get_or_init(|| {
        PolicySet::parse(SHIPPED_POLICIES, "configs/policies.json", catalog())
            .expect("the shipped policies.json is valid")
    })
}

/// The request of `samples/requests/erase-aab.yaml`: erase satellite `aab`.
pub fn sample_request() -> WorkReq {
    fn job(name: &str, args: &[(&str, &str)]) -> Job {
        Job::with_args(name, args)
    }
    fn erase(machine: &str) -> Job {
        job("diskErase", &[("machine", machine), ("site", "aab")])
    }
    fn block(desc: &str, rate_limit: i32, jobs: Vec<Job>) -> Block {
        Block {
            desc: desc.into(),
            rate_limit,
            max_failures: 0,
            jobs,
        }
    }
    WorkReq {
        name: "SatelliteDiskErase".into(),
        desc: "erase satellite aab".into(),
        blocks: vec![
            block(
                "pre-checks",
                1,
                vec![
                    job("validateDecom", &[("site", "aab"), ("type", "satellite")]),
                    job(
                        "tokenBucket",
                        &[("bucket", "diskEraseSatellite"), ("fatal", "true")],
                    ),
                ],
            ),
            block(
                "erase aab00-aab04",
                5,
                ["aab00", "aab01", "aab02", "aab03", "aab04"]
                    .into_iter()
                    .map(erase)
                    .collect(),
            ),
            block("pause", 1, vec![job("sleep", &[("seconds", "1")])]),
            block(
                "erase aab05-aab07",
                5,
                ["aab05", "aab06", "aab07"].into_iter().map(erase).collect(),
            ),
        ],
        ..Default::default()
    }
}
