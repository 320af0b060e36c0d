//! Retention: finished workflows older than the configured age are pruned in
//! the background; a pruned id answers NotFound saying so; audit entries
//! stay until their own, longer retention; unfinished work is never pruned.

use interlock_core::clock::ManualClock;
use interlock_proto::v1;
use interlock_tests::{TestServer, eventually, req, wait_final};
use std::time::Duration;
use tonic::Code;

const DAY: Duration = Duration::from_secs(86_400);

fn metric(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_workflows_are_pruned_and_say_so_audit_stays_longer() {
    let clock = ManualClock::new(interlock_core::now_micros());
    let s = TestServer::start_with_clock(clock.clone(), |c| {
        c.retention = Some(2 * DAY);
        c.audit_retention = Some(10 * DAY);
        c.retention_batch = 2;
        c.retention_pause = Duration::from_millis(1);
        c.retention_interval = Duration::from_millis(50);
    })
    .await;
    let c = s.client().await;
    let one = || req::work("x", vec![req::block(1, vec![req::probe(0)])]);
    let mut finished = Vec::new();
    for _ in 0..5 {
        let id = c.submit(one()).await.unwrap();
        c.exec(&id).await.unwrap();
        assert_eq!(
            wait_final(&c, &id).await.status,
            v1::Status::Completed as i32
        );
        finished.push(id);
    }
    let cancelled = c.submit(one()).await.unwrap();
    s.raw()
        .await
        .cancel(v1::CancelReq {
            id: cancelled.clone(),
            reason: "not needed".into(),
        })
        .await
        .unwrap();
    finished.push(cancelled);
    let never_run = c.submit(one()).await.unwrap();

    // A day later nothing is old enough.
    clock.advance(DAY);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in &finished {
        c.status(id).await.unwrap_or_else(|e| panic!("{id}: {e}"));
    }

    clock.advance(2 * DAY);
    let gone = |id: String| {
        let c = c.clone();
        async move { c.status(&id).await.is_err() }
    };
    for id in &finished {
        eventually("pruned", || gone(id.clone())).await;
        let e = s
            .raw()
            .await
            .status(v1::StatusReq { id: id.clone() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert!(
            e.message()
                .contains(&format!("workflow {id} was pruned after 2 days"))
                && e.message().contains("audit entries are kept"),
            "{}",
            e.message()
        );
    }
    let st = c.status(&never_run).await.unwrap();
    assert_eq!(st.status, v1::Status::NotStarted as i32, "unfinished: kept");
    let listed = s
        .raw()
        .await
        .list(v1::ListReq {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.workflows.len(), 1, "List shows only what is left");

    let audit = s.audit_log().await;
    for id in &finished {
        assert!(
            audit
                .iter()
                .any(|e| e.target == *id && e.action == "submit"),
            "{id}: its audit entries stay"
        );
    }
    let m = s.scrape().await;
    assert!(metric(&m, "interlock_pruned_workflows_total") >= 6.0);
    assert!(metric(&m, "interlock_db_size_bytes") > 0.0);

    // Past the audit retention the entries, and the tombstones, go too.
    clock.advance(10 * DAY);
    let audit_gone = || {
        let s = &s;
        let id = finished[0].clone();
        async move { !s.audit_log().await.iter().any(|e| e.target == id) }
    };
    eventually("audit pruned", audit_gone).await;
    let e = c.status(&finished[0]).await.unwrap_err();
    assert!(e.to_string().contains("no workflow with id"), "{e}");
    assert!(metric(&s.scrape().await, "interlock_pruned_audit_entries_total") >= 1.0);
}

#[tokio::test]
async fn retention_off_keeps_everything() {
    let clock = ManualClock::new(interlock_core::now_micros());
    let s = TestServer::start_with_clock(clock.clone(), |c| {
        c.retention = None;
        c.audit_retention = None;
        c.retention_interval = Duration::from_millis(20);
    })
    .await;
    let c = s.client().await;
    let id = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    wait_final(&c, &id).await;
    clock.advance(1000 * DAY);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        c.status(&id).await.unwrap().status,
        v1::Status::Completed as i32
    );
}
