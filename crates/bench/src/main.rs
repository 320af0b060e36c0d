//! interlock-bench: runs benchmark scenarios against a real interlockd
//! (started in-process on 127.0.0.1:0 with its own temporary files and the
//! default durable SQLite store), prints a table, or JSON with `--json`.
//!
//! Every scenario is bounded in count and time and targets loopback only.

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use interlock_client::{Client, Options};
use interlock_core::{ArgSpec, Idempotency, JobSchema};
use interlock_engine::{Job, JobCtx, JobError, Outputs};
use interlock_proto::v1;
use interlock_server::{Config, Running, ServerBuilder};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

#[derive(Serialize)]
struct Row {
    scenario: String,
    result: String,
    target: String,
    values: BTreeMap<String, f64>,
}

/// A job that waits until cancelled and records when it noticed.
#[derive(Default)]
struct Hold {
    running: std::sync::atomic::AtomicUsize,
    noticed: Mutex<Vec<Instant>>,
    schema: std::sync::OnceLock<JobSchema>,
}

#[async_trait::async_trait]
impl Job for Hold {
    fn schema(&self) -> &JobSchema {
        self.schema.get_or_init(|| JobSchema {
            name: "hold",
            description: "benchmark: waits until cancelled",
            args: Vec::<ArgSpec>::new(),
            idempotency: Idempotency::Safe,
            reconcilable: false,
        })
    }
    async fn run(&self, ctx: &JobCtx, _: &BTreeMap<String, String>) -> Result<Outputs, JobError> {
        self.running
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ctx.cancel.cancelled().await;
        self.noticed.lock().unwrap().push(Instant::now());
        self.running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        Err(JobError::cancelled())
    }
}

struct Bench {
    _dir: tempfile::TempDir,
    configs: PathBuf,
    running: Option<Running>,
    client: Client,
    /// How `client` connects, for other services' clients.
    addr: String,
    opts: Options,
    hold: Arc<Hold>,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const ES_GO: &str =
    r#"[{"Name": "SatelliteDiskErase", "Status": "go"}, {"Name": "bench", "Status": "go"}]"#;
const ES_STOP: &str = r#"[{"Name": "SatelliteDiskErase", "Status": "go"}, {"Name": "bench", "Status": "stop", "Reason": "benchmark flip"}]"#;

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("bench-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

impl Bench {
    async fn start(sync: interlock_server::config::SyncMode, secure: bool) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let configs = dir.path().join("configs");
        std::fs::create_dir_all(&configs)?;
        std::fs::copy(
            repo().join("configs/buckets.json"),
            configs.join("buckets.json"),
        )?;
        // "bench" runs under all three policy kinds, so Submit pays for them.
        std::fs::write(
            configs.join("policies.json"),
            r#"[{"Name": "bench", "Policies": [
                {"Name": "restrictJobTypes", "Settings": {"AllowedJobs": ["sleep", "hold"]}},
                {"Name": "sameArgs", "Settings": {"Jobs": {"sleep": ["seconds"]}}},
                {"Name": "startOrEnd", "Settings": {"JobName": "sleep", "Start": true}}
            ]}]"#,
        )?;
        std::fs::write(configs.join("es.json"), ES_GO)?;
        let mut config = Config {
            listen: "127.0.0.1:0".parse()?,
            db: dir.path().join("var/interlock.db"),
            configs: configs.clone(),
            data: repo().join("data"),
            max_in_flight: 100_000,
            metrics_listen: None,
            sync,
            ..Config::default()
        };
        let mut opts = Options::default();
        if secure {
            let ca = interlock_tests::pki::Ca::new(dir.path(), "bench");
            let cert = ca.server(dir.path(), "server");
            let token = interlock_auth::tokens::mint();
            std::fs::write(
                configs.join("tokens.json"),
                serde_json::json!({"tokens": [{"name": "bench", "sha256": interlock_auth::tokens::hash(&token)}]})
                    .to_string(),
            )?;
            std::fs::write(
                configs.join("rbac.json"),
                r#"{"roles": {"bench": [{"actions": ["admin"], "workflows": ["*"]}]},
                    "bindings": [{"identity": "token:bench", "roles": ["bench"]}]}"#,
            )?;
            config.tls_cert = Some(cert.cert);
            config.tls_key = Some(cert.key);
            config.auth = true;
            opts.credentials = interlock_client::Credentials {
                ca_pem: Some(ca.pem.into_bytes()),
                token: Some(token),
                ..Default::default()
            };
        }
        let hold = Arc::new(Hold::default());
        let running = ServerBuilder::new(config)
            .job(hold.clone())
            .start()
            .await
            .map_err(anyhow::Error::msg)?;
        let addr = running.addr.to_string();
        let client = Client::connect(&addr, opts.clone()).await?;
        Ok(Self {
            _dir: dir,
            configs,
            running: Some(running),
            client,
            addr,
            opts,
            hold,
        })
    }
}

