//! Records just submitted through this process, kept for the Exec that
//! usually follows within milliseconds, so that Exec need not read back
//! what it has in hand (three queries on PostgreSQL; only shared stores
//! keep them, an in-process read being cheap).
//!
//! Only a small record submitted NotStarted is kept (at most [`KEPT`] of
//! them, each under [`MAX_BYTES`] of request text, so the cache stays under
//! 16 MiB), and it is taken out on its first use. Why a kept record cannot
//! let an Exec through that a fresh read would refuse: a NotStarted
//! workflow changes only by leaving that status (Exec, Cancel, on any
//! replica), and the Exec that uses the record still starts the run with
//! the store's compare-and-set from NotStarted, which refuses a started,
//! cancelled or pruned one as well (the refusal may name another reason:
//! the policies and the e-stop are asked first); approvals matter only if a
//! policy asks for them, and then Exec reads the record as before. With
//! authorization on, the server reads the record anyway (to check the
//! caller's grant), so this saves a read only without it.

use interlock_core::{Status, WorkflowRecord};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// How many records are kept; the oldest goes first.
const KEPT: usize = 1024;
/// The largest request kept, counted in its text
/// ([`interlock_core::validate::request_bytes`]).
const MAX_BYTES: usize = 16 * 1024;

#[derive(Default)]
pub(super) struct Fresh {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    by_id: HashMap<String, WorkflowRecord>,
    order: VecDeque<String>,
}

impl Fresh {
    /// Whether [`Fresh::keep`] would keep `rec`: NotStarted and small.
    pub(super) fn keeps(rec: &WorkflowRecord) -> bool {
        rec.status == Status::NotStarted
            && interlock_core::validate::request_bytes(&rec.req) <= MAX_BYTES
    }

    /// Keeps `rec` (if [`Fresh::keeps`] it), forgetting the oldest beyond
    /// [`KEPT`].
    pub(super) fn keep(&self, rec: WorkflowRecord) {
        if !Self::keeps(&rec) {
            return;
        }
        let mut k = self.kept.lock().expect("fresh lock");
        while k.order.len() >= KEPT {
            if let Some(old) = k.order.pop_front() {
                k.by_id.remove(&old);
            }
        }
        k.order.push_back(rec.id.clone());
        k.by_id.insert(rec.id.clone(), rec);
    }

    /// The record of `id` as submitted here, if still kept; it is kept no
    /// longer.
    pub(super) fn take(&self, id: &str) -> Option<WorkflowRecord> {
        let mut k = self.kept.lock().expect("fresh lock");
        let rec = k.by_id.remove(id)?;
        // Ids are taken in about the order they were kept.
        if let Some(i) = k.order.iter().position(|o| o == id) {
            k.order.remove(i);
        }
        Some(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, status: Status) -> WorkflowRecord {
        let mut r = WorkflowRecord::submitted(id.into(), Default::default(), String::new(), 0);
        r.status = status;
        r
    }

    #[test]
    fn a_record_is_taken_once_and_the_oldest_goes_first() {
        let f = Fresh::default();
        f.keep(rec("a", Status::NotStarted));
        f.keep(rec("waiting", Status::AwaitingApproval));
        assert!(f.take("waiting").is_none(), "only NotStarted is kept");
        let mut big = rec("big", Status::NotStarted);
        big.req.name = "x".repeat(MAX_BYTES + 1);
        f.keep(big);
        assert!(f.take("big").is_none(), "only small ones are kept");
        assert_eq!(f.take("a").map(|r| r.id), Some("a".to_string()));
        assert!(f.take("a").is_none(), "taken once");
        for i in 0..=KEPT {
            f.keep(rec(&i.to_string(), Status::NotStarted));
        }
        assert!(f.take("0").is_none(), "the oldest was forgotten");
        assert!(f.take("1").is_some());
        assert!(f.take(&KEPT.to_string()).is_some());
    }
}
