//! The emergency stop over the real server: running work stops, new work is
//! refused, the file fails closed, and flips can follow each other forever.

use interlock_proto::v1::{self, Status};
use interlock_tests::{TestServer, eventually, req, wait_final, write_config};
use std::time::Duration;
use tonic::Code;

const GO: &str =
    r#"[{"Name": "SatelliteDiskErase", "Status": "go"}, {"Name": "x", "Status": "go"}]"#;
const STOP_X: &str = r#"[{"Name": "SatelliteDiskErase", "Status": "go"},
  {"Name": "x", "Status": "stop", "Reason": "incident 42: disks vanishing"}]"#;
const STOP_ALL: &str =
    r#"[{"Name": "*", "Status": "stop", "Reason": "freeze"}, {"Name": "x", "Status": "go"}]"#;

async fn es_state(s: &TestServer) -> v1::EmergencyStopStateResp {
    s.control()
        .await
        .emergency_stop_state(v1::EmergencyStopStateReq {})
        .await
        .unwrap()
        .into_inner()
}

async fn x_stopped(s: &TestServer) -> bool {
    let st = es_state(s).await;
    !st.error.is_empty()
        || st
            .entries
            .iter()
            .any(|e| (e.name == "x" || e.name == "*") && e.stop)
}

/// A running workflow of probes: block 0 runs 2 long probes at a time, then more.
async fn start_long(s: &TestServer) -> String {
    let c = s.client().await;
    let id = c
        .submit(req::work(
            "x",
            vec![
                req::block(2, (0..6).map(|_| req::probe(30_000)).collect()),
                req::block(1, vec![req::probe(0)]),
            ],
        ))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    eventually("two probes running", || async {
        s.probe.starts_of(&id).len() == 2
    })
    .await;
    id
}

async fn assert_stopped(s: &TestServer, id: &str, reason_part: &str) {
    let st = wait_final(&s.client().await, id).await;
    assert_eq!(st.status, Status::Stopped as i32, "{}", st.reason);
    assert!(st.was_es_stopped);
    assert!(
        st.reason.contains(reason_part),
        "{} lacks {reason_part:?}",
        st.reason
    );
    let jobs = &st.blocks[0].jobs;
    assert_eq!(jobs[0].status, Status::Stopped as i32);
    assert_eq!(jobs[1].status, Status::Stopped as i32);
    assert!(
        jobs[2..]
            .iter()
            .all(|j| j.status == Status::NotStarted as i32)
    );
    assert_eq!(st.blocks[1].status, Status::NotStarted as i32);
    assert_eq!(
        s.probe.starts_of(id).len(),
        2,
        "no job started after the stop"
    );
}

#[tokio::test]
async fn stop_halts_running_work_and_refuses_new_work_until_go() {
    let s = TestServer::start().await;
    let id = start_long(&s).await;
    write_config(&s.config_path("es.json"), STOP_X);
    assert_stopped(&s, &id, "incident 42").await;
    assert_eq!(s.probe.cancelled(), 2, "running jobs observed cancellation");

    let c = s.client().await;
    let e = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition));
    assert!(e.to_string().contains("incident 42"), "{e}");

    // Go again: new work runs; stopped work stays stopped.
    write_config(&s.config_path("es.json"), GO);
    eventually("go in force", || async { !x_stopped(&s).await }).await;
    let id2 = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap();
    c.exec(&id2).await.unwrap();
    assert_eq!(wait_final(&c, &id2).await.status, Status::Completed as i32);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(c.status(&id).await.unwrap().status, Status::Stopped as i32);
    assert_eq!(s.probe.starts_of(&id).len(), 2);
}

/// A run stopped while its block's last job runs records the job's end,
/// the block's and its own in one commit (one commit per run is what a stop
/// of thousands waits for): Watch shows the three at one commit time.
#[tokio::test]
async fn a_stopped_runs_job_block_and_workflow_ends_are_one_commit() {
    use v1::watch_event::Event;
    let s = TestServer::start().await;
    let c = s.client().await;
    let id = c
        .submit(req::work(
            "x",
            vec![req::block(1, vec![req::probe(30_000)])],
        ))
        .await
        .unwrap();
    let mut stream = s.watch(&id).await;
    c.exec(&id).await.unwrap();
    eventually("the probe runs", || async {
        s.probe.starts_of(&id).len() == 1
    })
    .await;
    write_config(&s.config_path("es.json"), STOP_X);
    let mut stopped = Vec::new();
    let read = async {
        while let Some(ev) = stream.message().await.unwrap() {
            if let Some(Event::Transition(t)) = ev.event
                && t.status == Status::Stopped as i32
            {
                stopped.push(t);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the stream ends with the workflow");
    let keys: Vec<_> = stopped.iter().map(|t| (t.block, t.job)).collect();
    assert_eq!(keys, [(0, 0), (0, -1), (-1, -1)], "{stopped:?}");
    assert!(
        stopped.iter().all(|t| t.at == stopped[0].at),
        "recorded in one commit: {stopped:?}"
    );
}

#[tokio::test]
async fn exec_of_a_submitted_workflow_is_refused_while_stopped() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let id = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap();
    write_config(&s.config_path("es.json"), STOP_X);
    eventually("stop in force", || x_stopped(&s)).await;
    let e = c.exec(&id).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition));
    assert!(s.probe.starts_of(&id).is_empty());
}

