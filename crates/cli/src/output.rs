//! Everything written to stdout goes through here: human text through
//! [`out!`]/[`outln!`], JSON through [`print_json`] and friends.
//!
//! A closed stdout (`interlock list | head -1`) ends the command quietly
//! instead of panicking the way `println!` does.
//!
//! `--json` output is a contract (docs/cli.md), made in one place,
//! [`json`]: the message's protobuf JSON, then rewritten with the help of
//! the proto descriptors so that every field is present (an unset message
//! field or oneof member is `null`), statuses are plain names
//! (`"Running"`, not the wire's `"StatusRunning"`), the -1 the wire uses
//! for "no block"/"no job" is `null`, and timestamps end in `Z`.

use crate::fail::Fail;
use interlock_proto::v1;
use prost_reflect::{DescriptorPool, Kind, MessageDescriptor};
use serde_json::Value;
use std::io::Write;
use std::sync::OnceLock;

/// Writes to stdout without a newline; `?` it.
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write(&format!($($arg)*)) };
}

/// Writes a line to stdout; `?` it.
macro_rules! outln {
    () => { $crate::output::write("\n") };
    ($($arg:tt)*) => { $crate::output::write(&format!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {out, outln};

/// Writes `text` to stdout at once.
pub(crate) fn write(text: &str) -> Result<(), Fail> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Fail::Closed,
            _ => Fail::Msg(2, format!("cannot write to stdout: {e}")),
        })
}

/// A message the CLI prints, by its full protobuf name.
pub(crate) trait Proto: serde::Serialize {
    const NAME: &'static str;
}

macro_rules! proto {
    ($($t:ident),* $(,)?) => {
        $(impl Proto for v1::$t {
            const NAME: &'static str = concat!("interlock.v1.", stringify!($t));
        })*
    };
}

proto!(
    ApplyTemplateResp,
    ApproveResp,
    BackupResp,
    AuditResp,
    BucketsResp,
    CancelResp,
    ClusterResp,
    ListWorkersResp,
    LogLine,
    EmergencyStopStateResp,
    ExecResp,
    InstantiateResp,
    InventoryResp,
    JobCatalogResp,
    LimitsResp,
    ListResp,
    ListSchedulesResp,
    ListTemplatesResp,
    PauseResp,
    PolicyStateResp,
    ResolveJobResp,
    ResumeResp,
    ScheduleInfo,
    StatusResp,
    TemplateInfo,
    ValidateResp,
    WatchEvent,
    WhoAmIResp,
    WorkResp,
);

/// Fields holding an index where -1 means "not about one block/job".
const NOT_APPLICABLE_IF_NEGATIVE: &[(&str, &str)] = &[
    ("interlock.v1.Violation", "block"),
    ("interlock.v1.Violation", "job"),
    ("interlock.v1.Transition", "block"),
    ("interlock.v1.Transition", "job"),
];

const STATUS_ENUM: &str = "interlock.v1.Status";

fn descriptors() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(interlock_proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set compiled into interlock-proto decodes")
    })
}

/// `msg` as the CLI's JSON (see the module doc).
pub(crate) fn json<T: Proto>(msg: &T) -> Value {
    let desc = descriptors()
        .get_message_by_name(T::NAME)
        .expect("every Proto type is in the descriptor set");
    // The generated serde impls cannot fail on these types: no maps with
    // non-string keys, no floats.
    let mut v = serde_json::to_value(msg).expect("protobuf JSON");
    rewrite(&desc, &mut v);
    v
}

fn rewrite(desc: &MessageDescriptor, v: &mut Value) {
    let Value::Object(obj) = v else { return };
    for field in desc.fields() {
        let slot = obj.entry(field.json_name()).or_insert(Value::Null);
        if NOT_APPLICABLE_IF_NEGATIVE.contains(&(desc.full_name(), field.name()))
            && slot.as_i64().is_some_and(|i| i < 0)
        {
            *slot = Value::Null;
        }
        let kind = if field.is_map() {
            match field.kind() {
                Kind::Message(entry) => entry.map_entry_value_field().kind(),
                other => other,
            }
        } else {
            field.kind()
        };
        let children: Vec<&mut Value> = match slot {
            Value::Array(items) => items.iter_mut().collect(),
            Value::Object(map) if field.is_map() => map.values_mut().collect(),
            other => vec![other],
        };
        for child in children {
            match &kind {
                // The JSON mapping writes timestamps "Z-normalized"; the
                // serde impls write UTC as "+00:00".
                Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => {
                    if let Value::String(s) = child
                        && let Some(utc) = s.strip_suffix("+00:00")
                    {
                        *s = format!("{utc}Z");
                    }
                }
                // Other well-known types (durations) are strings too.
                Kind::Message(m) if !m.full_name().starts_with("google.protobuf.") => {
                    rewrite(m, child)
                }
                Kind::Enum(e) if e.full_name() == STATUS_ENUM => {
                    if let Value::String(s) = child {
                        *s = s.trim_start_matches("Status").to_string();
                    }
                }
                _ => {}
            }
        }
    }
}

/// Prints `msg` as pretty JSON.
pub(crate) fn print_json<T: Proto>(msg: &T) -> Result<(), Fail> {
    print_value(&json(msg))
}

/// Prints `msg` as JSON on one line (for streams: one document per line).
pub(crate) fn print_json_line<T: Proto>(msg: &T) -> Result<(), Fail> {
    outln!("{}", json(msg))
}

/// Prints a JSON value the CLI made itself, pretty.
pub(crate) fn print_value(v: &Value) -> Result<(), Fail> {
    let text = serde_json::to_string_pretty(v).expect("JSON values serialize");
    outln!("{text}")
}

/// What a command acting on one workflow prints: `{"id", "ok": true}` and
/// the response's own fields. `id` is the workflow acted on, or created
/// (submit, clone).
pub(crate) fn action<T: Proto>(id: &str, resp: &T) -> Value {
    let mut v = serde_json::json!({"id": id, "ok": true});
    if let Value::Object(fields) = json(resp) {
        v.as_object_mut().expect("object").extend(fields);
    }
    v
}

/// A timestamp as RFC 3339, as the protobuf JSON mapping writes it.
pub(crate) fn rfc3339(t: &Option<interlock_proto::pbjson_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_indexes_and_unset_fields_follow_the_contract() {
        let ev = v1::WatchEvent {
            event: Some(v1::watch_event::Event::Transition(v1::Transition {
                at: None,
                block: 1,
                job: -1,
                status: v1::Status::NotStarted as i32,
                message: String::new(),
            })),
        };
        let v = json(&ev);
        assert_eq!(
            v,
            serde_json::json!({"snapshot": null, "log": null, "transition": {
                "at": null, "block": 1, "job": null, "status": "NotStarted", "message": ""}})
        );
        let st = v1::StatusResp {
            status: v1::Status::Running as i32,
            created: Some(interlock_proto::pbjson_types::Timestamp {
                seconds: 1_796_061_600,
                nanos: 1_000_000,
            }),
            blocks: vec![v1::BlockStatus {
                status: v1::Status::Completed as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        let v = json(&st);
        assert_eq!(v["status"], "Running");
        assert_eq!(v["blocks"][0]["status"], "Completed");
        assert_eq!(v["ended"], Value::Null);
        assert_eq!(v["created"], "2026-11-30T18:00:00.001Z");
        assert!(v.as_object().unwrap().contains_key("ended"));
    }
}
