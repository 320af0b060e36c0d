//! Everything written to stdout goes through here: human text through
//! [`out!`]/[`outln!`], JSON through [`print_json`]. A closed stdout
//! (`interlock list | head -1`) ends the command quietly instead of
//! panicking the way `println!` does.

use crate::fail::Fail;
use std::io::Write;

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

pub(crate) fn print_json<T: serde::Serialize>(v: &T) -> Result<(), Fail> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Fail::Msg(3, e.to_string()))?;
    outln!("{text}")
}

/// A timestamp as RFC 3339, as the protobuf JSON mapping writes it.
pub(crate) fn rfc3339(t: &Option<interlock_proto::pbjson_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}
