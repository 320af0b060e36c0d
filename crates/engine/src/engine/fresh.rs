//! Records just submitted through this process, kept for the Exec that
//! usually follows within milliseconds, so that Exec need not read back
//! what it has in hand (three queries on PostgreSQL; on SQLite a hand-off
//! to a reader thread, the lookup and a decode).
//!
//! Only a small record submitted NotStarted is kept (at most [`KEPT`] of
//! them on a shared store, [`KEPT_EMBEDDED`] on an embedded one, each of
//! at most [`MAX_JOBS`] jobs and [`MAX_BYTES`] of request text: about
//! 24 KiB in memory with the job records a run needs, so the cache stays
//! under about 24 MiB, 3 MiB on an embedded store), and it is taken out on
//! its first use. A record kept and never taken costs the
//! Submit that made it (Submit alone at 32 clients fell to 0.90-0.93x with
//! every record kept; BENCHMARKS.md): once a whole cache's worth went
//! untaken, only one Submit in [`SAMPLE`] keeps its record, until an Exec
//! takes one again.
//!
//! Why a kept record cannot let an Exec through that a fresh read would
//! refuse: a NotStarted workflow changes only by leaving that status (Exec,
//! Cancel, on any replica), and the Exec that uses the record still starts
//! the run with the store's compare-and-set from NotStarted, which refuses
//! a started, cancelled or pruned one as well (the refusal may name another
//! reason: the policies and the e-stop are asked first); approvals matter
//! only if a policy asks for them, and then Exec reads the record as
//! before. With authorization on, the server reads the record anyway (to
//! check the caller's grant), so this saves a read only without it.

use interlock_core::{Status, WorkflowRecord};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many records a shared store's engine keeps; the oldest goes first.
const KEPT: usize = 1024;
/// How many an embedded store's engine keeps: enough for a client's Exec
/// to find its record while a hundred others submit between the two calls.
/// Fewer than [`KEPT`]: an Exec that misses reads from the process's own
/// file, not over a network.
const KEPT_EMBEDDED: usize = 128;
/// Once a cache's worth of records went untaken (Submits that no Exec
/// follows soon), one Submit in this many is kept: enough to notice the
/// Execs coming back, at a thirty-second of the cost meanwhile.
const SAMPLE: usize = 32;
/// The largest request kept, counted in its text
/// ([`interlock_core::validate::request_bytes`]).
const MAX_BYTES: usize = 8 * 1024;
/// The most jobs of a record kept. A record kept holds a record per job
/// beside the request's (about half a KiB for both, with their strings),
/// which the request's text does not count: a thousand one-argument jobs
/// fit in 16 KiB of text.
const MAX_JOBS: usize = 32;

pub(super) struct Fresh {
    kept: Mutex<Kept>,
    most: usize,
    /// Records forgotten untaken since one was last taken.
    unused: AtomicUsize,
    /// Keepable Submits seen while sampling.
    seen: AtomicUsize,
}

#[derive(Default)]
struct Kept {
    by_id: HashMap<String, WorkflowRecord>,
    order: VecDeque<String>,
}

impl Fresh {
    /// The cache for an engine on an embedded (`exclusive`) or a shared
    /// store.
    pub(super) fn for_store(exclusive: bool) -> Self {
        Self {
            kept: Mutex::default(),
            most: if exclusive { KEPT_EMBEDDED } else { KEPT },
            unused: AtomicUsize::new(0),
            seen: AtomicUsize::new(0),
        }
    }

    /// Whether [`Fresh::keep`] would keep `rec`: NotStarted and small.
    fn keeps(rec: &WorkflowRecord) -> bool {
        rec.status == Status::NotStarted
            && rec.req.blocks.iter().map(|b| b.jobs.len()).sum::<usize>() <= MAX_JOBS
            && interlock_core::validate::request_bytes(&rec.req) <= MAX_BYTES
    }

