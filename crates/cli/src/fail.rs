//! Failures and their exit codes: how a refused or unreachable call, a bad
//! input or a closed stdout becomes a message on stderr and an exit code.

use crate::target::Target;
use tonic::Code;

/// Why a command did not succeed.
pub(crate) enum Fail {
    /// An exit code and the message saying why.
    Msg(u8, String),
    /// A call ended with a status: refused by the server (exit 3), or
    /// produced locally because the server never answered (exit 4).
    Rpc(tonic::Status),
    /// Stdout was closed (`interlock list | head -1`): nobody is reading,
    /// so stop quietly.
    Closed,
}

impl From<tonic::Status> for Fail {
    fn from(s: tonic::Status) -> Self {
        Fail::Rpc(s)
    }
}

impl From<interlock_client::Error> for Fail {
    fn from(e: interlock_client::Error) -> Self {
        use interlock_client::Error as E;
        match e {
            E::Rpc(s) => Fail::Rpc(s),
            e @ (E::Credentials(_) | E::Address(..)) => Fail::Msg(2, e.to_string()),
            other => Fail::Msg(4, other.to_string()),
        }
    }
}

impl Fail {
    /// The exit code and the message for stderr (none for a closed stdout).
    pub fn report(&self, t: &Target) -> (u8, Option<String>) {
        match self {
            Fail::Msg(code, msg) => (*code, Some(msg.clone())),
            Fail::Closed => (0, None),
            Fail::Rpc(s) => match unanswered(s) {
                Some(why) => (4, Some(why.describe(t, s))),
                None => (3, Some(refusal(s))),
            },
        }
    }
}

/// How a call went unanswered.
enum Unanswered {
    /// The deadline passed with no answer.
    Timeout,
    /// The connection broke or could not be made again.
    Transport,
}

impl Unanswered {
    fn describe(&self, t: &Target, s: &tonic::Status) -> String {
        let within = humantime::format_duration(t.opts.call_timeout);
        match self {
            Unanswered::Timeout => format!("no answer from {} within {within}", t.addr),
            Unanswered::Transport => format!("lost the connection to {}: {}", t.addr, s.message()),
        }
    }
}

/// Whether the status was made on this side because the server did not
/// answer. A status the server sent carries no source error; one tonic
/// made from a timeout or a transport failure does.
fn unanswered(s: &tonic::Status) -> Option<Unanswered> {
    let local = std::error::Error::source(s).is_some();
    match s.code() {
        Code::DeadlineExceeded => Some(Unanswered::Timeout),
        Code::Cancelled if local => Some(Unanswered::Timeout),
        _ if local => Some(Unanswered::Transport),
        _ => None,
    }
}

/// A status the server sent. Its message joins every violation into one
/// line; when the structured details carry them, print the message's
/// headline and then one short line per violation instead, so nothing
/// appears twice.
fn refusal(s: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    let d = s.get_error_details();
    // (policy, location, what to change)
    let mut violations: Vec<(String, String, String)> = Vec::new();
    if let Some(pf) = d.precondition_failure() {
        for v in &pf.violations {
            violations.push((v.r#type.clone(), v.subject.clone(), v.description.clone()));
        }
    }
    if let Some(br) = d.bad_request() {
        for v in &br.field_violations {
            // The server writes BadRequest descriptions as "<policy>: <message>".
            let (policy, message) = v
                .description
                .split_once(": ")
                .unwrap_or(("", &v.description));
            violations.push((policy.into(), v.field.clone(), message.into()));
        }
    }
    let code = s.code();
    if violations.is_empty() {
        return format!("{code:?}: {}", s.message());
    }
    let mut out = format!("{code:?}: {}", headline(s.message()));
    for (policy, location, message) in &violations {
        let policy = if policy.is_empty() {
            String::new()
        } else {
            format!("{policy} ")
        };
        out.push_str(&format!("\n  - {policy}at {location}: {message}"));
    }
    // The server sends the first violations that fit in a reply.
    if let Some(info) = d.error_info().filter(|i| i.reason == "TRUNCATED")
        && let (Some(all), Some(shown)) =
            (info.metadata.get("violations"), info.metadata.get("shown"))
    {
        out.push_str(&format!(
            "\n  … {shown} of {all} shown; `interlock validate` lists them all"
        ));
    }
    out
}

/// A refusal's headline: the first line of its message (the server puts
/// each violation on a line of its own after it, e.g. "refused by policy
/// version 1a2b (2 violations):"), without the colon, cut short.
fn headline(message: &str) -> std::borrow::Cow<'_, str> {
    let first = message
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches(':');
    const MAX: usize = 100;
    if first.chars().count() <= MAX {
        first.into()
    } else {
        let mut cut: String = first.chars().take(MAX - 1).collect();
        cut.push('…');
        cut.into()
    }
}
