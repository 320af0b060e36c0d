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
        let clients = (0..conc).map(|_| b.client.raw()).collect();
        let (lat, errors) = submit_until(clients, &req, deadline).await?;
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
