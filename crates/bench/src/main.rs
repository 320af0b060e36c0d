//! interlock-bench: runs benchmark scenarios against a real interlockd
//! (started in-process on 127.0.0.1:0 with its own temporary files and the
//! default durable SQLite store), prints a table, or JSON with `--json`.
//!
//! Every scenario is bounded in count and time and targets loopback only.

use clap::{Parser, ValueEnum};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Parser)]
#[command(
    name = "interlock-bench",
    about = "Interlock benchmark scenarios (loopback only)"
)]
struct Cli {
    /// Scenarios to run.
    #[arg(value_enum, default_values_t = vec![Scenario::All])]
    scenarios: Vec<Scenario>,
    /// Seconds per timed measurement.
    #[arg(long, default_value = "3")]
    seconds: u64,
    /// E-stop flips to measure.
    #[arg(long, default_value = "50")]
    flips: usize,
    /// Workflows running during each e-stop flip.
    #[arg(long, default_value = "100")]
    workflows: usize,
    /// Workflows for the `workflows` and `concurrent` scenarios.
    #[arg(long, default_value = "10000")]
    count: usize,
    /// SQLite durability for the server under test (default: full, as interlockd).
    #[arg(long, value_enum, default_value = "full")]
    sync: interlock_server::config::SyncMode,
    /// Serve over TLS with bearer-token authentication and RBAC (certificates
    /// and the token generated for the run), as a secured deployment does.
    #[arg(long)]
    secure: bool,
    /// Seconds of overload for the `overload` scenario.
    #[arg(long, default_value = "20")]
    overload_seconds: u64,
    /// The interlockd binary the `replicas` scenario starts (default: the
    /// one beside this binary).
    #[arg(long)]
    interlockd: Option<std::path::PathBuf>,
    /// Old finished workflows seeded for the `retention` scenario; the
    /// largest stored size for `scale` (10k, 100k, 1M up to it; 0 skips).
    #[arg(long, default_value = "1000000")]
    rows: usize,
    /// Rounds of (pruning off, pruning on) for the `retention` scenario.
    #[arg(long, default_value = "2")]
    rounds: usize,
    /// `retention_batch` for the `retention` scenario [default: the server's].
    #[arg(long)]
    retention_batch: Option<usize>,
    /// `retention_pause` for the `retention` scenario, e.g. 250ms [default:
    /// the server's].
    #[arg(long, value_parser = humantime::parse_duration)]
    retention_pause: Option<std::time::Duration>,
    /// Runs per concurrency for `compare` (the median is reported).
    #[arg(long, default_value = "3")]
    runs: usize,
    /// Serve the no-op server `compare` measures against (internal).
    #[arg(long, hide = true)]
    serve_noop: bool,
    /// Be a worker of the `workers` scenario for this server (internal).
    #[arg(long, hide = true)]
    serve_worker: Option<String>,
    #[arg(long, hide = true, default_value = "bench")]
    worker_name: String,
    #[arg(long, hide = true, default_value = "64")]
    worker_capacity: u32,
    /// Worker processes for the `workers` scenario.
    #[arg(long, default_value = "4")]
    processes: usize,
    /// Workflows running at once in the `scale` scenario (0: skip that part).
    #[arg(long, default_value = "100000")]
    running: usize,
    /// Clients of the `e2e` rows (each submits, executes and waits for its
    /// share of the workflows, one after another).
    #[arg(long, default_value = "32")]
    clients: usize,
    /// Workflows kept running (hour-long sleep jobs) during the `e2e` rows,
    /// started through the nodes in turn before each row.
    #[arg(long, default_value = "0")]
    holding: usize,
    /// SSE watchers for the `dashboard` scenario.
    #[arg(long, default_value = "200")]
    watchers: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    All,
    Submit,
    Transitions,
    Estop,
    /// Submit+Exec+completion of many one-job workflows.
    Workflows,
    /// Many concurrently running workflows: memory and Status latency.
    Concurrent,
    /// policies.json write → new policy in force.
    Reload,
    /// List over many stored workflows.
    List,
    /// Ten times the sustainable Submit rate: only OK or RESOURCE_EXHAUSTED,
    /// bounded memory, normal service right after.
    Overload,
    /// interlockd child processes: SQLite beside PostgreSQL with 1 and 3
    /// replicas (Submit, end to end, e-stop across replicas, takeover).
    Replicas,
    /// Only the end-to-end row of `replicas` (SQLite, PostgreSQL with 1 and
    /// 3 replicas), `--runs` times alternately: the quick loop for work on
    /// the per-workflow cost.
    E2e,
    /// Submit latency while retention prunes a backlog of `--rows` old
    /// finished workflows, beside the same load with pruning off.
    Retention,
    /// interlockd beside a no-op tonic server of the same proto, each a
    /// child pinned to core 0, the load driver on core 1: the ratio.
    Compare,
    /// The dashboard's cost: SSE watchers while workflows run (event
    /// latency, extra CPU), and its list call over `--rows` stored
    /// workflows (default 100,000 for this scenario).
    Dashboard,
    /// Submit through interlockd exporting traces over OTLP beside one
    /// that does not (children pinned as for `compare`): the overhead.
    Traced,
    /// How cost grows with stored workflows (10k/100k/1M), with jobs per
    /// workflow (1/100/10k/50k) and with workflows running at once, on an
    /// interlockd child: start-up, memory, Submit/Status/List latency.
    Scale,
    /// One-job workflows on `--processes` worker processes beside the same
    /// in the server; Exec → handler start; es.json → handler cancelled.
    Workers,
    /// interlockd children on PostgreSQL: one-job workflows through one
    /// replica whose job runs on workers connected to the two others (the
    /// task board), beside the job in the server (the last `replicas` row).
    Board,
}

