//! Commands that move one workflow along: `exec`, `cancel`, `pause`,
//! `resume` and `resolve`.

use crate::Out;
use crate::output::{Proto, action, outln, print_value};
use crate::target::{Target, connect};
use clap::ValueEnum;
use interlock_client::display::status_name;
use interlock_proto::v1;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ExecArgs {
    id: String,
}

#[derive(clap::Args)]
pub struct CancelArgs {
    id: String,
    #[arg(long, default_value = "")]
    reason: String,
}

#[derive(clap::Args)]
pub struct PauseArgs {
    id: String,
    #[arg(long, default_value = "")]
    reason: String,
}

#[derive(clap::Args)]
pub struct ResumeArgs {
    id: String,
}

#[derive(clap::Args)]
pub struct ResolveArgs {
    id: String,
    block: i32,
    job: i32,
    action: Decision,
    #[arg(long, default_value = "")]
    reason: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum Decision {
    Retry,
    Skip,
    Cancel,
}

pub async fn exec(a: ExecArgs, t: &Target, json: bool) -> Out {
    connect(t).await?.exec(&a.id).await?;
    done(json, &a.id, &v1::ExecResp {})
}

pub async fn cancel(a: CancelArgs, t: &Target, json: bool) -> Out {
    let r = connect(t)
        .await?
        .raw()
        .cancel(v1::CancelReq {
            id: a.id.clone(),
            reason: a.reason,
        })
        .await?
        .into_inner();
    if json {
        print_value(&action(&a.id, &r))?;
    } else {
        outln!("{}", status_name(r.status))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn pause(a: PauseArgs, t: &Target, json: bool) -> Out {
    let r = connect(t)
        .await?
        .raw()
        .pause(v1::PauseReq {
            id: a.id.clone(),
            reason: a.reason,
        })
        .await?
        .into_inner();
    done(json, &a.id, &r)
}

pub async fn resume(a: ResumeArgs, t: &Target, json: bool) -> Out {
    let r = connect(t)
        .await?
        .raw()
        .resume(v1::ResumeReq { id: a.id.clone() })
        .await?
        .into_inner();
    done(json, &a.id, &r)
}

pub async fn resolve(a: ResolveArgs, t: &Target, json: bool) -> Out {
    use v1::resolve_job_req::Action;
    let action = match a.action {
        Decision::Retry => Action::Retry,
        Decision::Skip => Action::Skip,
        Decision::Cancel => Action::Cancel,
    } as i32;
    let req = v1::ResolveJobReq {
        id: a.id.clone(),
        block: a.block,
        job: a.job,
        action,
        reason: a.reason,
    };
    let r = connect(t).await?.raw().resolve_job(req).await?.into_inner();
    done(json, &a.id, &r)
}

/// Success: silent for humans, `{"id", "ok": true, ...}` with --json.
fn done<T: Proto>(json: bool, id: &str, resp: &T) -> Out {
    if json {
        print_value(&action(id, resp))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct DecideArgs {
    id: String,
    /// Why: recorded with the decision and in the audit log.
    #[arg(long, default_value = "")]
    comment: String,
}

/// `approve` (`approve` true) or `reject`.
pub async fn decide(a: DecideArgs, approve: bool, t: &Target, json: bool) -> Out {
    let mut raw = connect(t).await?.raw();
    let q = v1::ApproveReq {
        id: a.id.clone(),
        comment: a.comment,
    };
    let r = if approve {
        raw.approve(q).await?
    } else {
        raw.reject(q).await?
    }
    .into_inner();
    if json {
        print_value(&action(&a.id, &r))?;
    } else {
        outln!(
            "{} ({} of {} approvals)",
            status_name(r.status),
            r.approvals_valid,
            r.approvals_needed
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
