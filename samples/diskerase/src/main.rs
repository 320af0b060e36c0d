//! diskerase: erases the disks of a decommissioned satellite site through
//! Interlock, the way the ancestor's sample did, over interlock.v1.
//!
//! `diskerase erase-satellite SITE --ticket T` pre-checks the site locally,
//! then has the server build the request from its `erase-satellite`
//! template (checks first, so a site that fails validation never spends
//! the erase token; one erase per machine the server's inventory lists;
//! each erase verified), dry-runs it, instantiates and executes it, appends
//! the id to a log file and follows progress until the end. `--hand-built`
//! builds the ancestor's request shape here instead (blocks of five erases
//! separated by `--pause` sleeps) and submits it.
//! `diskerase status ID` prints the tree; `diskerase status-json ID` the
//! protobuf JSON of the full status. `diskerase worker` runs the erase
//! outside the server (see [`worker`]).

mod worker;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use interlock_client::args::{CredentialArgs, DEFAULT_ADDR};
use interlock_client::display::{status_name, tree as render};
use interlock_client::{Client, Options, is_final};
use interlock_inventory::Inventory;
use interlock_proto::v1;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "diskerase",
    version,
    about = "Erase a decommissioned satellite's disks through Interlock"
)]
struct Cli {
    /// Interlock server address, e.g. 127.0.0.1:8080 (http, or https
    /// when a CA is given), http://host:port or https://host:port.
    // `--server` was this flag's old name; it still works.
    #[arg(
        long,
        alias = "server",
        env = "INTERLOCK_ADDR",
        default_value = DEFAULT_ADDR,
        global = true
    )]
    addr: String,
    #[command(flatten)]
    creds: CredentialArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Erase every machine of a satellite site in decom.
    EraseSatellite {
        site: String,
        /// Inventory directory (sites.json, machines.json) for the local pre-check.
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// File the workflow id is appended to.
        #[arg(long, default_value = "submit.log")]
        log: PathBuf,
        /// The change ticket that authorizes the erase (the template's
        /// `ticket` parameter).
        #[arg(long, default_value = "DECOM-1")]
        ticket: String,
        /// Erases in flight at once (the template's `rate`).
        #[arg(long)]
        rate: Option<u32>,
        /// Build the ancestor's request here instead of using the server's
        /// template.
        #[arg(long)]
        hand_built: bool,
        /// With --hand-built: seconds to wait between erase blocks.
        #[arg(long, default_value = "10", requires = "hand_built")]
        pause: String,
        /// Submit and execute, then return without following progress.
        #[arg(long)]
        no_wait: bool,
    },
    /// Show a workflow's status as a tree.
    Status { id: String },
    /// Print a workflow's full status as protobuf JSON.
    StatusJson { id: String },
    /// Serve diskErase and verifyErase as a worker, against an erase
    /// target this process owns (the server's jobs.json must declare
    /// them). Runs until interrupted.
    Worker(worker::Args),
}

/// The server-side template the sample instantiates.
const TEMPLATE: &str = "erase-satellite";

fn refused(violations: &[v1::Violation]) {
    for v in violations {
        eprintln!(
            "violation: {} (block {}, job {}): {}",
            v.policy, v.block, v.job, v.message
        );
    }
}

/// A missing template, said with what to do about it.
fn no_template(e: interlock_client::Error) -> anyhow::Error {
    if e.code() == Some(tonic::Code::NotFound) {
        anyhow::anyhow!(
            "{e}\nthe server has no {TEMPLATE:?} template: store it with `interlock template \
             apply configs/templates/erase-satellite.yaml`, or pass --hand-built"
        )
    } else {
        e.into()
    }
}