fn sleep_job() -> v1::Job {
    v1::Job {
        name: "sleep".into(),
        args: [("seconds".to_string(), "0".to_string())].into(),
        ..Default::default()
    }
}

fn work(blocks: Vec<v1::Block>) -> v1::WorkReq {
    v1::WorkReq {
        name: "bench".into(),
        blocks,
        ..Default::default()
    }
}

fn block(rate_limit: i32, jobs: Vec<v1::Job>) -> v1::Block {
    v1::Block {
        rate_limit,
        jobs,
        ..Default::default()
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

async fn submit(b: &Bench, seconds: u64) -> anyhow::Result<Vec<Row>> {
    let req = work(vec![
        block(1, vec![sleep_job()]),
        block(2, vec![sleep_job(), sleep_job()]),
        block(1, vec![sleep_job()]),
    ]);
    let mut rows = Vec::new();
    for conc in [1usize, 8, 32] {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for _ in 0..conc {
            let (c, req) = (b.client.raw(), req.clone());
            tasks.push(tokio::spawn(async move {
                let mut c = c;
                let (mut lat, mut errors) = (Vec::new(), 0u64);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match c.submit(req.clone()).await {
                        Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1e3),
                        Err(_) => errors += 1,
                    }
                }
                (lat, errors)
            }));
        }
        let (mut lat, mut errors) = (Vec::new(), 0);
        for t in tasks {
            let (l, e) = t.await?;
            lat.extend(l);
            errors += e;
        }
        let n = lat.len() as f64;
        let lat = sorted(lat);
        let rate = n / seconds as f64;
        let (p50, p99) = (pct(&lat, 50.0), pct(&lat, 99.0));
        rows.push(Row {
            scenario: format!("submit c={conc}"),
            result: format!(
                "{rate:.0} accepted/s, p50 {p50:.2} ms, p99 {p99:.2} ms, {errors} errors"
            ),
            target: if conc == 32 {
                "≥ 5,000/s, p99 < 20 ms, 0 errors".into()
            } else {
                String::new()
            },
            values: BTreeMap::from([
                ("accepted_per_s".into(), rate),
                ("p50_ms".into(), p50),
                ("p99_ms".into(), p99),
                ("errors".into(), errors as f64),
            ]),
        });
    }
    Ok(rows)
}

