//! `interlock clone`: labels, and starting or following the copy.

use crate::{GOOD, cli, file};
use interlock_tests::TestServer;
use serde_json::Value;

async fn status(s: &TestServer, id: &str) -> Value {
    let (code, out, err) = cli(s, &["--json", "status", id]).await;
    assert!(code == 0 || code == 1, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_adds_labels_and_can_start_or_follow_the_copy() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let good = file(&dir, "good.json", GOOD);
    let (code, out, err) = cli(&s, &["submit", &good, "--exec"]).await;
    assert_eq!(code, 0, "{err}");
    let original = out.trim().to_string();

    let (code, out, err) = cli(&s, &["clone", &original]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(status(&s, out.trim()).await["status"], "NotStarted");

    let (code, out, err) = cli(&s, &["clone", &original, "--exec"]).await;
    assert_eq!(code, 0, "{err}");
    assert_ne!(status(&s, out.trim()).await["status"], "NotStarted");

    let (code, out, err) = cli(
        &s,
        &[
            "clone",
            &original,
            "--label",
            "run=2",
            "--label",
            "why=retry",
            "--watch",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let copy = out.lines().next().unwrap().trim();
    assert_ne!(copy, original);
    assert!(out.contains(" workflow Completed"), "followed: {out}");
    assert!(out.contains(&format!("x {copy} [Completed]")), "{out}");
    let v = status(&s, copy).await;
    assert_eq!(v["status"], "Completed");
    assert_eq!(
        v["labels"],
        serde_json::json!({"team": "sre", "run": "2", "why": "retry",
                           "interlock.clonedFrom": original})
    );

    // With --json: the clone's own line, then the watch's lines.
    let (code, out, err) = cli(&s, &["--json", "clone", &original, "--watch"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["ok"], true);
    assert_eq!(lines[1]["snapshot"]["id"], lines[0]["id"]);

    let (code, _, err) = cli(&s, &["clone", &original, "--label", "oops"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("key=value"), "{err}");
}
