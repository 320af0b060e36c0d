//! `interlock policies`: the policy set in force, each workflow's rules,
//! and the last reload error.

use crate::Out;
use crate::output::{outln, print_json};
use crate::target::{Target, control};
use interlock_proto::v1;
use std::process::ExitCode;

pub async fn run(t: &Target, json: bool) -> Out {
    let r = control(t)
        .await?
        .policy_state(v1::PolicyStateReq {})
        .await?
        .into_inner();
    if json {
        print_json(&r)?;
    } else {
        if r.loaded {
            outln!("version {} from {}", r.version, r.path)?;
            for w in &r.rules {
                if w.policies.is_empty() {
                    outln!("{}: allowed without rules", w.workflow)?;
                    continue;
                }
                outln!("{}:", w.workflow)?;
                for p in &w.policies {
                    outln!("  {:<18} {}", p.name, p.settings_json)?;
                }
            }
        } else {
            outln!(
                "NO VALID POLICIES LOADED: every Submit is refused ({})",
                r.path
            )?;
        }
        if !r.last_error.is_empty() {
            outln!("last reload error: {}", r.last_error)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
