//! The inventory in force, and the Inventory service.
//!
//! Until an inventory is imported into the store, the files under `data/`
//! (loaded at start) are the inventory. Once the store holds one, it is the
//! inventory on every replica: loaded at start, and re-read whenever its
//! version moves (checked every reload interval), so a site's status change
//! applies without a restart. Jobs and templates read the same
//! [`LiveInventory`], swapped whole.

use crate::audit::{Auditor, Caller};
use crate::auth::{Guard, identity};
use crate::convert::ts;
use interlock_auth::Action;
use interlock_inventory::{Inventory, LiveInventory, Machine, STATUSES, Site};
use interlock_proto::v1::{self, inventory_server};
use interlock_store::{InventoryMachine, InventorySite, Store, StoredInventory};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Keeps the live inventory in step with the store's.
pub struct InventorySync {
    store: Arc<dyn Store>,
    live: Arc<LiveInventory>,
    /// The store version in force (`None`: the files are).
    seen: Mutex<Option<i64>>,
    updated: Mutex<(String, interlock_core::Micros)>,
    refreshing: tokio::sync::Mutex<()>,
}

fn from_stored(s: &StoredInventory) -> Result<Inventory, String> {
    let sites = s
        .sites
        .iter()
        .map(|x| Site {
            name: x.name.clone(),
            kind: x.kind.clone(),
            status: x.status.clone(),
        })
        .collect();
    let machines = s
        .machines
        .iter()
        .map(|m| Machine {
            name: m.name.clone(),
            site: m.site.clone(),
        })
        .collect();
    Inventory::from_records(sites, machines).map_err(|e| e.to_string())
}

impl InventorySync {
    pub fn new(store: Arc<dyn Store>, live: Arc<LiveInventory>) -> Arc<Self> {
        Arc::new(Self {
            store,
            live,
            seen: Mutex::new(None),
            updated: Mutex::new((String::new(), 0)),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// Re-reads the store's inventory if its version moved (one refresh at
    /// a time, and never back to an older version).
    pub async fn refresh(&self) -> Result<(), String> {
        let _one = self.refreshing.lock().await;
        let version = self
            .store
            .inventory_version()
            .await
            .map_err(|e| e.to_string())?;
        if version.is_none() || version == *self.seen.lock().expect("inventory lock") {
            return Ok(());
        }
        let Some(stored) = self.store.inventory().await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        if Some(stored.version) <= *self.seen.lock().expect("inventory lock") {
            return Ok(());
        }
        let inv = from_stored(&stored)?;
        self.live.replace(inv);
        *self.updated.lock().expect("inventory lock") = (stored.updated_by, stored.updated_at);
        let before = self
            .seen
            .lock()
            .expect("inventory lock")
            .replace(stored.version);
        tracing::info!(
            version = stored.version,
            sites = stored.sites.len(),
            machines = stored.machines.len(),
            first = before.is_none(),
            "inventory from the store in force"
        );
        Ok(())
    }

    /// Refreshes every `interval` until `stop`.
    pub fn spawn(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = self.refresh().await {
                    tracing::warn!(error = %e, "cannot re-read the inventory; the one in force stays");
                }
            }
        });
    }

    fn resp(&self, site: &str) -> v1::InventoryResp {
        let inv = self.live.current();
        let version = *self.seen.lock().expect("inventory lock");
        let (by, at) = self.updated.lock().expect("inventory lock").clone();
        let sites = inv
            .sites()
            .into_iter()
            .filter(|s| site.is_empty() || s.name == site)
            .map(|s| v1::InventorySite {
                name: s.name.clone(),
                r#type: s.kind.clone(),
                status: s.status.clone(),
                machines: inv.machines_at(&s.name).len() as u32,
            })
            .collect();
        let machines = match site {
            "" => Vec::new(),
            s => inv
                .machines_at(s)
                .into_iter()
                .map(|m| v1::InventoryMachine {
                    site: m.site.clone(),
                    name: m.name.clone(),
                })
                .collect(),
        };
        v1::InventoryResp {
            source: if version.is_some() { "store" } else { "files" }.into(),
            version: version.unwrap_or(0),
            sites,
            machines,
            updated_by: by,
            updated_at: version.and(ts(Some(at))),
        }
    }
}

