//! A workflow's record as its Status reply: the head built as a message,
//! the blocks and jobs encoded from the record as the reply is sent (see
//! `interlock_proto::reply` for why).
//!
//! Invariants:
//! - One mapping from a record to its status. The gRPC reply, the HTTP
//!   API's JSON and a watcher's snapshot all come from [`reply`]; the last
//!   two decode its bytes into the generated `StatusResp`.
//! - A block's or a job's bytes are what the generated `BlockStatus` or
//!   `JobStatus` would encode: the same fields, proto3 defaults left out.
//!   Lengths and bytes come from one walk of the fields (`Sink`), so they
//!   cannot disagree.
//! - Nothing per job is allocated: a job is written from the request's
//!   job and its record as they are.

use crate::convert::{status_head, ts};
use interlock_core::{Args, Block, BlockRecord, Job, JobRecord, Micros, Status, WorkflowRecord};
use interlock_proto::reply::{EncodeBlocks, StatusReply};
use interlock_proto::v1;
use prost::bytes::BufMut;
use prost::encoding::{self as enc, WireType};
use std::collections::HashMap;

/// Whose client reads the statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// interlock.v1: every status as it is.
    Full,
    /// The ancestor's `diskerase` clients: only the five statuses they knew.
    Ancestor,
}

/// The record as a Status reply; approval counts are the caller's to set
/// on `head`.
pub fn reply(mut rec: WorkflowRecord, view: View) -> StatusReply {
    // Inputs show as the values they resolve to, once the outputs they
    // name exist.
    let resolved: HashMap<(usize, usize), Args> = rec
        .req
        .blocks
        .iter()
        .enumerate()
        .flat_map(|(bi, b)| b.jobs.iter().enumerate().map(move |(ji, j)| (bi, ji, j)))
        .filter(|(_, _, j)| !j.inputs.is_empty())
        .filter_map(|(bi, ji, j)| Some(((bi, ji), j.resolved(&rec.blocks).ok()?.args)))
        .collect();
    let blocks = Blocks {
        specs: std::mem::take(&mut rec.req.blocks),
        records: std::mem::take(&mut rec.blocks),
        resolved,
        created: rec.created,
        view,
    };
    let mut head = status_head(rec);
    head.status = view.status(head.status);
    StatusReply {
        head,
        blocks: Some(Box::new(blocks)),
    }
}

/// The record as the whole generated message.
pub fn resp(rec: WorkflowRecord, view: View) -> Result<v1::StatusResp, tonic::Status> {
    whole(reply(rec, view))
}

/// A reply as the whole generated message, for JSON and a watcher's
/// snapshot. It reads back bytes this module wrote: a failure is a bug
/// here, INTERNAL, never an empty status that would hide it.
pub fn whole(reply: StatusReply) -> Result<v1::StatusResp, tonic::Status> {
    reply
        .into_resp()
        .map_err(|e| tonic::Status::internal(format!("a status could not be read back: {e}")))
}

impl View {
    fn status(self, s: i32) -> i32 {
        match self {
            View::Full => s,
            View::Ancestor => ancestor_status(s),
        }
    }
}

/// The ancestor knew five statuses. Its clients poll until Completed or
/// Failed, so newer states are shown as the nearest state it knew.
fn ancestor_status(s: i32) -> i32 {
    match Status::from_i32(s) {
        Some(Status::Cancelled | Status::Stopped) => Status::Failed as i32,
        Some(Status::Paused | Status::Interrupted) => Status::Running as i32,
        Some(Status::Skipped) => Status::Completed as i32,
        Some(Status::AwaitingApproval) => Status::NotStarted as i32,
        _ => s,
    }
}

struct Blocks {
    specs: Vec<Block>,
    records: Vec<BlockRecord>,
    resolved: HashMap<(usize, usize), Args>,
    created: Micros,
    view: View,
}

impl EncodeBlocks for Blocks {
    fn encoded_len(&self) -> usize {
        len_of(&|s| self.write(s))
    }

    fn encode(&self, buf: &mut dyn BufMut) {
        self.write(&mut Put(buf));
    }
}

impl Blocks {
    /// Every block as field 4 of `StatusResp`.
    fn write(&self, s: &mut dyn Sink) {
        for (bi, (b, br)) in self.specs.iter().zip(&self.records).enumerate() {
            nested(s, 4, &|s| self.block(s, bi, b, br));
        }
    }

