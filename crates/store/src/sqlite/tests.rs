use super::*;
use crate::AuditEntry;
use interlock_core::{Block, Job};

fn req(name: &str, key: &str) -> WorkReq {
    WorkReq {
        name: name.into(),
        request_id: key.into(),
        blocks: vec![Block {
            rate_limit: 1,
            jobs: vec![Job {
                name: "sleep".into(),
                args: [("seconds".to_string(), "0".to_string())].into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(SqliteOptions::new(dir.path().join("db/interlock.db"))).unwrap()
}

fn finish(id: &str, status: Status) -> Change {
    Change::Workflow {
        id: id.into(),
        status,
        reason: String::new(),
        had_errors: false,
        es_stopped: false,
        ended: Some(14),
    }
}

#[tokio::test]
async fn records_survive_reopen_with_every_change_applied() {
    let dir = tempfile::tempdir().unwrap();
    let rec = WorkflowRecord::submitted("w1".into(), req("n", ""), "v1".into(), 10);
    {
        let s = open(&dir);
        assert_eq!(
            s.submit(&rec, "h", None).await.unwrap(),
            SubmitOutcome::Inserted
        );
        assert_eq!(
            s.start("w1", 11, None).await.unwrap(),
            StartOutcome::Started
        );
        let mut job = JobRecord {
            status: Status::Completed,
            started: Some(12),
            ended: Some(13),
            ..Default::default()
        };
        job.outputs.insert("k".into(), "v".into());
        s.write(vec![
            Change::Job {
                id: "w1".into(),
                block: 0,
                job: 0,
                rec: job,
            },
            finish("w1", Status::Completed),
        ])
        .await
        .unwrap();
    }
    let s = open(&dir);
    let got = s.get("w1").await.unwrap().unwrap();
    assert_eq!(got.status, Status::Completed);
    assert_eq!(got.started, Some(11));
    assert_eq!(got.ended, Some(14));
    assert_eq!(got.policy_version, "v1");
    assert_eq!(got.blocks[0].jobs[0].outputs["k"], "v");
    assert!(s.get("nope").await.unwrap().is_none());
}

#[tokio::test]
async fn start_is_a_compare_and_set_under_races() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let rec = WorkflowRecord::submitted("w".into(), req("n", ""), String::new(), 1);
    s.submit(&rec, "h", None).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(
            async move { s.start("w", 2, None).await.unwrap() },
        ));
    }
    let mut started = 0;
    for t in tasks {
        match t.await.unwrap() {
            StartOutcome::Started => started += 1,
            StartOutcome::AlreadyStarted(Status::Running) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(started, 1);
    assert_eq!(
        s.start("missing", 2, None).await.unwrap(),
        StartOutcome::NotFound
    );
}

#[tokio::test]
async fn idempotency_keys_return_the_first_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let a = WorkflowRecord::submitted("a".into(), req("n", "key"), String::new(), 1);
    let b = WorkflowRecord::submitted("b".into(), req("n", "key"), String::new(), 2);
    assert_eq!(
        s.submit(&a, "h1", None).await.unwrap(),
        SubmitOutcome::Inserted
    );
    assert_eq!(
        s.submit(&b, "h2", None).await.unwrap(),
        SubmitOutcome::Existing {
            id: "a".into(),
            content_hash: "h1".into()
        }
    );
    assert!(
        s.get("b").await.unwrap().is_none(),
        "nothing stored for the retry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_grouped_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let mut tasks = Vec::new();
    for i in 0..500 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let rec = WorkflowRecord::submitted(format!("w{i}"), req("n", ""), String::new(), i);
            s.submit(&rec, "", None).await.unwrap();
            s.record_take(Take {
                bucket: "b".into(),
                at: i,
                workflow_id: format!("w{i}"),
                block: 0,
                job: 0,
            })
            .await
            .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.takes_since("b", 0).await.unwrap().len(), 500);
    assert_eq!(s.takes_since("b", 490).await.unwrap().len(), 10);
    assert!(s.get("w499").await.unwrap().is_some());
}

#[tokio::test]
async fn unfinished_lists_running_and_paused_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for (id, st) in [
        ("r", Status::Running),
        ("p", Status::Paused),
        ("c", Status::Completed),
    ] {
        let rec = WorkflowRecord::submitted(id.into(), req("n", ""), String::new(), 1);
        s.submit(&rec, "", None).await.unwrap();
        s.write(vec![finish(id, st)]).await.unwrap();
    }
    let mut ids: Vec<_> = s
        .unfinished()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["p", "r"]);
}

#[tokio::test]
async fn audit_entries_commit_with_the_change_they_describe() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let entry = |action: &str| AuditEntry {
        identity: "anonymous@test".into(),
        action: action.into(),
        outcome: "ok".into(),
        ..Default::default()
    };
    let rec = WorkflowRecord::submitted("w".into(), req("n", "k"), String::new(), 1);
    s.submit(&rec, "h", Some(entry("submit"))).await.unwrap();
    // A retry with the same key is answered with the existing workflow and logged as such.
    let again = WorkflowRecord::submitted("w2".into(), req("n", "k"), String::new(), 2);
    s.submit(&again, "h", Some(entry("submit"))).await.unwrap();
    assert_eq!(
        s.start("w", 3, Some(entry("exec"))).await.unwrap(),
        StartOutcome::Started
    );
    // A refused start writes no entry.
    s.start("w", 4, Some(entry("exec"))).await.unwrap();
    let log = s.audit_log(None, 10).await.unwrap();
    let actions: Vec<_> = log
        .iter()
        .map(|e| (e.action.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![("exec", "w"), ("submit", "w"), ("submit", "w")],
        "newest first"
    );
    assert!(log[1].detail.contains("already used"), "{:?}", log[1]);
}
