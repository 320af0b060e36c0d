//! Typed async client for Interlock.
//!
//! - Connects with a timeout, gives every call a deadline.
//! - Retries only on UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED and
//!   a connection lost mid-call, with exponential backoff and full jitter.
//! - Makes retries safe: Submit carries a `request_id` (generated if the
//!   caller left it empty) so a retried Submit returns the original id, and
//!   an Exec whose earlier attempt may have landed treats ALREADY_EXISTS on a
//!   retry as success.
//! - Speaks TLS when given a CA ([`Credentials`]), presents a client
//!   certificate for mutual TLS, and sends a bearer token on every call.
#![forbid(unsafe_code)]

#[cfg(feature = "clap")]
pub mod args;
pub mod display;
pub mod worker;

use interlock_proto::v1;
use interlock_proto::v1::schedules_client::SchedulesClient;
use interlock_proto::v1::templates_client::TemplatesClient;
use interlock_proto::v1::workflow_client::WorkflowClient;
use rand::Rng;
use std::path::Path;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

pub use interlock_proto::v1 as proto;

/// Client settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub connect_timeout: Duration,
    /// Deadline of each call attempt.
    pub call_timeout: Duration,
    /// Attempts per call, including the first.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub credentials: Credentials,
}

/// How the client proves who it is and checks who the server is.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// PEM CA bundle the server's certificate must chain to; turns TLS on
    /// (an address without a scheme becomes `https://`).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain and key, for mutual TLS.
    pub cert_key_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Bearer token sent with every call.
    pub token: Option<String>,
    /// Name to verify the server certificate against, when it differs from
    /// the address's host (e.g. connecting by IP).
    pub server_name: Option<String>,
}

impl Credentials {
    /// Reads the PEM files named (each optional).
    pub fn from_files(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
        token: Option<String>,
    ) -> Result<Self, Error> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| Error::Credentials(format!("{}: {e}", p.display())))
        };
        let cert_key_pem = match (cert, key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            (None, None) => None,
            _ => {
                return Err(Error::Credentials(
                    "a client certificate and its key go together: give both, or neither".into(),
                ));
            }
        };
        Ok(Self {
            ca_pem: ca.map(read).transpose()?,
            cert_key_pem,
            token: token
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
            server_name: None,
        })
    }

    fn tls(&self) -> bool {
        self.ca_pem.is_some() || self.cert_key_pem.is_some()
    }
}

/// Adds `authorization: Bearer <token>` to every call, when there is one.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(t) = &self.0 {
            r.metadata_mut().insert("authorization", t.clone());
        }
        Ok(r)
    }
}

/// A connection carrying the credentials; give it to any generated client
/// (`ControlClient::new(transport)`).
pub type Transport = InterceptedService<Channel, BearerToken>;

/// Connects to `addr` with `opts`' timeouts and credentials.
pub async fn transport(addr: &str, opts: &Options) -> Result<Transport, Error> {
    let creds = &opts.credentials;
    let uri = match addr.split_once("://") {
        Some(("http", _)) if creds.tls() => {
            return Err(Error::Address(
                addr.to_string(),
                "TLS credentials (CA or client certificate) were given for an http:// address; \
                 use https://"
                    .into(),
            ));
        }
        Some(("https", _)) if creds.ca_pem.is_none() => {
            return Err(Error::Address(
                addr.to_string(),
                "https needs the CA that signed the server's certificate (--ca or INTERLOCK_CA)"
                    .into(),
            ));
        }
        Some(_) => addr.to_string(),
        None if creds.tls() => format!("https://{addr}"),
        None => format!("http://{addr}"),
    };
    let mut ep = Endpoint::from_shared(uri.clone())
        .map_err(|e| Error::Address(addr.to_string(), e.to_string()))?
        .connect_timeout(opts.connect_timeout)
        .timeout(opts.call_timeout);
    if creds.tls() {
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &creds.ca_pem {
            tls = tls.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &creds.cert_key_pem {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = &creds.server_name {
            tls = tls.domain_name(name.clone());
        }
        ep = ep
            .tls_config(tls)
            .map_err(|e| Error::Credentials(e.to_string()))?;
    }
    let token = match &creds.token {
        None => None,
        Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| {
            Error::Credentials("the token holds characters a header cannot carry".into())
        })?),
    };
    let channel = ep
        .connect()
        .await
        .map_err(|e| Error::Connect(uri, connect_error(&e)))?;
    Ok(InterceptedService::new(channel, BearerToken(token)))
}

/// The transport error with its causes, which carry the useful part ("invalid
/// peer certificate: UnknownIssuer", "connection refused").
fn connect_error(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    msg
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            credentials: Credentials::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid server address {0:?}: {1}")]
    Address(String, String),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    #[error("credentials: {0}")]
    Credentials(String),
    /// The server answered with an error; inspect `code()` and `message()`.
    #[error("{}: {}", .0.code(), .0.message())]
    Rpc(#[from] Status),
}

impl Error {
    /// The gRPC code, if the server answered.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Rpc(s) => Some(s.code()),
            _ => None,
        }
    }
}

/// A connected Interlock client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: WorkflowClient<Transport>,
    templates: TemplatesClient<Transport>,
    schedules: SchedulesClient<Transport>,
    opts: Options,
}

