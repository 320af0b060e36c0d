//! The server's `interlock.v1.Block`, as Submit and Validate read it: each
//! job becomes the domain's [`interlock_core::Job`] as soon as it is
//! decoded.
//!
//! Why: decoded whole, a 50,000-job request held every job twice before
//! the server converted it: as a generated message (176 bytes, an
//! argument vector with room for four pairs, a job vector doubled as it
//! grew: about 500 bytes a job, 25 MB) and then as the domain's job (120
//! bytes and its strings). Converted one at a time, only one generated job
//! is alive at any moment, and the block's vector grows by a quarter, not
//! by double.
//!
//! Invariants:
//! - The bytes are those of the generated `Block`: fields 1, 2, 3 and 10,
//!   unknown fields skipped. Clients keep the generated types.
//! - A job's strings and arguments are moved, not copied; arguments are
//!   sorted with the last of a repeated key kept, as a map's decoding would.
//! - A negative duration cannot be a domain job's: the first one met is
//!   kept in [`Block::invalid`] (the job keeps no value for it), and the
//!   server refuses the request for it, naming the field.

use crate::server::v1 as wire;
use interlock_core::{Job, OutputRef, RetryPolicy};
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType, int32, message, skip_field, string};
use std::time::Duration;

/// A block of a request, its jobs already in domain terms.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct Block {
    pub desc: String,
    pub rate_limit: i32,
    pub jobs: Vec<Job>,
    pub max_failures: i32,
    /// The first negative or malformed duration among the jobs; not part
    /// of the message (it is not encoded).
    pub invalid: Option<InvalidDuration>,
}

/// A duration no job may have, and where it was.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct InvalidDuration {
    /// The job's index in its block.
    pub job: usize,
    /// The field in the job: `timeout`, `retry.initial_backoff` or
    /// `retry.max_backoff`.
    pub field: &'static str,
    pub seconds: i64,
    pub nanos: i32,
}

impl Block {
    /// `j`, the block's next job, in domain terms.
    fn adopt(&mut self, j: wire::Job) {
        let ji = self.jobs.len();
        let mut check = |d: Option<pbjson_types::Duration>, field: &'static str| {
            let d = d?;
            if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
                self.invalid.get_or_insert(InvalidDuration {
                    job: ji,
                    field,
                    seconds: d.seconds,
                    nanos: d.nanos,
                });
                return None;
            }
            Some(Duration::new(d.seconds as u64, d.nanos as u32))
        };
        // The order a conversion of the whole request checked them in.
        let retry = j.retry.map(|r| {
            Box::new(RetryPolicy {
                max_attempts: r.max_attempts,
                initial_backoff: check(r.initial_backoff, "retry.initial_backoff")
                    .unwrap_or_default(),
                max_backoff: check(r.max_backoff, "retry.max_backoff").unwrap_or_default(),
            })
        });
        let timeout = check(j.timeout, "timeout");
        // Grown by a quarter: a block of 20,000 jobs keeps at most a
        // quarter spare, where doubling left up to as much again.
        if self.jobs.len() == self.jobs.capacity() {
            self.jobs.reserve_exact((self.jobs.len() / 4).max(4));
        }
        self.jobs.push(Job {
            name: j.name,
            desc: j.desc,
            args: j.args.into_iter().map(|e| (e.key, e.value)).collect(),
            timeout,
            retry,
            inputs: j
                .inputs
                .into_iter()
                .map(|(k, r)| {
                    let r = OutputRef {
                        block: r.block as usize,
                        job: r.job as usize,
                        output: r.output,
                    };
                    (k, r)
                })
                .collect(),
        });
    }
}

