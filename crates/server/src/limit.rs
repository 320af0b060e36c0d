//! Bounded in-flight RPCs: past the limit, calls fail fast with
//! RESOURCE_EXHAUSTED instead of queueing without bound.
//!
//! tower's ConcurrencyLimit queues callers; a safety gate under overload
//! should answer at once so clients back off, hence this small layer.

use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::Semaphore;
use tower::{Layer, Service};

#[derive(Clone)]
pub struct InFlightLimitLayer {
    sem: Arc<Semaphore>,
    limit: usize,
}

impl InFlightLimitLayer {
    pub fn new(limit: usize) -> Self {
        Self {
            sem: Arc::new(Semaphore::new(limit.max(1))),
            limit: limit.max(1),
        }
    }
}

impl InFlightLimitLayer {
    /// A permit from the same budget, for calls that arrive another way
    /// (the HTTP API): both protocols together stay under one limit.
    pub fn try_acquire(&self) -> Result<tokio::sync::OwnedSemaphorePermit, tonic::Status> {
        self.sem
            .clone()
            .try_acquire_owned()
            .map_err(|_| crate::error::overloaded(self.limit))
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InFlightLimit {
            inner,
            sem: self.sem.clone(),
            limit: self.limit,
        }
    }
}

#[derive(Clone)]
pub struct InFlightLimit<S> {
    inner: S,
    sem: Arc<Semaphore>,
    limit: usize,
}

impl<S, B> Service<http::Request<B>> for InFlightLimit<S>
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

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match self.sem.clone().try_acquire_owned() {
            Ok(permit) => {
                let fut = self.inner.call(req);
                Box::pin(async move {
                    let r = fut.await;
                    drop(permit);
                    r
                })
            }
            Err(_) => {
                let limit = self.limit;
                Box::pin(async move { Ok(crate::error::overloaded(limit).into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tokio::sync::Notify;

    /// An inner service that answers only when released.
    #[derive(Clone)]
    struct Held(Arc<Notify>);

    impl Service<http::Request<()>> for Held {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let n = self.0.clone();
            Box::pin(async move {
                n.notified().await;
                Ok(http::Response::new(tonic::body::Body::empty()))
            })
        }
    }

    fn grpc_status(r: &http::Response<tonic::body::Body>) -> Option<String> {
        r.headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[tokio::test]
    async fn refuses_past_the_limit_and_frees_permits_on_completion() {
        let release = Arc::new(Notify::new());
        let layer = InFlightLimitLayer::new(2);
        let mut svc = layer.layer(Held(release.clone()));
        let a = tokio::spawn(svc.call(http::Request::new(())));
        let b = tokio::spawn(svc.call(http::Request::new(())));
        tokio::task::yield_now().await;
        let refused = svc.call(http::Request::new(())).await.unwrap();
        assert_eq!(
            grpc_status(&refused).as_deref(),
            Some("8"),
            "RESOURCE_EXHAUSTED"
        );
        release.notify_waiters();
        assert_eq!(grpc_status(&a.await.unwrap().unwrap()), None);
        assert_eq!(grpc_status(&b.await.unwrap().unwrap()), None);
        // Permits are back: a new call is admitted (and held).
        let c = tokio::spawn(svc.call(http::Request::new(())));
        tokio::task::yield_now().await;
        release.notify_waiters();
        assert_eq!(grpc_status(&c.await.unwrap().unwrap()), None);
    }

    #[tokio::test]
    async fn the_http_api_draws_on_the_same_budget() {
        let release = Arc::new(Notify::new());
        let layer = InFlightLimitLayer::new(1);
        let held = layer.try_acquire().expect("one permit");
        let mut svc = layer.layer(Held(release.clone()));
        let refused = svc.call(http::Request::new(())).await.unwrap();
        assert_eq!(grpc_status(&refused).as_deref(), Some("8"));
        let e = layer.try_acquire().unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        drop(held);
        assert!(layer.try_acquire().is_ok(), "the permit came back");
    }
}
