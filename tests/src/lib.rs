//! Shared harness for the black-box tests.
//!
//! [`TestServer`] runs the real server in-process on `127.0.0.1:0` with its
//! own temporary database and config directory (a copy of the shipped
//! `configs/`), and can restart on the same files. [`Probe`] is a job that
//! records how many of its kind run at once, so tests can measure rate limits.
#![forbid(unsafe_code)]

use async_trait::async_trait;
use interlock_client::{Client, Options};
use interlock_core::{ArgFormat, ArgSpec, Idempotency, JobSchema};
use interlock_engine::job::sleep_or_cancel;
use interlock_engine::{Job, JobCtx, JobError, Outputs};
use interlock_proto::v1;
use interlock_server::server::StartError;
use interlock_server::{Config, Running, ServerBuilder};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod browser;
pub mod daemon;
pub mod pki;
pub mod proxy;

/// The ancestor's generated client (from `tests/proto/ancestor_diskerase.proto`).
pub mod ancestor {
    tonic::include_proto!("diskerase");
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A server under test with its own files.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub probe: Arc<Probe>,
    /// Like `probe`, but declared not safe to re-run and not reconcilable.
    pub unsafe_probe: Arc<Probe>,
    /// The engine's clock (the system clock unless pinned).
    pub clock: Arc<dyn interlock_core::Clock>,
    running: Option<Running>,
}

impl TestServer {
    /// Starts a server with the shipped configs and a 50 ms disk erase.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `tweak` adjusted its config (and, through
    /// `config.configs`, its config files).
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_clock(interlock_core::clock::system(), tweak).await
    }

    /// Like `start_with`, with the engine reading `clock` (a
    /// `ManualClock` pins time for tests of ages, expiries and buckets).
    pub async fn start_with_clock(
        clock: Arc<dyn interlock_core::Clock>,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let configs = dir.path().join("configs");
        std::fs::create_dir_all(&configs).unwrap();
        copy_dir(&repo().join("configs"), &configs);
        admit_x(&configs);
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            db: dir.path().join("var/interlock.db"),
            configs,
            data: repo().join("data"),
            erase_duration: Duration::from_millis(50),
            drain: Duration::from_millis(200),
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
            http_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Config::default()
        };
        tweak(&mut config);
        let mut s = Self {
            dir,
            config,
            probe: Arc::new(Probe::new("probe", Idempotency::Safe)),
            unsafe_probe: Arc::new(Probe::new("unsafeProbe", Idempotency::Unsafe)),
            clock,
            running: None,
        };
        s.boot().await;
        s
    }

    async fn boot(&mut self) {
        // A restart reuses the last port, which another test's socket may
        // have taken meanwhile (as an ephemeral port): wait for it a while.
        // A start that lost that race lets go of the database soon after.
        let mut tries = 0;
        let running = loop {
            let started = ServerBuilder::new(self.config.clone())
                .job(self.probe.clone())
                .job(self.unsafe_probe.clone())
                .clock(self.clock.clone())
                .start()
                .await;
            match started {
                Err(e)
                    if self.config.listen.port() != 0
                        && tries < 100
                        && (matches!(e, StartError::InUse(_))
                            || e.to_string().contains("Address already in use")) =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => break other.expect("server starts"),
            }
        };
        // Next boot reuses the same port so clients can reconnect.
        self.config.listen = running.addr;
        self.running = Some(running);
    }

    /// `http://addr` of the HTTP/JSON API.
    pub fn http_url(&self) -> String {
        let addr = self
            .running
            .as_ref()
            .and_then(|r| r.http_addr)
            .expect("the HTTP API is on");
        format!("http://{addr}")
    }

    /// The `/metrics` address.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.running
            .as_ref()
            .expect("running")
            .metrics_addr
            .expect("metrics enabled")
    }

    /// GET /metrics over plain HTTP/1.1. The recorder is process-wide, so
    /// counters include other tests' servers in the same binary.
    pub async fn scrape(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(self.metrics_addr())
            .await
            .unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        conn.read_to_string(&mut body).await.unwrap();
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        body
    }

    pub fn addr(&self) -> String {
        format!("http://{}", self.running.as_ref().expect("running").addr)
    }

    /// The bound socket address.
    pub fn socket(&self) -> std::net::SocketAddr {
        self.running.as_ref().expect("running").addr
    }

    /// A connection with `credentials`, over TLS when they hold a CA.
    pub async fn transport_with(
        &self,
        credentials: interlock_client::Credentials,
    ) -> Result<interlock_client::Transport, interlock_client::Error> {
        let opts = Options {
            max_attempts: 1,
            connect_timeout: Duration::from_secs(5),
            credentials,
            ..Options::default()
        };
        interlock_client::transport(&self.socket().to_string(), &opts).await
    }

    pub async fn client(&self) -> Client {
        Client::connect(
            &self.addr(),
            Options {
                max_attempts: 1,
                ..Options::default()
            },
        )
        .await
        .expect("connect")
    }

    /// Raw generated client: sees every error unretried.
    pub async fn raw(&self) -> v1::workflow_client::WorkflowClient<tonic::transport::Channel> {
        v1::workflow_client::WorkflowClient::connect(self.addr())
            .await
            .expect("connect")
    }

    /// A Watch of `id`, its first snapshot read: the server has subscribed,
    /// so every transition committed from now on is on the stream.
    pub async fn watch(&self, id: &str) -> tonic::Streaming<v1::WatchEvent> {
        let mut stream = self
            .raw()
            .await
            .watch(v1::WatchReq {
                id: id.into(),
                ..Default::default()
            })
            .await
            .expect("watch")
            .into_inner();
        stream.message().await.expect("watch").expect("snapshot");
        stream
    }

    /// A Control-service client.
    pub async fn control(&self) -> v1::control_client::ControlClient<tonic::transport::Channel> {
        v1::control_client::ControlClient::connect(self.addr())
            .await
            .expect("connect")
    }

    /// A client generated from the ancestor's proto.
    pub async fn ancestor(
        &self,
    ) -> ancestor::workflow_client::WorkflowClient<tonic::transport::Channel> {
        ancestor::workflow_client::WorkflowClient::connect(self.addr())
            .await
            .expect("connect")
    }

    /// The newest 1,000 audit entries.
    pub async fn audit_log(&self) -> Vec<v1::AuditEntry> {
        self.control()
            .await
            .audit(v1::AuditReq {
                limit: 1000,
                before_id: 0,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .entries
    }

    /// Stops the server (draining) and starts it again on the same files.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.boot().await;
    }

    /// Stops the server (draining); `boot` starts it again.
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.expect("clean shutdown");
        }
    }

    /// Starts the server again on the same files after `stop`.
    pub async fn boot_again(&mut self) {
        self.boot().await;
    }

    pub fn config_path(&self, file: &str) -> PathBuf {
        self.config.configs.join(file)
    }
}

