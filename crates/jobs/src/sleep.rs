//! `sleep{seconds}`: waits, and stops at once when cancelled.

use async_trait::async_trait;
use interlock_core::schema::parse_seconds;
use interlock_core::{ArgFormat, ArgSpec, Idempotency, JobSchema};
use interlock_engine::job::sleep_or_cancel;
use interlock_engine::{Job, JobCtx, JobError, Outputs};

pub struct Sleep {
    schema: JobSchema,
}

impl Sleep {
    pub fn new() -> Self {
        Self {
            schema: JobSchema {
                name: "sleep",
                description: "Waits for the given time; used to space out blocks. Stops at once when cancelled.",
                args: vec![ArgSpec::required(
                    "seconds",
                    ArgFormat::Seconds,
                    "how long to wait, in non-negative decimal seconds",
                )],
                idempotency: Idempotency::Safe,
                reconcilable: false,
            },
        }
    }
}

impl Default for Sleep {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Job for Sleep {
    fn schema(&self) -> &JobSchema {
        &self.schema
    }

    async fn run(&self, ctx: &JobCtx, args: &interlock_core::Args) -> Result<Outputs, JobError> {
        let d = parse_seconds(&args["seconds"]).map_err(JobError::new)?;
        if !d.is_zero() {
            sleep_or_cancel(d, &ctx.cancel).await?;
        } else if ctx.cancel.is_cancelled() {
            return Err(JobError::cancelled());
        }
        Ok(Outputs::new())
    }
}
