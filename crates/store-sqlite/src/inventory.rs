//! The SQL of the inventory kept in the store.

use crate::read::backend;
use interlock_core::Micros;
use interlock_store::{InventoryMachine, InventorySite, Result, StoredInventory};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

fn bump(tx: &Transaction<'_>, by: &str, at: Micros) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO inventory_meta (id, version, updated_by, updated_at) VALUES (1, 1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET version = version + 1, updated_by = excluded.updated_by,
         updated_at = excluded.updated_at RETURNING version",
    )?
    .query_row(params![by, at], |r| r.get(0))
}

pub fn replace(
    tx: &Transaction<'_>,
    sites: &[InventorySite],
    machines: &[InventoryMachine],
    by: &str,
    at: Micros,
) -> rusqlite::Result<i64> {
    tx.execute("DELETE FROM inventory_machines", [])?;
    tx.execute("DELETE FROM inventory_sites", [])?;
    let mut site =
        tx.prepare_cached("INSERT INTO inventory_sites (name, kind, status) VALUES (?1, ?2, ?3)")?;
    for s in sites {
        site.execute(params![s.name, s.kind, s.status])?;
    }
    let mut machine =
        tx.prepare_cached("INSERT INTO inventory_machines (site, name) VALUES (?1, ?2)")?;
    for m in machines {
        machine.execute(params![m.site, m.name])?;
    }
    bump(tx, by, at)
}

pub fn set_status(
    tx: &Transaction<'_>,
    site: &str,
    status: &str,
    by: &str,
    at: Micros,
) -> rusqlite::Result<Option<i64>> {
    let n = tx
        .prepare_cached("UPDATE inventory_sites SET status = ?2 WHERE name = ?1")?
        .execute(params![site, status])?;
    if n == 0 {
        return Ok(None);
    }
    bump(tx, by, at).map(Some)
}

pub fn version(c: &Connection) -> Result<Option<i64>> {
    c.prepare_cached("SELECT version FROM inventory_meta WHERE id = 1")
        .map_err(backend)?
        .query_row([], |r| r.get(0))
        .optional()
        .map_err(backend)
}

pub fn get(c: &Connection) -> Result<Option<StoredInventory>> {
    // One read transaction: the version, sites and machines of one write.
    let tx = c.unchecked_transaction().map_err(backend)?;
    let c = &*tx;
    let meta: Option<(i64, String, Micros)> = c
        .prepare_cached("SELECT version, updated_by, updated_at FROM inventory_meta WHERE id = 1")
        .map_err(backend)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .map_err(backend)?;
    let Some((version, updated_by, updated_at)) = meta else {
        return Ok(None);
    };
    let sites = c
        .prepare_cached("SELECT name, kind, status FROM inventory_sites ORDER BY name")
        .map_err(backend)?
        .query_map([], |r| {
            Ok(InventorySite {
                name: r.get(0)?,
                kind: r.get(1)?,
                status: r.get(2)?,
            })
        })
        .map_err(backend)?
        .collect::<rusqlite::Result<_>>()
        .map_err(backend)?;
    let machines = c
        .prepare_cached("SELECT site, name FROM inventory_machines ORDER BY site, name")
        .map_err(backend)?
        .query_map([], |r| {
            Ok(InventoryMachine {
                site: r.get(0)?,
                name: r.get(1)?,
            })
        })
        .map_err(backend)?
        .collect::<rusqlite::Result<_>>()
        .map_err(backend)?;
    Ok(Some(StoredInventory {
        version,
        sites,
        machines,
        updated_by,
        updated_at,
    }))
}
