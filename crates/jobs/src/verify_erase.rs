//! `verifyErase{machine, site, eraseRequest}`: asks the erase target
//! whether an erase request finished, for that machine.
//!
//! Meant to follow a diskErase in a later block, its `eraseRequest` taken
//! from that erase's output (a template input): a second opinion from the
//! target itself that the disks were erased, recorded in the workflow. It
//! only reads, so it is safe to repeat.

use super::disk_erase::machine_at_site;
use super::erase_target::{Erase, EraseTarget};
use async_trait::async_trait;
use interlock_core::{ArgFormat, ArgSpec, Idempotency, JobSchema, WorkReq};
use interlock_engine::{Job, JobCtx, JobError, Outputs};
use interlock_inventory::LiveInventory;
use std::sync::Arc;

pub struct VerifyErase {
    schema: JobSchema,
    inventory: Arc<LiveInventory>,
    target: Arc<EraseTarget>,
}

impl VerifyErase {
    pub fn new(inventory: Arc<LiveInventory>, target: Arc<EraseTarget>) -> Self {
        Self {
            schema: JobSchema {
                name: "verifyErase",
                description: "Asks the erase target whether an erase request finished for the \
                              machine; fails if it did not, or erased another machine. Read-only: \
                              safe to repeat.",
                args: vec![
                    ArgSpec::required("machine", ArgFormat::Name, "machine name, e.g. \"aab03\""),
                    ArgSpec::required(
                        "site",
                        ArgFormat::Name,
                        "the site the machine belongs to, e.g. \"aab\"",
                    ),
                    ArgSpec::required(
                        "eraseRequest",
                        ArgFormat::Name,
                        "the erase request id a diskErase reported (its eraseRequest output)",
                    ),
                ],
                idempotency: Idempotency::Safe,
                reconcilable: false,
            },
            inventory,
            target,
        }
    }
}

#[async_trait]
impl Job for VerifyErase {
    fn schema(&self) -> &JobSchema {
        &self.schema
    }

    fn check(&self, args: &interlock_core::Args, _req: &WorkReq) -> Result<(), String> {
        machine_at_site(&self.inventory, args)
    }

    async fn run(&self, _ctx: &JobCtx, args: &interlock_core::Args) -> Result<Outputs, JobError> {
        let (machine, request) = (&args["machine"], &args["eraseRequest"]);
        match self.target.lookup(request) {
            None => Err(JobError::new(format!(
                "the erase target knows no request {request:?}"
            ))),
            Some((_, erased)) if erased != *machine => Err(JobError::new(format!(
                "erase request {request:?} erased machine {erased:?}, not {machine:?}"
            ))),
            Some((Erase::Done { ended, .. }, _)) => Ok(Outputs::from([
                ("verified".to_string(), "true".to_string()),
                ("erasedAtMicros".to_string(), ended.to_string()),
            ])),
            Some((Erase::Running { .. }, _)) => Err(JobError::new(format!(
                "erase request {request:?} of {machine:?} has not finished"
            ))
            .retryable()),
            Some((Erase::Aborted, _)) => Err(JobError::new(format!(
                "erase request {request:?} of {machine:?} was aborted: the disks may not be erased"
            ))),
        }
    }
}
