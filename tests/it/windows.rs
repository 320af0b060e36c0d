//! Change windows (the changeWindow policy) over the real server, on a
//! pinned clock: admission outside the window says when the next one
//! opens; a running workflow with pause-at-end pauses at its next job
//! start and resumes only inside a window.

use interlock_core::ManualClock;
use interlock_proto::v1::{self, Status};
use interlock_tests::{TestServer, eventually, req, wait_final};
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;

/// Tue 2026-12-01 10:00 in Europe/Berlin (09:00 UTC), in microseconds.
const TUESDAY_10_00: i64 = 1_796_115_600_000_000;

async fn office_hours(clock: Arc<ManualClock>) -> TestServer {
    TestServer::start_with_clock(clock, |c| {
        std::fs::write(
            c.configs.join("policies.json"),
            r#"[{"Name": "x", "Policies": [{"Name": "changeWindow", "Settings": {
                "TimeZone": "Europe/Berlin",
                "Allow": [{"Days": ["Mon", "Tue", "Wed", "Thu"], "From": "09:00", "To": "17:00"}],
                "Freezes": [{"From": "2026-12-23T00:00", "To": "2027-01-04T00:00", "Reason": "holidays"}],
                "PauseAtEnd": true}}]}]"#,
        )
        .unwrap();
    })
    .await
}

fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

#[tokio::test]
async fn outside_the_window_submit_says_when_the_next_one_opens() {
    let clock = ManualClock::new(TUESDAY_10_00);
    let s = office_hours(clock.clone()).await;
    let c = s.client().await;
    let w = || req::work("x", vec![req::block(1, vec![req::probe(0)])]);
    clock.advance(hours(6) + Duration::from_secs(50 * 60)); // 16:50
    let inside = c.submit(w()).await.unwrap();

    clock.advance(Duration::from_secs(40 * 60)); // 17:30
    let e = c.submit(w()).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition));
    let msg = e.to_string();
    assert!(
        msg.contains("outside its change window")
            && msg.contains("Tue 17:30 is outside the allowed windows")
            && msg.contains("the next window opens Wed 2026-12-02 09:00 Europe/Berlin"),
        "{msg}"
    );
    // Exec is admission too.
    let e = c.exec(&inside).await.unwrap_err();
    assert!(e.to_string().contains("next window opens"), "{e}");

    // Wed 23 Dec, 10:00: inside the weekly window, but frozen.
    clock.set(TUESDAY_10_00 + 22 * 24 * 3600 * 1_000_000);
    let e = c.submit(w()).await.unwrap_err();
    assert!(
        e.to_string().contains("holidays") && e.to_string().contains("opens Mon 2027-01-04 09:00"),
        "{e}"
    );
    // Validate says the same, storing nothing.
    let v = s.raw().await.validate(w()).await.unwrap().into_inner();
    assert!(!v.ok);
    assert!(
        v.violations.iter().any(|x| x.policy == "changeWindow"),
        "{v:?}"
    );
}

#[tokio::test]
async fn a_running_workflow_pauses_when_its_window_closes_and_resumes_in_the_next() {
    let clock = ManualClock::new(TUESDAY_10_00);
    let s = office_hours(clock.clone()).await;
    let c = s.client().await;
    let id = c
        .submit(req::work(
            "x",
            vec![
                req::block(1, vec![req::probe(1_500)]),
                req::block(1, vec![req::probe(0)]),
            ],
        ))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    eventually("the first probe runs", || async {
        s.probe.starts_of(&id).len() == 1
    })
    .await;
    // The window closes while the first job runs: it finishes, nothing new
    // starts, and the workflow is Paused saying why.
    clock.advance(hours(8)); // 18:00
    eventually("paused at the next job start", || async {
        c.status(&id).await.unwrap().status == Status::Paused as i32
    })
    .await;
    let st = c.status(&id).await.unwrap();
    assert_eq!(st.blocks[0].jobs[0].status, Status::Completed as i32);
    assert_eq!(st.blocks[1].jobs[0].status, Status::NotStarted as i32);
    assert!(
        st.reason.contains("change window of \"x\" closed")
            && st.reason.contains("opens Wed 2026-12-02 09:00"),
        "{}",
        st.reason
    );
    let mut raw = s.raw().await;
    let e = raw
        .resume(v1::ResumeReq { id: id.clone() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert_eq!(s.probe.starts_of(&id).len(), 1);

    clock.advance(hours(15) + Duration::from_secs(30 * 60)); // Wed 09:30
    raw.resume(v1::ResumeReq { id: id.clone() }).await.unwrap();
    let st = wait_final(&c, &id).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    assert_eq!(s.probe.starts_of(&id).len(), 2);
}
