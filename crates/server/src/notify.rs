//! Webhook notifications (`configs/notify.json`): the e-stop changed, a
//! workflow failed or stopped, a job was Interrupted and waits for
//! ResolveJob, an approval is requested.
//!
//! Format: `{"AllowedHosts": ["hooks.example.com"], "Webhooks": [{"Name",
//! "Url": "http://…", "Secret", "Events": [...]}]}`. A webhook whose host
//! is not allow-listed is a configuration error, so a typo or an edit
//! cannot send fleet events anywhere else.
//!
//! Delivery: events are queued in the store (bounded: past [`QUEUE_CAP`]
//! the oldest go) and a sender task POSTs them, signed with
//! `X-Interlock-Signature: sha256=<hex HMAC-SHA256 of the body with the
//! secret>`, retrying with exponential backoff for [`MAX_ATTEMPTS`]. The
//! queue survives a restart. Nothing on the execution path waits for a
//! receiver: events are taken from the change feed and the e-stop watch by
//! this module's own tasks. Delivery is at least once; a notification
//! delivered twice (a retry after a lost reply, or several replicas that
//! each saw the transition) carries the same `X-Interlock-Delivery` id.

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use interlock_core::{Escaped, Micros, Status, parse_records};
use interlock_engine::{Engine, FeedItem};
use interlock_store::{Notice, Store};
use serde::Deserialize;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Most notifications kept waiting for delivery.
pub const QUEUE_CAP: usize = 10_000;
/// Deliveries tried before a notification is given up.
pub const MAX_ATTEMPTS: u32 = 12;
const TIMEOUT: Duration = Duration::from_secs(5);

/// The event kinds a webhook can ask for.
pub const EVENTS: [&str; 5] = [
    "estop.changed",
    "workflow.failed",
    "workflow.stopped",
    "job.interrupted",
    "approval.requested",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(rename = "AllowedHosts", default)]
    allowed_hosts: Vec<String>,
    #[serde(rename = "Webhooks", default)]
    webhooks: Vec<RawHook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHook {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Url")]
    url: String,
    #[serde(rename = "Secret")]
    secret: String,
    #[serde(rename = "Events")]
    events: Vec<String>,
}

/// One webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub name: String,
    pub url: http::Uri,
    secret: String,
    pub events: Vec<String>,
}

/// The webhooks in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyConfig {
    pub hooks: Vec<Hook>,
}

impl NotifyConfig {
    /// Parses and validates notify.json. Errors name the webhook and field.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut raw: Vec<RawConfig> = parse_records(text).map_err(|e| e.to_string())?;
        if raw.len() != 1 {
            return Err(
                "notify.json holds one object: {\"AllowedHosts\": [...], \"Webhooks\": [...]}"
                    .into(),
            );
        }
        let raw = raw.remove(0);
        let mut hooks = Vec::with_capacity(raw.webhooks.len());
        for (i, h) in raw.webhooks.into_iter().enumerate() {
            let bad = |m: String| format!("Webhooks[{i}] ({:?}): {m}", h.name);
            if h.name.is_empty() || hooks.iter().any(|x: &Hook| x.name == h.name) {
                return Err(bad("Name is empty or not unique".into()));
            }
            let url: http::Uri = h.url.parse().map_err(|e| bad(format!("Url: {e}")))?;
            if url.scheme_str() != Some("http") {
                return Err(bad(
                    "Url must be http:// (send to a local relay for TLS)".into()
                ));
            }
            let host = url.host().unwrap_or_default();
            if !raw
                .allowed_hosts
                .iter()
                .any(|a| a.eq_ignore_ascii_case(host))
            {
                return Err(bad(format!(
                    "host {host:?} is not in AllowedHosts; add it there to allow sending to it"
                )));
            }
            if h.secret.len() < 16 {
                return Err(bad("Secret must be at least 16 characters".into()));
            }
            if h.events.is_empty() {
                return Err(bad("Events is empty".into()));
            }
            if let Some(e) = h.events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
                return Err(bad(format!(
                    "unknown event {e:?}; known: {}",
                    EVENTS.join(", ")
                )));
            }
            hooks.push(Hook {
                name: h.name,
                url,
                secret: h.secret,
                events: h.events,
            });
        }
        Ok(Self { hooks })
    }
}

/// HMAC-SHA256 of `body` with `secret`, as the signature header carries it.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2_next::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The notifier: queues events, delivers them.
pub struct Notifier {
    store: Arc<dyn Store>,
    config: RwLock<Arc<NotifyConfig>>,
    wake: Notify,
}

