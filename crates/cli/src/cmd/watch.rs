//! `interlock watch`: follow a workflow's Watch stream until it ends; also
//! used by `submit --watch` and `clone --watch`.
//!
//! On a terminal, one live bar per block; otherwise one plain line per
//! transition, for logs and scripts. Either way the stored tree follows
//! once the stream ends. With `--json`, one JSON document per event.

use crate::fail::Fail;
use crate::output::{self, out, outln};
use crate::target::{Target, connect};
use crate::{Out, workflow_exit};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use interlock_client::Client;
use interlock_client::display::{status_name, tree};
use interlock_proto::pbjson_types::Timestamp;
use interlock_proto::v1;
use std::io::IsTerminal;
use std::time::SystemTime;

#[derive(clap::Args)]
pub struct Args {
    id: String,
    /// Show the jobs' log lines too, as they are recorded.
    #[arg(long)]
    logs: bool,
}

pub async fn run(a: Args, t: &Target, json: bool) -> Out {
    follow(&connect(t).await?, &a.id, json, a.logs).await
}

/// Follows `id` to its end (with the jobs' log lines when `logs`); exits
/// 1 unless it ends Completed.
pub(crate) async fn follow(c: &Client, id: &str, json: bool, logs: bool) -> Out {
    use v1::watch_event::Event;
    let mut stream = c
        .raw()
        .watch(v1::WatchReq {
            id: id.into(),
            logs,
            logs_after: 0,
        })
        .await?
        .into_inner();
    let mut view = if json {
        View::Json
    } else if std::io::stdout().is_terminal() {
        View::Bars(Bars::default())
    } else {
        View::Lines
    };
    let mut state: Option<v1::StatusResp> = None;
    let mut shown = super::logs::Shown::default();
    while let Some(ev) = stream.message().await? {
        if let View::Json = view {
            output::print_json_line(&ev)?;
        }
        match ev.event {
            Some(Event::Snapshot(s)) => {
                if let View::Lines = view {
                    match &state {
                        None => outln!("{} watching {}", now(), summary(&s))?,
                        Some(old) => resync_lines(old, &s)?,
                    }
                }
                state = Some(s);
            }
            Some(Event::Transition(t)) => {
                if let Some(st) = state.as_mut() {
                    apply(st, &t);
                    if let View::Lines = view {
                        let at = t.at.as_ref().map_or_else(now, stamp);
                        outln!("{at} {}", transition_line(st, &t))?;
                    }
                }
            }
            Some(Event::Log(l)) => {
                for line in shown.lines(&l) {
                    match &view {
                        View::Lines => outln!("{line}")?,
                        // Above the bars, which keep their place.
                        View::Bars(b) => match &b.multi {
                            Some(m) => {
                                let _ = m.println(line);
                            }
                            None => outln!("{line}")?,
                        },
                        View::Json => {}
                    }
                }
            }
            None => {}
        }
        if let (View::Bars(bars), Some(st)) = (&mut view, &state) {
            bars.show(st);
        }
    }
    if let View::Bars(bars) = &view {
        bars.leave();
    }
    if state.is_none() {
        return Err(Fail::Msg(3, "the server sent no snapshot".into()));
    }
    let st = c.status(id).await?;
    if !json {
        // The stream carries statuses, not timings: print the stored tree.
        out!("{}", tree(&st))?;
    }
    Ok(workflow_exit(st.status))
}

enum View {
    Json,
    Bars(Bars),
    Lines,
}

/// One bar per block, drawn on stdout (a terminal).
#[derive(Default)]
struct Bars {
    multi: Option<MultiProgress>,
    bars: Vec<ProgressBar>,
}

