//! The change feed over LISTEN/NOTIFY.
//!
//! Each committed batch announces its items with `pg_notify` on
//! [`CHANNEL`], in the same transaction, so every replica (this one
//! included) hears them in commit order. A dedicated connection listens and
//! republishes them on a local broadcast. Payloads are limited to 8000
//! bytes by PostgreSQL: items are sent in chunks under that, and a single
//! oversized item has its message cut.
//!
//! When the listening connection drops, items may have been missed:
//! subscribers get [`FeedItem::Resync`] and re-read what they follow, and
//! the listener reconnects with backoff.

use interlock_core::{Event, Status};
use interlock_store::{ControlRequest, FeedItem, RequestKind, TaskKey};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;

pub const CHANNEL: &str = "interlock_feed";

/// Announces one chunk of [`encode`]d items on [`CHANNEL`].
pub const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// Payloads stay under PostgreSQL's 8000-byte limit.
const MAX_PAYLOAD: usize = 7_500;
/// A message longer than this is cut (it is in the record in full).
const MAX_MESSAGE: usize = 2_000;

#[derive(Serialize, Deserialize)]
#[serde(tag = "t")]
enum Wire {
    #[serde(rename = "e")]
    Event {
        w: String,
        at: i64,
        b: Option<usize>,
        j: Option<usize>,
        s: i32,
        m: String,
    },
    #[serde(rename = "r")]
    Request {
        id: i64,
        w: String,
        k: String,
        m: String,
        at: i64,
    },
    #[serde(rename = "s")]
    Stops,
    #[serde(rename = "l")]
    Logs { w: String },
    #[serde(rename = "t")]
    Task {
        w: String,
        b: usize,
        j: usize,
        y: String,
        o: bool,
    },
}

fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_MESSAGE) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn wire(item: &FeedItem) -> Option<Wire> {
    Some(match item {
        FeedItem::Event(e) => Wire::Event {
            w: e.workflow_id.clone(),
            at: e.at,
            b: e.block,
            j: e.job,
            s: e.status as i32,
            m: clip(&e.message),
        },
        FeedItem::Request(r) => Wire::Request {
            id: r.id,
            w: r.workflow_id.clone(),
            k: r.kind.as_str().into(),
            m: clip(&r.reason),
            at: r.at,
        },
        FeedItem::Stops => Wire::Stops,
        FeedItem::Logs(w) => Wire::Logs { w: w.clone() },
        FeedItem::Task {
            key,
            job_type,
            open,
        } => Wire::Task {
            w: key.workflow_id.clone(),
            b: key.block,
            j: key.job,
            y: job_type.clone(),
            o: *open,
        },
        FeedItem::Resync => return None,
    })
}

/// Items as JSON-array payloads, each under the size limit.
pub fn encode(items: &[FeedItem]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::from("[");
    for item in items.iter().filter_map(wire) {
        let one = serde_json::to_string(&item).expect("plain data serializes");
        if cur.len() + one.len() + 2 > MAX_PAYLOAD && cur.len() > 1 {
            cur.push(']');
            out.push(std::mem::replace(&mut cur, String::from("[")));
        }
        if cur.len() > 1 {
            cur.push(',');
        }
        cur.push_str(&one);
    }
    if cur.len() > 1 {
        cur.push(']');
        out.push(cur);
    }
    out
}

/// A payload back into items; a payload that cannot be read means items
/// were lost.
pub fn decode(payload: &str) -> Vec<FeedItem> {
    let Ok(items) = serde_json::from_str::<Vec<Wire>>(payload) else {
        return vec![FeedItem::Resync];
    };
    items
        .into_iter()
        .map(|w| match w {
            Wire::Event { w, at, b, j, s, m } => match Status::from_i32(s) {
                Some(status) => FeedItem::Event(Event {
                    workflow_id: w,
                    at,
                    block: b,
                    job: j,
                    status,
                    message: m,
                }),
                None => FeedItem::Resync,
            },
            Wire::Request { id, w, k, m, at } => match RequestKind::parse(&k) {
                Some(kind) => FeedItem::Request(ControlRequest {
                    id,
                    workflow_id: w,
                    kind,
                    reason: m,
                    at,
                }),
                None => FeedItem::Resync,
            },
            Wire::Stops => FeedItem::Stops,
            Wire::Logs { w } => FeedItem::Logs(w),
            Wire::Task { w, b, j, y, o } => FeedItem::Task {
                key: TaskKey {
                    workflow_id: w,
                    block: b,
                    job: j,
                },
                job_type: y,
                open: o,
            },
        })
        .collect()
}

/// Listens on its own connection and republishes every item on `events`,
/// reconnecting (and announcing a resync) whenever the connection drops.
/// Runs until the task is aborted (the store closes).
pub async fn listen(config: tokio_postgres::Config, events: broadcast::Sender<FeedItem>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let e = listen_once(&config, &events, &mut backoff).await;
        tracing::warn!(error = %e, retry_in = ?backoff, "change feed connection lost");
        let _ = events.send(FeedItem::Resync);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Listens until the connection fails; returns why.
async fn listen_once(
    config: &tokio_postgres::Config,
    events: &broadcast::Sender<FeedItem>,
    backoff: &mut Duration,
) -> String {
    let (client, mut conn) = match config.connect(tokio_postgres::NoTls).await {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(Ok(n.payload().to_string())).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let _ = tx.send(Err(e));
                    return;
                }
                None => return,
            }
        }
    });
    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
        driver.abort();
        return e.to_string();
    }
    *backoff = Duration::from_millis(100);
    // Anything before LISTEN took effect is unknown to subscribers.
    let _ = events.send(FeedItem::Resync);
    let why = loop {
        match rx.recv().await {
            Some(Ok(payload)) => {
                for item in decode(&payload) {
                    let _ = events.send(item);
                }
            }
            Some(Err(e)) => break e.to_string(),
            None => break "the connection ended".to_string(),
        }
    };
    driver.abort();
    drop(client);
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_in_chunks_under_the_limit() {
        let items: Vec<FeedItem> = (0..200)
            .map(|i| {
                FeedItem::Event(Event {
                    workflow_id: format!("w{i}"),
                    at: i,
                    block: Some(1),
                    job: (i % 2 == 0).then_some(3),
                    status: Status::Running,
                    message: "x".repeat(if i == 7 { 10_000 } else { 20 }),
                })
            })
            .chain([FeedItem::Stops])
            .collect();
        let chunks = encode(&items);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.len() < 8_000));
        let back: Vec<FeedItem> = chunks.iter().flat_map(|c| decode(c)).collect();
        assert_eq!(back.len(), items.len());
        assert_eq!(back[3], items[3]);
        let FeedItem::Event(cut) = &back[7] else {
            panic!()
        };
        assert!(cut.message.len() < 2_100, "an oversized message is cut");
        assert_eq!(decode("not json"), [FeedItem::Resync]);
    }
}