impl Notifier {
    pub fn new(store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            store,
            config: RwLock::new(Arc::default()),
            wake: Notify::new(),
        })
    }

    pub fn configure(&self, c: NotifyConfig) {
        *self.config.write().expect("notify lock") = Arc::new(c);
        self.wake.notify_one();
    }

    fn config(&self) -> Arc<NotifyConfig> {
        self.config.read().expect("notify lock").clone()
    }

    /// Queues `event` for every webhook that asks for it. Never blocks the
    /// caller on a receiver; a store error is logged.
    pub async fn publish(&self, key: &str, event: &str, body: serde_json::Value) {
        let config = self.config();
        let now = interlock_core::now_micros();
        let body = serde_json::json!({"event": event, "at": now, "data": body}).to_string();
        let notices: Vec<Notice> = config
            .hooks
            .iter()
            .filter(|h| h.events.iter().any(|e| e == event))
            .map(|h| Notice {
                id: 0,
                key: format!("{}/{key}", h.name),
                hook: h.name.clone(),
                event: event.to_string(),
                body: body.clone(),
                attempts: 0,
                next_at: now,
                created: now,
                last_error: String::new(),
            })
            .collect();
        if notices.is_empty() {
            return;
        }
        match self.store.enqueue_notices(notices, QUEUE_CAP).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(
                    dropped = n,
                    "notification queue full: the oldest were dropped"
                );
                metrics::counter!("interlock_notifications_total", "outcome" => "dropped")
                    .increment(n as u64);
            }
            Err(e) => tracing::error!(error = %e, event, "cannot queue a notification"),
        }
        self.wake.notify_one();
    }

    /// Starts the tasks that turn engine events into notifications and
    /// deliver them, until `shutdown`.
    pub fn start(self: &Arc<Self>, engine: &Engine, shutdown: CancellationToken) {
        let this = self.clone();
        let mut feed = this.store.subscribe();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = feed.recv() => r,
                };
                match item {
                    Ok(FeedItem::Event(e)) => this.on_event(e).await,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "notifier fell behind the change feed");
                    }
                    Err(_) => return,
                }
            }
        });
        let this = self.clone();
        let mut estop = engine.estop_watch();
        let stop = shutdown.clone();
        let instance = engine.instance_id();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    r = estop.changed() => if r.is_err() { return },
                }
                let st = estop.borrow_and_update().clone();
                let entries: Vec<_> = st
                    .entries()
                    .into_iter()
                    .chain(st.shared())
                    .map(|(name, e)| serde_json::json!({"name": name, "mode": e.mode.as_str(), "reason": e.reason}))
                    .collect();
                let body = serde_json::json!({
                    "server": instance,
                    "error": st.error,
                    "entries": entries,
                });
                let key = format!("estop/{instance}/{}", interlock_core::now_micros());
                this.publish(&key, "estop.changed", body).await;
            }
        });
        let this = self.clone();
        let mut approvals = engine.approval_requests();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let (id, name) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = approvals.recv() => match r {
                        Ok(x) => x,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return,
                    },
                };
                let body = serde_json::json!({"workflow": id, "name": name});
                this.publish(&format!("approval/{id}"), "approval.requested", body)
                    .await;
            }
        });
        let this = self.clone();
        tokio::spawn(async move { this.deliver(shutdown).await });
    }

    async fn on_event(&self, e: interlock_core::Event) {
        let (event, key) = match (e.block, e.job, e.status) {
            (None, None, Status::Failed) => (
                "workflow.failed",
                format!("workflow/{}/Failed", e.workflow_id),
            ),
            (None, None, Status::Stopped) => (
                "workflow.stopped",
                format!("workflow/{}/Stopped", e.workflow_id),
            ),
            (Some(b), Some(j), Status::Interrupted) => (
                "job.interrupted",
                format!("job/{}/{b}/{j}/Interrupted/{}", e.workflow_id, e.at),
            ),
            _ => return,
        };
        let body = serde_json::json!({
            "workflow": e.workflow_id,
            "block": e.block,
            "job": e.job,
            "status": e.status.as_str(),
            "message": e.message,
            "at": e.at,
        });
        self.publish(&key, event, body).await;
    }

    /// The sender: delivers due notifications, oldest first, one at a time.
    async fn deliver(&self, shutdown: CancellationToken) {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        loop {
            let now = interlock_core::now_micros();
            let due = match self.store.due_notices(now, 16).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the notification queue");
                    Vec::new()
                }
            };
            let idle = due.is_empty();
            for n in due {
                if shutdown.is_cancelled() {
                    return;
                }
                self.send(&client, n).await;
            }
            if idle {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }

    async fn send(&self, client: &Client<HttpConnector, Full<Bytes>>, n: Notice) {
        let config = self.config();
        let Some(hook) = config.hooks.iter().find(|h| h.name == n.hook) else {
            // The webhook was removed from notify.json: nobody to tell.
            let _ = self.store.notice_done(n.id).await;
            return;
        };
        let body = Bytes::from(n.body.clone());
        let req = http::Request::post(hook.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("X-Interlock-Event", &n.event)
            .header("X-Interlock-Delivery", &n.key)
            .header("X-Interlock-Signature", signature(&hook.secret, &body))
            .body(Full::new(body));
        let result = match req {
            Err(e) => Err(e.to_string()),
            Ok(req) => match tokio::time::timeout(TIMEOUT, client.request(req)).await {
                Err(_) => Err(format!("no answer within {}s", TIMEOUT.as_secs())),
                Ok(Err(e)) => Err(e.to_string()),
                Ok(Ok(r)) if r.status().is_success() => Ok(()),
                Ok(Ok(r)) => Err(format!("answered {}", r.status())),
            },
        };
        let attempts = n.attempts + 1;
        match result {
            Ok(()) => {
                metrics::counter!("interlock_notifications_total", "outcome" => "delivered")
                    .increment(1);
                let _ = self.store.notice_done(n.id).await;
            }
            Err(e) if attempts >= MAX_ATTEMPTS => {
                tracing::error!(hook = %hook.name, event = %n.event, error = %Escaped(&e),
                    attempts, "notification given up");
                metrics::counter!("interlock_notifications_total", "outcome" => "given_up")
                    .increment(1);
                let _ = self.store.notice_done(n.id).await;
            }
            Err(e) => {
                metrics::counter!("interlock_notifications_total", "outcome" => "retried")
                    .increment(1);
                let next = interlock_core::now_micros() + backoff(attempts);
                tracing::warn!(hook = %hook.name, event = %n.event, error = %Escaped(&e),
                    attempts, "notification not delivered; will retry");
                let _ = self.store.notice_failed(n.id, attempts, next, &e).await;
            }
        }
    }
}

