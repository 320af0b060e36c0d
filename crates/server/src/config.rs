//! interlockd's configuration: defaults → config file → `INTERLOCK_*`
//! environment → flags, validated before any port is bound.

use interlock_core::Limits;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Every setting of interlockd. Each field is documented with its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to serve gRPC on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// The store: a SQLite database file (embedded, one server), or a
    /// `postgres://user@host:port/database` URL (several replicas). Default
    /// `./var/interlock.db`.
    pub db: PathBuf,
    /// Connections to PostgreSQL per server (reads and the writer). Default 12.
    pub db_pool: usize,
    /// Directory with policies.json, es.json and buckets.json. Default `./configs`.
    pub configs: PathBuf,
    /// Directory with sites.json and machines.json. Default `./data`.
    pub data: PathBuf,
    /// How long a simulated disk erase takes. Default 30s (as the ancestor).
    #[serde(with = "humantime_serde")]
    pub erase_duration: Duration,
    /// Longest time between Submit and Exec. Default 1h.
    #[serde(with = "humantime_serde")]
    pub exec_ttl: Duration,
    /// Concurrent RPCs before new ones get RESOURCE_EXHAUSTED. Default 4096.
    pub max_in_flight: usize,
    /// Largest accepted request message, in bytes. Default 16 MiB.
    pub max_message_bytes: usize,
    /// `full` (fsync per commit group; survives power loss) or `normal`
    /// (survives a process crash). Default `full`.
    pub sync: SyncMode,
    /// On shutdown, how long running jobs may finish before being cancelled.
    /// Default 10s.
    #[serde(with = "humantime_serde")]
    pub drain: Duration,
    /// `text` or `json` logs. Default `text`.
    pub log_format: LogFormat,
    /// OTLP/gRPC collector to export traces to, e.g.
    /// `http://127.0.0.1:4317`; `null` (the default) exports nothing.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Request size limits.
    pub limits: Limits,
    /// Periodic re-read of the config files, backing up file-change events.
    /// Default 1s.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Log of the simulated erase target. Default `erase-target.log` next to
    /// the database.
    pub erase_target: Option<PathBuf>,
    /// How long a Submit `request_id` is remembered. Default 24h.
    #[serde(with = "humantime_serde")]
    pub request_id_window: Duration,
    /// Allow listening on a non-loopback address without TLS and
    /// authentication (and serving /metrics beyond loopback). Default false:
    /// refused.
    pub insecure: bool,
    /// PEM certificate chain for gRPC over TLS; with `tls_key`, turns TLS
    /// on. Re-read when it changes. Default none (plaintext).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`. Default none.
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle for client certificates (mutual TLS). A verified client
    /// certificate identifies its caller; setting this turns `auth` on.
    /// Default none.
    pub tls_client_ca: Option<PathBuf>,
    /// PEM certificate revocation lists of the client CA; a revoked client
    /// certificate fails the handshake. Re-read when it changes. Default none.
    pub tls_client_crl: Option<PathBuf>,
    /// Refuse TLS handshakes without a client certificate, so tokens alone
    /// are not enough. Default false.
    pub tls_require_client_cert: bool,
    /// Require credentials (a bearer token from `tokens.json` or a client
    /// certificate) on every call except health checks, and authorize them
    /// by `rbac.json`; both files live in `configs` and are reloaded like
    /// the others. Default false: loopback callers are trusted.
    pub auth: bool,
    /// Address of the Prometheus `/metrics` endpoint; `"off"` (as the flag
    /// takes) or `null` turns it off. Default `127.0.0.1:9464`.
    #[serde(with = "addr_or_off")]
    pub metrics_listen: Option<SocketAddr>,
    /// How long this server owns its running workflows without renewing
    /// its registration; after that another instance may take them over.
    /// Default 10s.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// A worker not heard from for this long is lost: its tasks are
    /// re-dispatched (safe), reconciled, or Interrupted. Default 10s.
    #[serde(with = "humantime_serde")]
    pub worker_ttl: Duration,
    /// Log lines each job attempt keeps, its newest (older ones are
    /// dropped as new ones come); 0 records no job logs. Default 1000.
    pub job_log_lines: u32,
    /// A backup (from `interlock admin backup`) to restore as the SQLite
    /// database before starting; refused if the database file exists.
    #[serde(default)]
    pub restore: Option<PathBuf>,
    /// Address of the HTTP/JSON API (`/api/v1/`) and the dashboard (`/ui/`),
    /// or `null`/"off". Default `127.0.0.1:8081`. It uses the gRPC
    /// listener's TLS files; beyond loopback it needs TLS and
    /// authentication, or `insecure`.
    #[serde(with = "addr_or_off")]
    pub http_listen: Option<SocketAddr>,
    /// Finished workflows are deleted this long after they ended; `null`
    /// keeps them forever. Default 90 days; at least a day and at least
    /// `request_id_window`.
    #[serde(with = "retention_serde")]
    pub retention: Option<Duration>,
    /// Audit entries are deleted this long after they were recorded; `null`
    /// keeps them forever. Default 400 days; never shorter than `retention`.
    #[serde(with = "retention_serde")]
    pub audit_retention: Option<Duration>,
    /// Rows deleted per transaction while pruning. Default 20.
    pub retention_batch: usize,
    /// Pause between two pruning transactions. Default 100ms.
    #[serde(with = "humantime_serde")]
    pub retention_pause: Duration,
    /// How often pruning looks for old records. Default 1m.
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
}

