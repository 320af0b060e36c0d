//! The two-person rule: a workflow a requireApproval policy applies to is
//! submitted AwaitingApproval and needs that many approvals before Exec can
//! start it.
//!
//! An approval counts for a rule when it approves, comes from a distinct
//! identity (one decision per identity; a second replaces the first) other
//! than the submitter that held the rule's role when deciding, was given
//! for this exact request content, and has not expired under the rule.
//! Every rule that applies must be met (two policies asking for a security
//! and an ops approval need both). A workflow that meets them moves to
//! NotStarted; one rejection ends it Cancelled. Exec counts again
//! (policies, approvals and expiry may have changed since), so nothing
//! starts without the approvals the policies in force ask for.

use super::Engine;
use crate::error::{EngineError, Result};
use interlock_core::{Approval, ApprovalRule, Status, WorkflowRecord};
use interlock_store::CasOutcome;

/// Where a workflow stands with its approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalTally {
    pub id: String,
    pub status: Status,
    /// Approvals the policies in force ask for (0: none).
    pub needed: u32,
    /// Approvals that count now.
    pub valid: u32,
}

impl Engine {
    /// The approval rules for `rec` under the policies in force.
    pub(super) fn approval_rules(&self, rec: &WorkflowRecord) -> Vec<ApprovalRule> {
        self.inner.admission.approvals(&rec.req)
    }

    /// How many of `rec.approvals` count now for `rule`.
    fn valid_approvals(&self, rec: &WorkflowRecord, rule: &ApprovalRule) -> u32 {
        let hash = rec.req.content_hash();
        let fresh_after = self.now() - rule.expires_after.as_micros() as i64;
        rec.approvals
            .iter()
            .filter(|a| {
                a.approve
                    && a.identity != rec.submitted_by
                    && a.roles.contains(&rule.role)
                    && a.content_hash == hash
                    && a.at >= fresh_after
            })
            .count() as u32
    }

    /// `(needed, counting)` over every rule: approvals asked for, and
    /// those that count now (at most the number asked, per rule).
    fn tally(&self, rec: &WorkflowRecord, rules: &[ApprovalRule]) -> (u32, u32) {
        rules.iter().fold((0, 0), |(n, v), r| {
            (
                n + r.approvals,
                v + self.valid_approvals(rec, r).min(r.approvals),
            )
        })
    }

    /// `(needed, valid)` for a record read with [`Engine::status`].
    pub fn approval_tally(&self, rec: &WorkflowRecord) -> (u32, u32) {
        self.tally(rec, &self.approval_rules(rec))
    }

    /// Reads the decisions given on `rec` into it, when they can matter.
    pub(super) async fn load_approvals(&self, rec: &mut WorkflowRecord) -> Result<()> {
        if rec.status == Status::AwaitingApproval
            || (rec.status == Status::NotStarted && !self.approval_rules(rec).is_empty())
        {
            rec.approvals = self.inner.store.approvals(&rec.id).await?;
        }
        Ok(())
    }

