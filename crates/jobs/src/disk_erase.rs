//! `diskErase{machine, site}`: erases a machine's disks (simulated).
//!
//! The machine must exist and belong to the site. The erase runs on the
//! simulated [`EraseTarget`]: the job first checkpoints a fresh erase
//! request id, then starts the erase on the target, then waits for it. After
//! a crash it re-attaches to the same request id, so a machine is never
//! erased twice; `reconcile` reports a finished erase as done.

use super::erase_target::{Erase, EraseTarget, Event};
use async_trait::async_trait;
use interlock_core::{ArgFormat, ArgSpec, Idempotency, JobSchema, WorkReq, now_micros as now};
use interlock_engine::job::{Reconciled, sleep_or_cancel};
use interlock_engine::{Job, JobCtx, JobError, Outputs};
use interlock_inventory::LiveInventory;
use std::sync::Arc;
use std::time::Duration;

/// Why `machine` cannot be erased as part of `site`, naming where it is.
pub fn machine_not_at_site(
    inv: &interlock_inventory::Inventory,
    site: &str,
    machine: &str,
) -> String {
    match inv.sites_with_machine(machine).as_slice() {
        [] => format!("machine {machine:?} is not in the inventory"),
        sites => format!(
            "machine {machine:?} is not at site {site:?} (it is at {})",
            sites
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The check of a job on a machine of a site (`machine`, `site`): the
/// machine is at that site in the inventory now. Arguments not there yet
/// (inputs, resolved later) are left to the schema check.
pub fn machine_at_site(
    inventory: &LiveInventory,
    args: &interlock_core::Args,
) -> Result<(), String> {
    let (Some(machine), Some(site)) = (args.get("machine"), args.get("site")) else {
        return Ok(());
    };
    let inv = inventory.current();
    match inv.machine(site, machine) {
        Some(_) => Ok(()),
        None => Err(machine_not_at_site(&inv, site, machine)),
    }
}

pub struct DiskErase {
    schema: JobSchema,
    inventory: Arc<LiveInventory>,
    target: Arc<EraseTarget>,
    duration: Duration,
}

impl DiskErase {
    pub fn new(
        inventory: Arc<LiveInventory>,
        target: Arc<EraseTarget>,
        duration: Duration,
    ) -> Self {
        Self {
            schema: JobSchema {
                name: "diskErase",
                description: "Erases the disks of a machine (simulated: the erase target takes the \
                              configured erase duration). Fails unless the machine exists and belongs \
                              to the site. Not safe to repeat; after a crash it re-attaches to the \
                              erase it started.",
                args: vec![
                    ArgSpec::required("machine", ArgFormat::Name, "machine name, e.g. \"aab03\""),
                    ArgSpec::required(
                        "site",
                        ArgFormat::Name,
                        "the site the machine belongs to, e.g. \"aab\"",
                    ),
                ],
                idempotency: Idempotency::Unsafe,
                reconcilable: true,
            },
            inventory,
            target,
            duration,
        }
    }

    fn event(
        &self,
        ctx: &JobCtx,
        request: &str,
        machine: &str,
        event: &str,
    ) -> Result<(), JobError> {
        // A process paused past its lease may already have been replaced
        // by another that runs this job; it must not touch the target.
        if !ctx.holds_lease() {
            return Err(JobError::cancelled());
        }
        self.target
            .record(Event {
                request: request.into(),
                machine: machine.into(),
                event: event.into(),
                at: now(),
                workflow: ctx.workflow_id.clone(),
                block: ctx.block,
                job: ctx.job,
            })
            .map_err(|e| JobError::new(format!("erase target unavailable: {e}")).retryable())
    }

    fn outputs(machine: &str, request: &str, ended: i64) -> Outputs {
        Outputs::from([
            ("machine".to_string(), machine.to_string()),
            ("eraseRequest".to_string(), request.to_string()),
            ("erasedAtMicros".to_string(), ended.to_string()),
        ])
    }
}

#[async_trait]
impl Job for DiskErase {
    fn schema(&self) -> &JobSchema {
        &self.schema
    }

    fn check(&self, args: &interlock_core::Args, _req: &WorkReq) -> Result<(), String> {
        machine_at_site(&self.inventory, args)
    }

    async fn run(&self, ctx: &JobCtx, args: &interlock_core::Args) -> Result<Outputs, JobError> {
        let (machine, site) = (&args["machine"], &args["site"]);
        let inv = self.inventory.current();
        if inv.machine(site, machine).is_none() {
            return Err(JobError::new(machine_not_at_site(&inv, site, machine)));
        }
        // Re-attach to our earlier request unless it was aborted.
        let reusable = ctx
            .checkpoint
            .clone()
            .filter(|r| self.target.get(r) != Some(Erase::Aborted));
        let request = match reusable {
            Some(r) => r,
            None => {
                let r = uuid::Uuid::now_v7().to_string();
                // Durable before the target hears of it: after a crash we
                // either find this id or know nothing was started.
                ctx.save_checkpoint(&r).await?;
                r
            }
        };
        let started = match self.target.get(&request) {
            Some(Erase::Done { ended, .. }) => return Ok(Self::outputs(machine, &request, ended)),
            Some(Erase::Running { started }) => {
                ctx.log(format!(
                    "re-attached to erase request {request} of {machine}"
                ));
                started
            }
            Some(Erase::Aborted) | None => {
                if ctx.cancel.is_cancelled() {
                    return Err(JobError::cancelled());
                }
                self.event(ctx, &request, machine, "start")?;
                ctx.log(format!(
                    "erasing {machine} at {site} (erase request {request})"
                ));
                now()
            }
        };

        let elapsed = Duration::from_micros((now() - started).max(0) as u64);
        if let Err(e) = sleep_or_cancel(self.duration.saturating_sub(elapsed), &ctx.cancel).await {
            // On shutdown the erase goes on at the target and is re-attached
            // after the restart; any other cancellation aborts it.
            if !ctx.detaching.is_cancelled() {
                self.event(ctx, &request, machine, "abort")?;
            }
            return Err(e);
        }
        self.event(ctx, &request, machine, "done")?;
        ctx.log(format!("erased {machine}"));
        Ok(Self::outputs(machine, &request, now()))
    }

    /// The erase this run started is aborted on the target, as a live stop
    /// aborts it, unless it already ended there.
    async fn halt(&self, ctx: &JobCtx, args: &interlock_core::Args) {
        let Some(request) = ctx.checkpoint.as_deref() else {
            return;
        };
        if let Some(Erase::Running { .. }) = self.target.get(request)
            && let Err(e) = self.event(ctx, request, &args["machine"], "abort")
        {
            tracing::warn!(workflow = %ctx.workflow_id, request, error = %e.message,
                "could not abort an erase left running under an emergency stop");
        }
    }

    async fn reconcile(&self, ctx: &JobCtx, args: &interlock_core::Args) -> Reconciled {
        match ctx
            .checkpoint
            .as_deref()
            .and_then(|r| self.target.get(r).map(|e| (r, e)))
        {
            Some((r, Erase::Done { ended, .. })) => {
                Reconciled::Done(Self::outputs(&args["machine"], r, ended))
            }
            // Never started, aborted, or still erasing on the target: running
            // the job again starts afresh or re-attaches.
            _ => Reconciled::NotDone,
        }
    }
}