/// `metrics_listen` and `http_listen` are spelled the same in the file as
/// on the command line: an address, or `"off"`; the file also takes
/// `null`. Written as the address, or `null`, which reads back the same.
mod addr_or_off {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::net::SocketAddr;

    /// `"off"` is none; anything else must be an address.
    pub fn parse(text: &str) -> Result<Option<SocketAddr>, String> {
        if text == "off" {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|e| {
            format!("{text:?}: {e} (give an address and port such as 127.0.0.1:9464, or \"off\")")
        })
    }

    pub fn serialize<S: Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    #[default]
    Full,
    Normal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            db: "var/interlock.db".into(),
            db_pool: 12,
            configs: "configs".into(),
            data: "data".into(),
            erase_duration: Duration::from_secs(30),
            exec_ttl: Duration::from_secs(3600),
            max_in_flight: 4096,
            max_message_bytes: 16 << 20,
            sync: SyncMode::Full,
            drain: Duration::from_secs(10),
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            limits: Limits::default(),
            reload_interval: Duration::from_secs(1),
            erase_target: None,
            request_id_window: Duration::from_secs(24 * 3600),
            http_listen: Some("127.0.0.1:8081".parse().expect("valid address")),
            retention: Some(Duration::from_secs(90 * 86_400)),
            audit_retention: Some(Duration::from_secs(400 * 86_400)),
            retention_batch: 20,
            retention_pause: Duration::from_millis(100),
            retention_interval: Duration::from_secs(60),
            metrics_listen: Some("127.0.0.1:9464".parse().expect("valid address")),
            insecure: false,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_client_crl: None,
            tls_require_client_cert: false,
            auth: false,
            lease_ttl: Duration::from_secs(10),
            worker_ttl: Duration::from_secs(10),
            job_log_lines: 1_000,
            restore: None,
        }
    }
}

