//! `interlock watch`: plain lines when stdout is not a terminal, bars that
//! count only finished jobs when it is, and the exit code of the end state.

use crate::{Spawned, cli, file};
use interlock_tests::TestServer;

/// Block 0: a quick probe and one that runs until stopped; block 1 never starts.
const STOPPABLE: &str = r#"{"name": "x", "blocks": [
  {"rateLimit": 2, "jobs": [{"name": "probe", "args": {"ms": "5"}}, {"name": "probe", "args": {"ms": "60000"}}]},
  {"jobs": [{"name": "probe", "args": {"ms": "1"}}]}]}"#;

/// The line's leading RFC 3339 time with milliseconds, and the rest.
fn split_stamp(line: &str) -> (&str, &str) {
    let (at, rest) = line.split_once(' ').unwrap();
    assert!(
        at.len() == 24 && at.ends_with('Z') && humantime::parse_rfc3339(at).is_ok(),
        "{line}"
    );
    (at, rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_terminal_each_transition_is_a_line_and_bars_count_finished_jobs() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let req = file(&dir, "stoppable.json", STOPPABLE);
    let (_, out, err) = cli(&s, &["submit", &req]).await;
    let id = out.trim().to_string();
    assert_eq!(id.len(), 36, "{err}");

    let mut watch = Spawned::start(&s, &["watch", &id]);
    let first = watch.wait_for("watching");
    assert_eq!(
        split_stamp(first.trim()).1,
        format!("watching x {id}: NotStarted, 0/3 jobs done")
    );
    assert_eq!(cli(&s, &["exec", &id]).await.0, 0);
    let done = watch.wait_for("block 0 job 0 probe Completed");
    assert_eq!(split_stamp(done.trim()).1, "block 0 job 0 probe Completed");
    let (code, _, err) = cli(&s, &["es", "stop", "x", "--reason", "drill"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = watch.finish();
    assert_eq!(code, 1, "a stopped workflow exits 1: {out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    let events: Vec<&str> = lines
        .iter()
        .take_while(|l| !l.starts_with("x "))
        .map(|l| split_stamp(l).1)
        .collect();
    for want in [
        "workflow Running",
        "block 0 Running",
        "block 0 job 1 probe Running",
        "block 0 job 0 probe Completed",
        "block 0 Stopped",
    ] {
        assert!(events.contains(&want), "{want:?} in\n{out}");
    }
    let last = events.last().unwrap();
    assert!(
        last.starts_with("workflow Stopped: ") && last.contains("drill"),
        "{out}"
    );
    assert!(!out.contains('\u{1b}'), "no terminal codes: {out:?}");
    // Then the stored tree, as before.
    assert!(out.contains(&format!("x {id} [Stopped]")), "{out}");
    assert!(out.contains("block 1 [NotStarted]"), "{out}");

    // On a terminal (script(1) gives it one), the bars of a stopped
    // workflow stay as they were: block 0 has one job of two finished, and
    // block 1 none.
    let bin = assert_cmd::cargo::cargo_bin("interlock");
    let addr = s.addr();
    let command = format!("{} --addr {addr} watch {id}", bin.display());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("script(1) from util-linux runs the CLI on a pseudo-terminal")
    })
    .await
    .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{screen}");
    let bar = |block: &str| {
        // The last drawing of the block's bar, not its line in the tree.
        screen
            .match_indices(&format!("{block} "))
            .map(|(i, _)| {
                let rest = &screen[i..];
                let end = rest.find(['\r', '\n', '\u{1b}']).unwrap_or(rest.len());
                &rest[..end]
            })
            .filter(|l| !l.contains('['))
            .last()
            .unwrap_or_else(|| panic!("no bar for {block} in {screen:?}"))
            .split_whitespace()
            .skip(3)
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(bar("block 0"), "1/2 Stopped", "{screen:?}");
    assert_eq!(bar("block 1"), "0/1 NotStarted", "{screen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_timeout_does_not_cut_a_long_watch() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let req = file(
        &dir,
        "slow.json",
        r#"{"name": "x", "blocks": [{"jobs": [{"name": "probe", "args": {"ms": "1500"}}]}]}"#,
    );
    let (code, out, err) = cli(&s, &["--timeout", "500ms", "submit", &req, "--watch"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("workflow Completed"), "{out}");
}
