//! `changeWindow {TimeZone, Allow?, Freezes?, PauseAtEnd?}`: work of this
//! name is admitted (Submit, Exec, Resume) only inside a change window.
//!
//! - `TimeZone`: an IANA name ("Europe/Berlin", "UTC"); every time below is
//!   local to it, daylight saving included.
//! - `Allow`: weekly windows `{"Days": ["Mon", ...], "From": "09:00", "To":
//!   "17:00"}`; `To` may be "24:00"; `From` must come before `To` (split a
//!   window over midnight in two). Left out: every hour is allowed.
//! - `Freezes`: dated periods with no change at all, `{"From":
//!   "2026-12-23T00:00", "To": "2027-01-04T00:00", "Reason": "..."}`; a
//!   freeze wins over an open window.
//! - `PauseAtEnd`: when true, a workflow already running is paused (not
//!   failed) at its next job start once the window has closed; Resume is
//!   admitted again when the next one opens.
//!
//! A refusal says why and when the next window opens, in the zone's local
//! time, so an operator knows when to try again.

use crate::{Ctx, Policy};
use interlock_core::{Catalog, Micros, Violation, WorkReq};
use jiff::civil::{DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(rename = "TimeZone")]
    pub time_zone: String,
    #[serde(rename = "Allow", default)]
    pub allow: Option<Vec<WeeklySettings>>,
    #[serde(rename = "Freezes", default)]
    pub freezes: Vec<FreezeSettings>,
    #[serde(rename = "PauseAtEnd", default)]
    pub pause_at_end: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeeklySettings {
    #[serde(rename = "Days")]
    pub days: Vec<String>,
    #[serde(rename = "From")]
    pub from: String,
    #[serde(rename = "To")]
    pub to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeSettings {
    #[serde(rename = "From")]
    pub from: String,
    #[serde(rename = "To")]
    pub to: String,
    #[serde(rename = "Reason", default)]
    pub reason: String,
}

/// A weekly window: on `days`, from `from` to `to` (minutes after local
/// midnight, `to` up to 1440).
#[derive(Debug)]
struct Weekly {
    days: Vec<Weekday>,
    from: u32,
    to: u32,
}

#[derive(Debug)]
struct Freeze {
    from: Timestamp,
    to: Timestamp,
    /// As written, for messages.
    text: String,
}

pub struct ChangeWindow {
    tz: TimeZone,
    tz_name: String,
    /// `None`: always open (only freezes close it).
    allow: Option<Vec<Weekly>>,
    freezes: Vec<Freeze>,
    pause_at_end: bool,
    /// The windows as written, for messages.
    described: String,
}

/// How far ahead the next opening is looked for.
const HORIZON_DAYS: i32 = 400;

fn weekday(s: &str) -> Result<Weekday, String> {
    Ok(match s {
        "Mon" | "Monday" => Weekday::Monday,
        "Tue" | "Tuesday" => Weekday::Tuesday,
        "Wed" | "Wednesday" => Weekday::Wednesday,
        "Thu" | "Thursday" => Weekday::Thursday,
        "Fri" | "Friday" => Weekday::Friday,
        "Sat" | "Saturday" => Weekday::Saturday,
        "Sun" | "Sunday" => Weekday::Sunday,
        _ => return Err(format!("{s:?} is not a day; write Mon, Tue, ... Sun")),
    })
}

/// "HH:MM" as minutes after midnight; "24:00" is the end of the day.
fn minutes(s: &str) -> Result<u32, String> {
    if s == "24:00" {
        return Ok(24 * 60);
    }
    let t: Time = s
        .parse()
        .map_err(|_| format!("{s:?} is not a time of day; write HH:MM, e.g. \"09:30\""))?;
    if t.second() != 0 || t.subsec_nanosecond() != 0 {
        return Err(format!("{s:?}: give hours and minutes only"));
    }
    Ok(t.hour() as u32 * 60 + t.minute() as u32)
}

impl Policy for ChangeWindow {
    const NAME: &'static str = "changeWindow";
    type Settings = Settings;

    fn new(s: Settings, _jobs: &dyn Catalog) -> Result<Self, String> {
        let tz = TimeZone::get(&s.time_zone).map_err(|_| {
            format!(
                "TimeZone {:?} is not a known IANA time zone (e.g. \"Europe/Berlin\", \"UTC\")",
                s.time_zone
            )
        })?;
        let allow = match &s.allow {
            None => None,
            Some(v) if v.is_empty() => {
                return Err(
                    "Allow is empty, so no window would ever open; leave Allow out to allow every hour"
                        .into(),
                );
            }
            Some(v) => Some(
                v.iter()
                    .enumerate()
                    .map(|(i, w)| {
                        let at = |m: String| format!("Allow[{i}]: {m}");
                        if w.days.is_empty() {
                            return Err(at("Days is empty".into()));
                        }
                        let days = w
                            .days
                            .iter()
                            .map(|d| weekday(d))
                            .collect::<Result<_, _>>()
                            .map_err(at)?;
                        let (from, to) = (minutes(&w.from).map_err(at)?, minutes(&w.to).map_err(at)?);
                        if from >= to {
                            return Err(at(format!(
                                "From {:?} must come before To {:?}; split a window over midnight in two",
                                w.from, w.to
                            )));
                        }
                        Ok(Weekly { days, from, to })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let freezes = s
            .freezes
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let at = |m: String| format!("Freezes[{i}]: {m}");
                let instant = |v: &str| {
                    let dt: DateTime = v.parse().map_err(|_| {
                        at(format!(
                            "{v:?} is not a local date and time; write e.g. \"2026-12-23T00:00\""
                        ))
                    })?;
                    dt.to_zoned(tz.clone())
                        .map(|z| z.timestamp())
                        .map_err(|e| at(format!("{v:?}: {e}")))
                };
                let (from, to) = (instant(&f.from)?, instant(&f.to)?);
                if from >= to {
                    return Err(at(format!(
                        "From {:?} must come before To {:?}",
                        f.from, f.to
                    )));
                }
                let reason = if f.reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", f.reason)
                };
                Ok(Freeze {
                    from,
                    to,
                    text: format!("a change freeze from {} to {}{reason}", f.from, f.to),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if allow.is_none() && freezes.is_empty() {
            return Err("give Allow, Freezes or both; neither means no window at all".into());
        }
        let described = match &s.allow {
            None => format!("every hour ({})", s.time_zone),
            Some(v) => format!(
                "{} ({})",
                v.iter()
                    .map(|w| format!("{} {}-{}", w.days.join(","), w.from, w.to))
                    .collect::<Vec<_>>()
                    .join("; "),
                s.time_zone
            ),
        };
        Ok(Self {
            tz,
            tz_name: s.time_zone,
            allow,
            freezes,
            pause_at_end: s.pause_at_end,
            described,
        })
    }

    fn check(&self, req: &WorkReq, ctx: &Ctx, out: &mut Vec<Violation>) {
        if let Some(why) = self.closed(ctx.now) {
            out.push(Violation::new(
                Self::NAME,
                format!(
                    "workflow {:?} is outside its change window: {why}",
                    req.name
                ),
            ));
        }
    }

    fn pauses(&self, req: &WorkReq, ctx: &Ctx) -> Option<String> {
        if !self.pause_at_end {
            return None;
        }
        self.closed(ctx.now).map(|why| {
            format!(
                "the change window of {:?} closed: {why}; resume it then",
                req.name
            )
        })
    }
}

impl ChangeWindow {
    /// `Some(why, and when the next window opens)` when closed at `now`.
    fn closed(&self, now: Micros) -> Option<String> {
        let at = Timestamp::from_microsecond(now)
            .ok()?
            .to_zoned(self.tz.clone());
        let why = self.why_closed(&at)?;
        let next = match self.next_open(&at) {
            Some(z) => format!(
                "the next window opens {} {}",
                z.strftime("%a %Y-%m-%d %H:%M"),
                self.tz_name
            ),
            None => format!("no window opens in the next {HORIZON_DAYS} days"),
        };
        Some(format!("{why}; {next}"))
    }

    /// Why changes are not allowed at `at`, if they are not.
    fn why_closed(&self, at: &Zoned) -> Option<String> {
        let ts = at.timestamp();
        if let Some(f) = self.freezes.iter().find(|f| f.from <= ts && ts < f.to) {
            return Some(format!("it is inside {}", f.text));
        }
        let allow = self.allow.as_ref()?;
        let minute = at.hour() as u32 * 60 + at.minute() as u32;
        let open = allow
            .iter()
            .any(|w| w.days.contains(&at.weekday()) && w.from <= minute && minute < w.to);
        (!open).then(|| {
            format!(
                "{} is outside the allowed windows, {}",
                at.strftime("%a %H:%M"),
                self.described
            )
        })
    }

    /// The first instant after `at` at which changes are allowed. Whether
    /// they are only changes at a window's start or a freeze's end, so
    /// those are the only candidates.
    fn next_open(&self, at: &Zoned) -> Option<Zoned> {
        let mut candidates: Vec<Zoned> = self
            .freezes
            .iter()
            .filter(|f| f.to > at.timestamp())
            .map(|f| f.to.to_zoned(self.tz.clone()))
            .collect();
        if let Some(allow) = &self.allow {
            let mut day = at.date();
            for _ in 0..HORIZON_DAYS {
                for w in allow.iter().filter(|w| w.days.contains(&day.weekday())) {
                    let start = day
                        .at((w.from / 60) as i8, (w.from % 60) as i8, 0, 0)
                        .to_zoned(self.tz.clone());
                    if let Ok(z) = start {
                        candidates.push(z);
                    }
                }
                day = day.tomorrow().ok()?;
            }
        }
        candidates.retain(|z| z.timestamp() > at.timestamp());
        candidates.sort_by_key(|z| z.timestamp());
        candidates
            .into_iter()
            .find(|z| self.why_closed(z).is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::catalog;

    fn window(settings: serde_json::Value) -> ChangeWindow {
        ChangeWindow::new(serde_json::from_value(settings).unwrap(), &catalog()).unwrap()
    }

    /// Microseconds at a local time in Europe/Berlin.
    fn berlin(s: &str) -> Micros {
        let dt: DateTime = s.parse().unwrap();
        dt.to_zoned(TimeZone::get("Europe/Berlin").unwrap())
            .unwrap()
            .timestamp()
            .as_microsecond()
    }

    fn office() -> ChangeWindow {
        window(serde_json::json!({
            "TimeZone": "Europe/Berlin",
            "Allow": [{"Days": ["Mon", "Tue", "Wed", "Thu"], "From": "09:00", "To": "17:00"}],
            "Freezes": [{"From": "2026-12-23T00:00", "To": "2027-01-04T00:00", "Reason": "holidays"}],
            "PauseAtEnd": true
        }))
    }

    #[test]
    fn edges_are_half_open_and_local() {
        let w = office();
        // 2026-12-01 is a Tuesday.
        assert_eq!(w.closed(berlin("2026-12-01T09:00")), None, "From is inside");
        assert_eq!(w.closed(berlin("2026-12-01T16:59:59")), None);
        let at_end = w.closed(berlin("2026-12-01T17:00")).unwrap();
        assert!(
            at_end.contains("Tue 17:00 is outside")
                && at_end.contains("the next window opens Wed 2026-12-02 09:00 Europe/Berlin"),
            "{at_end}"
        );
        assert!(w.closed(berlin("2026-12-01T08:59")).is_some());
        // Friday evening: the next window is Monday morning.
        let fri = w.closed(berlin("2026-12-04T18:00")).unwrap();
        assert!(fri.contains("opens Mon 2026-12-07 09:00"), "{fri}");
    }

    #[test]
    fn a_freeze_inside_an_open_window_closes_it_and_says_when_it_ends() {
        let w = office();
        // Wed 2026-12-23 10:00 would be open, but the freeze holds.
        let why = w.closed(berlin("2026-12-23T10:00")).unwrap();
        assert!(
            why.contains("inside a change freeze") && why.contains("holidays"),
            "{why}"
        );
        // The freeze ends Mon 2027-01-04 00:00; the window opens at 09:00.
        assert!(why.contains("opens Mon 2027-01-04 09:00"), "{why}");
    }

    #[test]
    fn time_zones_and_daylight_saving_are_honoured() {
        let w = window(serde_json::json!({
            "TimeZone": "America/New_York",
            "Allow": [{"Days": ["Sun"], "From": "01:00", "To": "04:00"}]
        }));
        // 2026-03-08: clocks go from 02:00 to 03:00 in New York. 01:30 EST is
        // 06:30 UTC; 03:30 EDT is 07:30 UTC; both are inside.
        let utc = |s: &str| s.parse::<Timestamp>().unwrap().as_microsecond();
        assert_eq!(w.closed(utc("2026-03-08T06:30:00Z")), None);
        assert_eq!(w.closed(utc("2026-03-08T07:30:00Z")), None);
        // 04:00 EDT = 08:00 UTC: closed.
        assert!(w.closed(utc("2026-03-08T08:00:00Z")).is_some());
        // The same UTC instant a week earlier is 03:00 EST: open.
        assert_eq!(w.closed(utc("2026-03-01T08:00:00Z")), None);
    }

    #[test]
    fn freezes_alone_and_pause_at_end() {
        let w = window(serde_json::json!({
            "TimeZone": "UTC",
            "Freezes": [{"From": "2026-12-24T00:00", "To": "2026-12-27T00:00"}]
        }));
        assert_eq!(w.closed(berlin("2026-12-01T03:00")), None);
        let why = w.closed(berlin("2026-12-25T12:00")).unwrap();
        assert!(why.contains("opens Sun 2026-12-27 00:00 UTC"), "{why}");
        let req = WorkReq {
            name: "erase".into(),
            ..Default::default()
        };
        let ctx = Ctx {
            now: berlin("2026-12-25T12:00"),
        };
        assert_eq!(w.pauses(&req, &ctx), None, "PauseAtEnd is off");
        let pausing = office().pauses(
            &req,
            &Ctx {
                now: berlin("2026-12-01T17:30"),
            },
        );
        assert!(
            pausing
                .unwrap()
                .contains("change window of \"erase\" closed")
        );
    }

    #[test]
    fn settings_are_validated() {
        for (bad, why) in [
            (
                serde_json::json!({"TimeZone": "Mars/Olympus", "Freezes": []}),
                "not a known IANA",
            ),
            (
                serde_json::json!({"TimeZone": "UTC"}),
                "give Allow, Freezes or both",
            ),
            (
                serde_json::json!({"TimeZone": "UTC", "Allow": []}),
                "Allow is empty",
            ),
            (
                serde_json::json!({"TimeZone": "UTC", "Allow": [{"Days": ["Mon"], "From": "17:00", "To": "09:00"}]}),
                "split a window over midnight",
            ),
            (
                serde_json::json!({"TimeZone": "UTC", "Allow": [{"Days": ["Mo"], "From": "09:00", "To": "17:00"}]}),
                "is not a day",
            ),
            (
                serde_json::json!({"TimeZone": "UTC", "Allow": [{"Days": ["Mon"], "From": "9am", "To": "17:00"}]}),
                "not a time of day",
            ),
            (
                serde_json::json!({"TimeZone": "UTC", "Freezes": [{"From": "2026-12-24", "To": "2026-12-23T00:00"}]}),
                "must come before",
            ),
        ] {
            let e = serde_json::from_value::<Settings>(bad.clone())
                .map_err(|e| e.to_string())
                .and_then(|s| ChangeWindow::new(s, &catalog()).map(|_| ()))
                .unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
