//! The interlockd binary itself: configuration errors exit cleanly, and the
//! secured deployment starts from flags alone.

use std::process::Command;

#[test]
fn a_malformed_config_file_exits_with_a_usage_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("interlockd.json");
    std::fs::write(
        &cfg,
        r#"{"listen": "127.0.0.1:0", "max_in_flight": "lots"}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_interlockd-under-test"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("interlockd.json") && err.contains("max_in_flight"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    std::fs::write(&cfg, r#"{"listen": "127.0.0.1:0", "typo_field": 1}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_interlockd-under-test"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `typo_field`"));
}

#[test]
fn a_non_loopback_address_is_refused_without_insecure() {
    let out = Command::new(env!("CARGO_BIN_EXE_interlockd-under-test"))
        .args(["--listen", "0.0.0.0:0", "--metrics-listen", "off"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0") && err.contains("--insecure"),
        "{err}"
    );
}

/// The secured deployment shape: every interface, TLS, tokens, RBAC.
#[tokio::test]
async fn with_tls_and_auth_it_listens_on_every_interface_and_checks_callers() {
    use interlock_auth::tokens;
    use interlock_client::{Client, Credentials, Options};
    use interlock_tests::{pki::Ca, repo};
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    for f in ["policies.json", "es.json", "buckets.json", "rbac.json"] {
        std::fs::copy(repo().join("configs").join(f), configs.join(f)).unwrap();
    }
    let token = tokens::mint();
    let entry =
        serde_json::json!({"tokens": [{"name": "dashboard", "sha256": tokens::hash(&token)}]});
    std::fs::write(configs.join("tokens.json"), entry.to_string()).unwrap();
    let ca = Ca::new(dir.path(), "bin");
    let server = ca.server(dir.path(), "server");
    /// Kills the server however the test ends.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_interlockd-under-test"))
        .args(["--listen", "0.0.0.0:0", "--metrics-listen", "off", "--auth"])
        .arg("--tls-cert")
        .arg(&server.cert)
        .arg("--tls-key")
        .arg(&server.key)
        .arg("--db")
        .arg(dir.path().join("var/interlock.db"))
        .arg("--configs")
        .arg(&configs)
        .arg("--data")
        .arg(repo().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn interlockd");
    let stdout = child.stdout.take().unwrap();
    let _child = Killed(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port = line.trim().rsplit(':').next().unwrap().to_string();
    assert!(line.contains("0.0.0.0:"), "{line}");
    let connect = |token: Option<String>| {
        let opts = Options {
            max_attempts: 1,
            credentials: Credentials {
                ca_pem: Some(ca.pem.clone().into_bytes()),
                token,
                ..Credentials::default()
            },
            ..Options::default()
        };
        let addr = format!("127.0.0.1:{port}");
        async move { Client::connect(&addr, opts).await.unwrap() }
    };
    let viewer = connect(Some(token)).await;
    let jobs = viewer
        .job_catalog()
        .await
        .expect("the shipped viewer role reads");
    assert!(jobs.jobs.iter().any(|j| j.name == "diskErase"));
    let err = viewer
        .submit(interlock_tests::req::satellite_erase(
            "AAB",
            &["aab-sat-01"],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::PermissionDenied), "{err}");
    let err = connect(None).await.job_catalog().await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::Unauthenticated), "{err}");
}
