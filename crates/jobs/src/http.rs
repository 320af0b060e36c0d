//! `http{method, url, headers?, body?, expect?, timeoutSeconds?}`: one HTTP
//! request to a URL `configs/http.json` allows.
//!
//! Deny by default: a URL must fall under one of the file's prefixes
//! (same scheme, host and port; the path under the prefix's path, on a
//! segment boundary), checked at Submit and again right before the
//! request. URLs with user info, `.`/`..` segments (also percent-encoded)
//! or a backslash are refused, so a prefix cannot be escaped. Redirects
//! are not followed. Output: `status`, the first [`BODY_BYTES`] of the
//! body and whether it was cut. A status outside `expect` (default
//! 200-299) fails the job. Only idempotent methods (GET, HEAD, PUT,
//! DELETE, OPTIONS) are retried or re-run after a crash; a POST or PATCH
//! in flight at a crash is Interrupted. Cancel drops the request. https
//! trusts the system's CAs and those of the file's `ca_file`. The
//! request carries the job's W3C `traceparent` (unless the job sets one).

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use interlock_core::{ArgFormat, ArgSpec, Idempotency, JobSchema, WorkReq};
use interlock_engine::{Job, JobCtx, JobError, Outputs};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The file's name in the config directory.
pub const HTTP: &str = "http.json";
/// Body bytes kept in the output.
pub const BODY_BYTES: usize = 4096;
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
const IDEMPOTENT: [&str; 5] = ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"];
/// Headers a job may not set: they belong to the connection and the body.
/// Also those some servers obey to change the method or the path, which
/// would escape the allow list or the method's idempotency.
const RESERVED: [&str; 10] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "x-http-method-override",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    allow: Vec<String>,
    /// PEM certificates of CAs to trust besides the system's (an internal
    /// PKI); an absolute path.
    #[serde(default)]
    ca_file: Option<std::path::PathBuf>,
}

/// Where a URL points: what a prefix is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    scheme: String,
    /// host:port, lower case, the port explicit.
    authority: String,
    path: String,
}

fn target(url: &str) -> Result<(Target, http::Uri), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let scheme = match uri.scheme_str() {
        Some(s @ ("http" | "https")) => s.to_string(),
        _ => return Err(format!("{url:?} is not an http:// or https:// URL")),
    };
    let auth = uri
        .authority()
        .ok_or_else(|| format!("{url:?} has no host"))?;
    if auth.as_str().contains('@') {
        return Err(format!(
            "{url:?} carries user info; put credentials in headers"
        ));
    }
    let port = auth
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let path = uri.path().to_string();
    // Servers differ in what they decode before they route: anything that
    // could turn into another path on the far side is refused here.
    let lower = path.to_ascii_lowercase();
    if let Some(bad) = ["\\", ";", "%2f", "%5c", "%25", "%00"]
        .iter()
        .find(|b| lower.contains(*b))
    {
        return Err(format!(
            "{url:?} has {bad:?} in its path, which servers may read as another path"
        ));
    }
    for seg in path.split('/') {
        let decoded = seg.to_ascii_lowercase().replace("%2e", ".");
        if decoded == "." || decoded == ".." {
            return Err(format!("{url:?} has a {seg:?} segment; write the path out"));
        }
    }
    let t = Target {
        scheme,
        authority: format!("{}:{port}", auth.host().to_ascii_lowercase()),
        path,
    };
    Ok((t, uri))
}

/// A loaded http.json, with the client its trust settings make.
#[derive(Clone)]
pub struct HttpConfig {
    allow: Vec<Target>,
    client: HttpsClient,
}

impl Default for HttpConfig {
    /// Nothing allowed.
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            client: client(&[]),
        }
    }
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("allow", &self.allow)
            .finish()
    }
}

/// A client trusting the system's CAs and `extra`; no redirects, HTTP/1.
fn client(extra: &[rustls::pki_types::CertificateDer<'static>]) -> HttpsClient {
    let mut roots = rustls::RootCertStore::empty();
    // None found means https fails with the TLS error, never that anything
    // is trusted.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    for cert in extra {
        let _ = roots.add(cert.clone());
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector)
}

