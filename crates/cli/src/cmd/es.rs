//! `interlock es`: read and flip the emergency stop.

use crate::Out;
use crate::output::{outln, print_json};
use crate::target::{Target, control};
use interlock_proto::v1;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum EsCmd {
    /// Current state.
    Status,
    /// Stop a workflow name ("*" for all).
    Stop {
        name: String,
        #[arg(long)]
        reason: String,
    },
    /// Allow a workflow name again.
    Go {
        name: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

pub async fn run(cmd: EsCmd, t: &Target, json: bool) -> Out {
    let mut c = control(t).await?;
    let r = match cmd {
        EsCmd::Status => c.emergency_stop_state(v1::EmergencyStopStateReq {}).await?,
        EsCmd::Stop { name, reason } => {
            c.set_emergency_stop(v1::SetEmergencyStopReq {
                name,
                stop: true,
                reason,
            })
            .await?
        }
        EsCmd::Go { name, reason } => {
            c.set_emergency_stop(v1::SetEmergencyStopReq {
                name,
                stop: false,
                reason,
            })
            .await?
        }
    }
    .into_inner();
    if json {
        print_json(&r)?;
    } else {
        if !r.error.is_empty() {
            outln!("EVERYTHING STOPPED: {}", r.error)?;
        }
        for e in &r.entries {
            let state = if e.stop { "STOP" } else { "go" };
            outln!("{:<24} {state:<4} {}", e.name, e.reason)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
