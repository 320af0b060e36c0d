//! Replicas on PostgreSQL beside one process on SQLite, every server a real
//! `interlockd` child process on 127.0.0.1 (the deployment's shape; the
//! benchmark process only drives them):
//!
//! - Submit at concurrency 32 through one and through three replicas;
//! - one-job workflows end to end spread over the replicas;
//! - an e-stop through one replica → jobs on every replica cancelled;
//! - takeover after SIGKILL of the owner;
//! - one-job workflows run through one replica on worker processes
//!   connected to the two others (the task board hands the jobs over).
//!
//! PostgreSQL rows need a server (`INTERLOCK_TEST_DATABASE_URL`, default the
//! local one); each run creates its own database and drops it.

use crate::Row;
use crate::harness::{
    block, daemon_spec, pct, process_cpu_s, sorted, submit_and_exec, submit_row, submit_until, work,
};
use anyhow::{Context, bail};
use interlock_client::{Client, Transport};
use interlock_proto::v1;
use interlock_store_postgres::testing::TestDb;
use interlock_tests::daemon::{Daemon, DaemonSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

type Ctl = v1::control_client::ControlClient<Transport>;

/// The interlockd binary: `--interlockd`, else the one beside this binary.
pub fn interlockd_path(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("no directory for the bench binary")?
            .join("interlockd"),
    };
    if !path.exists() {
        bail!(
            "{} not found: build it beside the bench (cargo build --release -p interlock-server -p interlock-bench) or pass --interlockd",
            path.display()
        );
    }
    Ok(path)
}

struct Node {
    daemon: Daemon,
    client: Client,
    ctl: Ctl,
    id: String,
}

impl Node {
    async fn start(spec: &DaemonSpec) -> anyhow::Result<Self> {
        let daemon = spec
            .spawn()
            .map_err(|e| anyhow::anyhow!("interlockd did not start: {e:?}"))?;
        let opts = interlock_client::Options {
            call_timeout: Duration::from_secs(10),
            ..Default::default()
        };
        let client = Client::connect(&daemon.addr, opts.clone()).await?;
        let mut ctl = Ctl::new(interlock_client::transport(&daemon.addr, &opts).await?);
        let id = ctl
            .cluster(v1::ClusterReq {})
            .await?
            .into_inner()
            .this_instance;
        Ok(Self {
            daemon,
            client,
            ctl,
            id,
        })
    }
}

/// Servers sharing one store and one directory of configs.
struct Deployment {
    nodes: Vec<Option<Node>>,
    spec: DaemonSpec,
    label: String,
    _dir: tempfile::TempDir,
    _db: Option<TestDb>,
}

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Deployment {
    async fn start(bin: &Path, backend: Backend, n: usize, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(bin, backend, n, extra, None).await
    }

    /// With `jobs` as jobs.json.
    async fn start_with(
        bin: &Path,
        backend: Backend,
        n: usize,
        extra: &[&str],
        jobs: Option<&str>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut spec = daemon_spec(bin, dir.path()).args(extra.iter().copied());
        let configs = dir.path().join("configs");
        if let Some(j) = jobs {
            std::fs::write(configs.join("jobs.json"), j)?;
        }
        let db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                TestDb::create()
                    .await
                    .context("PostgreSQL is needed for the replica rows")?,
            ),
        };
        if let Some(db) = &db {
            spec.db = db.url.clone();
        }
        let label = match backend {
            Backend::Sqlite => "SQLite, 1 process".to_string(),
            Backend::Postgres if n == 1 => "PostgreSQL, 1 replica".to_string(),
            Backend::Postgres => format!("PostgreSQL, {n} replicas"),
        };
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(Some(Node::start(&spec).await?));
        }
        Ok(Self {
            nodes,
            spec,
            label,
            _dir: dir,
            _db: db,
        })
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node running")
    }

    fn len(&self) -> usize {
        self.nodes.len()
    }
}

