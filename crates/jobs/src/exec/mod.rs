//! `exec.NAME`: runs a command commands.json allows (see [`config`]).
//!
//! No shell: the program is the entry's absolute path, each argument one
//! argv element. The environment is cleared (then the entry's `env`, and
//! the `pass_env` variables from the server's own), stdin is empty, the
//! working directory is the entry's. The command runs in its own process
//! group; Cancel, the emergency stop or its timeout send SIGTERM to the
//! whole group, then SIGKILL after the grace period, so nothing it started
//! outlives it. Output: `exitCode` and the last [`config::TAIL_BYTES`] of
//! stdout and stderr; every line of both also goes to the job's log as it
//! is written. A command in flight at a crash is run again only if
//! its entry says `safe`; otherwise recovery makes it Interrupted. Either
//! way the restarted server first kills the process group the crashed one
//! left running (its checkpoint records which: boot, pid, start time).

pub mod config;

use async_trait::async_trait;
use config::{Command, TAIL_BYTES};
use interlock_core::log::MAX_LINE_BYTES;
use interlock_core::{JobSchema, LogStream, WorkReq};
use interlock_engine::{Job, JobCtx, JobError, Outputs};
use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

pub use config::{COMMANDS, Commands, PREFIX};

/// One command of commands.json as a job.
pub struct Exec {
    command: Command,
}

impl Exec {
    pub fn new(command: Command) -> Self {
        Self { command }
    }

    /// Every command of `commands` as a job, with its schema.
    pub fn all(commands: Commands) -> Vec<(Arc<dyn Job>, &'static JobSchema)> {
        commands
            .0
            .into_iter()
            .map(|c| {
                let schema = c.schema;
                (Arc::new(Exec::new(c)) as Arc<dyn Job>, schema)
            })
            .collect()
    }
}

/// Signals the process group led by `pid`; gone already is fine.
fn signal_group(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

/// A running command's process group, as its checkpoint records it: the
/// machine's boot, the pid namespace, the leader's pid and its start time,
/// so a later server kills that group and never another that reuses the
/// number (or lives in another container of the same machine).
#[derive(serde::Serialize, serde::Deserialize, PartialEq, Eq, Debug)]
struct Running {
    boot: String,
    ns: String,
    pid: u32,
    start: u64,
}

impl Running {
    fn of(pid: u32) -> Option<Self> {
        Some(Self {
            boot: boot_id()?,
            ns: pid_namespace()?,
            pid,
            start: start_time(pid)?,
        })
    }

    /// Kills the group only while its leader is the very process that was
    /// started (same boot, same pid namespace, same start time). A group
    /// whose leader has exited is left alone: its pid could name another
    /// group by then, and a wrong kill is worse than a missed one.
    fn stop(&self) -> bool {
        let ours = boot_id().as_deref() == Some(self.boot.as_str())
            && pid_namespace().as_deref() == Some(self.ns.as_str())
            && start_time(self.pid) == Some(self.start);
        if ours {
            signal_group(self.pid, rustix::process::Signal::KILL);
        }
        ours
    }
}

fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|p| p.display().to_string())
}

impl std::fmt::Display for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| std::fmt::Error)?)
    }
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// The process's start time (clock ticks after boot), from /proc.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is the
    // 3rd field, starttime the 22nd.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Kills the group if the run is dropped half way (an aborted task).
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            signal_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Reads a stream to its end, keeping its last `TAIL_BYTES`.
struct AbortOnDrop<const N: usize>([tokio::task::AbortHandle; N]);

impl<const N: usize> Drop for AbortOnDrop<N> {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Longest piece of a long output line logged as one line: under
/// [`MAX_LINE_BYTES`], with room for the few control characters a log
/// line shows escaped.
const CHUNK: usize = MAX_LINE_BYTES - 256;

async fn tail(mut r: impl tokio::io::AsyncRead + Unpin, ctx: JobCtx, stream: LogStream) -> String {
    let mut keep = VecDeque::with_capacity(TAIL_BYTES);
    let mut line = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        keep.extend(&buf[..n]);
        let over = keep.len().saturating_sub(TAIL_BYTES);
        keep.drain(..over);
        // Every line goes to the job's log as it comes; a line longer than
        // a log line is cut into several (on a character boundary) rather
        // than held.
        for &b in &buf[..n] {
            if b == b'\n' {
                ctx.log_to(stream, String::from_utf8_lossy(&line));
                line.clear();
                continue;
            }
            line.push(b);
            if line.len() >= CHUNK {
                let cut = (1..=4)
                    .map(|back| line.len() - back)
                    .find(|&i| line[i] & 0xC0 != 0x80)
                    .filter(|&i| line[i] >= 0xC0)
                    .unwrap_or(line.len());
                ctx.log_to(stream, String::from_utf8_lossy(&line[..cut]));
                line.drain(..cut);
            }
        }
    }
    if !line.is_empty() {
        ctx.log_to(stream, String::from_utf8_lossy(&line));
    }
    String::from_utf8_lossy(keep.make_contiguous()).into_owned()
}

#[async_trait]
impl Job for Exec {
    fn schema(&self) -> &JobSchema {
        self.command.schema
    }