    /// `BlockStatus`.
    fn block(&self, s: &mut dyn Sink, bi: usize, b: &Block, br: &BlockRecord) {
        string(s, 1, &b.desc);
        int(s, 2, self.status(br.status));
        boolean(s, 3, br.has_error);
        for (ji, (j, jr)) in b.jobs.iter().zip(&br.jobs).enumerate() {
            nested(s, 4, &|s| self.job(s, bi, ji, j, jr));
        }
        time(s, 10, Some(self.created));
        time(s, 11, br.started);
        time(s, 12, br.ended);
        int(s, 13, b.rate_limit);
        int(s, 14, b.max_failures);
        int(s, 15, br.failures as i32);
    }

    /// `JobStatus`.
    fn job(&self, s: &mut dyn Sink, bi: usize, ji: usize, j: &Job, jr: &JobRecord) {
        string(s, 1, &j.name);
        string(s, 2, &j.desc);
        let args = self.resolved.get(&(bi, ji)).unwrap_or(&j.args);
        for (k, v) in args.iter() {
            entry(s, 3, k, &|s| string(s, 2, v));
        }
        int(s, 4, self.status(jr.status));
        string(s, 5, &jr.error);
        for (k, v) in &jr.outputs {
            entry(s, 10, k, &|s| string(s, 2, v));
        }
        time(s, 11, Some(self.created));
        time(s, 12, jr.started);
        time(s, 13, jr.ended);
        boolean(s, 14, jr.fatal);
        for a in &jr.attempts {
            nested(s, 15, &|s| {
                uint(s, 1, a.number.into());
                time(s, 2, Some(a.started));
                time(s, 3, a.ended);
                string(s, 4, &a.error);
            });
        }
        string(s, 16, jr.waiting.as_deref().unwrap_or_default());
        for (k, r) in &j.inputs {
            entry(s, 17, k, &|s| {
                // A map entry leaves out a value equal to its default.
                if r.block != 0 || r.job != 0 || !r.output.is_empty() {
                    nested(s, 2, &|s| {
                        uint(s, 1, r.block as u64);
                        uint(s, 2, r.job as u64);
                        string(s, 3, &r.output);
                    });
                }
            });
        }
    }

    fn status(&self, s: Status) -> i32 {
        self.view.status(s as i32)
    }
}

/// Where fields go: counted, or written.
trait Sink {
    fn key(&mut self, tag: u32, wire_type: WireType);
    fn varint(&mut self, v: u64);
    fn bytes(&mut self, b: &[u8]);
    /// A length-delimited field whose content `f` writes.
    fn nested(&mut self, tag: u32, f: &dyn Fn(&mut dyn Sink));
}

/// The length of what `f` writes.
fn len_of(f: &dyn Fn(&mut dyn Sink)) -> usize {
    let mut n = Len(0);
    f(&mut n);
    n.0
}

struct Len(usize);

impl Sink for Len {
    fn key(&mut self, tag: u32, _: WireType) {
        self.0 += enc::key_len(tag);
    }
    fn varint(&mut self, v: u64) {
        self.0 += enc::encoded_len_varint(v);
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0 += b.len();
    }
    /// Counted once: running `f` again for its bytes would double the work
    /// at every level of nesting.
    fn nested(&mut self, tag: u32, f: &dyn Fn(&mut dyn Sink)) {
        let n = len_of(f);
        self.0 += enc::key_len(tag) + enc::encoded_len_varint(n as u64) + n;
    }
}

struct Put<'a>(&'a mut dyn BufMut);

impl Sink for Put<'_> {
    fn key(&mut self, tag: u32, wire_type: WireType) {
        enc::encode_key(tag, wire_type, &mut self.0);
    }
    fn varint(&mut self, v: u64) {
        enc::encode_varint(v, &mut self.0);
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.put_slice(b);
    }
    fn nested(&mut self, tag: u32, f: &dyn Fn(&mut dyn Sink)) {
        self.key(tag, WireType::LengthDelimited);
        self.varint(len_of(f) as u64);
        f(self);
    }
}

/// A length-delimited field whose content `f` writes.
fn nested(s: &mut dyn Sink, tag: u32, f: &dyn Fn(&mut dyn Sink)) {
    s.nested(tag, f);
}

/// One entry of a `map<string, …>` field: the key, then what `value`
/// writes (nothing for a default value).
fn entry(s: &mut dyn Sink, tag: u32, key: &str, value: &dyn Fn(&mut dyn Sink)) {
    nested(s, tag, &|s| {
        string(s, 1, key);
        value(s);
    });
}

