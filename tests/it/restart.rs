//! A restart keeps every record readable, and buckets stay spent.

use interlock_proto::v1::Status;
use interlock_tests::{TestServer, req, wait_final};

#[tokio::test]
async fn restart_keeps_every_record_and_bucket_spends() {
    let mut s = TestServer::start().await;
    let c = s.client().await;
    let done = {
        let ms: Vec<String> = (0..3).map(|i| format!("aab{i:02}")).collect();
        let refs: Vec<&str> = ms.iter().map(String::as_str).collect();
        let id = c.submit(req::satellite_erase("aab", &refs)).await.unwrap();
        c.exec(&id).await.unwrap();
        assert_eq!(wait_final(&c, &id).await.status, Status::Completed as i32);
        id
    };
    let pending = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap();
    let before_done = c.status(&done).await.unwrap();

    s.restart().await;
    let c = s.client().await;
    assert_eq!(
        c.status(&done).await.unwrap(),
        before_done,
        "identical record after restart"
    );
    assert_eq!(
        c.status(&pending).await.unwrap().status,
        Status::NotStarted as i32
    );
    // The unstarted one can still run.
    c.exec(&pending).await.unwrap();
    assert_eq!(
        wait_final(&c, &pending).await.status,
        Status::Completed as i32
    );

    // The erase token spent before the restart is still spent.
    let ms = ["aae00"];
    let id = c.submit(req::satellite_erase("aae", &ms)).await.unwrap();
    c.exec(&id).await.unwrap();
    let st = wait_final(&c, &id).await;
    assert_eq!(st.status, Status::Failed as i32);
    assert!(
        st.blocks[0].jobs[1].error.contains("is empty"),
        "{}",
        st.blocks[0].jobs[1].error
    );
}
