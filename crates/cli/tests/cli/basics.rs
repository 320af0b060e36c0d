//! Submitting, validating, control commands and credentials, end to end.

use crate::{GOOD, cli, cli_env, file};
use assert_cmd::Command;
use interlock_tests::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_watch_status_and_list_round_trip_as_json() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let good = file(&dir, "good.json", GOOD);
    let (code, out, err) = cli(&s, &["submit", &good, "--watch"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let id = out.lines().next().unwrap().trim().to_string();
    assert!(out.contains("[Completed]"), "{out}");

    let (code, out, _) = cli(&s, &["--json", "status", &id]).await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["status"], "Completed");
    assert_eq!(v["blocks"][0]["jobs"][0]["outputs"]["waitedMs"], "5");
    assert_eq!(v["labels"]["team"], "sre");

    let (code, out, _) = cli(
        &s,
        &[
            "--json",
            "list",
            "--label",
            "team=sre",
            "--status",
            "Completed",
        ],
    )
    .await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["workflows"][0]["id"], id.as_str());

    // YAML works too.
    let yaml = file(
        &dir,
        "good.yaml",
        "name: x\nblocks:\n  - rateLimit: 1\n    jobs:\n      - name: sleep\n        args: {seconds: \"0\"}\n",
    );
    let (code, out, err) = cli(&s, &["submit", &yaml, "--exec"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim().len(), 36, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_and_failures_have_distinct_exit_codes() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let good = file(&dir, "good.json", GOOD);
    assert_eq!(cli(&s, &["validate", &good]).await.0, 0);
    let bad = file(
        &dir,
        "bad.json",
        r#"{"name": "x", "blocks": [{"jobs": [{"name": "nope"}]}]}"#,
    );
    let (code, out, _) = cli(&s, &["validate", &bad]).await;
    assert_eq!(code, 1);
    assert!(
        out.contains("structure (block 0, job 0): unknown job \"nope\""),
        "{out}"
    );
    let (code, _, err) = cli(&s, &["submit", &bad]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("InvalidArgument"), "{err}");

    let failing = file(
        &dir,
        "fail.json",
        r#"{"name": "x", "blocks": [{"jobs": [{"name": "probe", "args": {"ms": "1", "fail": "true"}}]}]}"#,
    );
    let (code, out, _) = cli(&s, &["submit", &failing, "--watch"]).await;
    assert_eq!(code, 1, "a failed workflow exits 1: {out}");
    assert!(out.contains("probe failed as asked"), "{out}");

    // The sample request shipped in the repository stays valid.
    let shipped = interlock_tests::repo().join("samples/requests/erase-aab.yaml");
    let (code, out, _) = cli(&s, &["validate", shipped.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");

    let garbage = file(&dir, "garbage.json", "{");
    assert_eq!(cli(&s, &["submit", &garbage]).await.0, 2);
    let (code, _, err) = cli(&s, &["status", "0190a5f0-0000-7000-8000-000000000000"]).await;
    assert_eq!(code, 3);
    assert!(err.contains("NotFound"), "{err}");
    let out = tokio::task::spawn_blocking(|| {
        Command::cargo_bin("interlock")
            .unwrap()
            .args(["--addr", "http://127.0.0.1:1", "jobs"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(4), "unreachable server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_commands() {
    let s = TestServer::start().await;
    let (code, out, _) = cli(&s, &["es", "stop", "x", "--reason", "drill"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("x") && out.contains("STOP") && out.contains("drill"),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let good = file(&dir, "good.json", GOOD);
    let (code, _, err) = cli(&s, &["submit", &good]).await;
    assert_eq!(code, 3);
    assert!(err.contains("drill"), "{err}");
    let (code, out, _) = cli(&s, &["es", "drain", "x", "--reason", "cable swap"]).await;
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("x ") && l.contains("DRAIN") && l.contains("cable swap")),
        "{out}"
    );
    let (code, _, err) = cli(&s, &["submit", &good]).await;
    assert_eq!(code, 3);
    assert!(
        err.contains("draining") && err.contains("cable swap"),
        "{err}"
    );
    let (_, out, _) = cli(&s, &["--json", "es", "status"]).await;
    assert!(out.contains("\"EsModeDrain\""), "{out}");
    assert_eq!(cli(&s, &["es", "go", "x"]).await.0, 0);
    let (_, out, _) = cli(&s, &["--json", "es", "status"]).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "x" && e["stop"] == false && e["mode"] == "EsModeGo"),
        "{out}"
    );

    let (_, out, _) = cli(&s, &["jobs"]).await;
    assert!(
        out.contains("diskErase (reconciled after a crash)"),
        "{out}"
    );
    let (_, out, _) = cli(&s, &["buckets"]).await;
    assert!(
        out.contains("diskEraseSatellite") && out.contains("1/1 available"),
        "{out}"
    );
    let (_, out, _) = cli(&s, &["policies"]).await;
    assert!(out.contains("SatelliteDiskErase:"), "{out}");
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("startOrEnd")
            && l.contains("\"JobName\":\"tokenBucket\"")),
        "each policy's rules are shown: {out}"
    );
    assert!(out.contains("x: allowed without rules"), "{out}");

    // Cancel a long one.
    let long = file(
        &dir,
        "long.json",
        r#"{"name": "x", "blocks": [{"jobs": [{"name": "probe", "args": {"ms": "60000"}}]}]}"#,
    );
    let (_, out, _) = cli(&s, &["submit", &long, "--exec"]).await;
    let id = out.trim().to_string();
    let (code, out, _) = cli(&s, &["cancel", &id, "--reason", "done testing"]).await;
    assert_eq!((code, out.trim()), (0, "Cancelled"));

    // The address can come from a config file instead of --addr.
    let cfg = file(&dir, "cli.json", &format!(r#"{{"addr": "{}"}}"#, s.addr()));
    let out = tokio::task::spawn_blocking(move || {
        Command::cargo_bin("interlock")
            .unwrap()
            .env_remove("INTERLOCK_ADDR")
            .args(["--config", &cfg, "policies"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (code, out, _) = cli(&s, &["completions", "bash"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("interlock"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_tokens_and_client_certificates_from_flags_and_environment() {
    use interlock_tests::pki::Ca;
    let dir = tempfile::tempdir().unwrap();
    // The CLI mints the token; the server is given only its hash.
    let (code, out, err) = cli_env(
        vec![],
        &[
            "--json",
            "token",
            "new",
            "--name",
            "ci",
            "--expires-in",
            "1h",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let minted: serde_json::Value = serde_json::from_str(&out).unwrap();
    let expires = humantime::parse_rfc3339(minted["expires"].as_str().unwrap()).unwrap();
    assert!(expires > std::time::SystemTime::now() + std::time::Duration::from_secs(3500));
    let token = minted["token"].as_str().unwrap().to_string();
    let ca = Ca::new(dir.path(), "cli");
    let server = ca.server(dir.path(), "server");
    let alice = ca.client(dir.path(), Some("alice"), &[]);
    let tokens = serde_json::json!({"tokens": [
        {"name": "ci", "sha256": minted["sha256"], "expires": minted["expires"]}
    ]});
    let rbac = r#"{"roles": {"op": [{"actions": ["read", "submit", "exec"], "workflows": ["x"]}]},
        "bindings": [{"identity": "token:ci", "roles": ["op"]}, {"identity": "cert:alice", "roles": ["op"]}]}"#;
    let s = TestServer::start_with(|c| {
        c.tls_cert = Some(server.cert.clone());
        c.tls_key = Some(server.key.clone());
        c.tls_client_ca = Some(ca.path.clone());
        std::fs::write(c.configs.join("tokens.json"), tokens.to_string()).unwrap();
        std::fs::write(c.configs.join("rbac.json"), rbac).unwrap();
    })
    .await;
    let addr = s.socket().to_string();
    let token_file = file(&dir, "token", &format!("{token}\n"));
    let good = file(&dir, "good.json", GOOD);
    let env = |extra: Vec<(&'static str, String)>| {
        let mut e = vec![
            ("INTERLOCK_ADDR", addr.clone()),
            ("INTERLOCK_CA", ca.path.display().to_string()),
        ];
        e.extend(extra);
        e
    };

    // Token from a file named in the environment; no scheme means https.
    let (code, out, err) = cli_env(
        env(vec![("INTERLOCK_TOKEN_FILE", token_file.clone())]),
        &["submit", &good, "--watch"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let id = out.lines().next().unwrap().trim().to_string();
    let (code, out, _) = cli_env(
        env(vec![("INTERLOCK_TOKEN", token.clone())]),
        &["--json", "status", &id],
    )
    .await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["submittedBy"], "token:ci");
    assert_eq!(v["executedBy"], "token:ci");

    // A client certificate from flags.
    let (code, out, err) = cli_env(
        env(vec![]),
        &[
            "--cert",
            &alice.cert.display().to_string(),
            "--key",
            &alice.key.display().to_string(),
            "status",
            &id,
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("submitted by token:ci, executed by token:ci"),
        "{out}"
    );

    let (code, out, _) = cli_env(env(vec![("INTERLOCK_TOKEN", token.clone())]), &["whoami"]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "token:ci\n  roles: op\n  may: submit, exec, read\n")
    );

    // Refusals: exit 3 with the reason; bad settings: exit 2.
    let (code, _, err) = cli_env(env(vec![]), &["status", &id]).await;
    assert_eq!(code, 3);
    assert!(
        err.contains("Unauthenticated") && err.contains("no credentials"),
        "{err}"
    );
    let (code, _, err) = cli_env(
        env(vec![("INTERLOCK_TOKEN", token.clone())]),
        &["es", "stop", "x", "--reason", "no"],
    )
    .await;
    assert_eq!(code, 3);
    assert!(
        err.contains("PermissionDenied") && err.contains("\"estop\""),
        "{err}"
    );
    let (code, _, err) = cli_env(
        vec![
            ("INTERLOCK_ADDR", format!("http://{addr}")),
            ("INTERLOCK_CA", ca.path.display().to_string()),
        ],
        &["status", &id],
    )
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("use https://"), "{err}");
    let (code, _, err) = cli_env(
        env(vec![("INTERLOCK_CERT", alice.cert.display().to_string())]),
        &["status", &id],
    )
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("go together"), "{err}");
}
