//! `interlock logs`: every recorded line of a workflow's jobs (or one
//! job's), dropped lines counted where they were, `--follow` until the end,
//! and `watch --logs` interleaving lines with transitions.

use crate::{cli, file};
use interlock_tests::{TestServer, write_config};

const COMMANDS: &str = r#"{"commands": [
  {"name": "count", "argv": ["/bin/sh", "-c", "i=1; while [ $i -le $1 ]; do echo line $i; i=$((i+1)); done", "sh", "{n}"],
   "args": {"n": {"pattern": "[0-9]+"}}, "timeout": "10s", "idempotency": "safe"},
  {"name": "warn", "argv": ["/bin/sh", "-c", "echo careful >&2"], "timeout": "10s", "idempotency": "safe"}
]}"#;

// One stream per job: the order of lines across a command's stdout and
// stderr is the order they were read in, which the test cannot pin.
const TWO_JOBS: &str = r#"{"name": "x", "blocks": [
  {"jobs": [{"name": "exec.count", "args": {"n": "7"}}]},
  {"jobs": [{"name": "exec.warn"}]}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_prints_every_line_and_counts_the_dropped_ones() {
    let s = TestServer::start_with(|c| {
        write_config(&c.configs.join("commands.json"), COMMANDS);
        c.job_log_lines = 4;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let req = file(&dir, "two.json", TWO_JOBS);
    let (code, out, err) = cli(&s, &["submit", &req]).await;
    assert_eq!(code, 0, "{out} {err}");
    let id = out.trim().to_string();
    assert_eq!(cli(&s, &["exec", &id]).await.0, 0);
    let (code, out, err) = cli(&s, &["watch", &id]).await;
    assert_eq!(code, 0, "{out} {err}");

    let (code, out, err) = cli(&s, &["logs", &id]).await;
    assert_eq!(code, 0, "{err}");
    let rest: Vec<&str> = out
        .lines()
        .map(|l| l.split_once(' ').expect("a time first").1)
        .collect();
    // Job 0.0 wrote 7 lines and keeps its newest 4.
    assert_eq!(
        rest,
        [
            "0.0#1 (3 earlier lines dropped)",
            "0.0#1 stdout| line 4",
            "0.0#1 stdout| line 5",
            "0.0#1 stdout| line 6",
            "0.0#1 stdout| line 7",
            "1.0#1 stderr| careful",
        ],
        "{out}"
    );
    let (code, out, _) = cli(&s, &["logs", &id[..8], "--job", "1.0"]).await;
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains(" 1.0#1 stderr| careful"), "{out}");
    let (code, out, _) = cli(&s, &["logs", &id, "--json"]).await;
    assert_eq!(code, 0);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["text"], "line 4", "{out}");
    assert_eq!(first["n"], "4", "{out}");
    // Follow on a finished workflow prints the same and ends.
    let (code, out, _) = cli(&s, &["logs", &id, "--follow", "--job", "0.0"]).await;
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 5, "{out}");

    let (code, _, err) = cli(&s, &["logs", &id, "--job", "x"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("BLOCK.JOB"), "{err}");
    for follow in [false, true] {
        let mut args = vec!["logs", &id, "--job", "0.3"];
        if follow {
            args.push("--follow");
        }
        let (code, _, err) = cli(&s, &args).await;
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains("no job 3 in block 0"), "{args:?}: {err}");
    }
    // Lines skipped with --after are not reported as dropped.
    let (_, out, _) = cli(&s, &["logs", &id, "--json"]).await;
    let second: serde_json::Value = serde_json::from_str(out.lines().nth(1).unwrap()).unwrap();
    let seq = second["seq"].as_str().unwrap();
    let (code, out, _) = cli(&s, &["logs", &id, "--after", seq]).await;
    assert_eq!(code, 0);
    assert!(!out.contains("dropped"), "{out}");
    assert!(
        out.lines().next().unwrap().ends_with("stdout| line 6"),
        "{out}"
    );

    // Submit and follow, with the lines, in one command.
    let (code, out, err) = cli(&s, &["submit", &req, "--watch", "--logs"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(" 0.0#1 stdout| line 7"), "{out}");
    let (code, _, err) = cli(&s, &["submit", &req, "--logs"]).await;
    assert_eq!(code, 2, "--logs needs --watch: {err}");

    let (code, out, err) = cli(&s, &["watch", &id, "--logs"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(" 0.0#1 (3 earlier lines dropped)"), "{out}");
    assert!(out.contains(" 0.0#1 stdout| line 7"), "{out}");
    assert!(out.contains(" 1.0#1 stderr| careful"), "{out}");
}
