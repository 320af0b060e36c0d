//! The dashboard's HTTP side without a browser: security headers, sign-in,
//! session cookies and their CSRF token, other origins, DNS rebinding.

use crate::http::exchange;
use interlock_tests::{TestServer, write_config};
use serde_json::{Value, json};

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn pages_and_answers_carry_a_strict_content_security_policy() {
    let s = TestServer::start().await;
    let url = s.http_url();
    let (code, head, html) = exchange(&url, "GET", "/ui/workflows/abc", &[], None).await;
    assert_eq!(code, 200, "{head}");
    let csp = header(&head, "content-security-policy").expect("a CSP");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header(&head, "x-frame-options"), Some("DENY"));
    assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
    assert!(html.contains(r#"<script src="/ui/assets/app.js" defer></script>"#));
    assert_eq!(html.matches("<script").count(), 1, "no inline script");
    assert!(
        !html.contains("abc"),
        "nothing from the request is written into the page"
    );

    let (code, head, _) = exchange(&url, "GET", "/api/v1/whoami", &[], None).await;
    assert_eq!(code, 200);
    assert!(header(&head, "content-security-policy").is_some());
    assert_eq!(header(&head, "cache-control"), Some("no-store"));
    assert!(
        header(&head, "strict-transport-security").is_none(),
        "not over TLS"
    );
    let (code, head, js) = exchange(&url, "GET", "/ui/assets/app.js", &[], None).await;
    assert_eq!(
        (code, header(&head, "content-type")),
        (200, Some("text/javascript"))
    );
    assert!(
        !js.contains("innerHTML"),
        "the renderer builds text nodes only"
    );
    let (code, head, _) = exchange(&url, "GET", "/", &[], None).await;
    assert_eq!((code, header(&head, "location")), (303, Some("/ui/")));
}

#[tokio::test]
async fn with_authentication_off_only_loopback_host_names_are_answered() {
    let s = TestServer::start().await;
    let url = s.http_url();
    for host in ["evil.test:8081", "10.1.2.3"] {
        let (code, _, body) =
            exchange(&url, "GET", "/api/v1/workflows", &[("host", host)], None).await;
        assert_eq!(code, 403, "{host}: {body}");
        assert!(body.contains("not a loopback name"), "{body}");
        let (code, _, _) = exchange(&url, "GET", "/ui/", &[("host", host)], None).await;
        assert_eq!(code, 403, "{host}");
    }
    for host in ["localhost:8081", "127.0.0.1", "[::1]:1"] {
        let (code, _, _) =
            exchange(&url, "GET", "/api/v1/workflows", &[("host", host)], None).await;
        assert_eq!(code, 200, "{host}");
    }
    // A session cookie means nothing with authentication off (say, left
    // from a run with it on): it neither signs in nor blocks STOP.
    let (code, _, body) = exchange(
        &url,
        "POST",
        "/api/v1/estop",
        &[(
            "cookie",
            "interlock_session_1=00.1.00; interlock_session=00",
        )],
        Some(json!({"name": "x", "mode": "EsModeStop", "reason": "stale cookie"}).to_string()),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // A state change from another origin is refused even here.
    let (code, _, body) = exchange(
        &url,
        "POST",
        "/api/v1/estop",
        &[("origin", "http://evil.test")],
        Some(json!({"name": "*", "mode": "EsModeGo", "reason": "x"}).to_string()),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("origin"), "{body}");
}

#[tokio::test]
async fn sessions_need_a_good_token_and_their_csrf_token_for_changes() {
    let (op, other) = (
        interlock_auth::tokens::mint(),
        interlock_auth::tokens::mint(),
    );
    let rbac = r#"{"roles": {"op": [{"actions": ["read", "submit", "exec"], "workflows": ["*"]}]},
                   "bindings": [{"identity": "token:operator", "roles": ["op"]},
                                {"identity": "token:other", "roles": ["op"]}]}"#;
    let s = TestServer::start_with(|c| {
        c.reload_interval = std::time::Duration::from_millis(50);
        interlock_tests::enable_auth(c, &[("operator", &op), ("other", &other)], rbac);
    })
    .await;
    let url = s.http_url();

    // Signed out, a page sends the browser to sign in, and back after.
    let (code, head, _) = exchange(&url, "GET", "/ui/workflows/0190a", &[], None).await;
    assert_eq!(code, 303);
    assert_eq!(
        header(&head, "location"),
        Some("/ui/signin?next=/ui/workflows/0190a")
    );

    let signin = |token: String| {
        let url = url.clone();
        async move {
            exchange(
                &url,
                "POST",
                "/ui/signin",
                &[],
                Some(json!({ "token": token }).to_string()),
            )
            .await
        }
    };
    let (code, head, body) = signin("il_wrong".into()).await;
    assert_eq!(code, 401, "{body}");
    assert!(header(&head, "set-cookie").is_none(), "no session: {head}");
    let (code, head, body) = signin(op.clone()).await;
    assert_eq!(code, 200, "{body}");
    let set = header(&head, "set-cookie").expect("a session cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP on loopback: {set}");
    let port = url.rsplit(':').next().unwrap();
    assert!(
        set.starts_with(&format!("interlock_session_{port}=")),
        "{set}"
    );
    let value = set.split(';').next().unwrap().split_once('=').unwrap().1;
    assert!(
        !value.contains(op.trim_start_matches("ilk_")) && !value.contains(&hex(&op)),
        "the token itself is not in the cookie: {value}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let csrf = serde_json::from_str::<Value>(&body).unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();

    // The page served to the session holds its CSRF token.
    let (code, _, html) = exchange(&url, "GET", "/ui/", &[("cookie", &cookie)], None).await;
    assert_eq!(code, 200);
    assert!(html.contains(&csrf));

    let work = json!({"name": "x", "blocks": [{"jobs": [{"name": "probe", "args": {"ms": "1"}}]}]})
        .to_string();
    let post = |headers: Vec<(&'static str, String)>| {
        let (url, work) = (url.clone(), work.clone());
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            exchange(&url, "POST", "/api/v1/workflows", &h, Some(work)).await
        }
    };
    let (code, _, body) = post(vec![("cookie", cookie.clone())]).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let (_, _, other_body) = signin(other.clone()).await;
    let other_csrf = serde_json::from_str::<Value>(&other_body).unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, _, body) = post(vec![
        ("cookie", cookie.clone()),
        ("x-csrf-token", other_csrf),
    ])
    .await;
    assert_eq!(code, 403, "another session's CSRF token: {body}");
    let (code, _, body) = post(vec![
        ("cookie", cookie.clone()),
        ("x-csrf-token", csrf.clone()),
        ("origin", "http://evil.test".into()),
    ])
    .await;
    assert_eq!(code, 403, "from another origin: {body}");
    let (code, _, body) = post(vec![
        ("cookie", cookie.clone()),
        ("x-csrf-token", csrf.clone()),
        ("origin", "http://localhost".into()),
        ("sec-fetch-site", "same-origin".into()),
    ])
    .await;
    assert_eq!(code, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, _, body) = exchange(
        &url,
        "GET",
        &format!("/api/v1/workflows/{id}"),
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let st: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["submittedBy"], "token:operator", "{st}");

    // Revoking the token ends its sessions.
    let tokens =
        json!({"tokens": [{"name": "other", "sha256": interlock_auth::tokens::hash(&other)}]});
    write_config(&s.config_path("tokens.json"), &tokens.to_string());
    interlock_tests::eventually("the revoked session is refused", || {
        let (url, cookie) = (url.clone(), cookie.clone());
        async move {
            exchange(&url, "GET", "/api/v1/whoami", &[("cookie", &cookie)], None)
                .await
                .0
                == 401
        }
    })
    .await;
    let (code, head, _) = exchange(&url, "GET", "/ui/", &[("cookie", &cookie)], None).await;
    assert_eq!(
        (code, header(&head, "location")),
        (303, Some("/ui/signin?next=/ui/"))
    );
    let (code, head, _) = exchange(&url, "POST", "/ui/signout", &[], None).await;
    assert_eq!(code, 200);
    assert!(header(&head, "set-cookie").unwrap().contains("Max-Age=0"));
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}