/// A duration as the wire's.
pub fn duration_to_wire(d: Duration) -> pbjson_types::Duration {
    pbjson_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// A domain job as the client's message: what an `inbound::Block` encodes
/// (the same bytes as the server's `Job`), and how the server shows a
/// stored request. The one mapping from the domain's job to the wire's.
pub fn job_to_wire(j: &Job) -> crate::v1::Job {
    crate::v1::Job {
        name: j.name.clone(),
        desc: j.desc.clone(),
        args: j.args.clone().into(),
        timeout: j.timeout.map(duration_to_wire),
        retry: j.retry.as_ref().map(|r| crate::v1::RetryPolicy {
            max_attempts: r.max_attempts,
            initial_backoff: Some(duration_to_wire(r.initial_backoff)),
            max_backoff: Some(duration_to_wire(r.max_backoff)),
        }),
        inputs: j
            .inputs
            .iter()
            .map(|(k, r)| {
                let r = crate::v1::OutputRef {
                    block: r.block as u32,
                    job: r.job as u32,
                    output: r.output.clone(),
                };
                (k.clone(), r)
            })
            .collect(),
    }
}

impl prost::Message for Block {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if !self.desc.is_empty() {
            string::encode(1, &self.desc, buf);
        }
        if self.rate_limit != 0 {
            int32::encode(2, &self.rate_limit, buf);
        }
        for j in &self.jobs {
            message::encode(3, &job_to_wire(j), buf);
        }
        if self.max_failures != 0 {
            int32::encode(10, &self.max_failures, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        let at = |field: &'static str| {
            move |mut e: prost::DecodeError| {
                e.push("Block", field);
                e
            }
        };
        match tag {
            1 => string::merge(wire_type, &mut self.desc, buf, ctx).map_err(at("desc")),
            2 => int32::merge(wire_type, &mut self.rate_limit, buf, ctx).map_err(at("rate_limit")),
            3 => {
                let mut j = wire::Job::default();
                message::merge(wire_type, &mut j, buf, ctx).map_err(at("jobs"))?;
                self.adopt(j);
                Ok(())
            }
            10 => int32::merge(wire_type, &mut self.max_failures, buf, ctx)
                .map_err(at("max_failures")),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let mut n = 0;
        if !self.desc.is_empty() {
            n += string::encoded_len(1, &self.desc);
        }
        if self.rate_limit != 0 {
            n += int32::encoded_len(2, &self.rate_limit);
        }
        n += self
            .jobs
            .iter()
            .map(|j| message::encoded_len(3, &job_to_wire(j)))
            .sum::<usize>();
        if self.max_failures != 0 {
            n += int32::encoded_len(10, &self.max_failures);
        }
        n
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn job(name: &str) -> crate::v1::Job {
        crate::v1::Job {
            name: name.into(),
            desc: format!("{name}'s"),
            args: [("b".into(), "2".into()), ("a".into(), "1".into())].into(),
            timeout: Some(pbjson_types::Duration {
                seconds: 3,
                nanos: 5,
            }),
            retry: Some(crate::v1::RetryPolicy {
                max_attempts: 3,
                initial_backoff: Some(pbjson_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
                max_backoff: None,
            }),
            inputs: [(
                "host".into(),
                crate::v1::OutputRef {
                    block: 0,
                    job: 1,
                    output: "h".into(),
                },
            )]
            .into(),
        }
    }

    fn client_block(jobs: Vec<crate::v1::Job>) -> crate::v1::Block {
        crate::v1::Block {
            desc: "d".into(),
            rate_limit: 7,
            jobs,
            max_failures: 2,
        }
    }

    #[test]
    fn decodes_a_clients_block_into_domain_jobs_and_encodes_the_same_bytes() {
        let sent = client_block(vec![job("x"), job("y")]);
        let bytes = sent.encode_to_vec();
        let b = Block::decode(bytes.as_slice()).unwrap();
        assert_eq!((b.desc.as_str(), b.rate_limit, b.max_failures), ("d", 7, 2));
        assert_eq!(b.invalid, None);
        let x = &b.jobs[0];
        assert_eq!((x.name.as_str(), x.desc.as_str()), ("x", "x's"));
        assert_eq!(
            x.args.iter().collect::<Vec<_>>(),
            [
                (&"a".to_string(), &"1".to_string()),
                (&"b".into(), &"2".into())
            ]
        );
        assert_eq!(x.timeout, Some(Duration::new(3, 5)));
        let r = x.retry.as_deref().unwrap();
        assert_eq!(
            (r.max_attempts, r.initial_backoff, r.max_backoff),
            (3, Duration::from_secs(1), Duration::ZERO)
        );
        assert_eq!(x.inputs["host"].job, 1);
        assert_eq!(b.jobs[1].name, "y");
        // Written back, it is what the generated message reads, and what
        // it writes: a retry's unset backoff now reads as zero.
        let again = b.encode_to_vec();
        assert_eq!(again.len(), b.encoded_len());
        let mut expected = sent.clone();
        for j in &mut expected.jobs {
            j.retry.as_mut().unwrap().max_backoff = Some(Default::default());
        }
        assert_eq!(
            crate::v1::Block::decode(again.as_slice()).unwrap(),
            expected
        );
    }

    #[test]
    fn a_repeated_argument_keeps_its_last_value() {
        // A map written entry by entry, the key twice.
        let mut j = crate::server::v1::Job {
            name: "x".into(),
            ..Default::default()
        };
        for v in ["1", "2"] {
            j.args.push(wire::job::ArgsEntry {
                key: "k".into(),
                value: v.into(),
            });
        }
        let mut bytes = Vec::new();
        message::encode(3, &j, &mut bytes);
        let b = Block::decode(bytes.as_slice()).unwrap();
        assert_eq!(
            b.jobs[0].args.iter().collect::<Vec<_>>(),
            [(&"k".to_string(), &"2".to_string())]
        );
    }

    #[test]
    fn the_first_negative_duration_is_kept_with_its_place() {
        let mut bad = job("z");
        bad.timeout = Some(pbjson_types::Duration {
            seconds: -1,
            nanos: 0,
        });
        let mut worse = job("w");
        worse.retry.as_mut().unwrap().max_backoff = Some(pbjson_types::Duration {
            seconds: 0,
            nanos: 1_000_000_000,
        });
        worse.timeout = bad.timeout;
        let sent = client_block(vec![job("x"), bad, worse]);
        let b = Block::decode(sent.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            b.invalid,
            Some(InvalidDuration {
                job: 1,
                field: "timeout",
                seconds: -1,
                nanos: 0
            })
        );
        assert_eq!(b.jobs[1].timeout, None);
        // Within a job, the retry's fields come first.
        let mut w = job("w");
        w.retry.as_mut().unwrap().max_backoff = bad_nanos();
        w.timeout = Some(pbjson_types::Duration {
            seconds: -5,
            nanos: 0,
        });
        let b = Block::decode(client_block(vec![w]).encode_to_vec().as_slice()).unwrap();
        assert_eq!(b.invalid.unwrap().field, "retry.max_backoff");
    }

    fn bad_nanos() -> Option<pbjson_types::Duration> {
        Some(pbjson_types::Duration {
            seconds: 0,
            nanos: -1,
        })
    }

    #[test]
    fn a_large_block_keeps_at_most_a_quarter_spare() {
        let sent = client_block((0..10_000).map(|i| job(&i.to_string())).collect());
        let b = Block::decode(sent.encode_to_vec().as_slice()).unwrap();
        assert_eq!(b.jobs.len(), 10_000);
        assert!(
            b.jobs.capacity() <= 10_000 + 10_000 / 4,
            "capacity {}",
            b.jobs.capacity()
        );
    }
}
