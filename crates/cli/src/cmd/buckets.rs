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
                .map(|d| format!(", next token in {}", until(d)))
                .unwrap_or_default();
            let name = match (b.key_arg.is_empty(), b.key.is_empty()) {
                (true, _) => b.name.clone(),
                (false, true) => format!("{} (per {}, none taken)", b.name, b.key_arg),
                (false, false) => format!("{} {}={}", b.name, b.key_arg, b.key),
            };
            outln!("{name:<24} {}/{} available{next}", b.available, b.capacity)?;
        }
        if !r.last_error.is_empty() {
            outln!("last reload error: {}", r.last_error)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A wait as "12m 3s", in whole seconds rounded up: a token due in 0.4 s
/// is not there yet.
fn until(d: &interlock_proto::pbjson_types::Duration) -> humantime::FormattedDuration {
    let secs = d.seconds.max(0) as u64 + u64::from(d.nanos > 0 && d.seconds >= 0);
    humantime::format_duration(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlock_proto::pbjson_types::Duration;

    #[test]
    fn waits_read_as_human_durations() {
        let d = |seconds, nanos| until(&Duration { seconds, nanos }).to_string();
        assert_eq!(d(723, 0), "12m 3s");
        assert_eq!(d(1800, 0), "30m");
        assert_eq!(d(1799, 500_000_000), "30m");
        assert_eq!(d(0, 1), "1s");
        assert_eq!(d(0, 0), "0s");
        assert_eq!(d(90_061, 0), "1day 1h 1m 1s");
    }
}
