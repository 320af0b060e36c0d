//! Refusals: a short headline, then each violation once, on its own line.

use crate::{cli, file};
use interlock_tests::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_list_each_violation_once_on_its_own_line() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Breaks the shipped startOrEnd policy twice.
    let refused = file(
        &dir,
        "refused.json",
        r#"{"name": "SatelliteDiskErase", "blocks": [{"rateLimit": 1, "jobs": [
            {"name": "validateDecom", "args": {"site": "aab", "type": "satellite"}},
            {"name": "sleep", "args": {"seconds": "0"}}]}]}"#,
    );
    let (code, _, err) = cli(&s, &["submit", &refused]).await;
    assert_eq!(code, 3, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    let headline = lines[0]
        .strip_prefix("interlock: FailedPrecondition: refused by policy version ")
        .and_then(|h| h.strip_suffix(" (2 violations)"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        headline.chars().all(|c| c.is_ascii_hexdigit()),
        "the headline stops before the violations: {err}"
    );
    assert_eq!(
        lines[1..],
        [
            "  - startOrEnd at blocks[0].jobs[1]: job \"sleep\" may not come before tokenBucket \
             in the first block (allowed before it: validateDecom)",
            "  - startOrEnd at blocks[0]: the first block must contain a tokenBucket job",
        ],
        "{err}"
    );

    let bad = file(
        &dir,
        "bad.json",
        r#"{"name": "x", "blocks": [{"jobs": [{"name": "nope"}, {"name": "sleep"}]}]}"#,
    );
    let (code, _, err) = cli(&s, &["submit", &bad]).await;
    assert_eq!(code, 3, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[0], "interlock: InvalidArgument: invalid request (2 violations)",
        "{err}"
    );
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[1].starts_with("  - structure at blocks[0].jobs[0]: unknown job \"nope\"")
            && lines[2].starts_with("  - structure at blocks[0].jobs[1]: sleep needs argument"),
        "{err}"
    );

    // Without structured details the message is printed as it is.
    let (code, _, err) = cli(&s, &["status", "0190a5f0-0000-7000-8000-000000000000"]).await;
    assert_eq!(code, 3);
    assert_eq!(
        err,
        "interlock: NotFound: no workflow with id \"0190a5f0-0000-7000-8000-000000000000\"\n"
    );

    // validate keeps one line per violation, on stdout, then what the
    // request would meet (the e-stop, the sites it touches).
    let (code, out, _) = cli(&s, &["validate", &refused]).await;
    assert_eq!(code, 1);
    let lines: Vec<_> = out.lines().collect();
    assert!(
        lines.len() == 4
            && lines[..2].iter().all(|l| l.starts_with("startOrEnd"))
            && lines[2] == "e-stop: go"
            && lines[3] == "sites: aab",
        "{out}"
    );
}

/// 200 violations once made a reply the CLI could not read ("h2 protocol
/// error"): it is a refusal like any other (exit 3), the first violations
/// listed and how many there are in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_violations_are_a_refusal_not_a_protocol_error() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let jobs: Vec<String> = (0..200)
        .map(|i| format!(r#"{{"name": "frobnicate{i}", "args": {{"machine": "aab00"}}}}"#))
        .collect();
    let many = file(
        &dir,
        "many.json",
        &format!(
            r#"{{"name": "x", "blocks": [{{"jobs": [{}]}}]}}"#,
            jobs.join(", ")
        ),
    );
    let (code, out, err) = cli(&s, &["submit", &many]).await;
    assert_eq!(code, 3, "{err}");
    assert_eq!(out, "");
    assert!(!err.contains("protocol error"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[0], "interlock: InvalidArgument: invalid request (200 violations)",
        "{err}"
    );
    let shown = lines[lines.len() - 1]
        .strip_prefix("  … ")
        .and_then(|l| l.strip_suffix(" of 200 shown; `interlock validate` lists them all"))
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(shown.parse::<usize>().unwrap(), lines.len() - 2, "{err}");
    assert!(
        lines[1].starts_with("  - structure at blocks[0].jobs[0]: unknown job \"frobnicate0\""),
        "{err}"
    );
}
