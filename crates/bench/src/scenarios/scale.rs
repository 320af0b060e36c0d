//! How cost grows: with the workflows a database holds, with the jobs one
//! workflow holds, and with the workflows running at once. Every server is
//! a real `interlockd` child on SQLite (the default), so memory figures are
//! the server's alone (`VmRSS`, and `VmHWM` for peaks, from `/proc`).
//!
//! - **Stored**: the database is seeded through the store (finished
//!   one-job workflows, as retention's bench does) up to 10k, 100k and 1M;
//!   at each size a fresh server starts on it (start-up includes the
//!   recovery scan), then Submit, Status and List are measured, and the
//!   database's size per workflow.
//! - **Jobs per workflow**: one workflow of 1, 100, 10k and 50k sleep-0 jobs
//!   (blocks of at most 20,000, each running all its jobs at once): Submit
//!   latency, peak memory per job, run time; then the same workflow is
//!   started, the server SIGKILLed and restarted, and its start-up (which
//!   resumes it) timed.
//! - **Running**: many workflows whose job sleeps, all running at once:
//!   RSS, Status latency, and the e-stop until none runs.

use crate::Row;
use crate::harness::{
    block, daemon_spec, load_until, pct, proc_mb, sleep_job, sorted, submit_until, thread_cpu_s,
    work,
};
use crate::scenarios::retention;
use crate::scenarios::workflows::{Held, hold_running};
use anyhow::bail;
use interlock_client::{Client, Options};
use interlock_proto::v1;
use interlock_tests::daemon::{Daemon, DaemonSpec};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Params {
    /// The largest stored size (10k, 100k, 1M up to this; under 10k: skip
    /// that part).
    pub rows: usize,
    /// Workflows running at once for the last part (0: skip it).
    pub running: usize,
    pub seconds: u64,
}

pub async fn scale(bin: &Path, p: Params) -> anyhow::Result<Vec<Row>> {
    let mut rows = stored(bin, &p).await?;
    rows.extend(jobs_per_workflow(bin).await?);
    if p.running > 0 {
        rows.push(running(bin, p.running, p.seconds).await?);
    }
    Ok(rows)
}

