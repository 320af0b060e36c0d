//! Online backup and restore: a backup taken under Submit load holds every
//! workflow acknowledged before it started, and restores into a new server.

use interlock_proto::v1;
use interlock_tests::{TestServer, req};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_every_acknowledged_workflow() {
    let s = TestServer::start().await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (c, acked, stop) = (s.client().await, acked.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let id = c
                    .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
                    .await
                    .unwrap();
                acked.lock().unwrap().push(id);
            }
        }));
    }
    // Load first, by count, not by time: a busy machine may take longer
    // than any fixed wait to acknowledge the first Submits.
    interlock_tests::eventually("a dozen Submits acknowledged under load", || {
        let n = acked.lock().unwrap().len();
        async move { n > 10 }
    })
    .await;
    let before: Vec<String> = acked.lock().unwrap().clone();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("interlock-backup.db");
    let r = s
        .control()
        .await
        .backup(v1::BackupReq {
            path: path.display().to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.bytes > 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.await.unwrap();
    }
    assert!(before.len() > 10, "load ran: {}", before.len());

    // Never over an existing file, and only to a path that means one file.
    let mut ctl = s.control().await;
    let e = ctl
        .backup(v1::BackupReq {
            path: path.display().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    let e = ctl
        .backup(v1::BackupReq {
            path: "relative.db".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");

    let restored = TestServer::start_with(|c| c.restore = Some(path.clone())).await;
    let c = restored.client().await;
    for id in &before {
        let st = c
            .status(id)
            .await
            .unwrap_or_else(|e| panic!("{id} lost: {e}"));
        assert_eq!(st.status, v1::Status::NotStarted as i32);
    }

    // A restore never replaces a database that exists.
    let mut config = restored.config.clone();
    config.restore = Some(path.clone());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let e = interlock_server::ServerBuilder::new(config)
        .start()
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("move it away first"), "{e}");
}
