//! es.json write → running jobs cancelled, per flip and per job.

use crate::Row;
use crate::harness::*;
use anyhow::bail;
use interlock_proto::v1;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub async fn estop(b: &Bench, flips: usize, workflows: usize) -> anyhow::Result<Vec<Row>> {
    let es = b.configs.join("es.json");
    let mut ctl = v1::control_client::ControlClient::new(
        interlock_client::transport(&b.addr, &b.opts).await?,
    );
    let hold_req = work(vec![
        block(1, vec![sleep_job()]),
        block(
            1,
            vec![v1::Job {
                name: "hold".into(),
                ..Default::default()
            }],
        ),
    ]);
    let (mut per_flip, mut per_job) = (Vec::new(), Vec::new());
    for _ in 0..flips {
        b.hold.noticed.lock().unwrap().clear();
        let mut ids = Vec::new();
        for _ in 0..workflows {
            let id = b.client.submit(hold_req.clone()).await?;
            b.client.exec(&id).await?;
            ids.push(id);
        }
        let hold = b.hold.clone();
        wait_until("all holds running", || {
            hold.running.load(std::sync::atomic::Ordering::SeqCst) == workflows
        })
        .await?;
        // From the start of the write: a server may act on the directory
        // events of the write itself, before the rename returns.
        let t0 = Instant::now();
        write_atomically(&es, ES_STOP)?;
        wait_until("all holds cancelled", || {
            hold.noticed.lock().unwrap().len() == workflows
        })
        .await?;
        let noticed = b.hold.noticed.lock().unwrap().clone();
        let lat: Vec<f64> = noticed
            .iter()
            .map(|t| t.duration_since(t0).as_secs_f64() * 1e3)
            .collect();
        per_flip.push(lat.iter().cloned().fold(0.0, f64::max));
        per_job.extend(lat);
        for id in &ids {
            let st = b.client.wait(id, Duration::from_millis(2), |_| {}).await?;
            if st.status != v1::Status::Stopped as i32 {
                bail!("workflow {id} ended {} instead of Stopped", st.status);
            }
        }
        write_atomically(&es, ES_GO)?;
        loop {
            let st = ctl
                .emergency_stop_state(v1::EmergencyStopStateReq {})
                .await?
                .into_inner();
            if st.entries.iter().any(|e| e.name == "bench" && !e.stop) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let (f, j) = (sorted(per_flip), sorted(per_job));
    let row = |name: &str, v: &[f64], target: &str| Row {
        scenario: name.into(),
        result: format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
            pct(v, 50.0),
            pct(v, 99.0),
            v.last().copied().unwrap_or(f64::NAN),
            v.len()
        ),
        target: target.into(),
        values: BTreeMap::from([
            ("p50_ms".into(), pct(v, 50.0)),
            ("p99_ms".into(), pct(v, 99.0)),
            ("max_ms".into(), v.last().copied().unwrap_or(f64::NAN)),
        ]),
    };
    Ok(vec![
        row(
            &format!(
                "e-stop: es.json write → all {workflows} running workflows' jobs cancelled (per flip)"
            ),
            &f,
            "p99 ≤ 50 ms",
        ),
        row(
            "e-stop: es.json write → one job cancelled (per job)",
            &j,
            "",
        ),
    ])
}
