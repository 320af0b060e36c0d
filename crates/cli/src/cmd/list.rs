//! `interlock list`: workflows matching filters, newest first, a page at a time.

use crate::Out;
use crate::fail::Fail;
use crate::output::{outln, print_json, rfc3339};
use crate::target::{Target, connect};
use interlock_client::display::status_name;
use interlock_proto::v1;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    name: Option<String>,
    /// Status filter (repeatable), e.g. Running, Failed.
    #[arg(long = "status")]
    statuses: Vec<String>,
    /// Label filter key=value (repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,
    #[arg(long, default_value = "20")]
    limit: i32,
    /// Continue from a previous listing's next page token.
    #[arg(long, default_value = "")]
    page_token: String,
}

pub async fn run(a: Args, t: &Target, json: bool) -> Out {
    let mut req = v1::ListReq {
        name: a.name.unwrap_or_default(),
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
    for l in a.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| Fail::Msg(2, format!("label {l:?} is not key=value")))?;
        req.labels.insert(k.into(), v.into());
    }
    let r = connect(t).await?.raw().list(req).await?.into_inner();
    if json {
        print_json(&r)?;
    } else {
        for w in &r.workflows {
            outln!(
                "{}  {:<11} {:<22} {}  {}",
                w.id,
                status_name(w.status),
                w.name,
                rfc3339(&w.created),
                w.reason
            )?;
        }
        if !r.next_page_token.is_empty() {
            outln!("more: --page-token {}", r.next_page_token)?;
        }
    }
    Ok(ExitCode::SUCCESS)
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
}
