//! Typed async client for Interlock.
//!
//! - Connects with a timeout, gives every call a deadline.
//! - Retries only on UNAVAILABLE, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED,
//!   with exponential backoff and full jitter.
//! - Makes retries safe: Submit carries a `request_id` (generated if the
//!   caller left it empty) so a retried Submit returns the original id, and
//!   an Exec whose earlier attempt may have landed treats ALREADY_EXISTS on a
//!   retry as success.
#![forbid(unsafe_code)]

pub mod display;

use interlock_proto::v1;
use interlock_proto::v1::workflow_client::WorkflowClient;
use rand::Rng;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
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
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid server address {0:?}: {1}")]
    Address(String, String),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
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
    inner: WorkflowClient<Channel>,
    opts: Options,
}

fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded
    )
}

impl Client {
    /// Connects to `addr` (e.g. `http://127.0.0.1:8080` or `127.0.0.1:8080`).
    pub async fn connect(addr: &str, opts: Options) -> Result<Self, Error> {
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let ep = Endpoint::from_shared(uri.clone())
            .map_err(|e| Error::Address(addr.to_string(), e.to_string()))?
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.call_timeout);
        let channel = ep
            .connect()
            .await
            .map_err(|e| Error::Connect(uri, e.to_string()))?;
        Ok(Self {
            inner: WorkflowClient::new(channel).max_decoding_message_size(usize::MAX),
            opts,
        })
    }

    /// The raw generated client, for calls this wrapper does not cover.
    pub fn raw(&self) -> WorkflowClient<Channel> {
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

    async fn retry<T, F, Fut>(&self, mut call: F) -> Result<T, Error>
    where
        F: FnMut(WorkflowClient<Channel>, u32) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let mut attempt = 0;
        loop {
            match call(self.inner.clone(), attempt).await {
                Ok(v) => return Ok(v),
                Err(s) if retryable(s.code()) && attempt + 1 < self.opts.max_attempts => {
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
