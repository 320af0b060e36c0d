//! The interlock CLI end to end: every test starts a real in-process
//! server and runs the `interlock` binary against it.

mod basics;
mod clone;
mod control;
mod errors;
mod json;
mod list;
mod logs;
mod operate;
mod template;
mod transport;
mod watch;

use assert_cmd::Command;
use interlock_tests::TestServer;

/// Runs the CLI against `s` off the async runtime; returns (exit code, stdout, stderr).
pub async fn cli(s: &TestServer, args: &[&str]) -> (i32, String, String) {
    cli_env(vec![("INTERLOCK_ADDR", s.addr())], args).await
}

pub const GOOD: &str = r#"{"name": "x", "labels": {"team": "sre"},
  "blocks": [{"rateLimit": 2, "jobs": [{"name": "probe", "args": {"ms": "5"}}, {"name": "sleep", "args": {"seconds": "0"}}]}]}"#;

pub fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// Submits the request in `file` `n` times with `interlock submit`; the ids.
pub async fn submit_n(s: &TestServer, file: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let (code, out, err) = cli(s, &["submit", file]).await;
        assert_eq!(code, 0, "{err}");
        ids.push(out.trim().to_string());
    }
    ids
}

/// Runs the CLI with `envs` (and no ambient credentials), off the async runtime.
pub async fn cli_env(envs: Vec<(&'static str, String)>, args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::cargo_bin("interlock")
            .unwrap()
            .env_remove("INTERLOCK_TOKEN")
            .env_remove("INTERLOCK_CA")
            .env_remove("INTERLOCK_TIMEOUT")
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

/// A CLI process still running, read line by line as it prints.
pub struct Spawned {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    seen: String,
}

impl Spawned {
    /// Starts the CLI against `s` with stdout (not a terminal) piped.
    pub fn start(s: &TestServer, args: &[&str]) -> Self {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("interlock"))
            .env_remove("INTERLOCK_TOKEN")
            .env_remove("INTERLOCK_CA")
            .env_remove("INTERLOCK_TIMEOUT")
            .env("INTERLOCK_ADDR", s.addr())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdout,
            seen: String::new(),
        }
    }

    /// Reads lines until one contains `needle`; returns that line. The
    /// caller's runtime must be multi-threaded: this blocks.
    pub fn wait_for(&mut self, needle: &str) -> String {
        use std::io::BufRead;
        tokio::task::block_in_place(|| {
            loop {
                let mut line = String::new();
                let n = self.stdout.read_line(&mut line).unwrap();
                assert!(
                    n > 0,
                    "no line with {needle:?} before the end:\n{}",
                    self.seen
                );
                self.seen.push_str(&line);
                if line.contains(needle) {
                    return line;
                }
            }
        })
    }

    /// Waits for the exit; returns (exit code, all of stdout, stderr).
    pub fn finish(mut self) -> (i32, String, String) {
        use std::io::Read;
        tokio::task::block_in_place(|| {
            self.stdout.read_to_string(&mut self.seen).unwrap();
            let out = self.child.wait_with_output().unwrap();
            (
                out.status.code().unwrap_or(-1),
                self.seen,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    }
}