fn sleep_req(seconds: &str) -> v1::WorkReq {
    work(vec![block(
        1,
        vec![v1::Job {
            name: "sleep".into(),
            args: [("seconds".to_string(), seconds.to_string())].into(),
            ..Default::default()
        }],
    )])
}

/// Submit at concurrency 32 for `seconds`, clients spread over the nodes.
async fn submit_rate(d: &Deployment, seconds: u64) -> anyhow::Result<Row> {
    let req = work(vec![
        block(1, vec![sleep_req("0").blocks[0].jobs[0].clone()]),
        block(2, vec![sleep_req("0").blocks[0].jobs[0].clone(); 2]),
    ]);
    // Warm the connections and the pools.
    for i in 0..d.len() {
        d.node(i).client.submit(req.clone()).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let clients = (0..32).map(|t| d.node(t % d.len()).client.raw()).collect();
    let (lat, errors) = submit_until(clients, &req, deadline).await?;
    let target = if d.len() == 3 {
        "≥ 5,000/s through 3, p99 < 20 ms".into()
    } else {
        String::new()
    };
    let scenario = format!("submit c=32, {}", d.label);
    Ok(submit_row(scenario, target, lat, errors, seconds))
}

/// Status changes of a one-job workflow, as Watch reports them: submitted;
/// the workflow, its block and its job running; the job, the block and the
/// workflow completed. Each is durable before anyone is told of it, whether
/// or not the store commits some of them together.
const TRANSITIONS_PER_WORKFLOW: f64 = 7.0;

/// `count` one-job workflows submitted, executed and waited for by
/// `workers` clients spread over the nodes (each client stays with its
/// node).
async fn end_to_end(d: &Deployment, count: usize, workers: usize) -> anyhow::Result<Row> {
    let pids: Vec<u32> = (0..d.len()).map(|i| d.node(i).daemon.pid()).collect();
    let servers_cpu = || pids.iter().filter_map(|&p| process_cpu_s(p)).sum::<f64>();
    let client_cpu = || process_cpu_s(std::process::id()).unwrap_or(f64::NAN);
    let (server0, client0) = (servers_cpu(), client_cpu());
    let t = Instant::now();
    on_clients(d, workers, count, |c, n| async move {
        let ids = submit_and_exec(&c, &sleep_req("0"), n).await?;
        for id in &ids {
            let status = wait_final(&c, id).await?;
            if status != v1::Status::Completed as i32 {
                bail!("{id} ended {status}");
            }
        }
        Ok(())
    })
    .await?;
    let secs = t.elapsed().as_secs_f64();
    let rate = count as f64 / secs;
    let per_wf = |cpu: f64| cpu / count as f64 * 1e6;
    let (server, client) = (
        per_wf(servers_cpu() - server0),
        per_wf(client_cpu() - client0),
    );
    Ok(Row {
        scenario: format!(
            "{count} one-job workflows end to end (Watch until final), {workers} clients, {}",
            d.label
        ),
        result: format!(
            "{secs:.2} s, {rate:.0} workflows/s; CPU per workflow: interlockd {server:.0} µs ({:.0} µs per durable transition, {TRANSITIONS_PER_WORKFLOW} per workflow), clients (this process) {client:.0} µs",
            server / TRANSITIONS_PER_WORKFLOW
        ),
        target: if d.len() == 3 {
            "≥ 2,000 workflows/s on 3".into()
        } else {
            String::new()
        },
        values: BTreeMap::from([
            ("seconds".into(), secs),
            ("workflows_per_s".into(), rate),
            ("server_cpu_us_per_workflow".into(), server),
            ("client_cpu_us_per_workflow".into(), client),
        ]),
    })
}

/// The workflow's final status, from Watch (as `interlock watch` and
/// well-behaved clients wait, instead of polling Status).
async fn wait_final(c: &Client, id: &str) -> anyhow::Result<i32> {
    let mut stream = c
        .raw()
        .watch(v1::WatchReq {
            id: id.to_string(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut last = None;
    // Read to the end: the server ends the stream after the final status.
    // Dropping it earlier makes the server's last frames arrive on a reset
    // stream, and h2 ends a connection after 1,024 such resets.
    while let Some(ev) = stream.message().await? {
        match ev.event {
            Some(v1::watch_event::Event::Snapshot(s)) if interlock_client::is_final(s.status) => {
                last = Some(s.status);
            }
            Some(v1::watch_event::Event::Transition(t))
                if t.block == -1 && interlock_client::is_final(t.status) =>
            {
                last = Some(t.status);
            }
            _ => {}
        }
    }
    last.with_context(|| format!("the watch of {id} ended before the workflow did"))
}

/// `per_node` long sleeps running on each node; an e-stop through node 0;
/// the time from the call until each job's cancellation is committed, as
/// Watch on its owner reports it. `flips` rounds.
async fn estop_spread(d: &Deployment, flips: usize, per_node: usize) -> anyhow::Result<Row> {
    let mut lat = Vec::new();
    let mut per_flip = Vec::new();
    for _ in 0..flips {
        let mut watches = Vec::new();
        for i in 0..d.len() {
            let node = d.node(i);
            for _ in 0..per_node {
                let id = node.client.submit(sleep_req("600")).await?;
                node.client.exec(&id).await?;
                watches.push((i, id));
            }
        }
        // Every job Running, and a Watch open on its owner.
        let t0 = Arc::new(Mutex::new(None::<Instant>));
        let mut tasks = Vec::new();
        for (i, id) in watches {
            let c = d.node(i).client.clone();
            loop {
                let st = c.status(&id).await?;
                if st.blocks[0].jobs[0].status == v1::Status::Running as i32 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let mut stream = c
                .raw()
                .watch(v1::WatchReq {
                    id: id.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            let t0 = t0.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(ev) = stream.message().await? {
                    if let Some(v1::watch_event::Event::Transition(t)) = ev.event
                        && t.block == 0
                        && t.job == 0
                        && t.status == v1::Status::Stopped as i32
                    {
                        let seen = Instant::now();
                        let start = t0.lock().await.context("stop not sent yet")?;
                        return anyhow::Ok(seen.duration_since(start).as_secs_f64() * 1e3);
                    }
                }
                bail!("the watch of {id} ended without the job stopping")
            }));
        }
        let mut ctl = d.node(0).ctl.clone();
        *t0.lock().await = Some(Instant::now());
        ctl.set_emergency_stop(v1::SetEmergencyStopReq {
            name: "bench".into(),
            stop: true,
            reason: "benchmark".into(),
            ..Default::default()
        })
        .await?;
        let mut worst: f64 = 0.0;
        for t in tasks {
            let ms = t.await??;
            worst = worst.max(ms);
            lat.push(ms);
        }
        per_flip.push(worst);
        ctl.set_emergency_stop(v1::SetEmergencyStopReq {
            name: "bench".into(),
            stop: false,
            reason: String::new(),
            ..Default::default()
        })
        .await?;
        // Every node lets the name run again before the next round.
        for i in 0..d.len() {
            let mut c = d.node(i).ctl.clone();
            loop {
                let es = c
                    .emergency_stop_state(v1::EmergencyStopStateReq {})
                    .await?
                    .into_inner();
                if !es.shared.iter().any(|e| e.name == "bench" && e.stop) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    let lat = sorted(lat);
    let per_flip = sorted(per_flip);
    let jobs = d.len() * per_node;
    Ok(Row {
        scenario: format!(
            "e-stop through node 0 → {jobs} running jobs on every node Stopped, {}",
            d.label
        ),
        result: format!(
            "per job p50 {:.1} ms, p99 {:.1} ms; last job per flip p50 {:.1} ms, max {:.1} ms ({flips} flips)",
            pct(&lat, 50.0),
            pct(&lat, 99.0),
            pct(&per_flip, 50.0),
            pct(&per_flip, 100.0)
        ),
        target: "p99 ≤ 100 ms".into(),
        values: BTreeMap::from([
            ("job_p50_ms".into(), pct(&lat, 50.0)),
            ("job_p99_ms".into(), pct(&lat, 99.0)),
            ("flip_max_ms".into(), pct(&per_flip, 100.0)),
        ]),
    })
}

/// SIGKILL the owner of a running workflow; time until another replica
/// owns it (Status.run_by through a survivor). `rounds` times.
async fn takeover(d: &mut Deployment, rounds: usize, ttl: Duration) -> anyhow::Result<Row> {
    let mut times = Vec::new();
    for r in 0..rounds {
        let k = r % d.len();
        let survivor = (k + 1) % d.len();
        let (id, dead) = {
            let node = d.node(k);
            let id = node.client.submit(sleep_req("600")).await?;
            node.client.exec(&id).await?;
            (id, node.id.clone())
        };
        let c = d.node(survivor).client.clone();
        loop {
            let st = c.status(&id).await?;
            if st.run_by == dead && st.blocks[0].jobs[0].status == v1::Status::Running as i32 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if let Some(mut n) = d.nodes[k].take() {
            n.daemon.kill();
        }
        let t = Instant::now();
        loop {
            let st = c.status(&id).await?;
            if !st.run_by.is_empty() && st.run_by != dead {
                break;
            }
            if t.elapsed() > ttl * 10 {
                bail!("{id} was not taken over within {:?}", ttl * 10);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        times.push(t.elapsed().as_secs_f64());
        c.raw()
            .cancel(v1::CancelReq {
                id,
                reason: "benchmark round over".into(),
            })
            .await?;
        d.nodes[k] = Some(Node::start(&d.spec).await?);
    }
    let times = sorted(times);
    let ttl_s = ttl.as_secs_f64();
    Ok(Row {
        scenario: format!(
            "takeover after SIGKILL of the owner, lease ttl {ttl_s} s, {}",
            d.label
        ),
        result: format!(
            "p50 {:.2} s, max {:.2} s ({rounds} kills)",
            pct(&times, 50.0),
            pct(&times, 100.0)
        ),
        target: format!("≤ lease ttl + 2 s = {:.0} s", ttl_s + 2.0),
        values: BTreeMap::from([
            ("p50_s".into(), pct(&times, 50.0)),
            ("max_s".into(), pct(&times, 100.0)),
        ]),
    })
}

pub struct Params {
    pub seconds: u64,
    pub count: usize,
    pub flips: usize,
}

pub async fn replicas(bin: &Path, p: Params) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let layouts = [
        (Backend::Sqlite, 1),
        (Backend::Postgres, 1),
        (Backend::Postgres, 3),
    ];
    // One deployment at a time, so each has the machine to itself.
    for (backend, n) in layouts {
        let d = Deployment::start(bin, backend, n, &[]).await?;
        rows.push(submit_rate(&d, p.seconds).await?);
        rows.push(end_to_end(&d, p.count, 32).await?);
        rows.push(estop_spread(&d, p.flips, 10).await?);
    }
    let ttl = Duration::from_secs(2);
    let mut d = Deployment::start(bin, Backend::Postgres, 3, &["--lease-ttl", "2s"]).await?;
    rows.push(takeover(&mut d, 6, ttl).await?);
    drop(d);
    rows.extend(remote_workers(bin, p.count).await?);
    Ok(rows)
}

/// What the `e2e` rows run.
pub struct EndToEnd {
    /// Workflows per row.
    pub count: usize,
    /// Clients, spread over the nodes.
    pub clients: usize,
    /// Rounds over the layouts.
    pub runs: usize,
    /// Workflows kept running meanwhile.
    pub holding: usize,
}

/// The end-to-end row alone on each layout, `runs` rounds alternating the
/// layouts (each on a fresh deployment), so they see the same machine.
/// With `holding`, that many workflows (one hour-long sleep job each) are
/// first started through the nodes in turn and keep running meanwhile:
/// the cost of a write must not grow with the workflows a replica owns.
pub async fn end_to_end_only(bin: &Path, e: EndToEnd) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for _ in 0..e.runs {
        for (backend, n) in [
            (Backend::Sqlite, 1),
            (Backend::Postgres, 1),
            (Backend::Postgres, 3),
        ] {
            let d = Deployment::start(bin, backend, n, &[]).await?;
            start_held(&d, e.holding).await?;
            let mut row = end_to_end(&d, e.count, e.clients).await?;
            if e.holding > 0 {
                row.scenario = format!("{} ({} others running)", row.scenario, e.holding);
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Starts `count` workflows of one hour-long sleep job, 32 clients spread
/// over the nodes.
async fn start_held(d: &Deployment, count: usize) -> anyhow::Result<()> {
    on_clients(d, 32, count, |c, n| async move {
        submit_and_exec(&c, &sleep_req("3600"), n).await.map(drop)
    })
    .await
}

/// Runs `work(client, n)` on `workers` concurrent clients, client `w` on
/// node `w % nodes`, the `count` workflows shared out evenly; fails with
/// the first client that fails.
async fn on_clients<F, Fut>(
    d: &Deployment,
    workers: usize,
    count: usize,
    work: F,
) -> anyhow::Result<()>
where
    F: Fn(Client, usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let c = d.node(w % d.len()).client.clone();
            let n = count / workers + usize::from(w < count % workers);
            tokio::spawn(work(c, n))
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// `count` one-job workflows submitted and executed through replica 0 by
/// 32 clients: first with the job run in the server (`sleep 0`), then
/// with a job that runs on 4 worker processes connected to replicas 1
/// and 2 only, so every attempt crosses the task board.
pub async fn remote_workers(bin: &Path, count: usize) -> anyhow::Result<Vec<Row>> {
    let d =
        Deployment::start_with(bin, Backend::Postgres, 3, &[], Some(super::workers::JOBS)).await?;
    let mut workers = Vec::new();
    for i in [1, 2] {
        workers.push(super::workers::spawn_workers(
            &d.node(i).daemon.url(),
            2,
            64,
        )?);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in [1, 2] {
        let addr = d.node(i).daemon.url();
        loop {
            let mut c = v1::worker_client::WorkerClient::new(
                interlock_client::transport(&addr, &Default::default()).await?,
            );
            let online = c.list_workers(v1::ListWorkersReq {}).await?.into_inner();
            if online.workers.len() >= 2 {
                break;
            }
            if Instant::now() > deadline {
                bail!("the workers of replica {i} never connected");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let through = |job: &str| {
        let c = d.node(0).client.clone();
        let req = work(vec![block(
            1,
            vec![v1::Job {
                name: job.into(),
                args: if job == "sleep" {
                    [("seconds".to_string(), "0".to_string())].into()
                } else {
                    Default::default()
                },
                ..Default::default()
            }],
        )]);
        async move {
            let t = Instant::now();
            let mut tasks = Vec::new();
            for w in 0..32 {
                let (c, req) = (c.clone(), req.clone());
                let n = count / 32 + usize::from(w < count % 32);
                tasks.push(tokio::spawn(async move {
                    for id in submit_and_exec(&c, &req, n).await? {
                        let status = wait_final(&c, &id).await?;
                        if status != v1::Status::Completed as i32 {
                            bail!("{id} ended {status}");
                        }
                    }
                    anyhow::Ok(())
                }));
            }
            for t in tasks {
                t.await??;
            }
            anyhow::Ok(t.elapsed().as_secs_f64())
        }
    };
    let local = through("sleep").await?;
    let remote = through("benchNoop").await?;
    drop(workers);
    let (lr, rr) = (count as f64 / local, count as f64 / remote);
    Ok(vec![Row {
        scenario: format!(
            "{count} one-job workflows through replica 0 of 3 (PostgreSQL), the job on 4 worker \
             processes connected to replicas 1 and 2, beside the job in the server"
        ),
        result: format!(
            "workers {rr:.0}/s ({remote:.2} s), in the server {lr:.0}/s ({local:.2} s), ratio {:.2}",
            rr / lr
        ),
        target: "≥ 2,000 workflows/s on workers".into(),
        values: BTreeMap::from([("workers_per_s".into(), rr), ("server_per_s".into(), lr)]),
    }])
}
