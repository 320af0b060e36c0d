//! The session cookie, and the request checks that make a cookie safe to
//! use.
//!
//! A browser signs in once with a bearer token and gets a session value
//! derived from it (`interlock_auth::tokens` explains the value: a MAC
//! keyed by the token's hash, with an expiry; never the token itself). The
//! cookie that holds it is `HttpOnly`, `SameSite=Strict`, `Secure` under
//! TLS, and named after the listener's port, so two servers on one host do
//! not overwrite each other's sessions. Nothing is kept on the server.
//!
//! Invariants:
//! - A cookie is only looked at with authentication on.
//! - A state-changing request authenticated by the cookie must carry
//!   `X-CSRF-Token`, a MAC over the session value that only pages served to
//!   that session are given.
//! - A state-changing request from another origin is refused whatever its
//!   credentials (`Origin`, `Sec-Fetch-Site`), which also covers the
//!   loopback default where authentication is off and there is no cookie.
//! - With authentication off on a loopback address, a request whose `Host`
//!   is not a loopback name is refused: a page that rebinds its own DNS
//!   name to 127.0.0.1 cannot drive this server.

use axum::http::{HeaderMap, HeaderValue, header};

/// The header a cookie-authenticated mutating request carries.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts (never past its token's own expiry).
pub const TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// What the request checks depend on, fixed at start-up.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebPolicy {
    /// The listener speaks TLS: cookies are `Secure`.
    pub tls: bool,
    /// Authentication is off and the listener is loopback: only loopback
    /// `Host` names are served.
    pub loopback_hosts_only: bool,
    /// The listener's port, in the cookie's name.
    pub port: u16,
}

impl WebPolicy {
    fn cookie_name(&self) -> String {
        format!("interlock_session_{}", self.port)
    }
}

/// The session value a request's cookie carries, if any.
pub fn cookie_value(headers: &HeaderMap, p: WebPolicy) -> Option<String> {
    let name = p.cookie_name();
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.'))
}

/// The CSRF token a request carries, if any.
pub fn csrf_sent(headers: &HeaderMap) -> &str {
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The `Set-Cookie` value that holds session `value`.
pub fn start(value: &str, p: WebPolicy) -> HeaderValue {
    cookie(value, TTL.as_secs(), p)
}

/// The `Set-Cookie` value that ends the session.
pub fn end(p: WebPolicy) -> HeaderValue {
    cookie("", 0, p)
}

fn cookie(value: &str, max_age: u64, p: WebPolicy) -> HeaderValue {
    let secure = if p.tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}",
        p.cookie_name()
    ))
    .expect("hex, dots and fixed text are valid header characters")
}

/// Refuses what no credential makes acceptable: a state-changing request
/// from another site, and (authentication off) a rebinding `Host`.
///
/// The host is the `Host` header, or under HTTP/2 (which has none) the
/// request URI's authority.
pub fn check(
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    mutating: bool,
    p: WebPolicy,
) -> Result<(), String> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    if p.loopback_hosts_only && !loopback_host(host) {
        return Err(format!(
            "Host {host:?} is not a loopback name; this server (authentication off) answers \
             only to 127.0.0.1, [::1] or localhost"
        ));
    }
    if !mutating {
        return Ok(());
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && matches!(site, "cross-site" | "same-site")
    {
        return Err(format!(
            "a {site} request may not change state here: use the dashboard served by this \
             server, or the API with a bearer token"
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin.split_once("://").map_or("", |(_, a)| a);
        if authority.is_empty() || !authority.eq_ignore_ascii_case(host) {
            return Err(format!(
                "a request from origin {origin:?} may not change state on {host:?}: use the \
                 dashboard served by this server, or the API with a bearer token"
            ));
        }
    }
    Ok(())
}

fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(h, _)| h),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_only() -> axum::http::Uri {
        axum::http::Uri::from_static("/api/v1/estop")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_cookie_is_named_for_the_listener_and_holds_only_a_session_value() {
        let p = WebPolicy {
            port: 8081,
            ..WebPolicy::default()
        };
        let set = start("0a1b.1700000000.ff", p);
        let text = set.to_str().unwrap();
        assert!(
            text.starts_with("interlock_session_8081=0a1b.1700000000.ff;"),
            "{text}"
        );
        assert!(text.contains("HttpOnly; SameSite=Strict"));
        assert!(!text.contains("Secure"));
        let tls = start("ab", WebPolicy { tls: true, ..p });
        assert!(tls.to_str().unwrap().ends_with("; Secure"));
        let pair = text.split(';').next().unwrap();
        let h = headers(&[("cookie", &format!("other=1; {pair}"))]);
        assert_eq!(cookie_value(&h, p).as_deref(), Some("0a1b.1700000000.ff"));
        let other_port = WebPolicy { port: 9000, ..p };
        assert_eq!(
            cookie_value(&h, other_port),
            None,
            "another server's cookie"
        );
        for bad in [
            "interlock_session_8081=",
            "interlock_session_8081=a\"b",
            "interlock_session_8081=ilk_x",
        ] {
            assert_eq!(cookie_value(&headers(&[("cookie", bad)]), p), None, "{bad}");
        }
        assert!(end(p).to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn other_origins_may_read_nothing_new_and_change_nothing() {
        let p = WebPolicy::default();
        let same = headers(&[
            ("host", "127.0.0.1:8081"),
            ("origin", "http://127.0.0.1:8081"),
        ]);
        assert!(check(&same, &path_only(), true, p).is_ok());
        let cross = headers(&[("host", "127.0.0.1:8081"), ("origin", "http://evil.test")]);
        assert!(check(&cross, &path_only(), true, p).is_err());
        assert!(
            check(&cross, &path_only(), false, p).is_ok(),
            "reads are protected by CORS"
        );
        let null = headers(&[("host", "127.0.0.1:8081"), ("origin", "null")]);
        assert!(check(&null, &path_only(), true, p).is_err());
        let fetch = headers(&[("host", "h:1"), ("sec-fetch-site", "same-site")]);
        assert!(check(&fetch, &path_only(), true, p).is_err());
        // HTTP/2: no Host header, the authority is in the URI.
        let h2 = axum::http::Uri::from_static("https://127.0.0.1:8081/api/v1/estop");
        let origin = headers(&[("origin", "https://127.0.0.1:8081")]);
        assert!(check(&origin, &h2, true, p).is_ok());
        let cli = headers(&[("host", "h:1")]);
        assert!(
            check(&cli, &path_only(), true, p).is_ok(),
            "no browser headers: not a browser"
        );

        let open = WebPolicy {
            loopback_hosts_only: true,
            ..p
        };
        for ok in ["127.0.0.1:8081", "localhost:1", "[::1]:8081", "LOCALHOST"] {
            assert!(
                check(&headers(&[("host", ok)]), &path_only(), false, open).is_ok(),
                "{ok}"
            );
        }
        for bad in ["evil.test:8081", "10.0.0.1:8081", ""] {
            assert!(
                check(&headers(&[("host", bad)]), &path_only(), false, open).is_err(),
                "{bad}"
            );
        }
    }
}