/// Starts the server; how long until it served (start-up, recovery
/// included), and a client.
async fn start(spec: &DaemonSpec) -> anyhow::Result<(Daemon, Duration, Client)> {
    let t = Instant::now();
    let d = spec
        .spawn()
        .map_err(|e| anyhow::anyhow!("interlockd did not start: {e:?}"))?;
    let took = t.elapsed();
    let opts = Options {
        call_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let client = Client::connect(&d.addr, opts).await?;
    Ok((d, took, client))
}

/// The database's bytes on disk: the file, its WAL and shared memory.
fn db_bytes(db: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn stored(bin: &Path, p: &Params) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let spec = daemon_spec(bin, dir.path());
    let db = dir.path().join("var/interlock.db");
    std::fs::create_dir_all(dir.path().join("var"))?;
    let mut rows = Vec::new();
    let mut seeded = 0;
    for size in [10_000, 100_000, 1_000_000] {
        if size > p.rows {
            break;
        }
        let t = Instant::now();
        retention::seed(&db, seeded..size, 1).await?;
        eprintln!(
            "stored: seeded {} more in {:.1} s",
            size - seeded,
            t.elapsed().as_secs_f64()
        );
        seeded = size;
        let bytes = db_bytes(&db);
        let (mut d, startup, client) = start(&spec).await?;
        let rss = proc_mb(d.pid(), "VmRSS:");
        let req = work(vec![block(1, vec![sleep_job()])]);
        let deadline = Instant::now() + Duration::from_secs(p.seconds);
        let clients = (0..8).map(|_| client.raw()).collect();
        let (submit, errors) = submit_until(clients, &req, deadline).await?;
        let submitted = submit.len();
        let submit = sorted(submit);
        // Status of seeded workflows spread over the whole table.
        // Latency of one caller at a time (the Submit load above is the
        // throughput figure).
        let deadline = Instant::now() + Duration::from_secs(p.seconds);
        let clients: Vec<_> = vec![client.raw()];
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (status, _) = load_until(clients, deadline, move |mut c| {
            let i = next.fetch_add(7919, std::sync::atomic::Ordering::Relaxed) % size;
            async move {
                c.status(v1::StatusReq {
                    id: retention::seed_id(i),
                })
                .await
                .is_ok()
            }
        })
        .await?;
        let status = sorted(status);
        // Pages of the newest 100 by status, walking down from the top.
        let deadline = Instant::now() + Duration::from_secs(p.seconds);
        let token = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (list, _) = load_until(vec![client.raw()], deadline, move |mut c| {
            let token = token.clone();
            async move {
                let page_token = token.lock().unwrap().clone();
                let Ok(r) = c
                    .list(v1::ListReq {
                        statuses: vec![v1::Status::Completed as i32],
                        page_size: 100,
                        page_token,
                        ..Default::default()
                    })
                    .await
                else {
                    return false;
                };
                *token.lock().unwrap() = r.into_inner().next_page_token;
                true
            }
        })
        .await?;
        let list = sorted(list);
        d.signal("TERM");
        d.wait_exit(Duration::from_secs(30));
        let per_wf = bytes as f64 / size as f64;
        rows.push(Row {
            scenario: format!("{size} stored workflows (finished, one job each)"),
            result: format!(
                "start-up {:.0} ms; RSS {rss:.0} MB; Submit c=8 {:.0}/s p50 {:.2} ms p99 {:.2} ms ({errors} errors); Status p99 {:.2} ms; List (a page of 100 by status, walking down) p99 {:.2} ms; database {:.0} MB, {per_wf:.0} bytes per workflow",
                ms(startup),
                submitted as f64 / p.seconds as f64,
                pct(&submit, 50.0),
                pct(&submit, 99.0),
                pct(&status, 99.0),
                pct(&list, 99.0),
                bytes as f64 / 1e6,
            ),
            target: match size {
                1_000_000 => "List p99 < 5 ms, start-up < 5 s".into(),
                _ => String::new(),
            },
            values: BTreeMap::from([
                ("startup_ms".into(), ms(startup)),
                ("rss_mb".into(), rss),
                ("submit_per_s".into(), submitted as f64 / p.seconds as f64),
                ("submit_p50_ms".into(), pct(&submit, 50.0)),
                ("submit_p99_ms".into(), pct(&submit, 99.0)),
                ("status_p99_ms".into(), pct(&status, 99.0)),
                ("list_p99_ms".into(), pct(&list, 99.0)),
                ("db_bytes_per_workflow".into(), per_wf),
            ]),
        });
    }
    Ok(rows)
}

/// `n` sleep-0 jobs in blocks of at most 20,000 (the default per-block
/// limit), each block running at most `limit` jobs at once (all of them
/// when `None`).
fn wide(n: usize, limit: Option<usize>) -> v1::WorkReq {
    let blocks = (0..n)
        .step_by(20_000)
        .map(|from| {
            let k = (n - from).min(20_000);
            block(limit.unwrap_or(k).min(k) as i32, vec![sleep_job(); k])
        })
        .collect();
    work(blocks)
}

/// Waits for the workflow labelled `run=<tag>` to end by polling List,
/// whose summaries carry no jobs: Status would read and copy the whole
/// record of a large workflow each time, and Watch of one streams (and may
/// re-snapshot) every transition; either would be most of what is
/// measured.
async fn wait_final(c: &Client, id: &str, tag: &str) -> anyhow::Result<()> {
    let mut raw = c.raw();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let page = raw
            .list(v1::ListReq {
                labels: [("run".to_string(), tag.to_string())].into(),
                page_size: 1,
                ..Default::default()
            })
            .await?
            .into_inner();
        if page
            .workflows
            .first()
            .is_some_and(|w| w.id == id && interlock_client::is_final(w.status))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{id} did not end in 600 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn jobs_per_workflow(bin: &Path) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let sizes = [1, 100, 10_000, 50_000].map(|n| (n, None));
    for (n, limit) in sizes.into_iter().chain([(50_000, Some(100))]) {
        let dir = tempfile::tempdir()?;
        let spec = daemon_spec(bin, dir.path());
        let (mut d, _, client) = start(&spec).await?;
        let mut req = wide(n, limit);
        req.labels.insert("run".into(), "first".into());
        // Warm: one Submit of the smallest request first.
        client.submit(wide(1, None)).await?;
        let base = proc_mb(d.pid(), "VmRSS:");
        let t = Instant::now();
        let id = client.submit(req.clone()).await?;
        let submit = t.elapsed();
        // The high-water mark after each phase says which one sets it.
        let submit_peak = proc_mb(d.pid(), "VmHWM:");
        let t = Instant::now();
        client.exec(&id).await?;
        wait_final(&client, &id, "first").await?;
        let run = t.elapsed();
        let run_peak = proc_mb(d.pid(), "VmHWM:");
        let st = client.status(&id).await?;
        if st.status != v1::Status::Completed as i32 {
            bail!("{n}-job workflow ended {}: {}", st.status, st.reason);
        }
        let peak = proc_mb(d.pid(), "VmHWM:");
        let after = proc_mb(d.pid(), "VmRSS:");
        let per_job_kb = (peak - base) * 1024.0 / n as f64;
        // Recovery: the same workflow started, the server killed at once.
        req.labels.insert("run".into(), "again".into());
        let id = client.submit(req).await?;
        client.exec(&id).await?;
        d.kill();
        drop(client);
        let (_d, recovery, client) = start(&spec).await?;
        wait_final(&client, &id, "again").await?;
        let st = client.status(&id).await?;
        if st.status != v1::Status::Completed as i32 {
            bail!(
                "{n}-job workflow after a restart ended {}: {}",
                st.status,
                st.reason
            );
        }
        rows.push(Row {
            scenario: format!(
                "one workflow of {n} sleep-0 jobs ({} at once)",
                limit.map_or("all of a block".to_string(), |l| format!("rate limit {l}"))
            ),
            result: format!(
                "Submit {:.2} ms; Exec → Completed {:.2} s; peak RSS {peak:.0} MB ({:.0} MB before; high-water {submit_peak:.0} MB after Submit, {run_peak:.0} MB after the run, {peak:.0} MB after Status; {after:.0} MB after), {per_job_kb:.2} KB per job; start-up resuming it after SIGKILL {:.0} ms",
                ms(submit),
                run.as_secs_f64(),
                base,
                ms(recovery),
            ),
            target: match n {
                50_000 => "≤ 1 KB per job (under 60 MB)".into(),
                _ => String::new(),
            },
            values: BTreeMap::from([
                ("submit_ms".into(), ms(submit)),
                ("run_s".into(), run.as_secs_f64()),
                ("peak_rss_mb".into(), peak),
                ("submit_peak_rss_mb".into(), submit_peak),
                ("run_peak_rss_mb".into(), run_peak),
                ("base_rss_mb".into(), base),
                ("kb_per_job".into(), per_job_kb),
                ("restart_ms".into(), ms(recovery)),
            ]),
        });
    }
    Ok(rows)
}

async fn running(bin: &Path, count: usize, seconds: u64) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let spec = daemon_spec(bin, dir.path());
    let (d, _, client) = start(&spec).await?;
    let base = proc_mb(d.pid(), "VmRSS:");
    let es = dir.path().join("configs/es.json");
    let Held {
        started,
        rss,
        status: lat,
        stop_s: stop,
        stop_cpu_s,
    } = hold_running(
        &client,
        count,
        seconds,
        &es,
        || proc_mb(d.pid(), "VmRSS:"),
        || thread_cpu_s(d.pid(), "interlock-store"),
    )
    .await?;
    // The store's single writer records every stopped run: its CPU is the
    // floor of the stop, on any number of cores.
    let writer = stop_cpu_s.map_or(String::new(), |s| {
        format!(" (store writer {s:.2} s of CPU)")
    });
    let per_wf_kb = (rss - base) * 1024.0 / count as f64;
    let mut values = BTreeMap::from([
        ("rss_mb".into(), rss),
        ("kb_per_workflow".into(), per_wf_kb),
        ("status_p99_ms".into(), pct(&lat, 99.0)),
        ("estop_s".into(), stop),
    ]);
    values.extend(stop_cpu_s.map(|s| ("estop_writer_cpu_s".into(), s)));
    Ok(Row {
        scenario: format!("{count} workflows running at once (sleep jobs), server alone"),
        result: format!(
            "all running after {:.1} s; RSS {rss:.0} MB ({base:.0} MB idle), {per_wf_kb:.2} KB per running workflow; Status p99 {:.2} ms ({} calls, 8 clients); e-stop until none runs {stop:.2} s{writer}",
            started.as_secs_f64(),
            pct(&lat, 99.0),
            lat.len(),
        ),
        target: "< 500 MB RSS, Status p99 < 5 ms, e-stop < 2 s (100,000)".into(),
        values,
    })
}
