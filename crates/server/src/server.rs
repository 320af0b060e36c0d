//! Wiring a server together and running it until shutdown.

use crate::auth::{AuthnLayer, Guard};
use crate::config::{Config, SyncMode};
use crate::control::ControlApi;
use crate::limit::InFlightLimitLayer;
use crate::live::{self, LivePolicies};
use crate::service::{Api, CompatApi};
use interlock_engine::jobs::{BuiltinDeps, EraseTarget, builtin_registry};
use interlock_engine::{Admission, Buckets, Engine, EngineOptions, Job};
use interlock_inventory::Inventory;
use interlock_proto::{diskerase, v1};
use interlock_store::{SqliteOptions, SqliteStore, Store, Synchronous};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Builds a server; `start` binds and serves.
pub struct ServerBuilder {
    config: Config,
    extra_jobs: Vec<Arc<dyn Job>>,
}

/// A serving instance.
pub struct Running {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// Where `/metrics` is served, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl ServerBuilder {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            extra_jobs: Vec::new(),
        }
    }

    /// Registers an additional job (embedders and tests).
    pub fn job(mut self, job: Arc<dyn Job>) -> Self {
        self.extra_jobs.push(job);
        self
    }

    /// Opens the store, loads configuration, binds and starts serving.
    pub async fn start(self) -> Result<Running, String> {
        let c = self.config;
        c.validate()?;
        if c.insecure && !c.listen.ip().is_loopback() && !(c.tls_cert.is_some() && c.auth_enabled())
        {
            tracing::warn!(listen = %c.listen, tls = c.tls_cert.is_some(), auth = c.auth_enabled(),
                "INSECURE (--insecure): serving on a non-loopback address without both TLS and authentication");
        }
        if c.metrics_listen.is_some() {
            // Installed first, so the initial config load and recovery count.
            crate::metrics::handle();
        }
        let mut opts = SqliteOptions::new(&c.db);
        opts.synchronous = match c.sync {
            SyncMode::Full => Synchronous::Full,
            SyncMode::Normal => Synchronous::Normal,
        };
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(opts).map_err(|e| format!("store {}: {e}", c.db.display()))?,
        );
        let inventory = Arc::new(Inventory::load(&c.data).map_err(|e| format!("inventory: {e}"))?);
        // Bucket definitions arrive with the first configuration load below.
        let buckets = Arc::new(
            Buckets::new(store.clone(), Vec::new())
                .await
                .map_err(|e| format!("buckets: {e}"))?,
        );
        let target = c.erase_target_path();
        let erase_target = Arc::new(
            EraseTarget::open(&target)
                .map_err(|e| format!("erase target {}: {e}", target.display()))?,
        );
        let mut registry = builtin_registry(BuiltinDeps {
            inventory,
            buckets: buckets.clone(),
            erase_duration: c.erase_duration,
            erase_target,
        });
        for j in self.extra_jobs {
            registry.register(j);
        }
        let registry = Arc::new(registry);
        let shutdown = CancellationToken::new();
        let auditor = crate::audit::Auditor::new(store.clone());
        let live = live::start(
            auditor.clone(),
            c.configs.clone(),
            registry.clone(),
            buckets,
            c.reload_interval,
            c.auth_enabled(),
            shutdown.clone(),
        )
        .await;
        let guard = live.auth.clone().map_or_else(Guard::off, Guard::on);
        let tls = match c.tls_files() {
            Some(files) => Some(crate::tls::start(
                files,
                c.reload_interval,
                auditor.clone(),
                shutdown.clone(),
            )?),
            None => None,
        };
        let admission: Arc<dyn Admission> = Arc::new(LivePolicies(live.policies.clone()));
        let engine = Engine::new(
            store.clone(),
            registry,
            admission,
            live.estop.clone(),
            EngineOptions {
                exec_ttl: c.exec_ttl,
                limits: c.limits.clone(),
            },
        );

        // Work that was executing when the server last stopped continues
        // (or waits for an operator) before new calls are accepted.
        let resumed = engine
            .recover()
            .await
            .map_err(|e| format!("recovery: {e}"))?;
        if resumed > 0 {
            tracing::info!(resumed, "resumed workflows interrupted by the last stop");
        }
        spawn_request_id_expiry(store.clone(), c.request_id_window, shutdown.clone());

        let listener = tokio::net::TcpListener::bind(c.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", c.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let metrics_addr = match c.metrics_listen {
            Some(a) => Some(
                crate::metrics::serve(a, engine.clone(), live.clone(), shutdown.clone()).await?,
            ),
            None => None,
        };
        let api = Api::new(engine.clone(), auditor.clone(), guard.clone());
        let (health, health_service) = tonic_health::server::health_reporter();
        start_health(health, live.clone(), store.clone(), shutdown.clone()).await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(interlock_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| format!("reflection: {e}"))?;
        let max = c.max_message_bytes;
        let router = tonic::transport::Server::builder()
            .layer(crate::metrics::RpcMetricsLayer)
            .layer(AuthnLayer(guard.clone()))
            .layer(InFlightLimitLayer::new(c.max_in_flight))
            .add_service(
                v1::workflow_server::WorkflowServer::new(api.clone())
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(v1::control_server::ControlServer::new(ControlApi::new(
                live, auditor, guard,
            )))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(
                diskerase::workflow_server::WorkflowServer::new(CompatApi(api))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(usize::MAX),
            );
        let stop = shutdown.clone();
        let drain = c.drain;
        let task = tokio::spawn(async move {
            let served = match tls {
                Some(tls) => {
                    let incoming = crate::tls::incoming(listener, tls, stop.clone());
                    router
                        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                        .await
                }
                None => {
                    // Nagle's algorithm plus delayed ACKs would stall
                    // multi-segment responses by ~40 ms; tonic sets
                    // TCP_NODELAY only on listeners it binds itself.
                    use tokio_stream::StreamExt as _;
                    let incoming =
                        tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
                            if let Ok(c) = &conn {
                                let _ = c.set_nodelay(true);
                            }
                            conn
                        });
                    router
                        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                        .await
                }
            }
            .map_err(|e| e.to_string());
            engine.shutdown(drain).await;
            served
        });
        tracing::info!(%addr, db = %c.db.display(), configs = %c.configs.display(),
            tls = c.tls_cert.is_some(), auth = c.auth_enabled(), "interlockd serving");
        Ok(Running {
            addr,
            metrics_addr,
            shutdown,
            task,
        })
    }
}

