//! Blast-radius limits (limits.json) over the real server: a limit is never
//! exceeded, also across a SIGKILL, and a waiting job says what it waits
//! for.

use interlock_proto::v1::{self, Status};
use interlock_tests::daemon::{Daemon, DaemonSpec};
use interlock_tests::{TestServer, eventually, interlockd, max_overlap, req, wait_final};
use std::path::Path;
use std::time::{Duration, Instant};

const TWO_PROBES: &str = r#"[{"Name": "twoProbes", "Max": 2, "Count": "jobs", "Jobs": ["probe"]}]"#;

async fn with_limits(limits: &'static str) -> TestServer {
    TestServer::start_with(move |c| {
        std::fs::write(c.configs.join("limits.json"), limits).unwrap();
    })
    .await
}

/// Submits and executes a workflow of one `ms`-long probe.
async fn start_probe(c: &interlock_client::Client, ms: u64) -> String {
    let id = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(ms)])]))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_workflows_competing_for_a_limit_of_two_run_two_at_a_time() {
    let s = with_limits(TWO_PROBES).await;
    let c = s.client().await;
    let mut ids = Vec::new();
    for _ in 0..100 {
        let id = c
            .submit(req::work("x", vec![req::block(1, vec![req::probe(20)])]))
            .await
            .unwrap();
        ids.push(id);
    }
    let execs: Vec<_> = ids
        .iter()
        .map(|id| {
            let (c, id) = (c.clone(), id.clone());
            tokio::spawn(async move { c.exec(&id).await.unwrap() })
        })
        .collect();
    for e in execs {
        e.await.unwrap();
    }
    for id in &ids {
        let st = wait_final(&c, id).await;
        assert_eq!(st.status, Status::Completed as i32, "{id}: {}", st.reason);
    }
    assert_eq!(s.probe.starts().len(), 100);
    assert_eq!(
        s.probe.max_concurrent(),
        2,
        "the limit was reached and never passed"
    );
}

