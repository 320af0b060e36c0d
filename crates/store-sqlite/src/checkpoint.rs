//! Copies the write-ahead log back into the database file, on a thread of
//! its own.
//!
//! SQLite's default is for the committing connection to run that copy
//! (a checkpoint) itself, inside the commit that takes the log past 1,000
//! pages. Here that connection is the single writer, whose time is the
//! store's write throughput: a checkpoint writes every page the log holds
//! into the database file and syncs it, and under a burst of writes (a mass
//! e-stop ends 100,000 runs) that was a tenth of the writer's time.
//!
//! So the writer only kicks this thread after a commit, and the thread runs
//! a PASSIVE checkpoint on its own connection: it copies what it can without
//! waiting for (or holding up) the writer or readers, at most once per
//! [`PAUSE`]. Durability does not change: a commit is durable once its log
//! frames are synced, which the writer still does before answering.
//!
//! Invariants:
//! - The writer keeps a fallback of its own (`wal_autocheckpoint` at
//!   [`FALLBACK_PAGES`]), so the log stays bounded if this thread cannot
//!   keep up or is gone.
//! - The thread ends, and its connection is closed, before the writer
//!   releases the database's lock: nothing of this process touches the file
//!   after another server may have taken it.

use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The least time between two checkpoints: a busy writer's commits are
/// copied back together, each page once however often it changed, not one
/// checkpoint (and one sync of the database file) per commit. At 20 ms,
/// Submit lost about a fifth of its throughput on one core to checkpoints
/// copying the same hot pages over and over; at 250 ms a checkpoint
/// covers about as much as SQLite's own (every 1,000 pages) under that
/// load, and a burst stays well below the fallback.
const PAUSE: Duration = Duration::from_millis(250);

/// The log size (pages) at which the writer checkpoints by itself, in case
/// this thread falls behind: 8× SQLite's default.
pub const FALLBACK_PAGES: u32 = 8_000;

/// The handle the writer keeps: kick after a commit, join before closing.
pub struct Checkpointer {
    kick: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens its connection to `path` (in WAL mode already) and starts the
    /// thread.
    pub fn start(path: &Path) -> std::io::Result<Self> {
        let conn = Connection::open(path)
            .and_then(|c| {
                // What a checkpoint writes into the database file is synced
                // before the log may be reused.
                c.pragma_update(None, "synchronous", "FULL")?;
                Ok(c)
            })
            .map_err(std::io::Error::other)?;
        // One pending kick is enough: the checkpoint copies all there is.
        let (kick, rx) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("interlock-store-checkpoint".into())
            .spawn(move || run(conn, rx))?;
        Ok(Self {
            kick: Some(kick),
            thread: Some(thread),
        })
    }

    /// Says the log grew. Never blocks the writer.
    pub fn kick(&self) {
        if let Some(k) = &self.kick
            && let Err(TrySendError::Disconnected(())) = k.try_send(())
        {
            tracing::warn!("the checkpoint thread is gone; the writer checkpoints alone");
        }
    }

    /// Stops the thread after its current checkpoint; returns once its
    /// connection is closed.
    pub fn stop(&mut self) {
        drop(self.kick.take());
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::warn!("the checkpoint thread panicked");
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(conn: Connection, kicks: Receiver<()>) {
    while kicks.recv().is_ok() {
        let started = Instant::now();
        // PASSIVE: copies the frames no reader still needs, takes no lock a
        // writer waits for, and returns at once if a checkpoint is already
        // running (the writer's fallback). Its verdict needs no action: what
        // it could not copy now, the next one copies.
        let r = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        });
        match r {
            Ok((_busy, log, _copied)) => {
                metrics::histogram!("interlock_store_checkpoint_seconds")
                    .record(started.elapsed().as_secs_f64());
                // The log's length in pages: it grows only while
                // checkpoints cannot copy it (a reader holds old pages).
                metrics::gauge!("interlock_store_wal_pages").set(log.max(0) as f64);
            }
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint failed; retried after the next commit")
            }
        }
        std::thread::sleep(PAUSE.saturating_sub(started.elapsed()));
    }
}
