//! The diskerase workflow end to end on the shipped inventory and buckets.

use interlock_proto::v1::Status;
use interlock_tests::{TestServer, req, wait_final};

fn machines(site: &str) -> Vec<String> {
    (0..8).map(|i| format!("{site}{i:02}")).collect()
}

async fn erase(s: &TestServer, site: &str) -> (String, interlock_proto::v1::StatusResp) {
    let ms = machines(site);
    let refs: Vec<&str> = ms.iter().map(String::as_str).collect();
    let c = s.client().await;
    let id = c.submit(req::satellite_erase(site, &refs)).await.unwrap();
    c.exec(&id).await.unwrap();
    (id.clone(), wait_final(&c, &id).await)
}

fn erase_jobs(st: &interlock_proto::v1::StatusResp) -> Vec<i32> {
    st.blocks
        .iter()
        .flat_map(|b| &b.jobs)
        .filter(|j| j.name == "diskErase")
        .map(|j| j.status)
        .collect()
}

#[tokio::test]
async fn happy_path_on_a_decom_satellite() {
    let s = TestServer::start().await;
    let (_, st) = erase(&s, "aab").await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    assert!(!st.had_errors);
    let jobs = erase_jobs(&st);
    assert_eq!(jobs.len(), 8);
    assert!(jobs.iter().all(|s| *s == Status::Completed as i32));
    let found = &st.blocks[0].jobs[0].outputs;
    assert_eq!(found["status"], "decom");
    assert_eq!(found["type"], "satellite");
}

#[tokio::test]
async fn non_satellite_and_non_decom_sites_fail_in_block_one_without_spending_the_token() {
    let s = TestServer::start().await;
    // aad: in-service cluster; aal: decom cluster; aaa: in-service satellite;
    // aac: removed satellite.
    for site in ["aad", "aal", "aaa", "aac"] {
        let (_, st) = erase(&s, site).await;
        assert_eq!(st.status, Status::Failed as i32, "{site}");
        assert_eq!(st.blocks[0].jobs[0].status, Status::Failed as i32);
        assert_eq!(
            st.blocks[0].jobs[1].status,
            Status::NotStarted as i32,
            "{site}: token not spent"
        );
        assert!(
            erase_jobs(&st)
                .iter()
                .all(|s| *s == Status::NotStarted as i32)
        );
    }
    // The token is still there for a valid site.
    let (_, st) = erase(&s, "aab").await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
}

#[tokio::test]
async fn a_second_erase_within_the_refill_window_is_denied_by_the_bucket() {
    let s = TestServer::start().await;
    let (_, first) = erase(&s, "aab").await;
    assert_eq!(first.status, Status::Completed as i32);
    let (_, second) = erase(&s, "aae").await;
    assert_eq!(second.status, Status::Failed as i32);
    let bucket_job = &second.blocks[0].jobs[1];
    assert_eq!(bucket_job.status, Status::Failed as i32);
    assert!(bucket_job.fatal);
    assert!(
        bucket_job.error.contains("next token in"),
        "{}",
        bucket_job.error
    );
    assert!(
        erase_jobs(&second)
            .iter()
            .all(|s| *s == Status::NotStarted as i32)
    );
}

#[tokio::test]
async fn a_machine_from_another_site_is_refused_at_submit() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let r = req::work(
        "x",
        vec![req::block(
            1,
            vec![req::job(
                "diskErase",
                &[("machine", "aae00"), ("site", "aab")],
            )],
        )],
    );
    let v = c.validate(r.clone()).await.unwrap();
    assert!(!v.ok);
    assert!(
        v.violations[0]
            .message
            .contains("is not at site \"aab\" (it is at \"aae\")"),
        "{:?}",
        v.violations
    );
    let e = s.raw().await.submit(r).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("(it is at \"aae\")"),
        "{}",
        e.message()
    );
}