    /// Whether the Submit of `rec` should keep it: [`Fresh::keeps`] it,
    /// and Execs have lately been taking what is kept (otherwise only a
    /// [`SAMPLE`] of Submits keep theirs, until one is taken again).
    pub(super) fn wants(&self, rec: &WorkflowRecord) -> bool {
        Self::keeps(rec)
            && (self.unused.load(Ordering::Relaxed) < self.most
                || self
                    .seen
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(SAMPLE))
    }

    /// Keeps `rec` (if [`Fresh::keeps`] it), forgetting the oldest beyond
    /// the cache's size.
    pub(super) fn keep(&self, rec: WorkflowRecord) {
        if !Self::keeps(&rec) {
            return;
        }
        let mut k = self.kept.lock().expect("fresh lock");
        while k.order.len() >= self.most {
            if let Some(old) = k.order.pop_front() {
                k.by_id.remove(&old);
                self.unused.fetch_add(1, Ordering::Relaxed);
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
        self.unused.store(0, Ordering::Relaxed);
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
        let f = Fresh::for_store(false);
        f.keep(rec("a", Status::NotStarted));
        f.keep(rec("waiting", Status::AwaitingApproval));
        assert!(f.take("waiting").is_none(), "only NotStarted is kept");
        let mut big = rec("big", Status::NotStarted);
        big.req.name = "x".repeat(MAX_BYTES + 1);
        f.keep(big);
        assert!(f.take("big").is_none(), "only small ones are kept");
        // Many jobs of little text each: their records are what weighs.
        let mut many = rec("many", Status::NotStarted);
        many.req.blocks = vec![interlock_core::Block {
            jobs: vec![interlock_core::Job::default(); MAX_JOBS + 1],
            ..Default::default()
        }];
        assert!(interlock_core::validate::request_bytes(&many.req) <= MAX_BYTES);
        f.keep(many.clone());
        assert!(
            f.take("many").is_none(),
            "only records of few jobs are kept"
        );
        many.req.blocks[0].jobs.pop();
        f.keep(many);
        assert!(f.take("many").is_some(), "{MAX_JOBS} jobs are kept");
        assert_eq!(f.take("a").map(|r| r.id), Some("a".to_string()));
        assert!(f.take("a").is_none(), "taken once");
    }

    #[test]
    fn the_oldest_goes_first_beyond_the_size_for_its_store() {
        for (exclusive, most) in [(false, KEPT), (true, KEPT_EMBEDDED)] {
            let f = Fresh::for_store(exclusive);
            for i in 0..=most {
                f.keep(rec(&i.to_string(), Status::NotStarted));
            }
            assert!(f.take("0").is_none(), "{most}: the oldest was forgotten");
            assert!(f.take("1").is_some(), "{most}");
            assert!(f.take(&most.to_string()).is_some(), "{most}");
        }
    }

    #[test]
    fn submits_no_exec_follows_keep_only_a_sample_until_one_is_taken() {
        let f = Fresh::for_store(true);
        let wanted = |f: &Fresh, from: usize, n: usize| {
            (from..from + n)
                .filter(|i| {
                    let r = rec(&i.to_string(), Status::NotStarted);
                    let yes = f.wants(&r);
                    if yes {
                        f.keep(r);
                    }
                    yes
                })
                .count()
        };
        // A cache's worth kept, then as many again forgotten untaken.
        assert_eq!(wanted(&f, 0, 2 * KEPT_EMBEDDED), 2 * KEPT_EMBEDDED);
        assert_eq!(wanted(&f, 10_000, 10 * SAMPLE), 10, "one in {SAMPLE}");
        // The newest kept (a sample) is taken: all are kept again.
        let newest = (10_000..10_000 + 10 * SAMPLE)
            .rev()
            .find(|i| f.take(&i.to_string()).is_some());
        assert!(newest.is_some(), "a sample was kept");
        assert_eq!(wanted(&f, 20_000, SAMPLE), SAMPLE);
    }
}
