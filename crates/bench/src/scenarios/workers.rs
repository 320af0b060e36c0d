//! Jobs on worker processes: one-job workflows dispatched to `--processes`
//! workers (this binary re-run with `--serve-worker`) beside the same
//! workflows run in the server, the time from the Exec call to the
//! worker's handler starting, and from an es.json write to the handler's
//! cancellation token firing.
//!
//! Workers report what they saw on stdout as `S <workflow> <unix µs>` (a
//! task started) and `C <unix µs>` (a cancellation arrived); the system
//! clock is shared by every process on the machine.

use crate::Row;
use crate::harness::*;
use anyhow::{Context, bail};
use interlock_client::worker::{TaskError, Worker};
use interlock_proto::v1;
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

pub(crate) const JOBS: &str = r#"{"jobs": [{"name": "benchNoop", "idempotency": "safe"},
                                 {"name": "benchHold", "idempotency": "safe"}]}"#;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64
}

/// The worker process: serves benchNoop (returns at once) and benchHold
/// (waits for its cancellation), reporting on stdout.
pub async fn serve_worker(addr: &str, name: &str, capacity: u32) -> anyhow::Result<()> {
    let w = Worker::new(addr, Default::default(), name)
        .capacity(capacity)
        .handle("benchNoop", |t| async move {
            println!("S {} {}", t.task.workflow_id, now_us());
            Ok(Default::default())
        })
        .handle("benchHold", |t| async move {
            t.cancel.cancelled().await;
            println!("C {}", now_us());
            Err(TaskError::cancelled())
        });
    w.run(tokio_util::sync::CancellationToken::new()).await?;
    Ok(())
}

