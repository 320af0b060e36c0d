//! One owner per database: an OS lock on a sidecar file beside it.
//!
//! SQLite lets any number of processes open one file. Two interlockd
//! processes on one database would each resume "its" running workflows, so
//! the second would run the first one's jobs again (a second erase of the
//! same machines). The store therefore takes an exclusive, non-blocking OS
//! lock on `<db>.lock` before it reads or writes anything, and holds it for
//! the life of the process; the kernel drops it when the process dies,
//! however it dies. The file's content names the holder (PID, address,
//! start time) so a refused start can say who holds it; it is advisory
//! text, never trusted for the decision itself.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// How long a start waits for a holder that may be on its way out.
const HOLDER_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// The held lock. Dropping it releases the database.
#[derive(Debug)]
pub struct DbLock {
    file: File,
    path: PathBuf,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds it.
    #[error("database {db} is in use by another interlockd ({holder}); lock file {lock}")]
    Held {
        db: String,
        lock: String,
        holder: String,
    },
    #[error("cannot open lock file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The lock file of the database at `db`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    db.with_file_name(name)
}

impl DbLock {
    /// Takes the lock or says who holds it.
    pub fn acquire(db: &Path) -> Result<Self, LockError> {
        let path = lock_path(db);
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        // A holder that is exiting (or a child process between fork and
        // exec, which briefly shares the descriptor) releases it soon.
        let deadline = std::time::Instant::now() + HOLDER_GRACE;
        let mut result = file.try_lock();
        while matches!(result, Err(std::fs::TryLockError::WouldBlock))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
            result = file.try_lock();
        }
        match result {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    db: db.display().to_string(),
                    lock: path.display().to_string(),
                    holder: if holder.is_empty() {
                        "holder unknown".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut lock = Self { file, path };
        lock.describe(&format!("pid {}", std::process::id()));
        Ok(lock)
    }

    /// Rewrites the holder's description (e.g. once the address is bound).
    pub fn describe(&mut self, holder: &str) {
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            writeln!(f, "{holder}")?;
            f.sync_data()
        };
        if let Err(e) = write(&mut self.file) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot describe the database lock holder");
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("interlock.db");
        let mut first = DbLock::acquire(&db).unwrap();
        first.describe("pid 42 listening on 127.0.0.1:8080");
        let e = DbLock::acquire(&db).unwrap_err().to_string();
        assert!(
            e.contains("in use by another interlockd (pid 42 listening on 127.0.0.1:8080)"),
            "{e}"
        );
        assert!(e.contains("interlock.db.lock"), "{e}");
        drop(first);
        DbLock::acquire(&db).expect("free again once the holder is gone");
    }
}
