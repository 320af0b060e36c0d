//! Interlock's built-in jobs, run in the server's process through the
//! engine's in-process runner ([`Registry`]). One file per job; each job's
//! schema is its documentation (shown by the JobCatalog RPC), and its
//! `check` refuses at Submit what it could only fail at run time (a machine
//! not at its site, a bucket that does not exist).
//!
//! A job's `check` may be given arguments its schema requires but that are
//! not there yet (inputs from earlier jobs, resolved when it starts): it
//! must not assume them.

pub mod disk_erase;
pub mod erase_target;
pub mod exec;
pub mod http;
mod sleep;
mod token_bucket;
mod validate_decom;
mod verify_erase;

pub use disk_erase::DiskErase;
pub use erase_target::EraseTarget;
pub use sleep::Sleep;
pub use token_bucket::TokenBucket;
pub use validate_decom::ValidateDecom;
pub use verify_erase::VerifyErase;

use interlock_engine::{Buckets, Registry};
use interlock_inventory::LiveInventory;
use std::sync::Arc;
use std::time::Duration;

/// What the built-in jobs need from their environment.
#[derive(Clone)]
pub struct BuiltinDeps {
    /// The inventory in force (replaced while running when it lives in
    /// the store).
    pub inventory: Arc<LiveInventory>,
    pub buckets: Arc<Buckets>,
    /// How long a simulated disk erase takes.
    pub erase_duration: Duration,
    /// The simulated erase target.
    pub erase_target: Arc<EraseTarget>,
    /// The URLs the http job may call (http.json, kept live by the server).
    pub http: Arc<http::LiveHttpConfig>,
}

/// A registry holding every built-in job.
pub fn builtin_registry(deps: BuiltinDeps) -> Registry {
    let mut r = Registry::new();
    r.register(Arc::new(Sleep::new()))
        .register(Arc::new(DiskErase::new(
            deps.inventory.clone(),
            deps.erase_target.clone(),
            deps.erase_duration,
        )))
        .register(Arc::new(VerifyErase::new(
            deps.inventory.clone(),
            deps.erase_target,
        )))
        .register(Arc::new(http::Http::new(deps.http)))
        .register(Arc::new(ValidateDecom::new(deps.inventory)))
        .register(Arc::new(TokenBucket::new(deps.buckets)));
    r
}
