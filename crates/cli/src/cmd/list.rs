//! `interlock list`: workflows matching filters, newest first, a page at a
//! time, as a table or JSON.

use crate::Out;
use crate::fail::Fail;
use crate::output::{outln, print_json};
use crate::target::{Target, connect};
use interlock_client::display::status_name;
use interlock_proto::pbjson_types::Timestamp;
use interlock_proto::v1;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

#[derive(clap::Args)]
pub struct Args {
    /// Exact workflow name.
    #[arg(long)]
    name: Option<String>,
    /// Status filter (repeatable, any case), e.g. running, Failed.
    #[arg(long = "status")]
    statuses: Vec<String>,
    /// Label filter key=value (repeatable).
    #[arg(long = "label", value_parser = super::parse_label)]
    labels: Vec<(String, String)>,
    /// Created at or after: a duration ago (2h, 30m) or an RFC 3339 time.
    #[arg(long, value_parser = parse_when)]
    since: Option<Timestamp>,
    /// Created before: a duration ago (2h, 30m) or an RFC 3339 time.
    #[arg(long, value_parser = parse_when)]
    until: Option<Timestamp>,
    #[arg(long, default_value = "20")]
    limit: i32,
    /// Continue from a previous listing's next page token.
    #[arg(long, default_value = "")]
    page_token: String,
}

/// The table is cut to about this width (the REASON column gives way).
const WIDTH: usize = 120;

/// An ID column shows at least this much: the millisecond timestamp part
/// of a UUIDv7, e.g. 01a20a33-316e.
const SHORT_ID: usize = 13;

