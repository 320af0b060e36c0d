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
    } else if r.ok {
        outln!("ok (policy version {})", r.policy_version)?;
    } else {
        for v in &r.violations {
            let at = match (v.block, v.job) {
                (-1, _) => String::new(),
                (b, -1) => format!(" (block {b})"),
                (b, j) => format!(" (block {b}, job {j})"),
            };
            outln!("{}{at}: {}", v.policy, v.message)?;
        }
    }
    Ok(if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
