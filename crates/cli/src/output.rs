//! Printing results: JSON for `--json`, shared by every command.

use crate::fail::Fail;

pub(crate) fn print_json<T: serde::Serialize>(v: &T) -> Result<(), Fail> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Fail(3, e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// A timestamp as RFC 3339, as the protobuf JSON mapping writes it.
pub(crate) fn rfc3339(t: &Option<interlock_proto::pbjson_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}
