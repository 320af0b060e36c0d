//! Wiring a server together and running it until shutdown.

use crate::auth::{AuthnLayer, Guard};
use crate::config::{Config, SyncMode};
use crate::control::ControlApi;
use crate::limit::InFlightLimitLayer;
use crate::live::{self, LivePolicies};
use crate::service::{Api, CompatApi};
use interlock_engine::{
    Admission, Auditor, Buckets, ConcurrencyLimits, Engine, EngineOptions, Job,
};
use interlock_inventory::{Inventory, LiveInventory};
use interlock_jobs::{BuiltinDeps, EraseTarget, builtin_registry};
use interlock_proto::server::{diskerase, v1 as workflow_v1};
use interlock_proto::v1;
use interlock_store::{InstanceInfo, Store};
use interlock_store_postgres::{OpenError as PgOpenError, PgOptions, PgStore};
use interlock_store_sqlite::{OpenError, SqliteOptions, SqliteStore, Synchronous};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Why the server did not start. [`StartError::exit_code`] tells a
/// supervisor whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Another server holds the database: not this process's to fix.
    #[error("{0}")]
    InUse(String),
    /// The configuration (flags, files, database) is wrong.
    #[error("{0}")]
    Config(String),
    /// Anything else (a port in use, an I/O failure).
    #[error("{0}")]
    Other(String),
}

impl StartError {
    /// 2 for a database in use or a bad configuration, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::InUse(_) | StartError::Config(_) => 2,
            StartError::Other(_) => 1,
        }
    }
}

impl From<String> for StartError {
    fn from(s: String) -> Self {
        StartError::Other(s)
    }
}

/// Builds a server; `start` binds and serves.
pub struct ServerBuilder {
    config: Config,
    extra_jobs: Vec<Arc<dyn Job>>,
    clock: Arc<dyn interlock_core::Clock>,
}

