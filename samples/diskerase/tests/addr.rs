//! diskerase against a real in-process server, addressed the way the
//! `interlock` CLI is: `--addr` or `INTERLOCK_ADDR`, scheme optional.

use assert_cmd::Command;
use interlock_tests::TestServer;

/// Runs diskerase off the async runtime; returns (exit code, stdout, stderr).
async fn diskerase(envs: Vec<(&'static str, String)>, args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::cargo_bin("diskerase")
            .unwrap()
            .env_remove("INTERLOCK_ADDR")
            .env_remove("INTERLOCK_CA")
            .env_remove("INTERLOCK_TOKEN")
            .envs(envs)
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_and_status_reach_the_server_named_by_addr() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("submit.log").display().to_string();
    let data = interlock_tests::repo().join("data").display().to_string();
    // No scheme: plaintext, as for `interlock`.
    let (code, out, err) = diskerase(
        vec![],
        args(&[
            "--addr",
            &s.socket().to_string(),
            "erase-satellite",
            "aab",
            "--data",
            &data,
            "--log",
            &log,
            "--ticket",
            "CHG-9",
        ]),
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("[Completed]"), "{out}");
    let id = std::fs::read_to_string(&log).unwrap().trim().to_string();

    let (code, out, err) =
        diskerase(vec![("INTERLOCK_ADDR", s.addr())], args(&["status", &id])).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("SatelliteDiskErase {id} [Completed]")),
        "{out}"
    );

    // The flag's old name still works.
    let (code, out, err) =
        diskerase(vec![], args(&["--server", &s.addr(), "status-json", &id])).await;
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["id"], id.as_str());

    let (_, out, _) = diskerase(vec![], args(&["--help"])).await;
    assert!(
        out.contains("--addr <ADDR>")
            && out.contains("[env: INTERLOCK_ADDR=]")
            && out.contains("[default: http://127.0.0.1:8080]"),
        "{out}"
    );
}