/// Command-line flags; each may also come from its `INTERLOCK_*` variable.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "interlockd",
    version,
    about = "Interlock: runs operational work safely"
)]
pub struct Args {
    /// JSON config file (fields as in `Config`); flags and env override it.
    #[arg(long, env = "INTERLOCK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "INTERLOCK_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// SQLite database file, or a postgres:// URL for several replicas
    /// [default: ./var/interlock.db].
    #[arg(long, env = "INTERLOCK_DB")]
    pub db: Option<PathBuf>,
    /// Directory of policies.json, es.json, buckets.json [default: ./configs].
    #[arg(long, env = "INTERLOCK_CONFIGS")]
    pub configs: Option<PathBuf>,
    /// Directory of sites.json and machines.json [default: ./data].
    #[arg(long, env = "INTERLOCK_DATA")]
    pub data: Option<PathBuf>,
    /// Simulated disk erase time, e.g. 30s, 200ms [default: 30s].
    #[arg(long, env = "INTERLOCK_ERASE_DURATION", value_parser = humantime::parse_duration)]
    pub erase_duration: Option<Duration>,
    /// Longest time between Submit and Exec [default: 1h].
    #[arg(long, env = "INTERLOCK_EXEC_TTL", value_parser = humantime::parse_duration)]
    pub exec_ttl: Option<Duration>,
    /// Concurrent RPCs before RESOURCE_EXHAUSTED [default: 4096].
    #[arg(long, env = "INTERLOCK_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// SQLite durability [default: full].
    #[arg(long, env = "INTERLOCK_SYNC", value_enum)]
    pub sync: Option<SyncMode>,
    /// Drain time on shutdown [default: 10s].
    #[arg(long, env = "INTERLOCK_DRAIN", value_parser = humantime::parse_duration)]
    pub drain: Option<Duration>,
    /// Log format [default: text].
    #[arg(long, env = "INTERLOCK_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Export traces over OTLP/gRPC to this collector, e.g.
    /// http://127.0.0.1:4317 [default: none].
    #[arg(long, env = "INTERLOCK_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Listen on a non-loopback address without TLS and authentication
    /// (anyone who can reach it can run and stop work). Logged loudly.
    #[arg(long, env = "INTERLOCK_INSECURE")]
    pub insecure: bool,
    /// PEM certificate chain: serve gRPC over TLS (reloaded on change).
    #[arg(long, env = "INTERLOCK_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "INTERLOCK_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle for client certificates (mTLS); implies --auth.
    #[arg(long, env = "INTERLOCK_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// PEM CRLs for --tls-client-ca (revoked client certificates are refused).
    #[arg(long, env = "INTERLOCK_TLS_CLIENT_CRL")]
    pub tls_client_crl: Option<PathBuf>,
    /// Refuse TLS clients without a certificate from --tls-client-ca.
    #[arg(long, env = "INTERLOCK_TLS_REQUIRE_CLIENT_CERT")]
    pub tls_require_client_cert: bool,
    /// Require a token or client certificate on every call and authorize it
    /// by rbac.json (tokens.json and rbac.json in the configs directory).
    #[arg(long, env = "INTERLOCK_AUTH")]
    pub auth: bool,
    /// Prometheus /metrics address, or "off" [default: 127.0.0.1:9464].
    #[arg(long, env = "INTERLOCK_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Simulated erase target log [default: erase-target.log beside the db].
    #[arg(long, env = "INTERLOCK_ERASE_TARGET")]
    pub erase_target: Option<PathBuf>,
    /// How long this server owns its running workflows without renewing its
    /// registration; then another instance may take them over [default: 10s].
    #[arg(long, env = "INTERLOCK_LEASE_TTL", value_parser = humantime::parse_duration)]
    pub lease_ttl: Option<Duration>,
    /// A worker silent this long is lost; its tasks are re-dispatched when
    /// safe to re-run, else reconciled or Interrupted [default: 10s].
    #[arg(long, env = "INTERLOCK_WORKER_TTL", value_parser = humantime::parse_duration)]
    pub worker_ttl: Option<Duration>,
    /// Log lines each job attempt keeps (its newest); 0 records none
    /// [default: 1000].
    #[arg(long, env = "INTERLOCK_JOB_LOG_LINES")]
    pub job_log_lines: Option<u32>,
    /// Restore this backup (from `interlock admin backup`) as the SQLite
    /// database, then start on it. The database file must not exist: move
    /// the old one away first.
    #[arg(long, env = "INTERLOCK_RESTORE")]
    pub restore: Option<PathBuf>,
    /// HTTP/JSON API and dashboard address, or "off" [default:
    /// 127.0.0.1:8081].
    #[arg(long, env = "INTERLOCK_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Delete finished workflows this long after they ended, e.g. 90d, or
    /// "off" to keep them forever [default: 90d].
    #[arg(long, env = "INTERLOCK_RETENTION", value_parser = parse_retention)]
    pub retention: Option<Retention>,
    /// Delete audit entries this long after they were recorded, or "off"
    /// [default: 400d]; never shorter than --retention.
    #[arg(long, env = "INTERLOCK_AUDIT_RETENTION", value_parser = parse_retention)]
    pub audit_retention: Option<Retention>,
    /// Print this manual page (roff, section 8) and exit, e.g.
    /// `interlockd --man > /usr/local/share/man/man8/interlockd.8`.
    #[arg(long)]
    pub man: bool,
}

/// interlockd's manual page, from the same definitions that parse its
/// arguments.
pub fn man_page() -> Vec<u8> {
    use clap::CommandFactory;
    let mut page = Vec::new();
    clap_mangen::Man::new(Args::command())
        .section("8")
        .render(&mut page)
        .expect("rendering into memory cannot fail");
    page
}

