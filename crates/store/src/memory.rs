//! [`MemStore`]: the whole contract in memory, behind one mutex.
//!
//! For tests and embedders that need no durability. It is also the
//! reference the other backends are compared with: it passes the same
//! [`conformance`](crate::conformance) suite. Lease times come from the
//! clock it is given, so tests can expire instances without sleeping.
//!
//! Why one file over 600 lines: it is one `Store` implementation, a few
//! lines per trait method under one lock; split, the lock's reasoning would
//! be spread over several files.

use crate::backend::{NewWorkflow, micros};
use crate::{
    BoardReport, BoardTask, BucketState, CasOutcome, Change, ControlRequest, FeedItem, IdMatch,
    InstanceInfo, InventoryMachine, InventorySite, Lease, Notice, OwnerAct, Pruned, RequestKind,
    Result, ScheduleRow, SharedStop, SlotOutcome, SlotRequest, SlotRow, Store, StoreError,
    StoredInventory, StoredTemplate, SubmitOutcome, Take, TakeOutcome, TakeRequest, TaskKey,
    TemplateDisabled, TemplatePut, TemplateRevision, workflow_event,
};
use async_trait::async_trait;
use interlock_core::{
    Approval, AuditEntry, AuditQuery, Clock, ListFilter, LogLine, LogQuery, Micros, Status,
    Summary, WorkflowRecord,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

struct Row {
    rec: WorkflowRecord,
    owner: Option<String>,
    epoch: i64,
}

#[derive(Default)]
struct State {
    workflows: BTreeMap<String, Row>,
    /// request_id → (workflow id, content hash, created).
    keys: HashMap<String, (String, String, Micros)>,
    instances: HashMap<String, InstanceInfo>,
    buckets: HashMap<(String, String), BucketState>,
    takes: Vec<Take>,
    audit: Vec<AuditEntry>,
    requests: Vec<ControlRequest>,
    next_request: i64,
    stops: BTreeMap<String, SharedStop>,
    slots: Vec<SlotRow>,
    approvals: Vec<Approval>,
    notices: Vec<Notice>,
    next_notice: i64,
    next_audit: i64,
    pruned: HashMap<String, Pruned>,
    /// name → (revisions, oldest first; disabled).
    templates: BTreeMap<String, (Vec<TemplateRevision>, Option<TemplateDisabled>)>,
    schedules: BTreeMap<String, ScheduleRow>,
    inventory: Option<StoredInventory>,
    /// workflow id → its log lines in `seq` order.
    logs: HashMap<String, Vec<LogLine>>,
    next_log: u64,
    board: crate::board::MemBoard,
}

/// An in-memory store. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct MemStore {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<FeedItem>,
    /// Held by a test to keep `acquire` waiting (see [`MemStore::hold_acquires`]).
    acquire_gate: Arc<tokio::sync::RwLock<()>>,
}

impl MemStore {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            clock,
            events: broadcast::Sender::new(4096),
            acquire_gate: Arc::default(),
        }
    }

    /// Makes every `acquire` wait until the returned guard is dropped: a
    /// test's way to hold a run between its registration and its start.
    pub async fn hold_acquires(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.acquire_gate.clone().write_owned().await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("memstore lock")
    }

    fn publish(&self, items: impl IntoIterator<Item = FeedItem>) {
        for i in items {
            let _ = self.events.send(i);
        }
    }
}

fn task_item(t: &BoardTask) -> FeedItem {
    FeedItem::Task {
        key: t.key.clone(),
        job_type: t.job_type.clone(),
        open: open(t),
    }
}

/// Waiting for a claim.
fn open(t: &BoardTask) -> bool {
    t.claimed_by.is_none() && t.result.is_none() && t.cancel.is_none()
}

/// Rows stamped with the store's clock when they were read.
fn with_now(rows: impl IntoIterator<Item = BoardTask>, now: Micros) -> Vec<BoardTask> {
    rows.into_iter().map(|t| BoardTask { now, ..t }).collect()
}

impl State {
    fn live(&self, instance: &str, now: Micros) -> bool {
        self.instances
            .get(instance)
            .is_some_and(|i| i.expires >= now)
    }

    /// The live owner of `row` other than `me`, if any.
    fn other_live_owner(&self, row: &Row, me: Option<&str>, now: Micros) -> Option<String> {
        row.owner
            .as_deref()
            .filter(|o| Some(*o) != me && self.live(o, now))
            .map(str::to_string)
    }

    fn check_lease(&self, lease: &Lease) -> Result<()> {
        match self.workflows.get(&lease.workflow_id) {
            Some(r) if r.owner.as_deref() == Some(&lease.owner) && r.epoch == lease.epoch => Ok(()),
            _ => Err(StoreError::fenced(lease)),
        }
    }

