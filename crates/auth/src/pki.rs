//! A small private PKI for a TLS and mTLS start: one CA, one server
//! certificate for the names clients dial, one client certificate whose
//! common name becomes the caller's identity (`cert:<name>`).
//!
//! Meant for a first deployment and for labs; an organisation with its own
//! CA issues these instead. Keys are ECDSA P-256. Pure, like the rest of
//! this crate: it returns PEM text; `interlock admin gen-certs` writes it.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber, date_time_ymd,
};

/// What to issue.
#[derive(Clone, Debug)]
pub struct Request {
    /// DNS names and IP addresses the server is reached by.
    pub server_names: Vec<String>,
    /// The client certificate's common name: the identity it signs in as.
    pub client_name: String,
    /// How long the server and client certificates are valid.
    pub days: u32,
}

/// The issued certificates and keys, PEM.
pub struct Issued {
    pub ca_cert: String,
    pub ca_key: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

/// Why nothing was issued or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{0}")]
    Invalid(String),
    #[error("issuing certificates: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// Today plus `days`, as a calendar date (what rcgen takes).
fn ymd(days: i64) -> Result<(i32, u8, u8), PkiError> {
    let d = jiff::Zoned::now()
        .date()
        .checked_add(jiff::Span::new().days(days))
        .map_err(|e| {
            PkiError::Invalid(format!("a validity of {days} days is out of range: {e}"))
        })?;
    Ok((i32::from(d.year()), d.month() as u8, d.day() as u8))
}

fn validity(p: &mut CertificateParams, days: i64) -> Result<(), PkiError> {
    // From yesterday, so a peer whose clock is a little behind accepts it;
    // and so `days` in all, never longer than asked.
    let ((fy, fm, fd), (ty, tm, td)) = (ymd(-1)?, ymd(days - 1)?);
    p.not_before = date_time_ymd(fy, fm, fd);
    p.not_after = date_time_ymd(ty, tm, td);
    Ok(())
}

/// Issues a CA (valid ten years), a server and a client certificate.
pub fn issue(req: &Request) -> Result<Issued, PkiError> {
    if req.server_names.is_empty() {
        return Err(PkiError::Invalid(
            "give at least one server name (a DNS name or an IP address clients dial)".into(),
        ));
    }
    if req.client_name.trim().is_empty() {
        return Err(PkiError::Invalid(
            "the client name must not be empty".into(),
        ));
    }
    if !(1..=3650).contains(&req.days) {
        return Err(PkiError::Invalid(format!(
            "--days {} is out of range: give 1 to 3650",
            req.days
        )));
    }
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "Interlock private CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.serial_number = Some(SerialNumber::from(random_serial()));
    validity(&mut ca, 3650)?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca, ca_key);

    let mut server = CertificateParams::new(req.server_names.clone())
        .map_err(|e| PkiError::Invalid(format!("a server name is not usable: {e}")))?;
    server
        .distinguished_name
        .push(DnType::CommonName, req.server_names[0].clone());
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.serial_number = Some(SerialNumber::from(random_serial()));
    validity(&mut server, req.days.into())?;
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let mut client = CertificateParams::default();
    client
        .distinguished_name
        .push(DnType::CommonName, req.client_name.clone());
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.serial_number = Some(SerialNumber::from(random_serial()));
    validity(&mut client, req.days.into())?;
    let client_key = KeyPair::generate()?;
    let client_cert = client.signed_by(&client_key, &issuer)?;

    Ok(Issued {
        ca_cert: ca_pem,
        ca_key: issuer.key().serialize_pem(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client_cert.pem(),
        client_key: client_key.serialize_pem(),
    })
}

fn random_serial() -> u64 {
    // Positive and non-zero, as RFC 5280 asks.
    (rand::random::<u64>() >> 1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> Request {
        Request {
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            client_name: "alice".into(),
            days: 30,
        }
    }

    #[test]
    fn the_client_certificate_names_its_identity() {
        let issued = issue(&req()).unwrap();
        let der = pem_der(&issued.client_cert);
        let id = crate::cert::identity(&der).unwrap();
        assert_eq!(id.to_string(), "cert:alice");
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut r = req();
        r.server_names.clear();
        assert!(issue(&r).is_err());
        let mut r = req();
        r.days = 0;
        let Err(e) = issue(&r) else {
            panic!("issued for 0 days")
        };
        assert!(e.to_string().contains("--days 0"), "{e}");
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        p.contents
    }
}
