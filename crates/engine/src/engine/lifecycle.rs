//! Operator actions on workflows: Cancel, Pause, Resume, Clone and List.
//!
//! Invariants:
//! - Every status change another call could race (Exec, Cancel, Resume) is
//!   a compare-and-set in the store.
//! - Pause and the executor's final write are serialized
//!   (`Active::finishing`), so a finished workflow is never recorded Paused
//!   afterwards.
//! - Cancel of a running workflow returns once its end is recorded (or after
//!   a bounded wait), so no job starts after the reply.

use super::active::{Active, Cause};
use super::recovery::cut_in_flight;
use super::{Engine, Inner};
use crate::error::{EngineError, Result};
use interlock_core::{AuditEntry, ListFilter, Micros, Status, Summary, WorkflowRecord};
use interlock_store::{CasOutcome, Change, RequestKind};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long Cancel waits for running jobs to observe cancellation.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// Options of [`Engine::clone_workflow`].
#[derive(Debug, Clone, Default)]
pub struct CloneOptions {
    /// Run again only the jobs that did not complete. Completed (and
    /// skipped) jobs are carried over as Skipped, saying where they
    /// completed, so the clone keeps the original's shape: the policies
    /// that require pre-checks still hold, and an erase or a bucket take
    /// that happened is never repeated.
    pub only_unfinished: bool,
    /// Labels added to (or replacing) the original's.
    pub labels: BTreeMap<String, String>,
    /// Replaces the trace id when set.
    pub trace_id: String,
    /// Idempotency key for the new submission.
    pub request_id: String,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub rows: Vec<Summary>,
    /// Pass back to continue; empty on the last page.
    pub next_token: String,
}

/// Page sizes of every listing: 0 means 100; at most 1000.
pub(crate) fn clamp_page(n: usize) -> usize {
    match n {
        0 => 100,
        n => n.min(1000),
    }
}

fn token_of(s: &Summary) -> String {
    format!("{}/{}", s.created, s.id)
}

fn parse_page_token(t: &str) -> Result<Option<(Micros, String)>> {
    if t.is_empty() {
        return Ok(None);
    }
    let bad =
        || EngineError::BadArgument(format!("page_token {t:?} is not one this server issued"));
    let (created, id) = t.split_once('/').ok_or_else(bad)?;
    Ok(Some((created.parse().map_err(|_| bad())?, id.to_string())))
}

