//! Token buckets whose spends survive restarts.
//!
//! `governor` does the arithmetic (GCRA). Durability comes from the store:
//! every successful take is recorded before the caller may proceed, and at
//! start-up each bucket is rebuilt by replaying the recorded takes inside its
//! refill window through the same limiter. A crash can therefore only make a
//! bucket emptier than it was, never fuller.
//!
//! The limiter runs on a wall clock (persisted timestamps must be comparable
//! across restarts) that can be pinned to a past instant while replaying.

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use interlock_core::{Micros, now_micros};
use interlock_store::{Store, Take};
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// One bucket as configured in `buckets.json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketDef {
    #[serde(rename = "Name")]
    pub name: String,
    /// Most tokens the bucket holds (and starts with).
    #[serde(rename = "Capacity")]
    pub capacity: u32,
    /// Tokens added per period.
    #[serde(rename = "Refill")]
    pub refill: u32,
    /// Refill period, e.g. "30m", "1h", "90s".
    #[serde(rename = "Period", with = "humantime_serde")]
    pub period: Duration,
}

impl BucketDef {
    /// Time for one token to come back.
    pub fn per_token(&self) -> Duration {
        self.period / self.refill.max(1)
    }

    /// Time for an empty bucket to refill completely: takes older than this
    /// cannot affect the level.
    pub fn window(&self) -> Duration {
        self.per_token() * self.capacity.max(1)
    }

    fn quota(&self) -> Quota {
        let burst = NonZeroU32::new(self.capacity).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(self.per_token().max(Duration::from_nanos(1)))
            .expect("period is non-zero")
            .allow_burst(burst)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BucketError {
    #[error("buckets.json: {0}")]
    Config(String),
    #[error("no bucket named {0:?} is configured")]
    Unknown(String),
    #[error("bucket {bucket:?} is empty; next token in {}", humantime::format_duration(*.retry_after))]
    Empty {
        bucket: String,
        retry_after: Duration,
    },
    #[error("could not record the take durably: {0}")]
    Store(String),
}

/// Parses and validates `buckets.json` (a JSON array of bucket objects).
pub fn parse_config(text: &str) -> Result<Vec<BucketDef>, BucketError> {
    let defs: Vec<BucketDef> =
        serde_json::from_str(text).map_err(|e| BucketError::Config(e.to_string()))?;
    let mut seen = std::collections::HashSet::new();
    for (i, d) in defs.iter().enumerate() {
        let bad = |m: &str| BucketError::Config(format!("entry {i} ({:?}): {m}", d.name));
        if d.name.is_empty() {
            return Err(bad("Name is empty"));
        }
        if d.capacity == 0 || d.refill == 0 {
            return Err(bad("Capacity and Refill must be at least 1"));
        }
        if d.period.is_zero() {
            return Err(bad("Period must be longer than zero"));
        }
        if !seen.insert(d.name.as_str()) {
            return Err(bad("duplicate Name"));
        }
    }
    Ok(defs)
}

/// Wall clock as time since the Unix epoch, pinnable for replay.
#[derive(Debug, Clone, Default)]
struct WallClock {
    pinned_nanos: Arc<AtomicU64>,
}

impl Clock for WallClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        match self.pinned_nanos.load(Ordering::Acquire) {
            0 => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
            n => Duration::from_nanos(n),
        }
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, WallClock, NoOpMiddleware<Duration>>;

struct Bucket {
    def: BucketDef,
    clock: WallClock,
    limiter: Limiter,
    /// Takes inside the refill window (micros), oldest first: replaying
    /// them reproduces the limiter's state, which is how levels are read
    /// without spending.
    recent: Mutex<VecDeque<Micros>>,
}

/// Level of one bucket, for inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLevel {
    pub def: BucketDef,
    /// Tokens available now.
    pub available: u32,
    /// When the next token arrives; `None` when the bucket is full.
    pub next_token_in: Option<Duration>,
}

/// Replays `takes` into a fresh limiter on a pinned clock.
fn replay(def: &BucketDef, takes: impl IntoIterator<Item = Micros>) -> (WallClock, Limiter) {
    let clock = WallClock::default();
    let limiter = RateLimiter::direct_with_clock(def.quota(), clock.clone());
    for at in takes {
        clock
            .pinned_nanos
            .store((at.max(1) as u64) * 1_000, Ordering::Release);
        // A replayed take the limiter would deny (the config got stricter)
        // leaves the bucket empty, which is the safe side.
        let _ = limiter.check();
    }
    clock.pinned_nanos.store(0, Ordering::Release);
    (clock, limiter)
}

/// All configured buckets.
pub struct Buckets {
    store: Arc<dyn Store>,
    buckets: RwLock<HashMap<String, Arc<Bucket>>>,
}

impl Buckets {
    /// Builds the buckets and replays recorded takes into them.
    pub async fn new(store: Arc<dyn Store>, defs: Vec<BucketDef>) -> Result<Self, BucketError> {
        let this = Self {
            store,
            buckets: RwLock::new(HashMap::new()),
        };
        this.configure(defs).await?;
        Ok(this)
    }

