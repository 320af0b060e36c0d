//! Side by side with the physical limit: a tonic server of the same proto
//! whose Submit does nothing, and interlockd (durable, as shipped), each a
//! child process pinned to core 0, driven by this process pinned to core 1
//! with the same erase-shaped request on the ancestor's protocol. Each
//! child starts confined to core 0, as `taskset -c 0 <server>` starts it,
//! so its runtime sizes itself for the one core it has (a server pinned
//! after it started keeps a worker thread per core of the machine, and
//! they take turns on the one core they are given).
//!
//! At c=1 the disk's own bound is measured too, between the runs: one-row
//! commits with interlockd's durability settings, in a database beside
//! interlockd's.
//!
//! On a noisy machine the ratio interlockd / no-op is the figure of merit:
//! both sides see the same noise within a run. Absolute numbers are
//! printed beside it. Without two cores, or without `taskset`, nothing is
//! pinned and the report says so.

use crate::Row;
use crate::harness::{pct, sorted};
use anyhow::Context;
use interlock_proto::{diskerase, v1};
use interlock_tests::daemon::{Daemon, DaemonSpec};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub struct Params {
    pub seconds: u64,
    pub runs: usize,
}

type Wf = diskerase::workflow_client::WorkflowClient<Channel>;

/// The request of the comparison: a token-bucket pre-check block, then two
/// disk erases (what the ancestor's sample submits, trimmed).
fn request() -> v1::WorkReq {
    use interlock_tests::req::{block, job, work};
    work(
        "compare",
        vec![
            block(
                1,
                vec![job(
                    "tokenBucket",
                    &[("bucket", "diskEraseSatellite"), ("fatal", "true")],
                )],
            ),
            block(
                2,
                vec![
                    job("diskErase", &[("machine", "aab00"), ("site", "aab")]),
                    job("diskErase", &[("machine", "aab01"), ("site", "aab")]),
                ],
            ),
        ],
    )
}

/// The no-op server (run as `interlock-bench --serve-noop`): Submit, Exec
/// and Status answer at once without doing anything.
#[derive(Clone, Default)]
pub struct Noop;

#[tonic::async_trait]
impl diskerase::workflow_server::Workflow for Noop {
    async fn submit(
        &self,
        _: tonic::Request<v1::WorkReq>,
    ) -> Result<tonic::Response<v1::WorkResp>, tonic::Status> {
        Ok(tonic::Response::new(v1::WorkResp {
            id: "0190a000-0000-7000-8000-000000000000".into(),
        }))
    }
    async fn exec(
        &self,
        _: tonic::Request<v1::ExecReq>,
    ) -> Result<tonic::Response<v1::ExecResp>, tonic::Status> {
        Ok(tonic::Response::new(v1::ExecResp {}))
    }
    async fn status(
        &self,
        _: tonic::Request<v1::StatusReq>,
    ) -> Result<tonic::Response<v1::StatusResp>, tonic::Status> {
        Ok(tonic::Response::new(v1::StatusResp::default()))
    }
}

/// Serves [`Noop`] on 127.0.0.1:0 and prints the address; runs until killed.
pub async fn serve_noop() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("noop listening on {}", listener.local_addr()?);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .add_service(diskerase::workflow_server::WorkflowServer::new(Noop))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

/// Before the servers are started: confines this process to core 0, so
/// the children it starts next inherit core 0 from their first
/// instruction. False (nothing pinned) without two cores or `taskset`.
pub(crate) fn confine_children() -> bool {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores >= 2 && pin(std::process::id(), 0)
}

/// After the servers are started: this process, the load driver, moves to
/// core 1.
pub(crate) fn drive_from_core_1() -> bool {
    pin(std::process::id(), 1)
}

/// Pins every thread of `pid` to `cpu`; false when that is not possible.
pub(crate) fn pin(pid: u32, cpu: usize) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct NoopChild(Child);

