//! List over many stored workflows.

use crate::Row;
use crate::harness::*;
use anyhow::bail;
use interlock_proto::v1;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Stores `count` never-started workflows (32 submitters), labelled
/// `team=t0`..`t99`.
pub async fn seed(b: &Bench, count: usize) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for w in 0..32usize {
        let c = b.client.raw();
        let n = count / 32 + usize::from(w < count % 32);
        tasks.push(tokio::spawn(async move {
            let mut c = c;
            for i in 0..n {
                let mut r = work(vec![block(1, vec![sleep_job()])]);
                r.labels
                    .insert("team".into(), format!("t{}", (w * n + i) % 100));
                c.submit(r).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

pub async fn list(b: &Bench, count: usize, seconds: u64) -> anyhow::Result<Vec<Row>> {
    seed(b, count).await?;
    let mut raw = b.client.raw();
    let mut rows = Vec::new();
    let queries: Vec<(&str, v1::ListReq)> = vec![
        (
            "newest 100",
            v1::ListReq {
                page_size: 100,
                ..Default::default()
            },
        ),
        (
            "by name, 100",
            v1::ListReq {
                name: "bench".into(),
                page_size: 100,
                ..Default::default()
            },
        ),
        (
            "by status NotStarted, 100",
            v1::ListReq {
                statuses: vec![v1::Status::NotStarted as i32],
                page_size: 100,
                ..Default::default()
            },
        ),
        (
            "by label (1% match), 100",
            v1::ListReq {
                labels: [("team".to_string(), "t7".to_string())].into(),
                page_size: 100,
                ..Default::default()
            },
        ),
    ];
    for (what, q) in queries {
        let deadline = Instant::now() + Duration::from_secs(seconds.min(2));
        let mut lat = Vec::new();
        let mut token = String::new();
        while Instant::now() < deadline {
            let mut q = q.clone();
            q.page_token = token.clone();
            let t = Instant::now();
            let page = raw.list(q).await?.into_inner();
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            if page.workflows.is_empty() {
                bail!("list {what} returned nothing");
            }
            token = page.next_page_token; // walk deeper pages too
        }
        let lat = sorted(lat);
        rows.push(Row {
            scenario: format!("List over {count} stored workflows: {what}"),
            result: format!(
                "p50 {:.2} ms, p99 {:.2} ms ({} pages)",
                pct(&lat, 50.0),
                pct(&lat, 99.0),
                lat.len()
            ),
            target: "fast (served from indexes)".into(),
            values: BTreeMap::from([
                ("p50_ms".into(), pct(&lat, 50.0)),
                ("p99_ms".into(), pct(&lat, 99.0)),
            ]),
        });
    }
    Ok(rows)
}
