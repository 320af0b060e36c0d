//! Overload: the sustainable Submit rate is measured first (closed loop,
//! concurrency 32), then an open loop offers ten times that rate for the
//! given time through many connections. Every reply must be OK or
//! RESOURCE_EXHAUSTED; the process's peak RSS is reported; right after the
//! load stops, Submit latency is measured again ("normal service").

use crate::Row;
use crate::harness::*;
use anyhow::bail;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Requests in flight from the load generator at most (beyond the server's
/// in-flight limit, so the limit is what answers).
const OUTSTANDING: usize = 20_000;

pub async fn overload(b: &Bench, seconds: u64) -> anyhow::Result<Vec<Row>> {
    let req = work(vec![block(1, vec![sleep_job()])]);
    // 1. The sustainable rate.
    let probe = Duration::from_secs(2);
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + probe;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (mut c, req, done) = (b.client.raw(), req.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                if c.submit(req.clone()).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let sustainable = done.load(Ordering::Relaxed) as f64 / probe.as_secs_f64();
    let offered = sustainable * 10.0;

    // 2. Ten times that, open loop, for `seconds`.
    // Many connections, as many clients would open: one HTTP/2 connection
    // carrying every stream measures the client's connection, not the server.
    let mut channels = Vec::new();
    for _ in 0..32 {
        channels.push(
            interlock_client::Client::connect(&b.addr, b.opts.clone())
                .await?
                .raw(),
        );
    }
    let (ok, exhausted, other) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let outstanding = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let first_other = Arc::new(std::sync::Mutex::new(None::<String>));
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let interval = Duration::from_secs_f64(1.0 / offered.max(1.0));
    let mut peak_rss = rss_mb();
    let mut sent = 0u64;
    let mut inflight = tokio::task::JoinSet::new();
    while Instant::now() < end {
        // Send what is due by now (a timer per request would cap the rate).
        let due = (start.elapsed().as_secs_f64() / interval.as_secs_f64()) as u64;
        while sent < due {
            sent += 1;
            if outstanding.load(Ordering::Relaxed) >= OUTSTANDING {
                dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            outstanding.fetch_add(1, Ordering::Relaxed);
            let mut c = channels[(sent as usize) % channels.len()].clone();
            let (req, ok, ex, ot, out, first) = (
                req.clone(),
                ok.clone(),
                exhausted.clone(),
                other.clone(),
                outstanding.clone(),
                first_other.clone(),
            );
            inflight.spawn(async move {
                match c.submit(req).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) if e.code() == tonic::Code::ResourceExhausted => {
                        ex.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => {
                        first.lock().unwrap().get_or_insert(e.to_string());
                        ot.fetch_add(1, Ordering::Relaxed)
                    }
                };
                out.fetch_sub(1, Ordering::Relaxed);
            });
        }
        while inflight.try_join_next().is_some() {}
        peak_rss = peak_rss.max(rss_mb());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    while inflight.join_next().await.is_some() {}
    peak_rss = peak_rss.max(rss_mb());
    let (ok, exhausted, other) = (
        ok.load(Ordering::Relaxed),
        exhausted.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
    );
    if other > 0 {
        bail!(
            "{other} replies were neither OK nor RESOURCE_EXHAUSTED, e.g. {}",
            first_other.lock().unwrap().clone().unwrap_or_default()
        );
    }

    // 3. Normal service right after.
    let mut lat = Vec::new();
    let mut c = b.client.raw();
    for _ in 0..200 {
        let t = Instant::now();
        c.submit(req.clone()).await?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let lat = sorted(lat);
    let secs = seconds as f64;
    Ok(vec![Row {
        scenario: format!("overload: 10× the sustainable Submit rate for {seconds} s"),
        result: format!(
            "sustainable {sustainable:.0}/s, offered {offered:.0}/s ({} sent, {} not sent: generator at {OUTSTANDING} outstanding); \
             {:.0} OK/s, {:.0} RESOURCE_EXHAUSTED/s, 0 other; peak RSS {peak_rss:.0} MB (process: server and load generator); \
             right after: p50 {:.2} ms, p99 {:.2} ms",
            sent - dropped.load(Ordering::Relaxed),
            dropped.load(Ordering::Relaxed),
            ok as f64 / secs,
            exhausted as f64 / secs,
            pct(&lat, 50.0),
            pct(&lat, 99.0)
        ),
        target: "only OK or RESOURCE_EXHAUSTED; RSS bounded; normal service right after".into(),
        values: BTreeMap::from([
            ("sustainable_per_s".into(), sustainable),
            ("offered_per_s".into(), offered),
            ("ok_per_s".into(), ok as f64 / secs),
            ("exhausted_per_s".into(), exhausted as f64 / secs),
            ("peak_rss_mb".into(), peak_rss),
            ("after_p50_ms".into(), pct(&lat, 50.0)),
            ("after_p99_ms".into(), pct(&lat, 99.0)),
        ]),
    }])
}
