//! One module per command or command family. Each holds its arguments and
//! a `run` that talks to the server and prints the result; argument parsers
//! shared by several commands live here.

pub mod admin;
pub mod audit;
pub mod buckets;
pub mod clone;
pub mod cluster;
pub mod completions;
pub mod es;
pub mod inventory;
pub mod jobs;
pub mod lifecycle;
pub mod limits;
pub mod list;
pub mod logs;
pub mod man;
pub mod policies;
pub mod run;
pub mod schedule;
pub mod status;
pub mod submit;
pub mod template;
pub mod token;
pub mod validate;
pub mod watch;
pub mod whoami;
pub mod workers;

/// A `key=value` label.
pub fn parse_label(l: &str) -> Result<(String, String), String> {
    l.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("label {l:?} is not key=value"))
}
