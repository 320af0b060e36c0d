//! Many one-job workflows end to end, and many running at once.

use crate::Row;
use crate::harness::*;
use anyhow::{Context, bail};
use interlock_client::Client;
use interlock_proto::v1;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn workflows(b: &Bench, count: usize) -> anyhow::Result<Vec<Row>> {
    let workers = 32;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let c = b.client.clone();
        let n = count / workers + usize::from(w < count % workers);
        tasks.push(tokio::spawn(async move {
            let req = work(vec![block(1, vec![sleep_job()])]);
            let ids = submit_and_exec(&c, &req, n).await?;
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

/// What many workflows running at once cost, measured on any server.
pub struct Held {
    /// From the first Submit until every job runs.
    pub started: Duration,
    /// `rss()` once all run (and half a second more).
    pub rss: f64,
    /// Status latencies (ms, sorted), 8 callers.
    pub status: Vec<f64>,
    /// From the e-stop's write until none runs.
    pub stop_s: f64,
    /// CPU seconds `stop_cpu()` counted over the same time.
    pub stop_cpu_s: Option<f64>,
}

/// Starts `count` workflows whose job sleeps, through `client` (32
/// submitters); once every one runs, reads `rss()`, times Status of them
/// from 8 callers for `seconds`, then writes the e-stop to `es` and times
/// until none runs.
pub async fn hold_running(
    client: &Client,
    count: usize,
    seconds: u64,
    es: &Path,
    rss: impl Fn() -> f64,
    stop_cpu: impl Fn() -> Option<f64>,
) -> anyhow::Result<Held> {
    let long = v1::Job {
        name: "sleep".into(),
        args: [("seconds".to_string(), "600".to_string())].into(),
        ..Default::default()
    };
    let req = work(vec![block(1, vec![long])]);
    let t = Instant::now();
    let mut ids = Vec::with_capacity(count);
    let mut tasks = Vec::new();
    for w in 0..32 {
        let (c, req) = (client.clone(), req.clone());
        let n = count / 32 + usize::from(w < count % 32);
        tasks.push(tokio::spawn(
            async move { submit_and_exec(&c, &req, n).await },
        ));
    }
    for t in tasks {
        ids.extend(t.await??);
    }
    // Every job recorded Running before measuring.
    let last = ids.last().context("no workflows")?.clone();
    while client.status(&last).await?.blocks[0].jobs[0].status != v1::Status::Running as i32 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = t.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = rss();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let ids = Arc::new(ids);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients = (0..8).map(|_| client.raw()).collect();
    let (status, errors) = load_until(clients, deadline, move |mut c| {
        let i = next.fetch_add(7919, std::sync::atomic::Ordering::Relaxed);
        let id = ids[i % ids.len()].clone();
        async move { c.status(v1::StatusReq { id }).await.is_ok() }
    })
    .await?;
    if errors > 0 {
        bail!("{errors} Status calls failed");
    }
    // End them all at once through the emergency stop, timed from the
    // start of the write (as the `estop` flip is).
    let (t, cpu) = (Instant::now(), stop_cpu());
    write_atomically(es, ES_STOP)?;
    until_none_runs(client).await?;
    let stop_s = t.elapsed().as_secs_f64();
    Ok(Held {
        started,
        rss,
        status: sorted(status),
        stop_s,
        stop_cpu_s: cpu.zip(stop_cpu()).map(|(a, b)| b - a),
    })
}

pub async fn concurrent(b: &Bench, count: usize, seconds: u64) -> anyhow::Result<Vec<Row>> {
    let rss_before = rss_mb();
    let es = b.configs.join("es.json");
    let Held {
        rss,
        status: lat,
        stop_s,
        ..
    } = hold_running(&b.client, count, seconds, &es, rss_mb, || None).await?;
    write_atomically(&es, ES_GO)?;
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
