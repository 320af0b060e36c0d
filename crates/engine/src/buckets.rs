//! Token buckets whose takes are decided by the store.
//!
//! A bucket is a rule from `buckets.json`; its state lives in the store as
//! one GCRA timestamp per bucket (see [`interlock_store::gcra`]), and a take
//! is decided and recorded in one store transaction. So a take is durable
//! before the job proceeds, a restart never refills a bucket, and any number
//! of server processes sharing a database never take more than the rule
//! allows. (An in-memory limiter such as `governor` cannot be shared by
//! processes; the arithmetic is a few lines.)
//!
//! A bucket with `KeyArg` is keyed: each key (say, each site) has its own
//! level under the same rule. The key of an unkeyed bucket is always empty,
//! whatever a caller passes, and a keyed bucket refuses an empty key: a key
//! can never be used to reach a fresh level the rule does not give.

use interlock_core::{Clock, parse_records};
use interlock_store::{Gcra, Store, Take, TakeOutcome, TakeRequest};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
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
    /// For a keyed bucket, the job argument its key stands for (e.g.
    /// "site"): one level per value.
    #[serde(rename = "KeyArg", default)]
    pub key_arg: Option<String>,
}

impl BucketDef {
    /// The rule the store applies.
    pub fn gcra(&self) -> Gcra {
        Gcra::new(self.capacity, self.refill, self.period)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BucketError {
    #[error("buckets.json: {0}")]
    Config(String),
    #[error("no bucket named {0:?} is configured in buckets.json")]
    Unknown(String),
    #[error("bucket {bucket:?} is empty; next token in {}", humantime::format_duration(*.retry_after))]
    Empty {
        bucket: String,
        retry_after: Duration,
    },
    #[error("could not record the take durably: {0}")]
    Store(String),
    #[error(
        "bucket {bucket:?} is keyed by argument {key_arg:?}, so a take must name the \
         {key_arg} it is for (tokenBucket argument key)"
    )]
    NeedsKey { bucket: String, key_arg: String },
}

/// Longest Period, and longest time an empty bucket may take to fill
/// (Capacity × Period ÷ Refill). Beyond any real rule, and it keeps the
/// store's arithmetic (microseconds in an `i64`) far from overflowing or
/// wrapping into a different rule.
pub const MAX_FILL_TIME: Duration = Duration::from_secs(100 * 31_557_600);

/// Parses and validates `buckets.json` (a JSON array of bucket objects).
pub fn parse_config(text: &str) -> Result<Vec<BucketDef>, BucketError> {
    let defs: Vec<BucketDef> =
        parse_records(text).map_err(|e| BucketError::Config(e.to_string()))?;
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
        let fill = d.period.as_micros() / u128::from(d.refill) * u128::from(d.capacity);
        if d.period > MAX_FILL_TIME || fill > MAX_FILL_TIME.as_micros() {
            return Err(bad(&format!(
                "Period, and the time an empty bucket takes to fill (Capacity × Period ÷ \
                 Refill), must be at most {}",
                humantime::format_duration(MAX_FILL_TIME)
            )));
        }
        if !seen.insert(d.name.as_str()) {
            return Err(bad("duplicate Name"));
        }
        if let Some(k) = &d.key_arg
            && interlock_core::ArgFormat::Name.check(k).is_err()
        {
            return Err(bad(
                "KeyArg must be an argument name (letters, digits, '-', '_', '.'); leave it out for an unkeyed bucket",
            ));
        }
    }
    Ok(defs)
}

/// Level of one bucket (and key), for inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLevel {
    pub def: BucketDef,
    /// The key of a keyed bucket; empty otherwise.
    pub key: String,
    /// Tokens available now.
    pub available: u32,
    /// When the next token arrives; `None` when the bucket is full.
    pub next_token_in: Option<Duration>,
}

/// The configured buckets.
pub struct Buckets {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    defs: RwLock<Arc<BTreeMap<String, BucketDef>>>,
}

