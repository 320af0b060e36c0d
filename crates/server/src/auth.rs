//! Authentication and authorization on the request path.
//!
//! [`AuthnLayer`] runs before any handler: it turns the call's credentials
//! (a bearer token, else a verified client certificate) into an
//! [`Identity`] stored in the request's extensions, or answers
//! UNAUTHENTICATED itself. Handlers then ask the [`Guard`] whether that
//! identity holds the grant the RPC needs on the workflow concerned.
//!
//! Invariants:
//! - With authentication off (the loopback zero-config default) every call
//!   is allowed and the identity is `anonymous@<ip>`.
//! - With it on, only grpc.health.v1 is served without credentials; a token
//!   that is presented but not valid is refused, never ignored in favour of
//!   a certificate; and nothing is allowed unless the rbac.json in force
//!   grants it (no rbac.json loaded → everything is PERMISSION_DENIED).
//! - tokens.json and rbac.json reach this module as `watch` values kept by
//!   the live-config reloader (last good on a bad edit).

use crate::error;
use interlock_auth::{Action, Identity, Rbac, Refused, Tokens};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::watch;
use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

/// A config file's last good content, and why its latest version (if it
/// differs) was not taken.
#[derive(Debug, Clone, Default)]
pub struct Loaded<T> {
    pub good: T,
    pub error: Option<String>,
}

impl<T> Loaded<T> {
    /// Takes a newly parsed version, or keeps the last good one and records
    /// why not.
    pub fn apply(&mut self, parsed: Result<T, String>) {
        match parsed {
            Ok(v) => {
                self.good = v;
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
    }
}

/// The credentials configuration in force.
#[derive(Debug, Clone, Default)]
pub struct AuthState {
    pub tokens: Loaded<Arc<Tokens>>,
    /// `None` until a valid rbac.json has been read.
    pub rbac: Loaded<Option<Arc<Rbac>>>,
}

/// Answers "who is this" and "may they"; cheap to clone.
#[derive(Clone)]
pub struct Guard(Option<watch::Receiver<Arc<AuthState>>>);

const HEALTH: &str = "/grpc.health.v1.Health/";

/// The caller's address, from either kind of connection.
pub fn peer(ext: &http::Extensions) -> Option<std::net::SocketAddr> {
    ext.get::<TcpConnectInfo>()
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .map(|t| t.get_ref())
        })
        .and_then(TcpConnectInfo::remote_addr)
}

/// With authentication off, callers are named by their host (not their
/// source port, which differs per connection).
fn anonymous(ext: &http::Extensions) -> Identity {
    Identity::anonymous(peer(ext).map_or_else(|| "unknown".into(), |a| a.ip().to_string()))
}

impl Guard {
    /// Authentication off: everyone is allowed everything.
    pub fn off() -> Self {
        Self(None)
    }

