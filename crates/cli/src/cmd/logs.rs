//! `interlock logs ID [--job BLOCK.JOB] [--follow]`: the log lines a
//! workflow's jobs recorded (their own messages, a command's stdout and
//! stderr, a worker's lines), oldest first.
//!
//! Without `--follow`, reads every recorded line with the Logs call, a page
//! at a time. With it, follows the Watch stream (which sends the recorded
//! lines first, then new ones as they are recorded) until the workflow
//! ends. Each line reads `TIME BLOCK.JOB#ATTEMPT STREAM| TEXT`; lines an
//! attempt dropped (beyond the server's per-attempt limit) are counted
//! where they were.

use crate::Out;
use crate::output::{outln, print_json_line, rfc3339};
use crate::target::{Target, connect};
use interlock_proto::v1;
use std::collections::HashMap;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The workflow id (or a unique prefix of it).
    id: String,
    /// Only this job's lines: its block and job index, from 0 (`1.3`).
    #[arg(long, value_name = "BLOCK.JOB", value_parser = parse_job)]
    job: Option<(u32, u32)>,
    /// Keep printing lines as they are recorded, until the workflow ends.
    #[arg(long, short)]
    follow: bool,
    /// Only lines recorded after this position (a line's `seq`).
    #[arg(long, default_value_t = 0)]
    after: u64,
}

fn parse_job(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?} is not BLOCK.JOB (two indexes from 0, like 1.3)");
    let (b, j) = s.split_once('.').ok_or_else(bad)?;
    Ok((b.parse().map_err(|_| bad())?, j.parse().map_err(|_| bad())?))
}

pub async fn run(a: Args, t: &Target, json: bool) -> Out {
    let c = connect(t).await?;
    let mut shown = Shown::default();
    if a.follow {
        use v1::watch_event::Event;
        let mut stream = c
            .raw()
            .watch(v1::WatchReq {
                id: a.id.clone(),
                logs: true,
                logs_after: a.after,
            })
            .await?
            .into_inner();
        while let Some(ev) = stream.message().await? {
            if let Some(Event::Log(l)) = ev.event
                && wanted(&a, &l)
            {
                shown.print(&l, json)?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut after = a.after;
    loop {
        let page = c
            .raw()
            .logs(v1::LogsReq {
                id: a.id.clone(),
                block: a.job.map(|(b, _)| b),
                job: a.job.map(|(_, j)| j),
                after,
                limit: 0,
            })
            .await?
            .into_inner();
        for l in &page.lines {
            shown.print(l, json)?;
        }
        if !page.more || page.next == after {
            break;
        }
        after = page.next;
    }
    if shown.last.is_empty() && !json {
        eprintln!("no log lines recorded (yet) for {}", a.id);
    }
    Ok(ExitCode::SUCCESS)
}

fn wanted(a: &Args, l: &v1::LogLine) -> bool {
    a.job
        .is_none_or(|(b, j)| l.block == b as i32 && l.job == j as i32)
}

/// The last line number printed per attempt, to count dropped lines.
#[derive(Default)]
struct Shown {
    last: HashMap<(i32, i32, u32), u64>,
}

impl Shown {
    fn print(&mut self, l: &v1::LogLine, json: bool) -> Result<(), crate::fail::Fail> {
        let prev = self
            .last
            .insert((l.block, l.job, l.attempt), l.n)
            .unwrap_or(0);
        if json {
            return print_json_line(l);
        }
        let at = rfc3339(&l.at);
        let who = format!("{}.{}#{}", l.block, l.job, l.attempt);
        if l.n > prev + 1 {
            let gap = l.n - prev - 1;
            let what = if prev == 0 { "earlier " } else { "" };
            outln!(
                "{at} {who} ({gap} {what}line{} dropped)",
                if gap == 1 { "" } else { "s" }
            )?;
        }
        outln!("{at} {who} {}| {}", l.stream, l.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_two_indexes() {
        assert_eq!(parse_job("1.3"), Ok((1, 3)));
        assert!(parse_job("1").is_err());
        assert!(parse_job("a.b").is_err());
        assert!(parse_job("-1.0").is_err());
    }
}
