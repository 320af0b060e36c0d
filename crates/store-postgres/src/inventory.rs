//! The SQL of the inventory kept in the store. A change is one transaction
//! that also bumps the version, which replicas poll.

use crate::read::backend;
use crate::sql;
use deadpool_postgres::GenericClient;
use deadpool_postgres::Transaction;
use interlock_core::Micros;
use interlock_store::{InventoryMachine, InventorySite, Result, StoredInventory};

async fn bump(tx: &Transaction<'_>, by: &str, at: Micros) -> Result<i64> {
    Ok(sql::query_one(
        tx,
        "INSERT INTO inventory_meta (id, version, updated_by, updated_at) VALUES (1, 1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET version = inventory_meta.version + 1,
         updated_by = excluded.updated_by, updated_at = excluded.updated_at RETURNING version",
        &[&by, &at],
    )
    .await
    .map_err(backend)?
    .get(0))
}

pub async fn replace(
    c: &mut deadpool_postgres::Client,
    sites: &[InventorySite],
    machines: &[InventoryMachine],
    by: &str,
    at: Micros,
) -> Result<i64> {
    let tx = c.transaction().await.map_err(backend)?;
    // Serializes replacements and status changes across replicas.
    tx.execute("LOCK TABLE inventory_meta IN EXCLUSIVE MODE", &[])
        .await
        .map_err(backend)?;
    tx.execute("DELETE FROM inventory_machines", &[])
        .await
        .map_err(backend)?;
    tx.execute("DELETE FROM inventory_sites", &[])
        .await
        .map_err(backend)?;
    for s in sites {
        sql::execute(
            &tx,
            "INSERT INTO inventory_sites (name, kind, status) VALUES ($1, $2, $3)",
            &[&s.name, &s.kind, &s.status],
        )
        .await
        .map_err(backend)?;
    }
    for m in machines {
        sql::execute(
            &tx,
            "INSERT INTO inventory_machines (site, name) VALUES ($1, $2)",
            &[&m.site, &m.name],
        )
        .await
        .map_err(backend)?;
    }
    let v = bump(&tx, by, at).await?;
    tx.commit().await.map_err(backend)?;
    Ok(v)
}

pub async fn set_status(
    c: &mut deadpool_postgres::Client,
    site: &str,
    status: &str,
    by: &str,
    at: Micros,
) -> Result<Option<i64>> {
    let tx = c.transaction().await.map_err(backend)?;
    tx.execute("LOCK TABLE inventory_meta IN EXCLUSIVE MODE", &[])
        .await
        .map_err(backend)?;
    let n = sql::execute(
        &tx,
        "UPDATE inventory_sites SET status = $2 WHERE name = $1",
        &[&site, &status],
    )
    .await
    .map_err(backend)?;
    if n == 0 {
        return Ok(None);
    }
    let v = bump(&tx, by, at).await?;
    tx.commit().await.map_err(backend)?;
    Ok(Some(v))
}

pub async fn version(c: &impl GenericClient) -> Result<Option<i64>> {
    Ok(
        sql::query_opt(c, "SELECT version FROM inventory_meta WHERE id = 1", &[])
            .await
            .map_err(backend)?
            .map(|r| r.get(0)),
    )
}

pub async fn get(c: &mut deadpool_postgres::Client) -> Result<Option<StoredInventory>> {
    // One snapshot for the three reads.
    let tx = c
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(backend)?;
    let Some(meta) = sql::query_opt(
        &tx,
        "SELECT version, updated_by, updated_at FROM inventory_meta WHERE id = 1",
        &[],
    )
    .await
    .map_err(backend)?
    else {
        return Ok(None);
    };
    let sites = sql::query(
        &tx,
        "SELECT name, kind, status FROM inventory_sites ORDER BY name",
        &[],
    )
    .await
    .map_err(backend)?
    .iter()
    .map(|r| InventorySite {
        name: r.get(0),
        kind: r.get(1),
        status: r.get(2),
    })
    .collect();
    let machines = sql::query(
        &tx,
        "SELECT site, name FROM inventory_machines ORDER BY site, name",
        &[],
    )
    .await
    .map_err(backend)?
    .iter()
    .map(|r| InventoryMachine {
        site: r.get(0),
        name: r.get(1),
    })
    .collect();
    tx.commit().await.map_err(backend)?;
    Ok(Some(StoredInventory {
        version: meta.get(0),
        sites,
        machines,
        updated_by: meta.get(1),
        updated_at: meta.get(2),
    }))
}
