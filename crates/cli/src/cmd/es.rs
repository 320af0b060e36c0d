//! `interlock es`: read and flip the emergency stop.

use crate::Out;
use crate::output::{outln, print_json};
use crate::target::{Target, control};
use interlock_proto::v1;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum EsCmd {
    /// Current state: this server's es.json and the stops shared by every
    /// replica.
    Status,
    /// Stop a workflow name ("*" for all): refuse new work and cancel jobs
    /// in flight.
    Stop {
        name: String,
        #[arg(long)]
        reason: String,
    },
    /// Drain a workflow name ("*" for all): refuse new work and start no new
    /// job, but let jobs in flight finish.
    Drain {
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
    let set = |name: String, mode: v1::EsMode, reason: String| v1::SetEmergencyStopReq {
        name,
        // Older servers read only `stop`: a drain there must not become go.
        stop: mode == v1::EsMode::Stop,
        reason,
        mode: mode as i32,
    };
    let r = match cmd {
        EsCmd::Status => c.emergency_stop_state(v1::EmergencyStopStateReq {}).await?,
        EsCmd::Stop { name, reason } => {
            c.set_emergency_stop(set(name, v1::EsMode::Stop, reason))
                .await?
        }
        EsCmd::Drain { name, reason } => {
            c.set_emergency_stop(set(name, v1::EsMode::Drain, reason))
                .await?
        }
        EsCmd::Go { name, reason } => {
            c.set_emergency_stop(set(name, v1::EsMode::Go, reason))
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
            outln!("{:<24} {:<5} {}", e.name, shown(e), e.reason)?;
        }
        for e in &r.shared {
            outln!("{:<24} {:<5} {} (shared)", e.name, shown(e), e.reason)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The state word of an entry; halts in capitals so they stand out.
fn shown(e: &v1::EmergencyStopEntry) -> &'static str {
    match v1::EsMode::try_from(e.mode) {
        Ok(v1::EsMode::Drain) => "DRAIN",
        Ok(v1::EsMode::Go) => "go",
        Ok(v1::EsMode::Stop) => "STOP",
        // A server that predates modes says only whether it halts.
        _ if e.stop => "STOP",
        _ => "go",
    }
}
