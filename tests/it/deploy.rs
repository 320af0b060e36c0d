//! What ships for operators: the systemd unit and the Prometheus alert
//! rules are valid, and name only flags and metrics interlockd has.

use interlock_tests::interlockd;
use std::process::Command;

fn repo_file(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

#[test]
fn the_alert_rules_pass_promtool_and_name_only_exported_metrics() {
    let rules = repo_file("deploy/alerts.yml");
    match Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool is not installed, and CI=true: .ci/run installs it"
            );
            eprintln!("skipped promtool: not installed (Debian package prometheus)");
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    }
    // Every interlock_* metric an alert names is one the server describes.
    let text = std::fs::read_to_string(&rules).unwrap();
    let described = std::fs::read_to_string(repo_file("crates/server/src/metrics.rs")).unwrap();
    let mut named = 0;
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("interlock_") {
            named += 1;
            assert!(
                described.contains(&format!("\"{word}\"")),
                "deploy/alerts.yml names {word}, which interlockd does not export"
            );
        }
    }
    assert!(named >= 8, "{named}");
}

#[test]
fn the_systemd_unit_verifies_and_passes_only_real_flags() {
    let unit = std::fs::read_to_string(repo_file("deploy/interlockd.service")).unwrap();
    // Each flag ExecStart passes is one interlockd takes.
    let help = Command::new(interlockd!()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let exec: String = unit
        .lines()
        .skip_while(|l| !l.starts_with("ExecStart="))
        .take_while(|l| !l.is_empty() && !l.starts_with("KillSignal"))
        .collect();
    let flags: Vec<&str> = exec
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .collect();
    assert!(flags.len() >= 5, "{exec}");
    for f in flags {
        assert!(
            help.contains(f),
            "the unit passes {f}, which interlockd does not take"
        );
    }
    // systemd's own check, with ExecStart pointing at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("interlockd.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/interlockd", interlockd!()),
    )
    .unwrap();
    match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "systemd-analyze verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Documented manual check (README, "Operating Interlock").
            eprintln!("skipped systemd-analyze verify: systemd is not installed");
        }
        Err(e) => panic!("cannot run systemd-analyze: {e}"),
    }
}

#[test]
fn under_systemd_it_says_ready_once_serving_and_stopping_on_sigterm() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("notify.sock");
    let systemd = UnixDatagram::bind(&sock).unwrap();
    systemd
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut d = interlock_tests::daemon::DaemonSpec::new(interlockd!(), dir.path())
        .env("NOTIFY_SOCKET", sock.display().to_string())
        .spawn()
        .expect("interlockd starts");
    let mut buf = [0u8; 256];
    let mut said = || {
        let n = systemd.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    assert_eq!(said().trim(), "READY=1");
    // At once: the TERM handler is installed before READY is sent (it once
    // was not, and a TERM this early killed the process undrained).
    d.signal("TERM");
    assert_eq!(said().trim(), "STOPPING=1");
    let exit = d
        .wait_exit(std::time::Duration::from_secs(20))
        .expect("an exit after the drain");
    assert!(exit.success(), "drained and exited 0, not killed: {exit:?}");
}

#[test]
fn interlockd_prints_its_man_page_from_its_flags() {
    let out = Command::new(interlockd!()).arg("--man").output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.starts_with(".ie"),
        "roff: {}",
        &page[..80.min(page.len())]
    );
    assert!(page.contains(".TH interlockd 8"), "section 8");
    for flag in [
        "db",
        "retention",
        "audit\\-retention",
        "restore",
        "tls\\-client\\-ca",
    ] {
        assert!(
            page.contains(&format!("\\-\\-{flag}")),
            "--{flag} documented"
        );
    }
}
