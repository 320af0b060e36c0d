use super::*;
use crate::decl::Declarations;
use interlock_core::StaticCatalog;
use tokio::sync::mpsc::UnboundedReceiver;

const DECLS: &str = r#"{"jobs": [
    {"name": "ping", "idempotency": "safe"},
    {"name": "erase", "idempotency": "unsafe", "served_by": ["token:eraser"]},
    {"name": "reboot", "idempotency": "reconcilable"},
    {"name": "slow", "idempotency": "safe", "timeout": "50ms"}
]}"#;

fn dispatcher() -> Arc<Dispatcher> {
    let d = Dispatcher::new(DispatchOpts {
        lease_ttl: Duration::from_secs(1),
        heartbeat: Duration::from_millis(200),
        cancel_grace: Duration::from_millis(200),
    });
    d.declare(Declarations::parse(DECLS, &StaticCatalog::default()).unwrap());
    d
}

fn job(name: &str) -> interlock_core::Job {
    interlock_core::Job::with_args(name, &[])
}

/// Starts an attempt of `name` in the background.
fn start(
    d: &Arc<Dispatcher>,
    name: &str,
) -> (tokio::task::JoinHandle<Result<Outputs, JobError>>, JobCtx) {
    let ctx = JobCtx::detached("wf-1", 0, 0);
    let (d2, c2, j) = (d.clone(), ctx.clone(), job(name));
    let decl = d.declarations().get(name).unwrap().clone();
    (
        tokio::spawn(async move { d2.run(&c2, &decl, &j).await }),
        ctx,
    )
}

async fn next_task(rx: &mut UnboundedReceiver<ToWorker>) -> TaskSpec {
    match rx.recv().await.expect("a message") {
        ToWorker::Task(t) => t,
        other => panic!("expected a task, got {other:?}"),
    }
}

fn connect(d: &Dispatcher, who: &str, types: &[&str]) -> (u64, UnboundedReceiver<ToWorker>) {
    let types: Vec<String> = types.iter().map(|s| s.to_string()).collect();
    d.connect(who, &[], who, &types, 1).unwrap()
}

#[tokio::test]
async fn a_task_waits_for_a_worker_then_its_result_is_the_jobs() {
    let d = dispatcher();
    let (run, _) = start(&d, "ping");
    tokio::task::yield_now().await;
    while d.waiting().is_empty() {
        tokio::task::yield_now().await;
    }
    assert_eq!(d.waiting()[0].job_type, "ping");
    let (_, mut rx) = connect(&d, "token:w1", &["ping"]);
    let t = next_task(&mut rx).await;
    assert_eq!(
        (t.workflow_id.as_str(), t.dispatch, t.reconcile),
        ("wf-1", 1, false)
    );
    assert!(d.waiting().is_empty());
    let out = Outputs::from([("pong".to_string(), "yes".to_string())]);
    let (spec, worker, _) = d
        .complete("token:w1", &t.lease_id, TaskResult::Done(out.clone()))
        .unwrap();
    assert_eq!(
        (spec.job_type.as_str(), worker.as_str()),
        ("ping", "token:w1")
    );
    assert_eq!(run.await.unwrap().unwrap(), out);
    // The lease ended with the result: a second one is refused.
    let again = d.complete("token:w1", &t.lease_id, TaskResult::Done(Outputs::new()));
    assert!(matches!(again, Err(DispatchError::LeaseLost(_))));
}

#[tokio::test]
async fn a_lost_worker_s_safe_task_goes_to_another_and_its_late_result_is_refused() {
    let d = dispatcher();
    let (s1, mut rx1) = connect(&d, "token:w1", &["ping"]);
    let (run, _) = start(&d, "ping");
    let first = next_task(&mut rx1).await;
    d.disconnect(s1, "killed");
    let (_, mut rx2) = connect(&d, "token:w2", &["ping"]);
    let second = next_task(&mut rx2).await;
    assert_eq!(second.dispatch, 2);
    assert_ne!(first.lease_id, second.lease_id);
    let late = d.complete(
        "token:w1",
        &first.lease_id,
        TaskResult::Done(Outputs::new()),
    );
    assert!(matches!(late, Err(DispatchError::LeaseLost(_))), "{late:?}");
    // Another identity cannot complete a lease it does not hold either.
    let stolen = d.complete(
        "token:w1",
        &second.lease_id,
        TaskResult::Done(Outputs::new()),
    );
    assert!(matches!(stolen, Err(DispatchError::LeaseLost(_))));
    d.complete(
        "token:w2",
        &second.lease_id,
        TaskResult::Done(Outputs::new()),
    )
    .unwrap();
    assert!(run.await.unwrap().is_ok());
}