impl Engine {
    /// Cancels a workflow that has not finished. Running jobs are cancelled;
    /// no job starts after this returns. Returns the final status.
    pub async fn cancel(&self, id: &str, reason: &str) -> Result<Status> {
        let reason = if reason.is_empty() {
            "no reason given"
        } else {
            reason
        };
        let id = self.resolve_id(id).await?;
        // A racing Exec may start it between our checks; a few rounds settle it.
        for _ in 0..3 {
            if let Some(a) = self.active(&id) {
                a.stop(Cause::Cancelled(reason.to_string()));
                a.wait_done(CANCEL_WAIT).await;
                if !a.has_lease() {
                    // Its start failed: nothing of this run is recorded.
                    continue;
                }
                return Ok(self.status(&id).await?.status);
            }
            let rec = self.status(&id).await?;
            if rec.status.is_terminal() {
                return Err(EngineError::WrongState(format!(
                    "workflow {id} already ended: it is {}{}",
                    rec.status,
                    if rec.reason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", rec.reason)
                    }
                )));
            }
            let why = format!("cancelled: {reason}");
            let cut = cut_in_flight(&rec, Status::Cancelled, &why, self.now());
            match self
                .inner
                .store
                .transition(
                    &id,
                    rec.status,
                    Status::Cancelled,
                    &why,
                    Some(self.now()),
                    cut,
                )
                .await?
            {
                CasOutcome::Done(()) => return Ok(Status::Cancelled),
                CasOutcome::NotFound => return Err(EngineError::NotFound(id)),
                CasOutcome::WrongStatus(_) => continue,
                // Another instance runs it: only it can stop its jobs.
                CasOutcome::OwnedBy(owner) => {
                    return self
                        .ask_owner(
                            &id,
                            &owner,
                            RequestKind::Cancel,
                            reason,
                            Status::is_terminal,
                        )
                        .await;
                }
            }
        }
        Err(EngineError::WrongState(format!(
            "workflow {id} changed state while being cancelled; try again"
        )))
    }

    /// Pauses a running workflow: jobs in flight finish, no new job starts.
    pub async fn pause(&self, id: &str, reason: &str) -> Result<()> {
        let id = self.resolve_id(id).await?;
        let Some(a) = self.started(&id).await? else {
            let rec = self.status(&id).await?;
            return match rec.status {
                Status::Paused => Ok(()),
                // Run by another instance (else it would be active here).
                Status::Running => {
                    let owner = rec.owner.clone().unwrap_or_default();
                    let s = self
                        .ask_owner(&id, &owner, RequestKind::Pause, reason, |s| {
                            s == Status::Paused || s.is_terminal()
                        })
                        .await?;
                    if s == Status::Paused {
                        Ok(())
                    } else {
                        Err(EngineError::WrongState(format!(
                            "workflow {id} ended ({s}) before it could be paused"
                        )))
                    }
                }
                s => Err(EngineError::WrongState(format!(
                    "workflow {id} is {s}; only a running workflow can be paused"
                ))),
            };
        };
        let why = if reason.is_empty() {
            "paused".to_string()
        } else {
            format!("paused: {reason}")
        };
        self.inner.pause_active(&id, &a, why).await
    }

    /// Resumes a paused workflow after checking the policies in force and
    /// the emergency stop again.
    pub async fn resume(&self, id: &str) -> Result<()> {
        let rec = self.status(id).await?;
        let id = rec.id.clone();
        if rec.status != Status::Paused {
            return Err(EngineError::WrongState(format!(
                "workflow {id} is {}, not Paused",
                rec.status
            )));
        }
        let inner = &self.inner;
        let Some(a) = self.started(&id).await? else {
            // Paused by a server that is gone, or held for an operator.
            if let Some((bi, ji)) = rec.blocks.iter().enumerate().find_map(|(bi, b)| {
                b.jobs
                    .iter()
                    .position(|j| j.status == Status::Interrupted)
                    .map(|ji| (bi, ji))
            }) {
                return Err(EngineError::WrongState(format!(
                    "block {bi} job {ji} of workflow {id} is Interrupted; decide with ResolveJob first"
                )));
            }
            return match self.start_run(rec, Status::Paused, None).await {
                // Paused by an instance that still runs it: ask it.
                Err(EngineError::Elsewhere { owner, .. }) => {
                    let s = self
                        .ask_owner(&id, &owner, RequestKind::Resume, "", |s| {
                            s == Status::Running || s.is_terminal()
                        })
                        .await?;
                    if s == Status::Running {
                        Ok(())
                    } else {
                        Err(EngineError::WrongState(format!("workflow {id} is {s}")))
                    }
                }
                other => other,
            };
        };
        let _finishing = a.finishing.lock().await;
        inner
            .admission
            .admit(&rec.req, self.now())
            .map_err(super::refused)?;
        if let Some(reason) = inner.estop.borrow().stopped(&rec.req.name) {
            return Err(EngineError::EmergencyStopped {
                name: rec.req.name.clone(),
                reason,
            });
        }
        let change = Change::WorkflowStatus {
            id,
            status: Status::Running,
            reason: String::new(),
        };
        inner.commit(a.lease(), vec![change]).await?;
        a.paused.set(false);
        Ok(())
    }

    /// Submits an existing workflow's request again as a new workflow,
    /// through every check a Submit goes through. `audit` is committed with
    /// the new workflow, as for [`Engine::submit`].
    pub async fn clone_workflow(
        &self,
        id: &str,
        opts: CloneOptions,
        audit: Option<AuditEntry>,
    ) -> Result<String> {
        let reserved = super::templates::reserved_labels(opts.labels.keys());
        if !reserved.is_empty() {
            return Err(EngineError::Invalid(reserved));
        }
        let src = self.status(id).await?;
        let mut req = src.req.clone();
        req.labels.extend(opts.labels);
        req.labels
            .insert("interlock.clonedFrom".into(), src.id.clone());
        if !opts.trace_id.is_empty() {
            req.trace_id = opts.trace_id;
        }
        req.request_id = opts.request_id;
        // Trusted: the original's labels (its provenance) are carried over.
        if !opts.only_unfinished {
            return self.submit_record(req, audit, true, None).await;
        }
        let done = |s: Status| matches!(s, Status::Completed | Status::Skipped);
        if src
            .blocks
            .iter()
            .flat_map(|b| &b.jobs)
            .all(|j| done(j.status))
        {
            return Err(EngineError::WrongState(format!(
                "every job of workflow {} completed; there is nothing left to clone",
                src.id
            )));
        }
        let now = self.now();
        let carry = move |rec: &mut WorkflowRecord| carry_over(&src, rec, now);
        self.submit_record(req, audit, true, Some(Box::new(carry)))
            .await
    }

    /// Workflows matching `filter`, newest first, a page at a time. The page
    /// size is clamped to 1..=1000 (0 means 100); `page_token` comes from a
    /// previous page.
    pub async fn list(&self, mut filter: ListFilter, page_token: &str) -> Result<Page> {
        filter.after = parse_page_token(page_token)?;
        let limit = clamp_page(filter.limit);
        // One more than asked tells whether another page exists.
        filter.limit = limit + 1;
        let mut rows = self.inner.store.list(filter).await?;
        let next_token = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(token_of).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Page { rows, next_token })
    }
}