/// Adds an entry to a JSON-array config file.
pub fn append_entry(path: &Path, entry: serde_json::Value) {
    let mut v: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v.push(entry);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Writes a config file atomically (temp file + rename), as careful tools do.
pub fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Polls `cond` every 5 ms until it holds; panics after 10 s.
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `msg` as a call carrying `token` as its bearer token.
pub fn bearer<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("a token is ASCII"),
    );
    r
}

/// Copies the files of `from` into `to`, subdirectories included.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Turns authentication on with `tokens` (name, token) in tokens.json and
/// `rbac` as rbac.json, in `c`'s config directory.
pub fn enable_auth(c: &mut Config, tokens: &[(&str, &str)], rbac: &str) {
    c.auth = true;
    let entries: Vec<_> = tokens
        .iter()
        .map(|(n, t)| serde_json::json!({"name": n, "sha256": interlock_auth::tokens::hash(t)}))
        .collect();
    write_config(
        &c.configs.join("tokens.json"),
        &serde_json::json!({ "tokens": entries }).to_string(),
    );
    write_config(&c.configs.join("rbac.json"), rbac);
}

/// Lets test workflows named "x" run under the configs in `configs`:
/// explicitly no policies, and go.
pub fn admit_x(configs: &Path) {
    append_entry(
        &configs.join("policies.json"),
        serde_json::json!({"Name": "x", "Policies": []}),
    );
    append_entry(
        &configs.join("es.json"),
        serde_json::json!({"Name": "x", "Status": "go"}),
    );
}

/// Submits a workflow "x" of one block holding `job`, executes it, and
/// waits for its end.
pub async fn run_one(s: &TestServer, job: v1::Job) -> v1::StatusResp {
    let c = s.client().await;
    let id = c
        .submit(req::work("x", vec![req::block(1, vec![job])]))
        .await
        .expect("submit");
    c.exec(&id).await.expect("exec");
    wait_final(&c, &id).await
}

/// Polls Status until the workflow is final; panics after 30 s.
pub async fn wait_final(c: &Client, id: &str) -> v1::StatusResp {
    let wait = c.wait(id, Duration::from_millis(10), |_| {});
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("workflow finishes within 30s")
        .expect("status")
}

/// A job for tests: `probe{ms, fail?, fatal?}` waits `ms` milliseconds
/// (cancellable), then succeeds or fails. Records concurrency and starts.
pub struct Probe {
    running: AtomicUsize,
    max: AtomicUsize,
    started: Mutex<Vec<(String, usize, usize)>>,
    cancelled: AtomicUsize,
    schema: JobSchema,
}

