//! What the dashboard costs the server: Server-Sent Events watchers while
//! workflows run (event latency, extra CPU), and the list page's API call
//! over a large store.
//!
//! Event latency is the time from a transition's own timestamp (`at`, set
//! by the engine when it records the transition) to the watcher reading
//! it, on the same host and clock. Extra CPU compares the process's CPU
//! time for the same batch of workflows run without watchers and with
//! them; the watchers' own reading runs in this process too, so the figure
//! is an upper bound on the server's share.

use crate::Row;
use crate::harness::*;
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use interlock_proto::v1;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

type Http = HttpClient<HttpConnector, Empty<Bytes>>;

pub struct Params {
    /// Workflows running while the watchers watch.
    pub workflows: usize,
    /// SSE watchers, each on its own workflow.
    pub watchers: usize,
    /// Stored workflows for the list page.
    pub stored: usize,
    pub seconds: u64,
}

pub async fn dashboard(p: Params) -> anyhow::Result<Vec<Row>> {
    let b = Bench::start_with(interlock_server::config::SyncMode::Full, false, |c| {
        c.http_listen = Some("127.0.0.1:0".parse().expect("an address"));
    })
    .await?;
    let http_addr = b
        .running
        .as_ref()
        .and_then(|r| r.http_addr)
        .context("the HTTP API is on")?;
    let http: Http =
        HttpClient::builder(hyper_util::rt::TokioExecutor::new()).build(HttpConnector::new());
    let mut rows = Vec::new();
    rows.push(watchers(&b, &http, http_addr, &p).await?);
    rows.extend(list_page(&b, &http, http_addr, &p).await?);
    Ok(rows)
}

/// Four 0.3 s sleeps one after another: about a dozen transitions over
/// 1.2 s per workflow.
fn running_work() -> v1::WorkReq {
    let mut job = sleep_job();
    job.args.insert("seconds".into(), "0.3".into());
    work(vec![block(1, vec![job; 4])])
}

/// This process's CPU seconds so far (user + system).
fn cpu_seconds() -> f64 {
    crate::harness::process_cpu_s(std::process::id()).unwrap_or(0.0)
}

