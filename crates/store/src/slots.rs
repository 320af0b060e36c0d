//! Slots of concurrency limits: the store's side of blast-radius limits.
//!
//! A limit allows at most `max` distinct *holders* at once in each of its
//! partitions (e.g. at most 2 sites, per workflow name). A job that falls
//! under limits asks for one [`Slot`] per limit, all at once: it gets every
//! one or none, so it never holds one limit while waiting for another (no
//! deadlock between jobs). A job whose holder already holds a slot in a
//! partition (a second job on the same site) fits in it.
//!
//! Slots are rows: granted ones count, waiting ones queue. A waiter keeps
//! its place (`since`) while it keeps asking; one not seen since
//! `fresh_after` (its process died, its workflow paused) no longer holds
//! anyone back. Granted rows go with [`Change::ReleaseSlots`] in the job's
//! final write, and every row of a workflow goes when it reaches a terminal
//! status, in that commit.
//!
//! [`decide`] is the one decision every backend applies, inside a
//! transaction that serializes requests on the same partitions.
//!
//! [`Change::ReleaseSlots`]: crate::Change::ReleaseSlots

use interlock_core::Micros;

/// One slot a job needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The limit's name.
    pub limit: String,
    /// The partition (e.g. "SatelliteDiskErase"), empty when the limit has
    /// one.
    pub part: String,
    /// Who occupies the slot: the job, its workflow or an argument's value,
    /// by the limit's rule.
    pub holder: String,
    /// Most distinct holders at once.
    pub max: u32,
}

/// A job's request for the slots of every limit it falls under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRequest {
    pub workflow_id: String,
    pub block: usize,
    pub job: usize,
    pub slots: Vec<Slot>,
    /// Now, on the caller's clock.
    pub at: Micros,
    /// Waiters last seen before this are ignored.
    pub fresh_after: Micros,
}

/// One stored slot row: granted (it counts) or waiting (it queues).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRow {
    pub limit: String,
    pub part: String,
    pub holder: String,
    pub workflow_id: String,
    pub block: usize,
    pub job: usize,
    pub granted: bool,
    /// When the job first asked.
    pub since: Micros,
    /// When it last asked.
    pub seen: Micros,
    /// What the last answer was: its place in the queue (1 = next) and how
    /// many holders there were, of `max`.
    pub position: u32,
    pub held: u32,
    pub max: u32,
}

impl SlotRow {
    fn is(&self, req: &SlotRequest) -> bool {
        self.workflow_id == req.workflow_id && self.block == req.block && self.job == req.job
    }
}

/// The answer to a [`SlotRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotOutcome {
    Granted,
    /// Not now; the row says which limit holds the job back and where it
    /// stands.
    Waiting(SlotRow),
}

