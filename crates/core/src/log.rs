//! Job logs: the lines a job attempt emits (its own messages, a command's
//! stdout and stderr, a worker's lines), kept per attempt.
//!
//! Invariants: a line holds no newline and at most [`MAX_LINE_BYTES`]
//! bytes (longer ones are cut on a character boundary and marked); `n`
//! numbers an attempt's lines from 1 in the order they were emitted, so a
//! gap in `n` is lines that were dropped (the oldest beyond the per-attempt
//! limit, or lines emitted faster than they could be recorded).

use crate::Micros;

/// Longest line kept, in bytes; the rest is cut.
pub const MAX_LINE_BYTES: usize = 4096;

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    /// A message the job (or worker) wrote through its context.
    Log,
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Log => "log",
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }

    /// The stream named `s`; an empty name is [`LogStream::Log`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "log" => Some(LogStream::Log),
            "stdout" => Some(LogStream::Stdout),
            "stderr" => Some(LogStream::Stderr),
            _ => None,
        }
    }
}

/// One recorded line of a job attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Position in the workflow's log, assigned by the store when the line
    /// is recorded: increasing in commit order, the cursor of a reader.
    pub seq: u64,
    pub block: usize,
    pub job: usize,
    pub attempt: u32,
    /// The line's number within its attempt, from 1.
    pub n: u64,
    pub at: Micros,
    pub stream: LogStream,
    pub text: String,
}

/// Which lines of a workflow to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    pub workflow_id: String,
    /// One job's lines only (block, job).
    pub job: Option<(usize, usize)>,
    /// Lines recorded after this position ([`LogLine::seq`]); 0 for all.
    pub after: u64,
    /// At most this many, oldest first.
    pub limit: usize,
}

/// `text` as one log line: without a trailing line end, without terminal
/// control sequences (colours, cursor moves: ESC `[` … and ESC `]` … BEL),
/// with other control characters but tab made visible (`\x07`), and cut
/// to [`MAX_LINE_BYTES`] (marked with `…`).
pub fn clean_line(text: &str) -> String {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    let mut out = String::with_capacity(text.len().min(MAX_LINE_BYTES));
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            match chars.peek() {
                // CSI: parameters and intermediates, then one final byte.
                Some('[') => {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                    continue;
                }
                // OSC (window titles, hyperlinks): up to BEL or ESC \.
                Some(']') => {
                    chars.next();
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' {
                            chars.next_if_eq(&'\\');
                            break;
                        }
                    }
                    continue;
                }
                _ => {}
            }
        }
        if c == '\t' || !c.is_control() {
            out.push(c);
        } else if (c as u32) < 0x80 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.extend(c.escape_unicode());
        }
        if out.len() > MAX_LINE_BYTES {
            break;
        }
    }
    if out.len() > MAX_LINE_BYTES {
        let mut cut = MAX_LINE_BYTES - '…'.len_utf8();
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_line_and_bounded() {
        assert_eq!(clean_line("hello\r\n"), "hello");
        assert_eq!(clean_line("a\tb"), "a\tb");
        assert_eq!(clean_line("a\nb\u{7}"), "a\\x0ab\\x07");
        // Colours and titles go; the text stays, however many there are.
        assert_eq!(
            clean_line("\u{1b}[1;31merror\u{1b}[0m: disk \u{1b}]0;title\u{7}full"),
            "error: disk full"
        );
        let coloured = format!("{}TAIL", "\u{1b}[0m".repeat(800));
        assert_eq!(clean_line(&coloured), "TAIL");
        assert_eq!(clean_line("lone \u{1b} escape"), "lone \\x1b escape");
        let long = "é".repeat(MAX_LINE_BYTES);
        let cut = clean_line(&long);
        assert!(cut.len() <= MAX_LINE_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
        // A line that fits is kept whole, however close to the limit.
        let exact = "x".repeat(MAX_LINE_BYTES);
        assert_eq!(clean_line(&exact), exact);
        assert_eq!(clean_line(&format!("{exact}\n")), exact);
    }

    #[test]
    fn stream_names_round_trip() {
        for s in [LogStream::Log, LogStream::Stdout, LogStream::Stderr] {
            assert_eq!(LogStream::parse(s.as_str()), Some(s));
        }
        assert_eq!(LogStream::parse(""), Some(LogStream::Log));
        assert_eq!(LogStream::parse("stdin"), None);
    }
}
