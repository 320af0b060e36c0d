//! Cron expressions: the five fields of Vixie cron, evaluated in a time
//! zone with jiff (the zone database the change windows use).
//!
//! `minute hour day-of-month month day-of-week`, each `*`, a number, a
//! range `a-b`, a step `*/n`, `a-b/n` or `a/n`, or a comma-separated list
//! of these; months and weekdays also by name (`JAN`, `MON`), Sunday as 0
//! or 7. As in Vixie cron, when both day fields are restricted a day
//! matching either fires. `@hourly`, `@daily` (`@midnight`), `@weekly`,
//! `@monthly` and `@yearly` (`@annually`) are the usual shorthands.
//!
//! A local time that a daylight-saving change skips fires shifted forward
//! by the gap (02:30 on a spring-forward night fires at 03:30); a local
//! time it repeats fires once, at the first.
//!
//! Written here rather than taken from a crate: the maintained cron crates
//! evaluate zones through chrono-tz, a second time zone database beside
//! jiff's, and schedules must agree with change windows on every zone.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed cron expression: the allowed values of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<u8>,
    hours: Vec<u8>,
    days: [bool; 32],
    months: [bool; 13],
    weekdays: [bool; 7],
    /// Whether the day-of-month / day-of-week field starts with `*` (`*`
    /// or `*/n`): as in Vixie cron, only then is it "any day" for the
    /// either-or rule.
    any_day: bool,
    any_weekday: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Years searched for the next fire before giving up (`0 0 30 2 *` never
/// fires).
const HORIZON_DAYS: i64 = 366 * 8;

impl Cron {
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let expanded = match expr.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [min, hour, dom, mon, dow] = fields.as_slice() else {
            return Err(format!(
                "{expr:?} has {} fields; a cron expression has five: minute hour day-of-month \
                 month day-of-week (e.g. \"30 2 * * MON-FRI\")",
                fields.len()
            ));
        };
        let set = |f: &str, what: &str, lo: u8, hi: u8, names: &[&str]| {
            field(f, lo, hi, names).map_err(|e| format!("{what} field {f:?}: {e}"))
        };
        let minutes = set(min, "minute", 0, 59, &[])?;
        let hours = set(hour, "hour", 0, 23, &[])?;
        let days_v = set(dom, "day-of-month", 1, 31, &[])?;
        let months_v = set(mon, "month", 1, 12, &MONTHS)?;
        let weekdays_v = set(dow, "day-of-week", 0, 7, &WEEKDAYS)?;
        let mut days = [false; 32];
        days_v.iter().for_each(|d| days[*d as usize] = true);
        let mut months = [false; 13];
        months_v.iter().for_each(|m| months[*m as usize] = true);
        let mut weekdays = [false; 7];
        weekdays_v
            .iter()
            .for_each(|d| weekdays[(*d % 7) as usize] = true);
        Ok(Cron {
            minutes,
            hours,
            days,
            months,
            weekdays,
            any_day: dom.starts_with('*'),
            any_weekday: dow.starts_with('*'),
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        if !self.months[d.month() as usize] {
            return false;
        }
        let dom = self.days[d.day() as usize];
        let dow = self.weekdays[d.weekday().to_sunday_zero_offset() as usize];
        match (self.any_day, self.any_weekday) {
            (false, false) => dom || dow,
            (true, false) => dow,
            (false, true) => dom,
            (true, true) => true,
        }
    }

    /// The first fire strictly after `after`, in `tz`; `None` if there is
    /// none within eight years.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(tz.clone()).datetime();
        let mut day = start.date();
        for _ in 0..HORIZON_DAYS {
            if self.day_matches(day) {
                for &h in &self.hours {
                    for &m in &self.minutes {
                        let t = Time::new(h as i8, m as i8, 0, 0).ok()?;
                        let local = DateTime::from_parts(day, t);
                        if local < start.with().second(0).subsec_nanosecond(0).build().ok()? {
                            continue;
                        }
                        // Gaps resolve forward, folds to the earlier instant.
                        let at = tz.to_ambiguous_zoned(local).compatible().ok()?.timestamp();
                        if at > after {
                            return Some(at);
                        }
                    }
                }
            }
            day = day.checked_add(1.day()).ok()?;
        }
        None
    }
}

/// The values one field allows, sorted and without repeats.
fn field(f: &str, lo: u8, hi: u8, names: &[&str]) -> Result<Vec<u8>, String> {
    let value = |s: &str| -> Result<u8, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            // Month names count from 1, weekday names from 0.
            return Ok(i as u8 + lo);
        }
        let v: u8 = s.parse().map_err(|_| {
            format!(
                "{s:?} is not a number{}",
                if names.is_empty() { "" } else { " or a name" }
            )
        })?;
        if v < lo || v > hi {
            return Err(format!("{v} is outside {lo}-{hi}"));
        }
        Ok(v)
    };
    let mut out = Vec::new();
    for part in f.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u8 = s
                    .parse()
                    .map_err(|_| format!("step {s:?} is not a number"))?;
                if step == 0 {
                    return Err("a step of 0 never advances".into());
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (from, to) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `a/n` runs from a to the end of the field.
                None if step > 1 || part.contains('/') => (value(r)?, hi),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if from > to {
            return Err(format!("range {from}-{to} runs backwards"));
        }
        out.extend((from..=to).step_by(step as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str, tz: &str) -> Timestamp {
        let tz = TimeZone::get(tz).unwrap();
        s.parse::<DateTime>()
            .unwrap()
            .to_zoned(tz)
            .unwrap()
            .timestamp()
    }

    fn next(expr: &str, after: &str, tz: &str) -> String {
        let zone = TimeZone::get(tz).unwrap();
        let t = Cron::parse(expr)
            .unwrap()
            .next_after(at(after, tz), &zone)
            .unwrap();
        t.to_zoned(zone).datetime().to_string()
    }

    #[test]
    fn fields_steps_ranges_names() {
        assert_eq!(
            next("*/15 * * * *", "2026-12-01T10:07", "UTC"),
            "2026-12-01T10:15:00"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-12-01T10:15", "UTC"),
            "2026-12-01T10:30:00"
        );
        assert_eq!(
            next("30 2 * * MON-FRI", "2026-12-04T03:00", "UTC"),
            "2026-12-07T02:30:00"
        );
        assert_eq!(
            next("0 9 1 JAN,jul *", "2026-12-01T00:00", "UTC"),
            "2027-01-01T09:00:00"
        );
        assert_eq!(
            next("0 0 * * 7", "2026-12-01T00:00", "UTC"),
            "2026-12-06T00:00:00"
        );
        assert_eq!(
            next("@monthly", "2026-12-01T00:00", "UTC"),
            "2027-01-01T00:00:00"
        );
        assert_eq!(
            next("5/20 * * * *", "2026-12-01T10:06", "UTC"),
            "2026-12-01T10:25:00"
        );
        // Both day fields restricted: either matches (the 13th, or a Friday).
        assert_eq!(
            next("0 0 13 * FRI", "2026-12-01T00:00", "UTC"),
            "2026-12-04T00:00:00"
        );
        assert_eq!(
            next("0 0 29 2 *", "2026-12-01T00:00", "UTC"),
            "2028-02-29T00:00:00"
        );
        let never = Cron::parse("0 0 30 2 *").unwrap();
        assert_eq!(
            never.next_after(at("2026-12-01T00:00", "UTC"), &TimeZone::UTC),
            None
        );
    }

    #[test]
    fn local_time_in_the_zone_across_daylight_saving() {
        // 02:30 does not exist in Berlin on 2027-03-28: the first instant
        // after the gap.
        assert_eq!(
            next("30 2 * * *", "2027-03-28T00:00", "Europe/Berlin"),
            "2027-03-28T03:30:00"
        );
        // 02:30 happens twice on 2026-10-25: once.
        let zone = TimeZone::get("Europe/Berlin").unwrap();
        let c = Cron::parse("30 2 * * *").unwrap();
        let first = c
            .next_after(at("2026-10-25T00:00", "Europe/Berlin"), &zone)
            .unwrap();
        let second = c.next_after(first, &zone).unwrap();
        assert_eq!(
            second.to_zoned(zone).datetime().to_string(),
            "2026-10-26T02:30:00"
        );
        assert_eq!(
            next("0 9 * * *", "2026-12-01T08:59", "America/New_York"),
            "2026-12-01T09:00:00"
        );
    }

    #[test]
    fn bad_expressions_say_which_field() {
        let e = Cron::parse("* * *").unwrap_err();
        assert!(e.contains("has 3 fields"), "{e}");
        let e = Cron::parse("60 * * * *").unwrap_err();
        assert!(e.contains("minute field \"60\": 60 is outside 0-59"), "{e}");
        let e = Cron::parse("0 0 * FOO *").unwrap_err();
        assert!(e.contains("month field"), "{e}");
        assert!(Cron::parse("*/0 * * * *").is_err());
        assert!(
            Cron::parse("5-1 * * * *")
                .unwrap_err()
                .contains("backwards")
        );
    }
}