#[tokio::test]
async fn wildcard_stop_stops_everything() {
    let s = TestServer::start().await;
    let id = start_long(&s).await;
    write_config(&s.config_path("es.json"), STOP_ALL);
    assert_stopped(&s, &id, "freeze").await;
}

#[tokio::test]
async fn missing_and_malformed_files_fail_closed() {
    for breakage in ["missing", "malformed", "no entry"] {
        let s = TestServer::start().await;
        let id = start_long(&s).await;
        let path = s.config_path("es.json");
        match breakage {
            "missing" => std::fs::remove_file(&path).unwrap(),
            "malformed" => write_config(&path, "[{\"Name\": \"x\", \"Status\": \"go\""),
            _ => write_config(&path, r#"[{"Name": "SatelliteDiskErase", "Status": "go"}]"#),
        }
        let reason = if breakage == "no entry" {
            "no entry for workflow"
        } else {
            "unusable"
        };
        assert_stopped(&s, &id, reason).await;
        let e = s
            .client()
            .await
            .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(Code::FailedPrecondition), "{breakage}");
    }
}

#[tokio::test]
async fn a_long_sequence_of_stop_go_malformed_and_fix_keeps_working() {
    // The ancestor stopped running new work after one stop, and stayed
    // stopped forever after a malformed file was fixed.
    let s = TestServer::start().await;
    let c = s.client().await;
    let path = s.config_path("es.json");
    for round in 0..8 {
        let text = match round % 4 {
            0 => STOP_X,
            1 => GO,
            2 => "{{{ not json",
            _ => GO,
        };
        write_config(&path, text);
        let want_stop = round % 4 == 0 || round % 4 == 2;
        eventually("state in force", || async {
            x_stopped(&s).await == want_stop
        })
        .await;
        let r = c
            .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
            .await;
        if want_stop {
            assert_eq!(
                r.unwrap_err().code(),
                Some(Code::FailedPrecondition),
                "round {round}"
            );
        } else {
            let id = r.unwrap();
            c.exec(&id).await.unwrap();
            assert_eq!(
                wait_final(&c, &id).await.status,
                Status::Completed as i32,
                "round {round}"
            );
        }
    }
}

