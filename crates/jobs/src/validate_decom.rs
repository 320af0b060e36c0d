//! `validateDecom{site, type}`: the site exists, is of that type, and is in decom.

use async_trait::async_trait;
use interlock_core::{ArgFormat, ArgSpec, Idempotency, JobSchema, WorkReq};
use interlock_engine::{Job, JobCtx, JobError, Outputs};
use interlock_inventory::LiveInventory;
use std::sync::Arc;

pub struct ValidateDecom {
    schema: JobSchema,
    inventory: Arc<LiveInventory>,
}

impl ValidateDecom {
    pub fn new(inventory: Arc<LiveInventory>) -> Self {
        Self {
            schema: JobSchema {
                name: "validateDecom",
                description: "Fails unless the site exists, has the given type and is in status \"decom\". \
                              Outputs what it found.",
                args: vec![
                    ArgSpec::required("site", ArgFormat::Name, "site name, e.g. \"aab\""),
                    ArgSpec::required(
                        "type",
                        ArgFormat::Name,
                        "expected site type: \"satellite\" or \"cluster\"",
                    ),
                ],
                idempotency: Idempotency::Safe,
                reconcilable: false,
            },
            inventory,
        }
    }
}

#[async_trait]
impl Job for ValidateDecom {
    fn schema(&self) -> &JobSchema {
        &self.schema
    }

    /// A site that does not exist cannot pass later either; its status and
    /// type are checked when the job runs, against the inventory then.
    fn check(&self, args: &interlock_core::Args, _req: &WorkReq) -> Result<(), String> {
        match self.inventory.current().site(&args["site"]) {
            Some(_) => Ok(()),
            None => Err(format!("site {:?} is not in the inventory", args["site"])),
        }
    }

    async fn run(&self, _ctx: &JobCtx, args: &interlock_core::Args) -> Result<Outputs, JobError> {
        let (name, want) = (&args["site"], &args["type"]);
        let inv = self.inventory.current();
        let site = inv
            .site(name)
            .ok_or_else(|| JobError::new(format!("site {name:?} is not in the inventory")))?;
        let found = Outputs::from([
            ("site".to_string(), site.name.clone()),
            ("type".to_string(), site.kind.clone()),
            ("status".to_string(), site.status.clone()),
            (
                "machines".to_string(),
                inv.machines_at(name).len().to_string(),
            ),
        ]);
        if &site.kind != want {
            return Err(JobError::new(format!(
                "site {name:?} is a {}, not a {want}",
                site.kind
            )));
        }
        if site.status != "decom" {
            return Err(JobError::new(format!(
                "site {name:?} is in status {:?}, not \"decom\"",
                site.status
            )));
        }
        Ok(found)
    }
}
