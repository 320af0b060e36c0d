//! `interlock jobs`: the job catalog with argument schemas and crash safety.

use crate::Out;
use crate::output::{outln, print_json};
use crate::target::{Target, connect};
use std::process::ExitCode;

pub async fn run(t: &Target, json: bool) -> Out {
    let r = connect(t).await?.job_catalog().await?;
    if json {
        print_json(&r)?;
    } else {
        for j in &r.jobs {
            let safety = if j.idempotent {
                "safe to re-run"
            } else if j.reconcilable {
                "reconciled after a crash"
            } else {
                "needs an operator after a crash"
            };
            let place = if j.runs_on.is_empty() {
                String::new()
            } else {
                format!("; runs on {}", j.runs_on)
            };
            outln!("{} ({safety}{place})\n  {}", j.name, j.description)?;
            for a in &j.args {
                let req = if a.required { "required" } else { "optional" };
                outln!("  {:<10} {req:<8} {} [{}]", a.name, a.description, a.format)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