/// Keeps grpc.health.v1 truthful: NOT_SERVING while no valid policy file is
/// loaded, es.json is unusable (every Submit would be refused), with
/// authentication on no valid rbac.json is loaded (every call would be
/// denied), or the store does not answer (probed every 2 s); SERVING
/// otherwise. Reported for "" and each Interlock service.
async fn start_health(
    reporter: tonic_health::server::HealthReporter,
    mut live: live::Live,
    store: Arc<dyn Store>,
    stop: CancellationToken,
) {
    // The first verdict is in place before the server accepts calls, so a
    // health check never finds the services unregistered.
    report_health(&reporter, &mut live, store.as_ref()).await;
    tokio::spawn(async move {
        let mut probe = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            let auth_changed = async {
                match live.auth.as_mut() {
                    Some(a) => a.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                r = live.policies.changed() => if r.is_err() { return },
                r = live.estop.changed() => if r.is_err() { return },
                r = auth_changed => if r.is_err() { return },
                _ = probe.tick() => {}
            }
            report_health(&reporter, &mut live, store.as_ref()).await;
        }
    });
}

async fn report_health(
    reporter: &tonic_health::server::HealthReporter,
    live: &mut live::Live,
    store: &dyn Store,
) {
    let configs_ok = live.policies.borrow_and_update().set.is_some()
        && live.estop.borrow_and_update().error.is_none()
        && live
            .auth
            .as_mut()
            .is_none_or(|a| a.borrow_and_update().rbac.good.is_some());
    let store_ok = match store.ping().await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "store health probe failed");
            false
        }
    };
    let status = if configs_ok && store_ok {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    for name in [
        "",
        "interlock.v1.Workflow",
        "interlock.v1.Control",
        "diskerase.Workflow",
    ] {
        reporter.set_service_status(name, status).await;
    }
}

/// Forgets idempotency keys older than `window`, once a minute (and at start).
fn spawn_request_id_expiry(
    store: Arc<dyn Store>,
    window: std::time::Duration,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(
            std::time::Duration::from_secs(60)
                .min(window.max(std::time::Duration::from_millis(100))),
        );
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let before = interlock_core::now_micros() - window.as_micros() as i64;
            if let Err(e) = store.expire_request_ids(before).await {
                tracing::warn!(error = %e, "cannot expire old request ids");
            }
        }
    });
}

impl Running {
    /// Stops accepting calls, drains running work, and waits for the end.
    pub async fn shutdown(self) -> Result<(), String> {
        self.shutdown.cancel();
        self.task.await.map_err(|e| e.to_string())?
    }

    /// Waits until the server stops: after its shutdown token is
    /// cancelled, or on a serving error.
    pub async fn shutdown_on_token(self) -> Result<(), String> {
        self.task.await.map_err(|e| e.to_string())?
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}