/// Retentions in the file: `"90days"` (whole days written as days, not
/// humantime's months), or `"off"`/`null` for forever.
mod retention_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// As people read it: whole days as days, else humantime; "off".
    pub fn show(v: Option<Duration>) -> String {
        match v {
            None => "off".into(),
            Some(d) if d.as_secs() % 86_400 == 0 && d.subsec_nanos() == 0 => {
                let n = d.as_secs() / 86_400;
                format!("{n}day{}", if n == 1 { "" } else { "s" })
            }
            Some(d) => humantime::format_duration(d).to_string(),
        }
    }

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(_) => s.serialize_str(&show(*v)),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => super::parse_retention(&text)
                .map(|r| r.0)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// A retention flag's value: a duration, or "off" (keep forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

fn parse_retention(text: &str) -> Result<Retention, String> {
    if text == "off" {
        return Ok(Retention(None));
    }
    humantime::parse_duration(text)
        .map(|d| Retention(Some(d)))
        .map_err(|e| format!("{text:?}: {e} (give a duration such as 90d, or \"off\")"))
}

impl Config {
    /// Builds the effective configuration and validates it.
    pub fn from_args(args: &Args) -> Result<Config, String> {
        let mut c = match &args.config {
            None => Config::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                // serde_path_to_error names the field at fault ("max_in_flight:
                // invalid type ..."), which serde_json alone does not.
                let de = &mut serde_json::Deserializer::from_str(&text);
                let c = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
                    format!(
                        "config file {}: {}: {}",
                        path.display(),
                        e.path(),
                        e.inner()
                    )
                })?;
                // Anything after the one JSON object is an error, not ignored.
                de.end().map_err(|e| {
                    format!("config file {}: after the JSON object: {e}", path.display())
                })?;
                c
            }
        };
        macro_rules! over {
            ($($f:ident),*) => { $( if let Some(v) = &args.$f { c.$f = v.clone(); } )* };
        }
        over!(
            listen,
            db,
            configs,
            data,
            erase_duration,
            exec_ttl,
            max_in_flight,
            sync,
            drain,
            log_format,
            lease_ttl,
            worker_ttl,
            job_log_lines
        );
        if args.restore.is_some() {
            c.restore.clone_from(&args.restore);
        }
        if let Some(Retention(r)) = args.retention {
            c.retention = r;
        }
        if let Some(Retention(r)) = args.audit_retention {
            c.audit_retention = r;
        }
        c.insecure |= args.insecure;
        c.tls_require_client_cert |= args.tls_require_client_cert;
        c.auth |= args.auth;
        for (from, to) in [
            (&args.tls_cert, &mut c.tls_cert),
            (&args.tls_key, &mut c.tls_key),
            (&args.tls_client_ca, &mut c.tls_client_ca),
            (&args.tls_client_crl, &mut c.tls_client_crl),
        ] {
            if from.is_some() {
                to.clone_from(from);
            }
        }
        if let Some(t) = &args.erase_target {
            c.erase_target = Some(t.clone());
        }
        if let Some(e) = &args.otlp_endpoint {
            c.otlp_endpoint = Some(e.clone());
        }
        if let Some(a) = args.http_listen.as_deref() {
            c.http_listen = addr_or_off::parse(a).map_err(|e| format!("--http-listen {e}"))?;
        }
        if let Some(a) = args.metrics_listen.as_deref() {
            c.metrics_listen =
                addr_or_off::parse(a).map_err(|e| format!("--metrics-listen {e}"))?;
        }
        c.validate()?;
        Ok(c)
    }

    /// The PostgreSQL URL `db` names, if it is one.
    pub fn postgres_url(&self) -> Option<String> {
        let s = self.db.to_str()?;
        (s.starts_with("postgres://") || s.starts_with("postgresql://")).then(|| s.to_string())
    }

    /// `db` fit for logs: a URL's password hidden.
    pub fn db_shown(&self) -> String {
        match self.postgres_url() {
            Some(url) => interlock_store_postgres::redact(&url),
            None => self.db.display().to_string(),
        }
    }

    /// Where the simulated erase target keeps its log.
    pub fn erase_target_path(&self) -> PathBuf {
        self.erase_target
            .clone()
            .unwrap_or_else(|| match self.postgres_url() {
                Some(_) => PathBuf::from("var/erase-target.log"),
                None => self
                    .db
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join("erase-target.log"),
            })
    }

    /// Whether calls need credentials (`auth`, or implied by a client CA).
    pub fn auth_enabled(&self) -> bool {
        self.auth || self.tls_client_ca.is_some()
    }

    /// The TLS files, when TLS is on.
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
            client_crl: self.tls_client_crl.clone(),
            require_client_cert: self.tls_require_client_cert,
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        let exposed = |a: &SocketAddr| !a.ip().is_loopback();
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key go together: give both, or neither".into());
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err(
                "tls_client_ca needs TLS: give tls_cert and tls_key too (client certificates \
                 are only sent over TLS)"
                    .into(),
            );
        }
        if self.tls_client_crl.is_some() && self.tls_client_ca.is_none() {
            return Err(
                "tls_client_crl needs tls_client_ca, the CA whose revocations it lists".into(),
            );
        }
        if self.tls_require_client_cert && self.tls_client_ca.is_none() {
            return Err(
                "tls_require_client_cert needs tls_client_ca, the CA client certificates \
                 must chain to"
                    .into(),
            );
        }
        let secured = self.tls_cert.is_some() && self.auth_enabled();
        // What an exposed listener lacks, in words.
        let missing = || match (self.tls_cert.is_some(), self.auth_enabled()) {
            (false, false) => "TLS and authentication",
            (false, true) => "TLS (tokens and identities would cross the network in clear)",
            _ => "authentication (anyone who can connect could run and stop work)",
        };
        if !self.insecure && exposed(&self.listen) && !secured {
            let missing = missing();
            return Err(format!(
                "refusing to listen on {} without {missing}. Give --tls-cert/--tls-key and \
                 --auth (or --tls-client-ca), listen on 127.0.0.1, or pass --insecure to accept \
                 the risk",
                self.listen
            ));
        }
        if let Some(m) = self.metrics_listen.filter(|m| !self.insecure && exposed(m)) {
            return Err(format!(
                "refusing to serve /metrics on {m}: it is plaintext and unauthenticated. Serve it on \
                 127.0.0.1 (and scrape through a sidecar or tunnel), or pass --insecure"
            ));
        }
        if let Some(h) = self
            .http_listen
            .filter(|h| !self.insecure && exposed(h) && !secured)
        {
            let missing = missing();
            return Err(format!(
                "refusing to serve the HTTP API and dashboard on {h} without {missing}. It uses \
                 the gRPC listener's --tls-cert/--tls-key and --auth; or serve it on 127.0.0.1, \
                 turn it off (--http-listen off), or pass --insecure"
            ));
        }
        if let Some(e) = &self.otlp_endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(format!(
                "otlp_endpoint {e:?} must be a URL like http://127.0.0.1:4317 (OTLP over gRPC)"
            ));
        }
        if self.lease_ttl < Duration::from_millis(100) {
            return Err(format!(
                "lease_ttl is {}; it must be at least 100ms (heartbeats renew it every third of it)",
                humantime::format_duration(self.lease_ttl)
            ));
        }
        if self.job_log_lines > 100_000 {
            return Err(format!(
                "job_log_lines is {}; at most 100000 lines are kept per job attempt",
                self.job_log_lines
            ));
        }
        if self.worker_ttl < Duration::from_millis(100) {
            return Err(format!(
                "worker_ttl is {}; it must be at least 100ms",
                humantime::format_duration(self.worker_ttl)
            ));
        }
        if self.db_pool < 2 {
            return Err("db_pool must be at least 2 (the writer and a reader)".into());
        }
        if self.max_in_flight == 0 {
            return Err("max_in_flight must be at least 1".into());
        }
        if self.max_message_bytes < 1024 {
            return Err("max_message_bytes must be at least 1024".into());
        }
        self.validate_retention()
    }

    fn validate_retention(&self) -> Result<(), String> {
        let show = retention_serde::show;
        if let Some(keep) = self.retention {
            let floor = self.request_id_window.max(Duration::from_secs(86_400));
            if keep < floor {
                return Err(format!(
                    "retention is {}; it must be at least {} (a day, and the request id \
                     window, so a retried Submit never meets a deleted workflow)",
                    show(Some(keep)),
                    show(Some(floor))
                ));
            }
        }
        let audit_shorter = match (self.retention, self.audit_retention) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(w), Some(a)) => a < w,
        };
        if audit_shorter {
            return Err(format!(
                "audit_retention ({}) is shorter than retention ({}): audit entries must \
                 outlive the workflows they describe. Raise audit_retention (or set it off)",
                show(self.audit_retention),
                show(self.retention)
            ));
        }
        if self.retention_batch == 0 {
            return Err("retention_batch must be at least 1".into());
        }
        Ok(())
    }
}
