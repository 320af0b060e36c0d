//! Credentials as command-line flags (each also read from its `INTERLOCK_*`
//! variable), shared by every client binary so they all take the same
//! `--ca`, `--cert`/`--key` and `--token`/`--token-file`.

use crate::{Credentials, Error};
use std::path::PathBuf;

/// The server address a client binary uses when given none: plaintext to
/// a local interlockd. An address without a scheme becomes `http://`, or
/// `https://` when a CA is given (see [`crate::transport`]).
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:8080";

#[derive(Debug, Clone, Default, clap::Args)]
pub struct CredentialArgs {
    /// PEM CA bundle that signed the server's certificate; turns TLS on.
    #[arg(long, env = "INTERLOCK_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for mutual TLS (with --key).
    #[arg(long, env = "INTERLOCK_CERT", global = true)]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, env = "INTERLOCK_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// Bearer token (prefer INTERLOCK_TOKEN or --token-file: flags show in `ps`).
    #[arg(long, env = "INTERLOCK_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, env = "INTERLOCK_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Server name to verify the certificate against, if not the address's host.
    #[arg(long, env = "INTERLOCK_TLS_SERVER_NAME", global = true)]
    pub tls_server_name: Option<String>,
}

impl CredentialArgs {
    /// These settings, with those not given taken from `fallback` (a
    /// config file, say).
    pub fn or(self, fallback: CredentialArgs) -> Self {
        Self {
            ca: self.ca.or(fallback.ca),
            cert: self.cert.or(fallback.cert),
            key: self.key.or(fallback.key),
            token: self.token.or(fallback.token),
            token_file: self.token_file.or(fallback.token_file),
            tls_server_name: self.tls_server_name.or(fallback.tls_server_name),
        }
    }

    /// Reads the files named. A token given directly wins over a token file.
    pub fn credentials(&self) -> Result<Credentials, Error> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(p)) => Some(std::fs::read_to_string(p).map_err(|e| {
                Error::Credentials(format!("cannot read token file {}: {e}", p.display()))
            })?),
            (None, None) => None,
        };
        let mut c = Credentials::from_files(
            self.ca.as_deref(),
            self.cert.as_deref(),
            self.key.as_deref(),
            token,
        )?;
        c.server_name = self.tls_server_name.clone();
        Ok(c)
    }
}