/// Marks the jobs that completed in `src` as carried over into `clone`.
fn carry_over(src: &WorkflowRecord, clone: &mut WorkflowRecord, now: Micros) {
    for (b, sb) in clone.blocks.iter_mut().zip(&src.blocks) {
        for (j, sj) in b.jobs.iter_mut().zip(&sb.jobs) {
            if matches!(sj.status, Status::Completed | Status::Skipped) {
                j.status = Status::Skipped;
                j.error = format!("carried over: {} in workflow {}", sj.status, src.id);
                j.outputs = sj.outputs.clone();
                j.started = Some(now);
                j.ended = Some(now);
            }
        }
    }
}

impl Inner {
    /// Pauses a run of this process, recording `why`: job starts being
    /// recorded finish first, later ones wait for Resume.
    pub(super) async fn pause_active(&self, id: &str, a: &Active, why: String) -> Result<()> {
        let finishing = a.finishing.lock().await;
        if *finishing || a.cause().is_some() {
            return Err(EngineError::WrongState(format!(
                "workflow {id} is already ending"
            )));
        }
        if a.paused.get() {
            return Ok(());
        }
        // Starts being recorded finish first; later ones see the flag.
        let _gate = a.start_gate.write().await;
        a.paused.set(true);
        let change = Change::WorkflowStatus {
            id: id.to_string(),
            status: Status::Paused,
            reason: why,
        };
        if let Err(e) = self.commit(a.lease(), vec![change]).await {
            a.paused.set(false);
            return Err(e.into());
        }
        drop(finishing);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::admission::AllowAll;
    use crate::engine::{Engine, EngineOptions};
    use crate::estop::EsState;
    use crate::job::{Job, JobCtx, JobError, Outputs, sleep_or_cancel};
    use crate::registry::Registry;
    use interlock_core::{Block, Idempotency, JobSchema, Status, WorkReq};
    use interlock_store::Store as _;
    use interlock_store::memory::MemStore;
    use std::sync::Arc;
    use std::time::Duration;

    /// Runs until cancelled.
    struct Long(JobSchema);

    #[async_trait::async_trait]
    impl Job for Long {
        fn schema(&self) -> &JobSchema {
            &self.0
        }
        async fn run(&self, ctx: &JobCtx, _: &interlock_core::Args) -> Result<Outputs, JobError> {
            sleep_or_cancel(Duration::from_secs(3600), &ctx.cancel).await?;
            Ok(Outputs::default())
        }
    }

    fn engine(store: &MemStore) -> Engine {
        let mut jobs = Registry::new();
        jobs.register(Arc::new(Long(JobSchema {
            name: "long",
            description: "runs until cancelled",
            args: Vec::new(),
            idempotency: Idempotency::Safe,
            reconcilable: false,
        })));
        let es = EsState::parse(r#"[{"Name": "wf", "Status": "go"}]"#).expect("es.json");
        let (_tx, es) = tokio::sync::watch::channel(Arc::new(es));
        Engine::new(
            Arc::new(store.clone()),
            Arc::new(jobs),
            Arc::new(AllowAll),
            es,
            EngineOptions::default(),
        )
    }

    fn request() -> WorkReq {
        WorkReq {
            name: "wf".into(),
            blocks: vec![Block {
                rate_limit: 1,
                jobs: vec![interlock_core::Job {
                    name: "long".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// A workflow submitted and its Exec under way, held between the
    /// run's registration and the store's answer until `held` is dropped.
    async fn in_the_start_gap() -> (
        MemStore,
        Engine,
        String,
        tokio::sync::OwnedRwLockWriteGuard<()>,
        tokio::task::JoinHandle<crate::error::Result<()>>,
    ) {
        let store = MemStore::new(interlock_core::clock::system());
        let e = engine(&store);
        e.start(interlock_core::now_micros()).await.expect("start");
        let id = e.submit(request(), None).await.expect("submit");
        let held = store.hold_acquires().await;
        let exec = tokio::spawn({
            let (e, id) = (e.clone(), id.clone());
            async move { e.exec(&id, None).await }
        });
        while e.active(&id).is_none() {
            tokio::task::yield_now().await;
        }
        (store, e, id, held, exec)
    }

    /// An Exec registers the run before the store makes this process its
    /// owner. A Pause arriving in between used to find the run without a
    /// lease (a panic), after it had set the pause flag that nothing
    /// recorded or cleared: the run then waited at its first job forever.
    #[tokio::test]
    async fn pause_while_the_run_is_being_started_waits_for_the_start() {
        let (_store, e, id, held, exec) = in_the_start_gap().await;
        let pause = tokio::spawn({
            let (e, id) = (e.clone(), id.clone());
            async move { e.pause(&id, "in the gap").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!pause.is_finished(), "Pause waits for the start");
        drop(held);
        exec.await.expect("exec task").expect("exec");
        pause.await.expect("pause task").expect("pause");
        assert_eq!(e.status(&id).await.expect("status").status, Status::Paused);
        e.resume(&id).await.expect("resume");
        assert_eq!(e.status(&id).await.expect("status").status, Status::Running);
        assert_eq!(
            e.cancel(&id, "done").await.expect("cancel"),
            Status::Cancelled
        );
    }

    /// A Cancel that finds a run whose start then fails (the workflow was
    /// cancelled meanwhile) answers at once from the record, instead of
    /// waiting out its limit for a run that never began.
    #[tokio::test]
    async fn cancel_of_a_run_whose_start_fails_does_not_wait_for_it() {
        let (store, e, id, held, exec) = in_the_start_gap().await;
        // Cancelled behind the starting run's back, as another replica
        // would (the store's own compare-and-set).
        let cas = store
            .transition(
                &id,
                Status::NotStarted,
                Status::Cancelled,
                "elsewhere",
                Some(interlock_core::now_micros()),
                Vec::new(),
            )
            .await
            .expect("transition");
        assert!(matches!(cas, interlock_store::CasOutcome::Done(())));
        let cancel = tokio::spawn({
            let (e, id) = (e.clone(), id.clone());
            async move { e.cancel(&id, "here too").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        assert!(exec.await.expect("exec task").is_err(), "the start fails");
        let answer = tokio::time::timeout(Duration::from_secs(5), cancel)
            .await
            .expect("Cancel answers without waiting out its limit")
            .expect("cancel task");
        assert!(
            matches!(&answer, Err(crate::error::EngineError::WrongState(m)) if m.contains("already ended")),
            "{answer:?}"
        );
    }
}
