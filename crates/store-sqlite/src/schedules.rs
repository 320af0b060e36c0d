//! The SQL of schedules. Claiming a fire is one conditional UPDATE on the
//! single writer: a compare-and-set on the next fire.

use crate::read::backend;
use interlock_core::Micros;
use interlock_store::{Result, ScheduleRow};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

const COLUMNS: &str = "name, body, workflow, paused, next_fire, firing_due, firing_by, last_due, \
                       last_outcome, last_workflow, created_by, created_at, firing_key";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ScheduleRow> {
    Ok(ScheduleRow {
        name: r.get(0)?,
        body: r.get(1)?,
        workflow: r.get(2)?,
        paused: r.get(3)?,
        next_fire: r.get(4)?,
        firing_due: r.get(5)?,
        firing_by: r.get(6)?,
        last_due: r.get(7)?,
        last_outcome: r.get(8)?,
        last_workflow: r.get(9)?,
        created_by: r.get(10)?,
        created_at: r.get(11)?,
        firing_key: r.get(12)?,
    })
}

pub fn create(tx: &Transaction<'_>, s: &ScheduleRow) -> rusqlite::Result<bool> {
    let n = tx
        .prepare_cached(&format!(
            "INSERT INTO schedules ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
             ?11, ?12, ?13) ON CONFLICT (name) DO NOTHING"
        ))?
        .execute(params![
            s.name,
            s.body,
            s.workflow,
            s.paused,
            s.next_fire,
            s.firing_due,
            s.firing_by,
            s.last_due,
            s.last_outcome,
            s.last_workflow,
            s.created_by,
            s.created_at,
            s.firing_key
        ])?;
    Ok(n == 1)
}

pub fn all(c: &Connection) -> Result<Vec<ScheduleRow>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM schedules ORDER BY name"))
        .map_err(backend)?
        .query_map([], row)
        .map_err(backend)?
        .collect::<rusqlite::Result<_>>()
        .map_err(backend)
}

pub fn get(c: &Connection, name: &str) -> Result<Option<ScheduleRow>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM schedules WHERE name = ?1"))
        .map_err(backend)?
        .query_row([name], row)
        .optional()
        .map_err(backend)
}

pub fn delete(tx: &Transaction<'_>, name: &str) -> rusqlite::Result<bool> {
    Ok(tx
        .prepare_cached("DELETE FROM schedules WHERE name = ?1")?
        .execute([name])?
        == 1)
}

pub fn set_paused(
    tx: &Transaction<'_>,
    name: &str,
    paused: bool,
    next: Option<Micros>,
) -> rusqlite::Result<bool> {
    Ok(tx
        .prepare_cached("UPDATE schedules SET paused = ?2, next_fire = ?3 WHERE name = ?1")?
        .execute(params![name, paused, next])?
        == 1)
}

pub fn claim(
    tx: &Transaction<'_>,
    name: &str,
    due: Micros,
    next: Option<Micros>,
    by: &str,
    key: Option<Micros>,
) -> rusqlite::Result<bool> {
    Ok(tx
        .prepare_cached(
            "UPDATE schedules SET next_fire = ?3, firing_due = ?2, firing_by = ?4, firing_key = ?5
             WHERE name = ?1 AND next_fire = ?2 AND paused = 0 AND firing_due IS NULL",
        )?
        .execute(params![name, due, next, by, key])?
        == 1)
}

pub fn finish(
    tx: &Transaction<'_>,
    name: &str,
    due: Micros,
    outcome: &str,
    workflow: &str,
) -> rusqlite::Result<bool> {
    Ok(tx
        .prepare_cached(
            "UPDATE schedules SET firing_due = NULL, firing_by = '', firing_key = NULL,
             last_due = ?2, last_outcome = ?3,
             last_workflow = CASE WHEN ?4 = '' THEN last_workflow ELSE ?4 END
             WHERE name = ?1 AND firing_due = ?2",
        )?
        .execute(params![name, due, outcome, workflow])?
        == 1)
}
