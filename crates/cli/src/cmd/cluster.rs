//! `interlock cluster`: the server instances sharing the store, with their
//! address, version, last heartbeat and the workflows each runs.

use crate::Out;
use crate::output::{outln, print_json, rfc3339};
use crate::target::{Target, control};
use interlock_proto::v1;
use std::process::ExitCode;

pub async fn run(t: &Target, json: bool) -> Out {
    let r = control(t)
        .await?
        .cluster(v1::ClusterReq {})
        .await?
        .into_inner();
    if json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !r.shared_store {
        outln!(
            "one server on an embedded store (SQLite); several replicas need --db postgres://…"
        )?;
    }
    outln!(
        "{:<38} {:<22} {:<10} {:>9}  {:<21} {}",
        "INSTANCE",
        "ADDRESS",
        "VERSION",
        "WORKFLOWS",
        "LAST HEARTBEAT",
        "HOST/PID"
    )?;
    for i in &r.instances {
        let me = if i.id == r.this_instance {
            " (answered)"
        } else {
            ""
        };
        outln!(
            "{:<38} {:<22} {:<10} {:>9}  {:<21} {}/{}{me}",
            i.id,
            i.addr,
            i.version,
            i.workflows,
            rfc3339(&i.heartbeat),
            i.host,
            i.pid
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