pub async fn run(a: Args, t: &Target, json: bool) -> Out {
    let mut req = v1::ListReq {
        name: a.name.unwrap_or_default(),
        created_from: a.since,
        created_to: a.until,
        page_size: a.limit,
        page_token: a.page_token,
        ..Default::default()
    };
    for s in a.statuses {
        let v = parse_status(&s).ok_or_else(|| {
            let names: Vec<_> = statuses().map(|(name, _)| name).collect();
            Fail::Msg(
                2,
                format!("unknown status {s:?}; one of {}", names.join(", ")),
            )
        })?;
        req.statuses.push(v as i32);
    }
    req.labels.extend(a.labels);
    let r = connect(t).await?.raw().list(req).await?.into_inner();
    if json {
        print_json(&r)?;
    } else {
        if r.workflows.is_empty() {
            // On stderr, like a table's absence: stdout stays empty for scripts.
            let _ = writeln!(std::io::stderr(), "no workflows match");
        } else {
            for line in table(&r.workflows, SystemTime::now()) {
                outln!("{line}")?;
            }
        }
        if !r.next_page_token.is_empty() {
            outln!("more: --page-token {}", r.next_page_token)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The header and one line per workflow, columns aligned.
fn table(rows: &[v1::WorkflowSummary], now: SystemTime) -> Vec<String> {
    let ids: Vec<&str> = rows.iter().map(|w| w.id.as_str()).collect();
    let id_len = short_id_len(&ids);
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|w| {
            let created = w.created.as_ref().map(system_time);
            [
                w.id.chars().take(id_len).collect(),
                status_name(w.status).to_string(),
                w.name.clone(),
                created.map_or_else(
                    || "-".into(),
                    |c| humantime::format_rfc3339_seconds(c).to_string(),
                ),
                created.map_or_else(|| "-".into(), |c| age(now, c)),
                w.reason.replace(['\n', '\r'], " "),
            ]
        })
        .collect();
    let header = ["ID", "STATUS", "NAME", "CREATED", "AGE", "REASON"].map(String::from);
    let mut widths = [0; 5];
    for row in std::iter::once(&header).chain(&cells) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let used: usize = widths.iter().map(|w| w + 2).sum();
    let reason_width = WIDTH.saturating_sub(used).max(20);
    std::iter::once(&header)
        .chain(&cells)
        .map(|row| {
            let mut line = String::new();
            for (w, cell) in widths.iter().zip(row) {
                line.push_str(&format!("{cell:<w$}  "));
            }
            line.push_str(&truncate(&row[5], reason_width));
            line.trim_end().to_string()
        })
        .collect()
}

/// How many leading characters tell the ids apart: at least [`SHORT_ID`],
/// more when two share that much, never ending on a hyphen.
fn short_id_len(ids: &[&str]) -> usize {
    let longest = ids.iter().map(|id| id.chars().count()).max().unwrap_or(0);
    let prefix = |id: &str, n: usize| id.chars().take(n).collect::<String>();
    let mut n = SHORT_ID;
    while n < longest {
        let ends_on_hyphen = ids.iter().any(|id| id.chars().nth(n - 1) == Some('-'));
        let mut seen = std::collections::HashSet::new();
        if !ends_on_hyphen && ids.iter().all(|id| seen.insert(prefix(id, n))) {
            return n;
        }
        n += 1;
    }
    longest
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut cut: String = s.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// "45s", "3m", "2h", "5d": the largest whole unit.
fn age(now: SystemTime, then: SystemTime) -> String {
    let s = now.duration_since(then).unwrap_or_default().as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn system_time(t: &Timestamp) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32)
}

/// A time given as a duration ago ("2h", "30m") or as RFC 3339
/// ("2026-11-30T20:00:00Z", offsets allowed).
pub(crate) fn parse_when(s: &str) -> Result<Timestamp, String> {
    // The protobuf JSON mapping's parser, offsets included.
    if let Ok(t) = serde_json::from_value::<Timestamp>(serde_json::Value::String(s.into())) {
        return Ok(t);
    }
    let ago = humantime::parse_duration(s).map_err(|_| {
        format!(
            "{s:?} is neither a duration ago (2h, 30m) nor an RFC 3339 time (2026-11-30T20:00:00Z)"
        )
    })?;
    let at = SystemTime::now()
        .checked_sub(ago)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .ok_or_else(|| format!("{s:?} ago is before 1970"))?;
    Ok(Timestamp {
        seconds: at.as_secs() as i64,
        nanos: at.subsec_nanos() as i32,
    })
}

/// Every status a workflow can have, by its plain name ("NotStarted").
fn statuses() -> impl Iterator<Item = (&'static str, v1::Status)> {
    (1..)
        .map_while(|i| v1::Status::try_from(i).ok())
        .map(|s| (s.as_str_name().trim_start_matches("Status"), s))
}

/// A status by name in any case, with or without the wire's "Status"
/// prefix or underscores: running, RUNNING, StatusRunning, not_started.
fn parse_status(s: &str) -> Option<v1::Status> {
    let folded = s.replace(['_', '-'], "").to_ascii_lowercase();
    let bare = folded.strip_prefix("status").unwrap_or(&folded);
    statuses()
        .find(|(name, _)| name.eq_ignore_ascii_case(bare))
        .map(|(_, s)| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_in_any_case_and_spelling() {
        for s in [
            "running",
            "RUNNING",
            "Running",
            "StatusRunning",
            "statusrunning",
        ] {
            assert_eq!(parse_status(s), Some(v1::Status::Running), "{s}");
        }
        assert_eq!(parse_status("not_started"), Some(v1::Status::NotStarted));
        assert_eq!(parse_status("Skipped"), Some(v1::Status::Skipped));
        assert_eq!(parse_status("Unknown"), None);
        assert_eq!(parse_status("runnin"), None);
    }

    #[test]
    fn ids_are_shortened_only_as_far_as_they_stay_unique() {
        let a = "01a20a33-316e-738c-bb0f-990d6c980330";
        let b = "01a20a33-316f-738c-bb0f-990d6c980330";
        let c = "01a20a33-316e-7391-bb0f-990d6c980330";
        assert_eq!(short_id_len(&[a, b]), 13);
        assert_eq!(short_id_len(&[a]), 13);
        assert_eq!(short_id_len(&[]), 0);
        // Same millisecond: past the hyphen, to the first difference.
        assert_eq!(short_id_len(&[a, b, c]), 17);
        assert_eq!(short_id_len(&["abc", "abd"]), 3);
    }

    #[test]
    fn ages_use_the_largest_whole_unit() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ago = |s| age(now, now - Duration::from_secs(s));
        assert_eq!(ago(42), "42s");
        assert_eq!(ago(190), "3m");
        assert_eq!(ago(7300), "2h");
        assert_eq!(ago(5 * 86400 + 10), "5d");
        assert_eq!(age(now, now + Duration::from_secs(5)), "0s");
    }

    #[test]
    fn times_are_durations_ago_or_rfc3339() {
        let t = parse_when("2026-11-30T20:00:00+02:00").unwrap();
        assert_eq!(t.seconds, 1_796_061_600, "18:00Z");
        let before = SystemTime::now();
        let t = system_time(&parse_when("2h").unwrap());
        let want = before - Duration::from_secs(7200);
        assert!(t >= want - Duration::from_secs(1) && t <= want + Duration::from_secs(1));
        assert!(parse_when("yesterday").is_err());
    }

    #[test]
    fn the_table_fits_about_120_columns() {
        let created = Some(Timestamp {
            seconds: 1_796_061_600,
            nanos: 0,
        });
        let rows = vec![v1::WorkflowSummary {
            id: "01a20a33-316e-738c-bb0f-990d6c980330".into(),
            name: "SatelliteDiskErase".into(),
            status: v1::Status::Cancelled as i32,
            reason: "x".repeat(500),
            created,
            ..Default::default()
        }];
        let now = system_time(created.as_ref().unwrap()) + Duration::from_secs(190);
        let lines = table(&rows, now);
        assert_eq!(
            lines[0],
            "ID             STATUS     NAME                CREATED               AGE  REASON"
        );
        assert!(lines[1].starts_with(
            "01a20a33-316e  Cancelled  SatelliteDiskErase  2026-11-30T18:00:00Z  3m   xxx"
        ));
        assert_eq!(lines[1].chars().count(), WIDTH);
        assert!(lines[1].ends_with('…'));
    }
}