#[tokio::test]
async fn the_set_rpc_writes_es_json_and_takes_effect() {
    let s = TestServer::start().await;
    let id = start_long(&s).await;
    let resp = s
        .control()
        .await
        .set_emergency_stop(v1::SetEmergencyStopReq {
            name: "x".into(),
            stop: true,
            reason: "operator says stop".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        resp.entries
            .iter()
            .any(|e| e.name == "x" && e.stop && e.reason == "operator says stop")
    );
    assert_stopped(&s, &id, "operator says stop").await;
    let text = std::fs::read_to_string(s.config_path("es.json")).unwrap();
    assert!(
        text.contains("SatelliteDiskErase"),
        "other entries kept: {text}"
    );
    let e = s
        .control()
        .await
        .set_emergency_stop(v1::SetEmergencyStopReq::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_server_started_with_broken_es_and_bucket_files_runs_and_fails_closed() {
    let s = TestServer::start_with(|c| {
        std::fs::write(c.configs.join("es.json"), "[{\"Name\": ").unwrap();
        std::fs::write(c.configs.join("buckets.json"), "{oops").unwrap();
    })
    .await;
    let st = es_state(&s).await;
    assert!(
        !st.error.is_empty(),
        "the state says why everything is stopped"
    );
    let e = s
        .client()
        .await
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition));
    let b = s
        .control()
        .await
        .buckets(v1::BucketsReq {})
        .await
        .unwrap()
        .into_inner();
    assert!(b.buckets.is_empty() && !b.last_error.is_empty(), "{b:?}");
    // Fixing es.json lets work through again.
    write_config(&s.config_path("es.json"), GO);
    eventually("go in force", || async { !x_stopped(&s).await }).await;
}

#[tokio::test]
async fn stop_during_a_diskerase_cancels_running_erases_and_starts_no_more() {
    let s = TestServer::start_with(|c| c.erase_duration = Duration::from_secs(30)).await;
    let c = s.client().await;
    let machines: Vec<String> = (0..8).map(|i| format!("aab{i:02}")).collect();
    let refs: Vec<&str> = machines.iter().map(String::as_str).collect();
    let id = c.submit(req::satellite_erase("aab", &refs)).await.unwrap();
    c.exec(&id).await.unwrap();
    let log = s.config.erase_target_path();
    eventually("first five erases running", || async {
        interlock_jobs::EraseTarget::events(&log).len() == 5
    })
    .await;
    write_config(
        &s.config_path("es.json"),
        r#"[{"Name": "SatelliteDiskErase", "Status": "stop", "Reason": "wrong site"}, {"Name": "x", "Status": "go"}]"#,
    );
    let st = wait_final(&c, &id).await;
    assert_eq!(st.status, Status::Stopped as i32);
    assert!(
        st.was_es_stopped && st.reason.contains("wrong site"),
        "{}",
        st.reason
    );
    assert!(
        st.blocks[1]
            .jobs
            .iter()
            .all(|j| j.status == Status::Stopped as i32)
    );
    assert!(
        st.blocks[2..]
            .iter()
            .all(|b| b.status == Status::NotStarted as i32)
    );
    let events = interlock_jobs::EraseTarget::events(&log);
    let count = |e: &str| events.iter().filter(|x| x.event == e).count();
    assert_eq!(
        (count("start"), count("abort"), count("done")),
        (5, 5, 0),
        "running erases aborted, none started after"
    );
}

/// The documented recovery after a stop, with the shipped policies: go
/// again, then clone the stopped workflow with only its unfinished jobs.
/// The clone keeps the pre-check block the shipped startOrEnd policy
/// requires (its completed jobs carried over, so the bucket is not taken
/// twice), and no machine is erased twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_stop_the_unfinished_part_is_cloned_and_completes() {
    let s = TestServer::start_with(|c| c.erase_duration = Duration::from_millis(300)).await;
    let c = s.client().await;
    let machines: Vec<String> = (0..8).map(|i| format!("aab{i:02}")).collect();
    let refs: Vec<&str> = machines.iter().map(String::as_str).collect();
    let id = c.submit(req::satellite_erase("aab", &refs)).await.unwrap();
    c.exec(&id).await.unwrap();
    let log = s.config.erase_target_path();
    eventually("erases running", || async {
        interlock_jobs::EraseTarget::events(&log).len() == 5
    })
    .await;
    let mut ctl = s.control().await;
    let set = |stop: bool| v1::SetEmergencyStopReq {
        name: "SatelliteDiskErase".into(),
        stop,
        reason: "wrong rack".into(),
        ..Default::default()
    };
    ctl.set_emergency_stop(set(true)).await.unwrap();
    assert_eq!(wait_final(&c, &id).await.status, Status::Stopped as i32);
    ctl.set_emergency_stop(set(false)).await.unwrap();
    let clone = v1::workflow_client::WorkflowClient::clone(
        &mut s.raw().await,
        v1::CloneReq {
            id: id.clone(),
            only_unfinished: true,
            ..Default::default()
        },
    )
    .await
    .expect("the shipped policies accept the clone")
    .into_inner()
    .id;
    c.exec(&clone).await.unwrap();
    let st = wait_final(&c, &clone).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    assert_eq!(
        st.blocks[0].jobs[1].status,
        Status::Skipped as i32,
        "the bucket take is carried over, not repeated"
    );
    let events = interlock_jobs::EraseTarget::events(&log);
    for m in &machines {
        let done = events
            .iter()
            .filter(|e| &e.machine == m && e.event == "done")
            .count();
        assert_eq!(done, 1, "{m} erased exactly once");
    }
}

/// Sets `x` to `mode` through the Control API (es.json on one server).
async fn set_x(s: &TestServer, mode: v1::EsMode) {
    s.control()
        .await
        .set_emergency_stop(v1::SetEmergencyStopReq {
            name: "x".into(),
            reason: format!("rack work ({})", mode.as_str_name()),
            mode: mode as i32,
            ..Default::default()
        })
        .await
        .unwrap();
}