#[tokio::test]
async fn a_lost_worker_s_unsafe_task_is_interrupted_not_run_again() {
    let d = dispatcher();
    let (s1, mut rx1) = connect(&d, "token:eraser", &["erase"]);
    let (run, _) = start(&d, "erase");
    next_task(&mut rx1).await;
    let (_, mut rx2) = connect(&d, "token:eraser", &["erase"]);
    d.disconnect(s1, "killed");
    let e = run.await.unwrap().unwrap_err();
    assert!(e.interrupted, "{e:?}");
    assert!(e.message.contains("not safe to run twice"), "{}", e.message);
    assert!(
        rx2.try_recv().is_err(),
        "an unsafe task must not be handed out again"
    );
}

#[tokio::test]
async fn a_lost_worker_s_reconcilable_task_is_reconciled_with_its_checkpoint() {
    let d = dispatcher();
    let (s1, mut rx1) = connect(&d, "token:w1", &["reboot"]);
    let (run, _) = start(&d, "reboot");
    let t = next_task(&mut rx1).await;
    d.checkpoint("token:w1", &t.lease_id, "request-42".into())
        .await
        .unwrap();
    d.disconnect(s1, "killed");
    let (_, mut rx2) = connect(&d, "token:w2", &["reboot"]);
    let r = next_task(&mut rx2).await;
    assert!(r.reconcile);
    assert_eq!(r.checkpoint.as_deref(), Some("request-42"));
    // Not done: it runs again, on the worker that answered.
    d.complete("token:w2", &r.lease_id, TaskResult::NotDone)
        .unwrap();
    let again = next_task(&mut rx2).await;
    assert!(!again.reconcile);
    assert_eq!(again.checkpoint.as_deref(), Some("request-42"));
    d.complete(
        "token:w2",
        &again.lease_id,
        TaskResult::Done(Outputs::new()),
    )
    .unwrap();
    assert!(run.await.unwrap().is_ok());
}

#[tokio::test]
async fn an_unknown_reconcile_answer_interrupts_the_job() {
    let d = dispatcher();
    let (s1, mut rx1) = connect(&d, "token:w1", &["reboot"]);
    let (run, _) = start(&d, "reboot");
    let t = next_task(&mut rx1).await;
    d.checkpoint("token:w1", &t.lease_id, "request-9".into())
        .await
        .unwrap();
    d.disconnect(s1, "killed");
    let (_, mut rx2) = connect(&d, "token:w2", &["reboot"]);
    let r = next_task(&mut rx2).await;
    d.complete(
        "token:w2",
        &r.lease_id,
        TaskResult::Unknown("no record".into()),
    )
    .unwrap();
    let e = run.await.unwrap().unwrap_err();
    assert!(e.interrupted && e.message.contains("no record"), "{e:?}");
}

#[tokio::test]
async fn cancelling_an_attempt_is_pushed_to_its_worker() {
    let d = dispatcher();
    let (_, mut rx) = connect(&d, "token:w1", &["ping"]);
    let (run, ctx) = start(&d, "ping");
    let t = next_task(&mut rx).await;
    ctx.cancel.cancel();
    match rx.recv().await.unwrap() {
        ToWorker::Cancel { lease_id, .. } => assert_eq!(lease_id, t.lease_id),
        other => panic!("expected a cancel, got {other:?}"),
    }
    // The worker confirms; the attempt ends cancelled.
    let _ = d.complete(
        "token:w1",
        &t.lease_id,
        TaskResult::Failed {
            message: "cancelled".into(),
            retryable: false,
            fatal: false,
        },
    );
    assert_eq!(run.await.unwrap().unwrap_err(), JobError::cancelled());
    assert!(d.sessions()[0].leased == 0);
}