    fn apply(&mut self, c: &Change) -> Result<()> {
        let id = c.workflow_id();
        let row = self
            .workflows
            .get_mut(id)
            .ok_or_else(|| StoreError::Backend(format!("no workflow {id}")))?;
        let rec = &mut row.rec;
        let out_of_range = || StoreError::Backend(format!("{id}: index out of range"));
        match c {
            Change::Workflow {
                status,
                reason,
                had_errors,
                es_halt,
                ended,
                ..
            } => {
                rec.status = *status;
                rec.reason.clone_from(reason);
                rec.had_errors = *had_errors;
                rec.es_halt = *es_halt;
                rec.ended = *ended;
                if status.is_terminal() {
                    row.owner = None;
                }
            }
            Change::WorkflowErrors { .. } => rec.had_errors = true,
            Change::WorkflowStatus { status, reason, .. } => {
                rec.status = *status;
                rec.reason.clone_from(reason);
            }
            Change::Block { block, rec: b, .. } => {
                let t = rec.blocks.get_mut(*block).ok_or_else(out_of_range)?;
                t.status = b.status;
                t.has_error = b.has_error;
                t.failures = b.failures;
                t.started = b.started;
                t.ended = b.ended;
            }
            Change::Job {
                block, job, rec: j, ..
            } => {
                let t = rec
                    .blocks
                    .get_mut(*block)
                    .and_then(|b| b.jobs.get_mut(*job))
                    .ok_or_else(out_of_range)?;
                let checkpoint = t.checkpoint.take();
                *t = j.clone();
                t.checkpoint = checkpoint;
            }
            Change::Checkpoint {
                block, job, state, ..
            } => {
                let t = rec
                    .blocks
                    .get_mut(*block)
                    .and_then(|b| b.jobs.get_mut(*job))
                    .ok_or_else(out_of_range)?;
                t.checkpoint = Some(state.clone());
            }
            // Applied by `after_write` once the whole write succeeded.
            Change::ReleaseSlots { .. } | Change::Log { .. } => {}
        }
        Ok(())
    }

    /// What `changes` do outside the workflow records: drops the slot rows
    /// they give up (a job's, or all of a workflow that ends) and appends
    /// their log lines.
    fn after_write(&mut self, changes: &[Change]) -> Vec<FeedItem> {
        let mut items = Vec::new();
        for c in changes {
            match c {
                Change::Log {
                    id,
                    block,
                    job,
                    attempt,
                    lines,
                    keep,
                } => {
                    let mut added = Vec::with_capacity(lines.len());
                    for l in lines {
                        self.next_log += 1;
                        added.push(LogLine {
                            seq: self.next_log,
                            ..l.clone()
                        });
                    }
                    let last = added.iter().map(|l| l.n).max().unwrap_or(0);
                    let all = self.logs.entry(id.clone()).or_default();
                    all.extend(added);
                    let floor = last.saturating_sub(u64::from(*keep));
                    all.retain(|l| {
                        !(l.block == *block
                            && l.job == *job
                            && l.attempt == *attempt
                            && l.n <= floor)
                    });
                }
                Change::ReleaseSlots { id, block, job } => self
                    .slots
                    .retain(|r| !(&r.workflow_id == id && r.block == *block && r.job == *job)),
                Change::Workflow { id, status, .. } if status.is_terminal() => {
                    self.slots.retain(|r| &r.workflow_id != id);
                    items.extend(self.board.workflow_ended(id));
                }
                _ => {}
            }
        }
        items
    }
}

fn summary(r: &WorkflowRecord) -> Summary {
    Summary {
        id: r.id.clone(),
        name: r.req.name.clone(),
        desc: r.req.desc.clone(),
        status: r.status,
        reason: r.reason.clone(),
        had_errors: r.had_errors,
        created: r.created,
        started: r.started,
        ended: r.ended,
        labels: r.req.labels.clone(),
        trace_id: r.req.trace_id.clone(),
    }
}

#[async_trait]
impl Store for MemStore {
    async fn submit_rows(
        &self,
        new: NewWorkflow,
        content_hash: &str,
        audit: Option<AuditEntry>,
    ) -> Result<SubmitOutcome> {
        // The record the rows describe, as a database backend reads it back.
        let req = crate::backend::request_of(&new.id, &new.request)?;
        let mut rec = WorkflowRecord::submitted(new.id, req, new.policy_version, new.created);
        rec.status = new.status;
        rec.submitted_by = new.submitted_by;
        let (id, key) = (rec.id.clone(), rec.req.request_id.clone());
        let mut st = self.lock();
        if !key.is_empty()
            && let Some((id, hash, _)) = st.keys.get(&key).cloned()
        {
            if let Some(mut a) = audit {
                a.target.clone_from(&id);
                a.detail =
                    format!("request_id {key:?} already used: answered with the existing workflow");
                a.id = st.audit.len() as i64 + 1;
                st.audit.push(a);
            }
            return Ok(SubmitOutcome::Existing {
                id,
                content_hash: hash,
            });
        }
        if st.workflows.contains_key(&id) {
            return Err(StoreError::Backend(format!("duplicate id {id}")));
        }
        if !key.is_empty() {
            let at = rec.created;
            st.keys
                .insert(key, (id.clone(), content_hash.to_string(), at));
        }
        st.workflows.insert(
            id.clone(),
            Row {
                rec,
                owner: None,
                epoch: 0,
            },
        );
        for c in &new.carried {
            st.apply(c)?;
        }
        if let Some(mut a) = audit {
            a.target = id;
            a.id = st.audit.len() as i64 + 1;
            st.audit.push(a);
        }
        Ok(SubmitOutcome::Inserted)
    }

