//! Short ids: a unique prefix of a workflow id (as `interlock list` prints
//! it) names that workflow wherever an id is accepted; a prefix that fits
//! several is refused, saying so, rather than picking one.

use interlock_proto::v1;
use interlock_tests::{TestServer, eventually, req};
use tonic::Code;

async fn submit(c: &mut v1::workflow_client::WorkflowClient<tonic::transport::Channel>) -> String {
    c.submit(req::work(
        "x",
        vec![req::block(1, vec![req::probe(60_000)])],
    ))
    .await
    .unwrap()
    .into_inner()
    .id
}

fn common_prefix(a: &str, b: &str) -> String {
    a.chars()
        .zip(b.chars())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect()
}

#[tokio::test]
async fn a_unique_prefix_works_through_status_exec_and_cancel() {
    let s = TestServer::start().await;
    let mut c = s.raw().await;
    let id = submit(&mut c).await;
    let other = submit(&mut c).await;
    // One character past what the two share, and at least 13 (as `list`).
    let len = (common_prefix(&id, &other).len() + 1).max(13);
    let prefix = id[..len].to_string();
    assert!(!other.starts_with(&prefix));

    let st = c
        .status(v1::StatusReq { id: prefix.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.id, id, "Status answers with the full id");
    c.exec(v1::ExecReq { id: prefix.clone() }).await.unwrap();
    eventually("the probe runs", || async {
        !s.probe.starts_of(&id).is_empty()
    })
    .await;
    let r = c
        .cancel(v1::CancelReq {
            id: prefix.clone(),
            reason: "by prefix".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, v1::Status::Cancelled as i32);
    let status_of = |id: &str| {
        let mut c = c.clone();
        let id = id.to_string();
        async move {
            c.status(v1::StatusReq { id })
                .await
                .unwrap()
                .into_inner()
                .status
        }
    };
    assert_eq!(status_of(&id).await, v1::Status::Cancelled as i32);
    assert_eq!(
        status_of(&other).await,
        v1::Status::NotStarted as i32,
        "the other workflow is untouched"
    );
}

#[tokio::test]
async fn an_ambiguous_prefix_is_refused_as_ambiguous() {
    let s = TestServer::start().await;
    let mut c = s.raw().await;
    // UUIDv7 ids begin with the time, and their first 8 characters change
    // once every 65 s: of three made at once, two consecutive ones share
    // at least those.
    let ids = [
        submit(&mut c).await,
        submit(&mut c).await,
        submit(&mut c).await,
    ];
    let prefix = ids
        .windows(2)
        .map(|w| common_prefix(&w[0], &w[1]))
        .max_by_key(String::len)
        .unwrap();
    assert!(prefix.len() >= 8, "{ids:?}");
    let errors = [
        c.status(v1::StatusReq { id: prefix.clone() })
            .await
            .map(drop),
        c.exec(v1::ExecReq { id: prefix.clone() }).await.map(drop),
        c.cancel(v1::CancelReq {
            id: prefix.clone(),
            reason: String::new(),
        })
        .await
        .map(drop),
    ];
    for e in errors {
        let e = e.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        assert!(
            e.message()
                .starts_with(&format!("id prefix {prefix:?} is ambiguous: it matches ")),
            "{}",
            e.message()
        );
    }
    for id in &ids {
        let st = c
            .status(v1::StatusReq { id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            st.status,
            v1::Status::NotStarted as i32,
            "nothing was started"
        );
    }
}
