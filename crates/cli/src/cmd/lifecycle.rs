//! Commands that move one workflow along: `exec`, `cancel`, `pause`,
//! `resume` and `resolve`.

use crate::Out;
use crate::output::{outln, print_json};
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
    if json {
        print_json(&v1::ExecResp {})?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(a: CancelArgs, t: &Target, json: bool) -> Out {
    let r = connect(t)
        .await?
        .raw()
        .cancel(v1::CancelReq {
            id: a.id,
            reason: a.reason,
        })
        .await?
        .into_inner();
    if json {
        print_json(&r)?;
    } else {
        outln!("{}", status_name(r.status))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn pause(a: PauseArgs, t: &Target) -> Out {
    connect(t)
        .await?
        .raw()
        .pause(v1::PauseReq {
            id: a.id,
            reason: a.reason,
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn resume(a: ResumeArgs, t: &Target) -> Out {
    connect(t)
        .await?
        .raw()
        .resume(v1::ResumeReq { id: a.id })
        .await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn resolve(a: ResolveArgs, t: &Target) -> Out {
    use v1::resolve_job_req::Action;
    let action = match a.action {
        Decision::Retry => Action::Retry,
        Decision::Skip => Action::Skip,
        Decision::Cancel => Action::Cancel,
    } as i32;
    let req = v1::ResolveJobReq {
        id: a.id,
        block: a.block,
        job: a.job,
        action,
        reason: a.reason,
    };
    connect(t).await?.raw().resolve_job(req).await?;
    Ok(ExitCode::SUCCESS)
}