impl HttpConfig {
    pub fn parse(text: &str) -> Result<Self, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let file: File = serde_path_to_error::deserialize(de)
            .map_err(|e| format!("{HTTP}: {}: {}", e.path(), e.inner()))?;
        let allow = file
            .allow
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (t, uri) = target(p).map_err(|e| format!("{HTTP}: allow[{i}]: {e}"))?;
                if uri.query().is_some() {
                    return Err(format!("{HTTP}: allow[{i}]: a prefix has no query"));
                }
                Ok(t)
            })
            .collect::<Result<_, String>>()?;
        let extra = match &file.ca_file {
            None => Vec::new(),
            Some(path) => {
                if !path.is_absolute() {
                    return Err(format!(
                        "{HTTP}: ca_file {} must be an absolute path",
                        path.display()
                    ));
                }
                let pem = std::fs::read(path)
                    .map_err(|e| format!("{HTTP}: ca_file {}: {e}", path.display()))?;
                let certs: Vec<_> = rustls::pki_types::pem::PemObject::pem_slice_iter(&pem)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("{HTTP}: ca_file {}: {e:?}", path.display()))?;
                if certs.is_empty() {
                    return Err(format!(
                        "{HTTP}: ca_file {} holds no PEM certificate",
                        path.display()
                    ));
                }
                certs
            }
        };
        Ok(Self {
            allow,
            client: client(&extra),
        })
    }

    /// The URL, if a prefix allows it; else why not.
    fn allows(&self, url: &str) -> Result<http::Uri, String> {
        let (t, uri) = target(url)?;
        let under = |p: &Target| {
            p.scheme == t.scheme
                && p.authority == t.authority
                && (t.path == p.path
                    || (t.path.starts_with(&p.path)
                        && (p.path.ends_with('/') || t.path[p.path.len()..].starts_with('/'))))
        };
        if self.allow.iter().any(under) {
            Ok(uri)
        } else {
            Err(format!(
                "{url:?} is not under any prefix http.json allows ({} allowed); \
                 an operator adds the prefix to allow it",
                self.allow.len()
            ))
        }
    }
}

/// The http.json in force, swapped whole on reload (none allowed until
/// one is loaded).
#[derive(Default)]
pub struct LiveHttpConfig(RwLock<Arc<HttpConfig>>);

impl LiveHttpConfig {
    pub fn replace(&self, c: HttpConfig) {
        *self.0.write().expect("http config lock") = Arc::new(c);
    }

    fn current(&self) -> Arc<HttpConfig> {
        self.0.read().expect("http config lock").clone()
    }
}

/// Status codes and ranges: `200-299`, `200,204`, `404`.
fn expected(spec: &str) -> Result<Vec<(u16, u16)>, String> {
    spec.split(',')
        .map(|part| {
            let part = part.trim();
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            let code = |s: &str| {
                s.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (100..=599).contains(c))
                    .ok_or_else(|| {
                        format!("expect: {part:?} is not a status code or a range like 200-299")
                    })
            };
            let (lo, hi) = (code(lo)?, code(hi)?);
            if lo > hi {
                return Err(format!("expect: {part:?} is an empty range"));
            }
            Ok((lo, hi))
        })
        .collect()
}

fn headers(args: &interlock_core::Args) -> Result<BTreeMap<String, String>, String> {
    let Some(text) = args.get("headers") else {
        return Ok(BTreeMap::new());
    };
    let h: BTreeMap<String, String> = serde_json::from_str(text).map_err(|e| {
        format!("headers: a JSON object of strings, like {{\"Accept\": \"application/json\"}}: {e}")
    })?;
    for (k, v) in &h {
        let name = http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("headers: {k:?} is not a header name"))?;
        if RESERVED.contains(&name.as_str()) {
            return Err(format!(
                "headers: {k:?} is set by the client, not by a job (or could change the method or path)"
            ));
        }
        http::HeaderValue::from_str(v)
            .map_err(|_| format!("headers: the value of {k:?} is not a header value"))?;
    }
    Ok(h)
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub struct Http {
    schema: JobSchema,
    config: Arc<LiveHttpConfig>,
}

