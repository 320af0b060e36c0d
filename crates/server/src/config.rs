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
    /// SQLite database file. Default `./var/interlock.db`.
    pub db: PathBuf,
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
    /// Allow listening on a non-loopback address although this build serves
    /// plaintext gRPC without authentication. Default false: refused.
    pub insecure: bool,
    /// Address of the Prometheus `/metrics` endpoint; `null` turns it off.
    /// Default `127.0.0.1:9464`.
    pub metrics_listen: Option<SocketAddr>,
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
            configs: "configs".into(),
            data: "data".into(),
            erase_duration: Duration::from_secs(30),
            exec_ttl: Duration::from_secs(3600),
            max_in_flight: 4096,
            max_message_bytes: 16 << 20,
            sync: SyncMode::Full,
            drain: Duration::from_secs(10),
            log_format: LogFormat::Text,
            limits: Limits::default(),
            reload_interval: Duration::from_secs(1),
            erase_target: None,
            request_id_window: Duration::from_secs(24 * 3600),
            metrics_listen: Some("127.0.0.1:9464".parse().expect("valid address")),
            insecure: false,
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
    /// SQLite database file [default: ./var/interlock.db].
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
    /// Listen on a non-loopback address without TLS or authentication
    /// (anyone who can reach it can run and stop work). Logged loudly.
    #[arg(long, env = "INTERLOCK_INSECURE")]
    pub insecure: bool,
    /// Prometheus /metrics address, or "off" [default: 127.0.0.1:9464].
    #[arg(long, env = "INTERLOCK_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Simulated erase target log [default: erase-target.log beside the db].
    #[arg(long, env = "INTERLOCK_ERASE_TARGET")]
    pub erase_target: Option<PathBuf>,
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
                serde_path_to_error::deserialize(de).map_err(|e| {
                    format!(
                        "config file {}: {}: {}",
                        path.display(),
                        e.path(),
                        e.inner()
                    )
                })?
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
            log_format
        );
        if args.insecure {
            c.insecure = true;
        }
        if let Some(t) = &args.erase_target {
            c.erase_target = Some(t.clone());
        }
        match args.metrics_listen.as_deref() {
            None => {}
            Some("off") => c.metrics_listen = None,
            Some(a) => {
                let addr = a
                    .parse()
                    .map_err(|e| format!("--metrics-listen {a:?}: {e}"))?;
                c.metrics_listen = Some(addr);
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Where the simulated erase target keeps its log.
    pub fn erase_target_path(&self) -> PathBuf {
        self.erase_target.clone().unwrap_or_else(|| {
            self.db
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join("erase-target.log")
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        let exposed = |a: &SocketAddr| !a.ip().is_loopback();
        if !self.insecure
            && (exposed(&self.listen) || self.metrics_listen.as_ref().is_some_and(exposed))
        {
            return Err(format!(
                "refusing to listen on {} : this server has no TLS or authentication yet, so anyone \
                 who can reach it could run and stop work. Listen on 127.0.0.1, or pass --insecure \
                 to accept the risk",
                if exposed(&self.listen) {
                    self.listen
                } else {
                    self.metrics_listen.expect("checked")
                }
            ));
        }
        if self.max_in_flight == 0 {
            return Err("max_in_flight must be at least 1".into());
        }
        if self.max_message_bytes < 1024 {
            return Err("max_message_bytes must be at least 1024".into());
        }
        Ok(())
    }
}