    async fn get(&self, id: &str) -> Result<Option<WorkflowRecord>> {
        Ok(self.lock().workflows.get(id).map(|r| WorkflowRecord {
            owner: r.owner.clone(),
            ..r.rec.clone()
        }))
    }

    async fn resolve_id(&self, prefix: &str) -> Result<IdMatch> {
        let st = self.lock();
        let found: Vec<String> = st
            .workflows
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(5)
            .map(|(k, _)| k.clone())
            .collect();
        Ok(match found.len() {
            0 => IdMatch::None,
            1 => IdMatch::One(found.into_iter().next().expect("one")),
            _ => IdMatch::Many(found),
        })
    }

    async fn acquire(
        &self,
        id: &str,
        from: Status,
        owner: &str,
        at: Micros,
        audit: Option<AuditEntry>,
    ) -> Result<CasOutcome<Lease>> {
        drop(self.acquire_gate.read().await);
        let now = self.clock.now();
        let mut st = self.lock();
        let Some(row) = st.workflows.get(id) else {
            return Ok(CasOutcome::NotFound);
        };
        if row.rec.status != from {
            return Ok(CasOutcome::WrongStatus(row.rec.status));
        }
        if let Some(o) = st.other_live_owner(row, Some(owner), now) {
            return Ok(CasOutcome::OwnedBy(o));
        }
        let row = st.workflows.get_mut(id).expect("present");
        row.epoch += 1;
        row.owner = Some(owner.to_string());
        row.rec.status = Status::Running;
        if from == Status::NotStarted {
            row.rec.started = Some(at);
            row.rec.executed_by = audit
                .as_ref()
                .map(|a| a.identity.clone())
                .unwrap_or_default();
        } else {
            row.rec.reason.clear();
        }
        let lease = Lease {
            workflow_id: id.to_string(),
            owner: owner.to_string(),
            epoch: row.epoch,
        };
        if let Some(mut a) = audit {
            a.target = id.to_string();
            a.id = st.audit.len() as i64 + 1;
            st.audit.push(a);
        }
        drop(st);
        self.publish([FeedItem::Event(workflow_event(
            id,
            now,
            Status::Running,
            "",
        ))]);
        Ok(CasOutcome::Done(lease))
    }

    async fn transition(
        &self,
        id: &str,
        from: Status,
        to: Status,
        reason: &str,
        ended: Option<Micros>,
        changes: Vec<Change>,
    ) -> Result<CasOutcome> {
        let now = self.clock.now();
        let mut st = self.lock();
        let Some(row) = st.workflows.get(id) else {
            return Ok(CasOutcome::NotFound);
        };
        if row.rec.status != from {
            return Ok(CasOutcome::WrongStatus(row.rec.status));
        }
        if let Some(o) = st.other_live_owner(row, None, now) {
            return Ok(CasOutcome::OwnedBy(o));
        }
        let before = st
            .workflows
            .get(id)
            .map(|r| (r.rec.clone(), r.owner.clone()))
            .expect("present");
        for c in &changes {
            if let Err(e) = st.apply(c) {
                let row = st.workflows.get_mut(id).expect("present");
                (row.rec, row.owner) = before;
                return Err(e);
            }
        }
        let row = st.workflows.get_mut(id).expect("present");
        row.rec.status = to;
        row.rec.reason = reason.to_string();
        if ended.is_some() {
            row.rec.ended = ended;
        }
        let mut ended = Vec::new();
        if to.is_terminal() {
            row.owner = None;
            st.slots.retain(|r| r.workflow_id != id);
            ended = st.board.workflow_ended(id);
        }
        let board = st.after_write(&changes);
        drop(st);
        let mut items: Vec<FeedItem> = changes.iter().filter_map(|c| c.feed_item(now)).collect();
        items.extend(board.into_iter().chain(ended));
        items.push(FeedItem::Event(workflow_event(id, now, to, reason)));
        self.publish(items);
        Ok(CasOutcome::Done(()))
    }

