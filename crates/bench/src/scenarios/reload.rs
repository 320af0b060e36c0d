//! policies.json write → new policies in force.

use crate::Row;
use crate::harness::*;
use anyhow::bail;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub async fn reload(b: &Bench, rounds: usize) -> anyhow::Result<Vec<Row>> {
    let path = b.configs.join("policies.json");
    let original = std::fs::read_to_string(&path)?;
    let probe = work(vec![block(1, vec![sleep_job()])]);
    let tight = r#"[{"Name": "bench", "Policies": [{"Name": "restrictJobTypes", "Settings": {"AllowedJobs": ["hold"]}}]}]"#;
    let mut lat = Vec::new();
    for i in 0..rounds {
        let (text, want_ok) = if i % 2 == 0 {
            (tight, false)
        } else {
            (original.as_str(), true)
        };
        write_atomically(&path, text)?;
        let t = Instant::now();
        loop {
            if b.client.validate(probe.clone()).await?.ok == want_ok {
                break;
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!("policy change not in force after 10 s");
            }
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    write_atomically(&path, &original)?;
    let lat = sorted(lat);
    Ok(vec![Row {
        scenario: "policies.json write (temp + rename) → new policies in force (seen by Validate)"
            .into(),
        result: format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} changes)",
            pct(&lat, 50.0),
            pct(&lat, 99.0),
            lat.last().copied().unwrap_or(f64::NAN),
            lat.len()
        ),
        target: "≤ 100 ms".into(),
        values: BTreeMap::from([
            ("p50_ms".into(), pct(&lat, 50.0)),
            ("p99_ms".into(), pct(&lat, 99.0)),
        ]),
    }])
}