impl Bars {
    fn show(&mut self, st: &v1::StatusResp) {
        let multi = self
            .multi
            .get_or_insert_with(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        if self.bars.is_empty() {
            let style =
                ProgressStyle::with_template("{prefix:>9} {bar:24} {pos:>4}/{len:<4} {msg}")
                    .expect("template");
            for (bi, b) in st.blocks.iter().enumerate() {
                let bar = multi.add(ProgressBar::new(b.jobs.len() as u64));
                bar.set_style(style.clone());
                bar.set_prefix(format!("block {bi}"));
                // Redraw between events too: indicatif rate-limits draws, and
                // a long job sends nothing until it ends.
                bar.enable_steady_tick(std::time::Duration::from_millis(200));
                self.bars.push(bar);
            }
        }
        for (b, bar) in st.blocks.iter().zip(&self.bars) {
            let (done, _) = progress(b);
            bar.set_position(done as u64);
            bar.set_message(block_message(b));
        }
    }

    /// Stops drawing and leaves the bars as they are. (`finish` would fill
    /// them, which would show unfinished blocks as done.)
    fn leave(&self) {
        for bar in &self.bars {
            bar.abandon();
        }
    }
}

/// Jobs of the block that really finished (Completed, Failed or Skipped),
/// and all its jobs. Cancelled, Stopped or Interrupted jobs did not finish.
fn progress(b: &v1::BlockStatus) -> (usize, usize) {
    use v1::Status as S;
    let done = b
        .jobs
        .iter()
        .filter(|j| {
            matches!(
                S::try_from(j.status),
                Ok(S::Completed | S::Failed | S::Skipped)
            )
        })
        .count();
    (done, b.jobs.len())
}

fn block_message(b: &v1::BlockStatus) -> String {
    let count = |s: v1::Status| b.jobs.iter().filter(|j| j.status == s as i32).count();
    let desc = if b.desc.is_empty() {
        String::new()
    } else {
        format!("  {}", b.desc)
    };
    format!(
        "{:<10} running {} failed {}{desc}",
        status_name(b.status),
        count(v1::Status::Running),
        count(v1::Status::Failed),
    )
}

/// Applies one transition to the local picture of the workflow.
fn apply(st: &mut v1::StatusResp, t: &v1::Transition) {
    match (t.block, t.job) {
        (-1, _) => {
            st.status = t.status;
            if !t.message.is_empty() {
                st.reason = t.message.clone();
            }
        }
        (b, -1) => {
            if let Some(b) = st.blocks.get_mut(b as usize) {
                b.status = t.status;
            }
        }
        (b, j) => {
            if let Some(j) = st
                .blocks
                .get_mut(b as usize)
                .and_then(|b| b.jobs.get_mut(j as usize))
            {
                j.status = t.status;
                j.error = t.message.clone();
            }
        }
    }
}

/// "NAME ID: Running, 3/8 jobs done".
fn summary(st: &v1::StatusResp) -> String {
    let (done, total) = st
        .blocks
        .iter()
        .map(progress)
        .fold((0, 0), |(d, t), (bd, bt)| (d + bd, t + bt));
    format!(
        "{} {}: {}, {done}/{total} jobs done",
        st.name,
        st.id,
        status_name(st.status)
    )
}

/// `block 1 job 3 diskErase Completed`, `block 1 Running`,
/// `workflow Stopped: <reason>`.
fn transition_line(st: &v1::StatusResp, t: &v1::Transition) -> String {
    let what = match (t.block, t.job) {
        (-1, _) => "workflow".to_string(),
        (b, -1) => format!("block {b}"),
        (b, j) => {
            let name = st
                .blocks
                .get(b as usize)
                .and_then(|bs| bs.jobs.get(j as usize))
                .map_or("?", |js| js.name.as_str());
            format!("block {b} job {j} {name}")
        }
    };
    let msg = if t.message.is_empty() {
        String::new()
    } else {
        format!(": {}", t.message)
    };
    format!("{what} {}{msg}", status_name(t.status))
}

/// After a fresh snapshot (this watcher fell behind), the lines for what
/// changed meanwhile, so the log misses nothing.
fn resync_lines(old: &v1::StatusResp, new: &v1::StatusResp) -> Result<(), Fail> {
    // The recorded time of the change where there is one, else now.
    let when = |ended: &Option<Timestamp>, started: &Option<Timestamp>| {
        ended.as_ref().or(started.as_ref()).map_or_else(now, stamp)
    };
    let line = |block: i32, job: i32, status: i32, message: &str, at: String| {
        let t = v1::Transition {
            at: None,
            block,
            job,
            status,
            message: message.to_string(),
        };
        format!("{at} {}", transition_line(new, &t))
    };
    for (bi, b) in new.blocks.iter().enumerate() {
        let ob = old.blocks.get(bi);
        for (ji, j) in b.jobs.iter().enumerate() {
            if ob.and_then(|ob| ob.jobs.get(ji)).map(|oj| oj.status) != Some(j.status) {
                let at = when(&j.ended, &j.started);
                outln!("{}", line(bi as i32, ji as i32, j.status, &j.error, at))?;
            }
        }
        if ob.map(|ob| ob.status) != Some(b.status) {
            let at = when(&b.ended, &b.started);
            outln!("{}", line(bi as i32, -1, b.status, "", at))?;
        }
    }
    if old.status != new.status {
        let at = when(&new.ended, &new.started);
        outln!("{}", line(-1, -1, new.status, &new.reason, at))?;
    }
    Ok(())
}

pub(crate) fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// RFC 3339 with milliseconds, UTC.
pub(crate) fn stamp(t: &Timestamp) -> String {
    let at = SystemTime::UNIX_EPOCH
        + std::time::Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32);
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(status: v1::Status, jobs: &[v1::Status]) -> v1::BlockStatus {
        v1::BlockStatus {
            status: status as i32,
            jobs: jobs
                .iter()
                .map(|s| v1::JobStatus {
                    status: *s as i32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_jobs_that_finished_count_as_done() {
        use v1::Status as S;
        let not_started = block(S::NotStarted, &[S::NotStarted, S::NotStarted]);
        assert_eq!(progress(&not_started), (0, 2));
        let stopped = block(
            S::Stopped,
            &[S::Completed, S::Failed, S::Cancelled, S::Stopped],
        );
        assert_eq!(progress(&stopped), (2, 4));
        assert!(block_message(&stopped).starts_with("Stopped"));
        let resolved = block(S::Completed, &[S::Skipped, S::Completed]);
        assert_eq!(progress(&resolved), (2, 2));
    }
}