/// A serving instance.
pub struct Running {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// Where `/metrics` is served, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the HTTP/JSON API is served, if enabled.
    pub http_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl ServerBuilder {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            extra_jobs: Vec::new(),
            clock: interlock_core::clock::system(),
        }
    }

    /// The clock the engine reads (buckets, Exec's staleness, leases,
    /// timestamps); the system clock unless a test pins one.
    pub fn clock(mut self, clock: Arc<dyn interlock_core::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Registers an additional job (embedders and tests).
    pub fn job(mut self, job: Arc<dyn Job>) -> Self {
        self.extra_jobs.push(job);
        self
    }

    /// Opens the store (taking its lock first), loads configuration, binds
    /// the ports, and only then resumes work left by the last run and
    /// starts serving. A second server on the same database stops at the
    /// first step, before it touches anything.
    pub async fn start(self) -> Result<Running, StartError> {
        let c = self.config;
        c.validate().map_err(StartError::Config)?;
        if c.insecure && !c.listen.ip().is_loopback() && !(c.tls_cert.is_some() && c.auth_enabled())
        {
            tracing::warn!(listen = %c.listen, tls = c.tls_cert.is_some(), auth = c.auth_enabled(),
                "INSECURE (--insecure): serving on a non-loopback address without both TLS and authentication");
        }
        if c.metrics_listen.is_some() {
            // Installed first, so the initial config load and recovery count.
            crate::metrics::handle();
        }
        let started = interlock_core::now_micros();
        if let Some(backup) = &c.restore {
            restore(&c, backup)?;
        }
        let (store, sqlite) = open_store(&c).await?;
        let inventory = LiveInventory::new(
            Inventory::load(&c.data).map_err(|e| StartError::Config(format!("inventory: {e}")))?,
        );
        // The store's inventory, once one was imported, wins over the files.
        let inventory_sync = crate::inventory::InventorySync::new(store.clone(), inventory.clone());
        inventory_sync
            .refresh()
            .await
            .map_err(|e| StartError::Config(format!("inventory in the store: {e}")))?;
        let clock = self.clock;
        // Bucket definitions arrive with the first configuration load below.
        let buckets = Arc::new(Buckets::new(store.clone(), clock.clone()));
        let target = c.erase_target_path();
        let erase_target =
            Arc::new(EraseTarget::open(&target).map_err(|e| {
                StartError::Config(format!("erase target {}: {e}", target.display()))
            })?);
        // http.json's allowed URLs arrive with the first configuration load.
        let http = Arc::new(interlock_jobs::http::LiveHttpConfig::default());
        let mut registry = builtin_registry(BuiltinDeps {
            http: http.clone(),
            inventory: inventory.clone(),
            buckets: buckets.clone(),
            erase_duration: c.erase_duration,
            erase_target,
        });
        for j in self.extra_jobs {
            registry.register(j);
        }
        let builtin: Arc<dyn interlock_core::Catalog> = Arc::new(registry.clone());
        let workers = interlock_workers::Dispatcher::new(interlock_workers::DispatchOpts {
            lease_ttl: c.worker_ttl,
            heartbeat: (c.worker_ttl / 5).max(std::time::Duration::from_millis(10)),
            ..Default::default()
        });
        // commands.json's exec.* jobs arrive with the first configuration load.
        let commands = interlock_engine::LiveJobs::new();
        // Replicas sharing the store hand remote attempts to each other's
        // workers through its task board.
        let board = store.shares_tasks().then(|| {
            interlock_workers::Board::new(
                store.clone(),
                workers.clone(),
                interlock_workers::BoardOpts {
                    claim_ttl: c.lease_ttl,
                    poll: (c.lease_ttl / 4).clamp(
                        std::time::Duration::from_millis(50),
                        std::time::Duration::from_secs(1),
                    ),
                    cancel_grace: workers.opts().cancel_grace,
                    keep_lines: c.job_log_lines,
                },
            )
        });
        let mut runners =
            interlock_workers::Runners::new(registry, commands.clone(), workers.clone());
        if let Some(b) = &board {
            runners = runners.with_board(b.clone());
        }
        let registry = Arc::new(runners);
        let shutdown = CancellationToken::new();
        // A start that fails from here on stops the tasks it started, so
        // they let go of the store (and of SQLite's lock) instead of
        // keeping it for the life of the process.
        let failed_start = shutdown.clone().drop_guard();
        tokio::spawn(workers.clone().run_expiry(shutdown.clone()));
        let auditor = Auditor::new(store.clone());
        let concurrency = Arc::new(ConcurrencyLimits::new());
        let notifier = crate::notify::Notifier::new(store.clone());
        let live = live::start(
            auditor.clone(),
            c.configs.clone(),
            registry.clone(),
            live::Targets {
                workers: workers.clone(),
                commands,
                http,
                builtin,
                buckets,
                limits: concurrency.clone(),
                notifier: notifier.clone(),
            },
            c.reload_interval,
            c.auth_enabled(),
            shutdown.clone(),
        )
        .await;
        let guard = live.auth.clone().map_or_else(Guard::off, Guard::on);
        let tls = match c.tls_files() {
            Some(files) => Some(
                crate::tls::start(files, c.reload_interval, auditor.clone(), shutdown.clone())
                    .map_err(StartError::Config)?,
            ),
            None => None,
        };
        let admission: Arc<dyn Admission> = Arc::new(LivePolicies(live.policies.clone()));

        let listener = tokio::net::TcpListener::bind(c.listen)
            .await
            .map_err(|e| StartError::Other(format!("cannot listen on {}: {e}", c.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Other(e.to_string()))?;
        let engine = Engine::new(
            store.clone(),
            registry,
            admission,
            live.estop.clone(),
            EngineOptions {
                exec_ttl: c.exec_ttl,
                limits: c.limits.clone(),
                lease_ttl: c.lease_ttl,
                instance: InstanceInfo {
                    host: hostname(),
                    addr: addr.to_string(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstanceInfo::default()
                },
                clock,
                request_id_window: c.request_id_window,
                retention: interlock_engine::Retention {
                    workflows: c.retention,
                    audit: c.audit_retention,
                    batch: c.retention_batch,
                    interval: c.retention_interval,
                    pause: c.retention_pause,
                },
                concurrency,
                buckets: Some(live.buckets.clone()),
                inventory,
                fire_authorizer: Some(Arc::new(crate::schedules::CreatorGrants(guard.clone()))),
                workflow_span: Some(Arc::new(crate::telemetry::join_workflow_trace)),
                job_traceparent: Some(Arc::new(crate::telemetry::current_traceparent)),
                job_log_lines: c.job_log_lines,
            },
        );
        notifier.start(&engine, shutdown.clone());
        if let Some(b) = &board {
            tokio::spawn(
                b.clone()
                    .serve(engine.instance_id().to_string(), shutdown.clone()),
            );
        }
        let metrics_addr = match c.metrics_listen {
            Some(a) => Some(
                crate::metrics::serve(a, engine.clone(), live.clone(), shutdown.clone()).await?,
            ),
            None => None,
        };
        if let Some(sqlite) = &sqlite
            && let Err(e) = sqlite
                .describe_holder(format!(
                    "pid {} listening on {addr}, instance {}",
                    std::process::id(),
                    engine.instance_id()
                ))
                .await
        {
            tracing::warn!(error = %e, "cannot describe the database lock holder");
        }

        // Work left running when the last server stopped continues (or
        // waits for an operator) before new calls are served; the ports
        // are already ours, so nothing resumes on behalf of a start that
        // fails.
        let resumed = engine
            .start(started)
            .await
            .map_err(|e| StartError::Other(format!("recovery: {e}")))?;
        if resumed > 0 {
            tracing::info!(resumed, "resumed workflows left running by the last stop");
        }
        // Template files are in the store before the first call is served.
        let mut template_files =
            crate::live::templates::TemplateFiles::new(&c.configs, engine.clone(), auditor.clone());
        template_files.sync().await;
        template_files.spawn(c.reload_interval, shutdown.clone());

        let api = Api::new(
            engine.clone(),
            auditor.clone(),
            guard.clone(),
            shutdown.clone(),
        );
        let (health, health_service) = tonic_health::server::health_reporter();
        start_health(health, live.clone(), engine.clone(), shutdown.clone()).await;
        // v1 and v1alpha (grpcurl and older tools ask for v1alpha), each
        // listing both reflection services, since both are served.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(interlock_proto::FILE_DESCRIPTOR_SET)
                .include_reflection_service(false)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                )
        };
        let reflection_err = |e| StartError::Other(format!("reflection: {e}"));
        let reflection_v1 = reflection().build_v1().map_err(reflection_err)?;
        let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_err)?;
        let templates = Arc::new(crate::templates::TemplatesApi::new(
            engine.clone(),
            auditor.clone(),
            guard.clone(),
        ));
        let schedules = Arc::new(crate::schedules::SchedulesApi::new(
            engine.clone(),
            auditor.clone(),
            guard.clone(),
        ));
        inventory_sync
            .clone()
            .spawn(c.reload_interval, shutdown.clone());
        let inventory_api = Arc::new(crate::inventory::InventoryApi {
            sync: inventory_sync,
            audit: auditor.clone(),
            guard: guard.clone(),
        });
        let worker_api = crate::worker::WorkerApi::start(
            workers,
            board.clone(),
            auditor.clone(),
            guard.clone(),
            shutdown.clone(),
        );
        let control = Arc::new(ControlApi::new(
            engine.clone(),
            live,
            auditor,
            guard.clone(),
        ));
        let in_flight = InFlightLimitLayer::new(c.max_in_flight);
        let http_addr = match c.http_listen {
            Some(a) => Some(
                crate::http::serve(
                    a,
                    crate::http::HttpApi {
                        api: api.clone(),
                        control: control.clone(),
                        templates: templates.clone(),
                        schedules: schedules.clone(),
                        inventory: inventory_api.clone(),
                        workers: worker_api.clone(),
                        guard: guard.clone(),
                        limit: in_flight.clone(),
                        web: crate::web::session::WebPolicy {
                            tls: tls.is_some(),
                            loopback_hosts_only: !c.auth_enabled() && a.ip().is_loopback(),
                            // Set to the bound port by `serve`.
                            port: a.port(),
                        },
                    },
                    tls.clone(),
                    shutdown.clone(),
                )
                .await
                .map_err(StartError::Other)?,
            ),
            None => None,
        };
        let max = c.max_message_bytes;
        let router = tonic::transport::Server::builder()
            .layer(crate::metrics::RpcMetricsLayer)
            .layer(AuthnLayer(guard))
            .layer(in_flight)
            .add_service(
                workflow_v1::workflow_server::WorkflowServer::new(api.clone())
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(v1::control_server::ControlServer::from_arc(control.clone()))
            .add_service(
                v1::templates_server::TemplatesServer::from_arc(templates.clone())
                    .max_decoding_message_size(max),
            )
            .add_service(v1::schedules_server::SchedulesServer::from_arc(
                schedules.clone(),
            ))
            .add_service(v1::inventory_server::InventoryServer::from_arc(
                inventory_api.clone(),
            ))
            .add_service(v1::worker_server::WorkerServer::from_arc(
                worker_api.clone(),
            ))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
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
                    let incoming =
                        crate::tls::incoming(listener, tls, crate::tls::ALPN_GRPC, stop.clone());
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
            if let Some(b) = &board {
                // The workers' sessions end with the server's: the tasks
                // they run are let go of, for them to re-attach elsewhere.
                b.close().await;
            }
            engine.shutdown(drain).await;
            // Releases the database (its lock), so a restart in this
            // process, or another process, can open it at once.
            store.close().await;
            served
        });
        tracing::info!(%addr, db = %c.db_shown(), configs = %c.configs.display(),
            tls = c.tls_cert.is_some(), auth = c.auth_enabled(), "interlockd serving");
        failed_start.disarm();
        Ok(Running {
            addr,
            metrics_addr,
            http_addr,
            shutdown,
            task,
        })
    }
}

