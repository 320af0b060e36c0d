//! `diskErase{machine, site}`: erases a machine's disks (simulated).
//!
//! The erase itself is simulated by waiting `erase_duration`; everything
//! around it is real: the machine must exist and belong to the site, and the
//! job stops when cancelled. Not safe to re-run blindly.

use crate::job::sleep_or_cancel;
use crate::{Job, JobCtx, JobError, Outputs};
use async_trait::async_trait;
use interlock_core::{ArgFormat, ArgSpec, Idempotency, JobSchema, now_micros};
use interlock_inventory::Inventory;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub struct DiskErase {
    schema: JobSchema,
    inventory: Arc<Inventory>,
    duration: Duration,
}

impl DiskErase {
    pub fn new(inventory: Arc<Inventory>, duration: Duration) -> Self {
        Self {
            schema: JobSchema {
                name: "diskErase",
                description: "Erases the disks of a machine (simulated: waits for the configured erase \
                              duration). Fails unless the machine exists and belongs to the site.",
                args: vec![
                    ArgSpec::required("machine", ArgFormat::Name, "machine name, e.g. \"aab03\""),
                    ArgSpec::required(
                        "site",
                        ArgFormat::Name,
                        "the site the machine belongs to, e.g. \"aab\"",
                    ),
                ],
                idempotency: Idempotency::Unsafe,
                reconcilable: false,
            },
            inventory,
            duration,
        }
    }
}

#[async_trait]
impl Job for DiskErase {
    fn schema(&self) -> &JobSchema {
        &self.schema
    }

    async fn run(
        &self,
        ctx: &JobCtx,
        args: &BTreeMap<String, String>,
    ) -> Result<Outputs, JobError> {
        let (machine, site) = (&args["machine"], &args["site"]);
        let m = self
            .inventory
            .machine(machine)
            .ok_or_else(|| JobError::new(format!("machine {machine:?} is not in the inventory")))?;
        if &m.site != site {
            return Err(JobError::new(format!(
                "machine {machine:?} belongs to site {:?}, not {site:?}",
                m.site
            )));
        }
        sleep_or_cancel(self.duration, &ctx.cancel).await?;
        Ok(Outputs::from([
            ("machine".to_string(), machine.clone()),
            ("erasedAtMicros".to_string(), now_micros().to_string()),
        ]))
    }
}