#[tokio::test(start_paused = true)]
async fn a_silent_worker_is_lost_after_the_ttl_and_a_chatty_one_is_not() {
    let d = dispatcher();
    let (silent, mut rx1) = connect(&d, "token:w1", &["ping"]);
    let (chatty, _rx2) = connect(&d, "token:w2", &["reboot"]);
    let (run, _) = start(&d, "ping");
    next_task(&mut rx1).await;
    for _ in 0..6 {
        tokio::time::advance(Duration::from_millis(300)).await;
        d.touch(chatty);
        d.expire();
    }
    let ids: Vec<u64> = d.sessions().iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![chatty], "session {silent} should be lost");
    // Its safe task waits for another worker.
    assert_eq!(d.waiting().len(), 1);
    run.abort();
}

#[tokio::test(start_paused = true)]
async fn a_declared_timeout_ends_an_attempt_the_request_gave_none() {
    let d = dispatcher();
    let (_, mut rx) = connect(&d, "token:w1", &["slow"]);
    let (run, _) = start(&d, "slow");
    next_task(&mut rx).await;
    let e = run.await.unwrap().unwrap_err();
    assert!(
        e.message.contains("timed out after 50ms") && e.retryable,
        "{e:?}"
    );
    assert!(matches!(rx.recv().await, Some(ToWorker::Cancel { .. })));
}

#[test]
fn workers_are_refused_types_not_declared_or_not_theirs() {
    let d = dispatcher();
    let e = d
        .connect("token:w1", &[], "w1", &["nuke".into()], 1)
        .unwrap_err();
    assert!(
        matches!(e, DispatchError::Undeclared(ref m) if m.contains("not declared")),
        "{e}"
    );
    let e = d
        .connect("token:w1", &[], "w1", &["erase".into()], 1)
        .unwrap_err();
    assert!(
        matches!(e, DispatchError::NotAllowed(ref m) if m.contains("token:eraser")),
        "{e}"
    );
    let e = d.connect("token:w1", &[], "w1", &[], 1).unwrap_err();
    assert!(matches!(e, DispatchError::Invalid(_)));
    let e = d
        .connect("token:w1", &[], "w1", &["ping".into()], 0)
        .unwrap_err();
    assert!(matches!(e, DispatchError::Invalid(_)));
    assert!(d.sessions().is_empty());
}

#[tokio::test]
async fn tasks_spread_over_workers_by_free_capacity() {
    let d = dispatcher();
    let (_, mut a) = d.connect("token:a", &[], "a", &["ping".into()], 2).unwrap();
    let (_, mut b) = d.connect("token:b", &[], "b", &["ping".into()], 2).unwrap();
    let runs: Vec<_> = (0..4).map(|_| start(&d, "ping").0).collect();
    let mut got = (0, 0);
    for _ in 0..2 {
        next_task(&mut a).await;
        got.0 += 1;
        next_task(&mut b).await;
        got.1 += 1;
    }
    assert_eq!(got, (2, 2));
    // Both full: a fifth waits.
    let (fifth, _) = start(&d, "ping");
    while d.waiting().is_empty() {
        tokio::task::yield_now().await;
    }
    for r in runs {
        r.abort();
    }
    fifth.abort();
}

#[tokio::test]
async fn a_server_letting_go_of_an_attempt_tells_the_worker_to_detach() {
    let d = dispatcher();
    let (_, mut rx) = connect(&d, "token:w1", &["ping"]);
    let (run, ctx) = start(&d, "ping");
    next_task(&mut rx).await;
    // What a shutdown or a lost workflow lease does to a job's context.
    ctx.detaching.cancel();
    ctx.cancel.cancel();
    match rx.recv().await.unwrap() {
        ToWorker::Cancel { detach, reason, .. } => {
            assert!(detach, "{reason}");
            assert!(
                reason.contains("stopped running this workflow here"),
                "{reason}"
            );
        }
        other => panic!("expected a cancel, got {other:?}"),
    }
    assert!(run.await.unwrap().is_err());
}