    async fn write(&self, lease: Option<&Lease>, changes: Vec<Change>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        crate::backend::under_its_lease(lease, &changes)?;
        let now = self.clock.now();
        let mut st = self.lock();
        if let Some(l) = lease {
            st.check_lease(l)?;
        }
        // All or nothing: apply to copies of the touched records first.
        let mut touched: BTreeMap<String, (WorkflowRecord, Option<String>)> = BTreeMap::new();
        for c in &changes {
            let id = c.workflow_id();
            if !touched.contains_key(id) {
                let saved = st
                    .workflows
                    .get(id)
                    .map(|r| (r.rec.clone(), r.owner.clone()))
                    .ok_or_else(|| StoreError::Backend(format!("no workflow {id}")))?;
                touched.insert(id.to_string(), saved);
            }
        }
        for c in &changes {
            if let Err(e) = st.apply(c) {
                for (id, saved) in touched {
                    let row = st.workflows.get_mut(&id).expect("present");
                    (row.rec, row.owner) = saved;
                }
                return Err(e);
            }
        }
        let board = st.after_write(&changes);
        drop(st);
        self.publish(changes.iter().filter_map(|c| c.feed_item(now)).chain(board));
        Ok(())
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        let mut st = self.lock();
        st.check_lease(lease)?;
        st.workflows
            .get_mut(&lease.workflow_id)
            .expect("checked")
            .owner = None;
        Ok(())
    }

