//! Test certificates, generated at test time (no keys are committed).
//!
//! A [`Ca`] issues server certificates for `localhost` / `127.0.0.1` and
//! client certificates with a chosen common name and SANs; everything is
//! written as PEM files into a directory the test owns.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber, date_time_ymd,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A certificate authority for one test.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
    /// Where `pem` is written.
    pub path: PathBuf,
    next_serial: AtomicU64,
}

/// A certificate and its key, PEM, and where they are written.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub serial: u64,
}

impl Leaf {
    /// Writes the pair again to `cert`/`key` (e.g. over a server's files).
    pub fn write_to(&self, cert: &Path, key: &Path) {
        crate::write_config(key, &self.key_pem);
        crate::write_config(cert, &self.cert_pem);
    }
}

impl Ca {
    /// A new CA named `name`, its certificate written to `dir/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.serial_number = Some(SerialNumber::from(1u64));
        let cert = p.self_signed(&key).expect("self-signed CA");
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, cert.pem()).unwrap();
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
            path,
            next_serial: AtomicU64::new(2),
        }
    }

    /// A CRL revoking `revoked`, written to `dir/<name>`.
    pub fn crl(&self, dir: &Path, name: &str, revoked: &[&Leaf]) -> PathBuf {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2025, 1, 1),
            next_update: date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(self.next_serial.fetch_add(1, Ordering::Relaxed)),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|l| RevokedCertParams {
                    serial_number: SerialNumber::from(l.serial),
                    revocation_time: date_time_ymd(2025, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).expect("CRL");
        let path = dir.join(name);
        crate::write_config(&path, &crl.pem().expect("PEM"));
        path
    }

    fn issue(&self, dir: &Path, stem: &str, mut p: CertificateParams) -> Leaf {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        p.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &self.issuer).expect("signed");
        let leaf = Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
            serial,
        };
        leaf.write_to(&leaf.cert, &leaf.key);
        leaf
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn server(&self, dir: &Path, stem: &str) -> Leaf {
        let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("names");
        p.distinguished_name.push(DnType::CommonName, "interlockd");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(dir, stem, p)
    }

    /// A client certificate with common name `cn` (if any) and DNS SANs.
    pub fn client(&self, dir: &Path, cn: Option<&str>, dns: &[&str]) -> Leaf {
        let mut p = CertificateParams::default();
        if let Some(cn) = cn {
            p.distinguished_name.push(DnType::CommonName, cn);
        }
        p.subject_alt_names = dns
            .iter()
            .map(|d| SanType::DnsName((*d).try_into().expect("dns name")))
            .collect();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let stem = format!("client-{}", cn.or(dns.first().copied()).unwrap_or("anon"));
        self.issue(dir, &stem, p)
    }
}
