//! Workers across replicas: a worker connected to one replica runs the
//! remote jobs of workflows another replica owns (through the store's task
//! board); a cancel reaches it wherever it is; the owner's death does not
//! stop it (the next owner takes the attempt over); when the replica it
//! is connected to dies, it re-attaches its tasks to another one, and a
//! worker that cannot is handled as a lost one.

use super::{Cluster, Setup};
use interlock_client::worker::{TaskCtx, TaskError, Worker};
use interlock_proto::v1::{self, Status};
use interlock_tests::req;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const JOBS: &str = r#"{"jobs": [
  {"name": "ping", "idempotency": "safe",
   "args": [{"name": "host", "required": true, "format": "name", "description": "a host"}]},
  {"name": "wipe", "idempotency": "unsafe"}
]}"#;

const LIMIT: Duration = Duration::from_secs(20);

async fn cluster(replicas: usize) -> Option<Cluster> {
    Cluster::start(Setup {
        replicas,
        jobs: Some(JOBS),
        ..Setup::default()
    })
    .await
}

/// Runs `w` until the returned token is cancelled.
fn spawn(w: Worker) -> CancellationToken {
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move { w.run(s).await });
    stop
}

/// A handler that counts its runs, logs, checkpoints, then waits for
/// `go` (or a cancel, which it counts in `cancelled`).
#[derive(Clone, Default)]
struct Gate {
    runs: Arc<AtomicUsize>,
    cancelled: Arc<AtomicUsize>,
    go: Arc<Notify>,
}

impl Gate {
    async fn handle(self, t: TaskCtx) -> Result<interlock_client::worker::Outputs, TaskError> {
        let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        t.log(format!("run {n} of {}", t.task.job_type));
        t.checkpoint(format!("started {n}"))
            .await
            .map_err(|e| TaskError::new(e.to_string()))?;
        tokio::select! {
            _ = self.go.notified() => {}
            _ = t.cancel.cancelled() => {
                self.cancelled.fetch_add(1, Ordering::SeqCst);
                return Err(TaskError::cancelled());
            }
        }
        // Its lease still holds, wherever the task went meanwhile.
        t.checkpoint(format!("finishing {n}"))
            .await
            .map_err(|e| TaskError::new(e.to_string()))?;
        Ok([("ran".to_string(), n.to_string())].into())
    }

    async fn runs_reach(&self, n: usize, what: &str) {
        reach(&self.runs, n, what).await;
    }
}

/// Waits (at most `LIMIT`) until `counter` reaches `n`.
async fn reach(counter: &AtomicUsize, n: usize, what: &str) {
    let deadline = Instant::now() + LIMIT;
    while counter.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "{what}: stayed below {n}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn worker(url: &str, name: &str, types: &[&str], gate: &Gate) -> Worker {
    let mut w = Worker::new(url, interlock_client::Options::default(), name).capacity(4);
    for t in types {
        let g = gate.clone();
        w = w.handle(t, move |t| g.clone().handle(t));
    }
    w
}

/// Submits and executes `jobs` (one block) on replica `on`.
async fn start(c: &Cluster, on: usize, jobs: Vec<v1::Job>) -> String {
    let r = c.r(on);
    let id = r
        .client
        .submit(req::work("rep", vec![req::block(4, jobs)]))
        .await
        .expect("submit");
    r.client.exec(&id).await.expect("exec");
    id
}

