//! Schedules: a template instantiated with fixed values at given times —
//! once at an instant, or on a cron expression in a time zone.
//!
//! This crate decides *when*: the times a schedule fires, and what to do
//! about fires that were missed while no server ran. Firing (the checks a
//! request meets, who fires on several replicas) belongs to the engine.
//!
//! Invariant: pure; times come in as arguments.
#![forbid(unsafe_code)]

pub mod cron;

pub use cron::Cron;

use interlock_core::Micros;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A fire due longer ago than this when it is looked at was missed (no
/// server ran then): the schedule's `missed` policy applies.
pub const MISSED_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum When {
    /// Once, at this instant.
    Once { at: Micros },
    /// On a cron expression, in an IANA time zone.
    Cron { expr: String, time_zone: String },
}

/// What a schedule does about fires missed while no server ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Missed {
    /// Record them as missed and wait for the next fire.
    #[default]
    Skip,
    /// Fire once now for all of them.
    RunOnce,
}

/// What a fire does while the previous fire's workflow is still going.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Overlap {
    /// Record the fire as skipped.
    #[default]
    Skip,
    /// Start another one.
    Allow,
}

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    pub name: String,
    pub template: String,
    /// Pinned revision; the latest at each fire when `None`.
    #[serde(default)]
    pub revision: Option<u32>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub when: When,
    #[serde(default)]
    pub missed: Missed,
    #[serde(default)]
    pub overlap: Overlap,
    /// Start the workflow after submitting it.
    pub exec: bool,
}

/// What to do about a due fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Fire for this time.
    Fire(Micros),
    /// `count` fires were missed, the latest at `latest`: record them.
    Missed { count: u64, latest: Micros },
    /// `count` fires were missed: fire once, for the latest.
    CatchUp { count: u64, latest: Micros },
}

impl ScheduleSpec {
    /// Every problem with the schedule (its name, cron expression, zone).
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut out = Vec::new();
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 128
            && self
                .name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !name_ok {
            out.push(format!(
                "schedule name {:?}: letters, digits, '.', '_' and '-', starting with a letter or \
                 digit, at most 128 characters",
                self.name
            ));
        }
        if self.template.is_empty() {
            out.push("name the template the schedule instantiates".into());
        }
        if let When::Cron { expr, time_zone } = &self.when {
            if let Err(e) = Cron::parse(expr) {
                out.push(e);
            }
            if TimeZone::get(time_zone).is_err() {
                out.push(format!(
                    "time zone {time_zone:?} is not an IANA zone name such as \"Europe/Berlin\" or \"UTC\""
                ));
            }
        }
        if out.is_empty() { Ok(()) } else { Err(out) }
    }

    /// The first fire strictly after `t`, if any.
    pub fn next_after(&self, t: Micros) -> Option<Micros> {
        match &self.when {
            When::Once { at } => (*at > t).then_some(*at),
            When::Cron { expr, time_zone } => {
                let cron = Cron::parse(expr).ok()?;
                let tz = TimeZone::get(time_zone).ok()?;
                let after = Timestamp::from_microsecond(t).ok()?;
                Some(cron.next_after(after, &tz)?.as_microsecond())
            }
        }
    }

    /// What to do about the fire due at `due`, looked at `now`, and the
    /// fire after it (`None`: the schedule is done).
    pub fn due(&self, due: Micros, now: Micros) -> (Due, Option<Micros>) {
        let missed_after = MISSED_AFTER.as_micros() as Micros;
        if now - due <= missed_after {
            // The next after this one, even if it is already due too: the
            // next look fires it (or counts it missed).
            return (Due::Fire(due), self.next_after(due));
        }
        // Count the fires between `due` and now (bounded: a schedule every
        // minute left for years is not walked minute by minute forever).
        let (mut count, mut latest, mut t) = (1u64, due, due);
        while let Some(n) = self.next_after(t) {
            if n > now || count >= 1_000_000 {
                break;
            }
            count += 1;
            latest = n;
            t = n;
        }
        let next = self.next_after(now);
        match self.missed {
            Missed::Skip => (Due::Missed { count, latest }, next),
            Missed::RunOnce => (Due::CatchUp { count, latest }, next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Micros = 60_000_000;
    /// 2027-01-15T08:00:00Z, a five-minute mark.
    const T0: Micros = 1_800_000_000 * 1_000_000;

    fn every5(missed: Missed) -> ScheduleSpec {
        ScheduleSpec {
            name: "s".into(),
            template: "t".into(),
            revision: None,
            params: BTreeMap::new(),
            labels: BTreeMap::new(),
            when: When::Cron {
                expr: "*/5 * * * *".into(),
                time_zone: "UTC".into(),
            },
            missed,
            overlap: Overlap::Skip,
            exec: true,
        }
    }

    #[test]
    fn a_fire_on_time_fires_and_points_at_the_next() {
        let s = every5(Missed::Skip);
        let t0 = T0;
        assert_eq!(s.next_after(t0), Some(t0 + 5 * MIN));
        assert_eq!(
            s.due(t0, t0 + 2_000_000),
            (Due::Fire(t0), Some(t0 + 5 * MIN))
        );
    }

    #[test]
    fn missed_fires_are_skipped_or_run_once() {
        let t0 = T0;
        let now = t0 + 62 * MIN; // fires at +0, +5, ..., +60 missed: 13
        let (d, next) = every5(Missed::Skip).due(t0, now);
        assert_eq!(
            d,
            Due::Missed {
                count: 13,
                latest: t0 + 60 * MIN
            }
        );
        assert_eq!(next, Some(t0 + 65 * MIN));
        let (d, _) = every5(Missed::RunOnce).due(t0, now);
        assert_eq!(
            d,
            Due::CatchUp {
                count: 13,
                latest: t0 + 60 * MIN
            }
        );
    }

    #[test]
    fn once_fires_once() {
        let s = ScheduleSpec {
            when: When::Once { at: 1_000 * MIN },
            ..every5(Missed::Skip)
        };
        assert_eq!(s.next_after(0), Some(1_000 * MIN));
        assert_eq!(
            s.due(1_000 * MIN, 1_000 * MIN + 1),
            (Due::Fire(1_000 * MIN), None)
        );
        let (d, next) = s.due(1_000 * MIN, 2_000 * MIN);
        assert_eq!(
            (d, next),
            (
                Due::Missed {
                    count: 1,
                    latest: 1_000 * MIN
                },
                None
            )
        );
    }

    #[test]
    fn problems_are_named() {
        let mut s = every5(Missed::Skip);
        s.name = "no spaces".into();
        s.when = When::Cron {
            expr: "* *".into(),
            time_zone: "Mars/Base".into(),
        };
        let e = s.check().unwrap_err().join("\n");
        assert!(
            e.contains("schedule name") && e.contains("has 2 fields") && e.contains("Mars/Base"),
            "{e}"
        );
    }
}
