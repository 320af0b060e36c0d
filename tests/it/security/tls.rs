//! TLS: client certificates as identities, revocation, certificate
//! rotation, and plaintext clients against the TLS port.

use super::*;

#[tokio::test]
async fn client_certificates_identify_callers_and_foreign_ones_are_refused() {
    let sec = secure().await;
    let dir = sec.pki.path();
    let alice = sec.ca.client(dir, Some("alice"), &[]);
    let mut wf = Wf::new(sec.transport(sec.cert_creds(&alice)).await);
    let id = wf
        .submit(req::work("x", vec![req::block(1, vec![req::probe(1)])]))
        .await
        .expect("alice is an operator")
        .into_inner()
        .id;
    wf.exec(v1::ExecReq { id: id.clone() }).await.unwrap();
    let st = wf
        .status(v1::StatusReq { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.submitted_by, "cert:alice");
    assert_eq!(st.executed_by, "cert:alice");

    // Matched by a SAN glob; named by the common name.
    let jo = sec
        .ca
        .client(dir, Some("Jo Smith"), &["jo.sre.example.com"]);
    let t = sec.transport(sec.cert_creds(&jo)).await;
    let me = Ctl::new(t.clone())
        .who_am_i(v1::WhoAmIReq::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.identity, "cert:Jo Smith");
    assert_eq!(me.aliases, ["cert:jo.sre.example.com"]);
    assert_eq!(me.roles, ["viewer"]);
    assert!(me.auth_enabled);
    let mut wf = Wf::new(t);
    wf.status(v1::StatusReq { id: id.clone() })
        .await
        .expect("jo reads");
    let (c, m) = code(
        wf.cancel(v1::CancelReq {
            id,
            reason: String::new(),
        })
        .await,
    );
    assert_eq!(c, Code::PermissionDenied);
    assert!(
        m.starts_with("cert:Jo Smith lacks the grant \"cancel\""),
        "{m}"
    );

    // A bound name without a certificate from the CA gets nowhere.
    let other = Ca::new(dir, "other");
    let mallory = other.client(dir, Some("alice"), &[]);
    let refused = match sec.s.transport_with(sec.cert_creds(&mallory)).await {
        Err(e) => Some(e.to_string()),
        Ok(t) => match Wf::new(t).job_catalog(v1::JobCatalogReq {}).await {
            Ok(_) => None,
            Err(s) => Some(s.to_string()),
        },
    };
    assert!(
        refused.is_some(),
        "a certificate from another CA was accepted"
    );
}

#[tokio::test]
async fn a_client_certificate_listed_in_the_crl_is_refused_once_the_crl_reloads() {
    let sec = secure_with(|c, ca, dir| {
        c.tls_client_crl = Some(ca.crl(dir, "clients.crl", &[]));
    })
    .await;
    let dir = sec.pki.path();
    let alice = sec.ca.client(dir, Some("alice"), &[]);
    let bob = sec.ca.client(dir, Some("bob.sre.example.com"), &[]);
    async fn reads(sec: &Secure, leaf: &Leaf) -> bool {
        match sec.s.transport_with(sec.cert_creds(leaf)).await {
            Ok(t) => Ctl::new(t).who_am_i(v1::WhoAmIReq::default()).await.is_ok(),
            Err(_) => false,
        }
    }
    assert!(reads(&sec, &alice).await);
    sec.ca.crl(dir, "clients.crl", &[&alice]);
    eventually("alice's revoked certificate is refused", || async {
        !reads(&sec, &alice).await
    })
    .await;
    assert!(
        reads(&sec, &bob).await,
        "an unrevoked certificate still works"
    );
}

#[tokio::test]
async fn a_plaintext_client_against_the_tls_port_fails_cleanly() {
    let sec = secure().await;
    let attempt = async {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", sec.s.socket()))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
            .connect()
            .await;
        match ch {
            Err(e) => Err(e.to_string()),
            Ok(ch) => v1::workflow_client::WorkflowClient::new(ch)
                .job_catalog(v1::JobCatalogReq {})
                .await
                .map(|_| ())
                .map_err(|s| format!("{:?}: {}", s.code(), s.message())),
        }
    };
    let r = tokio::time::timeout(Duration::from_secs(20), attempt)
        .await
        .expect("a plaintext client gets an answer, not a hang");
    assert!(r.is_err(), "a plaintext call succeeded against TLS");
    // The server is unharmed.
    let (mut wf, _) = sec.as_role(Some("viewer")).await;
    wf.job_catalog(v1::JobCatalogReq {}).await.unwrap();
    // And a TLS client is told clearly when it lacks the CA.
    let err = sec
        .s
        .transport_with(Credentials {
            ca_pem: Some(Ca::new(sec.pki.path(), "stranger").pem.into_bytes()),
            ..Credentials::default()
        })
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot connect"), "{err}");
}

#[tokio::test]
async fn the_server_certificate_reloads_and_a_bad_one_is_not_taken() {
    let sec = secure().await;
    let dir = sec.pki.path();
    let next_ca = Ca::new(dir, "next");
    let with_ca = |ca: &Ca| Credentials {
        ca_pem: Some(ca.pem.clone().into_bytes()),
        token: Some(sec.tokens["viewer"].clone()),
        ..Credentials::default()
    };
    async fn works(s: &TestServer, c: Credentials) -> bool {
        match s.transport_with(c).await {
            Ok(t) => Wf::new(t).job_catalog(v1::JobCatalogReq {}).await.is_ok(),
            Err(_) => false,
        }
    }
    assert!(works(&sec.s, with_ca(&sec.ca)).await);
    assert!(!works(&sec.s, with_ca(&next_ca)).await);

    // Rotate: a certificate from the next CA, written over the same files.
    let rotated = next_ca.server(dir, "rotated");
    rotated.write_to(&sec.server_cert.cert, &sec.server_cert.key);
    eventually("new connections see the rotated certificate", || {
        works(&sec.s, with_ca(&next_ca))
    })
    .await;
    assert!(!works(&sec.s, with_ca(&sec.ca)).await);

    // A broken write (a key that does not match) is refused; the rotated
    // certificate stays in force.
    let (_, admin) = sec.as_role_with(&next_ca, "admin").await;
    let invalid_tls_reloads = || {
        let admin = admin.clone();
        async move {
            audit_log(admin)
                .await
                .iter()
                .filter(|e| e.target == "tls" && e.outcome == "invalid")
                .count()
        }
    };
    let before = invalid_tls_reloads().await;
    let unrelated = next_ca.server(dir, "unrelated");
    write_config(&sec.server_cert.key, &unrelated.key_pem);
    eventually("the bad TLS reload is logged", || async {
        invalid_tls_reloads().await > before
    })
    .await;
    assert!(works(&sec.s, with_ca(&next_ca)).await);
}

impl Secure {
    async fn as_role_with(&self, ca: &Ca, role: &str) -> (Wf, Ctl) {
        let t = self
            .transport(Credentials {
                ca_pem: Some(ca.pem.clone().into_bytes()),
                token: Some(self.tokens[role].clone()),
                ..Credentials::default()
            })
            .await;
        (Wf::new(t.clone()), Ctl::new(t))
    }
}

#[tokio::test]
async fn the_http_api_and_dashboard_are_served_over_tls_with_the_same_certificate() {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::{self, pki_types::ServerName};
    let sec = secure().await;
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls::pki_types::CertificateDer::from_pem_slice(sec.ca.pem.as_bytes()).unwrap();
    roots.add(ca).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots.clone())
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let addr = sec.s.http_url().trim_start_matches("http://").to_string();
    // A client certificate identifies its holder, as over gRPC.
    let alice = sec.ca.client(sec.pki.path(), Some("alice"), &[]);
    let with_cert = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![rustls::pki_types::CertificateDer::from_pem_slice(alice.cert_pem.as_bytes()).unwrap()],
        rustls::pki_types::PrivateKeyDer::from_pem_slice(alice.key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let tls_cert = tokio_rustls::TlsConnector::from(std::sync::Arc::new(with_cert))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (code, _, body) =
        crate::http::exchange_on(tls_cert, "GET", "/api/v1/whoami", &[], None).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("cert:alice"), "{body}");

    let tls = || async {
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("a TLS handshake with the gRPC listener's certificate")
    };
    let bearer = format!("Bearer {}", sec.tokens["operator"]);
    let (code, _, body) = crate::http::exchange_on(
        tls().await,
        "GET",
        "/api/v1/whoami",
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("token:operator"), "{body}");
    // Over TLS the session cookie is Secure.
    let token = serde_json::json!({ "token": sec.tokens["viewer"] }).to_string();
    let (code, head, _) =
        crate::http::exchange_on(tls().await, "POST", "/ui/signin", &[], Some(token)).await;
    assert_eq!(code, 200);
    let cookie = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a cookie");
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    assert!(
        head.to_ascii_lowercase()
            .contains("strict-transport-security: max-age="),
        "{head}"
    );
    // Plain HTTP gets no HTTP answer from the TLS listener.
    let mut plain = tokio::net::TcpStream::connect(&addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!(
        "GET /api/v1/whoami HTTP/1.1\r\nHost: localhost\r\nAuthorization: {bearer}\r\n\r\n"
    );
    plain.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut got)).await;
    assert!(
        !got.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}
