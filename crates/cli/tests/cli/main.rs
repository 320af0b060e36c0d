//! The interlock CLI end to end: every test starts a real in-process
//! server and runs the `interlock` binary against it.

mod basics;
mod transport;

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
