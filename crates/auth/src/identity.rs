//! An authenticated caller.
//!
//! The written form `<kind>:<name>` is what audit entries record and what
//! `rbac.json` bindings match, so a token named `alice` and a certificate for
//! `alice` are never confused.

use std::fmt;

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    /// Authentication is off (the loopback zero-config default); `name` is
    /// the peer address.
    Anonymous,
    /// A bearer token from `tokens.json`; `name` is the token's name.
    Token,
    /// A client certificate verified against the configured CA; `name` is
    /// the subject's common name, else its first subject alternative name.
    Certificate,
}

/// A caller, as far as authorization and the audit log are concerned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub kind: IdentityKind,
    pub name: String,
    /// Further names the caller is known by (a certificate's SANs); a
    /// binding naming any of them applies.
    pub aliases: Vec<String>,
}

impl Identity {
    pub fn anonymous(peer: impl Into<String>) -> Self {
        Self {
            kind: IdentityKind::Anonymous,
            name: peer.into(),
            aliases: Vec::new(),
        }
    }

    pub fn token(name: impl Into<String>) -> Self {
        Self {
            kind: IdentityKind::Token,
            name: name.into(),
            aliases: Vec::new(),
        }
    }

    pub fn certificate(name: impl Into<String>, aliases: Vec<String>) -> Self {
        Self {
            kind: IdentityKind::Certificate,
            name: name.into(),
            aliases,
        }
    }

    /// The prefix used in written forms: `token`, `cert` or `anonymous`.
    pub fn prefix(&self) -> &'static str {
        match self.kind {
            IdentityKind::Anonymous => "anonymous",
            IdentityKind::Token => "token",
            IdentityKind::Certificate => "cert",
        }
    }

    /// Every written form this identity answers to: `cert:<name>` and
    /// `cert:<alias>` for each alias.
    pub fn written_forms(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once(&self.name)
            .chain(&self.aliases)
            .map(|n| format!("{}:{n}", self.prefix()))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            // Kept as before authentication existed: `anonymous@<peer>`.
            IdentityKind::Anonymous => write!(f, "anonymous@{}", self.name),
            _ => write!(f, "{}:{}", self.prefix(), self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_forms_carry_the_kind() {
        assert_eq!(Identity::token("ci").to_string(), "token:ci");
        assert_eq!(
            Identity::anonymous("127.0.0.1:5").to_string(),
            "anonymous@127.0.0.1:5"
        );
        let c = Identity::certificate("alice", vec!["alice.example.com".into()]);
        assert_eq!(c.to_string(), "cert:alice");
        assert_eq!(
            c.written_forms().collect::<Vec<_>>(),
            ["cert:alice", "cert:alice.example.com"]
        );
    }
}