pub struct InventoryApi {
    pub sync: Arc<InventorySync>,
    pub audit: Auditor,
    pub guard: Guard,
}

impl InventoryApi {
    /// Changing the inventory changes what may be erased: admins only.
    fn admin(&self, who: &interlock_auth::Identity) -> Result<(), Status> {
        self.guard.check(who, Action::Admin, "*")
    }
}

#[tonic::async_trait]
impl inventory_server::Inventory for InventoryApi {
    async fn list_inventory(
        &self,
        r: Request<v1::ListInventoryReq>,
    ) -> Result<Response<v1::InventoryResp>, Status> {
        self.guard.check_any(&identity(&r), Action::Read)?;
        let site = r.into_inner().site;
        let resp = self.sync.resp(&site);
        if !site.is_empty() && resp.sites.is_empty() {
            return Err(Status::not_found(format!(
                "no site {site:?} in the inventory"
            )));
        }
        Ok(Response::new(resp))
    }

    async fn import_inventory(
        &self,
        r: Request<v1::ImportInventoryReq>,
    ) -> Result<Response<v1::InventoryResp>, Status> {
        let who = Caller::of(&r);
        let q = r.into_inner();
        let result = async {
            self.admin(&who.who)?;
            let inv = Inventory::parse_import(&q.sites_json, &q.machines_json)
                .map_err(|e| Status::invalid_argument(format!("inventory refused: {e}")))?;
            let sites = inv
                .sites()
                .into_iter()
                .map(|s| InventorySite {
                    name: s.name.clone(),
                    kind: s.kind.clone(),
                    status: s.status.clone(),
                })
                .collect();
            let machines = inv
                .machines()
                .into_iter()
                .map(|m| InventoryMachine {
                    site: m.site.clone(),
                    name: m.name.clone(),
                })
                .collect();
            let now = interlock_core::now_micros();
            self.sync
                .store
                .replace_inventory(sites, machines, &who.identity, now)
                .await
                .map_err(crate::error::store_unavailable)?;
            self.sync.refresh().await.map_err(Status::unavailable)?;
            Ok(self.sync.resp(""))
        }
        .await;
        let detail = match &result {
            Ok(r) => format!("version {}: {} sites", r.version, r.sites.len()),
            Err(_) => String::new(),
        };
        self.audit
            .record(who.outcome("inventory.import", "inventory", &detail, &result))
            .await;
        result.map(Response::new)
    }

    async fn set_site_status(
        &self,
        r: Request<v1::SetSiteStatusReq>,
    ) -> Result<Response<v1::InventoryResp>, Status> {
        let who = Caller::of(&r);
        let q = r.into_inner();
        let result = async {
            self.admin(&who.who)?;
            if !STATUSES.contains(&q.status.as_str()) {
                return Err(Status::invalid_argument(format!(
                    "status {:?}: one of {}",
                    q.status,
                    STATUSES.join(", ")
                )));
            }
            if q.reason.trim().is_empty() {
                return Err(Status::invalid_argument(
                    "say why the site's status changes (reason): it decides what may be erased",
                ));
            }
            let now = interlock_core::now_micros();
            match self
                .sync
                .store
                .set_site_status(&q.site, &q.status, &who.identity, now)
                .await
                .map_err(crate::error::store_unavailable)?
            {
                Some(_) => {}
                None if self.sync.seen.lock().expect("inventory lock").is_none() => {
                    return Err(Status::failed_precondition(
                        "the inventory comes from the data files: import it into the store first \
                         (interlock inventory import) to change it while running",
                    ));
                }
                None => {
                    return Err(Status::not_found(format!(
                        "no site {:?} in the inventory",
                        q.site
                    )));
                }
            }
            self.sync.refresh().await.map_err(Status::unavailable)?;
            Ok(self.sync.resp(&q.site))
        }
        .await;
        let detail = format!("status {}: {}", q.status, q.reason);
        self.audit
            .record(who.outcome("inventory.set_status", &q.site, &detail, &result))
            .await;
        result.map(Response::new)
    }
}
