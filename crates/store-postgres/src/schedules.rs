//! The SQL of schedules. Claiming a fire is one conditional UPDATE: a
//! compare-and-set on the next fire, so of several replicas exactly one
//! fires.

use crate::read::backend;
use crate::sql;
use deadpool_postgres::GenericClient;
use interlock_core::Micros;
use interlock_store::{Result, ScheduleRow};
use tokio_postgres::Row;

const COLUMNS: &str = "name, body, workflow, paused, next_fire, firing_due, firing_by, last_due, \
                       last_outcome, last_workflow, created_by, created_at, firing_key";

fn row(r: &Row) -> ScheduleRow {
    ScheduleRow {
        name: r.get(0),
        body: r.get(1),
        workflow: r.get(2),
        paused: r.get(3),
        next_fire: r.get(4),
        firing_due: r.get(5),
        firing_by: r.get(6),
        last_due: r.get(7),
        last_outcome: r.get(8),
        last_workflow: r.get(9),
        created_by: r.get(10),
        created_at: r.get(11),
        firing_key: r.get(12),
    }
}

pub async fn create(c: &impl GenericClient, s: &ScheduleRow) -> Result<bool> {
    let sql = format!(
        "INSERT INTO schedules ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
         $12, $13) ON CONFLICT (name) DO NOTHING"
    );
    let n = sql::execute(
        c,
        &sql,
        &[
            &s.name,
            &s.body,
            &s.workflow,
            &s.paused,
            &s.next_fire,
            &s.firing_due,
            &s.firing_by,
            &s.last_due,
            &s.last_outcome,
            &s.last_workflow,
            &s.created_by,
            &s.created_at,
            &s.firing_key,
        ],
    )
    .await
    .map_err(backend)?;
    Ok(n == 1)
}

pub async fn all(c: &impl GenericClient) -> Result<Vec<ScheduleRow>> {
    let sql = format!("SELECT {COLUMNS} FROM schedules ORDER BY name");
    Ok(sql::query(c, &sql, &[])
        .await
        .map_err(backend)?
        .iter()
        .map(row)
        .collect())
}

pub async fn get(c: &impl GenericClient, name: &str) -> Result<Option<ScheduleRow>> {
    let sql = format!("SELECT {COLUMNS} FROM schedules WHERE name = $1");
    Ok(sql::query_opt(c, &sql, &[&name])
        .await
        .map_err(backend)?
        .as_ref()
        .map(row))
}

pub async fn delete(c: &impl GenericClient, name: &str) -> Result<bool> {
    let n = sql::execute(c, "DELETE FROM schedules WHERE name = $1", &[&name])
        .await
        .map_err(backend)?;
    Ok(n == 1)
}

pub async fn set_paused(
    c: &impl GenericClient,
    name: &str,
    paused: bool,
    next: Option<Micros>,
) -> Result<bool> {
    let n = sql::execute(
        c,
        "UPDATE schedules SET paused = $2, next_fire = $3 WHERE name = $1",
        &[&name, &paused, &next],
    )
    .await
    .map_err(backend)?;
    Ok(n == 1)
}

pub async fn claim(
    c: &impl GenericClient,
    name: &str,
    due: Micros,
    next: Option<Micros>,
    by: &str,
    key: Option<Micros>,
) -> Result<bool> {
    let n = sql::execute(
        c,
        "UPDATE schedules SET next_fire = $3, firing_due = $2, firing_by = $4, firing_key = $5
         WHERE name = $1 AND next_fire = $2 AND NOT paused AND firing_due IS NULL",
        &[&name, &due, &next, &by, &key],
    )
    .await
    .map_err(backend)?;
    Ok(n == 1)
}

pub async fn finish(
    c: &impl GenericClient,
    name: &str,
    due: Micros,
    outcome: &str,
    workflow: &str,
) -> Result<bool> {
    let n = sql::execute(
        c,
        "UPDATE schedules SET firing_due = NULL, firing_by = '', firing_key = NULL,
         last_due = $2, last_outcome = $3,
         last_workflow = CASE WHEN $4 = '' THEN last_workflow ELSE $4 END
         WHERE name = $1 AND firing_due = $2",
        &[&name, &due, &outcome, &workflow],
    )
    .await
    .map_err(backend)?;
    Ok(n == 1)
}