#[tokio::test]
async fn an_attempt_the_server_gives_up_on_is_cancelled_on_its_worker() {
    let d = dispatcher();
    let (_, mut rx) = connect(&d, "token:w1", &["ping"]);
    let (run, _) = start(&d, "ping");
    let t = next_task(&mut rx).await;
    // What the executor's own timeout does: it drops the attempt.
    run.abort();
    let _ = run.await;
    match rx.recv().await.unwrap() {
        ToWorker::Cancel { lease_id, .. } => assert_eq!(lease_id, t.lease_id),
        other => panic!("expected a cancel, got {other:?}"),
    }
    let late = d.complete("token:w1", &t.lease_id, TaskResult::Done(Outputs::new()));
    assert!(matches!(late, Err(DispatchError::LeaseLost(_))));
}

#[tokio::test]
async fn at_shutdown_tasks_in_hand_are_left_for_recovery_not_interrupted() {
    let d = dispatcher();
    let (_, mut rx) = connect(&d, "token:eraser", &["erase"]);
    let (run, ctx) = start(&d, "erase");
    next_task(&mut rx).await;
    d.close();
    assert!(d.sessions().is_empty());
    assert!(rx.recv().await.is_none(), "the session's stream ends");
    tokio::task::yield_now().await;
    assert!(!run.is_finished(), "not decided here");
    // The engine's shutdown then stops the run, detached.
    ctx.detaching.cancel();
    ctx.cancel.cancel();
    let e = run.await.unwrap().unwrap_err();
    assert!(!e.interrupted && e == JobError::cancelled(), "{e:?}");
    // Nothing is handed out any more.
    let (_, mut late) = connect(&d, "token:eraser", &["erase"]);
    let (again, _) = start(&d, "erase");
    tokio::task::yield_now().await;
    assert!(late.try_recv().is_err());
    again.abort();
}

#[tokio::test]
async fn a_reconcilable_task_without_a_checkpoint_simply_runs_again() {
    let d = dispatcher();
    let (s1, mut rx1) = connect(&d, "token:w1", &["reboot"]);
    let (run, _) = start(&d, "reboot");
    next_task(&mut rx1).await;
    d.disconnect(s1, "killed");
    let (_, mut rx2) = connect(&d, "token:w2", &["reboot"]);
    let t = next_task(&mut rx2).await;
    assert!(
        !t.reconcile,
        "it never saved a checkpoint, so it never acted"
    );
    run.abort();
}

#[tokio::test]
async fn an_operator_s_retry_runs_a_checkpointed_task_without_asking_first() {
    let d = dispatcher();
    let (_, mut rx) = connect(&d, "token:w1", &["reboot"]);
    let decl = d.declarations().get("reboot").unwrap().clone();
    let mut ctx = JobCtx::detached("wf-1", 0, 0);
    ctx.checkpoint = Some("request-7".into());
    let asks = {
        let (d, c, decl) = (d.clone(), ctx.clone(), decl.clone());
        tokio::spawn(async move { d.run(&c, &decl, &job("reboot")).await })
    };
    assert!(
        next_task(&mut rx).await.reconcile,
        "a resumed run asks first"
    );
    asks.abort();
    let _ = asks.await;
    let _ = rx.recv().await; // its cancel
    ctx.operator_retry = true;
    let runs = tokio::spawn(async move { d.run(&ctx, &decl, &job("reboot")).await });
    let t = next_task(&mut rx).await;
    assert!(
        !t.reconcile && t.checkpoint.as_deref() == Some("request-7"),
        "{t:?}"
    );
    runs.abort();
}

#[tokio::test]
async fn a_reconcile_answer_to_a_run_is_refused_and_changes_nothing() {
    let d = dispatcher();
    let (_, mut rx) = connect(&d, "token:w1", &["ping"]);
    let (run, _) = start(&d, "ping");
    let t = next_task(&mut rx).await;
    for wrong in [TaskResult::NotDone, TaskResult::Unknown("?".into())] {
        let e = d.complete("token:w1", &t.lease_id, wrong).unwrap_err();
        assert!(matches!(e, DispatchError::Invalid(_)), "{e:?}");
    }
    // The lease stands: the real result still lands.
    d.complete("token:w1", &t.lease_id, TaskResult::Done(Outputs::new()))
        .unwrap();
    assert!(run.await.unwrap().is_ok());
}

