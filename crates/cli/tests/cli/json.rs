//! `--json` is a contract (docs/cli.md): one shape per command, every field
//! present, null where a field does not apply, statuses by plain name.

use crate::{GOOD, Spawned, cli, file};
use interlock_tests::TestServer;
use serde_json::{Value, json};

fn parse(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_list_and_watch_name_statuses_and_write_every_field() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let good = file(&dir, "good.json", GOOD);
    let (code, out, err) = cli(&s, &["submit", &good]).await;
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_string();

    // Not started yet: no start or end time, but the fields are there.
    let (code, out, _) = cli(&s, &["--json", "status", &id]).await;
    assert_eq!(code, 0);
    let v = parse(&out);
    assert_eq!(v["status"], "NotStarted");
    assert_eq!(v["blocks"][0]["status"], "NotStarted");
    assert_eq!(v["blocks"][0]["jobs"][1]["status"], "NotStarted");
    for field in [
        "started",
        "ended",
        "reason",
        "traceId",
        "executedBy",
        "hadErrors",
    ] {
        assert!(v.as_object().unwrap().contains_key(field), "{field}: {v}");
    }
    assert_eq!(v["started"], Value::Null);
    let created = v["created"].as_str().unwrap();
    assert!(
        created.ends_with('Z') && humantime::parse_rfc3339(created).is_ok(),
        "{created}"
    );
    assert_eq!(v["blocks"][0]["jobs"][0]["timeout"], Value::Null);

    // Watch from before the start, so transitions of every kind are seen.
    let mut watch = Spawned::start(&s, &["--json", "watch", &id]);
    watch.wait_for("snapshot");
    let (code, out, err) = cli(&s, &["--json", "exec", &id]).await;
    assert_eq!(
        (code, parse(&out)),
        (0, json!({"id": id, "ok": true})),
        "{err}"
    );
    let (code, out, err) = watch.finish();
    assert_eq!(code, 0, "{err}");
    let events: Vec<Value> = out.lines().map(parse).collect();
    assert_eq!(events[0]["transition"], Value::Null, "{out}");
    assert_eq!(events[0]["snapshot"]["id"], id.as_str());
    for e in &events[1..] {
        let t = &e["transition"];
        assert_eq!(e["snapshot"], Value::Null, "{out}");
        assert!(!t["status"].as_str().unwrap().starts_with("Status"), "{t}");
        if t["block"].is_null() {
            assert!(t["job"].is_null(), "{t}");
        }
    }
    let block_running = json!({"block": 0, "job": null, "status": "Running"});
    assert!(
        events[1..].iter().any(|e| {
            let t = &e["transition"];
            (&t["block"], &t["job"], &t["status"])
                == (
                    &block_running["block"],
                    &block_running["job"],
                    &block_running["status"],
                )
        }),
        "{out}"
    );
    let last = events.last().unwrap();
    assert_eq!(
        (&last["transition"]["block"], &last["transition"]["job"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(
        (&last["snapshot"]["status"], &last["transition"]["status"]),
        (&Value::Null, &json!("Completed")),
        "the stream ends with the workflow's own transition: {out}"
    );

    let (code, out, _) = cli(&s, &["--json", "status", &id]).await;
    assert_eq!(code, 0);
    let v = parse(&out);
    assert_eq!(v["status"], "Completed");
    assert_eq!(v["blocks"][0]["jobs"][0]["status"], "Completed");

    // Status filters in any case; rows name their status plainly.
    for filter in ["completed", "COMPLETED", "StatusCompleted", "Completed"] {
        let (code, out, err) = cli(&s, &["--json", "list", "--status", filter]).await;
        assert_eq!(code, 0, "{filter}: {err}");
        let v = parse(&out);
        assert_eq!(v["workflows"][0]["id"], id.as_str(), "{filter}");
        assert_eq!(v["workflows"][0]["status"], "Completed");
        assert_eq!(v["nextPageToken"], "");
    }
    let (code, out, _) = cli(&s, &["--json", "list", "--status", "running"]).await;
    assert_eq!((code, parse(&out)["workflows"].clone()), (0, json!([])));
    let (code, _, err) = cli(&s, &["list", "--status", "finished"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("NotStarted, Running"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_writes_null_for_violations_not_about_one_block_or_job() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bad = file(
        &dir,
        "bad.json",
        r#"{"name": "", "blocks": [{"jobs": [{"name": "nope"}]}, {"jobs": []}]}"#,
    );
    let (code, out, _) = cli(&s, &["--json", "validate", &bad]).await;
    assert_eq!(code, 1);
    let v = parse(&out);
    assert_eq!(v["ok"], false);
    let at: Vec<(Value, Value)> = v["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["block"].clone(), v["job"].clone()))
        .collect();
    for want in [
        (Value::Null, Value::Null),
        (json!(0), json!(0)),
        (json!(1), Value::Null),
    ] {
        assert!(at.contains(&want), "{want:?} in {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_prints_json() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let long = file(
        &dir,
        "long.json",
        r#"{"name": "x", "blocks": [{"jobs": [{"name": "probe", "args": {"ms": "60000"}}]},
                                    {"jobs": [{"name": "probe", "args": {"ms": "1"}}]}]}"#,
    );
    let (code, out, err) = cli(&s, &["--json", "submit", &long, "--exec"]).await;
    assert_eq!(code, 0, "{err}");
    let v = parse(&out);
    assert_eq!(v["ok"], true);
    let id = v["id"].as_str().unwrap().to_string();
    for cmd in ["pause", "resume"] {
        let (code, out, err) = cli(&s, &["--json", cmd, &id]).await;
        assert_eq!(
            (code, parse(&out)),
            (0, json!({"id": id, "ok": true})),
            "{cmd}: {err}"
        );
    }
    let (code, out, err) = cli(&s, &["--json", "clone", &id]).await;
    assert_eq!(code, 0, "{err}");
    let clone = parse(&out);
    assert_eq!(clone["ok"], true);
    assert_ne!(clone["id"], id.as_str());
    let (code, out, _) = cli(&s, &["--json", "cancel", &id]).await;
    assert_eq!(
        (code, parse(&out)),
        (0, json!({"id": id, "ok": true, "status": "Cancelled"}))
    );

    for (args, key) in [
        (vec!["es", "status"], "entries"),
        (vec!["es", "go", "x"], "entries"),
        (vec!["buckets"], "buckets"),
        (vec!["limits"], "limits"),
        (vec!["jobs"], "jobs"),
        (vec!["policies"], "workflows"),
        (vec!["audit"], "entries"),
        (vec!["whoami"], "identity"),
        (vec!["cluster"], "instances"),
        (vec!["token", "new", "--name", "ci"], "sha256"),
    ] {
        let mut a = vec!["--json"];
        a.extend(&args);
        let (code, out, err) = cli(&s, &a).await;
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(parse(&out).get(key).is_some(), "{args:?}: {out}");
    }
    let (_, out, _) = cli(&s, &["--json", "audit"]).await;
    let audit = parse(&out);
    let pause = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "pause")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(pause["target"], id.as_str());
}