    async fn claim_orphans(
        &self,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<(WorkflowRecord, Lease)>> {
        let now = self.clock.now();
        let mut st = self.lock();
        let orphans: Vec<String> = st
            .workflows
            .values()
            .filter(|r| r.rec.status == Status::Running)
            .filter(|r| !r.owner.as_deref().is_some_and(|o| st.live(o, now)))
            .take(limit)
            .map(|r| r.rec.id.clone())
            .collect();
        Ok(orphans
            .into_iter()
            .map(|id| {
                let row = st.workflows.get_mut(&id).expect("present");
                row.epoch += 1;
                row.owner = Some(owner.to_string());
                let lease = Lease {
                    workflow_id: id,
                    owner: owner.to_string(),
                    epoch: row.epoch,
                };
                let rec = WorkflowRecord {
                    owner: row.owner.clone(),
                    ..row.rec.clone()
                };
                (rec, lease)
            })
            .collect())
    }

    async fn list(&self, f: ListFilter) -> Result<Vec<Summary>> {
        let st = self.lock();
        let mut rows: Vec<&WorkflowRecord> = st
            .workflows
            .values()
            .map(|r| &r.rec)
            .filter(|r| f.name.as_ref().is_none_or(|n| &r.req.name == n))
            .filter(|r| f.statuses.is_empty() || f.statuses.contains(&r.status))
            .filter(|r| f.created_from.is_none_or(|t| r.created >= t))
            .filter(|r| f.created_to.is_none_or(|t| r.created < t))
            .filter(|r| f.labels.iter().all(|(k, v)| r.req.labels.get(k) == Some(v)))
            .filter(|r| {
                f.after
                    .as_ref()
                    .is_none_or(|(c, id)| (r.created, &r.id) < (*c, id))
            })
            .collect();
        rows.sort_by(|a, b| (b.created, &b.id).cmp(&(a.created, &a.id)));
        Ok(rows.into_iter().take(f.limit).map(summary).collect())
    }

    async fn expire_request_ids(&self, before: Micros) -> Result<usize> {
        let mut st = self.lock();
        let n = st.keys.len();
        st.keys.retain(|_, (_, _, created)| *created >= before);
        Ok(n - st.keys.len())
    }

    async fn prune_workflows(
        &self,
        before: Micros,
        now: Micros,
        kept_days: u32,
        limit: usize,
    ) -> Result<usize> {
        let mut st = self.lock();
        let mut victims: Vec<(Micros, String)> = st
            .workflows
            .values()
            .filter(|r| r.rec.status.is_terminal())
            .filter_map(|r| {
                r.rec
                    .ended
                    .filter(|e| *e < before)
                    .map(|e| (e, r.rec.id.clone()))
            })
            .collect();
        victims.sort();
        victims.truncate(limit);
        for (ended, id) in &victims {
            st.workflows.remove(id);
            st.requests.retain(|r| r.workflow_id != *id);
            st.slots.retain(|s| s.workflow_id != *id);
            st.approvals.retain(|a| a.workflow_id != *id);
            st.logs.remove(id);
            st.board.drop_workflow(id);
            st.pruned.insert(
                id.clone(),
                Pruned {
                    id: id.clone(),
                    ended: *ended,
                    pruned_at: now,
                    kept_days,
                },
            );
        }
        Ok(victims.len())
    }

    async fn prune_audit(&self, before: Micros, limit: usize) -> Result<usize> {
        let mut st = self.lock();
        // Oldest first, as the durable backends do: only the first `limit`
        // entries are looked at.
        let old = st
            .audit
            .iter()
            .take(limit)
            .filter(|e| e.at < before)
            .count();
        let mut seen = 0;
        st.audit.retain(|e| {
            seen += 1;
            !(seen <= limit && e.at < before)
        });
        let mut tombs: Vec<(Micros, String)> = st
            .pruned
            .values()
            .filter(|p| p.ended < before)
            .map(|p| (p.ended, p.id.clone()))
            .collect();
        tombs.sort();
        tombs.truncate(limit);
        for (_, id) in &tombs {
            st.pruned.remove(id);
        }
        Ok(old + tombs.len())
    }

    async fn pruned(&self, id: &str) -> Result<Option<Pruned>> {
        Ok(self.lock().pruned.get(id).cloned())
    }

    async fn register_instance(&self, info: &InstanceInfo, ttl: Duration) -> Result<()> {
        let now = self.clock.now();
        let mut info = info.clone();
        info.heartbeat = now;
        info.expires = now + micros(ttl);
        self.lock().instances.insert(info.id.clone(), info);
        Ok(())
    }

    async fn heartbeat(&self, id: &str, ttl: Duration) -> Result<()> {
        let now = self.clock.now();
        let mut st = self.lock();
        match st.instances.get_mut(id) {
            Some(i) if i.expires >= now => {
                i.heartbeat = now;
                i.expires = now + micros(ttl);
                Ok(())
            }
            _ => Err(StoreError::LeaseLost(id.to_string())),
        }
    }

    async fn retire_instance(&self, id: &str) -> Result<()> {
        let now = self.clock.now();
        if let Some(i) = self.lock().instances.get_mut(id) {
            i.expires = i.expires.min(now - 1);
        }
        Ok(())
    }

    async fn instances(&self) -> Result<Vec<InstanceInfo>> {
        let now = self.clock.now();
        let st = self.lock();
        let mut out: Vec<InstanceInfo> = st
            .instances
            .values()
            .filter(|i| i.expires >= now)
            .cloned()
            .map(|mut i| {
                i.owned = st
                    .workflows
                    .values()
                    .filter(|r| r.rec.status == Status::Running && r.owner.as_ref() == Some(&i.id))
                    .count();
                i
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn take(&self, req: TakeRequest) -> Result<TakeOutcome> {
        let mut st = self.lock();
        let key = (req.bucket.clone(), req.key.clone());
        let tat = match st.buckets.get(&key) {
            Some(b) if b.rule == req.rule => b.tat,
            _ => {
                let since = req.at - req.rule.window();
                req.rule.replay(
                    st.takes
                        .iter()
                        .filter(|t| t.bucket == req.bucket && t.key == req.key && t.at >= since)
                        .map(|t| t.at),
                )
            }
        };
        match req.rule.take(tat, req.at) {
            Err(retry_after) => Ok(TakeOutcome::Empty { retry_after }),
            Ok(tat) => {
                st.buckets.insert(
                    key,
                    BucketState {
                        bucket: req.bucket.clone(),
                        key: req.key.clone(),
                        tat,
                        rule: req.rule,
                    },
                );
                st.takes.push(Take {
                    bucket: req.bucket,
                    key: req.key,
                    at: req.at,
                    workflow_id: req.workflow_id,
                    block: req.block,
                    job: req.job,
                });
                Ok(TakeOutcome::Taken)
            }
        }
    }

    async fn bucket_states(&self, bucket: &str) -> Result<Vec<BucketState>> {
        let st = self.lock();
        let mut v: Vec<BucketState> = st
            .buckets
            .values()
            .filter(|b| b.bucket == bucket)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(v)
    }

    async fn take_of(&self, workflow_id: &str, block: usize, job: usize) -> Result<Option<Take>> {
        Ok(self
            .lock()
            .takes
            .iter()
            .find(|t| t.workflow_id == workflow_id && t.block == block && t.job == job)
            .cloned())
    }

    async fn logs(&self, q: &LogQuery) -> Result<Vec<LogLine>> {
        let st = self.lock();
        Ok(st
            .logs
            .get(&q.workflow_id)
            .into_iter()
            .flatten()
            .filter(|l| l.seq > q.after)
            .filter(|l| q.job.is_none_or(|(b, j)| l.block == b && l.job == j))
            .take(q.limit)
            .cloned()
            .collect())
    }

    async fn add_approval(&self, a: &Approval) -> Result<()> {
        let mut st = self.lock();
        if !st.workflows.contains_key(&a.workflow_id) {
            return Err(StoreError::Backend(format!(
                "no workflow {}",
                a.workflow_id
            )));
        }
        st.approvals
            .retain(|x| !(x.workflow_id == a.workflow_id && x.identity == a.identity));
        st.approvals.push(a.clone());
        Ok(())
    }

    async fn approvals(&self, workflow_id: &str) -> Result<Vec<Approval>> {
        let mut v: Vec<Approval> = self
            .lock()
            .approvals
            .iter()
            .filter(|a| a.workflow_id == workflow_id)
            .cloned()
            .collect();
        v.sort_by_key(|a| a.at);
        Ok(v)
    }

    async fn enqueue_notices(&self, notices: Vec<Notice>, cap: usize) -> Result<usize> {
        let mut st = self.lock();
        for mut n in notices {
            if st.notices.iter().any(|q| q.key == n.key) {
                continue;
            }
            st.next_notice += 1;
            n.id = st.next_notice;
            st.notices.push(n);
        }
        let over = st.notices.len().saturating_sub(cap);
        st.notices.drain(..over);
        Ok(over)
    }

    async fn due_notices(&self, now: Micros, limit: usize) -> Result<Vec<Notice>> {
        Ok(self
            .lock()
            .notices
            .iter()
            .filter(|n| n.next_at <= now)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn notice_done(&self, id: i64) -> Result<()> {
        self.lock().notices.retain(|n| n.id != id);
        Ok(())
    }

    async fn notice_failed(
        &self,
        id: i64,
        attempts: u32,
        next_at: Micros,
        error: &str,
    ) -> Result<()> {
        if let Some(n) = self.lock().notices.iter_mut().find(|n| n.id == id) {
            n.attempts = attempts;
            n.next_at = next_at;
            n.last_error = error.to_string();
        }
        Ok(())
    }

    async fn acquire_slots(&self, lease: &Lease, req: SlotRequest) -> Result<SlotOutcome> {
        let mut st = self.lock();
        st.check_lease(lease)?;
        let touches = |r: &SlotRow| {
            req.slots
                .iter()
                .any(|s| s.limit == r.limit && s.part == r.part)
        };
        let rows: Vec<SlotRow> = st.slots.iter().filter(|r| touches(r)).cloned().collect();
        let (out, write) = crate::slots::decide(&req, &rows);
        st.slots.retain(|r| {
            !(r.workflow_id == req.workflow_id && r.block == req.block && r.job == req.job)
        });
        st.slots.extend(write);
        Ok(out)
    }

    async fn slots(&self, workflow_id: Option<&str>) -> Result<Vec<SlotRow>> {
        let mut v: Vec<SlotRow> = self
            .lock()
            .slots
            .iter()
            .filter(|r| workflow_id.is_none_or(|w| r.workflow_id == w))
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            (&a.limit, &a.part, &a.workflow_id, a.block, a.job).cmp(&(
                &b.limit,
                &b.part,
                &b.workflow_id,
                b.block,
                b.job,
            ))
        });
        Ok(v)
    }

    async fn audit(&self, mut entry: AuditEntry) -> Result<()> {
        let mut st = self.lock();
        st.next_audit += 1;
        entry.id = st.next_audit;
        st.audit.push(entry);
        Ok(())
    }

    async fn audit_log(&self, q: AuditQuery) -> Result<Vec<AuditEntry>> {
        let st = self.lock();
        Ok(st
            .audit
            .iter()
            .rev()
            .filter(|e| q.matches(e))
            .take(q.limit)
            .cloned()
            .collect())
    }

    async fn request(
        &self,
        workflow_id: &str,
        kind: RequestKind,
        reason: &str,
        at: Micros,
    ) -> Result<ControlRequest> {
        let r = {
            let mut st = self.lock();
            st.next_request += 1;
            let r = ControlRequest {
                id: st.next_request,
                workflow_id: workflow_id.to_string(),
                kind,
                reason: reason.to_string(),
                at,
            };
            st.requests.push(r.clone());
            r
        };
        let _ = self.events.send(FeedItem::Request(r.clone()));
        Ok(r)
    }

    async fn requests_for(&self, owner: &str) -> Result<Vec<ControlRequest>> {
        let st = self.lock();
        Ok(st
            .requests
            .iter()
            .filter(|r| {
                st.workflows
                    .get(&r.workflow_id)
                    .is_some_and(|w| w.owner.as_deref() == Some(owner))
            })
            .cloned()
            .collect())
    }

    async fn finish_request(&self, id: i64) -> Result<()> {
        self.lock().requests.retain(|r| r.id != id);
        Ok(())
    }

    async fn set_stop(&self, entry: SharedStop) -> Result<()> {
        self.lock().stops.insert(entry.name.clone(), entry);
        let _ = self.events.send(FeedItem::Stops);
        Ok(())
    }

    async fn stops(&self) -> Result<Vec<SharedStop>> {
        Ok(self.lock().stops.values().cloned().collect())
    }

    async fn board_post(&self, lease: &Lease, task: BoardTask) -> Result<()> {
        let item = task_item(&task);
        {
            let mut st = self.lock();
            st.check_lease(lease)?;
            st.board.post(task);
        }
        self.publish([item]);
        Ok(())
    }

    async fn board_claim(
        &self,
        replica: &str,
        types: &[String],
        limit: usize,
        ttl: Duration,
        lease_prefix: &str,
    ) -> Result<Vec<BoardTask>> {
        let now = self.clock.now();
        let got = {
            let mut st = self.lock();
            let st = &mut *st;
            let workflows = &st.workflows;
            let ended = |id: &str| workflows.get(id).is_none_or(|r| r.rec.status.is_terminal());
            let until = now + micros(ttl);
            st.board
                .claim(replica, types, limit, until, lease_prefix, ended)
        };
        self.publish(got.iter().map(task_item));
        Ok(with_now(got, now))
    }

    async fn board_reattach(
        &self,
        lease: &str,
        replica: &str,
        ttl: Duration,
    ) -> Result<Option<BoardTask>> {
        let now = self.clock.now();
        let until = now + micros(ttl);
        let got = self.lock().board.reattach(lease, replica, now, until);
        self.publish(got.iter().map(task_item));
        Ok(with_now(got, now).pop())
    }

    async fn board_renew(&self, replica: &str, keys: &[TaskKey], ttl: Duration) -> Result<()> {
        let now = self.clock.now();
        let until = now + micros(ttl);
        self.lock().board.renew(replica, keys, now, until);
        Ok(())
    }

    async fn board_report(
        &self,
        key: &TaskKey,
        claim: i64,
        report: BoardReport,
        at: Micros,
    ) -> Result<bool> {
        let now = self.clock.now();
        let mut items = Vec::new();
        {
            let mut st = self.lock();
            let st = &mut *st;
            let Some(t) = st.board.claimed(key, claim) else {
                return Ok(false);
            };
            match report {
                BoardReport::Checkpoint(c) => t.checkpoint = Some(c),
                BoardReport::Result(r) => {
                    if t.result.is_some() {
                        return Ok(false);
                    }
                    t.result = Some(r);
                }
                BoardReport::Release => crate::board::release(t),
                BoardReport::Lost { why, grace } => {
                    t.lost = Some(why);
                    // As long as a worker has to come back, from now.
                    t.claim_expires = now + micros(grace);
                }
                BoardReport::Lines { lines, keep } => {
                    let attempt = t.attempt;
                    let all = st.logs.entry(key.workflow_id.clone()).or_default();
                    let of_attempt = |l: &LogLine| {
                        l.block == key.block && l.job == key.job && l.attempt == attempt
                    };
                    let base = all
                        .iter()
                        .filter(|l| of_attempt(l))
                        .map(|l| l.n)
                        .max()
                        .unwrap_or(0);
                    for (i, l) in lines.into_iter().enumerate() {
                        st.next_log += 1;
                        all.push(LogLine {
                            seq: st.next_log,
                            block: key.block,
                            job: key.job,
                            attempt,
                            n: base + 1 + i as u64,
                            at: if l.at == 0 { at } else { l.at },
                            ..l
                        });
                    }
                    let last = all
                        .iter()
                        .filter(|l| of_attempt(l))
                        .map(|l| l.n)
                        .max()
                        .unwrap_or(0);
                    let floor = last.saturating_sub(u64::from(keep));
                    all.retain(|l| !(of_attempt(l) && l.n <= floor));
                    self.publish([FeedItem::Logs(key.workflow_id.clone())]);
                    return Ok(true);
                }
            }
            items.push(task_item(t));
        }
        self.publish(items);
        Ok(true)
    }

    async fn board_act(
        &self,
        lease: &Lease,
        key: &TaskKey,
        act: OwnerAct,
    ) -> Result<Option<BoardTask>> {
        let now = self.clock.now();
        let (row, item) = {
            let mut st = self.lock();
            st.check_lease(lease)?;
            let before = st.board.get(key);
            let row = st.board.act(key, act, lease.epoch);
            // A removed row is announced as it was (its type), not open.
            let item = row.as_ref().or(before.as_ref()).map(|t| FeedItem::Task {
                key: key.clone(),
                job_type: t.job_type.clone(),
                open: row.as_ref().is_some_and(open),
            });
            (row, item)
        };
        self.publish(item);
        Ok(with_now(row, now).pop())
    }

    async fn board_task(&self, key: &TaskKey) -> Result<Option<BoardTask>> {
        let now = self.clock.now();
        Ok(with_now(self.lock().board.get(key), now).pop())
    }

    async fn put_template(&self, mut rev: TemplateRevision) -> Result<TemplatePut> {
        let mut st = self.lock();
        let (revs, _) = st.templates.entry(rev.name.clone()).or_default();
        if let Some(last) = revs.last()
            && last.content_hash == rev.content_hash
        {
            return Ok(TemplatePut::Unchanged(last.revision));
        }
        rev.revision = revs.len() as u32 + 1;
        revs.push(rev);
        Ok(TemplatePut::Created(revs.len() as u32))
    }

    async fn template(&self, name: &str, revision: Option<u32>) -> Result<Option<StoredTemplate>> {
        let st = self.lock();
        Ok(st.templates.get(name).and_then(|(revs, disabled)| {
            let latest = revs.len() as u32;
            let n = revision.unwrap_or(latest);
            let rev = revs.get((n as usize).checked_sub(1)?)?.clone();
            Some(StoredTemplate {
                revision: rev,
                latest,
                disabled: disabled.clone(),
            })
        }))
    }

    async fn templates(&self) -> Result<Vec<StoredTemplate>> {
        let st = self.lock();
        Ok(st
            .templates
            .values()
            .filter_map(|(revs, disabled)| {
                Some(StoredTemplate {
                    revision: revs.last()?.clone(),
                    latest: revs.len() as u32,
                    disabled: disabled.clone(),
                })
            })
            .collect())
    }

    async fn template_revisions(&self, name: &str) -> Result<Vec<TemplateRevision>> {
        Ok(self
            .lock()
            .templates
            .get(name)
            .map(|(revs, _)| revs.clone())
            .unwrap_or_default())
    }

    async fn set_template_disabled(
        &self,
        name: &str,
        disabled: Option<TemplateDisabled>,
    ) -> Result<bool> {
        let mut st = self.lock();
        match st.templates.get_mut(name) {
            Some((revs, d)) if !revs.is_empty() => {
                *d = disabled;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn create_schedule(&self, row: ScheduleRow) -> Result<bool> {
        let mut st = self.lock();
        if st.schedules.contains_key(&row.name) {
            return Ok(false);
        }
        st.schedules.insert(row.name.clone(), row);
        Ok(true)
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        Ok(self.lock().schedules.values().cloned().collect())
    }

    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRow>> {
        Ok(self.lock().schedules.get(name).cloned())
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool> {
        Ok(self.lock().schedules.remove(name).is_some())
    }

    async fn set_schedule_paused(
        &self,
        name: &str,
        paused: bool,
        next_fire: Option<Micros>,
    ) -> Result<bool> {
        Ok(match self.lock().schedules.get_mut(name) {
            Some(r) => {
                r.paused = paused;
                r.next_fire = next_fire;
                true
            }
            None => false,
        })
    }

    async fn claim_fire(
        &self,
        name: &str,
        due: Micros,
        next: Option<Micros>,
        by: &str,
        key: Option<Micros>,
    ) -> Result<bool> {
        Ok(match self.lock().schedules.get_mut(name) {
            Some(r) if r.next_fire == Some(due) && !r.paused && r.firing_due.is_none() => {
                r.next_fire = next;
                r.firing_due = Some(due);
                r.firing_by = by.to_string();
                r.firing_key = key;
                true
            }
            _ => false,
        })
    }

    async fn finish_fire(
        &self,
        name: &str,
        due: Micros,
        outcome: &str,
        workflow: &str,
    ) -> Result<bool> {
        Ok(match self.lock().schedules.get_mut(name) {
            Some(r) if r.firing_due == Some(due) => {
                r.firing_due = None;
                r.firing_by.clear();
                r.firing_key = None;
                r.last_due = Some(due);
                r.last_outcome = outcome.to_string();
                if !workflow.is_empty() {
                    r.last_workflow = workflow.to_string();
                }
                true
            }
            _ => false,
        })
    }

    async fn replace_inventory(
        &self,
        mut sites: Vec<InventorySite>,
        mut machines: Vec<InventoryMachine>,
        by: &str,
        at: Micros,
    ) -> Result<i64> {
        let mut st = self.lock();
        sites.sort_by(|a, b| a.name.cmp(&b.name));
        machines.sort_by(|a, b| (&a.site, &a.name).cmp(&(&b.site, &b.name)));
        let version = st.inventory.as_ref().map_or(0, |i| i.version) + 1;
        st.inventory = Some(StoredInventory {
            version,
            sites,
            machines,
            updated_by: by.to_string(),
            updated_at: at,
        });
        Ok(version)
    }

    async fn inventory(&self) -> Result<Option<StoredInventory>> {
        Ok(self.lock().inventory.clone())
    }

    async fn inventory_version(&self) -> Result<Option<i64>> {
        Ok(self.lock().inventory.as_ref().map(|i| i.version))
    }

    async fn set_site_status(
        &self,
        site: &str,
        status: &str,
        by: &str,
        at: Micros,
    ) -> Result<Option<i64>> {
        let mut st = self.lock();
        let Some(inv) = st.inventory.as_mut() else {
            return Ok(None);
        };
        let Some(s) = inv.sites.iter_mut().find(|s| s.name == site) else {
            return Ok(None);
        };
        s.status = status.to_string();
        inv.version += 1;
        inv.updated_by = by.to_string();
        inv.updated_at = at;
        Ok(Some(inv.version))
    }

    fn subscribe(&self) -> broadcast::Receiver<FeedItem> {
        self.events.subscribe()
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{id, instance, running};
    use interlock_core::ManualClock;

    /// A write that fails after a terminal change undoes the change and the
    /// end of ownership that came with it (the SQL backends roll back).
    #[tokio::test]
    async fn a_failed_write_restores_the_owner_too() {
        let s = MemStore::new(ManualClock::new(1_700_000_000_000_000));
        let a = instance(&s, "i-a").await;
        let lease = running(&s, 1, &a).await;
        let end = Change::Workflow {
            id: id(1),
            status: Status::Completed,
            reason: String::new(),
            had_errors: false,
            es_halt: interlock_core::EsMode::Go,
            ended: Some(1),
        };
        // Block 9 does not exist: the second change fails after the first.
        let bad = crate::conformance::job(&id(1), 9, 0, Status::Completed);
        assert!(s.write(Some(&lease), vec![end, bad]).await.is_err());
        let rec = s.get(&id(1)).await.unwrap().unwrap();
        assert_eq!(
            (rec.status, rec.owner.as_deref()),
            (Status::Running, Some(a.as_str()))
        );
    }
}
