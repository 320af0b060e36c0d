//! Operating commands that need no server: `admin gen-certs` (proved by a
//! real mTLS server and client using what it wrote) and `man`.

use crate::{cli_env, file};
use interlock_tests::TestServer;

#[tokio::test]
async fn gen_certs_gives_a_working_mtls_quick_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let pki_s = pki.display().to_string();
    let (code, out, err) =
        cli_env(vec![], &["admin", "gen-certs", &pki_s, "--client", "alice"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("interlockd --tls-cert"), "{out}");
    for (name, private) in [
        ("ca.pem", false),
        ("ca.key", true),
        ("server.pem", false),
        ("server.key", true),
        ("client.pem", false),
        ("client.key", true),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(pki.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077 == 0, private, "{name}: {mode:o}");
    }

    // Run twice: refused, and the CA is untouched.
    let ca_before = std::fs::read(pki.join("ca.key")).unwrap();
    let (code, _, err) = cli_env(vec![], &["admin", "gen-certs", &pki_s]).await;
    assert_eq!(code, 2);
    assert!(err.contains("already exists; nothing was written"), "{err}");
    assert_eq!(std::fs::read(pki.join("ca.key")).unwrap(), ca_before);

    // The files, used as the README's quick start uses them.
    let rbac = r#"{"roles": {"op": [{"actions": ["read", "submit", "exec"], "workflows": ["x"]}]},
        "bindings": [{"identity": "cert:alice", "roles": ["op"]}]}"#;
    let s = TestServer::start_with(|c| {
        c.tls_cert = Some(pki.join("server.pem"));
        c.tls_key = Some(pki.join("server.key"));
        c.tls_client_ca = Some(pki.join("ca.pem"));
        c.tls_require_client_cert = true;
        std::fs::write(c.configs.join("rbac.json"), rbac).unwrap();
    })
    .await;
    let creds = |cert: bool| {
        let mut e = vec![
            (
                "INTERLOCK_ADDR",
                format!("https://localhost:{}", s.socket().port()),
            ),
            ("INTERLOCK_CA", pki.join("ca.pem").display().to_string()),
        ];
        if cert {
            e.push((
                "INTERLOCK_CERT",
                pki.join("client.pem").display().to_string(),
            ));
            e.push((
                "INTERLOCK_KEY",
                pki.join("client.key").display().to_string(),
            ));
        }
        e
    };
    let (code, out, err) = cli_env(creds(true), &["whoami"]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "cert:alice\n  roles: op\n  may: submit, exec, read\n"),
        "{err}"
    );
    let good = file(&dir, "good.json", crate::GOOD);
    let (code, _, err) = cli_env(creds(true), &["submit", &good, "--watch"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = cli_env(creds(false), &["whoami"]).await;
    assert_ne!(code, 0, "without the client certificate: refused");
}

#[tokio::test]
async fn man_writes_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let (code, out, err) = cli_env(vec![], &["man", &d]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("wrote "), "{out}");
    let top = std::fs::read_to_string(dir.path().join("interlock.1")).unwrap();
    assert!(
        top.contains(".TH interlock 1"),
        "{}",
        &top[..200.min(top.len())]
    );
    assert!(
        top.contains("gen\\-certs") || top.contains("admin"),
        "subcommands listed"
    );
    let stop = std::fs::read_to_string(dir.path().join("interlock-es-stop.1")).unwrap();
    assert!(stop.contains("\\-\\-reason"), "flags of a nested command");
    let gen_certs =
        std::fs::read_to_string(dir.path().join("interlock-admin-gen-certs.1")).unwrap();
    assert!(gen_certs.contains("\\-\\-client"));
}
