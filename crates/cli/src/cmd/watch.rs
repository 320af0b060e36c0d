//! `interlock watch`: follow a workflow's Watch stream until it ends, with
//! live bars per block; also used by `submit --watch`.

use crate::fail::Fail;
use crate::output::{self, out};
use crate::target::{Target, connect};
use crate::{Out, workflow_exit};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use interlock_client::display::{status_name, tree};
use interlock_client::{Client, is_final};
use interlock_proto::v1;

#[derive(clap::Args)]
pub struct Args {
    id: String,
}

pub async fn run(a: Args, t: &Target, json: bool) -> Out {
    follow(&connect(t).await?, &a.id, json).await
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

pub async fn follow(c: &Client, id: &str, json: bool) -> Out {
    use v1::watch_event::Event;
    let mut stream = c
        .raw()
        .watch(v1::WatchReq { id: id.into() })
        .await?
        .into_inner();
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>9} {bar:24} {pos:>4}/{len:<4} {msg}")
        .expect("template");
    let mut bars: Vec<ProgressBar> = Vec::new();
    let mut state: Option<v1::StatusResp> = None;
    while let Some(ev) = stream.message().await? {
        if json {
            output::print_json_line(&ev)?;
        }
        match ev.event {
            Some(Event::Snapshot(s)) => state = Some(s),
            Some(Event::Transition(t)) => {
                if let Some(st) = state.as_mut() {
                    apply(st, &t);
                }
            }
            None => {}
        }
        let Some(st) = &state else { continue };
        if json {
            continue;
        }
        if bars.is_empty() {
            for (bi, b) in st.blocks.iter().enumerate() {
                let bar = multi.add(ProgressBar::new(b.jobs.len() as u64));
                bar.set_style(style.clone());
                bar.set_prefix(format!("block {bi}"));
                // Redraw between events too: indicatif rate-limits draws, and
                // a long job sends nothing until it ends.
                bar.enable_steady_tick(std::time::Duration::from_millis(200));
                bars.push(bar);
            }
        }
        for (b, bar) in st.blocks.iter().zip(&bars) {
            let count = |s: v1::Status| b.jobs.iter().filter(|j| j.status == s as i32).count();
            let finished = b
                .jobs
                .iter()
                .filter(|j| is_final(j.status) || j.status == v1::Status::Skipped as i32)
                .count();
            bar.set_position(finished as u64);
            bar.set_message(format!(
                "{:<10} running {} failed {}{}",
                status_name(b.status),
                count(v1::Status::Running),
                count(v1::Status::Failed),
                if b.desc.is_empty() {
                    String::new()
                } else {
                    format!("  {}", b.desc)
                }
            ));
        }
    }
    for bar in &bars {
        bar.finish();
    }
    let final_status = match state {
        Some(_) if json => c.status(id).await?.status,
        Some(_) => {
            // The stream carries statuses, not timings: print the stored tree.
            let st = c.status(id).await?;
            out!("{}", tree(&st))?;
            st.status
        }
        None => return Err(Fail::Msg(3, "the server sent no snapshot".into())),
    };
    Ok(workflow_exit(final_status))
}
