//! Who a caller is, and what they may do.
//!
//! Layout:
//! - [`identity`]: an authenticated [`Identity`] (a token's name or a client
//!   certificate's subject) and how it is written in audit entries and
//!   bindings (`token:ci-bot`, `cert:alice.ops.example.com`).
//! - [`tokens`]: `tokens.json`, bearer tokens stored as SHA-256 hashes.
//! - [`cert`]: the identity inside an (already verified) client certificate.
//! - [`rbac`]: `rbac.json`, roles granting [`Action`]s on workflow names
//!   (exact or glob), bound to identities.
//! - [`pki`]: a private CA with a server and a client certificate, for a
//!   TLS and mTLS start.
//!
//! Architecture invariant: this crate is pure. It parses text and DER bytes
//! it is given and answers questions; it does no I/O and knows nothing about
//! gRPC, TLS sessions or the store. Verifying a certificate chain is the TLS
//! layer's job, done before an identity is read from it.
#![forbid(unsafe_code)]

pub mod cert;
pub mod identity;
pub mod pki;
pub mod rbac;
pub mod tokens;

pub use identity::{Identity, IdentityKind};
pub use rbac::{Action, Denied, Rbac};
pub use tokens::{Refused, SessionRefused, Tokens};

/// A configuration file that cannot be used. The caller keeps the last good
/// version in force and reports this message, which names the file's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Parses JSON naming the path of a bad field (`roles.viewer[0].actions[1]: ...`).
fn parse_json<T: serde::de::DeserializeOwned>(text: &str, file: &str) -> Result<T, ConfigError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let v = serde_path_to_error::deserialize(&mut *de)
        .map_err(|e| ConfigError(format!("{file}: {}: {}", e.path(), e.inner())))?;
    // One JSON value and nothing after it: a second object pasted below the
    // first must not be silently ignored.
    de.end()
        .map_err(|e| ConfigError(format!("{file}: after the first JSON value: {e}")))?;
    Ok(v)
}
