//! The interlockd binary itself: configuration errors exit cleanly.

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
