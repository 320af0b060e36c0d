//! Control-service commands: buckets.

use crate::{cli, file};
use interlock_tests::TestServer;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_say_when_the_next_token_comes_as_a_human_duration() {
    let s = TestServer::start().await;
    let (code, out, _) = cli(&s, &["--json", "buckets"]).await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["buckets"][0]["nextTokenIn"],
        serde_json::Value::Null,
        "a full bucket waits for nothing: {out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let take = file(
        &dir,
        "take.json",
        r#"{"name": "x", "blocks": [{"jobs": [{"name": "tokenBucket", "args": {"bucket": "diskEraseSatellite", "fatal": "false"}}]}]}"#,
    );
    let (code, out, err) = cli(&s, &["submit", &take, "--watch"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = cli(&s, &["buckets"]).await;
    assert_eq!(code, 0);
    let (_, next) = out
        .lines()
        .find(|l| l.starts_with("diskEraseSatellite"))
        .and_then(|l| l.split_once("0/1 available, next token in "))
        .unwrap_or_else(|| panic!("{out}"));
    // The bucket refills one token per 30 minutes.
    let wait = humantime::parse_duration(next).unwrap();
    assert!(
        wait > Duration::from_secs(29 * 60) && wait <= Duration::from_secs(30 * 60),
        "{next}"
    );
    assert_eq!(
        next,
        humantime::format_duration(wait).to_string(),
        "written as humantime writes it"
    );
    assert!(next.starts_with("29m ") || next == "30m", "{next}");
}
