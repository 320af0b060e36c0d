//! `interlock schedule`: templates instantiated at given times (once, or
//! on a cron expression in a time zone), and what came of each fire.

use crate::Out;
use crate::cmd::parse_label;
use crate::fail::Fail;
use crate::output::{outln, print_json, rfc3339};
use crate::target::{Target, connect};
use interlock_proto::v1;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum ScheduleCmd {
    /// Create a schedule: NAME fires TEMPLATE with the values given.
    Create(Box<CreateArgs>),
    /// Every schedule with its next fire and its last outcome.
    List,
    /// One schedule.
    Show {
        name: String,
    },
    /// No fire until resumed.
    Pause {
        name: String,
    },
    /// Fire again from the next time due (skipped fires are not made up).
    Resume {
        name: String,
    },
    Delete {
        name: String,
    },
}

#[derive(clap::Args)]
pub struct CreateArgs {
    name: String,
    template: String,
    /// Parameter values, name=value.
    #[arg(value_parser = parse_label)]
    params: Vec<(String, String)>,
    /// Fire once at this time (RFC 3339, e.g. 2026-12-24T06:00:00Z).
    #[arg(long, conflicts_with = "cron", required_unless_present = "cron")]
    at: Option<String>,
    /// Fire on a cron expression (minute hour day month weekday).
    #[arg(long)]
    cron: Option<String>,
    /// The time zone the cron expression is read in.
    #[arg(long, default_value = "UTC", requires = "cron")]
    tz: String,
    /// Fires missed while no server ran: skip, or run-once.
    #[arg(long, default_value = "skip", value_parser = ["skip", "run-once"])]
    missed: String,
    /// A fire while the previous fire's workflow still runs: skip, or allow.
    #[arg(long, default_value = "skip", value_parser = ["skip", "allow"])]
    overlap: String,
    /// Pin a template revision (else the latest at each fire).
    #[arg(long)]
    revision: Option<u32>,
    /// Label key=value for its workflows (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Submit only; do not start the workflows.
    #[arg(long)]
    no_exec: bool,
}

pub async fn run(cmd: ScheduleCmd, t: &Target, json: bool) -> Out {
    let mut c = connect(t).await?.schedules();
    let one = match cmd {
        ScheduleCmd::Create(a) => {
            let a = *a;
            let at = match &a.at {
                Some(s) => Some(parse_time(s)?),
                None => None,
            };
            c.create_schedule(v1::CreateScheduleReq {
                name: a.name,
                template: a.template,
                revision: a.revision.unwrap_or(0),
                params: a.params.into_iter().collect(),
                labels: a.labels.into_iter().collect(),
                at,
                time_zone: if a.cron.is_some() {
                    a.tz
                } else {
                    String::new()
                },
                cron: a.cron.unwrap_or_default(),
                missed: if a.missed == "run-once" {
                    "runOnce".into()
                } else {
                    a.missed
                },
                overlap: a.overlap,
                no_exec: a.no_exec,
            })
            .await?
            .into_inner()
        }
        ScheduleCmd::List => {
            let r = c
                .list_schedules(v1::ListSchedulesReq {})
                .await?
                .into_inner();
            if json {
                print_json(&r)?;
                return Ok(ExitCode::SUCCESS);
            }
            if r.schedules.is_empty() {
                outln!("no schedules; create one with `interlock schedule create`")?;
                return Ok(ExitCode::SUCCESS);
            }
            outln!(
                "{:<24} {:<22} {:<22} {:<8} LAST",
                "NAME",
                "WHEN",
                "NEXT FIRE",
                "STATE"
            )?;
            for s in &r.schedules {
                let state = match (s.paused, s.next_fire.is_some()) {
                    (true, _) => "paused",
                    (false, true) => "active",
                    (false, false) => "done",
                };
                let next = if s.next_fire.is_some() {
                    rfc3339(&s.next_fire)
                } else {
                    "-".into()
                };
                outln!(
                    "{:<24} {:<22} {:<22} {:<8} {}",
                    s.name,
                    when(s),
                    next,
                    state,
                    s.last_outcome
                )?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        ScheduleCmd::Show { name } => c
            .get_schedule(v1::GetScheduleReq { name })
            .await?
            .into_inner(),
        ScheduleCmd::Pause { name } => c
            .pause_schedule(v1::PauseScheduleReq { name, paused: true })
            .await?
            .into_inner(),
        ScheduleCmd::Resume { name } => c
            .pause_schedule(v1::PauseScheduleReq {
                name,
                paused: false,
            })
            .await?
            .into_inner(),
        ScheduleCmd::Delete { name } => {
            c.delete_schedule(v1::DeleteScheduleReq { name: name.clone() })
                .await?;
            if json {
                crate::output::print_value(&serde_json::json!({"name": name, "ok": true}))?;
            } else {
                outln!("{name}: deleted")?;
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if json {
        print_json(&one)?;
    } else {
        show(&one)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn when(s: &v1::ScheduleInfo) -> String {
    if s.cron.is_empty() {
        format!("at {}", rfc3339(&s.at))
    } else {
        format!("{} {}", s.cron, s.time_zone)
    }
}

fn show(s: &v1::ScheduleInfo) -> Result<(), Fail> {
    let revision = if s.revision == 0 {
        "latest".to_string()
    } else {
        s.revision.to_string()
    };
    outln!(
        "{}: template {} (revision {revision}), workflow {}",
        s.name,
        s.template,
        s.workflow
    )?;
    outln!(
        "when: {}; missed: {}; overlap: {}{}",
        when(s),
        s.missed,
        s.overlap,
        if s.exec { "" } else { "; submit only" }
    )?;
    for (k, v) in &s.params {
        outln!("  {k} = {v}")?;
    }
    let next = if s.next_fire.is_some() {
        rfc3339(&s.next_fire)
    } else {
        "none left".into()
    };
    outln!(
        "{}next fire: {next}",
        if s.paused { "PAUSED; " } else { "" }
    )?;
    if s.last_due.is_some() {
        outln!(
            "last fire (due {}): {}",
            rfc3339(&s.last_due),
            s.last_outcome
        )?;
    }
    outln!("created {} by {}", rfc3339(&s.created_at), s.created_by)
}

fn parse_time(s: &str) -> Result<interlock_proto::pbjson_types::Timestamp, Fail> {
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|e| Fail::Msg(2, format!("--at {s:?}: not an RFC 3339 time ({e})")))?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| Fail::Msg(2, format!("--at {s:?}: before 1970")))?;
    Ok(interlock_proto::pbjson_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    })
}
