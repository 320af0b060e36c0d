//! The HTTP/JSON API under `/api/v1/`: a thin adapter over the gRPC
//! services, not a second implementation of them.
//!
//! Each route turns its path, query and JSON body (the protobuf JSON
//! mapping, as the CLI prints it) into the very request message the gRPC
//! method takes, calls that method on the same `Api`/`ControlApi` values
//! the gRPC server runs, and writes the reply as JSON. So authorization
//! (the `Guard`), the engine call and the audit entry are the gRPC ones,
//! byte for byte; a refusal is the gRPC status as
//! `{"code": "NOT_FOUND", "message": ...}` with the matching HTTP status.
//!
//! Invariants:
//! - Authentication is the gRPC one (`Guard::authenticate` on the same
//!   headers): `Authorization: Bearer <token>`, or the dashboard's session
//!   cookie, which carries such a token (see [`crate::web::session`]); with
//!   authentication on, no call is served without one. A cookie-borne
//!   state change must also carry the session's CSRF token, and no state
//!   change is taken from another origin.
//! - Nothing changes state on GET: every mutating route is a POST.
//! - Watch is Server-Sent Events: one `event: watch` per WatchEvent.

mod inventory;
mod schedules;
mod templates;

use crate::auth::{Guard, peer};
use crate::control::ControlApi;
use crate::convert;
use crate::service::Api;
use crate::status::{self, View};
use crate::web::session::{self, WebPolicy};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use interlock_proto::server::v1::workflow_server::Workflow;
use interlock_proto::v1;
use interlock_proto::v1::control_server::Control;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::net::SocketAddr;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// What every route needs.
#[derive(Clone)]
pub struct HttpApi {
    pub api: Api,
    /// Shared with the gRPC server: it serializes es.json writes.
    pub control: std::sync::Arc<ControlApi>,
    pub templates: std::sync::Arc<crate::templates::TemplatesApi>,
    pub schedules: std::sync::Arc<crate::schedules::SchedulesApi>,
    pub inventory: std::sync::Arc<crate::inventory::InventoryApi>,
    pub workers: std::sync::Arc<crate::worker::WorkerApi>,
    pub guard: Guard,
    /// The gRPC server's in-flight budget, shared.
    pub limit: crate::limit::InFlightLimitLayer,
    /// Cookie and origin rules of the listener.
    pub web: WebPolicy,
}

/// The router: `/api/v1/...` and the dashboard under `/ui/`.
pub fn router(state: HttpApi) -> axum::Router {
    let (guard, limit, web) = (state.guard.clone(), state.limit.clone(), state.web);
    let pages = crate::web::router(state.clone());
    let api = axum::Router::new()
        .route("/api/v1/workflows", get(list).post(submit))
        .route("/api/v1/validate", post(validate))
        .route("/api/v1/workflows/{id}", get(status))
        .route("/api/v1/workflows/{id}/watch", get(watch))
        .route("/api/v1/workflows/{id}/logs", get(logs))
        .route("/api/v1/workflows/{id}/{action}", post(act))
        .route("/api/v1/estop", get(estop).post(set_estop))
        .route("/api/v1/buckets", get(buckets))
        .route("/api/v1/limits", get(limits))
        .route("/api/v1/policies", get(policies))
        .route("/api/v1/jobs", get(jobs))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/workers", get(workers))
        .merge(templates::routes())
        .merge(schedules::routes())
        .merge(inventory::routes())
        .fallback(|| async {
            refusal(tonic::Status::not_found(
                "no such API route: see the README's HTTP API section",
            ))
        })
        .with_state(state)
        .layer(axum::middleware::from_fn(move |req, next| {
            authenticate(guard.clone(), web, req, next)
        }));
    pages
        .merge(api)
        .layer(axum::middleware::from_fn(move |req, next| {
            same_origin(web, req, next)
        }))
        .layer(axum::middleware::from_fn(move |req, next| {
            crate::web::secure_headers(web, req, next)
        }))
        .layer(axum::middleware::from_fn(measure))
        // Outermost, as for gRPC: past the budget, refused before any work.
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let permit = limit.try_acquire();
                async move {
                    match permit {
                        Ok(_held) => next.run(req).await,
                        Err(status) => refusal(status),
                    }
                }
            },
        ))
}

