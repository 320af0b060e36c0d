//! `interlock validate`: dry-run a request file and list every violation.

use crate::Out;
use crate::cmd::submit::read_request;
use crate::output::{outln, print_json};
use crate::target::{Target, connect};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    file: PathBuf,
}

pub async fn run(a: Args, t: &Target, json: bool) -> Out {
    let r = connect(t).await?.validate(read_request(&a.file)?).await?;
    if json {
        print_json(&r)?;
    } else {
        print(&r)?;
    }
    Ok(if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A validation's verdict and facts, for people.
pub fn print(r: &interlock_proto::v1::ValidateResp) -> Result<(), crate::fail::Fail> {
    {
        if r.ok {
            outln!("ok (policy version {})", r.policy_version)?;
        }
        for v in &r.violations {
            let at = match (v.block, v.job) {
                (-1, _) => String::new(),
                (b, -1) => format!(" (block {b})"),
                (b, j) => format!(" (block {b}, job {j})"),
            };
            outln!("{}{at}: {}", v.policy, v.message)?;
        }
        facts(r)?;
    }
    Ok(())
}

/// What Submit and Exec would meet besides violations, one line each.
fn facts(r: &interlock_proto::v1::ValidateResp) -> Result<(), crate::fail::Fail> {
    use interlock_proto::v1::EsMode;
    match EsMode::try_from(r.estop_mode) {
        Ok(EsMode::Go) => outln!("e-stop: go")?,
        Ok(m) => outln!(
            "e-stop: {} ({})",
            m.as_str_name().trim_start_matches("EsMode").to_uppercase(),
            r.estop_reason
        )?,
        Err(_) => {}
    }
    for b in &r.buckets {
        let key = if b.key.is_empty() {
            String::new()
        } else {
            format!(" key {}", b.key)
        };
        let verdict = if b.capacity == 0 {
            "not configured".to_string()
        } else if b.available >= b.needed {
            format!("{} of {} available", b.available, b.capacity)
        } else {
            format!("only {} of {} available", b.available, b.capacity)
        };
        outln!("bucket {}{key}: needs {}, {verdict}", b.bucket, b.needed)?;
    }
    if r.approvals_needed > 0 {
        outln!(
            "approvals: Exec needs {} from role {:?}",
            r.approvals_needed,
            r.approval_role
        )?;
    }
    if !r.limits.is_empty() {
        outln!("limits: {}", r.limits.join(", "))?;
    }
    if !r.sites.is_empty() {
        outln!("sites: {}", r.sites.join(", "))?;
    }
    if !r.machines.is_empty() {
        outln!("machines: {} ({})", r.machines.len(), r.machines.join(", "))?;
    }
    Ok(())
}
