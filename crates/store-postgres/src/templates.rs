//! The SQL of templates: revisions appended, never changed. Template writes
//! are rare and administrative, so each runs in its own transaction on a
//! pooled connection rather than in the writer's batches.

use crate::read::backend;
use crate::sql;
use deadpool_postgres::GenericClient;
use interlock_store::{Result, StoredTemplate, TemplateDisabled, TemplatePut, TemplateRevision};
use tokio_postgres::Row;

/// Appends the next revision unless the latest has the same content. The
/// name's `templates` row is locked first (created if new), so concurrent
/// puts of one name, on any replica, take consecutive revisions.
pub async fn put(c: &mut deadpool_postgres::Client, rev: &TemplateRevision) -> Result<TemplatePut> {
    let tx = c.transaction().await.map_err(backend)?;
    sql::execute(
        &tx,
        "INSERT INTO templates (name, latest) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
        &[&rev.name],
    )
    .await
    .map_err(backend)?;
    let latest: i32 = sql::query_one(
        &tx,
        "SELECT latest FROM templates WHERE name = $1 FOR UPDATE",
        &[&rev.name],
    )
    .await
    .map_err(backend)?
    .get(0);
    if latest > 0 {
        let hash: String = sql::query_one(
            &tx,
            "SELECT content_hash FROM template_revisions WHERE name = $1 AND revision = $2",
            &[&rev.name, &latest],
        )
        .await
        .map_err(backend)?
        .get(0);
        if hash == rev.content_hash {
            tx.rollback().await.map_err(backend)?;
            return Ok(TemplatePut::Unchanged(latest as u32));
        }
    }
    let n = latest + 1;
    sql::execute(
        &tx,
        "INSERT INTO template_revisions (name, revision, body, content_hash, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&rev.name, &n, &rev.body, &rev.content_hash, &rev.created_by, &rev.created_at],
    )
    .await
    .map_err(backend)?;
    sql::execute(
        &tx,
        "UPDATE templates SET latest = $2 WHERE name = $1",
        &[&rev.name, &n],
    )
    .await
    .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(TemplatePut::Created(n as u32))
}

pub async fn set_disabled(
    c: &impl GenericClient,
    name: &str,
    d: Option<&TemplateDisabled>,
) -> Result<bool> {
    let n = sql::execute(
        c,
        "UPDATE templates SET disabled_by = $2, disabled_reason = $3, disabled_at = $4
         WHERE name = $1 AND latest > 0",
        &[
            &name,
            &d.map(|d| &d.by),
            &d.map(|d| &d.reason),
            &d.map(|d| d.at),
        ],
    )
    .await
    .map_err(backend)?;
    Ok(n > 0)
}

const SELECT: &str =
    "SELECT r.name, r.revision, r.body, r.content_hash, r.created_by, r.created_at,
    t.latest, t.disabled_by, t.disabled_reason, t.disabled_at
    FROM template_revisions r JOIN templates t ON t.name = r.name";

fn revision(r: &Row) -> TemplateRevision {
    TemplateRevision {
        name: r.get(0),
        revision: r.get::<_, i32>(1) as u32,
        body: r.get(2),
        content_hash: r.get(3),
        created_by: r.get(4),
        created_at: r.get(5),
    }
}

fn stored(r: &Row) -> StoredTemplate {
    StoredTemplate {
        revision: revision(r),
        latest: r.get::<_, i32>(6) as u32,
        disabled: r.get::<_, Option<String>>(7).map(|by| TemplateDisabled {
            by,
            reason: r.get::<_, Option<String>>(8).unwrap_or_default(),
            at: r.get::<_, Option<i64>>(9).unwrap_or_default(),
        }),
    }
}

pub async fn get(
    c: &impl GenericClient,
    name: &str,
    rev: Option<u32>,
) -> Result<Option<StoredTemplate>> {
    let rev = rev.map(|r| i32::try_from(r).unwrap_or(i32::MAX));
    let sql = format!("{SELECT} WHERE r.name = $1 AND r.revision = coalesce($2, t.latest)");
    Ok(sql::query_opt(c, &sql, &[&name, &rev])
        .await
        .map_err(backend)?
        .as_ref()
        .map(stored))
}

pub async fn all(c: &impl GenericClient) -> Result<Vec<StoredTemplate>> {
    let sql = format!("{SELECT} WHERE r.revision = t.latest ORDER BY r.name");
    Ok(sql::query(c, &sql, &[])
        .await
        .map_err(backend)?
        .iter()
        .map(stored)
        .collect())
}

pub async fn revisions(c: &impl GenericClient, name: &str) -> Result<Vec<TemplateRevision>> {
    Ok(sql::query(
        c,
        "SELECT name, revision, body, content_hash, created_by, created_at
         FROM template_revisions WHERE name = $1 ORDER BY revision",
        &[&name],
    )
    .await
    .map_err(backend)?
    .iter()
    .map(revision)
    .collect())
}
