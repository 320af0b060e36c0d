//! Conformance: the task board (stores several processes share) — posts
//! and owner acts fenced by the workflow's lease, claims handed out once
//! and oldest first, reports fenced by the claim, lines numbered after an
//! attempt's, a new owner adopting a task its worker still runs.

use super::*;
use crate::{BoardReport, BoardTask, OwnerAct, TaskKey};
use interlock_core::LogQuery;

fn key(wf: &str, job: usize) -> TaskKey {
    TaskKey {
        workflow_id: wf.into(),
        block: 0,
        job,
    }
}

fn task(lease: &Lease, job: usize, job_type: &str, at: Micros) -> BoardTask {
    BoardTask::posted(
        key(&lease.workflow_id, job),
        1,
        job_type,
        format!("spec {job}"),
        lease.epoch,
        at,
    )
}

/// A claim that does not lapse during the test.
const LONG: Duration = Duration::from_secs(3_600);

fn types(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| s.to_string()).collect()
}

pub async fn the_board_hands_each_task_to_one_claim_and_fences_both_sides(h: &dyn Harness) {
    if h.exclusive() {
        // One process: remote tasks never leave it, and there is no board.
        return;
    }
    let s = h.store().await;
    let s = s.as_ref();
    let a = instance(s, "a").await;
    let lease = running(s, 1, &a).await;
    let wf = lease.workflow_id.clone();
    let mut feed = s.subscribe();
    for j in 0..2 {
        s.board_post(&lease, task(&lease, j, "wipe", 10 + j as Micros))
            .await
            .unwrap();
    }
    s.board_post(&lease, task(&lease, 2, "ping", 5))
        .await
        .unwrap();
    let posted = std::iter::from_fn(|| feed.try_recv().ok())
        .filter(|i| matches!(i, FeedItem::Task { job_type, .. } if job_type == "wipe"))
        .count();
    assert_eq!(posted, 2, "each post is announced with its type");

    // Racing claimers: each task goes to one of them, oldest first.
    let wipe = types(&["wipe"]);
    let (x, y) = tokio::join!(
        s.board_claim("rx", &wipe, 1, LONG, "px"),
        s.board_claim("ry", &wipe, 1, LONG, "py"),
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    let mut jobs: Vec<usize> = x.iter().chain(&y).map(|t| t.key.job).collect();
    jobs.sort_unstable();
    assert_eq!(jobs, [0, 1], "two wipes, two claims, none twice");
    assert!(
        s.board_claim("rz", &types(&["wipe"]), 5, LONG, "pz")
            .await
            .unwrap()
            .is_empty(),
        "nothing is claimed twice"
    );
    let got = s
        .board_claim("rz", &types(&["ping", "other"]), 5, LONG, "pz")
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let mut first = x.into_iter().chain(y).find(|t| t.key.job == 0).unwrap();
    assert!(first.claimed_by.is_some() && first.claim >= 1);
    let prefix = if first.claimed_by.as_deref() == Some("rx") {
        "px"
    } else {
        "py"
    };
    assert_eq!(
        first.lease.as_deref(),
        Some(BoardTask::lease_for(prefix, &first.key).as_str()),
        "a claim's lease id comes from its prefix"
    );

    // The claimer's reports land under its claim.
    let k0 = key(&wf, 0);
    let report = |claim, r| s.board_report(&k0, claim, r, 500);
    assert!(
        report(first.claim, BoardReport::Checkpoint("c1".into()))
            .await
            .unwrap()
    );
    assert!(
        !report(first.claim + 7, BoardReport::Checkpoint("other".into()))
            .await
            .unwrap(),
        "another claim's checkpoint is refused"
    );
    let lines = super::logs::lines(1, 1..=3, "w");
    assert!(
        report(
            first.claim,
            BoardReport::Lines {
                lines: lines.clone(),
                keep: 4
            }
        )
        .await
        .unwrap()
    );
    assert!(
        report(first.claim, BoardReport::Lines { lines, keep: 4 })
            .await
            .unwrap()
    );
    let logged = s
        .logs(&LogQuery {
            workflow_id: wf.clone(),
            job: Some((0, 0)),
            after: 0,
            limit: 100,
        })
        .await
        .unwrap();
    let ns: Vec<u64> = logged.iter().map(|l| l.n).collect();
    assert_eq!(
        ns,
        [3, 4, 5, 6],
        "numbered after the attempt's lines, trimmed to the newest"
    );
    assert!(logged.iter().all(|l| l.attempt == 1));

    // A claimer gives back a task it could not hand to a worker: open
    // again, and its old claim records nothing more.
    let k2 = key(&wf, 2);
    let pinged = s.board_task(&k2).await.unwrap().unwrap();
    assert!(
        s.board_report(&k2, pinged.claim, BoardReport::Release, 450)
            .await
            .unwrap()
    );
    let open = s.board_task(&k2).await.unwrap().unwrap();
    assert_eq!((open.claimed_by, open.lease), (None, None));
    assert!(
        !s.board_report(&k2, pinged.claim, BoardReport::Result("x".into()), 460)
            .await
            .unwrap()
    );
    let again = s
        .board_claim("rq", &types(&["ping"]), 5, LONG, "pq")
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert!(again[0].claim > pinged.claim);

    // The owner takes it back: the old claim records nothing more.
    let back = s
        .board_act(&lease, &k0, OwnerAct::Repost("spec again".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((back.claimed_by, back.lease), (None, None));
    assert_eq!(
        s.board_reattach(first.lease.as_deref().unwrap(), "rw", LONG)
            .await
            .unwrap(),
        None,
        "a task taken back is not re-attached with its old lease"
    );
    assert_eq!(
        back.checkpoint.as_deref(),
        Some("c1"),
        "the checkpoint stays"
    );
    assert!(
        !report(first.claim, BoardReport::Result("late".into()))
            .await
            .unwrap(),
        "a result under a claim the owner took back is refused"
    );
    let again = s
        .board_claim("ry", &types(&["wipe"]), 5, LONG, "py2")
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].spec, "spec again");
    assert!(again[0].claim > first.claim);
    first = again.into_iter().next().unwrap();
    assert!(
        report(first.claim, BoardReport::Result("done".into()))
            .await
            .unwrap()
    );
    assert!(
        !report(first.claim, BoardReport::Result("twice".into()))
            .await
            .unwrap(),
        "one result per task"
    );
    assert_eq!(
        s.board_task(&k0).await.unwrap().unwrap().result.as_deref(),
        Some("done")
    );

    // Renewing keeps a claim; a worker lost lets it lapse soon, unless the
    // worker re-attaches (on any replica) with the claim's lease.
    let k1 = key(&wf, 1);
    let t1 = s.board_task(&k1).await.unwrap().unwrap();
    s.board_renew(
        t1.claimed_by.as_deref().unwrap(),
        std::slice::from_ref(&k1),
        LONG * 2,
    )
    .await
    .unwrap();
    let renewed = s.board_task(&k1).await.unwrap().unwrap();
    assert!(renewed.claim_expires > t1.claim_expires && renewed.held());
    let lost = BoardReport::Lost {
        why: "worker gone".into(),
        grace: TTL,
    };
    assert!(s.board_report(&k1, t1.claim, lost, 600).await.unwrap());
    let lost = s.board_task(&k1).await.unwrap().unwrap();
    assert_eq!(lost.lost.as_deref(), Some("worker gone"));
    assert!(lost.held(), "held while its worker may re-attach");
    assert!(
        !s.board_report(&k1, t1.claim, BoardReport::Checkpoint("x".into()), 700)
            .await
            .unwrap(),
        "nothing lands after the claimer gave it back"
    );
    assert_eq!(
        s.board_reattach("not-a-lease", "rw", LONG).await.unwrap(),
        None
    );
    let back = s
        .board_reattach(t1.lease.as_deref().unwrap(), "rw", LONG)
        .await
        .unwrap()
        .expect("the worker re-attaches with its lease");
    assert_eq!(back.claimed_by.as_deref(), Some("rw"));
    assert!(back.claim > t1.claim && back.lost.is_none() && back.held());
    assert!(
        !s.board_report(&k1, t1.claim, BoardReport::Result("old".into()), 800)
            .await
            .unwrap(),
        "the old claim records nothing after a re-attach"
    );
    assert!(
        s.board_report(&k1, back.claim, BoardReport::Checkpoint("c2".into()), 800)
            .await
            .unwrap()
    );
    // Lost again, and not re-attached in time: the claim lapses for good.
    let lost = BoardReport::Lost {
        why: "worker gone again".into(),
        grace: TTL,
    };
    assert!(s.board_report(&k1, back.claim, lost, 900).await.unwrap());
    h.advance(TTL * 2).await;
    assert!(
        !s.board_task(&k1).await.unwrap().unwrap().held(),
        "then the claim lapses"
    );
    assert_eq!(
        s.board_reattach(back.lease.as_deref().unwrap(), "rw", LONG)
            .await
            .unwrap(),
        None,
        "a lapsed claim is the owner's to decide, not re-attached"
    );

    // A cancelled task is not claimed, and a worker re-attaching it learns
    // it was cancelled (the claim does not move).
    s.board_act(&lease, &k1, OwnerAct::Repost("s".into()))
        .await
        .unwrap();
    let held = s
        .board_claim("rc", &types(&["wipe"]), 5, LONG, "pc")
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    s.board_act(&lease, &k1, OwnerAct::Cancel("stop".into()))
        .await
        .unwrap();
    let told = s
        .board_reattach(held[0].lease.as_deref().unwrap(), "rd", LONG)
        .await
        .unwrap()
        .expect("a cancelled task is reported to the worker that asks");
    assert_eq!(told.cancel.as_deref(), Some("stop"));
    assert_eq!(
        (told.claimed_by.as_deref(), told.claim),
        (Some("rc"), held[0].claim)
    );
    assert!(
        s.board_claim("rx", &types(&["wipe"]), 5, LONG, "px2")
            .await
            .unwrap()
            .is_empty()
    );

    // A new owner: the old one can neither post nor act; the new one adopts.
    s.board_post(&lease, task(&lease, 5, "wipe", 50))
        .await
        .unwrap();
    h.advance(TTL * 2).await;
    let b = instance(s, "b").await;
    let claimed = s.claim_orphans(&b, 10).await.unwrap();
    let new = claimed[0].1.clone();
    for act in [OwnerAct::Remove, OwnerAct::Cancel("x".into())] {
        assert!(
            matches!(
                s.board_act(&lease, &k0, act).await,
                Err(StoreError::Fenced { .. })
            ),
            "an owner that lost the workflow cannot act on its tasks"
        );
    }
    assert!(matches!(
        s.board_post(&lease, task(&lease, 3, "wipe", 1)).await,
        Err(StoreError::Fenced { .. })
    ));
    let adopted = s
        .board_act(&new, &k0, OwnerAct::Adopt { attempt: 2 })
        .await
        .unwrap()
        .unwrap();
    assert_eq!((adopted.attempt, adopted.owner_epoch), (2, new.epoch));
    assert_eq!(adopted.result.as_deref(), Some("done"));
    assert_eq!(
        s.board_act(&new, &k0, OwnerAct::Remove).await.unwrap(),
        None
    );
    assert_eq!(s.board_task(&k0).await.unwrap(), None);

    // The tasks of a workflow that ended are not claimed.
    s.write(
        Some(&new),
        vec![Change::Workflow {
            id: wf.clone(),
            status: Status::Cancelled,
            reason: "done".into(),
            had_errors: false,
            es_halt: EsMode::Go,
            ended: Some(900),
        }],
    )
    .await
    .unwrap();
    assert!(
        s.board_claim("rx", &types(&["wipe"]), 5, LONG, "px3")
            .await
            .unwrap()
            .is_empty(),
        "a task left by a workflow that ended is never claimed"
    );
    assert_eq!(
        s.board_task(&key(&wf, 5))
            .await
            .unwrap()
            .unwrap()
            .cancel
            .as_deref(),
        Some("the workflow ended"),
        "its end cancels it, in the same commit"
    );
}
