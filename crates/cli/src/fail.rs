//! Failures and their exit codes: how a refused or unreachable call, or a
//! bad input, becomes a message on stderr and a process exit code.

/// A failure with its exit code.
pub(crate) struct Fail(pub u8, pub String);

impl From<tonic::Status> for Fail {
    fn from(s: tonic::Status) -> Self {
        use tonic_types::StatusExt;
        let mut msg = format!("{:?}: {}", s.code(), s.message());
        let d = s.get_error_details();
        if let Some(pf) = d.precondition_failure() {
            for v in &pf.violations {
                msg.push_str(&format!(
                    "\n  {} at {}: {}",
                    v.r#type, v.subject, v.description
                ));
            }
        }
        Fail(3, msg)
    }
}

impl From<interlock_client::Error> for Fail {
    fn from(e: interlock_client::Error) -> Self {
        use interlock_client::Error as E;
        match e {
            E::Rpc(s) => s.into(),
            e @ (E::Credentials(_) | E::Address(..)) => Fail(2, e.to_string()),
            other => Fail(4, other.to_string()),
        }
    }
}