/// A workflow of probes: block 0 runs two probes at a time, four in all
/// (the first two `first` and `second` ms long, the others short), then
/// block 1 runs one more.
async fn start_two_of_four(s: &TestServer, first: u64, second: u64) -> String {
    let c = s.client().await;
    let id = c
        .submit(req::work(
            "x",
            vec![
                req::block(
                    2,
                    vec![
                        req::probe(first),
                        req::probe(second),
                        req::probe(0),
                        req::probe(0),
                    ],
                ),
                req::block(1, vec![req::probe(0)]),
            ],
        ))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    eventually("two probes running", || async {
        s.probe.starts_of(&id).len() == 2
    })
    .await;
    id
}

#[tokio::test]
async fn drain_lets_jobs_in_flight_finish_and_starts_nothing_new() {
    let s = TestServer::start().await;
    // The first probe ends while the second still runs, so the next start
    // meets the drain with a job in flight.
    let id = start_two_of_four(&s, 2_000, 5_000).await;
    set_x(&s, v1::EsMode::Drain).await;

    // New work is refused at once, naming the drain.
    let c = s.client().await;
    let e = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition));
    assert!(e.to_string().contains("draining"), "{e}");
    let state = es_state(&s).await;
    let x = state.entries.iter().find(|e| e.name == "x").unwrap();
    assert_eq!((x.mode, x.stop), (v1::EsMode::Drain as i32, true));

    let st = wait_final(&c, &id).await;
    assert_eq!(st.status, Status::Stopped as i32, "{}", st.reason);
    assert_eq!(st.halted_by, v1::EsMode::Drain as i32);
    assert!(st.was_es_stopped, "the ancestor's flag covers drains too");
    assert!(st.reason.contains("emergency drain"), "{}", st.reason);
    let jobs = &st.blocks[0].jobs;
    assert_eq!(
        [jobs[0].status, jobs[1].status],
        [Status::Completed as i32; 2],
        "jobs in flight finished: {:?} {:?}",
        jobs[0].error,
        jobs[1].error
    );
    assert!(
        jobs[2..]
            .iter()
            .all(|j| j.status == Status::NotStarted as i32)
    );
    assert_eq!(st.blocks[0].status, Status::Stopped as i32);
    assert_eq!(st.blocks[1].status, Status::NotStarted as i32);
    assert_eq!(s.probe.starts_of(&id).len(), 2, "nothing new started");
    assert_eq!(s.probe.cancelled(), 0, "a drain cancels nothing");

    // Stop is still stop: it cancels what is in flight, also mid-drain.
    set_x(&s, v1::EsMode::Go).await;
    let id2 = start_two_of_four(&s, 30_000, 30_000).await;
    set_x(&s, v1::EsMode::Drain).await;
    set_x(&s, v1::EsMode::Stop).await;
    let st = wait_final(&c, &id2).await;
    assert_eq!(st.halted_by, v1::EsMode::Stop as i32, "{}", st.reason);
    assert!(st.reason.contains("emergency stop"), "{}", st.reason);
    assert_eq!(s.probe.cancelled(), 2);
}

#[tokio::test]
async fn go_before_the_next_job_start_lifts_a_drain_without_a_trace() {
    let s = TestServer::start().await;
    let id = start_two_of_four(&s, 4_000, 4_000).await;
    set_x(&s, v1::EsMode::Drain).await;
    set_x(&s, v1::EsMode::Go).await;
    let st = wait_final(&s.client().await, &id).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    assert_eq!(st.halted_by, v1::EsMode::Unspecified as i32);
    assert_eq!(s.probe.starts_of(&id).len(), 5);
}

#[tokio::test]
async fn a_drain_in_es_json_is_read_and_a_contradictory_request_is_refused() {
    let s = TestServer::start().await;
    write_config(
        &s.config_path("es.json"),
        r#"[{"Name": "*", "Status": "go"}, {"Name": "x", "Status": "drain", "Reason": "cable swap"}]"#,
    );
    eventually("drain in force", || async {
        es_state(&s)
            .await
            .entries
            .iter()
            .any(|e| e.name == "x" && e.mode == v1::EsMode::Drain as i32)
    })
    .await;
    let c = s.client().await;
    let e = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cable swap"), "{e}");

    let e = s
        .control()
        .await
        .set_emergency_stop(v1::SetEmergencyStopReq {
            name: "x".into(),
            stop: true,
            mode: v1::EsMode::Go as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("contradicts"), "{}", e.message());
    let text = std::fs::read_to_string(s.config_path("es.json")).unwrap();
    assert!(text.contains("drain"), "left as it was: {text}");
}