pub(crate) struct Workers {
    children: Vec<Child>,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn spawn_workers(addr: &str, n: usize, capacity: u32) -> anyhow::Result<Workers> {
    let exe = std::env::current_exe()?;
    let (tx, lines) = mpsc::unbounded_channel();
    let mut children = Vec::new();
    for i in 0..n {
        let mut child = Command::new(&exe)
            .args(["--serve-worker", addr, "--worker-name"])
            .arg(format!("bench-{i}"))
            .arg("--worker-capacity")
            .arg(capacity.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let out = child.stdout.take().context("worker stdout")?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        children.push(child);
    }
    Ok(Workers { children, lines })
}

async fn leased(b: &Bench) -> anyhow::Result<(usize, u32)> {
    let mut c =
        v1::worker_client::WorkerClient::new(interlock_client::transport(&b.addr, &b.opts).await?);
    let r = c.list_workers(v1::ListWorkersReq {}).await?.into_inner();
    Ok((r.workers.len(), r.workers.iter().map(|w| w.leased).sum()))
}

/// Submits and executes `count` one-job workflows over 32 clients and
/// waits for every one to complete; returns the seconds it took and, per
/// workflow, when its Exec call was made.
async fn run_many(
    b: &Bench,
    count: usize,
    job: v1::Job,
) -> anyhow::Result<(f64, HashMap<String, i64>)> {
    let clients = 32;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..clients {
        let c = b.client.clone();
        let req = work(vec![block(1, vec![job.clone()])]);
        let n = count / clients + usize::from(w < count % clients);
        tasks.push(tokio::spawn(async move {
            let mut execs = Vec::with_capacity(n);
            for _ in 0..n {
                let id = c.submit(req.clone()).await?;
                execs.push((id.clone(), now_us()));
                c.exec(&id).await?;
            }
            for (id, _) in &execs {
                let st = c.wait(id, Duration::from_millis(2), |_| {}).await?;
                if st.status != v1::Status::Completed as i32 {
                    bail!("{id} ended {}: {}", st.status, st.reason);
                }
            }
            anyhow::Ok(execs)
        }));
    }
    let mut execs = HashMap::new();
    for t in tasks {
        execs.extend(t.await??);
    }
    Ok((t.elapsed().as_secs_f64(), execs))
}

fn job(name: &str) -> v1::Job {
    v1::Job {
        name: name.into(),
        ..Default::default()
    }
}

pub struct Params {
    pub count: usize,
    pub processes: usize,
    pub flips: usize,
    pub held: usize,
}

pub async fn workers(
    sync: interlock_server::config::SyncMode,
    p: Params,
) -> anyhow::Result<Vec<Row>> {
    let b = Bench::start_with(sync, false, |c| {
        std::fs::write(c.configs.join("jobs.json"), JOBS).expect("jobs.json");
        // Both halves under the same policy: which job types may run.
        std::fs::write(
            c.configs.join("policies.json"),
            r#"[{"Name": "bench", "Policies": [{"Name": "restrictJobTypes",
                "Settings": {"AllowedJobs": ["sleep", "benchNoop", "benchHold"]}}]}]"#,
        )
        .expect("policies.json");
    })
    .await?;
    let capacity = (p.held / p.processes.max(1) + 1).max(64) as u32;
    let mut w = spawn_workers(&b.addr, p.processes, capacity)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while leased(&b).await?.0 < p.processes {
        if Instant::now() > deadline {
            bail!("{} workers never connected", p.processes);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The same workflows, in the server and on the workers, one after the other.
    let (local_s, _) = run_many(&b, p.count, sleep_job()).await?;
    let (remote_s, execs) = run_many(&b, p.count, job("benchNoop")).await?;
    let mut dispatch = Vec::with_capacity(p.count);
    while dispatch.len() < p.count {
        let line = tokio::time::timeout(Duration::from_secs(10), w.lines.recv())
            .await
            .context("a worker's start report")?
            .context("workers gone")?;
        let mut parts = line.split(' ');
        if let (Some("S"), Some(id), Some(at)) = (parts.next(), parts.next(), parts.next())
            && let (Some(exec), Ok(at)) = (execs.get(id), at.parse::<i64>())
        {
            dispatch.push((at - exec) as f64 / 1e3);
        }
    }
    let dispatch = sorted(dispatch);

    // es.json write → each held task's handler sees its token fire.
    let mut cancel = Vec::new();
    let hold = work(vec![block(1, vec![job("benchHold")])]);
    for _ in 0..p.flips {
        let ids = Arc::new(submit_and_exec(&b.client, &hold, p.held).await?);
        let deadline = Instant::now() + Duration::from_secs(30);
        while (leased(&b).await?.1 as usize) < p.held {
            if Instant::now() > deadline {
                bail!("the workers never held {} tasks", p.held);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let t0 = now_us();
        write_atomically(&b.configs.join("es.json"), ES_STOP)?;
        for _ in 0..p.held {
            let line = tokio::time::timeout(Duration::from_secs(10), w.lines.recv())
                .await
                .context("a worker's cancel report")?
                .context("workers gone")?;
            if let Some(at) = line.strip_prefix("C ").and_then(|a| a.parse::<i64>().ok()) {
                cancel.push((at - t0) as f64 / 1e3);
            }
        }
        for id in ids.iter() {
            b.client.wait(id, Duration::from_millis(5), |_| {}).await?;
        }
        write_atomically(&b.configs.join("es.json"), ES_GO)?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let cancel = sorted(cancel);
    drop(w);
    let (local, remote) = (p.count as f64 / local_s, p.count as f64 / remote_s);
    Ok(vec![
        Row {
            scenario: format!(
                "{} one-job workflows on {} worker processes, beside the same run in the server (sleep 0), 32 clients",
                p.count, p.processes
            ),
            result: format!(
                "workers {remote:.0}/s, in the server {local:.0}/s (ratio {:.2})",
                remote / local
            ),
            target: "≥ 2,000 workflows/s on workers".into(),
            values: BTreeMap::from([
                ("workers_per_s".into(), remote),
                ("in_server_per_s".into(), local),
                ("ratio".into(), remote / local),
            ]),
        },
        Row {
            scenario: "Exec call → the worker's handler starts (same run)".into(),
            result: format!(
                "p50 {:.2} ms, p99 {:.2} ms",
                pct(&dispatch, 50.0),
                pct(&dispatch, 99.0)
            ),
            target: "reported".into(),
            values: BTreeMap::from([
                ("p50_ms".into(), pct(&dispatch, 50.0)),
                ("p99_ms".into(), pct(&dispatch, 99.0)),
            ]),
        },
        Row {
            scenario: format!(
                "es.json write → cancellation seen by the worker's handler ({} flips × {} tasks)",
                p.flips, p.held
            ),
            result: format!(
                "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                pct(&cancel, 50.0),
                pct(&cancel, 99.0),
                pct(&cancel, 100.0)
            ),
            target: "p99 ≤ 100 ms".into(),
            values: BTreeMap::from([
                ("p50_ms".into(), pct(&cancel, 50.0)),
                ("p99_ms".into(), pct(&cancel, 99.0)),
            ]),
        },
    ])
}
