//! TLS for the gRPC listener, with certificates reloaded while serving.
//!
//! The certificate chain, key and optional client CA are PEM files. They are
//! re-read every reload interval (and on SIGHUP through the same tick); when
//! their content changes a new rustls `ServerConfig` is built and used for
//! every connection accepted after that. Connections already open keep the
//! session they negotiated.
//!
//! Invariants:
//! - A file set that cannot be used (unreadable, malformed, key not matching
//!   the certificate) never replaces the one in force; at start-up it stops
//!   the server from starting instead of serving without TLS.
//! - Handshakes run on their own tasks with a deadline, so a slow or silent
//!   client cannot hold up accepting others.
//! - With a client CA, a presented client certificate must chain to it, and
//!   not be revoked by a configured CRL, or the handshake fails; whether one
//!   is required is a setting.

use crate::audit::{Auditor, Caller};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer,
};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// Longest a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; connections beyond wait in the backlog.
const MAX_HANDSHAKES: usize = 1024;

/// Where the TLS material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    /// PEM CRLs of the client CA: revoked client certificates are refused.
    pub client_crl: Option<PathBuf>,
    pub require_client_cert: bool,
}

type Contents = Vec<Result<Vec<u8>, String>>;

impl TlsFiles {
    fn read(&self) -> Contents {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let mut v = vec![read(&self.cert), read(&self.key)];
        // Indexes 2 and 3: present whenever configured.
        for p in [&self.client_ca, &self.client_crl].into_iter().flatten() {
            v.push(read(p));
        }
        v
    }

    /// Builds a server configuration from file contents read by `read`.
    fn build(&self, contents: &Contents) -> Result<ServerConfig, String> {
        let got = |i: usize| contents[i].as_ref().map_err(Clone::clone);
        let cert_pem = got(0)?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", self.cert.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no PEM certificate found", self.cert.display()));
        }
        let key = PrivateKeyDer::from_pem_slice(got(1)?)
            .map_err(|e| format!("{}: {e}", self.key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(got(2)?) {
                    let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
                    roots
                        .add(c)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("{}: no PEM certificate found", path.display()));
                }
                let mut v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                if let Some(crl_path) = &self.client_crl {
                    let crls: Vec<CertificateRevocationListDer<'static>> =
                        CertificateRevocationListDer::pem_slice_iter(got(3)?)
                            .collect::<Result<_, _>>()
                            .map_err(|e| format!("{}: {e}", crl_path.display()))?;
                    if crls.is_empty() {
                        return Err(format!("{}: no PEM CRL found", crl_path.display()));
                    }
                    // Issuers without a CRL here are not checked; those with
                    // one must not list the client's certificate.
                    v = v
                        .with_crls(crls)
                        .only_check_end_entity_revocation()
                        .allow_unknown_revocation_status();
                }
                let v = if self.require_client_cert {
                    v
                } else {
                    // Callers without a certificate may still present a token.
                    v.allow_unauthenticated()
                };
                builder.with_client_cert_verifier(
                    v.build().map_err(|e| format!("{}: {e}", path.display()))?,
                )
            }
        };
        let mut cfg = builder
            .with_single_cert(certs, key)
            .map_err(|e| format!("{} with {}: {e}", self.cert.display(), self.key.display()))?;
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(cfg)
    }
}

/// The TLS configuration in force.
#[derive(Clone)]
pub struct Tls(watch::Receiver<Arc<ServerConfig>>);

/// Loads the files (failing if they cannot be used) and keeps them live
/// until `shutdown`.
pub fn start(
    files: TlsFiles,
    interval: Duration,
    audit: Auditor,
    shutdown: CancellationToken,
) -> Result<Tls, String> {
    let mut seen = files.read();
    let cfg = files.build(&seen).map_err(|e| format!("TLS: {e}"))?;
    let (tx, rx) = watch::channel(Arc::new(cfg));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = files.read();
            if now == seen {
                continue;
            }
            seen = now;
            let (outcome, detail) = match files.build(&seen) {
                Ok(cfg) => {
                    tx.send_replace(Arc::new(cfg));
                    tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
                    ("ok".to_string(), String::new())
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS files are not usable; keeping the certificate in force");
                    ("invalid".to_string(), e)
                }
            };
            metrics::counter!("interlock_config_reloads_total", "file" => "tls", "outcome" => outcome.clone())
                .increment(1);
            audit
                .record(Caller::config_reload("tls", outcome, detail))
                .await;
        }
    });
    Ok(Tls(rx))
}

/// The configuration in force with `alpn` offered: `base` itself when it
/// already offers that, else a copy made once per configuration in force
/// (kept in `derived` with the base it came from), not once per connection.
fn offering(
    derived: &mut Option<(Arc<ServerConfig>, Arc<ServerConfig>)>,
    base: Arc<ServerConfig>,
    alpn: &[&[u8]],
) -> Arc<ServerConfig> {
    if base
        .alpn_protocols
        .iter()
        .map(Vec::as_slice)
        .eq(alpn.iter().copied())
    {
        return base;
    }
    match derived {
        Some((from, cfg)) if Arc::ptr_eq(from, &base) => cfg.clone(),
        _ => {
            let mut c = (*base).clone();
            c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            let cfg = Arc::new(c);
            *derived = Some((base, cfg.clone()));
            cfg
        }
    }
}

/// ALPN for gRPC: HTTP/2 only.
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN for the HTTP API and dashboard: HTTP/2 first (a browser's Watch
/// streams then share one connection instead of using up its six), then
/// HTTP/1.1.
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Accepts TCP connections and yields those that complete a TLS handshake
/// with the configuration in force at accept time, offering `alpn`.
pub fn incoming(
    listener: TcpListener,
    tls: Tls,
    alpn: &'static [&'static [u8]],
    shutdown: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        let mut derived = None;
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => return,
                p = slots.clone().acquire_owned() => p.expect("never closed"),
            };
            let (tcp, peer) = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off
                        // rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // See server.rs: Nagle plus delayed ACKs stalls responses.
            let _ = tcp.set_nodelay(true);
            let cfg = offering(&mut derived, tls.0.borrow().clone(), alpn);
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => {
                        metrics::counter!("interlock_tls_handshake_failures_total").increment(1);
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        metrics::counter!("interlock_tls_handshake_failures_total").increment(1);
                        tracing::debug!(%peer, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