async fn transitions(b: &Bench) -> anyhow::Result<Vec<Row>> {
    let n = 10_000;
    let req = work(vec![block(n, (0..n).map(|_| sleep_job()).collect())]);
    let id = b.client.submit(req).await?;
    let t = Instant::now();
    b.client.exec(&id).await?;
    let st = b.client.wait(&id, Duration::from_millis(5), |_| {}).await?;
    let wall = t.elapsed().as_secs_f64();
    if st.status != v1::Status::Completed as i32 {
        bail!("transitions workflow ended {:?}: {}", st.status, st.reason);
    }
    let (s, e) = (st.started.context("started")?, st.ended.context("ended")?);
    let run = (e.seconds - s.seconds) as f64 + (e.nanos - s.nanos) as f64 / 1e9;
    // Each job: Running then Completed, each a durable commit.
    let per_s = 2.0 * n as f64 / run;
    Ok(vec![Row {
        scenario: "one block of 10,000 sleep-0 jobs, rate_limit 10,000".into(),
        result: format!(
            "{run:.3} s recorded start→end ({wall:.3} s with Exec and polling), {per_s:.0} durable job transitions/s"
        ),
        target: "< 0.5 s (≥ 20,000 transitions/s)".into(),
        values: BTreeMap::from([
            ("run_s".into(), run),
            ("wall_s".into(), wall),
            ("transitions_per_s".into(), per_s),
        ]),
    }])
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

async fn estop(b: &Bench, flips: usize, workflows: usize) -> anyhow::Result<Vec<Row>> {
    let es = b.configs.join("es.json");
    let mut ctl = v1::control_client::ControlClient::new(
        interlock_client::transport(&b.addr, &b.opts).await?,
    );
    let hold_req = work(vec![
        block(1, vec![sleep_job()]),
        block(
            1,
            vec![v1::Job {
                name: "hold".into(),
                ..Default::default()
            }],
        ),
    ]);
    let (mut per_flip, mut per_job) = (Vec::new(), Vec::new());
    for _ in 0..flips {
        b.hold.noticed.lock().unwrap().clear();
        let mut ids = Vec::new();
        for _ in 0..workflows {
            let id = b.client.submit(hold_req.clone()).await?;
            b.client.exec(&id).await?;
            ids.push(id);
        }
        let hold = b.hold.clone();
        wait_until("all holds running", || {
            hold.running.load(std::sync::atomic::Ordering::SeqCst) == workflows
        })
        .await?;
        write_atomically(&es, ES_STOP)?;
        let t0 = Instant::now();
        wait_until("all holds cancelled", || {
            hold.noticed.lock().unwrap().len() == workflows
        })
        .await?;
        let noticed = b.hold.noticed.lock().unwrap().clone();
        let lat: Vec<f64> = noticed
            .iter()
            .map(|t| t.duration_since(t0).as_secs_f64() * 1e3)
            .collect();
        per_flip.push(lat.iter().cloned().fold(0.0, f64::max));
        per_job.extend(lat);
        for id in &ids {
            let st = b.client.wait(id, Duration::from_millis(2), |_| {}).await?;
            if st.status != v1::Status::Stopped as i32 {
                bail!("workflow {id} ended {} instead of Stopped", st.status);
            }
        }
        write_atomically(&es, ES_GO)?;
        loop {
            let st = ctl
                .emergency_stop_state(v1::EmergencyStopStateReq {})
                .await?
                .into_inner();
            if st.entries.iter().any(|e| e.name == "bench" && !e.stop) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let (f, j) = (sorted(per_flip), sorted(per_job));
    let row = |name: &str, v: &[f64], target: &str| Row {
        scenario: name.into(),
        result: format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
            pct(v, 50.0),
            pct(v, 99.0),
            v.last().copied().unwrap_or(f64::NAN),
            v.len()
        ),
        target: target.into(),
        values: BTreeMap::from([
            ("p50_ms".into(), pct(v, 50.0)),
            ("p99_ms".into(), pct(v, 99.0)),
            ("max_ms".into(), v.last().copied().unwrap_or(f64::NAN)),
        ]),
    };
    Ok(vec![
        row(
            &format!(
                "e-stop: es.json write → all {workflows} running workflows' jobs cancelled (per flip)"
            ),
            &f,
            "p99 ≤ 50 ms",
        ),
        row(
            "e-stop: es.json write → one job cancelled (per job)",
            &j,
            "",
        ),
    ])
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn workflows(b: &Bench, count: usize) -> anyhow::Result<Vec<Row>> {
    let workers = 32;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let c = b.client.clone();
        let n = count / workers + usize::from(w < count % workers);
        tasks.push(tokio::spawn(async move {
            let req = work(vec![block(1, vec![sleep_job()])]);
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                let id = c.submit(req.clone()).await?;
                c.exec(&id).await?;
                ids.push(id);
            }
            for id in &ids {
                let st = c.wait(id, Duration::from_millis(2), |_| {}).await?;
                if st.status != v1::Status::Completed as i32 {
                    bail!("{id} ended {}", st.status);
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = t.elapsed().as_secs_f64();
    let rate = count as f64 / secs;
    Ok(vec![Row {
        scenario: format!(
            "Submit+Exec+completion of {count} one-job workflows (sleep 0), 32 clients"
        ),
        result: format!("{secs:.2} s, {rate:.0} workflows/s"),
        target: "≥ 2,000 workflows/s".into(),
        values: BTreeMap::from([("seconds".into(), secs), ("workflows_per_s".into(), rate)]),
    }])
}

async fn concurrent(b: &Bench, count: usize, seconds: u64) -> anyhow::Result<Vec<Row>> {
    let rss_before = rss_mb();
    let long = v1::Job {
        name: "sleep".into(),
        args: [("seconds".to_string(), "600".to_string())].into(),
        ..Default::default()
    };
    let req = work(vec![block(1, vec![long])]);
    let mut ids = Vec::with_capacity(count);
    let mut tasks = Vec::new();
    for w in 0..32 {
        let (c, req) = (b.client.clone(), req.clone());
        let n = count / 32 + usize::from(w < count % 32);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                let id = c.submit(req.clone()).await?;
                c.exec(&id).await?;
                ids.push(id);
            }
            anyhow::Ok(ids)
        }));
    }
    for t in tasks {
        ids.extend(t.await??);
    }
    // Every job recorded Running before measuring.
    let last = ids.last().context("no workflows")?.clone();
    loop {
        let st = b.client.status(&last).await?;
        if st.blocks[0].jobs[0].status == v1::Status::Running as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = rss_mb();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let ids = Arc::new(ids);
    let mut tasks = Vec::new();
    for w in 0..8usize {
        let (c, ids) = (b.client.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = w * 997;
            while Instant::now() < deadline {
                let t = Instant::now();
                c.status(&ids[i % ids.len()]).await?;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                i += 7919;
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let lat = sorted(lat);
    // End them all at once through the emergency stop.
    write_atomically(&b.configs.join("es.json"), ES_STOP)?;
    let t = Instant::now();
    loop {
        let st = b.client.status(&last).await?;
        if st.status == v1::Status::Stopped as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stop_s = t.elapsed().as_secs_f64();
    write_atomically(&b.configs.join("es.json"), ES_GO)?;
    Ok(vec![Row {
        scenario: format!("{count} concurrently running workflows (sleep jobs)"),
        result: format!(
            "RSS {rss:.0} MB (process, server and client; {rss_before:.0} MB before), Status p50 {:.2} ms, p99 {:.2} ms ({} calls, 8 clients); e-stop ended all in {stop_s:.2} s",
            pct(&lat, 50.0),
            pct(&lat, 99.0),
            lat.len()
        ),
        target: "< 300 MB RSS, Status p99 < 10 ms".into(),
        values: BTreeMap::from([
            ("rss_mb".into(), rss),
            ("status_p50_ms".into(), pct(&lat, 50.0)),
            ("status_p99_ms".into(), pct(&lat, 99.0)),
            ("estop_all_s".into(), stop_s),
        ]),
    }])
}

async fn reload(b: &Bench, rounds: usize) -> anyhow::Result<Vec<Row>> {
    let path = b.configs.join("policies.json");
    let original = std::fs::read_to_string(&path)?;
    let probe = work(vec![block(1, vec![sleep_job()])]);
    let tight = r#"[{"Name": "bench", "Policies": [{"Name": "restrictJobTypes", "Settings": {"AllowedJobs": ["hold"]}}]}]"#;
    let mut lat = Vec::new();
    for i in 0..rounds {
        let (text, want_ok) = if i % 2 == 0 {
            (tight, false)
        } else {
            (original.as_str(), true)
        };
        write_atomically(&path, text)?;
        let t = Instant::now();
        loop {
            if b.client.validate(probe.clone()).await?.ok == want_ok {
                break;
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!("policy change not in force after 10 s");
            }
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    write_atomically(&path, &original)?;
    let lat = sorted(lat);
    Ok(vec![Row {
        scenario: "policies.json write (temp + rename) → new policies in force (seen by Validate)"
            .into(),
        result: format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} changes)",
            pct(&lat, 50.0),
            pct(&lat, 99.0),
            lat.last().copied().unwrap_or(f64::NAN),
            lat.len()
        ),
        target: "≤ 100 ms".into(),
        values: BTreeMap::from([
            ("p50_ms".into(), pct(&lat, 50.0)),
            ("p99_ms".into(), pct(&lat, 99.0)),
        ]),
    }])
}

async fn list(b: &Bench, count: usize, seconds: u64) -> anyhow::Result<Vec<Row>> {
    let mut tasks = Vec::new();
    for w in 0..32usize {
        let c = b.client.raw();
        let n = count / 32 + usize::from(w < count % 32);
        tasks.push(tokio::spawn(async move {
            let mut c = c;
            for i in 0..n {
                let mut r = work(vec![block(1, vec![sleep_job()])]);
                r.labels
                    .insert("team".into(), format!("t{}", (w * n + i) % 100));
                c.submit(r).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut raw = b.client.raw();
    let mut rows = Vec::new();
    let queries: Vec<(&str, v1::ListReq)> = vec![
        (
            "newest 100",
            v1::ListReq {
                page_size: 100,
                ..Default::default()
            },
        ),
        (
            "by name, 100",
            v1::ListReq {
                name: "bench".into(),
                page_size: 100,
                ..Default::default()
            },
        ),
        (
            "by status NotStarted, 100",
            v1::ListReq {
                statuses: vec![v1::Status::NotStarted as i32],
                page_size: 100,
                ..Default::default()
            },
        ),
        (
            "by label (1% match), 100",
            v1::ListReq {
                labels: [("team".to_string(), "t7".to_string())].into(),
                page_size: 100,
                ..Default::default()
            },
        ),
    ];
    for (what, q) in queries {
        let deadline = Instant::now() + Duration::from_secs(seconds.min(2));
        let mut lat = Vec::new();
        let mut token = String::new();
        while Instant::now() < deadline {
            let mut q = q.clone();
            q.page_token = token.clone();
            let t = Instant::now();
            let page = raw.list(q).await?.into_inner();
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            if page.workflows.is_empty() {
                bail!("list {what} returned nothing");
            }
            token = page.next_page_token; // walk deeper pages too
        }
        let lat = sorted(lat);
        rows.push(Row {
            scenario: format!("List over {count} stored workflows: {what}"),
            result: format!(
                "p50 {:.2} ms, p99 {:.2} ms ({} pages)",
                pct(&lat, 50.0),
                pct(&lat, 99.0),
                lat.len()
            ),
            target: "fast (served from indexes)".into(),
            values: BTreeMap::from([
                ("p50_ms".into(), pct(&lat, 50.0)),
                ("p99_ms".into(), pct(&lat, 99.0)),
            ]),
        });
    }
    Ok(rows)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let all = cli.scenarios.contains(&Scenario::All);
    let want = |s| all || cli.scenarios.contains(&s);
    let mut rows = Vec::new();
    if want(Scenario::Submit) {
        let b = Bench::start(cli.sync, cli.secure).await?;
        rows.extend(submit(&b, cli.seconds).await?);
    }
    if want(Scenario::Transitions) {
        let b = Bench::start(cli.sync, cli.secure).await?;
        rows.extend(transitions(&b).await?);
    }
    if want(Scenario::Estop) {
        let b = Bench::start(cli.sync, cli.secure).await?;
        rows.extend(estop(&b, cli.flips, cli.workflows).await?);
        if let Some(r) = b.running {
            let _ = r.shutdown().await;
        }
    }
    if want(Scenario::Reload) {
        let b = Bench::start(cli.sync, cli.secure).await?;
        rows.extend(reload(&b, 50).await?);
    }
    if want(Scenario::Workflows) {
        let b = Bench::start(cli.sync, cli.secure).await?;
        rows.extend(workflows(&b, cli.count).await?);
    }
    if want(Scenario::Concurrent) {
        let b = Bench::start(cli.sync, cli.secure).await?;
        rows.extend(concurrent(&b, cli.count, cli.seconds).await?);
    }
    if cli.scenarios.contains(&Scenario::List) {
        let b = Bench::start(cli.sync, cli.secure).await?;
        rows.extend(list(&b, cli.count.max(100_000), cli.seconds).await?);
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
