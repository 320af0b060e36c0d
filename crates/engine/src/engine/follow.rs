//! Following one workflow: a snapshot, then its transitions as they
//! commit (whichever process wrote them), for Watch over gRPC and the
//! HTTP API alike.
//!
//! Invariants: the feed is subscribed *before* the first snapshot is read,
//! so no transition falls between them; when transitions may have been
//! missed (the feed lagged or resynced) the follower gets a fresh snapshot
//! instead; the stream ends after the workflow's terminal transition, or
//! with an error when the follower can no longer be sure to see every
//! transition (the snapshot after a gap cannot be read, or the feed closed).
//! A follower of the job logs too reads the lines after its cursor whenever
//! the feed announces some (and after the snapshot, and after a gap), before
//! it takes the next item from the feed, so lines come before the
//! transitions committed after them, and all of them before the end.

use super::Engine;
use crate::error::{EngineError, Result};
use interlock_core::{Event, LogLine, WorkflowRecord};
use interlock_store::FeedItem;
use std::collections::VecDeque;
use tokio::sync::broadcast;

/// What a follower sees next.
#[derive(Debug, Clone)]
pub enum Watched {
    /// One committed transition of the workflow.
    Transition(Event),
    /// The whole workflow as it is now (first, and after a gap).
    Snapshot(Box<WorkflowRecord>),
    /// A job's log line (when following logs).
    Log(LogLine),
}

/// Where a follower of the logs is.
struct LogCursor {
    after: u64,
    pending: VecDeque<LogLine>,
    /// Lines may have been recorded after `after`: read before going on.
    stale: bool,
}

/// A follower of one workflow; see [`Engine::follow`].
pub struct Follower {
    engine: Engine,
    id: String,
    feed: broadcast::Receiver<FeedItem>,
    first: Option<WorkflowRecord>,
    done: bool,
    logs: Option<LogCursor>,
}

impl Engine {
    /// Starts following workflow `id` (or a unique prefix of it).
    pub async fn follow(&self, id: &str) -> Result<Follower> {
        self.follow_with_logs(id, None).await
    }

    /// [`Engine::follow`], with the job log lines recorded after
    /// `logs_after` too (from the start with 0) when that is given.
    pub async fn follow_with_logs(&self, id: &str, logs_after: Option<u64>) -> Result<Follower> {
        let feed = self.inner.store.subscribe();
        let first = self.status(id).await?;
        Ok(Follower {
            engine: self.clone(),
            id: first.id.clone(),
            feed,
            first: Some(first),
            done: false,
            logs: logs_after.map(|after| LogCursor {
                after,
                pending: VecDeque::new(),
                stale: false,
            }),
        })
    }
}

impl Follower {
    /// The workflow's full id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next thing to show; `None` once the workflow has ended (after
    /// its final transition or a snapshot of it ended). An error ends the
    /// stream too: transitions may be missed from here on (the snapshot
    /// after a gap could not be read, or the store's feed closed), so the
    /// follower must start again.
    pub async fn next(&mut self) -> Option<Result<Watched>> {
        loop {
            if let Some(l) = self.logs.as_mut() {
                if let Some(line) = l.pending.pop_front() {
                    return Some(Ok(Watched::Log(line)));
                }
                if l.stale {
                    match self.engine.read_logs(&self.id, None, l.after, 0).await {
                        Ok(page) => {
                            l.after = page.next;
                            l.stale = page.more;
                            l.pending.extend(page.lines);
                            continue;
                        }
                        Err(e) => {
                            self.done = true;
                            self.logs = None;
                            return Some(Err(e));
                        }
                    }
                }
            }
            if self.done {
                return None;
            }
            if let Some(first) = self.first.take() {
                return Some(Ok(self.snapshot(first)));
            }
            match self.feed.recv().await {
                Ok(FeedItem::Event(ev)) if ev.workflow_id == self.id => {
                    self.done = ev.block.is_none() && ev.status.is_terminal();
                    return Some(Ok(Watched::Transition(ev)));
                }
                Ok(FeedItem::Logs(w)) if w == self.id => {
                    if let Some(l) = self.logs.as_mut() {
                        l.stale = true;
                    }
                }
                Ok(
                    FeedItem::Event(_)
                    | FeedItem::Request(_)
                    | FeedItem::Stops
                    | FeedItem::Logs(_)
                    | FeedItem::Task { .. },
                ) => {}
                Ok(FeedItem::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Some(match self.engine.status(&self.id).await {
                        Ok(rec) => Ok(self.snapshot(rec)),
                        Err(e) => {
                            self.done = true;
                            Err(e)
                        }
                    });
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.done = true;
                    return Some(Err(EngineError::ShuttingDown));
                }
            }
        }
    }

    fn snapshot(&mut self, rec: WorkflowRecord) -> Watched {
        self.done = rec.status.is_terminal();
        // Lines may have come (or been missed) before it.
        if let Some(l) = self.logs.as_mut() {
            l.stale = true;
        }
        Watched::Snapshot(Box::new(rec))
    }
}
