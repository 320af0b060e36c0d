//! Schedules end to end, on a pinned clock: a cron schedule fires once per
//! period across a restart; a fire during an e-stop is recorded as refused;
//! fires missed while the server was down are skipped or run once; a fire
//! while the previous workflow runs is skipped; a once-schedule fires once;
//! pause, resume, delete and who may do them.

use interlock_client::Client;
use interlock_core::ManualClock;
use interlock_proto::v1;
use interlock_tests::{TestServer, bearer, enable_auth, eventually, wait_final, write_config};
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;

/// 2026-12-01T10:00:30Z: half a minute past a five-minute mark.
const T0: i64 = 1_764_583_230_000_000;
const MIN: Duration = Duration::from_secs(60);

const PROBE: &str = r#"
name: probe-x
params:
  ms: {type: int, min: 0, max: 600000, default: 1}
workflow:
  name: x
  blocks: [{jobs: [{name: probe, args: {ms: "{{ms}}"}}]}]
"#;

async fn server() -> (TestServer, Arc<ManualClock>) {
    let clock = ManualClock::new(T0);
    let s = TestServer::start_with_clock(clock.clone(), |_| {}).await;
    let mut t = s.client().await.templates();
    t.apply_template(v1::ApplyTemplateReq { text: PROBE.into() })
        .await
        .unwrap();
    (s, clock)
}

fn every5(name: &str) -> v1::CreateScheduleReq {
    v1::CreateScheduleReq {
        name: name.into(),
        template: "probe-x".into(),
        cron: "*/5 * * * *".into(),
        ..Default::default()
    }
}