/// Whether another attempt may succeed. Every call this wrapper makes is
/// safe to repeat (reads; Submit carries a request id; Exec treats a later
/// ALREADY_EXISTS as its own success), so a connection lost mid-call
/// (UNKNOWN carrying a transport error: the request may or may not have
/// arrived) is retried too.
fn retryable(s: &Status) -> bool {
    let lost_connection = s.code() == Code::Unknown
        && std::error::Error::source(s).is_some_and(|e| e.is::<tonic::transport::Error>());
    lost_connection
        || matches!(
            s.code(),
            Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded
        )
}

impl Client {
    /// Connects to `addr` (e.g. `http://127.0.0.1:8080`, `127.0.0.1:8080`,
    /// or `https://interlock.example.com:8443` with a CA in the credentials).
    pub async fn connect(addr: &str, opts: Options) -> Result<Self, Error> {
        let channel = transport(addr, &opts).await?;
        Ok(Self {
            inner: WorkflowClient::new(channel.clone()).max_decoding_message_size(usize::MAX),
            templates: TemplatesClient::new(channel.clone()).max_decoding_message_size(usize::MAX),
            schedules: SchedulesClient::new(channel),
            opts,
        })
    }

    /// The raw generated client, for calls this wrapper does not cover.
    pub fn raw(&self) -> WorkflowClient<Transport> {
        self.inner.clone()
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .opts
            .initial_backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.opts.max_backoff);
        exp.mul_f64(rand::rng().random::<f64>())
    }

    async fn retry<T, F, Fut>(&self, call: F) -> Result<T, Error>
    where
        F: FnMut(WorkflowClient<Transport>, u32) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        self.retry_on(&self.inner, call).await
    }

    /// Calls `call` with a copy of `client` until it succeeds, fails for
    /// good, or the attempts run out.
    async fn retry_on<C: Clone, T, F, Fut>(&self, client: &C, mut call: F) -> Result<T, Error>
    where
        F: FnMut(C, u32) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let mut attempt = 0;
        loop {
            match call(client.clone(), attempt).await {
                Ok(v) => return Ok(v),
                Err(s) if retryable(&s) && attempt + 1 < self.opts.max_attempts => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(s) => return Err(s.into()),
            }
        }
    }

    /// Submits a request; returns the workflow id. Sets `request_id` when
    /// empty so that retries cannot create a second workflow.
    pub async fn submit(&self, mut req: v1::WorkReq) -> Result<String, Error> {
        if req.request_id.is_empty() {
            req.request_id = uuid::Uuid::now_v7().to_string();
        }
        self.retry(|mut c, _| {
            let req = req.clone();
            async move { Ok(c.submit(req).await?.into_inner().id) }
        })
        .await
    }

    /// Instantiates a template (or dry-runs it). Sets `request_id` when
    /// empty so that retries cannot create a second workflow.
    pub async fn instantiate(
        &self,
        mut req: v1::InstantiateReq,
    ) -> Result<v1::InstantiateResp, Error> {
        if req.request_id.is_empty() && !req.dry_run {
            req.request_id = uuid::Uuid::now_v7().to_string();
        }
        self.retry_on(&self.templates, |mut c, _| {
            let req = req.clone();
            async move { Ok(c.instantiate(req).await?.into_inner()) }
        })
        .await
    }

    /// The raw generated Schedules client.
    pub fn schedules(&self) -> SchedulesClient<Transport> {
        self.schedules.clone()
    }

    /// The raw generated Templates client.
    pub fn templates(&self) -> TemplatesClient<Transport> {
        self.templates.clone()
    }

    /// Starts a submitted workflow.
    pub async fn exec(&self, id: &str) -> Result<(), Error> {
        self.retry(|mut c, attempt| {
            let id = id.to_string();
            async move {
                match c.exec(v1::ExecReq { id }).await {
                    Ok(_) => Ok(()),
                    // An earlier attempt may have started it before its
                    // answer was lost.
                    Err(s) if attempt > 0 && s.code() == Code::AlreadyExists => Ok(()),
                    Err(s) => Err(s),
                }
            }
        })
        .await
    }

    pub async fn status(&self, id: &str) -> Result<v1::StatusResp, Error> {
        self.retry(|mut c, _| {
            let id = id.to_string();
            async move { Ok(c.status(v1::StatusReq { id }).await?.into_inner()) }
        })
        .await
    }

    pub async fn validate(&self, req: v1::WorkReq) -> Result<v1::ValidateResp, Error> {
        self.retry(|mut c, _| {
            let req = req.clone();
            async move { Ok(c.validate(req).await?.into_inner()) }
        })
        .await
    }

    pub async fn job_catalog(&self) -> Result<v1::JobCatalogResp, Error> {
        self.retry(
            |mut c, _| async move { Ok(c.job_catalog(v1::JobCatalogReq {}).await?.into_inner()) },
        )
        .await
    }

    /// Polls Status every `every` until the workflow reaches a final state
    /// (or waits for an operator), calling `progress` with each status.
    pub async fn wait(
        &self,
        id: &str,
        every: Duration,
        mut progress: impl FnMut(&v1::StatusResp),
    ) -> Result<v1::StatusResp, Error> {
        loop {
            let s = self.status(id).await?;
            progress(&s);
            if is_final(s.status) {
                return Ok(s);
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// True for statuses a workflow does not leave on its own.
pub fn is_final(status: i32) -> bool {
    use v1::Status as S;
    matches!(
        S::try_from(status),
        Ok(S::Completed | S::Failed | S::Cancelled | S::Stopped)
    )
}
