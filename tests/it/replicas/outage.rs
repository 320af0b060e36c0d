//! The database goes away under every replica (a proxy between them and
//! PostgreSQL is cut): each stops executing and reports NOT_SERVING once
//! its lease can no longer be renewed. When the database is back they serve
//! again, resume the interrupted work through recovery, and work that was
//! stopped before stays stopped.

use super::{Cluster, NOT_SERVING, SERVING, Setup, assert_no_double_erase, erase, erases_per_job};
use interlock_proto::v1::{self, Status};
use interlock_tests::req;
use std::time::{Duration, Instant};

async fn all_health(c: &Cluster, want: i32, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    'poll: loop {
        for (i, r) in c.live() {
            let h = r.health().await;
            if h != Some(want) {
                assert!(
                    Instant::now() < deadline,
                    "replica {i} is not {what} after {limit:?} (health {h:?}): {}",
                    r.daemon.stderr()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue 'poll;
            }
        }
        return;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_database_replicas_stop_and_say_so_then_recover() {
    let Some(c) = Cluster::start(Setup {
        replicas: 2,
        erase: "4s",
        proxy: true,
        ..Setup::default()
    })
    .await
    else {
        return;
    };
    // Stopped before the outage: stays stopped.
    let stop_me = c
        .r(0)
        .client
        .submit(req::work(
            "rep-stop",
            vec![req::block(1, vec![super::sleep(60.0)])],
        ))
        .await
        .unwrap();
    c.r(0).client.exec(&stop_me).await.unwrap();
    c.r(1)
        .ctl
        .clone()
        .set_emergency_stop(v1::SetEmergencyStopReq {
            name: "rep-stop".into(),
            stop: true,
            reason: "before the outage".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let stopped = c.wait_final(&stop_me, Duration::from_secs(10)).await;
    assert_eq!(stopped.status, Status::Stopped as i32);

    // One long erase running on each replica.
    let mut running = Vec::new();
    for (i, machine) in [(0, "aae00"), (1, "aae01")] {
        let r = c.r(i);
        let id = r
            .client
            .submit(req::work(
                "rep",
                vec![req::block(1, vec![erase(machine, "aae")])],
            ))
            .await
            .unwrap();
        r.client.exec(&id).await.unwrap();
        running.push(id);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while erases_per_job(&c.erase_events()).len() < 2 {
        assert!(Instant::now() < deadline, "the erases never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_all_health(&c, SERVING).await;
    // A Watch through the replica that does not run it, open across the cut.
    let mut watch = c
        .r(1)
        .client
        .raw()
        .watch(v1::WatchReq {
            id: running[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        watch.message().await.unwrap().is_some(),
        "no first snapshot"
    );

    let proxy = c.proxy.as_ref().expect("proxy");
    proxy.cut();
    // Lease ttl 1 s, health probed every 2 s.
    all_health(&c, NOT_SERVING, Duration::from_secs(10), "NOT_SERVING").await;
    // The feed lost its link and the snapshot after the gap cannot be read:
    // the Watch ends UNAVAILABLE (watch again), not as if the workflow ended.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match watch.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the Watch neither ended nor failed during the outage");
    match ended {
        Err(s) => assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}"),
        Ok(_) => panic!("the Watch ended cleanly while the database was away"),
    }
    // Nothing is started or finished at the target while cut off, even
    // after the erases' time is up.
    let during = c.erase_events().len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        c.erase_events().len(),
        during,
        "a replica acted without the database: {:?}",
        c.erase_events()
    );
    for (_, r) in c.live() {
        assert!(
            r.daemon.stderr().contains("stopping every local run"),
            "{}",
            r.daemon.stderr()
        );
    }

    proxy.restore();
    all_health(&c, SERVING, Duration::from_secs(20), "SERVING again").await;
    for id in &running {
        let st = c.wait_final(id, Duration::from_secs(30)).await;
        assert_eq!(st.status, Status::Completed as i32, "{id}: {}", st.reason);
    }
    let events = c.erase_events();
    assert_no_double_erase(&events, "after the outage");
    for id in &running {
        let e = erases_per_job(&events)
            .remove(&(id.clone(), 0, 0))
            .unwrap_or_default();
        assert_eq!(
            (e.starts, e.dones, e.aborts),
            (1, 1, 0),
            "{id}: re-attached, not re-run"
        );
    }
    let after = c.status(&stop_me).await;
    assert_eq!(
        after.status,
        Status::Stopped as i32,
        "stopped work stays stopped"
    );
    assert_eq!(after.ended, stopped.ended);
}

async fn assert_all_health(c: &Cluster, want: i32) {
    for (i, r) in c.live() {
        assert_eq!(r.health().await, Some(want), "replica {i}");
    }
}
