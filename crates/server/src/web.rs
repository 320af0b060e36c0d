//! The web dashboard: pages under `/ui/`, sign-in and sign-out, the
//! embedded assets, and the security headers of every HTTP response.
//!
//! The pages are one static HTML shell plus `app.js`, which draws each page
//! from the JSON API (`/api/v1/...`) and follows a workflow's Watch stream
//! as Server-Sent Events. Rendering in the browser from the very API that
//! scripts use means the dashboard can do nothing the API does not allow,
//! and the one renderer builds the DOM with text nodes only (never HTML
//! from data), so names, descriptions, arguments, errors and labels are
//! shown as text whatever they contain.
//!
//! Invariants:
//! - The server writes nothing user-supplied into HTML: the shell holds
//!   only fixed text and the session's CSRF token (hex).
//! - Every response carries a Content Security Policy that allows scripts,
//!   styles and connections from this origin only (no inline script), and
//!   may not be framed.
//! - With authentication on, a page is served only to a signed-in session;
//!   otherwise the browser is sent to the sign-in page.
//! - Assets are compiled into the binary: no files, no Node.js at run time.

pub mod session;

use crate::http::{HttpApi, json_body, refusal};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use session::WebPolicy;

const SHELL: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// Scripts, styles and calls from this origin only; nothing inline; no
/// framing (clickjacking on the STOP button), no plugins, no base override.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The dashboard's routes; they authenticate on their own (pages redirect
/// to sign-in rather than answering 401).
pub fn router(state: HttpApi) -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(page))
        .route("/ui/signin", get(signin_page).post(sign_in))
        .route("/ui/signout", post(sign_out))
        .route(
            "/ui/assets/app.js",
            get(|| asset(APP_JS, "text/javascript")),
        )
        .route("/ui/assets/app.css", get(|| asset(APP_CSS, "text/css")))
        .route("/ui/{*page}", get(page))
        .with_state(state)
}

/// Adds the security headers to every response, API included: the CSP,
/// no framing, no sniffing, no referrer; HSTS under TLS; and API answers
/// (audit entries, statuses) are not cached.
pub async fn secure_headers(p: WebPolicy, req: axum::extract::Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if p.tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if api && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn shell(csrf: &str, auth: bool) -> Response {
    debug_assert!(csrf.bytes().all(|b| b.is_ascii_hexdigit()));
    let html = SHELL
        .replace("{{csrf}}", csrf)
        .replace("{{auth}}", if auth { "on" } else { "off" });
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// The session value, if the cookie carries one the server accepts now.
fn signed_in(s: &HttpApi, headers: &HeaderMap) -> Option<String> {
    let value = session::cookie_value(headers, s.web)?;
    s.guard.authenticate_session(&value).ok().map(|_| value)
}

async fn page(State(s): State<HttpApi>, headers: HeaderMap, uri: Uri) -> Response {
    if !s.guard.enabled() {
        return shell("", false);
    }
    match signed_in(&s, &headers).and_then(|v| s.guard.session_csrf(&v)) {
        Some(csrf) => shell(&csrf, true),
        // Back to this page after signing in; only a path of ours.
        None => {
            Redirect::to(&format!("/ui/signin?next={}", percent_encode(uri.path()))).into_response()
        }
    }
}

async fn signin_page(State(s): State<HttpApi>) -> Response {
    if !s.guard.enabled() {
        return Redirect::to("/ui/").into_response();
    }
    shell("", true)
}

#[derive(serde::Deserialize)]
struct SignIn {
    token: String,
}

/// `POST /ui/signin` `{"token": "..."}`: checks the token as any call's
/// would be checked and, if it is good, starts a session.
async fn sign_in(State(s): State<HttpApi>, body: Bytes) -> Response {
    let token = match serde_json::from_slice::<SignIn>(&body) {
        Ok(b) => b.token.trim().to_string(),
        Err(e) => {
            return refusal(tonic::Status::invalid_argument(format!(
                "the body must be {{\"token\": \"...\"}}: {e}"
            )));
        }
    };
    let outcome = s.guard.open_session(&token, session::TTL);
    let label = if outcome.is_ok() { "ok" } else { "refused" };
    metrics::counter!("interlock_http_signins_total", "outcome" => label).increment(1);
    match outcome {
        Ok((value, who)) => {
            tracing::info!(identity = %who, "dashboard sign-in");
            let mut resp = json_body(&serde_json::json!({
                "identity": who.to_string(),
                "csrf": s.guard.session_csrf(&value),
            }))
            .into_response();
            resp.headers_mut()
                .insert(header::SET_COOKIE, session::start(&value, s.web));
            resp
        }
        Err(status) => {
            tracing::info!(reason = %interlock_core::Escaped(status.message()), "dashboard sign-in refused");
            refusal(status)
        }
    }
}

async fn sign_out(State(s): State<HttpApi>) -> Response {
    let mut resp = (StatusCode::OK, json_body(&serde_json::json!({}))).into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session::end(s.web));
    resp
}

/// Percent-encodes everything but unreserved characters and `/`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
