//! Token buckets over the real server: exclusivity under concurrency and
//! inspection.

use interlock_proto::v1::{self, Status};
use interlock_tests::{TestServer, req, wait_final};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_workflows_on_a_capacity_one_bucket_let_exactly_one_through() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let mut ids = Vec::new();
    for _ in 0..50 {
        let r = req::work(
            "x",
            vec![req::block(
                1,
                vec![req::job(
                    "tokenBucket",
                    &[("bucket", "diskEraseSatellite"), ("fatal", "false")],
                )],
            )],
        );
        ids.push(c.submit(r).await.unwrap());
    }
    let mut tasks = Vec::new();
    for id in &ids {
        let (c, id) = (c.clone(), id.clone());
        tasks.push(tokio::spawn(async move { c.exec(&id).await.unwrap() }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut completed = 0;
    for id in &ids {
        let st = wait_final(&c, id).await;
        if st.status == Status::Completed as i32 {
            completed += 1;
        } else {
            assert!(
                st.blocks[0].jobs[0].error.contains("next token in"),
                "{}",
                st.blocks[0].jobs[0].error
            );
        }
    }
    assert_eq!(completed, 1);
    let levels = s
        .control()
        .await
        .buckets(v1::BucketsReq {})
        .await
        .unwrap()
        .into_inner();
    let b = levels
        .buckets
        .iter()
        .find(|b| b.name == "diskEraseSatellite")
        .unwrap();
    assert_eq!((b.capacity, b.available), (1, 0));
    let next = b.next_token_in.as_ref().unwrap().seconds;
    assert!((1790..=1800).contains(&next), "{next}");
}

#[tokio::test]
async fn bucket_definitions_reload_and_a_bad_file_keeps_the_last_good_set() {
    let s = TestServer::start().await;
    let path = s.config_path("buckets.json");
    let levels = || async {
        s.control()
            .await
            .buckets(v1::BucketsReq {})
            .await
            .unwrap()
            .into_inner()
    };
    interlock_tests::write_config(
        &path,
        r#"[{"Name": "diskEraseSatellite", "Capacity": 3, "Refill": 1, "Period": "10m"}]"#,
    );
    interlock_tests::eventually("capacity 3", || async {
        levels().await.buckets[0].capacity == 3
    })
    .await;
    assert_eq!(levels().await.buckets[0].available, 3);
    std::fs::write(&path, "[{").unwrap();
    interlock_tests::eventually("error reported", || async {
        !levels().await.last_error.is_empty()
    })
    .await;
    assert_eq!(levels().await.buckets[0].capacity, 3, "last good set kept");
}
