//! The server under benchmark and what every scenario shares: a server
//! started in-process on 127.0.0.1:0 with its own temporary files and the
//! default durable SQLite store, a client, a job that holds until
//! cancelled, request builders and percentiles.

use anyhow::bail;
use interlock_client::{Client, Options};
use interlock_core::{ArgSpec, Idempotency, JobSchema};
use interlock_engine::{Job, JobCtx, JobError, Outputs};
use interlock_proto::v1;
use interlock_server::{Config, Running, ServerBuilder};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A job that waits until cancelled and records when it noticed.
#[derive(Default)]
pub struct Hold {
    pub running: std::sync::atomic::AtomicUsize,
    pub noticed: Mutex<Vec<Instant>>,
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
    async fn run(&self, ctx: &JobCtx, _: &interlock_core::Args) -> Result<Outputs, JobError> {
        self.running
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ctx.cancel.cancelled().await;
        self.noticed.lock().unwrap().push(Instant::now());
        self.running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        Err(JobError::cancelled())
    }
}

pub struct Bench {
    _dir: tempfile::TempDir,
    pub configs: PathBuf,
    pub running: Option<Running>,
    pub client: Client,
    /// How `client` connects, for other services' clients.
    pub addr: String,
    pub opts: Options,
    pub hold: Arc<Hold>,
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub const ES_GO: &str =
    r#"[{"Name": "SatelliteDiskErase", "Status": "go"}, {"Name": "bench", "Status": "go"}]"#;
pub const ES_STOP: &str = r#"[{"Name": "SatelliteDiskErase", "Status": "go"}, {"Name": "bench", "Status": "stop", "Reason": "benchmark flip"}]"#;

pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("bench-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

impl Bench {
    pub async fn start(
        sync: interlock_server::config::SyncMode,
        secure: bool,
    ) -> anyhow::Result<Self> {
        Self::start_with(sync, secure, |_| {}).await
    }

    /// Like `start`, after `tweak` adjusted the server's config.
    pub async fn start_with(
        sync: interlock_server::config::SyncMode,
        secure: bool,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
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
            http_listen: None,
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
        tweak(&mut config);
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

/// An interlockd child in a fresh directory `dir` whose policies and
/// e-stop let `bench` run, admitting far more calls at once than a
/// benchmark makes.
pub fn daemon_spec(bin: &Path, dir: &Path) -> interlock_tests::daemon::DaemonSpec {
    let spec = interlock_tests::daemon::DaemonSpec::new(&bin.display().to_string(), dir).args([
        "--max-in-flight",
        "100000",
        "--drain",
        "100ms",
    ]);
    let configs = dir.join("configs");
    interlock_tests::append_entry(
        &configs.join("policies.json"),
        serde_json::json!({"Name": "bench", "Policies": []}),
    );
    interlock_tests::append_entry(
        &configs.join("es.json"),
        serde_json::json!({"Name": "bench", "Status": "go"}),
    );
    spec
}

pub fn sleep_job() -> v1::Job {
    v1::Job {
        name: "sleep".into(),
        args: [("seconds".to_string(), "0".to_string())].into(),
        ..Default::default()
    }
}

pub fn work(blocks: Vec<v1::Block>) -> v1::WorkReq {
    v1::WorkReq {
        name: "bench".into(),
        blocks,
        ..Default::default()
    }
}

pub fn block(rate_limit: i32, jobs: Vec<v1::Job>) -> v1::Block {
    v1::Block {
        rate_limit,
        jobs,
        ..Default::default()
    }
}

pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// This process's resident memory in MB.
pub fn rss_mb() -> f64 {
    proc_mb(std::process::id(), "VmRSS:")
}

/// A memory field of `/proc/<pid>/status` in MB (`VmRSS:`, `VmHWM:`).
pub fn proc_mb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU seconds (user and system) spent so far by process `pid`, every
/// thread it ran included, from `/proc/<pid>/stat` (ticks of 1/100 s,
/// USER_HZ on Linux); `None` where it cannot tell.
pub fn process_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command's closing parenthesis: utime and stime
    // are the 12th and 13th of them.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let ticks = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU seconds (user and system) spent so far by the threads of `pid`
/// named `name` (`comm`), from `/proc`; `None` where it cannot tell. The
/// kernel counts them in ticks of 1/100 s (USER_HZ) on Linux.
pub fn thread_cpu_s(pid: u32, name: &str) -> Option<f64> {
    let mut ticks = 0u64;
    let mut found = false;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let dir = task.ok()?.path();
        if std::fs::read_to_string(dir.join("comm")).ok()?.trim_end() != name {
            continue;
        }
        // The fields after the command's closing parenthesis: utime and
        // stime are the 12th and 13th of them.
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
        ticks += fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
        found = true;
    }
    found.then(|| ticks as f64 / 100.0)
}

/// Calls `call` in a loop on each client until `deadline`, concurrently;
/// returns the latency in ms of every call that answered `true`, and how
/// many answered `false`. One loop for every load in the bench.
pub async fn load_until<C, F, Fut>(
    clients: Vec<C>,
    deadline: Instant,
    call: F,
) -> anyhow::Result<(Vec<f64>, u64)>
where
    C: Clone + Send + 'static,
    F: Fn(C) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let mut tasks = Vec::new();
    for c in clients {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                if call(c.clone()).await {
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                } else {
                    errors += 1;
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
    Ok((lat, errors))
}

/// Submits `req` in a loop on each client until `deadline` (see
/// [`load_until`]).
pub async fn submit_until(
    clients: Vec<v1::workflow_client::WorkflowClient<interlock_client::Transport>>,
    req: &v1::WorkReq,
    deadline: Instant,
) -> anyhow::Result<(Vec<f64>, u64)> {
    let req = req.clone();
    load_until(clients, deadline, move |mut c| {
        let req = req.clone();
        async move { c.submit(req).await.is_ok() }
    })
    .await
}

/// The row of a Submit load run: rate, p50 and p99 of the OK replies'
/// latencies (ms), and the error count.
pub fn submit_row(
    scenario: String,
    target: String,
    lat: Vec<f64>,
    errors: u64,
    seconds: u64,
) -> crate::Row {
    let rate = lat.len() as f64 / seconds as f64;
    let lat = sorted(lat);
    let (p50, p99) = (pct(&lat, 50.0), pct(&lat, 99.0));
    crate::Row {
        scenario,
        result: format!("{rate:.0} accepted/s, p50 {p50:.2} ms, p99 {p99:.2} ms, {errors} errors"),
        target,
        values: BTreeMap::from([
            ("accepted_per_s".into(), rate),
            ("p50_ms".into(), p50),
            ("p99_ms".into(), p99),
            ("errors".into(), errors as f64),
        ]),
    }
}

/// Polls List until no workflow is Running (not just the last one
/// submitted: a stop reaches them in no particular order).
pub async fn until_none_runs(c: &Client) -> anyhow::Result<()> {
    let mut raw = c.raw();
    loop {
        let running = raw
            .list(v1::ListReq {
                statuses: vec![v1::Status::Running as i32],
                page_size: 1,
                ..Default::default()
            })
            .await?
            .into_inner();
        if running.workflows.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Submits and starts `n` copies of `req`, one after another; their ids.
pub async fn submit_and_exec(
    c: &Client,
    req: &v1::WorkReq,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let id = c.submit(req.clone()).await?;
        c.exec(&id).await?;
        ids.push(id);
    }
    Ok(ids)
}
