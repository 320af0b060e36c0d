//! `interlock audit`: the audit log, newest first, a page at a time.

use crate::Out;
use crate::output::{outln, print_json, rfc3339};
use crate::target::{Target, control};
use interlock_proto::v1;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "50")]
    limit: i32,
    /// Entries older than this id (from a previous page).
    #[arg(long, default_value = "0")]
    before: i64,
}

pub async fn run(a: Args, t: &Target, json: bool) -> Out {
    let req = v1::AuditReq {
        limit: a.limit,
        before_id: a.before,
    };
    let r = control(t).await?.audit(req).await?.into_inner();
    if json {
        print_json(&r)?;
    } else {
        for e in &r.entries {
            let at = rfc3339(&e.at);
            // Anonymous identities already name their address.
            let from = if e.peer.is_empty() || e.identity.ends_with(&e.peer) {
                String::new()
            } else {
                format!(" (from {})", e.peer)
            };
            outln!(
                "{:>6} {at} {:<28} {:<14} {:<40} {} {}{from}",
                e.id,
                e.identity,
                e.action,
                e.target,
                e.outcome,
                e.detail
            )?;
        }
        if r.next_before_id > 0 {
            outln!("more: --before {}", r.next_before_id)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
