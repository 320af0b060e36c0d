//! Human rendering of statuses, shared by the CLI and sample clients.

use interlock_proto::pbjson_types::Timestamp;
use interlock_proto::v1;

/// A status without the wire enum's `Status` prefix, e.g. "Completed".
pub fn status_name(s: i32) -> &'static str {
    v1::Status::try_from(s)
        .map(|s| s.as_str_name().trim_start_matches("Status"))
        .unwrap_or("Unknown")
}

/// " 1.5s" between two timestamps, or "" when either is missing.
pub fn duration(a: &Option<Timestamp>, b: &Option<Timestamp>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => {
            let d = (b.seconds - a.seconds) as f64 + f64::from(b.nanos - a.nanos) / 1e9;
            format!(" {d:.1}s")
        }
        _ => String::new(),
    }
}

/// The workflow as an indented tree: workflow, blocks, jobs, errors.
pub fn tree(st: &v1::StatusResp) -> String {
    let mut out = format!(
        "{} {} [{}]{}\n",
        st.name,
        st.id,
        status_name(st.status),
        duration(&st.started, &st.ended)
    );
    if !st.reason.is_empty() {
        out.push_str(&format!("  reason: {}\n", st.reason));
    }
    for (bi, b) in st.blocks.iter().enumerate() {
        out.push_str(&format!(
            "  block {bi} [{}]{} {}\n",
            status_name(b.status),
            duration(&b.started, &b.ended),
            b.desc
        ));
        for (ji, j) in b.jobs.iter().enumerate() {
            let args: Vec<_> = j.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!(
                "    {ji:>2} {:<14} {:<12}{} {}\n",
                j.name,
                status_name(j.status),
                duration(&j.started, &j.ended),
                args.join(" ")
            ));
            if !j.error.is_empty() {
                out.push_str(&format!("       error: {}\n", j.error));
            }
            if !j.waiting_for.is_empty() {
                out.push_str(&format!("       waiting for {}\n", j.waiting_for));
            }
        }
    }
    out
}
