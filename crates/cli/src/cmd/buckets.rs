//! `interlock buckets`: token bucket levels and when the next token comes.

use crate::Out;
use crate::output::{outln, print_json};
use crate::target::{Target, control};
use interlock_proto::v1;
use std::process::ExitCode;

pub async fn run(t: &Target, json: bool) -> Out {
    let r = control(t)
        .await?
        .buckets(v1::BucketsReq {})
        .await?
        .into_inner();
    if json {
        print_json(&r)?;
    } else {
        for b in &r.buckets {
            let next = b
                .next_token_in
                .as_ref()
                .map(|d| format!(", next token in {}s", d.seconds))
                .unwrap_or_default();
            outln!(
                "{:<24} {}/{} available{next}",
                b.name,
                b.available,
                b.capacity
            )?;
        }
        if !r.last_error.is_empty() {
            outln!("last reload error: {}", r.last_error)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
