//! Retention on PostgreSQL: finished workflows and old audit entries deleted
//! in bounded batches, each its own transaction on a pooled connection
//! (not the writer's), so Submit's group commits never wait for it.
//!
//! Replicas may prune at the same time: candidates are locked with
//! `FOR UPDATE SKIP LOCKED`, so two replicas never take the same rows and
//! neither waits for the other. Only terminal workflows are candidates, and
//! nothing writes to a terminal workflow, so no other transaction contends.

use crate::sql;
use deadpool_postgres::GenericClient;
use interlock_core::Micros;
use interlock_store::Pruned;
use interlock_store::backend::{WORKFLOW_ROWS, terminal_codes};
use tokio_postgres::error::Error as PgError;

pub async fn prune_workflows(
    c: &mut deadpool_postgres::Client,
    before: Micros,
    now: Micros,
    kept_days: u32,
    limit: usize,
) -> Result<usize, PgError> {
    let terminal = terminal_codes();
    let tx = c.transaction().await?;
    let rows = sql::query(
        &tx,
        "SELECT id, ended FROM workflows
         WHERE ended IS NOT NULL AND ended < $1 AND status = ANY($2)
         ORDER BY ended LIMIT $3 FOR UPDATE SKIP LOCKED",
        &[&before, &terminal, &(limit as i64)],
    )
    .await?;
    let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let ended: Vec<Micros> = rows.iter().map(|r| r.get(1)).collect();
    if ids.is_empty() {
        return Ok(0);
    }
    // The board is PostgreSQL's alone (only shared stores keep one).
    for table in WORKFLOW_ROWS.iter().chain(&["board"]) {
        sql::execute(
            &tx,
            &format!("DELETE FROM {table} WHERE workflow_id = ANY($1)"),
            &[&ids],
        )
        .await?;
    }
    sql::execute(&tx, "DELETE FROM workflows WHERE id = ANY($1)", &[&ids]).await?;
    sql::execute(
        &tx,
        "INSERT INTO pruned (id, ended, pruned_at, kept_days)
         SELECT id, ended, $3, $4
         FROM unnest($1::text[], $2::bigint[]) AS t(id, ended)
         ON CONFLICT (id) DO NOTHING",
        &[&ids, &ended, &now, &(kept_days as i32)],
    )
    .await?;
    tx.commit().await?;
    Ok(ids.len())
}

pub async fn prune_audit(
    c: &mut deadpool_postgres::Client,
    before: Micros,
    limit: usize,
) -> Result<usize, PgError> {
    let tx = c.transaction().await?;
    // Audit ids grow with time: look only at the oldest `limit` entries.
    let n = sql::execute(
        &tx,
        "DELETE FROM audit WHERE id IN
         (SELECT id FROM audit ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) AND at < $1",
        &[&before, &(limit as i64)],
    )
    .await?;
    let t = sql::execute(
        &tx,
        "DELETE FROM pruned WHERE id IN (SELECT id FROM pruned WHERE ended < $1
         ORDER BY ended LIMIT $2 FOR UPDATE SKIP LOCKED)",
        &[&before, &(limit as i64)],
    )
    .await?;
    tx.commit().await?;
    Ok((n + t) as usize)
}

pub async fn pruned(c: &impl GenericClient, id: &str) -> Result<Option<Pruned>, PgError> {
    Ok(sql::query_opt(
        c,
        "SELECT ended, pruned_at, kept_days FROM pruned WHERE id = $1",
        &[&id],
    )
    .await?
    .map(|r| Pruned {
        id: id.to_string(),
        ended: r.get(0),
        pruned_at: r.get(1),
        kept_days: r.get::<_, i32>(2) as u32,
    }))
}

pub async fn size_bytes(c: &impl GenericClient) -> Result<u64, PgError> {
    let r = sql::query_one(c, "SELECT pg_database_size(current_database())", &[]).await?;
    Ok(r.get::<_, i64>(0) as u64)
}