/// Runs `n` workflows (submitted, then started together) to the end;
/// returns the CPU seconds and wall time from the first Exec to the last
/// end. `watch` is called with the ids after Submit and before Exec.
async fn run_batch<F, Fut>(b: &Bench, n: usize, watch: F) -> anyhow::Result<(f64, Duration)>
where
    F: FnOnce(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(b.client.submit(running_work()).await?);
    }
    watch(ids.clone()).await?;
    let (cpu, t) = (cpu_seconds(), Instant::now());
    let mut tasks = Vec::new();
    for chunk in ids.chunks(n.div_ceil(8)) {
        let (c, chunk) = (b.client.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            for id in chunk {
                c.exec(&id).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let mut raw = b.client.raw();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let open = raw
            .list(v1::ListReq {
                statuses: vec![v1::Status::Running as i32, v1::Status::NotStarted as i32],
                page_size: 1,
                ..Default::default()
            })
            .await?
            .into_inner();
        if open.workflows.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("workflows still running after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((cpu_seconds() - cpu, t.elapsed()))
}

/// A transition's `at` (protobuf JSON timestamp) as a system time.
fn at(v: &serde_json::Value) -> Option<SystemTime> {
    let s = v.as_str()?.replace("+00:00", "Z");
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok()
}

/// Follows one workflow's SSE stream to its end: latency (ms) of every
/// transition event. Signals `ready` once the first snapshot arrived.
async fn follow(
    http: Http,
    url: String,
    ready: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<Vec<f64>> {
    let resp = http.get(url.parse()?).await?;
    if resp.status() != 200 {
        bail!("watch answered {}", resp.status());
    }
    let mut body = resp.into_body();
    let (mut buf, mut lat) = (String::new(), Vec::new());
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let now = SystemTime::now();
        buf.push_str(std::str::from_utf8(&data)?);
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let Some(json) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(json)?;
            if v.get("snapshot").is_some() {
                let _ = ready.try_send(());
            } else if let Some(t) = v.get("transition").and_then(|t| at(&t["at"])) {
                lat.push(now.duration_since(t).unwrap_or_default().as_secs_f64() * 1e3);
            }
        }
    }
    Ok(lat)
}

async fn watchers(b: &Bench, http: &Http, addr: SocketAddr, p: &Params) -> anyhow::Result<Row> {
    // Warm-up, then the same batch without and with watchers.
    run_batch(b, p.workflows.min(100), |_| async { Ok(()) }).await?;
    let (cpu_without, wall_without) = run_batch(b, p.workflows, |_| async { Ok(()) }).await?;
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let (cpu_with, wall_with) = run_batch(b, p.workflows, |ids| {
        let (http, lat) = (http.clone(), latencies.clone());
        let tasks = &mut tasks;
        async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel(ids.len());
            for id in ids.iter().take(p.watchers) {
                let url = format!("http://{addr}/api/v1/workflows/{id}/watch");
                let (http, tx, lat) = (http.clone(), tx.clone(), lat.clone());
                tasks.push(tokio::spawn(async move {
                    let got = follow(http, url, tx).await?;
                    lat.lock().expect("not poisoned").extend(got);
                    anyhow::Ok(())
                }));
            }
            for _ in 0..p.watchers.min(ids.len()) {
                rx.recv()
                    .await
                    .context("a watcher ended before its snapshot")?;
            }
            Ok(())
        }
    })
    .await?;
    for t in tasks {
        t.await??;
    }
    let lat = sorted(std::mem::take(
        &mut *latencies.lock().expect("not poisoned"),
    ));
    let extra = cpu_with - cpu_without;
    let events = lat.len();
    Ok(Row {
        scenario: format!(
            "{} SSE watchers while {} workflows run (4 jobs each)",
            p.watchers, p.workflows
        ),
        result: format!(
            "event latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {events} events; process CPU \
             {cpu_without:.2} s without watchers ({:.1} s wall), {cpu_with:.2} s with ({:.1} s \
             wall): +{extra:.2} s, {:.0} µs per event",
            pct(&lat, 50.0),
            pct(&lat, 99.0),
            lat.last().copied().unwrap_or(f64::NAN),
            wall_without.as_secs_f64(),
            wall_with.as_secs_f64(),
            extra * 1e6 / events.max(1) as f64,
        ),
        target: "event latency p99 < 100 ms".into(),
        values: BTreeMap::from([
            ("p50_ms".into(), pct(&lat, 50.0)),
            ("p99_ms".into(), pct(&lat, 99.0)),
            ("events".into(), events as f64),
            ("cpu_without_s".into(), cpu_without),
            ("cpu_with_s".into(), cpu_with),
        ]),
    })
}

async fn list_page(
    b: &Bench,
    http: &Http,
    addr: SocketAddr,
    p: &Params,
) -> anyhow::Result<Vec<Row>> {
    crate::scenarios::list::seed(b, p.stored).await?;
    let queries = [
        ("newest 50 (the page as it opens)", "page_size=50"),
        (
            "by status Completed, 50",
            "status=StatusCompleted&page_size=50",
        ),
        ("by label (1% match), 50", "label=team=t7&page_size=50"),
        (
            "by name, 50, walking older pages",
            "name=bench&page_size=50",
        ),
    ];
    let mut rows = Vec::new();
    for (what, q) in queries {
        let deadline = Instant::now() + Duration::from_secs(p.seconds.min(3));
        let (mut lat, mut token) = (Vec::new(), String::new());
        while Instant::now() < deadline {
            let url = if token.is_empty() {
                format!("http://{addr}/api/v1/workflows?{q}")
            } else {
                format!("http://{addr}/api/v1/workflows?{q}&page_token={token}")
            };
            let t = Instant::now();
            let resp = http.get(url.parse()?).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            if status != 200 {
                bail!("list {what}: {status}: {}", String::from_utf8_lossy(&body));
            }
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            if v["workflows"].as_array().is_none_or(Vec::is_empty) {
                bail!("list {what} returned nothing");
            }
            if q.starts_with("name=") {
                token = v["nextPageToken"].as_str().unwrap_or("").to_string();
            }
        }
        let lat = sorted(lat);
        rows.push(Row {
            scenario: format!(
                "Dashboard list call over {} stored workflows: {what}",
                p.stored
            ),
            result: format!(
                "p50 {:.2} ms, p99 {:.2} ms ({} calls over HTTP, JSON included)",
                pct(&lat, 50.0),
                pct(&lat, 99.0),
                lat.len()
            ),
            target: "server time < 50 ms".into(),
            values: BTreeMap::from([
                ("p50_ms".into(), pct(&lat, 50.0)),
                ("p99_ms".into(), pct(&lat, 99.0)),
            ]),
        });
    }
    Ok(rows)
}
