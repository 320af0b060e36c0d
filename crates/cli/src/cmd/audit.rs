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
    /// At or after: a duration ago (2h, 30m) or an RFC 3339 time.
    #[arg(long, value_parser = super::list::parse_when)]
    since: Option<interlock_proto::pbjson_types::Timestamp>,
    /// Before: a duration ago (2h, 30m) or an RFC 3339 time.
    #[arg(long, value_parser = super::list::parse_when)]
    until: Option<interlock_proto::pbjson_types::Timestamp>,
    /// Only this identity, e.g. token:ci-bot or anonymous@10.0.0.7.
    #[arg(long)]
    actor: Option<String>,
    /// Only this action: submit, exec, cancel, pause, resume, resolve,
    /// clone, estop.set, config.reload.
    #[arg(long)]
    action: Option<String>,
    /// Only entries about this target: a workflow id, a config file, or an
    /// e-stop entry ("NAME stop").
    #[arg(long, alias = "workflow")]
    target: Option<String>,
}

pub async fn run(a: Args, t: &Target, json: bool) -> Out {
    let req = v1::AuditReq {
        limit: a.limit,
        before_id: a.before,
        from: a.since,
        to: a.until,
        identity: a.actor.unwrap_or_default(),
        action: a.action.unwrap_or_default(),
        target: a.target.unwrap_or_default(),
    };
    let r = control(t).await?.audit(req).await?.into_inner();
    if json {
        print_json(&r)?;
    } else {
        for e in &r.entries {
            let at = rfc3339(&e.at);
            let from = if e.peer.is_empty() {
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