/// Serves `router` on `addr` (over TLS with the gRPC listener's
/// certificate when `tls` is set) until `stop`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    state: HttpApi,
    tls: Option<crate::tls::Tls>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen for the HTTP API on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let mut state = state;
    state.web.port = bound.port();
    tracing::info!(addr = %bound, tls = tls.is_some(), "serving the HTTP API and dashboard");
    let app = router(state).into_make_service_with_connect_info::<Peer>();
    let done = stop.clone().cancelled_owned();
    tokio::spawn(async move {
        let _ = match tls {
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(done)
                    .await
            }
            Some(tls) => {
                let incoming =
                    crate::tls::incoming(listener, tls, crate::tls::ALPN_HTTP, stop.clone());
                let listener = TlsListener { incoming, bound };
                axum::serve(listener, app)
                    .with_graceful_shutdown(done)
                    .await
            }
        };
    });
    Ok(bound)
}

/// Who is on the other end of a connection: its addresses and, over TLS,
/// its verified client certificate (as tonic records them for gRPC).
#[derive(Clone)]
pub struct Peer {
    tcp: TcpConnectInfo,
    tls: Option<TlsConnectInfo<TcpConnectInfo>>,
}

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for Peer
{
    fn connect_info(s: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer {
            tcp: TcpConnectInfo {
                local_addr: s.io().local_addr().ok(),
                remote_addr: Some(*s.remote_addr()),
            },
            tls: None,
        }
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(s: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        use tonic::transport::server::Connected as _;
        let tls = s.io().connect_info();
        Peer {
            tcp: tls.get_ref().clone(),
            tls: Some(tls),
        }
    }
}

/// Connections that completed a TLS handshake, as axum accepts them.
pub struct TlsListener {
    incoming: tokio_stream::wrappers::ReceiverStream<
        std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
    >,
    bound: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        use futures::StreamExt;
        loop {
            match self.incoming.next().await {
                Some(Ok(stream)) => match stream.get_ref().0.peer_addr() {
                    Ok(peer) => return (stream, peer),
                    Err(_) => continue,
                },
                Some(Err(_)) => continue,
                // Shut down: nothing more will be accepted; the graceful
                // shutdown ends the server.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.bound)
    }
}

/// Counts the call and its time by route template (`/api/v1/workflows/{id}`,
/// never the id itself, so callers cannot mint series) and HTTP status.
async fn measure(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "other".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("interlock_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("interlock_http_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}

fn mutating(req: &Request) -> bool {
    !matches!(*req.method(), Method::GET | Method::HEAD)
}

/// What no credential makes acceptable, refused before any route (pages and
/// API alike): a state change from another origin, a rebinding `Host`.
async fn same_origin(web: WebPolicy, req: Request, next: Next) -> Response {
    match session::check(req.headers(), req.uri(), mutating(&req), web) {
        Ok(()) => next.run(req).await,
        Err(why) => refusal(tonic::Status::permission_denied(why)),
    }
}

/// The gRPC authentication, on the same headers (or, with authentication
/// on, the dashboard's session cookie); the caller's address (and client
/// certificate) is kept as the gRPC server keeps it, for the audit log.
async fn authenticate(guard: Guard, web: WebPolicy, mut req: Request, next: Next) -> Response {
    let mutating = mutating(&req);
    if let Some(peer) = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0.clone())
    {
        req.extensions_mut().insert(peer.tcp);
        if let Some(tls) = peer.tls {
            req.extensions_mut().insert(tls);
        }
    }
    let cookie = if guard.enabled() && !req.headers().contains_key(header::AUTHORIZATION) {
        session::cookie_value(req.headers(), web)
    } else {
        None
    };
    let who = match &cookie {
        Some(value) => guard.authenticate_session(value).and_then(|who| {
            if mutating && !guard.session_csrf_ok(value, session::csrf_sent(req.headers())) {
                Err(tonic::Status::permission_denied(format!(
                    "this request is signed in by cookie but carries no valid CSRF token ({}): \
                     reload the page",
                    session::CSRF_HEADER
                )))
            } else {
                Ok(who)
            }
        }),
        None => guard.authenticate(req.uri().path(), req.headers(), req.extensions()),
    };
    match who {
        Ok(who) => {
            req.extensions_mut().insert(who);
            next.run(req).await
        }
        Err(status) => {
            tracing::info!(path = %req.uri().path(), peer = ?peer(req.extensions()),
                reason = %interlock_core::Escaped(status.message()), "unauthenticated call refused");
            refusal(status)
        }
    }
}

/// The gRPC request a route hands to the service: the message, the
/// caller's identity and address, and the headers as metadata (so
/// `x-request-id` reaches the audit log).
fn grpc<T>(parts: &Parts, msg: T) -> tonic::Request<T> {
    let mut ext = tonic::Extensions::new();
    if let Some(who) = parts.ext.get::<interlock_auth::Identity>() {
        ext.insert(who.clone());
    }
    if let Some(tcp) = parts.ext.get::<TcpConnectInfo>() {
        ext.insert(tcp.clone());
    }
    tonic::Request::from_parts(
        tonic::metadata::MetadataMap::from_headers(parts.headers.clone()),
        ext,
        msg,
    )
}

/// The request context a route keeps: headers and extensions.
struct Parts {
    headers: HeaderMap,
    ext: axum::http::Extensions,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Parts {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        p: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Parts {
            headers: p.headers.clone(),
            ext: p.extensions.clone(),
        })
    }
}

/// HTTP status for a gRPC code (the mapping of google.rpc.Code).
fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code::*;
    match code {
        Ok => StatusCode::OK,
        InvalidArgument | FailedPrecondition | OutOfRange => StatusCode::BAD_REQUEST,
        Unauthenticated => StatusCode::UNAUTHORIZED,
        PermissionDenied => StatusCode::FORBIDDEN,
        NotFound => StatusCode::NOT_FOUND,
        AlreadyExists | Aborted => StatusCode::CONFLICT,
        ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Unknown | Internal | DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A gRPC status as JSON: the code's name (as gRPC spells it) and the same
/// message.
pub(crate) fn refusal(s: tonic::Status) -> Response {
    let code = format!("{:?}", s.code());
    let body = serde_json::json!({
        "code": screaming(&code),
        "message": s.message(),
    });
    (http_status(s.code()), json_body(&body)).into_response()
}

fn invalid(e: String) -> Response {
    refusal(tonic::Status::invalid_argument(e))
}

/// `FailedPrecondition` → `FAILED_PRECONDITION`.
fn screaming(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

pub(crate) fn json_body(v: &impl Serialize) -> ([(header::HeaderName, &'static str); 1], String) {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(v).expect("messages serialize"),
    )
}

fn reply<R: Serialize>(r: Result<tonic::Response<R>, tonic::Status>) -> Response {
    match r {
        Ok(resp) => json_body(resp.get_ref()).into_response(),
        Err(s) => refusal(s),
    }
}

/// A JSON body (an empty one is `{}`) with `extra` fields set, as message
/// `T`.
/// Errors say what to fix in the body; they become INVALID_ARGUMENT.
fn message<T: DeserializeOwned>(body: &[u8], extra: Map<String, Value>) -> Result<T, String> {
    let mut v: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?
    };
    match &mut v {
        Value::Object(m) => m.extend(extra),
        _ if extra.is_empty() => {}
        _ => return Err("the body must be a JSON object".into()),
    }
    serde_json::from_value(v).map_err(|e| format!("the body does not fit the request: {e}"))
}

/// Query parameters as a request message: `label=k=v` and `status=S`
/// repeat; every other parameter is a field of the message.
fn query<T: DeserializeOwned>(q: &[(String, String)]) -> Result<T, String> {
    let mut m = Map::new();
    let mut labels = Map::new();
    let mut statuses = Vec::new();
    for (k, v) in q {
        match k.as_str() {
            "label" => {
                let (lk, lv) = v
                    .split_once('=')
                    .ok_or_else(|| format!("label {v:?} is not key=value"))?;
                labels.insert(lk.into(), lv.into());
            }
            "status" => statuses.push(Value::String(v.clone())),
            _ => {
                m.insert(k.clone(), Value::String(v.clone()));
            }
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !statuses.is_empty() {
        m.insert("statuses".into(), Value::Array(statuses));
    }
    match serde_json::from_value(Value::Object(m.clone())) {
        Ok(v) => Ok(v),
        // A query string has no booleans: `?logs=true` is the text "true",
        // which the JSON mapping reads only as a string. Try once more with
        // such values as booleans.
        Err(first) => {
            let mut bools = false;
            for v in m.values_mut() {
                if let Value::String(t) = v
                    && (t == "true" || t == "false")
                {
                    *v = Value::Bool(t == "true");
                    bools = true;
                }
            }
            let err = |e: serde_json::Error| format!("the query does not fit the request: {e}");
            if !bools {
                return Err(err(first));
            }
            serde_json::from_value(Value::Object(m)).map_err(|_| err(first))
        }
    }
}

type Query = axum::extract::Query<Vec<(String, String)>>;

fn id_field(id: String) -> Map<String, Value> {
    Map::from_iter([("id".to_string(), Value::String(id))])
}

async fn list(State(s): State<HttpApi>, p: Parts, axum::extract::Query(q): Query) -> Response {
    match query::<v1::ListReq>(&q) {
        Ok(m) => reply(s.api.list(grpc(&p, m)).await),
        Err(e) => invalid(e),
    }
}

async fn submit(State(s): State<HttpApi>, p: Parts, body: Bytes) -> Response {
    match message::<v1::WorkReq>(&body, Map::new()) {
        Ok(m) => reply(Workflow::submit(&s.api, grpc(&p, convert::from_client(&m))).await),
        Err(e) => invalid(e),
    }
}

async fn validate(State(s): State<HttpApi>, p: Parts, body: Bytes) -> Response {
    match message::<v1::WorkReq>(&body, Map::new()) {
        Ok(m) => reply(s.api.validate(grpc(&p, convert::from_client(&m))).await),
        Err(e) => invalid(e),
    }
}

async fn status(State(s): State<HttpApi>, p: Parts, Path(id): Path<String>) -> Response {
    let asked = s
        .api
        .status_reply(grpc(&p, v1::StatusReq { id }), View::Full);
    reply(
        asked
            .await
            .and_then(status::whole)
            .map(tonic::Response::new),
    )
}

/// `GET /api/v1/workflows/{id}/logs?block=B&job=J&after=SEQ&limit=N`.
async fn logs(
    State(s): State<HttpApi>,
    p: Parts,
    Path(id): Path<String>,
    axum::extract::Query(q): Query,
) -> Response {
    match query::<v1::LogsReq>(&q) {
        Ok(mut m) => {
            m.id = id;
            reply(Workflow::logs(&s.api, grpc(&p, m)).await)
        }
        Err(e) => invalid(e),
    }
}

/// `POST /api/v1/workflows/{id}/{action}`: the body holds the request's
/// other fields (`{"reason": "..."}` for cancel).
async fn act(
    State(s): State<HttpApi>,
    p: Parts,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let extra = id_field(id);
    macro_rules! call {
        ($req:ty, $method:path) => {
            match message::<$req>(&body, extra) {
                Ok(m) => reply($method(&s.api, grpc(&p, m)).await),
                Err(e) => invalid(e),
            }
        };
    }
    match action.as_str() {
        "exec" => call!(v1::ExecReq, Workflow::exec),
        "cancel" => call!(v1::CancelReq, Workflow::cancel),
        "pause" => call!(v1::PauseReq, Workflow::pause),
        "resume" => call!(v1::ResumeReq, Workflow::resume),
        "clone" => call!(v1::CloneReq, Workflow::clone),
        "approve" => call!(v1::ApproveReq, Workflow::approve),
        "reject" => call!(v1::ApproveReq, Workflow::reject),
        "resolve" => call!(v1::ResolveJobReq, Workflow::resolve_job),
        other => refusal(tonic::Status::not_found(format!(
            "no workflow action {other:?}: exec, cancel, pause, resume, clone, approve, \
             reject or resolve"
        ))),
    }
}

/// Server-Sent Events: one `watch` event per WatchEvent, as JSON.
async fn watch(
    State(s): State<HttpApi>,
    p: Parts,
    Path(id): Path<String>,
    axum::extract::Query(q): Query,
) -> Response {
    use futures::StreamExt;
    let mut m = match query::<v1::WatchReq>(&q) {
        Ok(m) => m,
        Err(e) => return invalid(e),
    };
    m.id = id;
    let stream = match s.api.watch(grpc(&p, m)).await {
        Ok(r) => r.into_inner(),
        Err(st) => return refusal(st),
    };
    let events = stream.map(|item| {
        let (event, data) = match item {
            Ok(ev) => ("watch", serde_json::to_string(&ev).expect("messages serialize")),
            Err(st) => (
                "error",
                serde_json::json!({"code": screaming(&format!("{:?}", st.code())), "message": st.message()})
                    .to_string(),
            ),
        };
        Ok::<_, std::convert::Infallible>(format!("event: {event}\ndata: {data}\n\n"))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(events),
    )
        .into_response()
}

async fn estop(State(s): State<HttpApi>, p: Parts) -> Response {
    reply(
        s.control
            .emergency_stop_state(grpc(&p, v1::EmergencyStopStateReq {}))
            .await,
    )
}

async fn set_estop(State(s): State<HttpApi>, p: Parts, body: Bytes) -> Response {
    match message::<v1::SetEmergencyStopReq>(&body, Map::new()) {
        Ok(m) => reply(s.control.set_emergency_stop(grpc(&p, m)).await),
        Err(e) => invalid(e),
    }
}

async fn buckets(State(s): State<HttpApi>, p: Parts) -> Response {
    reply(s.control.buckets(grpc(&p, v1::BucketsReq {})).await)
}

async fn limits(State(s): State<HttpApi>, p: Parts) -> Response {
    reply(s.control.limits(grpc(&p, v1::LimitsReq {})).await)
}

async fn policies(State(s): State<HttpApi>, p: Parts) -> Response {
    reply(
        s.control
            .policy_state(grpc(&p, v1::PolicyStateReq {}))
            .await,
    )
}

async fn jobs(State(s): State<HttpApi>, p: Parts) -> Response {
    reply(s.api.job_catalog(grpc(&p, v1::JobCatalogReq {})).await)
}

async fn audit(State(s): State<HttpApi>, p: Parts, axum::extract::Query(q): Query) -> Response {
    match query::<v1::AuditReq>(&q) {
        Ok(m) => reply(s.control.audit(grpc(&p, m)).await),
        Err(e) => invalid(e),
    }
}

async fn whoami(State(s): State<HttpApi>, p: Parts, axum::extract::Query(q): Query) -> Response {
    match query::<v1::WhoAmIReq>(&q) {
        Ok(m) => reply(s.control.who_am_i(grpc(&p, m)).await),
        Err(e) => invalid(e),
    }
}

async fn cluster(State(s): State<HttpApi>, p: Parts) -> Response {
    reply(s.control.cluster(grpc(&p, v1::ClusterReq {})).await)
}

async fn workers(State(s): State<HttpApi>, p: Parts) -> Response {
    use interlock_proto::v1::worker_server::Worker as _;
    reply(
        s.workers
            .list_workers(grpc(&p, v1::ListWorkersReq {}))
            .await,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn codes_are_spelled_as_grpc_spells_them() {
        assert_eq!(
            super::screaming("FailedPrecondition"),
            "FAILED_PRECONDITION"
        );
        assert_eq!(super::screaming("NotFound"), "NOT_FOUND");
        assert_eq!(super::screaming("Ok"), "OK");
    }
}
