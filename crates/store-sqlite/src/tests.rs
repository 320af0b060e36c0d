//! What only the SQLite backend promises; the shared contract is in the
//! conformance suite (tests/conformance.rs).

use super::*;
use interlock_core::JobRecord;
use interlock_store::conformance::request;

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(SqliteOptions::new(dir.path().join("db/interlock.db"))).unwrap()
}

fn instance(id: &str) -> InstanceInfo {
    InstanceInfo {
        id: id.into(),
        ..Default::default()
    }
}

async fn start(s: &SqliteStore, id: &str, owner: &str) -> Lease {
    start_at(s, id, owner, 10).await
}

/// A two-job workflow submitted at `created` and executed a microsecond
/// later by `owner`.
async fn start_at(s: &SqliteStore, id: &str, owner: &str, created: i64) -> Lease {
    let rec = WorkflowRecord::submitted(id.into(), request("n", 2), "v1".into(), created);
    s.submit(&rec, "h", None).await.unwrap();
    match s
        .acquire(id, Status::NotStarted, owner, created + 1, None)
        .await
        .unwrap()
    {
        CasOutcome::Done(l) => l,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn records_survive_a_reopen_with_every_change_applied() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir);
        s.register_instance(&instance("a"), Duration::from_secs(10))
            .await
            .unwrap();
        let lease = start(&s, "w1", "a").await;
        let mut job = JobRecord {
            status: Status::Completed,
            started: Some(12),
            ended: Some(13),
            ..Default::default()
        };
        job.outputs.insert("k".into(), "v".into());
        s.write(
            Some(&lease),
            vec![Change::Job {
                id: "w1".into(),
                block: 0,
                job: 0,
                rec: job,
            }],
        )
        .await
        .unwrap();
        s.close().await;
        assert_eq!(s.get("w1").await, Err(StoreError::Closed));
    }
    let s = open(&dir);
    let got = s.get("w1").await.unwrap().unwrap();
    assert_eq!(got.status, Status::Running);
    assert_eq!(got.started, Some(11));
    assert_eq!(got.policy_version, "v1");
    assert_eq!(got.blocks[0].jobs[0].outputs["k"], "v");
}

#[tokio::test]
async fn a_second_open_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(&dir);
    first
        .describe_holder("pid 7 listening on 127.0.0.1:8080".into())
        .await
        .unwrap();
    let e = SqliteStore::open(SqliteOptions::new(dir.path().join("db/interlock.db")))
        .expect_err("refused");
    assert!(matches!(e, OpenError::Locked(_)), "{e}");
    assert!(
        e.to_string()
            .contains("in use by another interlockd (pid 7 listening on 127.0.0.1:8080)"),
        "{e}"
    );
    first.close().await;
    open(&dir);
}

#[tokio::test]
async fn registering_declares_every_earlier_instance_dead() {
    // The lock proves the earlier process is gone, so its work is claimable
    // at once instead of after its heartbeat lapses.
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir);
        s.register_instance(&instance("old"), Duration::from_secs(3600))
            .await
            .unwrap();
        start(&s, "w1", "old").await;
        s.close().await;
    }
    let s = open(&dir);
    s.register_instance(&instance("new"), Duration::from_secs(3600))
        .await
        .unwrap();
    let claimed = s.claim_orphans("new", 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].1.epoch, 2);
    let live: Vec<_> = s
        .instances()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(live, ["new"]);
}