#[derive(Serialize)]
pub struct Row {
    scenario: String,
    result: String,
    target: String,
    values: BTreeMap<String, f64>,
}

mod harness;
mod scenarios;

use harness::Bench;
use scenarios::*;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.serve_noop {
        return compare::serve_noop().await;
    }
    if let Some(addr) = &cli.serve_worker {
        return workers::serve_worker(addr, &cli.worker_name, cli.worker_capacity).await;
    }
    let all = cli.scenarios.contains(&Scenario::All);
    let want = |s| all || cli.scenarios.contains(&s);
    let mut rows = Vec::new();
    if want(Scenario::Submit) {
        let b = Bench::start(cli.sync, cli.secure).await?;
        rows.extend(submit::submit(&b, cli.seconds).await?);
    }
    if want(Scenario::Transitions) {
        let b = Bench::start(cli.sync, cli.secure).await?;
        rows.extend(transitions::transitions(&b).await?);
    }
    if want(Scenario::Estop) {
        let b = Bench::start(cli.sync, cli.secure).await?;
        rows.extend(estop::estop(&b, cli.flips, cli.workflows).await?);
        if let Some(r) = b.running {
            let _ = r.shutdown().await;
        }
    }
    if want(Scenario::Reload) {
        let b = Bench::start(cli.sync, cli.secure).await?;
        rows.extend(reload::reload(&b, 50).await?);
    }
    if want(Scenario::Workflows) {
        let b = Bench::start(cli.sync, cli.secure).await?;
        rows.extend(workflows::workflows(&b, cli.count).await?);
    }
    if want(Scenario::Concurrent) {
        let b = Bench::start(cli.sync, cli.secure).await?;
        rows.extend(workflows::concurrent(&b, cli.count, cli.seconds).await?);
    }
    if cli.scenarios.contains(&Scenario::List) {
        let b = Bench::start(cli.sync, cli.secure).await?;
        rows.extend(list::list(&b, cli.count.max(100_000), cli.seconds).await?);
    }
    if cli.scenarios.contains(&Scenario::Overload) {
        let b = Bench::start(cli.sync, cli.secure).await?;
        rows.extend(overload::overload(&b, cli.overload_seconds).await?);
    }
    if cli.scenarios.contains(&Scenario::Replicas) {
        let bin = replicas::interlockd_path(cli.interlockd.clone())?;
        rows.extend(
            replicas::replicas(
                &bin,
                replicas::Params {
                    seconds: cli.seconds,
                    count: cli.count,
                    flips: cli.flips.min(20),
                },
            )
            .await?,
        );
    }
    if cli.scenarios.contains(&Scenario::E2e) {
        let bin = replicas::interlockd_path(cli.interlockd.clone())?;
        let e = replicas::EndToEnd {
            count: cli.count,
            clients: cli.clients.max(1),
            runs: cli.runs.max(1),
            holding: cli.holding,
        };
        rows.extend(replicas::end_to_end_only(&bin, e).await?);
    }
    if cli.scenarios.contains(&Scenario::Board) {
        let bin = replicas::interlockd_path(cli.interlockd.clone())?;
        rows.extend(replicas::remote_workers(&bin, cli.count).await?);
    }
    if cli.scenarios.contains(&Scenario::Retention) {
        rows.extend(
            retention::retention(retention::Params {
                rows: cli.rows,
                seconds: cli.seconds,
                rounds: cli.rounds.max(1),
                batch: cli.retention_batch,
                pause: cli.retention_pause,
            })
            .await?,
        );
    }
    if cli.scenarios.contains(&Scenario::Compare) {
        let bin = replicas::interlockd_path(cli.interlockd.clone())?;
        rows.extend(
            compare::compare(
                &bin,
                compare::Params {
                    seconds: cli.seconds,
                    runs: cli.runs.max(1),
                },
            )
            .await?,
        );
    }
    if cli.scenarios.contains(&Scenario::Dashboard) {
        rows.extend(
            dashboard::dashboard(dashboard::Params {
                workflows: cli.workflows.max(1000),
                watchers: cli.watchers,
                stored: cli.rows.min(100_000),
                seconds: cli.seconds,
            })
            .await?,
        );
    }
    if cli.scenarios.contains(&Scenario::Traced) {
        let bin = replicas::interlockd_path(cli.interlockd.clone())?;
        rows.extend(traced::traced(&bin, cli.seconds, cli.runs.max(1)).await?);
    }
    if cli.scenarios.contains(&Scenario::Scale) {
        let bin = replicas::interlockd_path(cli.interlockd.clone())?;
        rows.extend(
            scale::scale(
                &bin,
                scale::Params {
                    rows: cli.rows,
                    running: cli.running,
                    seconds: cli.seconds,
                },
            )
            .await?,
        );
    }
    if cli.scenarios.contains(&Scenario::Workers) {
        rows.extend(
            workers::workers(
                cli.sync,
                workers::Params {
                    count: cli.count,
                    processes: cli.processes.max(1),
                    flips: cli.flips.min(20),
                    held: cli.workflows,
                },
            )
            .await?,
        );
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("| scenario | result | target |\n|---|---|---|");
        for r in &rows {
            println!("| {} | {} | {} |", r.scenario, r.result, r.target);
        }
    }
    Ok(())
}