fn string(s: &mut dyn Sink, tag: u32, v: &str) {
    if !v.is_empty() {
        s.key(tag, WireType::LengthDelimited);
        s.varint(v.len() as u64);
        s.bytes(v.as_bytes());
    }
}

/// `int32` and enums: negative values take ten bytes, as protobuf says.
fn int(s: &mut dyn Sink, tag: u32, v: i32) {
    if v != 0 {
        s.key(tag, WireType::Varint);
        s.varint(i64::from(v) as u64);
    }
}

fn uint(s: &mut dyn Sink, tag: u32, v: u64) {
    if v != 0 {
        s.key(tag, WireType::Varint);
        s.varint(v);
    }
}

fn boolean(s: &mut dyn Sink, tag: u32, v: bool) {
    uint(s, tag, u64::from(v));
}

/// A `google.protobuf.Timestamp`, as `convert::ts` makes it.
fn time(s: &mut dyn Sink, tag: u32, at: Option<Micros>) {
    if let Some(t) = ts(at) {
        nested(s, tag, &|s| {
            if t.seconds != 0 {
                s.key(1, WireType::Varint);
                s.varint(t.seconds as u64);
            }
            int(s, 2, t.nanos);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlock_core::{Attempt, OutputRef, WorkReq};
    use prost::Message as _;
    use v1::Status as S;

    const T0: Micros = 1_700_000_000_123_456;

    fn at(m: Micros) -> Option<interlock_proto::pbjson_types::Timestamp> {
        Some(interlock_proto::pbjson_types::Timestamp {
            seconds: m / 1_000_000,
            nanos: (m % 1_000_000 * 1_000) as i32,
        })
    }

    fn args(kv: &[(&str, &str)]) -> Args {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn map(kv: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Two blocks; every kind of field a job status has, set and unset.
    fn record() -> WorkflowRecord {
        let job = |name: &str, a: Args| Job {
            name: name.into(),
            args: a,
            ..Default::default()
        };
        let mut uses = job("diskErase", args(&[("mode", "fast")]));
        uses.inputs = [
            (
                "serial".to_string(),
                OutputRef {
                    block: 0,
                    job: 0,
                    output: "serial".into(),
                },
            ),
            ("zero".to_string(), OutputRef::default()),
        ]
        .into();
        let req = WorkReq {
            name: "erase".into(),
            desc: "two racks".into(),
            labels: map(&[("ticket", "T-1")]),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            blocks: vec![
                Block {
                    desc: "find".into(),
                    rate_limit: 2,
                    max_failures: 1,
                    jobs: vec![
                        Job {
                            desc: "check".into(),
                            ..job("validateDecom", args(&[("machine", "m1"), ("site", "s")]))
                        },
                        job("sleep", args(&[])),
                    ],
                },
                Block {
                    desc: String::new(),
                    rate_limit: -1,
                    max_failures: 0,
                    jobs: vec![uses, job("sleep", args(&[("seconds", "0")]))],
                },
            ],
            ..Default::default()
        };
        let mut rec = WorkflowRecord::submitted("w-1".into(), req, "v7".into(), T0);
        rec.status = Status::Stopped;
        rec.started = Some(T0 + 10);
        rec.reason = "stopped by es.json".into();
        let b0 = &mut rec.blocks[0];
        b0.status = Status::Failed;
        b0.has_error = true;
        b0.failures = 1;
        b0.started = Some(T0 + 20);
        b0.ended = Some(T0 + 2_000_000);
        let ok = &mut b0.jobs[0];
        ok.status = Status::Completed;
        ok.outputs = map(&[("serial", "X1"), ("empty", "")]);
        ok.started = Some(T0 + 30);
        ok.ended = Some(T0 + 40);
        ok.attempts = vec![Attempt {
            number: 1,
            started: T0 + 30,
            ended: Some(T0 + 40),
            error: String::new(),
        }];
        let bad = &mut b0.jobs[1];
        bad.status = Status::Failed;
        bad.error = "boom".into();
        bad.fatal = true;
        bad.attempts = vec![
            Attempt {
                number: 1,
                started: T0 + 50,
                ended: Some(T0 + 60),
                error: "first".into(),
            },
            Attempt {
                number: 2,
                started: T0 + 70,
                ended: None,
                error: String::new(),
            },
        ];
        rec.blocks[1].jobs[1].waiting = Some("limit rack: 3rd in line".into());
        rec
    }

    /// What the record reads as, written out field by field.
    fn expected() -> v1::StatusResp {
        let created = at(T0);
        let attempt = |number, started, ended: Option<Micros>, error: &str| v1::Attempt {
            number,
            started: at(started),
            ended: ended.and_then(at),
            error: error.into(),
        };
        let job = |name: &str, a: &[(&str, &str)], status: S| v1::JobStatus {
            name: name.into(),
            args: map(a),
            status: status as i32,
            created,
            ..Default::default()
        };
        v1::StatusResp {
            name: "erase".into(),
            desc: "two racks".into(),
            status: S::Stopped as i32,
            id: "w-1".into(),
            created,
            started: at(T0 + 10),
            reason: "stopped by es.json".into(),
            policy_version: "v7".into(),
            labels: map(&[("ticket", "T-1")]),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            blocks: vec![
                v1::BlockStatus {
                    desc: "find".into(),
                    status: S::Failed as i32,
                    has_error: true,
                    created,
                    started: at(T0 + 20),
                    ended: at(T0 + 2_000_000),
                    rate_limit: 2,
                    max_failures: 1,
                    failures: 1,
                    jobs: vec![
                        v1::JobStatus {
                            desc: "check".into(),
                            outputs: map(&[("serial", "X1"), ("empty", "")]),
                            started: at(T0 + 30),
                            ended: at(T0 + 40),
                            attempts: vec![attempt(1, T0 + 30, Some(T0 + 40), "")],
                            ..job(
                                "validateDecom",
                                &[("machine", "m1"), ("site", "s")],
                                S::Completed,
                            )
                        },
                        v1::JobStatus {
                            error: "boom".into(),
                            fatal: true,
                            attempts: vec![
                                attempt(1, T0 + 50, Some(T0 + 60), "first"),
                                attempt(2, T0 + 70, None, ""),
                            ],
                            ..job("sleep", &[], S::Failed)
                        },
                    ],
                },
                v1::BlockStatus {
                    status: S::NotStarted as i32,
                    created,
                    rate_limit: -1,
                    jobs: vec![
                        v1::JobStatus {
                            // Shown unresolved: "zero" names no output.
                            inputs: [
                                (
                                    "serial".to_string(),
                                    v1::OutputRef {
                                        block: 0,
                                        job: 0,
                                        output: "serial".into(),
                                    },
                                ),
                                ("zero".to_string(), v1::OutputRef::default()),
                            ]
                            .into(),
                            ..job("diskErase", &[("mode", "fast")], S::NotStarted)
                        },
                        v1::JobStatus {
                            waiting_for: "limit rack: 3rd in line".into(),
                            ..job("sleep", &[("seconds", "0")], S::NotStarted)
                        },
                    ],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_record_encodes_as_the_status_written_out() {
        let reply = reply(record(), View::Full);
        let bytes = reply.encode_to_vec();
        assert_eq!(bytes.len(), prost::Message::encoded_len(&reply));
        assert_eq!(
            v1::StatusResp::decode(bytes.as_slice()).unwrap(),
            expected()
        );
        // The generated message encodes the same fields to as many bytes.
        assert_eq!(expected().encoded_len(), bytes.len());
        assert_eq!(resp(record(), View::Full).unwrap(), expected());
    }

    #[test]
    fn resolved_inputs_show_their_values() {
        let mut rec = record();
        rec.req.blocks[1].jobs[0].inputs.remove("zero");
        let st = resp(rec, View::Full).unwrap();
        let job = &st.blocks[1].jobs[0];
        assert_eq!(job.args, map(&[("mode", "fast"), ("serial", "X1")]));
        assert_eq!(job.inputs.len(), 1);
    }

    #[test]
    fn the_ancestor_view_shows_only_the_statuses_it_knew() {
        let mut rec = record();
        rec.blocks[1].status = Status::Paused;
        rec.blocks[1].jobs[0].status = Status::Skipped;
        rec.blocks[1].jobs[1].status = Status::Cancelled;
        let st = resp(rec, View::Ancestor).unwrap();
        assert_eq!(st.status, S::Failed as i32, "Stopped reads as Failed");
        assert_eq!(st.blocks[0].status, S::Failed as i32);
        assert_eq!(st.blocks[0].jobs[0].status, S::Completed as i32);
        assert_eq!(st.blocks[1].status, S::Running as i32, "Paused");
        assert_eq!(st.blocks[1].jobs[0].status, S::Completed as i32, "Skipped");
        assert_eq!(st.blocks[1].jobs[1].status, S::Failed as i32, "Cancelled");
    }
}
