//! `tokenBucket{bucket, fatal}`: takes one token from a configured bucket.
//!
//! The take is recorded durably before the job succeeds. With no token the
//! job fails, saying when the next one comes; fatally when `fatal` is "true".

use async_trait::async_trait;
use interlock_core::schema::parse_bool;
use interlock_core::{ArgFormat, ArgSpec, Idempotency, JobSchema};
use interlock_engine::job::Reconciled;
use interlock_engine::{BucketError, Buckets, Job, JobCtx, JobError, Outputs};
use std::collections::BTreeMap;
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

    fn check(&self, args: &BTreeMap<String, String>) -> Result<(), String> {
        let bucket = &args["bucket"];
        if self.buckets.contains(bucket) {
            return Ok(());
        }
        let names = self.buckets.names();
        Err(format!(
            "no bucket named {bucket:?} is configured in buckets.json{}",
            if names.is_empty() {
                " (none is)".to_string()
            } else {
                format!("; configured: {}", names.join(", "))
            }
        ))
    }

    async fn run(
        &self,
        ctx: &JobCtx,
        args: &BTreeMap<String, String>,
    ) -> Result<Outputs, JobError> {
        let fatal = parse_bool(&args["fatal"]).map_err(JobError::new)?;
        let bucket = &args["bucket"];
        if ctx.cancel.is_cancelled() {
            return Err(JobError::cancelled());
        }
        match self
            .buckets
            .take(bucket, "", (&ctx.workflow_id, ctx.block, ctx.job))
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
    async fn reconcile(&self, ctx: &JobCtx, args: &BTreeMap<String, String>) -> Reconciled {
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
