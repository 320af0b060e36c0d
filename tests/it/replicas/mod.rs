//! Several `interlockd` replicas on one PostgreSQL database, each a child
//! process on a 127.0.0.1 port, sharing configs and the simulated erase
//! target (whose append-only log is the ground truth of what was erased).
//! One database per test, dropped afterwards; without PostgreSQL the tests
//! skip with one line, except under `CI=true`.

mod chaos;
mod lease;
mod outage;
mod schedules;
mod shared;
mod workers;

use interlock_client::{Client, Transport};
use interlock_jobs::{EraseTarget, erase_target::Event};
use interlock_proto::v1;
use interlock_store_postgres::testing::TestDb;
use interlock_tests::daemon::{Daemon, DaemonSpec};
use interlock_tests::proxy::Proxy;
use interlock_tests::{append_entry, interlockd};
use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

type Ctl = v1::control_client::ControlClient<Transport>;

/// The workflow names every cluster's policies and es.json admit.
const NAMES: [&str; 5] = ["rep", "rep-stop", "rep-drain", "rep-takes", "rep-slow"];

/// A running replica and a client for it.
struct Replica {
    daemon: Daemon,
    client: Client,
    ctl: Ctl,
    /// Its instance id (as `run_by` and `interlock cluster` show it).
    id: String,
}

impl Replica {
    async fn start(spec: &DaemonSpec) -> Self {
        let daemon = spec
            .spawn()
            .unwrap_or_else(|e| panic!("replica starts: {e:?}"));
        let client = daemon.client().await;
        let transport = interlock_client::transport(
            &daemon.addr,
            &interlock_client::Options {
                call_timeout: Duration::from_secs(5),
                ..Default::default()
            },
        )
        .await
        .expect("control connection");
        let mut ctl = Ctl::new(transport);
        let id = ctl
            .cluster(v1::ClusterReq {})
            .await
            .expect("Cluster answers")
            .into_inner()
            .this_instance;
        Self {
            daemon,
            client,
            ctl,
            id,
        }
    }

    async fn health(&self) -> Option<i32> {
        let ch = tonic::transport::Channel::from_shared(self.daemon.url())
            .ok()?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .ok()?;
        let r = tonic_health::pb::health_client::HealthClient::new(ch)
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()?;
        Some(r.into_inner().status)
    }
}

const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
const NOT_SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

/// Replicas sharing one database and one directory of files.
struct Cluster {
    // Declared first: replicas die before their database is dropped.
    replicas: Vec<Option<Replica>>,
    spec: DaemonSpec,
    proxy: Option<Proxy>,
    /// Replicas stopped with SIGSTOP: they would not answer.
    paused: std::sync::Mutex<std::collections::HashSet<usize>>,
    dir: tempfile::TempDir,
    _db: TestDb,
}

struct Setup {
    replicas: usize,
    /// Short by default, so takeovers happen within a test's patience.
    lease_ttl: &'static str,
    erase: &'static str,
    /// Put a cuttable proxy between the replicas and PostgreSQL.
    proxy: bool,
    buckets: Vec<serde_json::Value>,
    /// The content of limits.json, if any.
    limits: Option<&'static str>,
    /// The content of jobs.json, if any.
    jobs: Option<&'static str>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            replicas: 3,
            lease_ttl: "1s",
            erase: "150ms",
            proxy: false,
            buckets: Vec::new(),
            limits: None,
            jobs: None,
        }
    }
}

impl Setup {
    /// For tests whose point is which replica does *not* run a workflow:
    /// a ttl that a loaded machine's late heartbeat does not outlive, so
    /// the owner stays the owner (a 1 s lease can lawfully move under CI
    /// load, and the test would then be about a takeover).
    fn steady() -> Self {
        Self {
            lease_ttl: "10s",
            ..Self::default()
        }
    }
}

impl Cluster {
    /// `None` (after one line) when no PostgreSQL answers outside CI.
    async fn start(setup: Setup) -> Option<Self> {
        let db = TestDb::create().await?;
        let dir = tempfile::tempdir().unwrap();
        let mut spec = DaemonSpec::new(interlockd!(), dir.path()).args([
            "--lease-ttl",
            setup.lease_ttl,
            "--erase-duration",
            setup.erase,
            "--drain",
            "100ms",
        ]);
        let configs = dir.path().join("configs");
        for name in NAMES {
            append_entry(
                &configs.join("policies.json"),
                serde_json::json!({"Name": name, "Policies": []}),
            );
            append_entry(
                &configs.join("es.json"),
                serde_json::json!({"Name": name, "Status": "go"}),
            );
        }
        for b in setup.buckets {
            append_entry(&configs.join("buckets.json"), b);
        }
        if let Some(l) = setup.limits {
            std::fs::write(configs.join("limits.json"), l).unwrap();
        }
        if let Some(j) = setup.jobs {
            std::fs::write(configs.join("jobs.json"), j).unwrap();
        }
        let proxy = setup.proxy.then(|| Proxy::start(upstream(&db.url)));
        spec.db = match &proxy {
            Some(p) => p.url_for(&db.url),
            None => db.url.clone(),
        };
        let mut c = Self {
            replicas: Vec::new(),
            spec,
            proxy,
            paused: Default::default(),
            dir,
            _db: db,
        };
        for _ in 0..setup.replicas {
            let r = Replica::start(&c.spec).await;
            c.replicas.push(Some(r));
        }
        Some(c)
    }

