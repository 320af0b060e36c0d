//! Conversions between wire messages and domain types.
//!
//! Inbound conversion can fail (negative durations); the error names the
//! field. Outbound conversion renders a [`WorkflowRecord`] as a StatusResp.

use interlock_core::{Block, EsMode, Micros, Status, WorkReq, WorkflowRecord};
use interlock_proto::server::v1 as wire;
use interlock_proto::{inbound, v1};
use std::time::Duration;

/// A wire request that cannot be expressed in domain terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be a non-negative duration, got {seconds}s {nanos}ns")]
pub struct ConvertError {
    pub field: String,
    pub seconds: i64,
    pub nanos: i32,
}

/// `field` names the field in an error; made only then (a request may
/// hold 50,000 jobs).
fn duration(
    d: Option<interlock_proto::pbjson_types::Duration>,
    field: impl FnOnce() -> String,
) -> Result<Option<Duration>, ConvertError> {
    match d {
        None => Ok(None),
        Some(d) if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 => Err(ConvertError {
            field: field(),
            seconds: d.seconds,
            nanos: d.nanos,
        }),
        Some(d) => Ok(Some(Duration::new(d.seconds as u64, d.nanos as u32))),
    }
}

/// Wire request, as the server decodes it (see `interlock_proto::server`)
/// → domain request. Its jobs are already the domain's
/// (`interlock_proto::inbound`); what is left is to refuse a negative
/// duration, naming the field.
pub fn work_req(r: wire::WorkReq) -> Result<WorkReq, ConvertError> {
    let mut blocks = Vec::with_capacity(r.blocks.len());
    for (bi, b) in r.blocks.into_iter().enumerate() {
        if let Some(bad) = b.invalid {
            return Err(ConvertError {
                field: format!("blocks[{bi}].jobs[{}].{}", bad.job, bad.field),
                seconds: bad.seconds,
                nanos: bad.nanos,
            });
        }
        let mut jobs = b.jobs;
        // The request keeps its jobs for its whole run.
        jobs.shrink_to_fit();
        blocks.push(Block {
            desc: b.desc,
            rate_limit: b.rate_limit,
            max_failures: b.max_failures,
            jobs,
        });
    }
    Ok(WorkReq {
        deadline: duration(r.deadline, || "deadline".into())?,
        name: r.name,
        desc: r.desc,
        blocks,
        request_id: r.request_id,
        labels: r.labels,
        trace_id: r.trace_id,
    })
}

/// A client's message as the server reads it off the wire: for requests
/// that arrive as JSON (the HTTP API), which then take Submit's path.
pub fn from_client(r: &v1::WorkReq) -> wire::WorkReq {
    // The two messages share one schema, so the bytes of one always
    // decode as the other.
    prost::Message::decode(prost::Message::encode_to_vec(r).as_slice())
        .unwrap_or_else(|e| panic!("a WorkReq did not decode as the server's own: {e}"))
}

pub use interlock_proto::inbound::duration_to_wire as pdur;

/// Domain request → wire request (for clients that read it back).
pub fn work_req_to_wire(r: &WorkReq) -> v1::WorkReq {
    v1::WorkReq {
        name: r.name.clone(),
        desc: r.desc.clone(),
        blocks: r
            .blocks
            .iter()
            .map(|b| v1::Block {
                desc: b.desc.clone(),
                rate_limit: b.rate_limit,
                max_failures: b.max_failures,
                jobs: b.jobs.iter().map(inbound::job_to_wire).collect(),
            })
            .collect(),
        request_id: r.request_id.clone(),
        labels: r.labels.clone(),
        trace_id: r.trace_id.clone(),
        deadline: r.deadline.map(pdur),
    }
}

/// A wire timestamp as microseconds since the epoch.
pub fn micros(t: Option<interlock_proto::pbjson_types::Timestamp>) -> Option<Micros> {
    t.map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000)
}

pub fn ts(m: Option<Micros>) -> Option<interlock_proto::pbjson_types::Timestamp> {
    m.map(|m| interlock_proto::pbjson_types::Timestamp {
        seconds: m.div_euclid(1_000_000),
        nanos: (m.rem_euclid(1_000_000) * 1_000) as i32,
    })
}

fn status(s: Status) -> i32 {
    s as i32
}

/// An emergency-stop mode on the wire.
pub fn es_mode(m: EsMode) -> v1::EsMode {
    match m {
        EsMode::Go => v1::EsMode::Go,
        EsMode::Drain => v1::EsMode::Drain,
        EsMode::Stop => v1::EsMode::Stop,
    }
}

/// The mode a SetEmergencyStop asks for: `mode` when set, else the `stop`
/// flag of clients that predate it. Contradictions are refused rather
/// than guessed at.
pub fn requested_es_mode(stop: bool, mode: i32) -> Result<EsMode, String> {
    let m = match v1::EsMode::try_from(mode) {
        Ok(v1::EsMode::Unspecified) => {
            return Ok(if stop { EsMode::Stop } else { EsMode::Go });
        }
        Ok(v1::EsMode::Go) => EsMode::Go,
        Ok(v1::EsMode::Drain) => EsMode::Drain,
        Ok(v1::EsMode::Stop) => EsMode::Stop,
        Err(_) => {
            return Err(format!(
                "mode {mode} is not an emergency-stop mode; use EsModeGo, EsModeDrain or EsModeStop"
            ));
        }
    };
    if stop && m != EsMode::Stop {
        return Err(format!(
            "stop=true contradicts mode {m}; leave stop false when setting mode"
        ));
    }
    Ok(m)
}

/// A job's log line on the wire.
pub fn log_line(l: &interlock_core::LogLine) -> v1::LogLine {
    v1::LogLine {
        seq: l.seq,
        block: l.block as i32,
        job: l.job as i32,
        attempt: l.attempt,
        n: l.n,
        at: ts(Some(l.at)),
        stream: l.stream.as_str().to_string(),
        text: l.text.clone(),
    }
}

/// A workflow's status on the wire but its blocks, which `status` encodes
/// as the reply is sent. Takes the record (`req.blocks` and `blocks` may
/// already be taken): names and reasons move, they are not copied.
pub fn status_head(rec: WorkflowRecord) -> v1::StatusResp {
    let created = ts(Some(rec.created));
    let halts = rec.es_halt.halts();
    v1::StatusResp {
        status: status(rec.status),
        had_errors: rec.had_errors,
        approvals: rec
            .approvals
            .into_iter()
            .map(|a| v1::Approval {
                identity: a.identity,
                approve: a.approve,
                comment: a.comment,
                at: ts(Some(a.at)),
            })
            .collect(),
        // Counted by the engine where it answers Status.
        approvals_needed: 0,
        approvals_valid: 0,
        was_es_stopped: halts,
        halted_by: if halts {
            es_mode(rec.es_halt) as i32
        } else {
            v1::EsMode::Unspecified as i32
        },
        created,
        started: ts(rec.started),
        ended: ts(rec.ended),
        reason: rec.reason,
        policy_version: rec.policy_version,
        submitted_by: rec.submitted_by,
        executed_by: rec.executed_by,
        // The owner lets go of an ended workflow just after its final write.
        run_by: if rec.status.is_terminal() {
            String::new()
        } else {
            rec.owner.unwrap_or_default()
        },
        blocks: Vec::new(),
        name: rec.req.name,
        desc: rec.req.desc,
        labels: rec.req.labels,
        trace_id: rec.req.trace_id,
        id: rec.id,
    }
}
