//! Execution ownership by lease: a dead owner's workflow is taken over by a
//! live replica and resumed through recovery; a paused owner that wakes up
//! after the takeover acts on nothing and records nothing.

use super::{Cluster, SERVING, Setup, erase, erases_per_job, sleep};
use interlock_proto::v1::{self, Status};
use interlock_tests::req;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(1);

/// A one-erase workflow submitted and executed on replica 0; returns its id
/// once replica 0 runs it and the erase has started at the target.
async fn start_on_first(c: &Cluster, machine: &str) -> String {
    let w = req::work(
        "rep-slow",
        vec![
            req::block(1, vec![erase(machine, "aab")]),
            req::block(1, vec![sleep(0.05)]),
        ],
    );
    let r0 = c.r(0);
    let id = r0.client.submit(w).await.expect("submit");
    r0.client.exec(&id).await.expect("exec");
    let owner = r0.id.clone();
    c.wait_for(&id, Duration::from_secs(10), "running on replica 0", |s| {
        s.run_by == owner
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.erase_events().iter().any(|e| e.workflow == id) {
        assert!(Instant::now() < deadline, "the erase of {id} never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    id
}

fn erases_of(c: &Cluster, id: &str) -> super::Erases {
    erases_per_job(&c.erase_events())
        .remove(&(id.to_string(), 0, 0))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_replica_resumes_a_killed_owners_workflow_within_ttl_plus_2s() {
    let Some(mut c) = Cluster::start(Setup {
        replicas: 2,
        erase: "2s",
        ..Setup::default()
    })
    .await
    else {
        return;
    };
    let id = start_on_first(&c, "aab00").await;
    let dead = c.r(0).id.clone();
    c.kill(0);
    let killed = Instant::now();
    let st = c
        .wait_for(&id, Duration::from_secs(15), "taken over", |s| {
            !s.run_by.is_empty() && s.run_by != dead
        })
        .await;
    let took = killed.elapsed();
    println!("takeover after SIGKILL: {took:?} (lease ttl {TTL:?})");
    // The live replica runs it, under the identity it has now: a replica
    // whose heartbeats lapsed (a loaded machine) registers again under a
    // new id.
    let live_now = c
        .r(1)
        .ctl
        .clone()
        .cluster(v1::ClusterReq {})
        .await
        .expect("Cluster answers")
        .into_inner()
        .this_instance;
    assert!(
        st.run_by == c.r(1).id || st.run_by == live_now,
        "the live replica runs it: run_by {}, replica 1 was {} and is {live_now}",
        st.run_by,
        c.r(1).id
    );
    assert!(
        took <= TTL + Duration::from_secs(2),
        "taken over after {took:?}; the lease ttl is {TTL:?}"
    );

    let st = c.wait_final(&id, Duration::from_secs(15)).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    assert!(st.run_by.is_empty(), "an ended workflow is run by nobody");
    // The erase was re-attached, not run again.
    let e = erases_of(&c, &id);
    assert_eq!((e.starts, e.dones, e.aborts), (1, 1, 0), "{e:?}");

    // The survivor lists itself; the dead one is gone or expired.
    let cl = c
        .r(1)
        .ctl
        .clone()
        .cluster(v1::ClusterReq {})
        .await
        .unwrap()
        .into_inner();
    assert!(cl.shared_store);
    let me = cl
        .instances
        .iter()
        .find(|i| i.id == c.r(1).id)
        .expect("the survivor is listed");
    assert_eq!(me.pid, c.r(1).daemon.pid());
}

/// SIGSTOP the owner past its lease; another replica takes over; SIGCONT
/// it — either while the new owner still runs the erase, or after the new
/// owner finished (so every timer of the woken process is overdue).
async fn paused_owner_acts_on_nothing(wake_after_the_end: bool) {
    let Some(c) = Cluster::start(Setup {
        replicas: 2,
        erase: "3s",
        ..Setup::default()
    })
    .await
    else {
        return;
    };
    let id = start_on_first(&c, "aab01").await;
    let paused = c.r(0).id.clone();
    c.pause(0);
    let taken = c
        .wait_for(&id, Duration::from_secs(15), "taken over", |s| {
            !s.run_by.is_empty() && s.run_by != paused
        })
        .await;
    assert_eq!(taken.run_by, c.r(1).id);
    let before = if wake_after_the_end {
        let st = c.wait_final(&id, Duration::from_secs(15)).await;
        assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
        Some(st)
    } else {
        None
    };
    c.wake(0);

    let st = c.wait_final(&id, Duration::from_secs(15)).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    // Give the woken process time to do whatever it would do.
    tokio::time::sleep(TTL * 2).await;
    let after = c.status(&id).await;
    if let Some(before) = before {
        assert_eq!(after, before, "the woken process changed the record");
    }
    assert_eq!(after.status, Status::Completed as i32);
    let e = erases_of(&c, &id);
    assert_eq!(
        (e.starts, e.dones, e.aborts),
        (1, 1, 0),
        "one erase, finished once, never aborted: {e:?}"
    );

    // The woken process knows it was replaced, and serves again under a
    // new registration.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r0 = c.r(0);
        let now_id = r0
            .ctl
            .clone()
            .cluster(v1::ClusterReq {})
            .await
            .map(|r| r.into_inner().this_instance)
            .unwrap_or_default();
        if !now_id.is_empty() && now_id != paused && r0.health().await == Some(SERVING) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the woken replica did not register again: {}",
            r0.daemon.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        c.r(0).daemon.stderr().contains("declared dead"),
        "the woken replica says why it stopped its runs: {}",
        c.r(0).daemon.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_woken_during_the_takeover_acts_on_nothing() {
    paused_owner_acts_on_nothing(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_woken_after_the_new_owner_finished_records_nothing() {
    paused_owner_acts_on_nothing(true).await;
}