impl Drop for NoopChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_noop() -> anyhow::Result<(NoopChild, String)> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve-noop")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("noop listening on ")
        .with_context(|| format!("no-op server said {line:?}"))?
        .to_string();
    Ok((NoopChild(child), addr))
}

fn start_interlockd(bin: &Path, dir: &Path) -> anyhow::Result<Daemon> {
    start_interlockd_with(bin, dir, &[])
}

/// [`start_interlockd`] with further flags.
pub(crate) fn start_interlockd_with(
    bin: &Path,
    dir: &Path,
    extra: &[String],
) -> anyhow::Result<Daemon> {
    let configs = dir.join("configs");
    std::fs::create_dir_all(&configs)?;
    std::fs::copy(
        crate::harness::repo().join("configs/buckets.json"),
        configs.join("buckets.json"),
    )?;
    // The three policy kinds, so Submit pays for each.
    std::fs::write(
        configs.join("policies.json"),
        r#"[{"Name": "compare", "Policies": [
            {"Name": "restrictJobTypes", "Settings": {"AllowedJobs": ["tokenBucket", "diskErase"]}},
            {"Name": "sameArgs", "Settings": {"Jobs": {"diskErase": ["site"]}}},
            {"Name": "startOrEnd", "Settings": {"JobName": "tokenBucket", "Start": true}}
        ]}]"#,
    )?;
    std::fs::write(
        configs.join("es.json"),
        r#"[{"Name": "compare", "Status": "go"}]"#,
    )?;
    let mut spec = DaemonSpec::new(&bin.display().to_string(), dir)
        .args(["--max-in-flight", "100000"])
        .args(extra.iter().cloned());
    // As shipped: interlockd logs at info unless told otherwise.
    spec.log = "info".into();
    spec.spawn()
        .map_err(|e| anyhow::anyhow!("interlockd did not start: {e:?}"))
}

/// Submits on `conc` connections for `seconds`; OK latencies in ms and the
/// error count.
pub(crate) async fn load(addr: &str, conc: usize, seconds: u64) -> anyhow::Result<(Vec<f64>, u64)> {
    let mut clients = Vec::new();
    for _ in 0..conc {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await?;
        clients.push(Wf::new(ch));
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let req = request();
    crate::harness::load_until(clients, deadline, move |mut c: Wf| {
        let req = req.clone();
        async move { c.submit(req).await.is_ok() }
    })
    .await
}

pub async fn compare(bin: &Path, p: Params) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let confined = confine_children();
    let (noop, noop_addr) = start_noop()?;
    let daemon = start_interlockd(bin, dir.path())?;
    let pinned = confined && pin(noop.0.id(), 0) && pin(daemon.pid(), 0) && drive_from_core_1();
    eprintln!(
        "{}",
        if pinned {
            "servers pinned to core 0, the load driver to core 1"
        } else {
            "not pinned (fewer than two cores, or no taskset)"
        }
    );
    let mut rows = Vec::new();
    for conc in [1usize, 8, 32] {
        // (rate, p50, p99, errors) per run, per server.
        let mut runs: BTreeMap<&str, Vec<(f64, f64, f64, u64)>> = BTreeMap::new();
        for _ in 0..p.runs {
            for (name, addr) in [
                ("noop", noop_addr.as_str()),
                ("interlockd", daemon.addr.as_str()),
            ] {
                let (lat, errors) = load(addr, conc, p.seconds).await?;
                let rate = lat.len() as f64 / p.seconds as f64;
                let lat = sorted(lat);
                runs.entry(name).or_default().push((
                    rate,
                    pct(&lat, 50.0),
                    pct(&lat, 99.0),
                    errors,
                ));
            }
            if conc == 1 {
                let disk = disk_commits(dir.path(), p.seconds).await?;
                runs.entry("disk").or_default().push(disk);
            }
        }
        let median = |name: &str, f: fn(&(f64, f64, f64, u64)) -> f64| {
            pct(&sorted(runs[name].iter().map(f).collect()), 50.0)
        };
        let (nr, ir) = (median("noop", |r| r.0), median("interlockd", |r| r.0));
        let errors: u64 = runs.values().flatten().map(|r| r.3).sum();
        rows.push(Row {
            scenario: format!(
                "compare c={conc}{}: interlockd / no-op tonic server, Submit (ancestor protocol)",
                if pinned { ", pinned" } else { ", not pinned" }
            ),
            result: format!(
                "{:.2}× — interlockd {ir:.0}/s (p50 {:.2} ms, p99 {:.2} ms), no-op {nr:.0}/s (p50 {:.2} ms, p99 {:.2} ms); median of {} runs of {} s; {errors} errors",
                ir / nr,
                median("interlockd", |r| r.1),
                median("interlockd", |r| r.2),
                median("noop", |r| r.1),
                median("noop", |r| r.2),
                p.runs,
                p.seconds
            ),
            target: "≥ 0.5× at c=8 and c=32".into(),
            values: BTreeMap::from([
                ("ratio".into(), ir / nr),
                ("interlockd_per_s".into(), ir),
                ("noop_per_s".into(), nr),
                ("interlockd_p99_ms".into(), median("interlockd", |r| r.2)),
            ]),
        });
        if conc == 1 {
            let disk = Disk {
                interlockd_per_s: ir,
                noop_p50_ms: median("noop", |r| r.1),
                per_s: median("disk", |r| r.0),
                p50_ms: median("disk", |r| r.1),
            };
            rows.push(disk.row(pinned, &p));
        }
    }
    drop(daemon);
    Ok(rows)
}