    fn check(&self, args: &interlock_core::Args, _req: &WorkReq) -> Result<(), String> {
        self.command.check(args)
    }

    async fn abandon(&self, ctx: &JobCtx, _args: &interlock_core::Args) {
        let Some(mark) = ctx
            .checkpoint
            .as_deref()
            .and_then(|c| serde_json::from_str::<Running>(c).ok())
        else {
            return;
        };
        if mark.stop() {
            tracing::warn!(workflow = %ctx.workflow_id, block = ctx.block, job = ctx.job,
                pid = mark.pid, command = self.command.schema.name,
                "killed the process group a crashed server's run left behind");
        }
    }

    async fn run(&self, ctx: &JobCtx, args: &interlock_core::Args) -> Result<Outputs, JobError> {
        let c = &self.command;
        let (program, argv) = c.argv(args).map_err(JobError::new)?;
        if !ctx.holds_lease() {
            return Err(JobError::cancelled());
        }
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&argv)
            .env_clear()
            .envs(&c.env)
            .envs(
                c.pass_env
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k.clone(), v))),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(d) = &c.cwd {
            cmd.current_dir(d);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| JobError::new(format!("cannot start {}: {e}", program.display())))?;
        let mut guard = GroupGuard(child.id());
        // Where the process is, durably, before it can act for long: if this
        // server dies, the next one stops it (see `abandon`).
        if let Some(mark) = child.id().and_then(Running::of) {
            ctx.save_checkpoint(mark.to_string()).await?;
        }
        let out = tokio::spawn(tail(
            child.stdout.take().expect("piped"),
            ctx.clone(),
            LogStream::Stdout,
        ));
        let err = tokio::spawn(tail(
            child.stderr.take().expect("piped"),
            ctx.clone(),
            LogStream::Stderr,
        ));
        // However the run ends (a timeout or cancel returns early, the
        // executor's own timeout drops this future), the readers go too: a
        // process left holding the pipes must not go on logging.
        let _readers = AbortOnDrop([out.abort_handle(), err.abort_handle()]);
        let stopped = tokio::select! {
            s = child.wait() => Ok(s),
            _ = ctx.cancel.cancelled() => Err(None),
            _ = tokio::time::sleep(c.timeout) => Err(Some(c.timeout)),
        };
        let status = match stopped {
            Ok(s) => s.map_err(|e| JobError::new(format!("waiting for the command: {e}")))?,
            Err(why) => {
                if let Some(pid) = child.id() {
                    signal_group(pid, rustix::process::Signal::TERM);
                    if tokio::time::timeout(c.grace, child.wait()).await.is_err() {
                        signal_group(pid, rustix::process::Signal::KILL);
                        let _ = child.wait().await;
                    }
                }
                // The leader is gone; anything left in its group goes too.
                drop(guard);
                return Err(match why {
                    None => JobError::cancelled(),
                    Some(t) => JobError::new(format!(
                        "timed out after {} (commands.json); the command was stopped",
                        humantime::format_duration(t)
                    ))
                    .retryable(),
                });
            }
        };
        // Exited: its group may still hold children it left behind.
        if let Some(pid) = guard.0.take() {
            signal_group(pid, rustix::process::Signal::KILL);
        }
        // A descendant that left the group (setsid) may hold the pipes open:
        // the output is what arrived by then.
        let collect = |h: tokio::task::JoinHandle<String>| async move {
            let abort = h.abort_handle();
            match tokio::time::timeout(Duration::from_secs(1), h).await {
                Ok(r) => r.unwrap_or_default(),
                Err(_) => {
                    abort.abort();
                    String::new()
                }
            }
        };
        let (stdout, stderr) = (collect(out).await, collect(err).await);
        let code = status.code();
        let outputs = Outputs::from([
            (
                "exitCode".to_string(),
                code.map_or_else(|| "signal".to_string(), |c| c.to_string()),
            ),
            ("stdout".to_string(), stdout),
            ("stderr".to_string(), stderr.clone()),
        ]);
        if status.success() {
            return Ok(outputs);
        }
        let last = stderr.lines().last().unwrap_or_default();
        let what = match code {
            Some(n) => format!("exited with code {n}"),
            None => "was killed by a signal".to_string(),
        };
        let mut e = JobError::new(format!("{} {what}: {last}", program.display()));
        e.retryable = c.schema.idempotency == interlock_core::Idempotency::Safe;
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_names_this_process_and_no_other() {
        let me = Running::of(std::process::id()).expect("this process is in /proc");
        let back: Running = serde_json::from_str(&me.to_string()).unwrap();
        assert_eq!(back, me);
        assert_eq!(start_time(std::process::id()), Some(me.start));
        // Another boot, or the same pid started at another time: not ours
        // to kill (stop() returns before signalling anything).
        let other_boot = Running {
            boot: "not-this-boot".into(),
            ..Running::of(std::process::id()).unwrap()
        };
        assert!(!other_boot.stop());
        let reused = Running {
            start: me.start + 1,
            ..Running::of(std::process::id()).unwrap()
        };
        assert!(!reused.stop());
    }
}