#[tokio::test]
async fn a_waiting_job_shows_its_limit_and_place_and_a_cancel_frees_the_line() {
    let s =
        with_limits(r#"[{"Name": "oneProbe", "Max": 1, "Count": "workflows", "Jobs": ["probe"]}]"#)
            .await;
    let c = s.client().await;
    let holder = start_probe(&c, 30_000).await;
    eventually("the first probe runs", || async {
        s.probe.starts_of(&holder).len() == 1
    })
    .await;
    let second = start_probe(&c, 0).await;
    let third = start_probe(&c, 0).await;
    let waiting = |id: String| {
        let c = c.clone();
        async move {
            c.status(&id).await.unwrap().blocks[0].jobs[0]
                .waiting_for
                .clone()
        }
    };
    eventually("both wait in line", || async {
        waiting(second.clone()).await.contains("position 1")
            && waiting(third.clone()).await.contains("position 2")
    })
    .await;
    let w = waiting(second.clone()).await;
    assert!(
        w.starts_with("limit oneProbe: position 1 in line, 1 of 1 in use, since "),
        "{w}"
    );
    let st = c.status(&second).await.unwrap();
    assert_eq!(st.blocks[0].jobs[0].status, Status::NotStarted as i32);
    let limits = s
        .control()
        .await
        .limits(v1::LimitsReq {})
        .await
        .unwrap()
        .into_inner();
    let l = &limits.limits[0];
    assert_eq!(
        (l.name.as_str(), l.max, l.count.as_str()),
        ("oneProbe", 1, "workflows")
    );
    assert_eq!(
        l.parts,
        [v1::LimitPart {
            part: String::new(),
            holders: vec![holder.clone()],
            waiting: 2
        }]
    );

    // Cancelling the holder lets the line move, in order.
    s.raw()
        .await
        .cancel(v1::CancelReq {
            id: holder.clone(),
            reason: "make room".into(),
        })
        .await
        .unwrap();
    for id in [&second, &third] {
        let st = wait_final(&c, id).await;
        assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
        assert!(st.blocks[0].jobs[0].waiting_for.is_empty());
    }
    let order: Vec<_> = s.probe.starts().into_iter().map(|s| s.0).collect();
    assert_eq!(order, [holder, second, third]);
}

fn spawn(dir: &Path) -> Daemon {
    DaemonSpec::new(interlockd!(), dir)
        .args(["--drain", "100ms"])
        .spawn()
        .expect("interlockd starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_holds_across_a_sigkill_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    drop(DaemonSpec::new(interlockd!(), dir.path())); // copies the shipped configs
    interlock_tests::admit_x(&configs);
    std::fs::write(
        configs.join("limits.json"),
        r#"[{"Name": "twoSleeps", "Max": 2, "Count": "jobs", "Jobs": ["sleep"]}]"#,
    )
    .unwrap();

    let mut d = spawn(dir.path());
    let c = d.client().await;
    let mut ids = Vec::new();
    for _ in 0..100 {
        let id = c
            .submit(req::work(
                "x",
                vec![req::block(
                    1,
                    vec![req::job("sleep", &[("seconds", "0.05")])],
                )],
            ))
            .await
            .unwrap();
        c.exec(&id).await.unwrap();
        ids.push(id);
    }
    // Some have run, two are in flight, most wait: kill it mid-way.
    eventually("a few have completed", || async {
        let mut done = 0;
        for id in &ids[..20] {
            if c.status(id).await.unwrap().status == Status::Completed as i32 {
                done += 1;
            }
        }
        done >= 4
    })
    .await;
    d.kill();

    let d = spawn(dir.path());
    let c = d.client().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut finals = Vec::new();
    for id in &ids {
        loop {
            let st = c.status(id).await.unwrap();
            if interlock_client::is_final(st.status) {
                assert_eq!(st.status, Status::Completed as i32, "{id}: {}", st.reason);
                finals.push(st);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id} still {} after restart",
                st.status
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(
        max_overlap(&finals),
        2,
        "at most two sleeps at once, before, across and after the kill"
    );
    drop(d);
}

#[tokio::test]
async fn a_job_paused_while_in_line_starts_after_resume_not_before() {
    let s = with_limits(r#"[{"Name": "oneProbe", "Max": 1, "Count": "jobs", "Jobs": ["probe"]}]"#)
        .await;
    let c = s.client().await;
    let mut raw = s.raw().await;
    let holder = start_probe(&c, 1_000).await;
    eventually("the holder runs", || async {
        s.probe.starts_of(&holder).len() == 1
    })
    .await;
    let queued = start_probe(&c, 0).await;
    eventually("the second waits in line", || async {
        !c.status(&queued).await.unwrap().blocks[0].jobs[0]
            .waiting_for
            .is_empty()
    })
    .await;
    raw.pause(v1::PauseReq {
        id: queued.clone(),
        reason: "look first".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        wait_final(&c, &holder).await.status,
        Status::Completed as i32
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        s.probe.starts_of(&queued).is_empty(),
        "a paused workflow's job does not start when the slot frees"
    );
    raw.resume(v1::ResumeReq { id: queued.clone() })
        .await
        .unwrap();
    let st = wait_final(&c, &queued).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    assert_eq!(s.probe.starts_of(&queued).len(), 1);
}

#[tokio::test]
async fn a_server_started_with_a_broken_limits_json_starts_no_job_until_it_is_fixed() {
    let s = with_limits(r#"[{"Name": "twoProbes", "Max": 2, "Count": "jobz"}]"#).await;
    let c = s.client().await;
    let id = start_probe(&c, 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        s.probe.starts_of(&id).is_empty(),
        "which jobs fall under a limit is unknown: none starts"
    );
    let limits = s
        .control()
        .await
        .limits(v1::LimitsReq {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        limits
            .last_error
            .contains("no job starts until it is fixed"),
        "{}",
        limits.last_error
    );
    interlock_tests::write_config(&s.config_path("limits.json"), TWO_PROBES);
    let st = wait_final(&c, &id).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
}