impl Http {
    pub fn new(config: Arc<LiveHttpConfig>) -> Self {
        Self {
            schema: JobSchema {
                name: "http",
                description: "Sends one HTTP request to a URL http.json allows (deny by default) and \
                              fails unless the status is expected. Output: status and the first 4 KiB \
                              of the body. Safe to repeat for GET, HEAD, PUT, DELETE, OPTIONS only.",
                args: vec![
                    ArgSpec::required(
                        "method",
                        ArgFormat::Name,
                        "GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS",
                    ),
                    ArgSpec::required(
                        "url",
                        ArgFormat::Text,
                        "an http:// or https:// URL under a prefix of http.json",
                    ),
                    ArgSpec::optional(
                        "headers",
                        ArgFormat::Text,
                        "a JSON object of header names to values",
                    ),
                    ArgSpec::optional("body", ArgFormat::Text, "the request body"),
                    ArgSpec::optional(
                        "expect",
                        ArgFormat::Text,
                        "statuses that count as success, e.g. 200-299 (the default) or 200,204",
                    ),
                    ArgSpec::optional(
                        "timeoutSeconds",
                        ArgFormat::Seconds,
                        "the whole request's limit (default 30)",
                    ),
                ],
                idempotency: Idempotency::Unsafe,
                reconcilable: false,
            },
            config,
        }
    }
}

fn method(args: &interlock_core::Args) -> Result<&str, String> {
    let m = args.get("method").map(String::as_str).unwrap_or_default();
    if METHODS.contains(&m) {
        Ok(m)
    } else {
        Err(format!("method {m:?} is not one of {}", METHODS.join(", ")))
    }
}

#[async_trait]
impl Job for Http {
    fn schema(&self) -> &JobSchema {
        &self.schema
    }

    fn check(&self, args: &interlock_core::Args, _req: &WorkReq) -> Result<(), String> {
        method(args)?;
        headers(args)?;
        if let Some(e) = args.get("expect") {
            expected(e)?;
        }
        match args.get("url") {
            Some(url) => self.config.current().allows(url).map(|_| ()),
            None => Ok(()), // an input, checked when it is known
        }
    }

    fn safe_to_repeat(&self, args: &interlock_core::Args) -> bool {
        method(args).is_ok_and(|m| IDEMPOTENT.contains(&m))
    }

    async fn run(&self, ctx: &JobCtx, args: &interlock_core::Args) -> Result<Outputs, JobError> {
        let m = method(args).map_err(JobError::new)?;
        let url = args.get("url").map(String::as_str).unwrap_or_default();
        let config = self.config.current();
        let uri = config.allows(url).map_err(JobError::new)?;
        let expect = expected(args.get("expect").map_or("200-299", String::as_str))
            .map_err(JobError::new)?;
        let limit = match args.get("timeoutSeconds") {
            Some(s) => interlock_core::schema::parse_seconds(s).map_err(JobError::new)?,
            None => Duration::from_secs(30),
        };
        let mut req = http::Request::builder().method(m).uri(uri);
        let headers = headers(args).map_err(JobError::new)?;
        // The API's work joins the workflow's trace, unless the job says
        // otherwise.
        if let Some(tp) = &ctx.traceparent
            && !headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("traceparent"))
        {
            req = req.header("traceparent", tp);
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let body = args.get("body").cloned().unwrap_or_default();
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| JobError::new(format!("cannot build the request: {e}")))?;
        let repeatable = IDEMPOTENT.contains(&m);
        let retry = |e: JobError| if repeatable { e.retryable() } else { e };
        if !ctx.holds_lease() {
            return Err(JobError::cancelled());
        }
        // The URL only: headers may carry credentials.
        ctx.log(format!("{m} {url}"));
        let sent = std::time::Instant::now();
        let exchange = async {
            let resp = config
                .client
                .request(req)
                .await
                .map_err(|e| retry(JobError::new(format!("{m} {url}: {}", chain(&e)))))?;
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            let mut kept = Vec::new();
            let mut truncated = false;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| {
                    retry(JobError::new(format!("{m} {url}: reading the body: {e}")))
                })?;
                if let Some(data) = frame.data_ref() {
                    let room = BODY_BYTES - kept.len();
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                    if data.len() > room {
                        truncated = true;
                        break;
                    }
                }
            }
            Ok::<_, JobError>((status, kept, truncated))
        };
        let (status, kept, truncated) = tokio::select! {
            r = tokio::time::timeout(limit, exchange) => r.map_err(|_| {
                retry(JobError::new(format!(
                    "{m} {url}: no complete answer within {}", humantime::format_duration(limit)
                )))
            })??,
            _ = ctx.cancel.cancelled() => return Err(JobError::cancelled()),
        };
        ctx.log(format!(
            "{m} {url} answered {status} in {} ms ({} body bytes kept{})",
            sent.elapsed().as_millis(),
            kept.len(),
            if truncated { ", cut" } else { "" }
        ));
        let outputs = Outputs::from([
            ("status".to_string(), status.to_string()),
            (
                "body".to_string(),
                String::from_utf8_lossy(&kept).into_owned(),
            ),
            ("bodyTruncated".to_string(), truncated.to_string()),
        ]);
        if expect.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status)) {
            return Ok(outputs);
        }
        let e = JobError::new(format!(
            "{m} {url} answered {status}, expected {}",
            args.get("expect").map_or("200-299", String::as_str)
        ));
        Err(if status >= 500 || status == 429 {
            retry(e)
        } else {
            e
        })
    }
}

