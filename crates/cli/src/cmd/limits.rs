//! `interlock limits`: blast-radius limits, who holds them, how many wait.

use crate::Out;
use crate::output::{outln, print_json};
use crate::target::{Target, control};
use interlock_proto::v1;
use std::process::ExitCode;

pub async fn run(t: &Target, json: bool) -> Out {
    let r = control(t)
        .await?
        .limits(v1::LimitsReq {})
        .await?
        .into_inner();
    if json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    if r.limits.is_empty() {
        outln!("no limits (configs/limits.json)")?;
    }
    for l in &r.limits {
        let per = if l.per.is_empty() {
            String::new()
        } else {
            format!(" per {}", l.per)
        };
        let jobs = if l.jobs.is_empty() {
            "all jobs".to_string()
        } else {
            l.jobs.join(", ")
        };
        outln!("{}: at most {} {}{per} ({jobs})", l.name, l.max, l.count)?;
        if l.parts.is_empty() {
            outln!("  0/{} in use", l.max)?;
        }
        for p in &l.parts {
            let part = if p.part.is_empty() {
                String::new()
            } else {
                format!("{}: ", p.part)
            };
            let waiting = if p.waiting > 0 {
                format!(", {} waiting", p.waiting)
            } else {
                String::new()
            };
            outln!(
                "  {part}{}/{} in use{waiting}{}{}",
                p.holders.len(),
                l.max,
                if p.holders.is_empty() { "" } else { ": " },
                p.holders.join(", ")
            )?;
        }
    }
    if !r.last_error.is_empty() {
        outln!("last reload error: {}", r.last_error)?;
    }
    Ok(ExitCode::SUCCESS)
}