#[tokio::test]
async fn orphans_are_claimed_oldest_first_by_owner_through_the_running_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let ttl = Duration::from_secs(3600);
    s.register_instance(&instance("b"), ttl).await.unwrap();
    start_at(&s, "b-30", "b", 30).await;
    start_at(&s, "b-5", "b", 5).await;
    // Registering "a" declares "b" dead (see above).
    s.register_instance(&instance("a"), ttl).await.unwrap();
    for (id, created) in [("a-1", 1), ("a-2", 2), ("a-3", 3)] {
        start_at(&s, id, "a", created).await;
    }
    let unowned = start_at(&s, "none-20", "a", 20).await;
    s.release(&unowned).await.unwrap();
    // Finished workflows are not orphans, whoever owned them last.
    let done = start_at(&s, "done-4", "b", 4).await;
    s.write(
        Some(&done),
        vec![Change::Workflow {
            id: "done-4".into(),
            status: Status::Completed,
            reason: String::new(),
            had_errors: false,
            es_halt: interlock_core::EsMode::Go,
            ended: Some(6),
        }],
    )
    .await
    .unwrap();
    let ids = |c: Vec<(WorkflowRecord, Lease)>| -> Vec<String> {
        c.into_iter().map(|(_, l)| l.workflow_id).collect()
    };
    // The oldest two of the dead owner's and the unowned, live owners' left.
    assert_eq!(
        ids(s.claim_orphans("a", 2).await.unwrap()),
        ["b-5", "none-20"]
    );
    assert_eq!(ids(s.claim_orphans("a", 10).await.unwrap()), ["b-30"]);
    assert!(s.claim_orphans("a", 10).await.unwrap().is_empty());
    // Both statements reach rows through the partial index only.
    let c = rusqlite::Connection::open(dir.path().join("db/interlock.db")).unwrap();
    for sql in [ops::GONE_OWNERS, ops::RUNNING_OF] {
        let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = vec![rusqlite::types::Null; st.parameter_count()];
        let plan: Vec<String> = st
            .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .filter(|d| d.contains("workflows"))
            .collect();
        assert!(
            !plan.is_empty() && plan.iter().all(|d| d.contains("workflows_running_owner")),
            "{sql}: {plan:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_grouped_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.register_instance(&instance("a"), Duration::from_secs(10))
        .await
        .unwrap();
    let rec = WorkflowRecord::submitted("w".into(), request("n", 200), "v".into(), 1);
    s.submit(&rec, "h", None).await.unwrap();
    let lease = match s
        .acquire("w", Status::NotStarted, "a", 2, None)
        .await
        .unwrap()
    {
        CasOutcome::Done(l) => l,
        other => panic!("{other:?}"),
    };
    let mut tasks = Vec::new();
    for j in 0..200 {
        let (s, lease) = (s.clone(), lease.clone());
        tasks.push(tokio::spawn(async move {
            s.write(
                Some(&lease),
                vec![Change::Job {
                    id: "w".into(),
                    block: 0,
                    job: j,
                    rec: JobRecord {
                        status: Status::Completed,
                        ..Default::default()
                    },
                }],
            )
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let got = s.get("w").await.unwrap().unwrap();
    assert!(
        got.blocks[0]
            .jobs
            .iter()
            .all(|j| j.status == Status::Completed)
    );
}

#[tokio::test]
async fn a_database_from_a_newer_release_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db/interlock.db");
    open(&dir).close().await;
    {
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", schema::VERSION + 5)
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let e = SqliteStore::open(SqliteOptions::new(&path))
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains(&format!("schema version {}", schema::VERSION + 5))
            && e.contains(&format!("({})", schema::VERSION)),
        "{e}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing written");
}

/// Queues `ops` behind an op that holds the writer, so they all land in
/// one batch (one transaction); each op answers on its own receiver.
async fn one_batch(s: &SqliteStore, ops: Vec<Box<dyn writer::WriteOp>>) {
    let (started, running) = std::sync::mpsc::channel();
    let (blocker, _) = Pending::boxed(move |_, _| {
        let _ = started.send(());
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    });
    s.tx.send(Msg::Op(blocker)).await.unwrap();
    tokio::task::spawn_blocking(move || running.recv().unwrap())
        .await
        .unwrap();
    for op in ops {
        s.tx.send(Msg::Op(op)).await.unwrap();
    }
}

fn job_done(id: &str, job: usize) -> Change {
    Change::Job {
        id: id.into(),
        block: 0,
        job,
        rec: JobRecord {
            status: Status::Completed,
            ..Default::default()
        },
    }
}

type Verdict = tokio::sync::oneshot::Receiver<writer::Reply<Result<()>>>;

/// The outcome an op answered with.
async fn outcome<T>(rx: tokio::sync::oneshot::Receiver<writer::Reply<T>>) -> Result<T> {
    rx.await.unwrap().0
}

/// A store with instance "a" running workflow "w", and a's lease on it.
async fn running(dir: &tempfile::TempDir) -> (SqliteStore, Lease) {
    let s = open(dir);
    s.register_instance(&instance("a"), Duration::from_secs(10))
        .await
        .unwrap();
    let lease = start(&s, "w", "a").await;
    (s, lease)
}

fn assert_fenced(r: Result<Result<()>>) {
    assert!(matches!(r, Ok(Err(StoreError::Fenced { .. }))), "{r:?}");
}

fn fenced_write(lease: &Lease, change: Change) -> (Box<dyn writer::WriteOp>, Verdict) {
    let lease = lease.clone();
    let changes = vec![change];
    Pending::fenced(move |tx, ctx| ops::write(tx, ctx, Some(&lease), &changes))
}

#[tokio::test]
async fn a_lease_checked_earlier_in_a_batch_is_checked_again_after_ownership_moved() {
    let dir = tempfile::tempdir().unwrap();
    let (s, lease) = running(&dir).await;
    let (first, first_rx) = fenced_write(&lease, job_done("w", 0));
    let l = lease.clone();
    let (release, release_rx) = Pending::boxed(move |tx, _| ops::release(tx, &l));
    let (after, after_rx) = fenced_write(&lease, job_done("w", 1));
    one_batch(&s, vec![first, release, after]).await;
    assert_eq!(outcome(first_rx).await, Ok(Ok(())));
    assert_eq!(outcome(release_rx).await, Ok(Ok(())));
    assert_fenced(outcome(after_rx).await);
    let got = s.get("w").await.unwrap().unwrap();
    assert_eq!(got.blocks[0].jobs[1].status, Status::NotStarted);
}

#[tokio::test]
async fn a_terminal_write_ends_the_lease_for_the_rest_of_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (s, lease) = running(&dir).await;
    let end = Change::Workflow {
        id: "w".into(),
        status: Status::Completed,
        reason: String::new(),
        had_errors: false,
        es_halt: interlock_core::EsMode::Go,
        ended: Some(20),
    };
    let (first, first_rx) = fenced_write(&lease, job_done("w", 0));
    let (end, end_rx) = fenced_write(&lease, end);
    let (late, late_rx) = fenced_write(&lease, job_done("w", 1));
    one_batch(&s, vec![first, end, late]).await;
    assert_eq!(outcome(first_rx).await, Ok(Ok(())));
    assert_eq!(outcome(end_rx).await, Ok(Ok(())));
    assert_fenced(outcome(late_rx).await);
}

#[tokio::test]
async fn a_lease_checked_in_a_transaction_that_rolled_back_is_checked_again() {
    let dir = tempfile::tempdir().unwrap();
    let (s, lease) = running(&dir).await;
    let taken = Lease {
        owner: "b".into(),
        epoch: lease.epoch + 1,
        ..lease.clone()
    };
    // Moves ownership to "b" inside the batch, but fails when retried alone:
    // the move never commits.
    let mut tries = 0;
    let (take, _take_rx) = Pending::boxed(move |tx, _| {
        tries += 1;
        if tries > 1 {
            return Err(rusqlite::Error::QueryReturnedNoRows);
        }
        tx.execute(
            "UPDATE workflows SET owner = 'b', epoch = epoch + 1 WHERE id = 'w'",
            [],
        )
    });
    let (by_b, by_b_rx) = fenced_write(&taken, job_done("w", 0));
    let (fail, _fail_rx) =
        Pending::<(), _>::boxed(|_, _| Err(rusqlite::Error::QueryReturnedNoRows));
    one_batch(&s, vec![take, by_b, fail]).await;
    assert_fenced(outcome(by_b_rx).await);
    assert_eq!(
        s.get("w").await.unwrap().unwrap().blocks[0].jobs[0].status,
        Status::NotStarted
    );
}

#[tokio::test]
async fn a_backup_taken_while_serving_opens_as_the_database_it_copied() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.register_instance(&instance("a"), Duration::from_secs(10))
        .await
        .unwrap();
    start(&s, "w1", "a").await;
    let dest = dir.path().join("backup.db");
    let bytes = s.backup(&dest).await.unwrap();
    assert!(bytes > 0);
    // Written after the backup: not in it.
    start(&s, "w2", "a").await;
    let again = s.backup(&dest).await.unwrap_err();
    assert!(again.to_string().contains("already exists"), "{again}");

    let copy = SqliteStore::open(SqliteOptions::new(&dest)).unwrap();
    let got = copy.get("w1").await.unwrap().unwrap();
    assert_eq!((got.status, got.started), (Status::Running, Some(11)));
    assert_eq!(copy.get("w2").await.unwrap(), None);
}

#[tokio::test]
async fn the_request_is_stored_beside_the_row_and_pruned_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let rec = WorkflowRecord::submitted("w".into(), request("n", 2), "v1".into(), 10);
    s.submit(&rec, "h", None).await.unwrap();
    let db = dir.path().join("db/interlock.db");
    let peek = |sql: &str| -> String {
        let c = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    };
    // The row a status change rewrites holds no copy of the request.
    assert_eq!(peek("SELECT request FROM workflows WHERE id = 'w'"), "");
    assert_eq!(s.get("w").await.unwrap().unwrap().req, rec.req);

    let ended = s
        .transition(
            "w",
            Status::NotStarted,
            Status::Cancelled,
            "",
            Some(20),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(ended, CasOutcome::Done(()));
    assert_eq!(s.prune_workflows(30, 40, 1, 10).await.unwrap(), 1);
    assert_eq!(
        peek("SELECT printf('%d', count(*)) FROM workflow_requests"),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_reads_runs_a_few_at_a_time_on_connections_kept() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // Four times what the pool lets run at once.
    let reads: Vec<_> = (0..4 * readers())
        .map(|_| {
            let (s, now, most) = (s.clone(), now.clone(), most.clone());
            tokio::spawn(async move {
                s.read(move |c| {
                    let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(at_once, Ordering::SeqCst);
                    // Long enough for the burst to pile up behind the first.
                    std::thread::sleep(Duration::from_millis(5));
                    let n: i64 = c
                        .query_row("SELECT count(*) FROM workflows", [], |r| r.get(0))
                        .map_err(backend)?;
                    now.fetch_sub(1, Ordering::SeqCst);
                    Ok(n)
                })
                .await
            })
        })
        .collect();
    for r in reads {
        assert_eq!(r.await.unwrap().unwrap(), 0);
    }
    let (most, size) = (most.load(Ordering::SeqCst), readers());
    assert!(
        (2..=size).contains(&most),
        "{most} reads ran at once; the pool allows {size}"
    );
    let kept = s.readers.idle.lock().unwrap().len();
    assert!(
        (1..=size).contains(&kept),
        "{kept} connections kept after the burst"
    );
}