impl Buckets {
    /// No buckets until [`Buckets::configure`]: every take is refused.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            defs: RwLock::new(Arc::default()),
        }
    }

    /// Replaces the configuration. Takes already recorded keep counting: a
    /// changed rule is applied to them by the store at the next take.
    pub fn configure(&self, defs: Vec<BucketDef>) {
        let map = defs.into_iter().map(|d| (d.name.clone(), d)).collect();
        *self.defs.write().expect("buckets lock") = Arc::new(map);
    }

    /// The bucket's definition, if configured.
    pub fn def(&self, name: &str) -> Option<BucketDef> {
        self.defs.read().expect("buckets lock").get(name).cloned()
    }

    /// Whether a bucket of this name is configured.
    pub fn contains(&self, name: &str) -> bool {
        self.def(name).is_some()
    }

    /// Configured bucket names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.defs
            .read()
            .expect("buckets lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Takes one token (of `key`, for a keyed bucket) and records it
    /// durably before returning `Ok`. An unkeyed bucket ignores `key`; a
    /// keyed one refuses an empty key.
    pub async fn take(
        &self,
        name: &str,
        key: &str,
        who: (&str, usize, usize),
    ) -> Result<(), BucketError> {
        let def = self
            .def(name)
            .ok_or_else(|| BucketError::Unknown(name.to_string()))?;
        let key = match &def.key_arg {
            None => "",
            Some(key_arg) if key.is_empty() => {
                return Err(BucketError::NeedsKey {
                    bucket: name.to_string(),
                    key_arg: key_arg.clone(),
                });
            }
            Some(_) => key,
        };
        let req = TakeRequest {
            bucket: name.to_string(),
            key: key.to_string(),
            rule: def.gcra(),
            at: self.clock.now(),
            workflow_id: who.0.to_string(),
            block: who.1,
            job: who.2,
        };
        match self.store.take(req).await {
            Ok(TakeOutcome::Taken) => Ok(()),
            Ok(TakeOutcome::Empty { retry_after }) => Err(BucketError::Empty {
                bucket: name.to_string(),
                retry_after: round_up_secs(retry_after),
            }),
            Err(e) => Err(BucketError::Store(e.to_string())),
        }
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

    /// Current levels, sorted by name then key; every configured bucket is
    /// listed (a bucket never taken from is full). A keyed bucket lists the
    /// keys taken from, or one full line with an empty key when none is;
    /// states left from a time its keying was different are not shown.
    pub async fn levels(&self) -> Result<Vec<BucketLevel>, BucketError> {
        let defs = self.defs.read().expect("buckets lock").clone();
        let now = self.clock.now();
        let mut out = Vec::new();
        for def in defs.values() {
            let rule = def.gcra();
            let states = self
                .store
                .bucket_states(&def.name)
                .await
                .map_err(|e| BucketError::Store(e.to_string()))?;
            let mut level = |key: &str, tat| {
                let (available, next) = rule.level(tat, now);
                out.push(BucketLevel {
                    def: def.clone(),
                    key: key.to_string(),
                    available,
                    next_token_in: next.map(round_up_secs),
                });
            };
            let keyed = def.key_arg.is_some();
            let in_use: Vec<_> = states
                .iter()
                .filter(|s| s.key.is_empty() != keyed)
                .collect();
            if in_use.is_empty() {
                level("", i64::MIN / 2);
            }
            for s in in_use {
                level(&s.key, s.tat);
            }
        }
        Ok(out)
    }
}

fn round_up_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlock_core::ManualClock;
    use interlock_store::memory::MemStore;

    fn def(capacity: u32, period: &str) -> BucketDef {
        BucketDef {
            name: "b".into(),
            capacity,
            refill: 1,
            period: humantime::parse_duration(period).unwrap(),
            key_arg: None,
        }
    }

    #[tokio::test]
    async fn a_keyed_bucket_has_a_level_per_key_and_an_unkeyed_one_ignores_keys() {
        let clock = ManualClock::new(1_700_000_000_000_000);
        let store: Arc<dyn Store> = Arc::new(MemStore::new(clock.clone()));
        let b = Buckets::new(store.clone(), clock.clone());
        let keyed = BucketDef {
            name: "site".into(),
            key_arg: Some("site".into()),
            ..def(1, "30m")
        };
        b.configure(vec![keyed, def(1, "30m")]);
        let levels = b.levels().await.unwrap();
        assert_eq!(
            levels
                .iter()
                .map(|l| (l.def.name.as_str(), l.key.as_str(), l.available))
                .collect::<Vec<_>>(),
            [("b", "", 1), ("site", "", 1)],
            "nothing taken: one full line each"
        );
        b.take("site", "aab", ("w", 0, 0)).await.unwrap();
        b.take("site", "aac", ("w2", 0, 0)).await.unwrap();
        assert!(matches!(
            b.take("site", "aab", ("w3", 0, 0)).await,
            Err(BucketError::Empty { .. })
        ));
        assert_eq!(
            b.take("site", "", ("w4", 0, 0)).await,
            Err(BucketError::NeedsKey {
                bucket: "site".into(),
                key_arg: "site".into()
            })
        );
        let levels = b.levels().await.unwrap();
        assert_eq!(
            levels
                .iter()
                .map(|l| (l.def.name.as_str(), l.key.as_str(), l.available))
                .collect::<Vec<_>>(),
            [("b", "", 1), ("site", "aab", 0), ("site", "aac", 0)]
        );

        // An unkeyed bucket: a key reaches no level of its own.
        b.take("b", "aab", ("w5", 0, 0)).await.unwrap();
        assert!(matches!(
            b.take("b", "other", ("w6", 0, 0)).await,
            Err(BucketError::Empty { .. })
        ));
    }

    #[tokio::test]
    async fn takes_survive_a_new_instance_and_levels_count_down() {
        let clock = ManualClock::new(1_700_000_000_000_000);
        let store: Arc<dyn Store> = Arc::new(MemStore::new(clock.clone()));
        let b = Buckets::new(store.clone(), clock.clone());
        b.configure(vec![def(2, "1h")]);
        assert_eq!(b.levels().await.unwrap()[0].available, 2);
        assert_eq!(b.levels().await.unwrap()[0].next_token_in, None);
        b.take("b", "", ("w", 0, 0)).await.unwrap();
        let l = b.levels().await.unwrap();
        assert_eq!(l[0].available, 1);
        assert_eq!(l[0].next_token_in, Some(Duration::from_secs(3600)));
        clock.advance(Duration::from_secs(600));
        assert_eq!(
            b.levels().await.unwrap()[0].next_token_in,
            Some(Duration::from_secs(3000)),
            "the countdown moves with time"
        );

        // A new instance over the same store (a restart) sees the take.
        let b2 = Buckets::new(store.clone(), clock.clone());
        b2.configure(vec![def(2, "1h")]);
        assert_eq!(b2.levels().await.unwrap()[0].available, 1);
        b2.take("b", "", ("w", 0, 1)).await.unwrap();
        match b2.take("b", "", ("w", 0, 2)).await {
            Err(BucketError::Empty { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(3000))
            }
            other => panic!("{other:?}"),
        }
        assert!(b2.take_of("w", 0, 1).await.unwrap().is_some());
        assert_eq!(
            b2.take("nope", "", ("w", 0, 3)).await,
            Err(BucketError::Unknown("nope".into()))
        );
    }

    #[test]
    fn config_is_validated() {
        assert!(
            parse_config(r#"[{"Name": "a", "Capacity": 1, "Refill": 1, "Period": "30m"}]"#).is_ok()
        );
        assert_eq!(parse_config("[]").unwrap(), vec![]);
        for bad in [
            "",
            "  ",
            r#"[{"Name": "a", "Capacity": 0, "Refill": 1, "Period": "30m"}]"#,
            r#"[{"Name": "a", "Capacity": 1, "Refill": 1, "Period": "0s"}]"#,
            r#"[{"Name": "a", "Capacity": 1, "Refill": 1, "Period": "soon"}]"#,
            r#"[{"Name": "a", "Capacity": 1, "Refill": 1, "Period": "1m"}, {"Name": "a", "Capacity": 1, "Refill": 1, "Period": "1m"}]"#,
            r#"[{"Name": "a", "Capacity": 1, "Refill": 1, "Period": "1m", "X": 1}]"#,
            r#"[{"Name": "a", "Capacity": 1, "Refill": 1, "Period": "1m", "KeyArg": ""}]"#,
            r#"[{"Name": "a", "Capacity": 1, "Refill": 1, "Period": "1m", "KeyArg": "a b"}]"#,
        ] {
            assert!(parse_config(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_rule_the_store_cannot_represent_is_refused() {
        for bad in [
            // Found by fuzzing: overflowed the store's arithmetic at the first take.
            r#"[{"Name": "a", "Capacity": 4294967295, "Refill": 1, "Period": "30m"}]"#,
            // Found by fuzzing: wrapped to a rule of one token per microsecond.
            r#"[{"Name": "a", "Capacity": 1, "Refill": 1, "Period": "18446744073709551615s"}]"#,
            r#"[{"Name": "a", "Capacity": 1, "Refill": 1000, "Period": "101years"}]"#,
            r#"[{"Name": "a", "Capacity": 101, "Refill": 1, "Period": "1year"}]"#,
        ] {
            let e = parse_config(bad).unwrap_err().to_string();
            assert!(e.contains("must be at most 100years"), "{bad}: {e}");
        }
        // The longest rule accepted still works in the store.
        let defs =
            parse_config(r#"[{"Name": "b", "Capacity": 100, "Refill": 1, "Period": "1year"}]"#)
                .unwrap();
        assert_eq!(defs[0].gcra().window(), MAX_FILL_TIME.as_micros() as i64);
        let clock = ManualClock::new(1_780_000_000_000_000);
        let b = Buckets::new(Arc::new(MemStore::new(clock.clone())), clock);
        b.configure(defs);
        b.take("b", "", ("w", 0, 0)).await.unwrap();
        assert_eq!(b.levels().await.unwrap()[0].available, 99);
    }
}