    /// Refuses Exec of `rec` unless it has the approvals the policies in
    /// force ask for.
    pub(super) fn check_approved(&self, rec: &WorkflowRecord) -> Result<()> {
        // No rule (the policy was removed since Submit): nothing is asked.
        let missing: Vec<String> = self
            .approval_rules(rec)
            .iter()
            .filter_map(|rule| {
                let valid = self.valid_approvals(rec, rule);
                (valid < rule.approvals).then(|| {
                    format!(
                        "{} approval(s) from holders of role {:?} other than its submitter \
                         (has {valid} that count)",
                        rule.approvals, rule.role
                    )
                })
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(EngineError::NeedsApproval(format!(
            "workflow {} needs {}; ask an approver to run `interlock approve {}`",
            rec.id,
            missing.join(", and "),
            rec.id
        )))
    }

    /// Moves a workflow nobody runs from `from` to `to`; the status it has
    /// afterwards (another's if a racing call moved it first).
    async fn move_to(
        &self,
        id: &str,
        from: Status,
        to: Status,
        why: &str,
        ended: Option<interlock_core::Micros>,
    ) -> Result<Status> {
        match self
            .inner
            .store
            .transition(id, from, to, why, ended, Vec::new())
            .await?
        {
            CasOutcome::Done(()) => Ok(to),
            CasOutcome::WrongStatus(s) => Ok(s),
            CasOutcome::NotFound => Err(EngineError::NotFound(id.to_string())),
            CasOutcome::OwnedBy(_) => Ok(Status::Running),
        }
    }

    /// Records `identity`'s decision on workflow `id`: an approval (moving
    /// it to NotStarted once it has enough) or a rejection (ending it
    /// Cancelled). `roles` are the roles `identity` holds.
    pub async fn decide_approval(
        &self,
        id: &str,
        identity: &str,
        roles: &[String],
        comment: &str,
        approve: bool,
    ) -> Result<ApprovalTally> {
        let mut rec = self.status(id).await?;
        let id = rec.id.clone();
        let rules = self.approval_rules(&rec);
        if rules.is_empty() {
            return Err(EngineError::WrongState(format!(
                "workflow {id} needs no approval: no requireApproval policy applies to it"
            )));
        }
        if !matches!(rec.status, Status::AwaitingApproval | Status::NotStarted) {
            return Err(EngineError::WrongState(format!(
                "workflow {id} is {}; only a workflow not yet started is approved or rejected",
                rec.status
            )));
        }
        let wanted: Vec<&str> = rules.iter().map(|r| r.role.as_str()).collect();
        if !rules.iter().any(|r| roles.contains(&r.role)) {
            return Err(EngineError::NotAnApprover(format!(
                "{identity} holds none of the roles deciding on workflow {:?} needs ({}) \
                 (approvals need authentication, so that approvers are known)",
                rec.req.name,
                wanted.join(", ")
            )));
        }
        if approve && identity == rec.submitted_by {
            return Err(EngineError::NotAnApprover(format!(
                "{identity} submitted workflow {id} and cannot approve it; another holder of \
                 role {} must",
                wanted.join(" / ")
            )));
        }
        let now = self.now();
        let decision = Approval {
            workflow_id: id.clone(),
            identity: identity.to_string(),
            roles: roles.to_vec(),
            approve,
            comment: comment.to_string(),
            content_hash: rec.req.content_hash(),
            at: now,
        };
        self.inner.store.add_approval(&decision).await?;
        if !approve {
            let why = if comment.is_empty() {
                format!("rejected by {identity}")
            } else {
                format!("rejected by {identity}: {comment}")
            };
            let to = self
                .move_to(&id, rec.status, Status::Cancelled, &why, Some(now))
                .await?;
            tracing::info!(workflow = %id, %identity, "workflow rejected");
            return Ok(ApprovalTally {
                id,
                status: to,
                needed: self.tally(&rec, &rules).0,
                valid: 0,
            });
        }
        rec.approvals = self.inner.store.approvals(&id).await?;
        let (needed, valid) = self.tally(&rec, &rules);
        let mut status = rec.status;
        if self.check_approved(&rec).is_ok() && rec.status == Status::AwaitingApproval {
            let by: Vec<&str> = rec
                .approvals
                .iter()
                .filter(|a| a.approve && a.identity != rec.submitted_by)
                .map(|a| a.identity.as_str())
                .collect();
            let why = format!("approved by {}", by.join(", "));
            status = self
                .move_to(
                    &id,
                    Status::AwaitingApproval,
                    Status::NotStarted,
                    &why,
                    None,
                )
                .await?;
        }
        tracing::info!(workflow = %id, %identity, valid, needed, "workflow approved");
        Ok(ApprovalTally {
            id,
            status,
            needed,
            valid,
        })
    }
}
