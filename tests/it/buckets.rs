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

/// A request that takes from `bucket` with `key` (if any), then checks site
/// `site`.
fn keyed_take(bucket: &str, key: Option<&str>, site: &str) -> v1::WorkReq {
    let mut take = vec![("bucket", bucket), ("fatal", "true")];
    take.extend(key.map(|k| ("key", k)));
    req::work(
        "x",
        vec![
            req::block(1, vec![req::job("tokenBucket", &take)]),
            req::block(
                1,
                vec![req::job(
                    "validateDecom",
                    &[("site", site), ("type", "satellite")],
                )],
            ),
        ],
    )
}

#[tokio::test]
async fn a_keyed_bucket_allows_one_take_per_key_and_the_key_must_be_the_works() {
    let s = TestServer::start().await;
    interlock_tests::write_config(
        &s.config_path("buckets.json"),
        r#"[{"Name": "diskEraseSatellite", "Capacity": 1, "Refill": 1, "Period": "30m"},
            {"Name": "eraseSite", "Capacity": 1, "Refill": 1, "Period": "30m", "KeyArg": "site"}]"#,
    );
    let levels = || async {
        s.control()
            .await
            .buckets(v1::BucketsReq {})
            .await
            .unwrap()
            .into_inner()
            .buckets
    };
    interlock_tests::eventually("the keyed bucket is loaded", || async {
        levels().await.iter().any(|b| b.name == "eraseSite")
    })
    .await;
    let c = s.client().await;

    // Submit refuses a keyed take without a key, with a key that is not the
    // work's, and a key on an unkeyed bucket.
    for (bad, why) in [
        (keyed_take("eraseSite", None, "aab"), "add key="),
        (
            keyed_take("eraseSite", Some("aae"), "aab"),
            "does not match",
        ),
        (
            keyed_take("diskEraseSatellite", Some("aab"), "aab"),
            "is not keyed",
        ),
    ] {
        let e = c.submit(bad).await.unwrap_err();
        assert!(e.to_string().contains(why), "{why}: {e}");
    }

    // One take per site: aab and aae each get their token, aab again does not.
    let run = |site: &'static str| {
        let c = c.clone();
        async move {
            let id = c
                .submit(keyed_take("eraseSite", Some(site), site))
                .await
                .unwrap();
            c.exec(&id).await.unwrap();
            wait_final(&c, &id).await
        }
    };
    assert_eq!(run("aab").await.status, Status::Completed as i32);
    assert_eq!(run("aae").await.status, Status::Completed as i32);
    let again = run("aab").await;
    assert_eq!(again.status, Status::Failed as i32, "{}", again.reason);
    assert!(
        again.blocks[0].jobs[0].error.contains("next token in"),
        "{}",
        again.blocks[0].jobs[0].error
    );

    let keyed: Vec<_> = levels()
        .await
        .into_iter()
        .filter(|b| b.name == "eraseSite")
        .map(|b| (b.key_arg, b.key, b.available))
        .collect();
    assert_eq!(
        keyed,
        [
            ("site".to_string(), "aab".to_string(), 0),
            ("site".to_string(), "aae".to_string(), 0)
        ]
    );
}