/// Commits of one small row each, one after another, with interlockd's
/// durability settings (WAL, `synchronous=FULL`) in a database beside
/// interlockd's: the disk's own bound on durable commits at c=1. Returns
/// (commits/s, p50 ms, p99 ms, 0).
async fn disk_commits(dir: &Path, seconds: u64) -> anyhow::Result<(f64, f64, f64, u64)> {
    let path = dir.join("disk-commits.db");
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")?;
        let mut lat = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < deadline {
            let t = Instant::now();
            conn.execute("INSERT INTO t (v) VALUES ('one row')", [])?;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let rate = lat.len() as f64 / seconds as f64;
        let lat = sorted(lat);
        Ok((rate, pct(&lat, 50.0), pct(&lat, 99.0), 0))
    })
    .await?
}

/// The c=1 medians that the disk's row compares.
struct Disk {
    interlockd_per_s: f64,
    noop_p50_ms: f64,
    per_s: f64,
    p50_ms: f64,
}

impl Disk {
    /// interlockd at c=1 against the disk's one-row commit rate. A Submit
    /// is answered only after its commit, and at c=1 the next one is sent
    /// only after that answer, so the row also prints the bound of doing
    /// the two in sequence: 1 / (the no-op server's round trip + one
    /// commit), by the p50s.
    fn row(&self, pinned: bool, p: &Params) -> Row {
        let (ir, dr, dp50) = (self.interlockd_per_s, self.per_s, self.p50_ms);
        let bound = 1e3 / (self.noop_p50_ms + dp50);
        Row {
            scenario: format!(
                "compare c=1{}: interlockd / the disk's one-row durable commits (WAL, synchronous=FULL)",
                if pinned { ", pinned" } else { ", not pinned" }
            ),
            result: format!(
                "{:.2}× — interlockd {ir:.0}/s, one-row commits {dr:.0}/s (p50 {dp50:.3} ms); a round trip then a commit, in sequence: at most {bound:.0}/s ({:.2}×); median of {} runs of {} s",
                ir / dr,
                bound / dr,
                p.runs,
                p.seconds
            ),
            target: "≥ 0.9×".into(),
            values: BTreeMap::from([
                ("ratio".into(), ir / dr),
                ("disk_per_s".into(), dr),
                ("sequential_bound_per_s".into(), bound),
            ]),
        }
    }
}
