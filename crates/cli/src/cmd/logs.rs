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
use crate::cmd::watch::{now, stamp};
use crate::output::{outln, print_json_line};
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
    // With --after, lines before it were skipped, not dropped.
    let mut shown = Shown::after(a.after);
    if a.follow {
        // The id and the job are checked as without --follow (Watch
        // itself knows nothing of jobs).
        c.raw()
            .logs(v1::LogsReq {
                id: a.id.clone(),
                block: a.job.map(|(b, _)| b),
                job: a.job.map(|(_, j)| j),
                after: a.after,
                limit: 1,
            })
            .await?;
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

/// Log lines as text, with a count where lines were dropped (a gap in an
/// attempt's numbering); also used by `watch --logs`.
#[derive(Default)]
pub(crate) struct Shown {
    /// The last line number seen per attempt.
    last: HashMap<(i32, i32, u32), u64>,
    /// Lines were skipped on purpose (`--after`): an attempt's first line
    /// shown says nothing about lines before it.
    skipped: bool,
}

impl Shown {
    fn after(after: u64) -> Self {
        Self {
            skipped: after > 0,
            ..Self::default()
        }
    }

    /// The text lines for `l`: a dropped-lines note first when there is a
    /// gap before it.
    pub(crate) fn lines(&mut self, l: &v1::LogLine) -> Vec<String> {
        let prev = self.last.insert((l.block, l.job, l.attempt), l.n);
        let at = l.at.as_ref().map_or_else(now, stamp);
        let who = format!("{}.{}#{}", l.block, l.job, l.attempt);
        let mut out = Vec::new();
        let gap = match prev {
            Some(p) => l.n.saturating_sub(p + 1),
            None if self.skipped => 0,
            None => l.n.saturating_sub(1),
        };
        if gap > 0 {
            let what = if prev.is_none() { "earlier " } else { "" };
            let s = if gap == 1 { "" } else { "s" };
            out.push(format!("{at} {who} ({gap} {what}line{s} dropped)"));
        }
        out.push(format!("{at} {who} {}| {}", l.stream, l.text));
        out
    }

    fn print(&mut self, l: &v1::LogLine, json: bool) -> Result<(), crate::fail::Fail> {
        if json {
            return print_json_line(l);
        }
        for line in self.lines(l) {
            outln!("{line}")?;
        }
        Ok(())
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
