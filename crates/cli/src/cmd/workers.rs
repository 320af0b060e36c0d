//! `interlock workers`: the workers connected to this server, and the jobs
//! waiting for one.

use crate::Out;
use crate::output::{outln, print_json, rfc3339};
use crate::target::{Target, transport};
use interlock_proto::v1;
use std::process::ExitCode;

pub async fn run(t: &Target, json: bool) -> Out {
    let r = v1::worker_client::WorkerClient::new(transport(&t.addr, &t.opts).await?)
        .list_workers(v1::ListWorkersReq {})
        .await?
        .into_inner();
    if json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    if r.workers.is_empty() {
        outln!("no worker is connected to this server")?;
    } else {
        outln!(
            "{:>7}  {:<20} {:<24} {:>5}  {:<21} {:>7}  {}",
            "SESSION",
            "NAME",
            "IDENTITY",
            "TASKS",
            "CONNECTED",
            "IDLE",
            "JOB TYPES"
        )?;
        for w in &r.workers {
            outln!(
                "{:>7}  {:<20} {:<24} {:>5}  {:<21} {:>6}s  {}",
                w.session,
                w.name,
                w.identity,
                format!("{}/{}", w.leased, w.capacity),
                rfc3339(&w.connected),
                w.idle_ms / 1000,
                w.job_types.join(", ")
            )?;
        }
    }
    if !r.waiting.is_empty() {
        outln!("\nwaiting for a worker:")?;
        for w in &r.waiting {
            outln!(
                "  {} block {} job {} ({}) since {}",
                w.workflow_id,
                w.block,
                w.job,
                w.job_type,
                rfc3339(&w.since)
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
