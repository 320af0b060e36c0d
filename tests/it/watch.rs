//! Watch over the real server: from before Exec, mid-run and after the
//! end; many watchers; a slow watcher; a watch during shutdown.

use crate::lifecycle::{six, started};
use interlock_proto::v1::{self, Status, watch_event::Event};
use interlock_tests::{TestServer, eventually, req, wait_final};
use std::time::Duration;

async fn collect(s: &TestServer, id: &str) -> Vec<v1::WatchEvent> {
    let mut stream = s
        .raw()
        .await
        .watch(v1::WatchReq {
            id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    let wait = async {
        while let Some(ev) = stream.message().await.unwrap() {
            out.push(ev);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("stream ends");
    out
}

fn final_status(events: &[v1::WatchEvent]) -> i32 {
    match events.last().and_then(|e| e.event.as_ref()) {
        Some(Event::Transition(t)) => {
            assert_eq!((t.block, t.job), (-1, -1), "last event is the workflow's");
            t.status
        }
        Some(Event::Snapshot(s)) => s.status,
        Some(Event::Log(l)) => panic!("a log line last: {l:?}"),
        None => panic!("no events"),
    }
}

#[tokio::test]
async fn watch_from_the_start_the_middle_and_after_the_end() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let id = c.submit(req::work("x", six(50))).await.unwrap();
    // From before Exec: snapshot NotStarted, then every transition.
    let (subscribed, ready) = tokio::sync::oneshot::channel();
    let early = tokio::spawn({
        let s_addr = s.addr();
        let id = id.clone();
        async move {
            let mut c = v1::workflow_client::WorkflowClient::connect(s_addr)
                .await
                .unwrap();
            let mut st = c
                .watch(v1::WatchReq {
                    id,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let mut out = Vec::new();
            let mut subscribed = Some(subscribed);
            while let Some(ev) = st.message().await.unwrap() {
                out.push(ev);
                // The first snapshot is read after the server subscribed.
                if let Some(tx) = subscribed.take() {
                    let _ = tx.send(());
                }
            }
            out
        }
    });
    ready.await.unwrap();
    c.exec(&id).await.unwrap();
    eventually("middle", || async { s.probe.starts_of(&id).len() >= 3 }).await;
    let middle = collect(&s, &id).await;
    let early = early.await.unwrap();
    for events in [&early, &middle] {
        assert!(
            matches!(events[0].event, Some(Event::Snapshot(_))),
            "starts with a snapshot"
        );
        assert_eq!(final_status(events), Status::Completed as i32);
    }
    let job_done = early
        .iter()
        .filter(|e| matches!(&e.event, Some(Event::Transition(t)) if t.job >= 0 && t.status == Status::Completed as i32))
        .count();
    assert_eq!(job_done, 6, "the early watcher saw every job complete");
    // After the end: the snapshot alone, and the stream ends.
    let after = collect(&s, &id).await;
    assert_eq!(after.len(), 1);
    assert_eq!(final_status(&after), Status::Completed as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watchers_all_see_the_end() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let id = c
        .submit(req::work(
            "x",
            vec![req::block(4, (0..40).map(|_| req::probe(5)).collect())],
        ))
        .await
        .unwrap();
    let mut watchers = Vec::new();
    for _ in 0..50 {
        let (addr, id) = (s.addr(), id.clone());
        watchers.push(tokio::spawn(async move {
            let mut c = v1::workflow_client::WorkflowClient::connect(addr)
                .await
                .unwrap();
            let mut st = c
                .watch(v1::WatchReq {
                    id,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let mut last = None;
            while let Some(ev) = st.message().await.unwrap() {
                last = Some(ev);
            }
            final_status(&[last.unwrap()])
        }));
    }
    c.exec(&id).await.unwrap();
    for w in watchers {
        assert_eq!(w.await.unwrap(), Status::Completed as i32);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_does_not_hold_the_executor_and_gets_a_resync() {
    let s = TestServer::start().await;
    let c = s.client().await;
    // Enough transitions to overflow the watcher's buffers many times over.
    let id = c
        .submit(req::work(
            "x",
            vec![req::block(3000, (0..3000).map(|_| req::probe(0)).collect())],
        ))
        .await
        .unwrap();
    // A tiny HTTP/2 receive window, so an unread stream pushes back on the
    // server at once instead of being buffered by the client.
    let channel = tonic::transport::Endpoint::from_shared(s.addr())
        .unwrap()
        .initial_stream_window_size(Some(1024))
        .initial_connection_window_size(Some(1024))
        .connect()
        .await
        .unwrap();
    let mut stream = v1::workflow_client::WorkflowClient::new(channel)
        .watch(v1::WatchReq {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    c.exec(&id).await.unwrap();
    // Nobody reads the stream while the workflow runs to its end.
    assert_eq!(wait_final(&c, &id).await.status, Status::Completed as i32);
    let mut events = Vec::new();
    let drain = async {
        while let Some(ev) = stream.message().await.unwrap() {
            events.push(ev);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .expect("stream ends");
    let snapshots = events
        .iter()
        .filter(|e| matches!(e.event, Some(Event::Snapshot(_))))
        .count();
    assert!(
        snapshots >= 2,
        "a resync snapshot after falling behind ({} events)",
        events.len()
    );
    assert_eq!(final_status(&events), Status::Completed as i32);
}

/// A Watch on a workflow that may never end (paused) must not hold a
/// shutdown: the stream ends, saying why, and the server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_does_not_hold_a_shutdown() {
    let mut s = TestServer::start().await;
    let id = started(
        &s,
        vec![req::block(1, vec![req::probe(60_000), req::probe(0)])],
    )
    .await;
    s.client()
        .await
        .raw()
        .pause(v1::PauseReq {
            id: id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap();
    let mut stream = s.watch(&id).await;
    tokio::time::timeout(Duration::from_secs(10), s.restart())
        .await
        .expect("the restart does not wait for the watcher");
    let end = stream.message().await;
    assert!(
        matches!(&end, Err(e) if e.code() == tonic::Code::Unavailable),
        "{end:?}"
    );
}
