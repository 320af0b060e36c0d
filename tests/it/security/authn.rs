//! Authentication: who a caller is, and what happens without credentials.

use super::*;

#[tokio::test]
async fn without_credentials_every_rpc_is_unauthenticated_but_health_answers() {
    let sec = secure().await;
    let id = sec.submitted().await;
    for creds in [sec.creds(None), sec.creds(Some("ilk_not-a-real-token"))] {
        let bad_token = creds.token.is_some();
        let results = call_everything(sec.transport(creds).await, &id).await;
        assert_eq!(results.len(), 26);
        for (rpc, code, msg) in results {
            assert_eq!(code, Code::Unauthenticated, "{rpc}: {msg}");
            let want = if bad_token {
                "bearer token not recognized"
            } else {
                "no credentials"
            };
            assert!(msg.contains(want), "{rpc}: {msg}");
        }
    }
    let metrics = sec.s.scrape().await;
    for series in [
        "interlock_auth_failures_total{reason=\"none\"}",
        "interlock_auth_failures_total{reason=\"bad_token\"}",
    ] {
        assert!(metrics.contains(series), "{series} missing");
    }
    // Load balancers probe health without credentials.
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(sec.transport(sec.creds(None)).await);
    let st = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers without credentials")
        .into_inner();
    assert_eq!(
        st.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[test]
fn exposed_addresses_need_tls_and_auth_or_an_explicit_insecure() {
    use interlock_server::Config;
    let base = Config {
        listen: "0.0.0.0:8443".parse().unwrap(),
        metrics_listen: None,
        ..Config::default()
    };
    let check = |f: &dyn Fn(&mut Config)| {
        let mut c = base.clone();
        f(&mut c);
        c.validate()
    };
    let tls = |c: &mut Config| {
        c.tls_cert = Some("s.pem".into());
        c.tls_key = Some("s.key".into());
    };
    let err = check(&|_| {}).unwrap_err();
    assert!(err.contains("without TLS and authentication"), "{err}");
    let err = check(&tls).unwrap_err();
    assert!(err.contains("without authentication"), "{err}");
    let err = check(&|c| c.auth = true).unwrap_err();
    assert!(err.contains("without TLS"), "{err}");
    check(&|c| {
        tls(c);
        c.auth = true;
    })
    .expect("TLS and tokens");
    check(&|c| {
        tls(c);
        c.tls_client_ca = Some("ca.pem".into());
    })
    .expect("mTLS implies auth");
    check(&|c| c.insecure = true).expect("explicitly insecure");
    let err = check(&|c| {
        tls(c);
        c.auth = true;
        c.metrics_listen = Some("0.0.0.0:9464".parse().unwrap());
    })
    .unwrap_err();
    assert!(err.contains("/metrics"), "{err}");
    let err = check(&|c| c.tls_cert = Some("s.pem".into())).unwrap_err();
    assert!(err.contains("go together"), "{err}");
    let err = check(&|c| {
        tls(c);
        c.auth = true;
        c.tls_client_crl = Some("crl.pem".into());
    })
    .unwrap_err();
    assert!(err.contains("tls_client_crl needs tls_client_ca"), "{err}");
}
