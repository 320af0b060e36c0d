//! Following one workflow: a snapshot, then its transitions as they
//! commit (whichever process wrote them), for Watch over gRPC and the
//! HTTP API alike.
//!
//! Invariants: the feed is subscribed *before* the first snapshot is read,
//! so no transition falls between them; when transitions may have been
//! missed (the feed lagged or resynced) the follower gets a fresh snapshot
//! instead; the stream ends after the workflow's terminal transition.

use super::Engine;
use crate::error::Result;
use interlock_core::{Event, WorkflowRecord};
use interlock_store::FeedItem;
use tokio::sync::broadcast;

/// What a follower sees next.
#[derive(Debug, Clone)]
pub enum Watched {
    /// One committed transition of the workflow.
    Transition(Event),
    /// The whole workflow as it is now (first, and after a gap).
    Snapshot(Box<WorkflowRecord>),
}

/// A follower of one workflow; see [`Engine::follow`].
pub struct Follower {
    engine: Engine,
    id: String,
    feed: broadcast::Receiver<FeedItem>,
    first: Option<WorkflowRecord>,
    done: bool,
}

impl Engine {
    /// Starts following workflow `id` (or a unique prefix of it).
    pub async fn follow(&self, id: &str) -> Result<Follower> {
        let feed = self.inner.store.subscribe();
        let first = self.status(id).await?;
        Ok(Follower {
            engine: self.clone(),
            id: first.id.clone(),
            feed,
            first: Some(first),
            done: false,
        })
    }
}

impl Follower {
    /// The workflow's full id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next thing to show; `None` once the workflow has ended (after
    /// its final transition or a snapshot of it ended) or the feed closed.
    pub async fn next(&mut self) -> Option<Watched> {
        if self.done {
            return None;
        }
        if let Some(first) = self.first.take() {
            return Some(self.snapshot(first));
        }
        loop {
            match self.feed.recv().await {
                Ok(FeedItem::Event(ev)) if ev.workflow_id == self.id => {
                    self.done = ev.block.is_none() && ev.status.is_terminal();
                    return Some(Watched::Transition(ev));
                }
                Ok(FeedItem::Event(_) | FeedItem::Request(_) | FeedItem::Stops) => {}
                Ok(FeedItem::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    let rec = self.engine.status(&self.id).await.ok()?;
                    return Some(self.snapshot(rec));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    fn snapshot(&mut self, rec: WorkflowRecord) -> Watched {
        self.done = rec.status.is_terminal();
        Watched::Snapshot(Box::new(rec))
    }
}