/// Keeps grpc.health.v1 truthful: NOT_SERVING while no valid policy file is
/// loaded, es.json is unusable (every Submit would be refused), with
/// authentication on no valid rbac.json is loaded (every call would be
/// denied), the store cannot be written or does not answer (probed every
/// 2 s), or this server has lost its lease; SERVING otherwise. Reported for
/// "" and each Interlock service.
async fn start_health(
    reporter: tonic_health::server::HealthReporter,
    mut live: live::Live,
    engine: Engine,
    stop: CancellationToken,
) {
    // The first verdict is in place before the server accepts calls, so a
    // health check never finds the services unregistered.
    let mut last = report_health(&reporter, &mut live, &engine, None).await;
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
            last = report_health(&reporter, &mut live, &engine, Some(last)).await;
        }
    });
}

/// Sets the services' status; returns it, and logs each change with why.
async fn report_health(
    reporter: &tonic_health::server::HealthReporter,
    live: &mut live::Live,
    engine: &Engine,
    last: Option<tonic_health::ServingStatus>,
) -> tonic_health::ServingStatus {
    let mut problems = Vec::new();
    if live.policies.borrow_and_update().set.is_none() {
        problems.push("no valid policy file is loaded".to_string());
    }
    if let Some(e) = &live.estop.borrow_and_update().error {
        problems.push(format!("es.json is unusable ({e})"));
    }
    if live
        .auth
        .as_mut()
        .is_some_and(|a| a.borrow_and_update().rbac.good.is_none())
    {
        problems.push("no valid rbac.json is loaded".to_string());
    }
    let store = engine.store_health().await;
    problems.extend(
        store
            .write_error
            .map(|e| format!("the store cannot be written: {e}")),
    );
    problems.extend(store.lease_error);
    let status = if problems.is_empty() {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    if last != Some(status) {
        match status {
            tonic_health::ServingStatus::Serving => tracing::info!("health: SERVING"),
            _ => {
                tracing::error!(problems = %interlock_core::Escaped(&problems.join("; ")), "health: NOT_SERVING")
            }
        }
    }
    for name in [
        "",
        "interlock.v1.Workflow",
        "interlock.v1.Control",
        "diskerase.Workflow",
    ] {
        reporter.set_service_status(name, status).await;
    }
    status
}

/// Opens the store `--db` names: a `postgres://` URL, or a SQLite file.
/// The SQLite store is also returned, to describe its lock's holder.
async fn open_store(c: &Config) -> Result<(Arc<dyn Store>, Option<SqliteStore>), StartError> {
    if let Some(url) = c.postgres_url() {
        let mut opts = PgOptions::new(url);
        opts.pool_size = c.db_pool;
        let pg = PgStore::open(opts).await.map_err(|e| match e {
            PgOpenError::Unreachable { .. } => StartError::Other(e.to_string()),
            e => StartError::Config(e.to_string()),
        })?;
        return Ok((Arc::new(pg), None));
    }
    let sqlite = open_sqlite(c)?;
    Ok((Arc::new(sqlite.clone()), Some(sqlite)))
}

/// Opens the embedded store, mapping its failures to start errors.
fn open_sqlite(c: &Config) -> Result<SqliteStore, StartError> {
    let mut opts = SqliteOptions::new(&c.db);
    opts.synchronous = match c.sync {
        SyncMode::Full => Synchronous::Full,
        SyncMode::Normal => Synchronous::Normal,
    };
    SqliteStore::open(opts).map_err(|e| match e {
        OpenError::Locked(l) => StartError::InUse(format!(
            "{l}. Stop that server, or give this one another --db"
        )),
        e => StartError::Config(e.to_string()),
    })
}

/// Puts a backup in place as the SQLite database, refusing to overwrite
/// one: a restore that replaced live data by mistake would lose it. The
/// copy is opened (and migrated) by the normal start right after.
fn restore(c: &Config, backup: &std::path::Path) -> Result<(), StartError> {
    if c.postgres_url().is_some() {
        return Err(StartError::Config(
            "--restore restores a SQLite backup; restore PostgreSQL with its own tools \
             (pg_restore), then start on its URL"
                .into(),
        ));
    }
    if c.db.exists() {
        return Err(StartError::Config(format!(
            "--restore: {} exists; move it away first (a restore never overwrites a database)",
            c.db.display()
        )));
    }
    let fail = |e: std::io::Error| {
        StartError::Config(format!(
            "--restore {} to {}: {e}",
            backup.display(),
            c.db.display()
        ))
    };
    if let Some(dir) = c.db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    std::fs::copy(backup, &c.db).map_err(fail)?;
    std::fs::File::open(&c.db)
        .and_then(|f| f.sync_all())
        .map_err(fail)?;
    tracing::warn!(backup = %backup.display(), db = %c.db.display(), "database restored from a backup");
    Ok(())
}

/// This machine's name, for the instance list.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
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
