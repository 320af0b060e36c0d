//! The identity inside a client certificate.
//!
//! Only called on a certificate the TLS layer has already verified against
//! the configured client CA; this module reads names, it does not judge
//! trust. The name is the subject's common name; without one, the first
//! subject alternative name (URI, then DNS, then e-mail). Every SAN is also
//! an alias, so a binding may name `cert:spiffe://...` or
//! `cert:host.example.com` whichever the CA issues.

use crate::Identity;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Reads the identity of the leaf certificate `der`.
pub fn identity(der: &[u8]) -> Result<Identity, String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("client certificate cannot be parsed: {e}"))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .find_map(|a| a.as_str().ok())
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let mut sans: Vec<(u8, String)> = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                GeneralName::URI(s) => sans.push((0, s.to_string())),
                GeneralName::DNSName(s) => sans.push((1, s.to_string())),
                GeneralName::RFC822Name(s) => sans.push((2, s.to_string())),
                _ => {}
            }
        }
    }
    // Stable: the preferred SAN kind first, issuer order within a kind.
    sans.sort_by_key(|(rank, _)| *rank);
    let mut aliases: Vec<String> = sans.into_iter().map(|(_, s)| s).collect();
    let name = match cn {
        Some(cn) => cn,
        None if !aliases.is_empty() => aliases.remove(0),
        None => {
            return Err(
                "client certificate has neither a subject common name nor a DNS, URI or \
                 e-mail subject alternative name to identify the caller by"
                    .into(),
            );
        }
    };
    aliases.retain(|a| *a != name);
    Ok(Identity::certificate(name, aliases))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    fn cert(cn: Option<&str>, sans: Vec<SanType>) -> Vec<u8> {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        if let Some(cn) = cn {
            p.distinguished_name.push(DnType::CommonName, cn);
        }
        p.distinguished_name
            .push(DnType::OrganizationName, "Interlock tests");
        p.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn common_name_first_then_sans_as_aliases() {
        let der = cert(
            Some("alice"),
            vec![
                SanType::DnsName("alice.ops.example.com".try_into().unwrap()),
                SanType::URI("spiffe://example.com/ops/alice".try_into().unwrap()),
            ],
        );
        let id = identity(&der).unwrap();
        assert_eq!(id.to_string(), "cert:alice");
        assert_eq!(
            id.aliases,
            ["spiffe://example.com/ops/alice", "alice.ops.example.com"]
        );
    }

    #[test]
    fn without_a_common_name_the_first_san_names_the_caller() {
        let der = cert(
            None,
            vec![
                SanType::Rfc822Name("bot@example.com".try_into().unwrap()),
                SanType::DnsName("bot.example.com".try_into().unwrap()),
            ],
        );
        let id = identity(&der).unwrap();
        assert_eq!(id.name, "bot.example.com");
        assert_eq!(id.aliases, ["bot@example.com"]);
    }

    #[test]
    fn a_nameless_or_garbled_certificate_is_refused() {
        let err = identity(&cert(None, vec![])).unwrap_err();
        assert!(err.contains("neither a subject common name"), "{err}");
        assert!(identity(b"not DER").is_err());
    }
}
