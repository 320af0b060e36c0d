//! The one way tests start the real `interlockd` binary as a child process:
//! for crashes (SIGKILL), pauses (SIGSTOP), several replicas, and the
//! binary's own exit codes. A [`Daemon`] is killed when dropped, however the
//! test ends.
//!
//! The binary is built in this package (cargo exposes a binary's path only
//! to integration tests of its own package); pass it with the
//! [`interlockd!`](crate::interlockd) macro.

use crate::repo;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// The path of the interlockd binary under test.
#[macro_export]
macro_rules! interlockd {
    () => {
        env!("CARGO_BIN_EXE_interlockd-under-test")
    };
}

/// How to start a daemon: its files live under one directory.
#[derive(Debug, Clone)]
pub struct DaemonSpec {
    pub bin: PathBuf,
    /// Holds `configs/`, `var/` (database, erase target) and logs.
    pub dir: PathBuf,
    /// `--db`: a path (SQLite) or a URL.
    pub db: String,
    /// `--listen` (default `127.0.0.1:0`).
    pub listen: String,
    /// `--metrics-listen` (default `off`).
    pub metrics: String,
    /// `--http-listen` (default `off`); `None` passes no flag (releases that
    /// predate the HTTP API refuse it).
    pub http: Option<String>,
    /// Extra arguments (each flag at most once, with the ones above).
    pub args: Vec<String>,
    /// `RUST_LOG` for the child.
    pub log: String,
    /// Further environment variables for the child.
    pub env: Vec<(String, String)>,
}

impl DaemonSpec {
    /// Defaults: loopback on port 0, no metrics, the shipped configs copied
    /// into `dir/configs` (once), the repository's inventory, and a SQLite
    /// database in `dir/var`.
    pub fn new(bin: &str, dir: &Path) -> Self {
        let configs = dir.join("configs");
        if !configs.exists() {
            std::fs::create_dir_all(&configs).unwrap();
            for f in ["policies.json", "es.json", "buckets.json"] {
                std::fs::copy(repo().join("configs").join(f), configs.join(f)).unwrap();
            }
        }
        Self {
            bin: bin.into(),
            dir: dir.to_path_buf(),
            db: dir.join("var/interlock.db").display().to_string(),
            listen: "127.0.0.1:0".into(),
            metrics: "off".into(),
            http: Some("off".into()),
            args: Vec::new(),
            log: "warn".into(),
            env: Vec::new(),
        }
    }

    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    fn command(&self, log: &Path) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(["--listen", &self.listen, "--metrics-listen", &self.metrics]);
        if let Some(h) = &self.http {
            c.args(["--http-listen", h]);
        }
        c.arg("--db")
            .arg(&self.db)
            .arg("--configs")
            .arg(self.dir.join("configs"))
            .arg("--data")
            .arg(repo().join("data"))
            .arg("--erase-target")
            .arg(self.dir.join("var/erase-target.log"))
            .args(&self.args)
            .env("RUST_LOG", &self.log)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log file"));
        c
    }

    /// The child, started, and the file its stderr goes to.
    fn start(&self) -> (Child, PathBuf) {
        std::fs::create_dir_all(self.dir.join("var")).unwrap();
        let log = self.dir.join(format!("interlockd-{}.log", uuid_like()));
        let child = self.command(&log).spawn().expect("spawn interlockd");
        (child, log)
    }

    /// Starts the daemon and waits for its "listening on" line.
    pub fn spawn(&self) -> Result<Daemon, Exited> {
        let (mut child, log) = self.start();
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
        match line.trim().strip_prefix("interlockd listening on ") {
            Some(addr) => Ok(Daemon {
                addr: addr.to_string(),
                child,
                log,
            }),
            None => {
                let status = child.wait().expect("wait");
                Err(Exited {
                    status,
                    stderr: std::fs::read_to_string(&log).unwrap_or_default(),
                })
            }
        }
    }

    /// Starts the daemon on its fixed `--listen` address with its stdout's
    /// reader already gone (a pipe closed early, a log collector that
    /// restarted), so its "listening on" line cannot be written. Returns
    /// once the address accepts connections, or how it exited.
    pub fn spawn_with_stdout_closed(&self) -> Result<Daemon, Exited> {
        let (mut child, log) = self.start();
        drop(child.stdout.take());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Exited {
                    status,
                    stderr: std::fs::read_to_string(&log).unwrap_or_default(),
                });
            }
            if std::net::TcpStream::connect(&self.listen).is_ok() {
                return Ok(Daemon {
                    addr: self.listen.clone(),
                    child,
                    log,
                });
            }
            assert!(
                std::time::Instant::now() < deadline,
                "interlockd did not listen on {} in 30 s",
                self.listen
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// A start that failed: how the process exited and what it said.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub stderr: String,
}

/// A running interlockd; killed (SIGKILL) on drop.
pub struct Daemon {
    pub addr: String,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://addr`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`, `HUP`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    /// Waits for the process to exit (after TERM), at most `limit`.
    pub fn wait_exit(&mut self, limit: std::time::Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// What it has logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A client with no retries and a 5 s deadline.
    pub async fn client(&self) -> interlock_client::Client {
        interlock_client::Client::connect(
            &self.addr,
            interlock_client::Options {
                max_attempts: 1,
                call_timeout: std::time::Duration::from_secs(5),
                ..interlock_client::Options::default()
            },
        )
        .await
        .expect("connect")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}
