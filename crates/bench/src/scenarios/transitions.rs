//! One block of 10,000 jobs: durable job transitions per second.

use crate::Row;
use crate::harness::*;
use anyhow::{Context, bail};
use interlock_proto::v1;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub async fn transitions(b: &Bench) -> anyhow::Result<Vec<Row>> {
    let n = 10_000;
    let req = work(vec![block(n, (0..n).map(|_| sleep_job()).collect())]);
    let id = b.client.submit(req).await?;
    let t = Instant::now();
    b.client.exec(&id).await?;
    let st = b.client.wait(&id, Duration::from_millis(5), |_| {}).await?;
    let wall = t.elapsed().as_secs_f64();
    if st.status != v1::Status::Completed as i32 {
        bail!("transitions workflow ended {:?}: {}", st.status, st.reason);
    }
    let (s, e) = (st.started.context("started")?, st.ended.context("ended")?);
    let run = (e.seconds - s.seconds) as f64 + (e.nanos - s.nanos) as f64 / 1e9;
    // Each job: Running then Completed, each a durable commit.
    let per_s = 2.0 * n as f64 / run;
    Ok(vec![Row {
        scenario: "one block of 10,000 sleep-0 jobs, rate_limit 10,000".into(),
        result: format!(
            "{run:.3} s recorded start→end ({wall:.3} s with Exec and polling), {per_s:.0} durable job transitions/s"
        ),
        target: "< 0.5 s (≥ 20,000 transitions/s)".into(),
        values: BTreeMap::from([
            ("run_s".into(), run),
            ("wall_s".into(), wall),
            ("transitions_per_s".into(), per_s),
        ]),
    }])
}