    fn r(&self, i: usize) -> &Replica {
        self.replicas[i].as_ref().expect("replica running")
    }

    /// The replicas running and not paused.
    fn live(&self) -> impl Iterator<Item = (usize, &Replica)> {
        let paused = self.paused.lock().unwrap().clone();
        self.replicas
            .iter()
            .enumerate()
            .filter(move |(i, _)| !paused.contains(i))
            .filter_map(|(i, r)| r.as_ref().map(|r| (i, r)))
    }

    /// SIGSTOP replica `i` (a long GC pause, a frozen VM).
    fn pause(&self, i: usize) {
        self.r(i).daemon.signal("STOP");
        self.paused.lock().unwrap().insert(i);
    }

    /// SIGCONT replica `i`.
    fn wake(&self, i: usize) {
        self.r(i).daemon.signal("CONT");
        self.paused.lock().unwrap().remove(&i);
    }

    /// SIGKILL replica `i`.
    fn kill(&mut self, i: usize) {
        if let Some(mut r) = self.replicas[i].take() {
            r.daemon.kill();
        }
    }

    async fn restart(&mut self, i: usize) {
        self.kill(i);
        self.replicas[i] = Some(Replica::start(&self.spec).await);
    }

    /// Every event the erase target recorded, in order.
    fn erase_events(&self) -> Vec<Event> {
        EraseTarget::events(&self.dir.path().join("var/erase-target.log"))
    }

    /// Status through the first replica that answers.
    async fn status(&self, id: &str) -> v1::StatusResp {
        let mut last = None;
        for (_, r) in self.live() {
            match r.client.status(id).await {
                Ok(s) => return s,
                Err(e) => last = Some(e),
            }
        }
        panic!("no replica answers Status for {id}: {last:?}");
    }

    /// Polls Status until `done` holds; panics with the last status after
    /// `limit`.
    async fn wait_for(
        &self,
        id: &str,
        limit: Duration,
        what: &str,
        done: impl Fn(&v1::StatusResp) -> bool,
    ) -> v1::StatusResp {
        let deadline = Instant::now() + limit;
        loop {
            let st = self.status(id).await;
            if done(&st) {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "{id}: not {what} within {limit:?}; last status {} ({}), run by {:?}",
                st.status,
                st.reason,
                st.run_by
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_final(&self, id: &str, limit: Duration) -> v1::StatusResp {
        self.wait_for(id, limit, "final", |s| interlock_client::is_final(s.status))
            .await
    }
}

/// `host:port` of a postgres URL, resolved.
fn upstream(url: &str) -> std::net::SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let auth = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:5432")
    };
    host.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("cannot resolve {host}"))
}

/// Per job (workflow, block, job): how many erases it started, finished
/// and aborted at the target.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Erases {
    starts: usize,
    dones: usize,
    aborts: usize,
}

fn erases_per_job(events: &[Event]) -> HashMap<(String, usize, usize), Erases> {
    let mut per_job: HashMap<_, Erases> = HashMap::new();
    for e in events {
        let p = per_job
            .entry((e.workflow.clone(), e.block, e.job))
            .or_default();
        match e.event.as_str() {
            "start" => p.starts += 1,
            "done" => p.dones += 1,
            "abort" => p.aborts += 1,
            other => panic!("unknown erase event {other}"),
        }
    }
    per_job
}

/// Every erase of every job started at most once and finished at most once.
fn assert_no_double_erase(events: &[Event], context: &str) {
    for (job, e) in erases_per_job(events) {
        assert!(
            e.starts <= 1 && e.dones <= 1,
            "{context}: job {job:?} started {} erases and finished {}",
            e.starts,
            e.dones
        );
    }
}

fn erase(machine: &str, site: &str) -> v1::Job {
    interlock_tests::req::job("diskErase", &[("machine", machine), ("site", site)])
}

fn sleep(seconds: f64) -> v1::Job {
    interlock_tests::req::job("sleep", &[("seconds", &seconds.to_string())])
}