/// Workflows a schedule fired, oldest first.
async fn fired(s: &TestServer, name: &str) -> Vec<v1::WorkflowSummary> {
    let mut w = s
        .raw()
        .await
        .list(v1::ListReq {
            labels: [("interlock.schedule".to_string(), name.to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .workflows;
    w.reverse();
    w
}

async fn schedule(c: &Client, name: &str) -> v1::ScheduleInfo {
    c.schedules()
        .get_schedule(v1::GetScheduleReq { name: name.into() })
        .await
        .unwrap()
        .into_inner()
}

/// Waits until the schedule recorded a fire due at `due`.
async fn fire_recorded(c: &Client, name: &str, due: i64) -> v1::ScheduleInfo {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = schedule(c, name).await;
        if s.last_due.as_ref().map(|t| t.seconds * 1_000_000) == Some(due) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} records its fire due {due}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn mark(n: i64) -> i64 {
    // The n-th five-minute mark after T0.
    T0 - 30_000_000 + n * 300_000_000
}

#[tokio::test]
async fn a_cron_schedule_fires_once_per_period_across_a_restart() {
    let (mut s, clock) = server().await;
    let c = s.client().await;
    let created = c
        .schedules()
        .create_schedule(every5("every5"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.workflow, "x");
    assert_eq!(
        created.next_fire.as_ref().unwrap().seconds * 1_000_000,
        mark(1)
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(fired(&s, "every5").await.is_empty(), "nothing is due yet");

    clock.advance(5 * MIN);
    let first = fire_recorded(&c, "every5", mark(1)).await;
    assert!(
        first.last_outcome.starts_with("started "),
        "{}",
        first.last_outcome
    );
    let wf = fired(&s, "every5").await;
    assert_eq!(wf.len(), 1);
    assert_eq!(wf[0].id, first.last_workflow);
    let st = wait_final(&c, &first.last_workflow).await;
    assert_eq!(st.status, v1::Status::Completed as i32);
    // The schedule's creator submitted it (and may not approve it).
    assert_eq!(st.submitted_by, created.created_by);
    assert_eq!(st.executed_by, created.created_by);
    assert_eq!(st.labels["interlock.template"], "probe-x");

    clock.advance(5 * MIN);
    fire_recorded(&c, "every5", mark(2)).await;
    // Restart in the middle: the next period fires once, the past ones not again.
    s.restart().await;
    let c = s.client().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fired(&s, "every5").await.len(), 2);
    clock.advance(5 * MIN);
    fire_recorded(&c, "every5", mark(3)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let wf = fired(&s, "every5").await;
    assert_eq!(wf.len(), 3, "one workflow per period: {wf:?}");
    let audit = s.audit_log().await;
    let fires = audit
        .iter()
        .filter(|e| e.action == "schedule.fire" && e.target == "every5")
        .count();
    assert_eq!(fires, 3);
}

#[tokio::test]
async fn a_fire_during_an_estop_is_recorded_as_refused_and_not_retried() {
    let (s, clock) = server().await;
    let c = s.client().await;
    c.schedules()
        .create_schedule(every5("stopped"))
        .await
        .unwrap();
    write_config(
        &s.config_path("es.json"),
        r#"[{"Name": "x", "Status": "stop", "Reason": "rack work"}, {"Name": "SatelliteDiskErase", "Status": "go"}]"#,
    );
    eventually("the stop is in force", || async {
        c.validate(interlock_tests::req::work(
            "x",
            vec![interlock_tests::req::block(
                1,
                vec![interlock_tests::req::probe(1)],
            )],
        ))
        .await
        .is_ok_and(|v| v.estop_mode == v1::EsMode::Stop as i32)
    })
    .await;
    clock.advance(5 * MIN);
    let f = fire_recorded(&c, "stopped", mark(1)).await;
    assert!(
        f.last_outcome.starts_with("refused: "),
        "{}",
        f.last_outcome
    );
    assert!(
        f.last_outcome.contains("emergency-stopped"),
        "{}",
        f.last_outcome
    );
    assert!(f.last_workflow.is_empty());
    assert_eq!(
        f.next_fire.as_ref().unwrap().seconds * 1_000_000,
        mark(2),
        "not retried"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(fired(&s, "stopped").await.is_empty());
    let refused = s
        .audit_log()
        .await
        .into_iter()
        .find(|e| e.action == "schedule.fire" && e.target == "stopped")
        .unwrap();
    assert_eq!(refused.outcome, "refused");
    assert_eq!(refused.identity, "schedule:stopped");
}

#[tokio::test]
async fn fires_missed_while_down_are_skipped_or_run_once() {
    let (mut s, clock) = server().await;
    let c = s.client().await;
    c.schedules()
        .create_schedule(every5("skips"))
        .await
        .unwrap();
    c.schedules()
        .create_schedule(v1::CreateScheduleReq {
            missed: "runOnce".into(),
            ..every5("catches-up")
        })
        .await
        .unwrap();
    s.stop().await;
    clock.advance(62 * MIN); // the marks 1..=12 pass while down
    s.boot_again().await;
    let c = s.client().await;
    let skipped = fire_recorded(&c, "skips", mark(1)).await;
    assert!(
        skipped.last_outcome.contains("missed 12 fire(s)")
            && skipped.last_outcome.contains("skipped"),
        "{}",
        skipped.last_outcome
    );
    assert_eq!(
        skipped.next_fire.as_ref().unwrap().seconds * 1_000_000,
        mark(13)
    );
    let caught = fire_recorded(&c, "catches-up", mark(1)).await;
    assert!(
        caught.last_outcome.contains("ran once"),
        "{}",
        caught.last_outcome
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(fired(&s, "skips").await.is_empty());
    assert_eq!(fired(&s, "catches-up").await.len(), 1);
}

#[tokio::test]
async fn overlap_once_and_pause_resume_delete() {
    let (s, clock) = server().await;
    let c = s.client().await;
    let mut sc = c.schedules();
    // A long workflow: the next fire finds it running and skips.
    sc.create_schedule(v1::CreateScheduleReq {
        params: [("ms".to_string(), "600000".to_string())].into(),
        ..every5("long")
    })
    .await
    .unwrap();
    clock.advance(5 * MIN);
    let first = fire_recorded(&c, "long", mark(1)).await;
    clock.advance(5 * MIN);
    let second = fire_recorded(&c, "long", mark(2)).await;
    assert!(
        second.last_outcome.starts_with(&format!(
            "skipped: workflow {} of an earlier fire is still Running",
            first.last_workflow
        )),
        "{}",
        second.last_outcome
    );
    c.raw()
        .cancel(v1::CancelReq {
            id: first.last_workflow.clone(),
            reason: "test".into(),
        })
        .await
        .unwrap();

    // Once: fires at its time, then has no next fire.
    let at = interlock_proto::pbjson_types::Timestamp {
        seconds: mark(3) / 1_000_000 + 60,
        nanos: 0,
    };
    let once = sc
        .create_schedule(v1::CreateScheduleReq {
            name: "once".into(),
            template: "probe-x".into(),
            at: Some(at),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(once.next_fire, Some(at));
    let e = sc
        .create_schedule(v1::CreateScheduleReq {
            name: "past".into(),
            template: "probe-x".into(),
            at: Some(interlock_proto::pbjson_types::Timestamp {
                seconds: T0 / 1_000_000 - 60,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("would never fire"), "{}", e.message());
    let e = sc.create_schedule(every5("long")).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let e = sc
        .create_schedule(v1::CreateScheduleReq {
            cron: "61 * * * *".into(),
            ..every5("bad")
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("minute field"), "{}", e.message());

    // Paused: no fire; resumed: from the next time due, no catching up.
    let paused = sc
        .pause_schedule(v1::PauseScheduleReq {
            name: "long".into(),
            paused: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(paused.paused);
    clock.advance(6 * MIN); // mark 3 and the once-time pass
    let o = fire_recorded(&c, "once", at.seconds * 1_000_000).await;
    assert!(o.last_outcome.starts_with("started "), "{}", o.last_outcome);
    assert_eq!(o.next_fire, None);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        schedule(&c, "long").await.last_due,
        second.last_due,
        "paused: no fire"
    );
    let resumed = sc
        .pause_schedule(v1::PauseScheduleReq {
            name: "long".into(),
            paused: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resumed.next_fire.as_ref().unwrap().seconds * 1_000_000,
        mark(4)
    );
    sc.delete_schedule(v1::DeleteScheduleReq {
        name: "long".into(),
    })
    .await
    .unwrap();
    let e = sc
        .get_schedule(v1::GetScheduleReq {
            name: "long".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

const RBAC: &str = r#"{
  "roles": {
    "author": [{"actions": ["template"], "workflows": ["*"]}],
    "operator": [{"actions": ["read", "submit", "exec"], "workflows": ["x"]}],
    "submitter": [{"actions": ["read", "submit"], "workflows": ["x"]}],
    "viewer": [{"actions": ["read"], "workflows": ["*"]}]
  },
  "bindings": [
    {"identity": "token:author", "roles": ["author"]},
    {"identity": "token:operator", "roles": ["operator"]},
    {"identity": "token:submitter", "roles": ["submitter"]},
    {"identity": "token:viewer", "roles": ["viewer"]}
  ]
}"#;

#[tokio::test]
async fn creating_a_schedule_needs_what_running_its_template_needs() {
    let tokens = [
        ("author", "author-token-1234567"),
        ("operator", "operator-token-1234567"),
        ("submitter", "submitter-token-1234567"),
        ("viewer", "viewer-token-1234567"),
    ];
    let s = TestServer::start_with(|c| enable_auth(c, &tokens, RBAC)).await;
    let channel = s.transport_with(Default::default()).await.unwrap();
    v1::templates_client::TemplatesClient::new(channel.clone())
        .apply_template(bearer(
            "author-token-1234567",
            v1::ApplyTemplateReq { text: PROBE.into() },
        ))
        .await
        .unwrap();
    let mut sc = v1::schedules_client::SchedulesClient::new(channel);
    for who in [
        "author-token-1234567",
        "viewer-token-1234567",
        "submitter-token-1234567",
    ] {
        let e = sc
            .create_schedule(bearer(who, every5("s")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{who}: {e:?}");
    }
    // Submit only needs no exec grant.
    sc.create_schedule(bearer(
        "submitter-token-1234567",
        v1::CreateScheduleReq {
            no_exec: true,
            ..every5("submits")
        },
    ))
    .await
    .unwrap();
    sc.create_schedule(bearer("operator-token-1234567", every5("runs")))
        .await
        .unwrap();
    let listed = sc
        .list_schedules(bearer("viewer-token-1234567", v1::ListSchedulesReq {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.schedules.len(), 2);
    let e = sc
        .delete_schedule(bearer(
            "viewer-token-1234567",
            v1::DeleteScheduleReq {
                name: "runs".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = sc
        .get_schedule(bearer(
            "author-token-1234567",
            v1::GetScheduleReq {
                name: "runs".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::NotFound,
        "a schedule the caller may not read is not there"
    );
}

#[tokio::test]
async fn a_creator_whose_grants_are_revoked_fires_nothing() {
    let tokens = [
        ("author", "author-token-1234567"),
        ("operator", "operator-token-1234567"),
    ];
    let clock = ManualClock::new(T0);
    let s = TestServer::start_with_clock(clock.clone(), |c| enable_auth(c, &tokens, RBAC)).await;
    let channel = s.transport_with(Default::default()).await.unwrap();
    v1::templates_client::TemplatesClient::new(channel.clone())
        .apply_template(bearer(
            "author-token-1234567",
            v1::ApplyTemplateReq { text: PROBE.into() },
        ))
        .await
        .unwrap();
    let mut sc = v1::schedules_client::SchedulesClient::new(channel);
    sc.create_schedule(bearer("operator-token-1234567", every5("runs")))
        .await
        .unwrap();
    // The operator loses exec on x.
    write_config(
        &s.config_path("rbac.json"),
        &RBAC.replace(
            r#""actions": ["read", "submit", "exec"]"#,
            r#""actions": ["read", "submit"]"#,
        ),
    );
    let get = || {
        let mut sc = sc.clone();
        async move {
            sc.get_schedule(bearer(
                "operator-token-1234567",
                v1::GetScheduleReq {
                    name: "runs".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
        }
    };
    // Wait for the reload: creating a schedule that execs is refused now.
    eventually("the revocation is in force", || {
        let mut sc = sc.clone();
        async move {
            sc.create_schedule(bearer("operator-token-1234567", every5("probe")))
                .await
                .is_err_and(|e| e.code() == Code::PermissionDenied)
        }
    })
    .await;
    clock.advance(5 * MIN);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let fired = loop {
        let f = get().await;
        if f.last_due.is_some() {
            break f;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no fire recorded: {f:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        fired
            .last_outcome
            .starts_with("refused: the schedule's creator token:operator may no longer run it"),
        "{}",
        fired.last_outcome
    );
    assert!(fired.last_workflow.is_empty());
}