/// Microseconds to wait after `attempts` failures: 0.5 s doubling, at
/// most 5 minutes.
fn backoff(attempts: u32) -> Micros {
    let ms = 500u64.saturating_mul(1 << attempts.min(16)).min(300_000);
    (ms * 1000) as Micros
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_validated() {
        let ok = NotifyConfig::parse(
            r#"{"AllowedHosts": ["127.0.0.1"], "Webhooks": [{"Name": "sre", "Url": "http://127.0.0.1:9/hook",
                "Secret": "0123456789abcdef", "Events": ["workflow.failed"]}]}"#,
        )
        .unwrap();
        assert_eq!(ok.hooks[0].url.port_u16(), Some(9));
        for (bad, why) in [
            (
                r#"{"Webhooks": [{"Name": "a", "Url": "http://evil.example/", "Secret": "0123456789abcdef", "Events": ["workflow.failed"]}]}"#,
                "not in AllowedHosts",
            ),
            (
                r#"{"AllowedHosts": ["h"], "Webhooks": [{"Name": "a", "Url": "https://h/", "Secret": "0123456789abcdef", "Events": ["workflow.failed"]}]}"#,
                "must be http://",
            ),
            (
                r#"{"AllowedHosts": ["h"], "Webhooks": [{"Name": "a", "Url": "http://h/", "Secret": "short", "Events": ["workflow.failed"]}]}"#,
                "at least 16",
            ),
            (
                r#"{"AllowedHosts": ["h"], "Webhooks": [{"Name": "a", "Url": "http://h/", "Secret": "0123456789abcdef", "Events": ["workflow.done"]}]}"#,
                "unknown event",
            ),
            (
                r#"{"AllowedHosts": ["h"], "Webhooks": [{"Name": "a", "Url": "http://h/", "Secret": "0123456789abcdef", "Events": []}]}"#,
                "Events is empty",
            ),
            ("", "empty"),
        ] {
            let e = NotifyConfig::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn signatures_are_hmac_sha256_and_backoff_is_bounded() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(backoff(1), 1_000_000);
        assert_eq!(backoff(30), 300_000_000);
    }
}
