//! `tokenBucket{bucket, fatal, key}`: takes one token from a configured
//! bucket.
//!
//! The take is recorded durably before the job succeeds. With no token the
//! job fails, saying when the next one comes; fatally when `fatal` is "true".
//!
//! A keyed bucket (`KeyArg` in buckets.json, say "site") needs `key`, and
//! the key must be the work's (the engine checks that every other job of
//! the request carrying the key argument carries this value, and at least
//! one does), so a request cannot take from one site's level and erase
//! another site.

use async_trait::async_trait;
use interlock_core::schema::parse_bool;
use interlock_core::{ArgFormat, ArgSpec, Idempotency, JobSchema, WorkReq};
use interlock_engine::job::Reconciled;
use interlock_engine::{BucketError, Buckets, Job, JobCtx, JobError, Outputs};
use std::sync::Arc;

pub struct TokenBucket {
    schema: JobSchema,
    buckets: Arc<Buckets>,
}

impl TokenBucket {
    pub fn new(buckets: Arc<Buckets>) -> Self {
        Self {
            schema: JobSchema {
                name: "tokenBucket",
                description: "Takes one token from a bucket defined in buckets.json; fails when the bucket \
                              is empty (fatally, cancelling the workflow, when fatal is \"true\").",
                args: vec![
                    ArgSpec::required("bucket", ArgFormat::Name, "bucket name from buckets.json"),
                    ArgSpec::required(
                        "fatal",
                        ArgFormat::Bool,
                        "\"true\" to cancel the workflow when empty",
                    ),
                    ArgSpec::optional(
                        "key",
                        ArgFormat::Name,
                        "for a keyed bucket: the value of its KeyArg this take is for (e.g. the site)",
                    ),
                ],
                idempotency: Idempotency::Unsafe,
                reconcilable: true,
            },
            buckets,
        }
    }
}

#[async_trait]
impl Job for TokenBucket {
    fn schema(&self) -> &JobSchema {
        &self.schema
    }

    fn check(&self, args: &interlock_core::Args, _req: &WorkReq) -> Result<(), String> {
        let bucket = &args["bucket"];
        let Some(def) = self.buckets.def(bucket) else {
            let names = self.buckets.names();
            return Err(format!(
                "no bucket named {bucket:?} is configured in buckets.json{}",
                if names.is_empty() {
                    " (none is)".to_string()
                } else {
                    format!("; configured: {}", names.join(", "))
                }
            ));
        };
        match (&def.key_arg, args.get("key")) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err(format!(
                "bucket {bucket:?} is not keyed (buckets.json gives it no KeyArg); remove the key argument"
            )),
            (Some(k), None) => Err(format!(
                "bucket {bucket:?} is keyed by argument {k:?}: add key=<the {k} this workflow works on>"
            )),
            // Whether the key is the work's is the engine's check: it sees
            // every take of the request at once.
            (Some(_), Some(_)) => Ok(()),
        }
    }

    fn bucket_take(&self, args: &interlock_core::Args) -> Option<(String, String)> {
        let bucket = args.get("bucket")?.clone();
        // The key the take would use under the keying in force.
        let key = match self.buckets.def(&bucket).and_then(|d| d.key_arg) {
            Some(_) => args.get("key").cloned().unwrap_or_default(),
            None => String::new(),
        };
        Some((bucket, key))
    }

    async fn run(&self, ctx: &JobCtx, args: &interlock_core::Args) -> Result<Outputs, JobError> {
        let fatal = parse_bool(&args["fatal"]).map_err(JobError::new)?;
        let bucket = &args["bucket"];
        if ctx.cancel.is_cancelled() {
            return Err(JobError::cancelled());
        }
        // The buckets enforce the keying in force now (buckets.json may have
        // changed since Submit): no key for an unkeyed bucket, a key for a
        // keyed one.
        let key = args.get("key").map_or("", String::as_str);
        match self
            .buckets
            .take(bucket, key, (&ctx.workflow_id, ctx.block, ctx.job))
            .await
        {
            Ok(()) => Ok(Outputs::from([("bucket".to_string(), bucket.clone())])),
            Err(e @ BucketError::Empty { .. }) => Err(JobError::new(e.to_string()).fatal(fatal)),
            // Unknown bucket or a failed record: never proceed without a
            // durable token. Treated like an empty bucket.
            Err(e) => Err(JobError::new(e.to_string()).fatal(fatal)),
        }
    }

    /// The take is recorded durably before the job succeeds, so the store
    /// knows whether an interrupted run got its token.
    async fn reconcile(&self, ctx: &JobCtx, args: &interlock_core::Args) -> Reconciled {
        match self
            .buckets
            .take_of(&ctx.workflow_id, ctx.block, ctx.job)
            .await
        {
            Ok(Some(_)) => Reconciled::Done(Outputs::from([(
                "bucket".to_string(),
                args["bucket"].clone(),
            )])),
            Ok(None) => Reconciled::NotDone,
            Err(e) => Reconciled::Unknown(format!("cannot read recorded takes: {e}")),
        }
    }
}