fn ping() -> v1::Job {
    req::job("ping", &[("host", "h1")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_on_one_replica_runs_and_is_cancelled_for_another() {
    let Some(c) = cluster(2).await else {
        return;
    };
    let gate = Gate::default();
    // The only worker is connected to replica 1; replica 0 runs the work.
    let stop = spawn(worker(&c.r(1).daemon.url(), "w-b", &["ping"], &gate));
    let id = start(&c, 0, vec![ping()]).await;
    gate.runs_reach(1, "the worker on replica 1 got the task")
        .await;
    let owner = c.r(0).id.clone();
    let st = c.status(&id).await;
    assert_eq!(st.run_by, owner, "replica 0 owns the workflow");
    gate.go.notify_one();
    let st = c.wait_final(&id, LIMIT).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    let job = &st.blocks[0].jobs[0];
    assert_eq!(job.outputs.get("ran").map(String::as_str), Some("1"));
    // Its log line, read through either replica.
    for r in [0, 1] {
        let lines = c
            .r(r)
            .client
            .raw()
            .logs(v1::LogsReq {
                id: id.clone(),
                ..Default::default()
            })
            .await
            .expect("Logs")
            .into_inner()
            .lines;
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["run 1 of ping"], "through replica {r}");
    }

    // A cancel sent to the replica that neither owns the workflow nor
    // holds the task's worker... here replica 1 holds it, replica 0 owns.
    let id = start(&c, 0, vec![ping()]).await;
    gate.runs_reach(2, "the second task reached the worker")
        .await;
    let resp = c
        .r(1)
        .client
        .raw()
        .cancel(v1::CancelReq {
            id: id.clone(),
            reason: "operator changed their mind".into(),
        })
        .await
        .expect("Cancel through replica 1");
    assert_eq!(resp.into_inner().status, Status::Cancelled as i32);
    reach(&gate.cancelled, 1, "the worker's handler saw the cancel").await;
    assert_eq!(gate.runs.load(Ordering::SeqCst), 2);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owners_death_does_not_stop_a_task_its_worker_runs_elsewhere() {
    let Some(mut c) = cluster(2).await else {
        return;
    };
    let gate = Gate::default();
    let stop = spawn(worker(&c.r(1).daemon.url(), "w-b", &["wipe"], &gate));
    // Not safe to run twice: without the board, the owner's death would
    // leave it Interrupted for an operator.
    let id = start(&c, 0, vec![req::job("wipe", &[])]).await;
    gate.runs_reach(1, "the worker on replica 1 got the task")
        .await;
    let dead = c.r(0).id.clone();
    c.kill(0);
    c.wait_for(&id, LIMIT, "taken over by replica 1", |s| {
        !s.run_by.is_empty() && s.run_by != dead
    })
    .await;
    gate.go.notify_one();
    let st = c.wait_final(&id, LIMIT).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    assert_eq!(gate.runs.load(Ordering::SeqCst), 1, "it ran once");
    let job = &st.blocks[0].jobs[0];
    assert_eq!(job.outputs.get("ran").map(String::as_str), Some("1"));
    assert_eq!(
        job.attempts.len(),
        2,
        "the takeover shows as an attempt of its own: {:?}",
        job.attempts
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_death_of_the_workers_replica_is_a_lost_worker() {
    let Some(mut c) = cluster(2).await else {
        return;
    };
    let held = Gate::default();
    // Replica 1's worker takes both tasks, then replica 1 dies under it.
    let first = spawn(worker(
        &c.r(1).daemon.url(),
        "w-b",
        &["ping", "wipe"],
        &held,
    ));
    let id = start(&c, 0, vec![ping(), req::job("wipe", &[])]).await;
    held.runs_reach(2, "the worker on replica 1 got both tasks")
        .await;
    let spare = Gate::default();
    let second = spawn(worker(
        &c.r(0).daemon.url(),
        "w-a",
        &["ping", "wipe"],
        &spare,
    ));
    c.kill(1);
    // Safe: posted again once the dead replica's claim lapsed, and run by
    // the worker on replica 0. Not safe: Interrupted, for an operator.
    spare
        .runs_reach(1, "the safe task went to the other worker")
        .await;
    spare.go.notify_one();
    let st = c
        .wait_for(&id, LIMIT, "paused for an operator", |s| {
            s.status == Status::Paused as i32
        })
        .await;
    let (ping, wipe) = (&st.blocks[0].jobs[0], &st.blocks[0].jobs[1]);
    assert_eq!(ping.status, Status::Completed as i32, "{ping:?}");
    assert_eq!(wipe.status, Status::Interrupted as i32, "{wipe:?}");
    assert!(
        wipe.error.contains("not heard from") || wipe.error.contains("let go"),
        "{}",
        wipe.error
    );
    assert_eq!(
        spare.runs.load(Ordering::SeqCst),
        1,
        "only the safe task ran again"
    );
    first.cancel();
    second.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_re_attaches_its_task_to_another_replica_when_its_own_dies() {
    re_attaches_after(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_moves_a_workers_task_instead_of_interrupting_it() {
    re_attaches_after(Some("TERM")).await;
}

/// The worker's replica dies (SIGKILL) or shuts down (`signal`) while an
/// unsafe task runs: the worker re-attaches it to the other replica.
async fn re_attaches_after(signal: Option<&str>) {
    let Some(mut c) = cluster(2).await else {
        return;
    };
    let gate = Gate::default();
    // Connected to replica 1, and told about replica 0.
    let w = worker(&c.r(1).daemon.url(), "w-b", &["wipe"], &gate).also(&c.r(0).daemon.url());
    let stop = spawn(w);
    let id = start(&c, 0, vec![req::job("wipe", &[])]).await;
    gate.runs_reach(1, "the worker got the task through replica 1")
        .await;
    match signal {
        Some(sig) => c.r(1).daemon.signal(sig),
        None => c.kill(1),
    }
    // Past the dead replica's claim ttl: the task was re-attached, not
    // decided as lost (the job would be Interrupted).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = c.status(&id).await;
    assert_eq!(st.status, Status::Running as i32, "{}", st.reason);
    gate.go.notify_one();
    let st = c.wait_final(&id, LIMIT).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    assert_eq!(gate.runs.load(Ordering::SeqCst), 1, "it ran once");
    let job = &st.blocks[0].jobs[0];
    assert_eq!(job.outputs.get("ran").map(String::as_str), Some("1"));
    assert_eq!(job.attempts.len(), 1, "{:?}", job.attempts);
    stop.cancel();
}
