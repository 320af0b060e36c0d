//! Reaching the server: deadlines, unresponsive servers, closed pipes.

use crate::{GOOD, cli, cli_env, file};
use interlock_tests::TestServer;
use std::time::{Duration, Instant};

/// A listener that accepts connections and never says a word.
fn silent_server() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresponsive_server_is_unreachable_within_the_timeout() {
    let addr = silent_server().to_string();
    for (envs, args) in [
        (vec![], vec!["--timeout", "1s", "jobs"]),
        (vec![], vec!["--timeout", "1s", "status", "some-id"]),
        (
            vec![("INTERLOCK_TIMEOUT", "1s".to_string())],
            vec!["buckets"],
        ),
        (
            vec![("INTERLOCK_TIMEOUT", "1s".to_string())],
            vec!["watch", "some-id"],
        ),
    ] {
        let mut envs = envs;
        envs.push(("INTERLOCK_ADDR", addr.clone()));
        let start = Instant::now();
        let (code, out, err) = cli_env(envs, &args).await;
        let took = start.elapsed();
        assert_eq!(code, 4, "{args:?}: {out}{err}");
        assert!(
            err.contains(&addr) && err.contains("within 1s"),
            "{args:?}: {err}"
        );
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
    }
    let (code, _, err) = cli_env(vec![], &["--timeout", "soon", "jobs"]).await;
    assert_eq!(code, 2, "{err}");
}

/// Runs the CLI with a stdout whose reading end is already closed, so its
/// first write fails with a broken pipe; returns (exit code, stderr).
async fn cli_closed_stdout(s: Option<&TestServer>, args: &[&str]) -> (i32, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let addr = s.map(|s| s.addr()).unwrap_or_default();
    tokio::task::spawn_blocking(move || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("interlock"))
            .env("INTERLOCK_ADDR", addr)
            .args(&args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_quietly() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let good = file(&dir, "good.json", GOOD);
    let (code, out, err) = cli(&s, &["submit", &good, "--exec"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let id = out.trim().to_string();
    for args in [
        vec!["completions", "zsh"],
        vec!["--json", "list"],
        vec!["list"],
        vec!["status", &id],
        vec!["--json", "watch", &id],
        vec!["jobs"],
        vec!["token", "new", "--name", "x"],
    ] {
        let (code, err) = cli_closed_stdout(Some(&s), &args).await;
        assert_eq!((code, err.as_str()), (0, ""), "{args:?}");
    }
}
