//! Overload, bounded: far more concurrent Submits than the server admits.
//! Every reply is OK or RESOURCE_EXHAUSTED (never a hang, never another
//! error), and service is normal right after. The 20-second version with
//! its rates and memory bound is `interlock-bench overload`.

use interlock_tests::{TestServer, req};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reply_is_ok_or_resource_exhausted_and_service_resumes() {
    let s = TestServer::start_with(|c| c.max_in_flight = 32).await;
    // Several connections, as many clients would open.
    let mut channels = Vec::new();
    for _ in 0..8 {
        channels.push(s.raw().await);
    }
    let until = Instant::now() + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for i in 0..512 {
        let mut c = channels[i % channels.len()].clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut exhausted) = (0u32, 0u32);
            while Instant::now() < until {
                let r = req::work("x", vec![req::block(1, vec![req::probe(0)])]);
                match c.submit(r).await {
                    Ok(_) => ok += 1,
                    Err(e) if e.code() == tonic::Code::ResourceExhausted => exhausted += 1,
                    Err(e) => panic!("unexpected reply under overload: {e}"),
                }
            }
            (ok, exhausted)
        }));
    }
    let (mut ok, mut exhausted) = (0, 0);
    for t in tasks {
        let (o, e) = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("no call hangs")
            .unwrap();
        ok += o;
        exhausted += e;
    }
    assert!(ok > 0 && exhausted > 0, "ok {ok}, exhausted {exhausted}");
    // Right after: normal service.
    let c = s.client().await;
    let started = Instant::now();
    let id = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .expect("served");
    c.exec(&id).await.unwrap();
    assert_eq!(
        interlock_tests::wait_final(&c, &id).await.status,
        interlock_proto::v1::Status::Completed as i32
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
