//! `interlock inventory`: the sites and machines in force, importing the
//! data files into the store, and changing a site's status while running.

use crate::Out;
use crate::fail::Fail;
use crate::output::{outln, print_json, rfc3339};
use crate::target::Target;
use interlock_proto::v1;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum InventoryCmd {
    /// Sites with their type, status and machine count (or one site and
    /// its machines).
    List {
        #[arg(long)]
        site: Option<String>,
    },
    /// Replace the store's inventory with DIR's sites.json and machines.json;
    /// from then on the store's copy is in force on every replica.
    Import {
        #[arg(default_value = "data")]
        dir: PathBuf,
    },
    /// Change a site's status (decom, inService, removed) while running.
    SetStatus {
        site: String,
        status: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
}

pub async fn run(cmd: InventoryCmd, t: &Target, json: bool) -> Out {
    let mut c = v1::inventory_client::InventoryClient::new(
        interlock_client::transport(&t.addr, &t.opts).await?,
    );
    let r = match cmd {
        InventoryCmd::List { site } => {
            c.list_inventory(v1::ListInventoryReq {
                site: site.unwrap_or_default(),
            })
            .await?
        }
        InventoryCmd::Import { dir } => {
            let read = |f: &str| {
                let path = dir.join(f);
                std::fs::read_to_string(&path)
                    .map_err(|e| Fail::Msg(2, format!("cannot read {}: {e}", path.display())))
            };
            c.import_inventory(v1::ImportInventoryReq {
                sites_json: read("sites.json")?,
                machines_json: read("machines.json")?,
            })
            .await?
        }
        InventoryCmd::SetStatus {
            site,
            status,
            reason,
        } => {
            c.set_site_status(v1::SetSiteStatusReq {
                site,
                status,
                reason,
            })
            .await?
        }
    }
    .into_inner();
    if json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    match r.source.as_str() {
        "store" => outln!(
            "inventory from the store, version {} (changed {} by {})",
            r.version,
            rfc3339(&r.updated_at),
            r.updated_by
        )?,
        _ => outln!("inventory from the data files (not imported into the store)")?,
    }
    outln!("{:<10} {:<10} {:<10} MACHINES", "SITE", "TYPE", "STATUS")?;
    for s in &r.sites {
        outln!(
            "{:<10} {:<10} {:<10} {}",
            s.name,
            s.r#type,
            s.status,
            s.machines
        )?;
    }
    if !r.machines.is_empty() {
        let names: Vec<&str> = r.machines.iter().map(|m| m.name.as_str()).collect();
        outln!("machines: {}", names.join(", "))?;
    }
    Ok(ExitCode::SUCCESS)
}