fn job(name: &str, args: &[(&str, &str)]) -> v1::Job {
    v1::Job {
        name: name.into(),
        args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

/// The ancestor's request shape: checks, then blocks of up to 5 erases
/// separated by sleep blocks.
fn build(site: &str, machines: &[String], pause: &str) -> v1::WorkReq {
    let mut blocks = vec![v1::Block {
        desc: format!("pre-checks for {site}"),
        rate_limit: 1,
        jobs: vec![
            job("validateDecom", &[("site", site), ("type", "satellite")]),
            job(
                "tokenBucket",
                &[("bucket", "diskEraseSatellite"), ("fatal", "true")],
            ),
        ],
        ..Default::default()
    }];
    for (i, chunk) in machines.chunks(5).enumerate() {
        if i > 0 {
            blocks.push(v1::Block {
                desc: "pause between erase blocks".into(),
                rate_limit: 1,
                jobs: vec![job("sleep", &[("seconds", pause)])],
                ..Default::default()
            });
        }
        blocks.push(v1::Block {
            desc: format!("erase {} machines", chunk.len()),
            rate_limit: 5,
            jobs: chunk
                .iter()
                .map(|m| job("diskErase", &[("machine", m), ("site", site)]))
                .collect(),
            ..Default::default()
        });
    }
    v1::WorkReq {
        name: "SatelliteDiskErase".into(),
        desc: format!("erase the disks of satellite {site}"),
        blocks,
        ..Default::default()
    }
}

async fn follow(c: &Client, id: &str, total: u64) -> anyhow::Result<v1::StatusResp> {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} jobs {msg}",
        )
        .expect("valid template"),
    );
    loop {
        let st = c.status(id).await?;
        let done = st
            .blocks
            .iter()
            .flat_map(|b| &b.jobs)
            .filter(|j| is_final(j.status) || j.status == v1::Status::Skipped as i32)
            .count();
        bar.set_position(done as u64);
        let current = st
            .blocks
            .iter()
            .position(|b| b.status == v1::Status::Running as i32)
            .map(|i| format!("block {i}: {}", st.blocks[i].desc))
            .unwrap_or_default();
        bar.set_message(format!("{} {current}", status_name(st.status)));
        if is_final(st.status) {
            bar.finish();
            return Ok(st);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("diskerase: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let opts = Options {
        credentials: cli.creds.credentials()?,
        ..Options::default()
    };
    let connect = || Client::connect(&cli.addr, opts.clone());
    match cli.cmd {
        Cmd::EraseSatellite {
            site,
            data,
            log,
            ticket,
            rate,
            hand_built,
            pause,
            no_wait,
        } => {
            let inv = Inventory::load(&data).context("loading the inventory for the pre-check")?;
            let Some(s) = inv.site(&site) else {
                bail!("site {site:?} is not in the inventory ({})", data.display())
            };
            if s.kind != "satellite" || s.status != "decom" {
                bail!(
                    "site {site:?} is a {} in status {:?}; only satellites in decom can be erased",
                    s.kind,
                    s.status
                );
            }
            let machines: Vec<String> = inv
                .machines_at(&site)
                .iter()
                .map(|m| m.name.clone())
                .collect();
            if machines.is_empty() {
                bail!("site {site:?} has no machines");
            }
            let c = connect().await?;
            let (id, total) = if hand_built {
                let req = build(&site, &machines, &pause);
                let verdict = c.validate(req.clone()).await?;
                if !verdict.ok {
                    refused(&verdict.violations);
                    bail!("the server would refuse this request");
                }
                let total = req.blocks.iter().map(|b| b.jobs.len()).sum::<usize>();
                let id = c.submit(req).await?;
                (id, total)
            } else {
                let mut params = std::collections::BTreeMap::from([
                    ("site".to_string(), site.clone()),
                    ("ticket".to_string(), ticket),
                ]);
                if let Some(r) = rate {
                    params.insert("rate".into(), r.to_string());
                }
                let call = v1::InstantiateReq {
                    template: TEMPLATE.into(),
                    params,
                    ..Default::default()
                };
                let dry = c
                    .instantiate(v1::InstantiateReq {
                        dry_run: true,
                        ..call.clone()
                    })
                    .await
                    .map_err(no_template)?;
                if let Some(v) = dry.validation.as_ref().filter(|v| !v.ok) {
                    refused(&v.violations);
                    bail!("the server would refuse this request");
                }
                let made = c.instantiate(call).await?;
                let total = made
                    .request
                    .as_ref()
                    .map_or(0, |r| r.blocks.iter().map(|b| b.jobs.len()).sum::<usize>());
                (made.id, total)
            };
            c.exec(&id).await?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?;
            writeln!(f, "{id}")?;
            println!(
                "workflow {id} started ({} machines); id appended to {}",
                machines.len(),
                log.display()
            );
            if no_wait {
                return Ok(std::process::ExitCode::SUCCESS);
            }
            let st = follow(&c, &id, total as u64).await?;
            out(&render(&st))?;
            Ok(exit(&st))
        }
        Cmd::Status { id } => {
            let st = connect().await?.status(&id).await?;
            out(&render(&st))?;
            Ok(exit(&st))
        }
        Cmd::StatusJson { id } => {
            let st = connect().await?.status(&id).await?;
            out(&format!("{}\n", serde_json::to_string_pretty(&st)?))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Worker(args) => {
            worker::run(&cli.addr, opts, args).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn out(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn exit(st: &v1::StatusResp) -> std::process::ExitCode {
    if st.status == v1::Status::Completed as i32 || !is_final(st.status) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_shape_matches_the_ancestor() {
        let ms: Vec<String> = (0..8).map(|i| format!("aab{i:02}")).collect();
        let r = build("aab", &ms, "10");
        let shape: Vec<(i32, Vec<&str>)> = r
            .blocks
            .iter()
            .map(|b| {
                (
                    b.rate_limit,
                    b.jobs.iter().map(|j| j.name.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(shape[0], (1, vec!["validateDecom", "tokenBucket"]));
        assert_eq!(shape[1].0, 5);
        assert_eq!(shape[1].1.len(), 5);
        assert_eq!(shape[2], (1, vec!["sleep"]));
        assert_eq!(shape[3].1.len(), 3);
        assert_eq!(r.blocks[0].jobs[1].args["fatal"], "true");
    }
}