/// Starts a relayed attempt of `name` (claimed from the board) under `lease`.
fn start_relayed(
    d: &Arc<Dispatcher>,
    name: &str,
    lease: &str,
) -> (
    tokio::task::JoinHandle<Relayed>,
    tokio::sync::oneshot::Receiver<bool>,
) {
    let ctx = JobCtx::detached("wf-r", 0, 0);
    let (d2, j) = (d.clone(), job(name));
    let decl = d.declarations().get(name).unwrap().clone();
    let (tx, registered) = tokio::sync::oneshot::channel();
    let relay = Relay {
        reconcile: false,
        lease: lease.to_string(),
        attached: None,
        registered: Some(tx),
    };
    (
        tokio::spawn(async move { d2.run_relayed(&ctx, &decl, &j, relay).await }),
        registered,
    )
}

#[tokio::test]
async fn a_relayed_task_goes_out_under_the_boards_lease_and_comes_back_lost() {
    let d = dispatcher();
    let (mut s, mut rx) = connect(&d, "token:eraser", &["erase"]);
    let (run, registered) = start_relayed(&d, "erase", "board-lease-1");
    assert!(registered.await.unwrap(), "in the tables");
    let t = next_task(&mut rx).await;
    assert_eq!(
        t.lease_id, "board-lease-1",
        "the worker can re-attach with it"
    );
    // Its worker is lost: not decided here (no interrupt), back to the owner.
    d.disconnect(s, "gone");
    match run.await.unwrap() {
        Relayed::Lost(why) => assert!(why.contains("gone"), "{why}"),
        other => panic!("expected lost, got {other:?}"),
    }
    // One queued for a type nobody here serves any more goes back untouched.
    (s, rx) = connect(&d, "token:eraser", &["erase"]);
    d.disconnect(s, "left");
    drop(rx);
    let (run, registered) = start_relayed(&d, "erase", "board-lease-2");
    assert!(registered.await.unwrap());
    assert_eq!(d.release_stranded(), 1);
    assert!(matches!(run.await.unwrap(), Relayed::Released));
}

#[tokio::test]
async fn a_relayed_result_is_acknowledged_only_once_recorded() {
    let d = dispatcher();
    let (_s, mut rx) = connect(&d, "token:eraser", &["erase"]);
    for recorded in [true, false] {
        let (run, registered) = start_relayed(&d, "erase", &format!("lease-{recorded}"));
        assert!(registered.await.unwrap());
        let t = next_task(&mut rx).await;
        let (_, _, delivered) = d
            .complete(
                "token:eraser",
                &t.lease_id,
                TaskResult::Done(Outputs::new()),
            )
            .unwrap();
        let Relayed::Ended(Ok(_), Some(ack)) = run.await.unwrap() else {
            panic!("a relayed result carries its acknowledgement");
        };
        ack.send(recorded).unwrap();
        assert_eq!(
            delivered
                .expect("the worker waits for it")
                .recorded(Duration::from_secs(1))
                .await,
            recorded
        );
    }
}

#[tokio::test]
async fn a_session_opened_holding_gets_nothing_new_until_it_hands_out() {
    let d = dispatcher();
    let (run, _) = start(&d, "ping");
    while d.waiting().is_empty() {
        tokio::task::yield_now().await;
    }
    let (s, mut rx) = d
        .connect_holding("token:w1", &[], "w1", &["ping".into()], 1)
        .unwrap();
    assert!(d.room().is_empty(), "no room counted while it holds");
    tokio::task::yield_now().await;
    assert!(
        rx.try_recv().is_err(),
        "held back: its re-attached tasks come first"
    );
    d.hand_out(s);
    let t = next_task(&mut rx).await;
    d.complete("token:w1", &t.lease_id, TaskResult::Done(Outputs::new()))
        .unwrap();
    assert!(run.await.unwrap().is_ok());
}
