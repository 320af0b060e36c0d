//! Executor semantics: ordering, rate limits, failure limits, fatal failures.

use interlock_proto::v1::{self, Status};
use interlock_tests::{TestServer, req, wait_final};
use std::time::Duration;

fn failing(ms: u64) -> v1::Job {
    req::job("probe", &[("ms", &ms.to_string()), ("fail", "true")])
}

fn fatal(ms: u64) -> v1::Job {
    req::job("probe", &[("ms", &ms.to_string()), ("fatal", "true")])
}

async fn run(s: &TestServer, r: v1::WorkReq) -> (String, v1::StatusResp) {
    let c = s.client().await;
    let id = c.submit(r).await.unwrap();
    c.exec(&id).await.unwrap();
    let st = wait_final(&c, &id).await;
    (id, st)
}

#[tokio::test]
async fn rate_limit_is_never_exceeded() {
    for (rate, jobs) in [(3, 12), (1, 4), (0, 3), (-5, 3)] {
        let s2 = TestServer::start().await;
        let (_, st) = run(
            &s2,
            req::work(
                "x",
                vec![req::block(
                    rate,
                    (0..jobs).map(|_| req::probe(20)).collect(),
                )],
            ),
        )
        .await;
        assert_eq!(st.status, Status::Completed as i32);
        let expected = rate.max(1) as usize;
        assert_eq!(s2.probe.max_concurrent(), expected, "rate_limit {rate}");
    }
}

#[tokio::test]
async fn blocks_run_strictly_in_order_and_jobs_start_in_list_order() {
    let s = TestServer::start().await;
    let (id, st) = run(
        &s,
        req::work(
            "x",
            vec![
                req::block(1, vec![req::probe(5), req::probe(1), req::probe(1)]),
                req::block(2, vec![req::probe(1), req::probe(1)]),
            ],
        ),
    )
    .await;
    assert_eq!(st.status, Status::Completed as i32);
    let starts = s.probe.starts_of(&id);
    assert_eq!(&starts[..3], &[(0, 0), (0, 1), (0, 2)]);
    assert!(starts[3..].iter().all(|(b, _)| *b == 1));
}

#[tokio::test]
async fn a_failing_precheck_with_rate_limit_1_stops_the_jobs_after_it() {
    let s = TestServer::start().await;
    let (id, st) = run(
        &s,
        req::work(
            "x",
            vec![
                req::block(1, vec![failing(1), req::probe(1), req::probe(1)]),
                req::block(5, vec![req::probe(1)]),
            ],
        ),
    )
    .await;
    assert_eq!(st.status, Status::Failed as i32);
    assert!(st.had_errors);
    assert!(
        st.reason.contains("block 0 job 0 (probe) failed"),
        "{}",
        st.reason
    );
    assert_eq!(
        s.probe.starts_of(&id),
        vec![(0, 0)],
        "nothing after the failed pre-check ran"
    );
    let b0 = &st.blocks[0];
    assert_eq!(b0.status, Status::Failed as i32);
    assert!(b0.has_error);
    assert_eq!(b0.jobs[0].status, Status::Failed as i32);
    assert_eq!(b0.jobs[0].error, "probe failed as asked");
    assert_eq!(b0.jobs[1].status, Status::NotStarted as i32);
    assert_eq!(
        st.blocks[1].status,
        Status::NotStarted as i32,
        "later block never started"
    );
}

#[tokio::test]
async fn max_failures_tolerates_that_many_and_halts_past_it() {
    let s = TestServer::start().await;
    // Two failures allowed: the workflow completes, with errors.
    let mut b = req::block(1, vec![failing(1), failing(1), req::probe(1)]);
    b.max_failures = 2;
    let (_, st) = run(
        &s,
        req::work("x", vec![b, req::block(1, vec![req::probe(1)])]),
    )
    .await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    assert!(st.had_errors);
    assert_eq!(st.blocks[0].failures, 2);
    assert_eq!(st.blocks[1].status, Status::Completed as i32);

    // One allowed, two happen: halts.
    let mut b = req::block(1, vec![failing(1), failing(1), req::probe(1)]);
    b.max_failures = 1;
    let (id, st) = run(
        &s,
        req::work("x", vec![b, req::block(1, vec![req::probe(1)])]),
    )
    .await;
    assert_eq!(st.status, Status::Failed as i32);
    assert!(
        st.reason.contains("allows 1 failure(s) and had 2"),
        "{}",
        st.reason
    );
    assert_eq!(s.probe.starts_of(&id), vec![(0, 0), (0, 1)]);
}