impl Probe {
    pub fn new(name: &'static str, idempotency: Idempotency) -> Self {
        Self {
            running: AtomicUsize::new(0),
            max: AtomicUsize::new(0),
            started: Mutex::new(Vec::new()),
            cancelled: AtomicUsize::new(0),
            schema: JobSchema {
                name,
                description: "test job",
                args: vec![
                    ArgSpec::required("ms", ArgFormat::Name, "milliseconds to wait"),
                    ArgSpec::optional("fail", ArgFormat::Bool, "fail after waiting"),
                    ArgSpec::optional("fatal", ArgFormat::Bool, "fail fatally"),
                ],
                idempotency,
                reconcilable: false,
            },
        }
    }

    /// Most probes seen running at once.
    pub fn max_concurrent(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    /// (workflow, block, job) of every start, in order.
    pub fn starts(&self) -> Vec<(String, usize, usize)> {
        self.started.lock().unwrap().clone()
    }

    pub fn starts_of(&self, workflow: &str) -> Vec<(usize, usize)> {
        self.starts()
            .into_iter()
            .filter(|s| s.0 == workflow)
            .map(|s| (s.1, s.2))
            .collect()
    }

    /// Probes that observed cancellation.
    pub fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Job for Probe {
    fn schema(&self) -> &JobSchema {
        &self.schema
    }

    async fn run(&self, ctx: &JobCtx, args: &interlock_core::Args) -> Result<Outputs, JobError> {
        self.started
            .lock()
            .unwrap()
            .push((ctx.workflow_id.clone(), ctx.block, ctx.job));
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        let ms: u64 = args["ms"]
            .parse()
            .map_err(|_| JobError::new("ms must be a number"))?;
        let r = sleep_or_cancel(Duration::from_millis(ms), &ctx.cancel).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if r.is_err() {
            self.cancelled.fetch_add(1, Ordering::SeqCst);
            return Err(JobError::cancelled());
        }
        let flag = |k: &str| args.get(k).is_some_and(|v| v == "true");
        if flag("fail") || flag("fatal") {
            return Err(JobError::new("probe failed as asked").fatal(flag("fatal")));
        }
        Ok(Outputs::from([("waitedMs".to_string(), ms.to_string())]))
    }
}

/// Builders for requests.
pub mod req {
    use super::v1;

    pub fn job(name: &str, args: &[(&str, &str)]) -> v1::Job {
        v1::Job {
            name: name.into(),
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    pub fn probe(ms: u64) -> v1::Job {
        job("probe", &[("ms", &ms.to_string())])
    }

    pub fn block(rate_limit: i32, jobs: Vec<v1::Job>) -> v1::Block {
        v1::Block {
            rate_limit,
            jobs,
            ..Default::default()
        }
    }

    pub fn work(name: &str, blocks: Vec<v1::Block>) -> v1::WorkReq {
        v1::WorkReq {
            name: name.into(),
            blocks,
            ..Default::default()
        }
    }

    /// The request the diskerase sample builds for `site`.
    pub fn satellite_erase(site: &str, machines: &[&str]) -> v1::WorkReq {
        let mut blocks = vec![block(
            1,
            vec![
                job("validateDecom", &[("site", site), ("type", "satellite")]),
                job(
                    "tokenBucket",
                    &[("bucket", "diskEraseSatellite"), ("fatal", "true")],
                ),
            ],
        )];
        for chunk in machines.chunks(5) {
            if blocks.len() > 1 {
                blocks.push(block(1, vec![job("sleep", &[("seconds", "0")])]));
            }
            blocks.push(block(
                5,
                chunk
                    .iter()
                    .map(|m| job("diskErase", &[("machine", m), ("site", site)]))
                    .collect(),
            ));
        }
        work("SatelliteDiskErase", blocks)
    }
}

/// The most job attempts of `all` whose recorded [started, ended)
/// intervals overlap: how many ran at once, at most.
pub fn max_overlap(all: &[v1::StatusResp]) -> usize {
    let mut edges = Vec::new();
    for st in all {
        for j in st.blocks.iter().flat_map(|b| &b.jobs) {
            for a in &j.attempts {
                let t = |ts: &Option<interlock_proto::pbjson_types::Timestamp>| {
                    let ts = ts.as_ref().expect("attempt times are recorded");
                    i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos)
                };
                // Ends sort before starts at the same instant.
                edges.push((t(&a.started), 1i32));
                edges.push((t(&a.ended), -1i32));
            }
        }
    }
    edges.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        max = max.max(now);
    }
    max as usize
}
