//! Who may serve what: declarations, grants, and their revocation.

use super::*;

#[tokio::test]
async fn workers_offering_undeclared_types_or_lacking_the_grant_are_refused() {
    let s = TestServer::start_with(|c| {
        write_config(&c.configs.join("jobs.json"), JOBS);
        enable_auth(
            c,
            &[("pinger", "pinger-secret"), ("reader", "reader-secret")],
            r#"{"roles": {"pinger": [{"actions": ["work"], "workflows": ["ping", "wipe"]}],
                          "reader": [{"actions": ["read"], "workflows": ["*"]}]},
                "bindings": [{"identity": "token:pinger", "roles": ["pinger"]},
                             {"identity": "token:reader", "roles": ["reader"]}]}"#,
        );
    })
    .await;
    let code = |r: Result<_, tonic::Status>| r.map(|_| ()).unwrap_err();
    let e = code(raw_session(&s, Some("pinger-secret"), &["ping", "nuke"]).await);
    assert_eq!(e.code(), Code::PermissionDenied, "no grant on nuke: {e:?}");
    let e = code(raw_session(&s, Some("reader-secret"), &["ping"]).await);
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("\"work\" on job type \"ping\""),
        "{e:?}"
    );
    // Granted, but jobs.json lets only token:wiper serve wipe.
    let e = code(raw_session(&s, Some("pinger-secret"), &["wipe"]).await);
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("token:wiper"), "{e:?}");
    assert!(
        raw_session(&s, Some("pinger-secret"), &["ping"])
            .await
            .is_ok()
    );
    // Undeclared, with authentication off.
    let open = server().await;
    let e = code(raw_session(&open, None, &["nuke"]).await);
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("not declared in jobs.json"), "{e:?}");
}

/// Waits for `s` to list no worker (as ops sees it), then for `worker` to
/// give up; its error.
async fn turned_away(
    s: &TestServer,
    worker: tokio::task::JoinHandle<Result<(), interlock_client::Error>>,
) -> interlock_client::Error {
    eventually("its session ends", || async {
        workers_seen(s, "ops-secret").await == 0
    })
    .await;
    tokio::time::timeout(Duration::from_secs(20), worker)
        .await
        .expect("the worker gives up")
        .unwrap()
        .unwrap_err()
}

#[tokio::test]
async fn revoking_a_worker_s_grant_or_token_ends_its_session() {
    const RBAC: &str = r#"{"roles": {"worker": [{"actions": ["work"], "workflows": ["wipe"]}],
                          "ops": [{"actions": ["admin"], "workflows": ["*"]}]},
                "bindings": [{"identity": "token:wiper", "roles": ["worker"]},
                             {"identity": "token:ops", "roles": ["ops"]}]}"#;
    let tokens = [("wiper", "wiper-secret"), ("ops", "ops-secret")];
    let s = TestServer::start_with(|c| {
        write_config(&c.configs.join("jobs.json"), JOBS);
        enable_auth(c, &tokens, RBAC);
    })
    .await;
    let start = || {
        let mut o = opts();
        o.credentials.token = Some("wiper-secret".into());
        let w =
            Worker::new(&s.addr(), o, "wiper").handle("wipe", |_| async { Ok(Default::default()) });
        tokio::spawn(async move { w.run(CancellationToken::new()).await })
    };
    // The grant goes: the session ends, and the worker is refused when it
    // comes back.
    let worker = start();
    eventually("the worker connects", || async {
        workers_seen(&s, "ops-secret").await == 1
    })
    .await;
    write_config(
        &s.config_path("rbac.json"),
        &RBAC.replace(r#"["work"]"#, r#"["read"]"#),
    );
    let e = turned_away(&s, worker).await;
    assert_eq!(e.code(), Some(Code::PermissionDenied), "{e}");

    // The token goes: the same. (Until the restored grant is in force a
    // new worker is refused and stops: start it again until it stays.)
    write_config(&s.config_path("rbac.json"), RBAC);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut worker = start();
    while workers_seen(&s, "ops-secret").await != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never came back"
        );
        if worker.is_finished() {
            worker = start();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let only_ops = serde_json::json!({"tokens": [
        {"name": "ops", "sha256": interlock_auth::tokens::hash("ops-secret")}]});
    write_config(&s.config_path("tokens.json"), &only_ops.to_string());
    let e = turned_away(&s, worker).await;
    assert_eq!(e.code(), Some(Code::Unauthenticated), "{e}");
}

#[tokio::test]
async fn a_type_taken_out_of_jobs_json_ends_the_sessions_offering_it() {
    let s = server().await;
    let stop = spawn(
        Worker::new(&s.addr(), opts(), "w1").handle("hang", |_| async { Ok(Default::default()) }),
    );
    online(&s, 1).await;
    write_config(
        &s.config_path("jobs.json"),
        r#"{"jobs": [{"name": "ping", "idempotency": "safe"}]}"#,
    );
    online(&s, 0).await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_token_expires_loses_its_session() {
    // Three seconds from now, as tokens.json writes it.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3;
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    let expires = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let s = TestServer::start_with(|c| {
        write_config(&c.configs.join("jobs.json"), JOBS);
        enable_auth(
            c,
            &[("pinger", "pinger-secret"), ("ops", "ops-secret")],
            r#"{"roles": {"w": [{"actions": ["work"], "workflows": ["ping"]}],
                          "ops": [{"actions": ["admin"], "workflows": ["*"]}]},
                "bindings": [{"identity": "token:pinger", "roles": ["w"]},
                             {"identity": "token:ops", "roles": ["ops"]}]}"#,
        );
        let tokens = serde_json::json!({"tokens": [
            {"name": "pinger", "sha256": interlock_auth::tokens::hash("pinger-secret"), "expires": expires},
            {"name": "ops", "sha256": interlock_auth::tokens::hash("ops-secret")}]});
        write_config(&c.configs.join("tokens.json"), &tokens.to_string());
    })
    .await;
    let mut o = opts();
    o.credentials.token = Some("pinger-secret".into());
    let w =
        Worker::new(&s.addr(), o, "pinger").handle("ping", |_| async { Ok(Default::default()) });
    let worker = tokio::spawn(async move { w.run(CancellationToken::new()).await });
    eventually("the worker connects", || async {
        workers_seen(&s, "ops-secret").await == 1
    })
    .await;
    // No file changes: the expiry alone ends the session.
    let e = turned_away(&s, worker).await;
    assert_eq!(e.code(), Some(Code::Unauthenticated), "{e}");
}
