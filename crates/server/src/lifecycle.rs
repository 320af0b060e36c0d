//! Handlers for the lifecycle RPCs: Cancel, Pause, Resume, List, Watch, Clone.

use crate::convert::{micros, ts};
use crate::error::{self, bad_request, engine_status};
use crate::status::{self, View};
use interlock_core::{AuditEntry, Event, ListFilter, Status as DomainStatus, Summary};
use interlock_engine::{CloneOptions, Engine, Resolution, Watched};
use interlock_proto::v1;
use tokio::sync::mpsc;
use tonic::Status;

pub async fn cancel(e: &Engine, r: v1::CancelReq) -> Result<v1::CancelResp, Status> {
    let status = e.cancel(&r.id, &r.reason).await.map_err(engine_status)?;
    Ok(v1::CancelResp {
        status: status as i32,
    })
}

pub async fn pause(e: &Engine, r: v1::PauseReq) -> Result<v1::PauseResp, Status> {
    e.pause(&r.id, &r.reason).await.map_err(engine_status)?;
    Ok(v1::PauseResp {})
}

pub async fn resume(e: &Engine, r: v1::ResumeReq) -> Result<v1::ResumeResp, Status> {
    e.resume(&r.id).await.map_err(engine_status)?;
    Ok(v1::ResumeResp {})
}

pub async fn resolve(e: &Engine, r: v1::ResolveJobReq) -> Result<v1::ResolveJobResp, Status> {
    use v1::resolve_job_req::Action;
    let action = match Action::try_from(r.action) {
        Ok(Action::Retry) => Resolution::Retry,
        Ok(Action::Skip) => Resolution::Skip,
        Ok(Action::Cancel) => Resolution::Cancel(r.reason),
        _ => return Err(bad_request("action must be RETRY, SKIP or CANCEL")),
    };
    let index = |v: i32, what: &str| {
        usize::try_from(v).map_err(|_| bad_request(format!("{what} must be 0 or more, got {v}")))
    };
    e.resolve(
        &r.id,
        index(r.block, "block")?,
        index(r.job, "job")?,
        action,
    )
    .await
    .map_err(engine_status)?;
    Ok(v1::ResolveJobResp {})
}

/// `audit` is committed with the new workflow.
pub async fn clone(e: &Engine, r: v1::CloneReq, audit: AuditEntry) -> Result<v1::WorkResp, Status> {
    let id = e
        .clone_workflow(
            &r.id,
            CloneOptions {
                only_unfinished: r.only_unfinished,
                labels: r.labels,
                trace_id: r.trace_id,
                request_id: r.request_id,
            },
            Some(audit),
        )
        .await
        .map_err(engine_status)?;
    Ok(v1::WorkResp { id })
}

pub async fn list(e: &Engine, r: v1::ListReq) -> Result<v1::ListResp, Status> {
    let mut statuses = Vec::new();
    for s in r.statuses {
        statuses.push(
            DomainStatus::from_i32(s)
                .ok_or_else(|| bad_request(format!("unknown status {s} in statuses")))?,
        );
    }
    if r.page_size < 0 {
        return Err(bad_request(format!(
            "page_size must be 0 or more, got {}",
            r.page_size
        )));
    }
    let page = e
        .list(
            ListFilter {
                name: (!r.name.is_empty()).then_some(r.name),
                statuses,
                created_from: micros(r.created_from),
                created_to: micros(r.created_to),
                labels: r.labels.into_iter().collect(),
                after: None,
                limit: r.page_size as usize,
            },
            &r.page_token,
        )
        .await
        .map_err(engine_status)?;
    Ok(v1::ListResp {
        workflows: page.rows.into_iter().map(summary).collect(),
        next_page_token: page.next_token,
    })
}

fn summary(s: Summary) -> v1::WorkflowSummary {
    v1::WorkflowSummary {
        status: s.status as i32,
        created: ts(Some(s.created)),
        started: ts(s.started),
        ended: ts(s.ended),
        id: s.id,
        name: s.name,
        desc: s.desc,
        reason: s.reason,
        had_errors: s.had_errors,
        labels: s.labels,
        trace_id: s.trace_id,
    }
}

fn transition(e: &Event) -> v1::WatchEvent {
    v1::WatchEvent {
        event: Some(v1::watch_event::Event::Transition(v1::Transition {
            at: ts(Some(e.at)),
            block: e.block.map_or(-1, |b| b as i32),
            job: e.job.map_or(-1, |j| j as i32),
            status: e.status as i32,
            message: e.message.clone(),
        })),
    }
}

/// Buffer per watcher; when it is full the watcher's feed lags and it gets a
/// fresh snapshot instead of the missed transitions.
const WATCH_BUFFER: usize = 256;

pub async fn watch(
    e: &Engine,
    r: v1::WatchReq,
    stop: tokio_util::sync::CancellationToken,
) -> Result<mpsc::Receiver<Result<v1::WatchEvent, Status>>, Status> {
    let mut follower = e
        .follow_with_logs(&r.id, r.logs.then_some(r.logs_after))
        .await
        .map_err(engine_status)?;
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                // A watcher that went away stops costing anything at once.
                _ = tx.closed() => return,
                _ = stop.cancelled() => {
                    let _ = tx.send(Err(error::shutting_down("watch"))).await;
                    return;
                }
                next = follower.next() => next,
            };
            let event = match next {
                Some(Ok(Watched::Transition(ev))) => transition(&ev),
                Some(Ok(Watched::Snapshot(rec))) => match status::resp(*rec, View::Full) {
                    Ok(st) => v1::WatchEvent {
                        event: Some(v1::watch_event::Event::Snapshot(st)),
                    },
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                },
                Some(Ok(Watched::Log(line))) => v1::WatchEvent {
                    event: Some(v1::watch_event::Event::Log(crate::convert::log_line(&line))),
                },
                Some(Err(e)) => {
                    // Not a clean end: the client must watch again.
                    let _ = tx.send(Err(engine_status(e))).await;
                    return;
                }
                None => return,
            };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Logs: one page of a workflow's job log lines.
pub async fn logs(e: &Engine, r: v1::LogsReq) -> Result<v1::LogsResp, Status> {
    let job = match (r.block, r.job) {
        (Some(b), Some(j)) => Some((b as usize, j as usize)),
        (None, None) => None,
        _ => {
            return Err(error::bad_request(
                "give both block and job (counting from 0) to read one job's lines, or neither",
            ));
        }
    };
    let page = e
        .logs(&r.id, job, r.after, r.limit as usize)
        .await
        .map_err(engine_status)?;
    Ok(v1::LogsResp {
        lines: page.lines.iter().map(crate::convert::log_line).collect(),
        next: page.next,
        more: page.more,
    })
}
