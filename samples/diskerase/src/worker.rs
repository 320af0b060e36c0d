//! `diskerase worker`: serves diskErase and verifyErase out of the server,
//! against an erase target this process owns.
//!
//! The jobs are the server's own (the same code, the same checkpoint and
//! re-attach logic), run through the worker SDK: checkpoints go to the
//! server under the task's lease, and a task whose session ended counts as
//! detaching (an erase under way continues at the target and is
//! re-attached by whoever runs the job next, as after a server restart).
//! The server runs them here once its jobs.json declares them, e.g.
//! `{"jobs": [{"name": "diskErase"}, {"name": "verifyErase"}]}`.

use async_trait::async_trait;
use interlock_client::Options;
use interlock_client::worker::{Reconciled as Answer, TaskCtx, TaskError, Worker};
use interlock_engine::job::{JobSink, Reconciled};
use interlock_engine::{Job, JobCtx, JobError};
use interlock_inventory::{Inventory, LiveInventory};
use interlock_jobs::{DiskErase, EraseTarget, VerifyErase};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The flags of `diskerase worker`.
#[derive(clap::Args)]
pub struct Args {
    /// The simulated erase target's log, owned by this worker.
    #[arg(long, default_value = "erase-target.log")]
    target: PathBuf,
    /// Inventory directory (sites.json, machines.json) the jobs check
    /// machines against before erasing.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// How long a simulated erase takes, in seconds.
    #[arg(long, default_value = "2")]
    erase_seconds: f64,
    /// Tasks run at once.
    #[arg(long, default_value = "8")]
    capacity: u32,
    /// The name operators see (`interlock workers`) [default: host/pid].
    #[arg(long)]
    name: Option<String>,
}

/// Checkpoints of a job run here go to the server under the task's lease.
struct TaskSink(TaskCtx);

#[async_trait]
impl JobSink for TaskSink {
    async fn checkpoint(&self, state: String) -> Result<(), JobError> {
        self.0
            .checkpoint(state)
            .await
            .map_err(|e| JobError::new(format!("cannot save checkpoint: {e}")))
    }

    fn holds_lease(&self) -> bool {
        !self.0.detached.is_cancelled()
    }

    fn log(&self, stream: interlock_core::LogStream, text: &str) {
        self.0.log_to(stream.as_str(), text);
    }
}

fn job_ctx(t: &TaskCtx) -> JobCtx {
    let mut c = JobCtx::detached(
        &t.task.workflow_id,
        t.task.block as usize,
        t.task.job as usize,
    );
    c.workflow_name.clone_from(&t.task.workflow_name);
    c.attempt = t.task.attempt;
    c.cancel = t.cancel.clone();
    c.detaching = t.detached.clone();
    c.checkpoint.clone_from(&t.task.checkpoint);
    c.with_sink(Arc::new(TaskSink(t.clone())))
}

/// Serves `job` (and answers its reconcile requests, if it can).
fn serve(worker: Worker, job: Arc<dyn Job>) -> Worker {
    let name = job.schema().name;
    let runner = job.clone();
    let worker = worker.handle(name, move |t| {
        let job = runner.clone();
        async move {
            job.run(&job_ctx(&t), &t.task.args.clone().into())
                .await
                .map_err(|e| TaskError {
                    message: e.message,
                    retryable: e.retryable,
                    fatal: e.fatal,
                })
        }
    });
    if !job.schema().reconcilable {
        return worker;
    }
    worker.reconcile(name, move |t| {
        let job = job.clone();
        async move {
            match job
                .reconcile(&job_ctx(&t), &t.task.args.clone().into())
                .await
            {
                Reconciled::Done(out) => Answer::Done(out),
                Reconciled::NotDone => Answer::NotDone,
                Reconciled::Unknown(why) => Answer::Unknown(why),
            }
        }
    })
}

pub async fn run(addr: &str, opts: Options, a: Args) -> anyhow::Result<()> {
    use anyhow::Context;
    let inventory = LiveInventory::new(
        Inventory::load(&a.data)
            .with_context(|| format!("loading the inventory from {}", a.data.display()))?,
    );
    let target = Arc::new(
        EraseTarget::open(&a.target)
            .with_context(|| format!("opening the erase target {}", a.target.display()))?,
    );
    let duration = Duration::try_from_secs_f64(a.erase_seconds)
        .context("--erase-seconds must be a non-negative number")?;
    let name = a.name.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}/{}", host.trim(), std::process::id())
    });
    let worker = Worker::new(addr, opts, &name).capacity(a.capacity);
    let worker = serve(
        worker,
        Arc::new(DiskErase::new(inventory.clone(), target.clone(), duration)),
    );
    let worker = serve(worker, Arc::new(VerifyErase::new(inventory, target)));
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        s.cancel();
    });
    eprintln!(
        "diskerase worker {name}: serving diskErase and verifyErase for {addr} (erase target {})",
        a.target.display()
    );
    worker.run(stop).await?;
    Ok(())
}