#[tokio::test]
async fn a_fatal_failure_cancels_running_siblings_and_the_rest() {
    let s = TestServer::start().await;
    let (id, st) = run(
        &s,
        req::work(
            "x",
            vec![
                req::block(
                    3,
                    vec![
                        req::probe(5_000),
                        fatal(10),
                        req::probe(5_000),
                        req::probe(1),
                    ],
                ),
                req::block(1, vec![req::probe(1)]),
            ],
        ),
    )
    .await;
    assert_eq!(st.status, Status::Failed as i32);
    assert!(st.reason.contains("fatal"), "{}", st.reason);
    let jobs = &st.blocks[0].jobs;
    assert_eq!(jobs[1].status, Status::Failed as i32);
    assert!(jobs[1].fatal);
    assert_eq!(jobs[0].status, Status::Cancelled as i32);
    assert_eq!(jobs[2].status, Status::Cancelled as i32);
    assert_eq!(jobs[3].status, Status::NotStarted as i32);
    assert_eq!(
        s.probe.cancelled(),
        2,
        "both running siblings saw cancellation"
    );
    assert_eq!(st.blocks[1].status, Status::NotStarted as i32);
    assert_eq!(s.probe.starts_of(&id).len(), 3);
}

#[tokio::test]
async fn timeouts_fail_the_job_and_retries_are_recorded() {
    let s = TestServer::start().await;
    let mut j = req::probe(5_000);
    j.timeout = Some(interlock_proto::pbjson_types::Duration {
        seconds: 0,
        nanos: 20_000_000,
    });
    j.retry = Some(v1::RetryPolicy {
        max_attempts: 3,
        initial_backoff: Some(interlock_proto::pbjson_types::Duration {
            seconds: 0,
            nanos: 1_000_000,
        }),
        max_backoff: Some(interlock_proto::pbjson_types::Duration {
            seconds: 0,
            nanos: 5_000_000,
        }),
    });
    let (_, st) = run(&s, req::work("x", vec![req::block(1, vec![j])])).await;
    assert_eq!(st.status, Status::Failed as i32);
    let job = &st.blocks[0].jobs[0];
    assert_eq!(job.attempts.len(), 3, "{job:?}");
    assert!(job.attempts.iter().all(|a| a.error.contains("timed out")));
    assert!(job.error.contains("timed out after 0.02s"), "{}", job.error);
}

#[tokio::test]
async fn the_workflow_deadline_cancels_it() {
    let s = TestServer::start().await;
    let mut r = req::work("x", vec![req::block(1, vec![req::probe(5_000)])]);
    r.deadline = Some(interlock_proto::pbjson_types::Duration {
        seconds: 0,
        nanos: 50_000_000,
    });
    let started = std::time::Instant::now();
    let (_, st) = run(&s, r).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(st.status, Status::Failed as i32);
    assert!(st.reason.contains("deadline"), "{}", st.reason);
    assert_eq!(st.blocks[0].jobs[0].status, Status::Cancelled as i32);
}

#[tokio::test]
async fn retries_apply_only_to_retryable_failures_of_jobs_safe_to_rerun() {
    let s = TestServer::start().await;
    let retry = Some(v1::RetryPolicy {
        max_attempts: 4,
        initial_backoff: Some(interlock_proto::pbjson_types::Duration {
            seconds: 0,
            nanos: 1_000_000,
        }),
        max_backoff: None,
    });
    let timeout = Some(interlock_proto::pbjson_types::Duration {
        seconds: 0,
        nanos: 10_000_000,
    });
    // A plain failure is not marked retryable: one attempt.
    let mut plain = failing(1);
    plain.retry = retry;
    // A timeout is retryable, but this job is not safe to run twice: one attempt.
    let mut unsafe_timeout = req::job("unsafeProbe", &[("ms", "5000")]);
    unsafe_timeout.retry = retry;
    unsafe_timeout.timeout = timeout;
    for (job, what) in [
        (plain, "non-retryable failure"),
        (unsafe_timeout, "unsafe job"),
    ] {
        let (_, st) = run(&s, req::work("x", vec![req::block(1, vec![job])])).await;
        assert_eq!(st.status, Status::Failed as i32, "{what}");
        assert_eq!(
            st.blocks[0].jobs[0].attempts.len(),
            1,
            "{what}: {:?}",
            st.blocks[0].jobs[0]
        );
    }
}