/// Decides `req` against `rows`, every row of the partitions it names.
/// Returns the outcome and the rows to write for the job (replacing its
/// rows in those partitions).
pub fn decide(req: &SlotRequest, rows: &[SlotRow]) -> (SlotOutcome, Vec<SlotRow>) {
    fn in_part<'a>(rows: &'a [SlotRow], s: &'a Slot) -> impl Iterator<Item = &'a SlotRow> {
        rows.iter()
            .filter(move |r| r.limit == s.limit && r.part == s.part)
    }
    // Where the job first asked: its place in every queue.
    let since = rows
        .iter()
        .filter(|r| r.is(req))
        .map(|r| r.since)
        .min()
        .unwrap_or(req.at);
    let mine = (since, req.workflow_id.as_str(), req.block, req.job);
    let mut blocked = None;
    let mut standing = Vec::with_capacity(req.slots.len());
    for s in &req.slots {
        let mut holders: Vec<&str> = in_part(rows, s)
            .filter(|r| r.granted)
            .map(|r| r.holder.as_str())
            .collect();
        holders.sort_unstable();
        holders.dedup();
        let ahead = in_part(rows, s)
            .filter(|r| {
                !r.granted
                    && r.seen >= req.fresh_after
                    && (r.since, r.workflow_id.as_str(), r.block, r.job) < mine
            })
            .count() as u32;
        let held = holders.len() as u32;
        let fits = holders.contains(&s.holder.as_str()) || held + ahead < s.max;
        if !fits && blocked.is_none() {
            blocked = Some(standing.len());
        }
        standing.push((ahead + 1, held));
    }
    let granted = blocked.is_none();
    let write: Vec<SlotRow> = req
        .slots
        .iter()
        .zip(&standing)
        .map(|(s, &(position, held))| SlotRow {
            limit: s.limit.clone(),
            part: s.part.clone(),
            holder: s.holder.clone(),
            workflow_id: req.workflow_id.clone(),
            block: req.block,
            job: req.job,
            granted,
            since,
            seen: req.at,
            position: if granted { 0 } else { position },
            held,
            max: s.max,
        })
        .collect();
    let outcome = match blocked {
        None => SlotOutcome::Granted,
        Some(i) => SlotOutcome::Waiting(write[i].clone()),
    };
    (outcome, write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(wf: &str, job: usize, holder: &str, max: u32, at: Micros) -> SlotRequest {
        SlotRequest {
            workflow_id: wf.into(),
            block: 0,
            job,
            slots: vec![Slot {
                limit: "l".into(),
                part: String::new(),
                holder: holder.into(),
                max,
            }],
            at,
            fresh_after: at - 10,
        }
    }

    /// Applies decisions to a table the way a backend does.
    fn ask(table: &mut Vec<SlotRow>, r: &SlotRequest) -> SlotOutcome {
        let (out, write) = decide(r, table);
        table.retain(|row| !row.is(r));
        table.extend(write);
        out
    }

    #[test]
    fn at_most_max_holders_and_a_holder_fits_again() {
        let mut t = Vec::new();
        assert_eq!(
            ask(&mut t, &req("a", 0, "aab", 2, 100)),
            SlotOutcome::Granted
        );
        assert_eq!(
            ask(&mut t, &req("b", 0, "aac", 2, 100)),
            SlotOutcome::Granted
        );
        match ask(&mut t, &req("c", 0, "aad", 2, 100)) {
            SlotOutcome::Waiting(w) => assert_eq!((w.position, w.held, w.max), (1, 2, 2)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ask(&mut t, &req("d", 0, "aab", 2, 100)),
            SlotOutcome::Granted,
            "a second job on a site already held fits"
        );
        assert_eq!(
            ask(&mut t, &req("a", 0, "aab", 2, 101)),
            SlotOutcome::Granted,
            "asking again is granted again"
        );
    }

    #[test]
    fn waiters_queue_in_order_and_stale_ones_step_aside() {
        let mut t = Vec::new();
        assert_eq!(ask(&mut t, &req("a", 0, "a", 1, 100)), SlotOutcome::Granted);
        let pos = |o: SlotOutcome| match o {
            SlotOutcome::Waiting(w) => w.position,
            SlotOutcome::Granted => 0,
        };
        assert_eq!(pos(ask(&mut t, &req("b", 0, "b", 1, 101))), 1);
        assert_eq!(pos(ask(&mut t, &req("c", 0, "c", 1, 102))), 2);
        // The holder ends: its rows go.
        t.retain(|r| r.workflow_id != "a");
        assert_eq!(
            pos(ask(&mut t, &req("c", 0, "c", 1, 103))),
            2,
            "c stays behind b, who asked first"
        );
        assert_eq!(ask(&mut t, &req("b", 0, "b", 1, 104)), SlotOutcome::Granted);
        t.retain(|r| r.workflow_id != "b");
        // A waiter that stopped asking no longer holds anyone back.
        assert_eq!(pos(ask(&mut t, &req("d", 0, "d", 1, 105))), 2);
        let later = req("d", 0, "d", 1, 200);
        assert!(later.fresh_after > 103, "c was last seen at 103");
        assert_eq!(ask(&mut t, &later), SlotOutcome::Granted);
    }

    #[test]
    fn all_slots_or_none() {
        let mut t = Vec::new();
        let two = |wf: &str, site: &str| SlotRequest {
            slots: vec![
                Slot {
                    limit: "sites".into(),
                    part: String::new(),
                    holder: site.into(),
                    max: 2,
                },
                Slot {
                    limit: "jobs".into(),
                    part: String::new(),
                    holder: format!("{wf}/0/0"),
                    max: 1,
                },
            ],
            ..req(wf, 0, "", 0, 100)
        };
        assert_eq!(ask(&mut t, &two("a", "aab")), SlotOutcome::Granted);
        match ask(&mut t, &two("b", "aac")) {
            SlotOutcome::Waiting(w) => assert_eq!(w.limit, "jobs"),
            other => panic!("{other:?}"),
        }
        assert!(
            t.iter()
                .filter(|r| r.workflow_id == "b")
                .all(|r| !r.granted),
            "nothing held while waiting"
        );
    }
}
