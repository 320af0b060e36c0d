//! Submit throughput and latency at concurrency 1, 8 and 32.

use crate::Row;
use crate::harness::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub async fn submit(b: &Bench, seconds: u64) -> anyhow::Result<Vec<Row>> {
    let req = work(vec![
        block(1, vec![sleep_job()]),
        block(2, vec![sleep_job(), sleep_job()]),
        block(1, vec![sleep_job()]),
    ]);
    let mut rows = Vec::new();
    for conc in [1usize, 8, 32] {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for _ in 0..conc {
            let (c, req) = (b.client.raw(), req.clone());
            tasks.push(tokio::spawn(async move {
                let mut c = c;
                let (mut lat, mut errors) = (Vec::new(), 0u64);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match c.submit(req.clone()).await {
                        Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1e3),
                        Err(_) => errors += 1,
                    }
                }
                (lat, errors)
            }));
        }
        let (mut lat, mut errors) = (Vec::new(), 0);
        for t in tasks {
            let (l, e) = t.await?;
            lat.extend(l);
            errors += e;
        }
        let n = lat.len() as f64;
        let lat = sorted(lat);
        let rate = n / seconds as f64;
        let (p50, p99) = (pct(&lat, 50.0), pct(&lat, 99.0));
        rows.push(Row {
            scenario: format!("submit c={conc}"),
            result: format!(
                "{rate:.0} accepted/s, p50 {p50:.2} ms, p99 {p99:.2} ms, {errors} errors"
            ),
            target: if conc == 32 {
                "≥ 5,000/s, p99 < 20 ms, 0 errors".into()
            } else {
                String::new()
            },
            values: BTreeMap::from([
                ("accepted_per_s".into(), rate),
                ("p50_ms".into(), p50),
                ("p99_ms".into(), p99),
                ("errors".into(), errors as f64),
            ]),
        });
    }
    Ok(rows)
}
