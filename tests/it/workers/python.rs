//! The Python worker sample, as a child process.

use super::*;

/// `python3` with grpcio and grpcio-tools, or why not. Under CI they are
/// installed by `.ci/run`, so a missing one fails the test there.
fn python_with_grpc() -> Result<(), String> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .output()
        .map_err(|e| format!("no python3: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_worker_serves_a_declared_type_and_is_cancelled_by_push() {
    if let Err(why) = python_with_grpc() {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with grpcio and grpcio-tools is needed: {why}"
        );
        eprintln!("skipped: python3 with grpcio and grpcio-tools is not available: {why}");
        return;
    }
    let s = TestServer::start_with(|c| {
        write_config(
            &c.configs.join("jobs.json"),
            r#"{"jobs": [{"name": "pyEcho", "idempotency": "safe",
                "args": [{"name": "text", "required": true, "format": "text"},
                         {"name": "seconds", "format": "seconds"}]}]}"#,
        );
    })
    .await;
    let script = interlock_tests::repo().join("samples/python-worker/worker.py");
    let mut child = std::process::Command::new("python3")
        .arg(&script)
        .args(["--addr", &s.addr(), "--type", "pyEcho", "--name", "py-1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 starts");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take();
    let _child = Kill(child);
    for _ in 0..3000 {
        let r = listing(&s).await;
        if r.workers.iter().any(|w| w.name == "py-1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = listing(&s).await;
    assert!(
        r.workers
            .iter()
            .any(|w| w.name == "py-1" && w.job_types == ["pyEcho"]),
        "the python worker never connected: {r:?} {:?}",
        stderr.map(|mut e| {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
            s
        })
    );
    let c = s.client().await;
    let id = run(&s, vec![req::job("pyEcho", &[("text", "hello")])]).await;
    let done = wait_final(&c, &id).await;
    assert_eq!(done.status, v1::Status::Completed as i32, "{done:?}");
    let out = &done.blocks[0].jobs[0].outputs;
    assert_eq!(out.get("echo").map(String::as_str), Some("hello"));
    assert_eq!(out.get("worker").map(String::as_str), Some("python"));
    let logs = log_lines(&s, &id).await;
    assert!(
        logs.iter()
            .any(|l| l.text.starts_with("python worker") && l.text.ends_with("echoing 'hello'")),
        "{logs:?}"
    );

    // A long task is cancelled by a push, not by waiting it out.
    let id = run(
        &s,
        vec![req::job("pyEcho", &[("text", "x"), ("seconds", "600")])],
    )
    .await;
    eventually("the python worker holds the task", || async {
        listing(&s).await.workers.iter().any(|w| w.leased == 1)
    })
    .await;
    c.raw()
        .cancel(v1::CancelReq {
            id: id.clone(),
            reason: "not today".into(),
        })
        .await
        .unwrap();
    let done = wait_final(&c, &id).await;
    assert_eq!(done.status, v1::Status::Cancelled as i32, "{done:?}");
    let audit = s.audit_log().await;
    assert!(
        audit.iter().any(|e| e.action == "task.complete"
            && e.target == id
            && e.detail.contains("failed: cancelled")),
        "the worker confirmed the cancel: {audit:?}"
    );
}
