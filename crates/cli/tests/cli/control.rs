//! Control-service commands: buckets, audit.

use crate::{GOOD, cli, file, submit_n};
use interlock_tests::{TestServer, eventually, write_config};
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

/// `interlock audit` flags narrow the log to matching entries: by time,
/// actor, action and target (`--workflow` is the same as `--target`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_flags_filter_by_time_actor_action_and_target() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let good = file(&dir, "good.json", GOOD);
    let ids = submit_n(&s, &good, 2).await;
    let (code, _, err) = cli(&s, &["cancel", &ids[0], "--reason", "flags test"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&s, &["es", "stop", "y", "--reason", "rack work"]).await;
    assert_eq!(code, 0, "{err}");
    write_config(&s.config_path("policies.json"), "not json");
    let entries = |args: &[&str]| {
        let mut a = vec!["--json", "audit", "--limit", "1000"];
        a.extend(args);
        let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        let s = &s;
        async move {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let (code, out, err) = cli(s, &a).await;
            assert_eq!(code, 0, "{a:?}: {err}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            v["entries"].as_array().unwrap().clone()
        }
    };
    // The server's own entries: besides those of its start, the bad
    // policies.json, and es.json as the stop rewrote it.
    eventually("both reloads are audited", || async {
        let reloads = entries(&["--action", "config.reload"]).await;
        let of = |f: &'static str| reloads.iter().filter(move |e| e["target"] == f);
        of("policies.json").any(|e| e["outcome"] == "invalid") && of("es.json").count() == 2
    })
    .await;
    let all = entries(&[]).await;
    let field = |es: &[serde_json::Value], f: &str| -> Vec<String> {
        es.iter()
            .map(|e| e[f].as_str().unwrap().to_string())
            .collect()
    };

    let cancel = entries(&["--action", "cancel"]).await;
    assert_eq!(cancel.len(), 1, "{cancel:?}");
    assert_eq!(cancel[0]["target"], ids[0].as_str());
    assert_eq!(cancel[0]["detail"], "reason: flags test");
    let es = entries(&["--action", "estop.set"]).await;
    assert_eq!(field(&es, "detail"), ["reason: rack work"]);
    for flag in ["--target", "--workflow"] {
        let about = entries(&[flag, &ids[1]]).await;
        assert_eq!(field(&about, "action"), ["submit"], "{flag}");
    }
    let server = entries(&["--actor", "interlockd"]).await;
    assert!(!server.is_empty());
    // Config reloads, and the template files stored at start.
    assert!(
        field(&server, "action")
            .iter()
            .all(|a| a == "config.reload" || a == "template.apply")
    );
    let callers = entries(&["--actor", "anonymous@127.0.0.1"]).await;
    assert_eq!(callers.len() + server.len(), all.len(), "{all:?}");
    assert!(
        field(&callers, "action")
            .iter()
            .all(|a| a != "config.reload")
    );
    let both = entries(&[
        "--actor",
        "anonymous@127.0.0.1",
        "--action",
        "submit",
        "--target",
        &ids[0],
    ])
    .await;
    assert_eq!(field(&both, "target"), [ids[0].clone()]);

    let future =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(3600))
            .to_string();
    assert_eq!(entries(&["--since", "1h"]).await, all);
    assert!(entries(&["--until", "1h"]).await.is_empty());
    assert!(entries(&["--since", &future]).await.is_empty());
    // From the cancel on: it and what came after; until it: what came
    // before (`all` is newest first).
    let at = cancel[0]["at"].as_str().unwrap();
    let pos = all.iter().position(|e| e["action"] == "cancel").unwrap();
    assert_eq!(entries(&["--since", at]).await, all[..=pos]);
    assert_eq!(entries(&["--until", at]).await, all[pos + 1..]);
}