    pub fn on(state: watch::Receiver<Arc<AuthState>>) -> Self {
        Self(Some(state))
    }

    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// The identity behind a call's headers and connection.
    pub fn authenticate(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        ext: &http::Extensions,
    ) -> Result<Identity, Status> {
        let Some(state) = &self.0 else {
            return Ok(anonymous(ext));
        };
        if path.starts_with(HEALTH) {
            return Ok(anonymous(ext));
        }
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim())
                .ok_or_else(|| {
                    error::unauthenticated(
                        "malformed",
                        "the authorization header must be `Bearer <token>`".into(),
                    )
                })?;
            let st = state.borrow();
            // The server's own configuration errors are for its operators
            // (logs, metrics, audit), never for an unauthenticated caller.
            return match st.tokens.good.verify(token, std::time::SystemTime::now()) {
                Ok(name) => Ok(Identity::token(name)),
                Err(refused) => Err(error::unauthenticated(
                    match refused {
                        Refused::Unknown => "bad_token",
                        Refused::Expired { .. } => "expired_token",
                    },
                    refused.to_string(),
                )),
            };
        }
        let certs = ext
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs);
        match certs.as_ref().and_then(|c| c.first()) {
            // rustls verified the chain against the client CA in the handshake.
            Some(leaf) => interlock_auth::cert::identity(leaf)
                .map_err(|e| error::unauthenticated("bad_certificate", e)),
            None => Err(error::unauthenticated(
                "none",
                "no credentials: this server requires a bearer token (`authorization: Bearer <token>`; \
                 interlock --token or INTERLOCK_TOKEN) or a client certificate signed by its client CA"
                    .into(),
            )),
        }
    }

    /// Whether a bearer token presented earlier (by a long-lived stream) is
    /// still good: revoking it in tokens.json ends what it opened. True
    /// with authentication off or without a token (a certificate).
    pub fn still_valid(&self, bearer: Option<&str>) -> bool {
        match (&self.0, bearer) {
            (Some(state), Some(token)) => state
                .borrow()
                .tokens
                .good
                .verify(token, std::time::SystemTime::now())
                .is_ok(),
            _ => true,
        }
    }

    /// Tells when tokens.json or rbac.json changes (none with
    /// authentication off).
    pub fn subscribe(&self) -> Option<watch::Receiver<Arc<AuthState>>> {
        self.0.clone()
    }

    /// The bearer token of a call, if it carries one.
    pub fn bearer(headers: &tonic::metadata::MetadataMap) -> Option<String> {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_string())
    }

    /// Starts a dashboard session for `token` (checked as a bearer token
    /// is), lasting `ttl`: the session value and who it stands for.
    pub fn open_session(
        &self,
        token: &str,
        ttl: std::time::Duration,
    ) -> Result<(String, Identity), Status> {
        let Some(state) = &self.0 else {
            return Err(Status::failed_precondition(
                "authentication is off on this server: there is nothing to sign in to",
            ));
        };
        let st = state.borrow();
        match st
            .tokens
            .good
            .open_session(token, std::time::SystemTime::now(), ttl)
        {
            Ok((value, name)) => Ok((value, Identity::token(name))),
            Err(refused) => Err(error::unauthenticated("bad_token", refused.to_string())),
        }
    }

    /// Who a dashboard session stands for, while it and its token are good.
    pub fn authenticate_session(&self, value: &str) -> Result<Identity, Status> {
        let Some(state) = &self.0 else {
            return Err(Status::unauthenticated(
                "authentication is off: no sessions",
            ));
        };
        let st = state.borrow();
        st.tokens
            .good
            .verify_session(value, std::time::SystemTime::now())
            .map(Identity::token)
            .map_err(|e| error::unauthenticated("bad_session", e.to_string()))
    }

    /// The CSRF token of a dashboard session.
    pub fn session_csrf(&self, value: &str) -> Option<String> {
        self.0.as_ref()?.borrow().tokens.good.session_csrf(value)
    }

    /// Whether `sent` is the CSRF token of the session `value`.
    pub fn session_csrf_ok(&self, value: &str, sent: &str) -> bool {
        self.0
            .as_ref()
            .is_some_and(|s| s.borrow().tokens.good.session_csrf_ok(value, sent))
    }

    /// The rbac.json in force; `Err` carries the load error when none is
    /// (every call is then refused).
    fn rbac(&self) -> Result<Option<Arc<Rbac>>, Option<String>> {
        let Some(state) = &self.0 else {
            return Ok(None);
        };
        let st = state.borrow();
        match &st.rbac.good {
            Some(r) => Ok(Some(r.clone())),
            None => Err(st.rbac.error.clone()),
        }
    }

    /// Whether `who` may do `action` on the workflow named `workflow`.
    pub fn check(&self, who: &Identity, action: Action, workflow: &str) -> Result<(), Status> {
        match self
            .rbac()
            .map_err(|e| error::no_rbac(action, e.as_deref()))?
        {
            None => Ok(()),
            Some(r) => r
                .check(who, action, workflow)
                .map_err(error::permission_denied),
        }
    }

    /// Whether `who` may serve jobs of type `job_type` as a worker.
    pub fn check_work(&self, who: &Identity, job_type: &str) -> Result<(), Status> {
        match self
            .rbac()
            .map_err(|e| error::no_rbac(Action::Work, e.as_deref()))?
        {
            None => Ok(()),
            Some(r) => r
                .check_work(who, job_type)
                .map_err(error::permission_denied),
        }
    }

    /// The roles bound to `who` (empty with authentication off or no
    /// rbac.json loaded).
    pub fn roles_of(&self, who: &Identity) -> Vec<String> {
        match self.rbac() {
            Ok(Some(r)) => r.roles_of(who).into_iter().map(String::from).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether `who` may do `action` on some workflow (calls that concern
    /// no workflow in particular).
    pub fn check_any(&self, who: &Identity, action: Action) -> Result<(), Status> {
        match self
            .rbac()
            .map_err(|e| error::no_rbac(action, e.as_deref()))?
        {
            None => Ok(()),
            Some(r) => r.check_any(who, action).map_err(error::permission_denied),
        }
    }
}

/// The identity the authentication layer attached to a request.
pub fn identity<T>(r: &tonic::Request<T>) -> Identity {
    r.extensions()
        .get::<Identity>()
        .cloned()
        .unwrap_or_else(|| anonymous(r.extensions()))
}

/// Authenticates every call before it reaches a handler.
#[derive(Clone)]
pub struct AuthnLayer(pub Guard);

impl<S> Layer<S> for AuthnLayer {
    type Service = Authn<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authn {
            inner,
            guard: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authn<S> {
    inner: S,
    guard: Guard,
}

impl<S, B> Service<http::Request<B>> for Authn<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match self
            .guard
            .authenticate(req.uri().path(), req.headers(), req.extensions())
        {
            Ok(who) => {
                req.extensions_mut().insert(who);
                Box::pin(self.inner.call(req))
            }
            Err(status) => {
                tracing::info!(path = %req.uri().path(), peer = ?peer(req.extensions()), reason = %interlock_core::Escaped(status.message()), "unauthenticated call refused");
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}
