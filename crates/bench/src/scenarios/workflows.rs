//! Many one-job workflows end to end, and many running at once.

use crate::Row;
use crate::harness::*;
use anyhow::{Context, bail};
use interlock_proto::v1;
use std::collections::BTreeMap;
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

pub async fn concurrent(b: &Bench, count: usize, seconds: u64) -> anyhow::Result<Vec<Row>> {
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
        tasks.push(tokio::spawn(
            async move { submit_and_exec(&c, &req, n).await },
        ));
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
    until_none_runs(&b.client).await?;
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