/// An error with its causes ("connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HttpConfig {
        HttpConfig::parse(
            r#"{"allow": ["http://127.0.0.1:8500/v1/", "https://api.example.com/hosts"]}"#,
        )
        .unwrap()
    }

    #[test]
    fn only_urls_under_a_prefix_are_allowed() {
        let c = config();
        for ok in [
            "http://127.0.0.1:8500/v1/kv/x",
            "http://127.0.0.1:8500/v1/",
            "https://API.example.com/hosts",
            "https://api.example.com:443/hosts/h1?x=1",
        ] {
            assert!(c.allows(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://127.0.0.1:8500/v2/kv",
            "http://127.0.0.1:8501/v1/kv",
            "https://127.0.0.1:8500/v1/kv",
            "https://api.example.com/hostsX",
            "http://127.0.0.1:8500/v1/../admin",
            "http://127.0.0.1:8500/v1/%2e%2E/admin",
            "http://evil@127.0.0.1:8500/v1/kv",
            "http://127.0.0.1:8500@evil.example/v1/",
            "http://127.0.0.1:8500/v1/x%2F..%2F..%2Fadmin",
            "http://127.0.0.1:8500/v1/..;/admin",
            "http://127.0.0.1:8500/v1/%252e%252e/admin",
            "ftp://127.0.0.1:8500/v1/",
            "not a url",
        ] {
            assert!(c.allows(bad).is_err(), "{bad}");
        }
        assert!(
            HttpConfig::default()
                .allows("http://127.0.0.1:8500/v1/")
                .is_err()
        );
    }

    #[test]
    fn a_ca_file_must_be_absolute_and_hold_certificates() {
        let e = HttpConfig::parse(r#"{"allow": [], "ca_file": "ca.pem"}"#).unwrap_err();
        assert!(e.contains("absolute"), "{e}");
        assert!(HttpConfig::parse(r#"{"allow": [], "ca_file": "/nonexistent/ca.pem"}"#).is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a certificate").unwrap();
        let text = serde_json::json!({"allow": [], "ca_file": f}).to_string();
        let e = HttpConfig::parse(&text).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn expected_statuses_and_headers_are_checked() {
        assert_eq!(expected("200-299").unwrap(), [(200, 299)]);
        assert_eq!(expected("200, 404").unwrap(), [(200, 200), (404, 404)]);
        assert!(expected("299-200").is_err());
        assert!(expected("abc").is_err());
        let h = |t: &str| headers(&[("headers".to_string(), t.to_string())].into());
        assert!(h(r#"{"Accept": "text/plain"}"#).is_ok());
        assert!(
            h(r#"{"Host": "evil"}"#)
                .unwrap_err()
                .contains("set by the client")
        );
        assert!(h(r#"{"X": "a\nb"}"#).is_err());
        assert!(h("[1]").is_err());
    }
}
