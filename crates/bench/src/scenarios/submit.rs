//! Submit throughput and latency at concurrency 1, 8 and 32.

use crate::Row;
use crate::harness::*;
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
        let target = if conc == 32 {
            "≥ 5,000/s, p99 < 20 ms, 0 errors".into()
        } else {
            String::new()
        };
        rows.push(submit_row(
            format!("submit c={conc}"),
            target,
            lat,
            errors,
            seconds,
        ));
    }
    Ok(rows)
}