    /// Replaces the configuration. Buckets whose definition did not change
    /// keep their state; new or changed ones are rebuilt from recorded takes.
    pub async fn configure(&self, defs: Vec<BucketDef>) -> Result<(), BucketError> {
        let mut next = HashMap::new();
        for def in defs {
            let existing = self.get(&def.name).filter(|b| b.def == def);
            let bucket = match existing {
                Some(b) => b,
                None => Arc::new(self.rebuild(def.clone()).await?),
            };
            next.insert(def.name, bucket);
        }
        *self.buckets.write().expect("buckets lock") = next;
        Ok(())
    }

    async fn rebuild(&self, def: BucketDef) -> Result<Bucket, BucketError> {
        let since = now_micros() - def.window().as_micros() as Micros;
        let takes: VecDeque<Micros> = self
            .store
            .takes_since(&def.name, since)
            .await
            .map_err(|e| BucketError::Store(e.to_string()))?
            .into_iter()
            .map(|t| t.at)
            .collect();
        let (clock, limiter) = replay(&def, takes.iter().copied());
        if !takes.is_empty() {
            tracing::info!(bucket = %def.name, takes = takes.len(), "bucket rebuilt from recorded takes");
        }
        Ok(Bucket {
            def,
            clock,
            limiter,
            recent: Mutex::new(takes),
        })
    }

    fn get(&self, name: &str) -> Option<Arc<Bucket>> {
        self.buckets
            .read()
            .expect("buckets lock")
            .get(name)
            .cloned()
    }

    /// Whether a bucket of this name is configured.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Takes one token and records it durably before returning `Ok`.
    pub async fn take(&self, name: &str, who: (&str, usize, usize)) -> Result<(), BucketError> {
        let bucket = self
            .get(name)
            .ok_or_else(|| BucketError::Unknown(name.to_string()))?;
        if let Err(not_until) = bucket.limiter.check() {
            let now = bucket.clock.now();
            return Err(BucketError::Empty {
                bucket: name.to_string(),
                retry_after: round_up_secs(not_until.earliest_possible().saturating_sub(now)),
            });
        }
        // The token is gone from memory whatever happens next; if recording
        // fails the caller must not proceed.
        let at = now_micros();
        {
            let mut recent = bucket.recent.lock().expect("recent lock");
            let horizon = at - bucket.def.window().as_micros() as Micros;
            while recent.front().is_some_and(|t| *t < horizon) {
                recent.pop_front();
            }
            recent.push_back(at);
        }
        self.store
            .record_take(Take {
                bucket: name.to_string(),
                at,
                workflow_id: who.0.to_string(),
                block: who.1,
                job: who.2,
            })
            .await
            .map_err(|e| BucketError::Store(e.to_string()))
    }

    /// Whether a take was recorded for this job.
    pub async fn take_of(
        &self,
        workflow_id: &str,
        block: usize,
        job: usize,
    ) -> Result<Option<Take>, BucketError> {
        self.store
            .take_of(workflow_id, block, job)
            .await
            .map_err(|e| BucketError::Store(e.to_string()))
    }

