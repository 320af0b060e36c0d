//! Retention on SQLite: finished workflows and old audit entries deleted in
//! bounded batches, each one transaction on the single writer, so a batch
//! holds up Submit for at most its own few milliseconds.
//!
//! Candidates are found through `workflows_status_created`, oldest first
//! (see `prune_workflows`); everything kept for a workflow goes with it,
//! through indexes that start with `workflow_id`; a tombstone in `pruned`
//! stays.

use interlock_core::Micros;
use interlock_store::Pruned;
use interlock_store::backend::{WORKFLOW_ROWS, terminal_codes};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

pub fn prune_workflows(
    tx: &Transaction<'_>,
    now: Micros,
    before: Micros,
    kept_days: u32,
    limit: usize,
) -> rusqlite::Result<usize> {
    // Candidates come from `workflows_status_created`, a range per
    // terminal status in creation order: a workflow ends after it is
    // created, so all that ended before `before` lie in `created < before`.
    // The walk passes over only those created before the cut that ended
    // after it (running at that instant: a handful) and stops after
    // `limit`; the oldest ends among these go first. INDEXED BY, so the
    // planner never sorts every finished row instead.
    let mut victims: Vec<(String, Micros)> = Vec::new();
    for status in terminal_codes() {
        victims.extend(
            tx.prepare_cached(
                "SELECT id, ended FROM workflows INDEXED BY workflows_status_created
                 WHERE status = ?1 AND created < ?2 AND ended < ?2
                 ORDER BY created LIMIT ?3",
            )?
            .query_map(params![status, before, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        );
    }
    victims.sort_by_key(|&(_, ended)| ended);
    victims.truncate(limit);
    for (id, ended) in &victims {
        // The shared tables, and the one only this backend has.
        for table in WORKFLOW_ROWS.iter().chain(&["workflow_requests"]) {
            tx.prepare_cached(&format!("DELETE FROM {table} WHERE workflow_id = ?1"))?
                .execute([id])?;
        }
        tx.prepare_cached("DELETE FROM workflows WHERE id = ?1")?
            .execute([id])?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO pruned (id, ended, pruned_at, kept_days)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![id, ended, now, kept_days])?;
    }
    Ok(victims.len())
}

pub fn prune_audit(tx: &Transaction<'_>, before: Micros, limit: usize) -> rusqlite::Result<usize> {
    // Audit ids grow with time: look only at the oldest `limit` entries, so
    // a table with nothing old enough costs `limit` rows, not a scan.
    let n = tx
        .prepare_cached(
            "DELETE FROM audit WHERE id IN (SELECT id FROM audit ORDER BY id LIMIT ?2)
             AND at < ?1",
        )?
        .execute(params![before, limit as i64])?;
    let t = tx
        .prepare_cached(
            "DELETE FROM pruned WHERE id IN
             (SELECT id FROM pruned WHERE ended < ?1 ORDER BY ended LIMIT ?2)",
        )?
        .execute(params![before, limit as i64])?;
    Ok(n + t)
}

pub fn pruned(c: &Connection, id: &str) -> rusqlite::Result<Option<Pruned>> {
    c.prepare_cached("SELECT ended, pruned_at, kept_days FROM pruned WHERE id = ?1")?
        .query_row([id], |r| {
            Ok(Pruned {
                id: id.to_string(),
                ended: r.get(0)?,
                pruned_at: r.get(1)?,
                kept_days: r.get(2)?,
            })
        })
        .optional()
}

pub fn size_bytes(c: &Connection) -> rusqlite::Result<u64> {
    let pages: u64 = c.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let size: u64 = c.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(pages * size)
}
