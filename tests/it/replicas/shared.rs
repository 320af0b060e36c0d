//! What replicas share: the emergency stop, bucket tokens, control of a
//! workflow from any replica, and its transitions on any replica's Watch.

use super::{Cluster, Setup, sleep};
use interlock_proto::v1::{self, Status, watch_event::Event as WatchEv};
use interlock_tests::req;
use std::time::Duration;
use tonic::Code;

/// Submits `w` through replica `via` and executes it there (so it runs
/// there); waits until it does.
async fn run_on(c: &Cluster, via: usize, w: v1::WorkReq) -> String {
    let r = c.r(via);
    let id = r.client.submit(w).await.expect("submit");
    r.client.exec(&id).await.expect("exec");
    let owner = r.id.clone();
    c.wait_for(&id, Duration::from_secs(10), "running", |s| {
        s.run_by == owner
    })
    .await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_stop_through_one_replica_halts_jobs_on_all() {
    let Some(c) = Cluster::start(Setup::steady()).await else {
        return;
    };
    let stoppable = || req::work("rep-stop", vec![req::block(1, vec![sleep(60.0)])]);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(run_on(&c, i, stoppable()).await);
    }
    // Another name is not stopped.
    let other = run_on(
        &c,
        2,
        req::work("rep", vec![req::block(1, vec![sleep(1.0)])]),
    )
    .await;

    let set = c
        .r(0)
        .ctl
        .clone()
        .set_emergency_stop(v1::SetEmergencyStopReq {
            name: "rep-stop".into(),
            stop: true,
            reason: "replica test".into(),
            ..Default::default()
        })
        .await
        .expect("SetEmergencyStop")
        .into_inner();
    assert_eq!(set.written_to, "store", "replicas share the stop");

    for id in &ids {
        let st = c.wait_final(id, Duration::from_secs(10)).await;
        assert_eq!(st.status, Status::Stopped as i32, "{id}: {}", st.reason);
        assert!(st.was_es_stopped);
        assert!(st.reason.contains("replica test"), "{}", st.reason);
    }
    let st = c.wait_final(&other, Duration::from_secs(10)).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);

    // Every replica shows the shared stop and refuses to start the name.
    for (i, r) in c.live() {
        let es = r
            .ctl
            .clone()
            .emergency_stop_state(v1::EmergencyStopStateReq {})
            .await
            .unwrap()
            .into_inner();
        assert!(
            es.shared.iter().any(|e| e.name == "rep-stop"),
            "replica {i} does not show the shared stop: {es:?}"
        );
        let refused = match r.client.submit(stoppable()).await {
            Err(e) => e,
            Ok(id) => r
                .client
                .exec(&id)
                .await
                .expect_err("an e-stopped Exec is refused"),
        };
        assert_eq!(refused.code(), Some(Code::FailedPrecondition), "{refused}");
        assert!(refused.to_string().contains("emergency"), "{refused}");
    }

    // "go" through another replica lets the name run again everywhere.
    c.r(1)
        .ctl
        .clone()
        .set_emergency_stop(v1::SetEmergencyStopReq {
            name: "rep-stop".into(),
            stop: false,
            reason: String::new(),
            ..Default::default()
        })
        .await
        .expect("go");
    let quick = req::work("rep-stop", vec![req::block(1, vec![sleep(0.01)])]);
    let r2 = c.r(2);
    let mut started = None;
    for _ in 0..100 {
        // The go reaches each replica through the feed, within moments:
        // until then Submit (and Exec) may still be refused as stopped.
        match r2.client.submit(quick.clone()).await {
            Ok(id) => {
                if r2.client.exec(&id).await.is_ok() {
                    started = Some(id);
                    break;
                }
            }
            Err(e) => assert!(e.to_string().contains("emergency"), "submit after go: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = started.expect("the name runs again after go");
    let st = c.wait_final(&id, Duration::from_secs(10)).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_through_one_replica_lets_jobs_in_flight_on_others_finish() {
    let Some(c) = Cluster::start(Setup::steady()).await else {
        return;
    };
    // One job at a time: the first is in flight when the drain lands (long
    // enough for a busy machine to get there), the second would be new work.
    let drainable = || {
        req::work(
            "rep-drain",
            vec![req::block(1, vec![sleep(8.0), sleep(0.01)])],
        )
    };
    let ids = [
        run_on(&c, 1, drainable()).await,
        run_on(&c, 2, drainable()).await,
    ];
    c.r(0)
        .ctl
        .clone()
        .set_emergency_stop(v1::SetEmergencyStopReq {
            name: "rep-drain".into(),
            mode: v1::EsMode::Drain as i32,
            reason: "replica drain".into(),
            ..Default::default()
        })
        .await
        .expect("SetEmergencyStop drain");
    for id in &ids {
        let st = c.wait_final(id, Duration::from_secs(30)).await;
        assert_eq!(st.status, Status::Stopped as i32, "{id}: {}", st.reason);
        assert_eq!(st.halted_by, v1::EsMode::Drain as i32, "{}", st.reason);
        assert!(st.reason.contains("replica drain"), "{}", st.reason);
        let jobs = &st.blocks[0].jobs;
        assert_eq!(
            (jobs[0].status, jobs[1].status),
            (Status::Completed as i32, Status::NotStarted as i32),
            "{id}: the job in flight finished, the next never started"
        );
    }
    for (i, r) in c.live() {
        let e = r.client.submit(drainable()).await.expect_err("drained");
        assert!(e.to_string().contains("draining"), "replica {i}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_of_two_holds_across_three_replicas() {
    let Some(c) = Cluster::start(Setup {
        limits: Some(r#"[{"Name": "twoSleeps", "Max": 2, "Count": "jobs", "Jobs": ["sleep"]}]"#),
        ..Setup::steady()
    })
    .await
    else {
        return;
    };
    let w = || req::work("rep", vec![req::block(1, vec![sleep(0.05)])]);
    let mut ids = Vec::new();
    for n in 0..45 {
        let r = c.r(n % 3);
        let id = r.client.submit(w()).await.expect("submit");
        r.client.exec(&id).await.expect("exec");
        ids.push(id);
    }
    let mut finals = Vec::new();
    for id in &ids {
        let st = c.wait_final(id, Duration::from_secs(60)).await;
        assert_eq!(st.status, Status::Completed as i32, "{id}: {}", st.reason);
        finals.push(st);
    }
    assert_eq!(
        interlock_tests::max_overlap(&finals),
        2,
        "three replicas together ran at most two sleeps at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_takes_of_one_token_over_three_replicas_get_it_once() {
    let Some(c) = Cluster::start(Setup {
        buckets: vec![serde_json::json!({
            "Name": "repOne", "Capacity": 1, "Refill": 1, "Period": "1h"
        })],
        ..Setup::steady()
    })
    .await
    else {
        return;
    };
    let take = || {
        req::work(
            "rep-takes",
            vec![req::block(
                1,
                vec![req::job(
                    "tokenBucket",
                    &[("bucket", "repOne"), ("fatal", "true")],
                )],
            )],
        )
    };
    // Submitted first, then all executed at once, spread over the replicas.
    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(c.r(n % 3).client.submit(take()).await.expect("submit"));
    }
    let execs = ids.iter().enumerate().map(|(n, id)| {
        let client = c.r((n + 1) % 3).client.clone();
        async move { client.exec(id).await }
    });
    for r in futures::future::join_all(execs).await {
        r.expect("exec");
    }
    let mut completed = 0;
    for id in &ids {
        let st = c.wait_final(id, Duration::from_secs(30)).await;
        if st.status == Status::Completed as i32 {
            completed += 1;
        } else {
            assert_eq!(st.status, Status::Failed as i32, "{}", st.reason);
        }
    }
    assert_eq!(completed, 1, "one token, one successful take");
    for (i, r) in c.live() {
        let b = r
            .ctl
            .clone()
            .buckets(v1::BucketsReq {})
            .await
            .unwrap()
            .into_inner();
        let one = b.buckets.iter().find(|b| b.name == "repOne").unwrap();
        assert_eq!(one.available, 0, "replica {i} sees the shared level");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_cancel_through_replicas_that_do_not_run_the_workflow() {
    let Some(c) = Cluster::start(Setup::steady()).await else {
        return;
    };
    // Pause through replica 1 while replica 0 runs the first block.
    let w = req::work(
        "rep",
        vec![
            req::block(1, vec![sleep(0.8)]),
            req::block(3, vec![sleep(0.01), sleep(0.01), sleep(0.01)]),
        ],
    );
    let id = run_on(&c, 0, w).await;
    // The job must be in flight when the pause lands (a pause before its
    // start rightly keeps it from starting, and the block from finishing).
    c.wait_for(&id, Duration::from_secs(10), "first job running", |s| {
        s.blocks[0].jobs[0].status == Status::Running as i32
    })
    .await;
    let mut raw1 = c.r(1).client.raw();
    raw1.pause(v1::PauseReq {
        id: id.clone(),
        reason: "look first".into(),
    })
    .await
    .expect("Pause through a non-owner");
    let st = c.r(2).client.status(&id).await.unwrap();
    assert_eq!(
        st.status,
        Status::Paused as i32,
        "Pause returns once recorded"
    );
    // The job in flight finishes; none of the next block starts.
    c.wait_for(&id, Duration::from_secs(10), "first block done", |s| {
        s.blocks[0].status == Status::Completed as i32
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = c.status(&id).await;
    assert_eq!(st.status, Status::Paused as i32);
    assert!(
        st.blocks[1]
            .jobs
            .iter()
            .all(|j| j.status == Status::NotStarted as i32),
        "no job starts while paused: {:?}",
        st.blocks[1]
    );
    c.r(2)
        .client
        .raw()
        .resume(v1::ResumeReq { id: id.clone() })
        .await
        .expect("Resume through another non-owner");
    let st = c.wait_final(&id, Duration::from_secs(10)).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);

    // Cancel through replica 2 while replica 0 runs a long job: returns
    // once the cancellation is recorded.
    let id = run_on(
        &c,
        0,
        req::work("rep", vec![req::block(1, vec![sleep(60.0)])]),
    )
    .await;
    c.wait_for(&id, Duration::from_secs(10), "the long job runs", |s| {
        s.blocks[0].jobs[0].status == Status::Running as i32
    })
    .await;
    c.r(2)
        .client
        .raw()
        .cancel(v1::CancelReq {
            id: id.clone(),
            reason: "wrong rack".into(),
        })
        .await
        .expect("Cancel through a non-owner");
    let st = c.r(1).client.status(&id).await.unwrap();
    assert_eq!(st.status, Status::Cancelled as i32, "{}", st.reason);
    assert!(st.reason.contains("wrong rack"), "{}", st.reason);
    assert_eq!(
        st.blocks[0].jobs[0].status,
        Status::Cancelled as i32,
        "the owner's job observed it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_on_one_replica_streams_a_workflow_another_runs() {
    let Some(c) = Cluster::start(Setup {
        replicas: 2,
        ..Setup::steady()
    })
    .await
    else {
        return;
    };
    let w = req::work(
        "rep",
        vec![
            req::block(1, vec![sleep(0.2)]),
            req::block(1, vec![super::erase("aab00", "aab")]),
        ],
    );
    let id = c.r(0).client.submit(w).await.unwrap();
    let mut stream = c
        .r(1)
        .client
        .raw()
        .watch(v1::WatchReq {
            id: id.clone(),
            logs: true,
            logs_after: 0,
        })
        .await
        .expect("Watch on replica 1")
        .into_inner();
    c.r(0).client.exec(&id).await.unwrap();

    let mut seen = Vec::new();
    let mut lines = Vec::new();
    let mut ended = false;
    let drain = async {
        while let Some(ev) = stream.message().await.expect("watch stream") {
            match ev.event {
                Some(WatchEv::Transition(t)) => {
                    seen.push((t.block, t.job, t.status));
                    if t.block == -1 && interlock_client::is_final(t.status) {
                        ended = true;
                    }
                }
                Some(WatchEv::Snapshot(s)) if interlock_client::is_final(s.status) => ended = true,
                // The job's log lines, recorded by replica 0, come before
                // the end of the stream.
                Some(WatchEv::Log(l)) => lines.push(l.text),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), drain)
        .await
        .expect("the watch ends when the workflow does");
    assert!(ended, "the stream ended without the final state: {seen:?}");
    let running = Status::Running as i32;
    let completed = Status::Completed as i32;
    for want in [
        (0, 0, running),
        (0, 0, completed),
        (1, 0, running),
        (1, 0, completed),
    ] {
        assert!(
            seen.contains(&want),
            "replica 1 streamed {seen:?}, missing {want:?}"
        );
    }
    assert_eq!(seen.last(), Some(&(-1, -1, completed)));
    assert!(
        lines.iter().any(|l| l.starts_with("erasing aab00 at aab"))
            && lines.iter().any(|l| l == "erased aab00"),
        "replica 1 streamed the lines replica 0 recorded: {lines:?}"
    );
}
