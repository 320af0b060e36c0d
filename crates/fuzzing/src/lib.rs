//! Fuzz targets for Interlock's input parsers, one function per target.
//!
//! Each function takes arbitrary bytes and does exactly what the cargo-fuzz
//! target of the same name in `fuzz/fuzz_targets/` does, so the same code
//! runs under libFuzzer (nightly flags) and in the stable corpus replay test
//! (`tests/corpus.rs`). The property everywhere: no panic, no hang, work
//! bounded by the input; where an input is accepted and the result can be
//! written back cheaply, re-parsing that canonical form gives the same
//! result (a violated property panics).
//!
//! - [`config_files`]: policies.json, es.json, buckets.json, tokens.json,
//!   rbac.json, the inventory, interlockd's config file.
//! - [`mod@work_req`]: WorkReq admission from protobuf and from protobuf JSON.
//! - [`fixtures`]: the job catalog, shipped policies and sample request the
//!   targets check against.
#![forbid(unsafe_code)]

pub mod config_files;
pub mod fixtures;
pub mod work_req;

pub use config_files::{buckets, estop, inventory, policies, rbac, server_config, tokens};
pub use work_req::{work_req, work_req_json};

/// A fuzz target: takes arbitrary bytes, panics on a violated property.
pub type Target = fn(&[u8]);

/// Every target by name; the name is also its cargo-fuzz target and its
/// corpus directory, `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("policies", policies),
    ("estop", estop),
    ("buckets", buckets),
    ("tokens", tokens),
    ("rbac", rbac),
    ("inventory", inventory),
    ("server_config", server_config),
    ("work_req", work_req),
    ("work_req_json", work_req_json),
];
