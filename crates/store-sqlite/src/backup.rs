//! Online backup: SQLite's backup API copies the database page by page
//! from a reader connection. All pages are copied in one step, inside one
//! read transaction, so the copy is the database as of one commit however
//! busy the writer is (a copy in several steps would restart on every
//! commit made meanwhile). The copy is written to a temporary file beside
//! the destination, synced, then renamed into place: a reader never finds
//! a half-written backup under the name asked for.

use interlock_store::Result;
use interlock_store::backend::backend;
use rusqlite::Connection;
use std::path::Path;

pub fn write(source: &Connection, dest: &Path) -> Result<u64> {
    if dest.exists() {
        return Err(backend(format!(
            "{} already exists; give a new file (a backup never overwrites)",
            dest.display()
        )));
    }
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.partial", uuid::Uuid::now_v7()));
    let result = (|| -> rusqlite::Result<()> {
        let mut out = Connection::open(&tmp)?;
        {
            let b = rusqlite::backup::Backup::new(source, &mut out)?;
            b.step(-1)?;
        }
        // A self-contained file: no WAL beside it.
        out.pragma_update(None, "journal_mode", "DELETE")?;
        out.close().map_err(|(_, e)| e)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(backend(format!("backup to {} failed: {e}", dest.display())));
    }
    let io = |e: std::io::Error| backend(format!("backup to {}: {e}", dest.display()));
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, dest).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(std::fs::metadata(dest).map_err(io)?.len())
}
