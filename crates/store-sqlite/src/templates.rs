//! The SQL of templates: revisions appended, never changed.

use crate::read::backend;
use interlock_store::{Result, StoredTemplate, TemplateDisabled, TemplatePut, TemplateRevision};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// Appends the next revision unless the latest has the same content (the
/// single writer serializes puts).
pub fn put(tx: &Transaction<'_>, rev: &TemplateRevision) -> rusqlite::Result<TemplatePut> {
    let latest: Option<(u32, String)> = tx
        .prepare_cached(
            "SELECT t.latest, r.content_hash FROM templates t
             JOIN template_revisions r ON r.name = t.name AND r.revision = t.latest
             WHERE t.name = ?1",
        )?
        .query_row([&rev.name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((n, hash)) = &latest
        && *hash == rev.content_hash
    {
        return Ok(TemplatePut::Unchanged(*n));
    }
    let n = latest.map_or(1, |(n, _)| n + 1);
    tx.prepare_cached(
        "INSERT INTO template_revisions (name, revision, body, content_hash, created_by, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![rev.name, n, rev.body, rev.content_hash, rev.created_by, rev.created_at])?;
    tx.prepare_cached(
        "INSERT INTO templates (name, latest) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET latest = excluded.latest",
    )?
    .execute(params![rev.name, n])?;
    Ok(TemplatePut::Created(n))
}

pub fn set_disabled(
    tx: &Transaction<'_>,
    name: &str,
    d: Option<&TemplateDisabled>,
) -> rusqlite::Result<bool> {
    let n = tx
        .prepare_cached(
            "UPDATE templates SET disabled_by = ?2, disabled_reason = ?3, disabled_at = ?4
             WHERE name = ?1",
        )?
        .execute(params![
            name,
            d.map(|d| &d.by),
            d.map(|d| &d.reason),
            d.map(|d| d.at)
        ])?;
    Ok(n > 0)
}

const SELECT: &str =
    "SELECT r.name, r.revision, r.body, r.content_hash, r.created_by, r.created_at,
    t.latest, t.disabled_by, t.disabled_reason, t.disabled_at
    FROM template_revisions r JOIN templates t ON t.name = r.name";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredTemplate> {
    let by: Option<String> = r.get(7)?;
    Ok(StoredTemplate {
        revision: revision(r)?,
        latest: r.get(6)?,
        disabled: match by {
            Some(by) => Some(TemplateDisabled {
                by,
                reason: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
                at: r.get::<_, Option<i64>>(9)?.unwrap_or_default(),
            }),
            None => None,
        },
    })
}

fn revision(r: &rusqlite::Row<'_>) -> rusqlite::Result<TemplateRevision> {
    Ok(TemplateRevision {
        name: r.get(0)?,
        revision: r.get(1)?,
        body: r.get(2)?,
        content_hash: r.get(3)?,
        created_by: r.get(4)?,
        created_at: r.get(5)?,
    })
}

pub fn get(c: &Connection, name: &str, rev: Option<u32>) -> Result<Option<StoredTemplate>> {
    let sql = format!("{SELECT} WHERE r.name = ?1 AND r.revision = coalesce(?2, t.latest)");
    c.prepare_cached(&sql)
        .map_err(backend)?
        .query_row(params![name, rev], row)
        .optional()
        .map_err(backend)
}

pub fn all(c: &Connection) -> Result<Vec<StoredTemplate>> {
    let sql = format!("{SELECT} WHERE r.revision = t.latest ORDER BY r.name");
    c.prepare_cached(&sql)
        .map_err(backend)?
        .query_map([], row)
        .map_err(backend)?
        .collect::<rusqlite::Result<_>>()
        .map_err(backend)
}

pub fn revisions(c: &Connection, name: &str) -> Result<Vec<TemplateRevision>> {
    c.prepare_cached(
        "SELECT name, revision, body, content_hash, created_by, created_at
         FROM template_revisions WHERE name = ?1 ORDER BY revision",
    )
    .map_err(backend)?
    .query_map([name], revision)
    .map_err(backend)?
    .collect::<rusqlite::Result<_>>()
    .map_err(backend)
}