    /// Current levels, sorted by name. Reads without spending: the recent
    /// takes are replayed into a throwaway limiter, which is then drained;
    /// the number of tokens drained is the level, and the wait reported by
    /// the first refusal is exactly the time until the next token.
    pub fn levels(&self) -> Vec<BucketLevel> {
        let buckets: Vec<_> = self
            .buckets
            .read()
            .expect("buckets lock")
            .values()
            .cloned()
            .collect();
        let mut out: Vec<_> = buckets
            .iter()
            .map(|b| {
                let takes: Vec<Micros> = b
                    .recent
                    .lock()
                    .expect("recent lock")
                    .iter()
                    .copied()
                    .collect();
                let (clock, probe) = replay(&b.def, takes);
                let mut available = 0;
                let mut next_token_in = None;
                while available < b.def.capacity {
                    match probe.check() {
                        Ok(()) => available += 1,
                        Err(n) => {
                            next_token_in = Some(round_up_secs(
                                n.earliest_possible().saturating_sub(clock.now()),
                            ));
                            break;
                        }
                    }
                }
                BucketLevel {
                    def: b.def.clone(),
                    available,
                    next_token_in,
                }
            })
            .collect();
        out.sort_by(|a, b| a.def.name.cmp(&b.def.name));
        out
    }
}

fn round_up_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlock_store::{SqliteOptions, SqliteStore};

    fn def(capacity: u32, period: &str) -> BucketDef {
        BucketDef {
            name: "b".into(),
            capacity,
            refill: 1,
            period: humantime::parse_duration(period).unwrap(),
        }
    }

    async fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(SqliteOptions::new(dir.path().join("db"))).unwrap())
    }

    #[tokio::test]
    async fn takes_survive_a_rebuild_and_levels_do_not_spend() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir).await;
        let b = Buckets::new(s.clone(), vec![def(2, "1h")]).await.unwrap();
        assert_eq!(b.levels()[0].available, 2);
        assert_eq!(b.levels()[0].next_token_in, None);
        b.take("b", ("w", 0, 0)).await.unwrap();
        let l = b.levels();
        assert_eq!(l[0].available, 1);
        assert_eq!(
            l[0].available,
            b.levels()[0].available,
            "reading spends nothing"
        );
        let wait = l[0].next_token_in.unwrap();
        assert!(
            wait > Duration::from_secs(3590) && wait <= Duration::from_secs(3600),
            "{wait:?}"
        );

        // A new instance over the same store (a restart) sees the take.
        let b2 = Buckets::new(s.clone(), vec![def(2, "1h")]).await.unwrap();
        assert_eq!(b2.levels()[0].available, 1);
        b2.take("b", ("w", 0, 1)).await.unwrap();
        match b2.take("b", ("w", 0, 2)).await {
            Err(BucketError::Empty { retry_after, .. }) => {
                assert!(
                    retry_after > Duration::from_secs(3500)
                        && retry_after <= Duration::from_secs(3600)
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.takes_since("b", 0).await.unwrap().len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_takes_on_capacity_one_let_exactly_one_through() {
        let dir = tempfile::tempdir().unwrap();
        let b = Arc::new(
            Buckets::new(store(&dir).await, vec![def(1, "30m")])
                .await
                .unwrap(),
        );
        let mut tasks = Vec::new();
        for i in 0..50 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                b.take("b", ("w", 0, i)).await.is_ok()
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += t.await.unwrap() as usize;
        }
        assert_eq!(ok, 1);
    }

    #[test]
    fn config_is_validated() {
        assert!(
            parse_config(r#"[{"Name": "a", "Capacity": 1, "Refill": 1, "Period": "30m"}]"#).is_ok()
        );
        for bad in [
            r#"[{"Name": "a", "Capacity": 0, "Refill": 1, "Period": "30m"}]"#,
            r#"[{"Name": "a", "Capacity": 1, "Refill": 1, "Period": "0s"}]"#,
            r#"[{"Name": "a", "Capacity": 1, "Refill": 1, "Period": "soon"}]"#,
            r#"[{"Name": "a", "Capacity": 1, "Refill": 1, "Period": "1m"}, {"Name": "a", "Capacity": 1, "Refill": 1, "Period": "1m"}]"#,
            r#"[{"Name": "a", "Capacity": 1, "Refill": 1, "Period": "1m", "X": 1}]"#,
        ] {
            assert!(parse_config(bad).is_err(), "{bad}");
        }
    }
}
