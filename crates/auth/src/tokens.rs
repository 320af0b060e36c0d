//! Bearer tokens, stored as SHA-256 hashes in `tokens.json`:
//!
//! ```json
//! {"tokens": [{"name": "ci-bot", "sha256": "<64 hex digits>", "expires": "2027-03-01T00:00:00Z"}]}
//! ```
//!
//! `expires` (RFC 3339, optional) ends a token's validity without an edit
//! on the day.
//!
//! Tokens are 256-bit random strings minted by [`mint`], so a plain SHA-256
//! is a sufficient one-way hash (a slow password hash protects guessable
//! secrets; these are not guessable). Lookup is by hash, so the comparison
//! never touches the secret itself and its timing tells nothing about it.
//!
//! A name may have several entries (each its own secret and expiry), so a
//! token is rotated without downtime: add the new one under the same name,
//! move the callers, remove the old one.
//!
//! Invariants: hashes are unique; a token file with a repeated or malformed
//! hash is refused as a whole.

use crate::{ConfigError, parse_json};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::SystemTime;

/// Prefix of minted tokens; makes them recognizable to secret scanners.
pub const PREFIX: &str = "ilk_";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tokens: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    sha256: String,
    #[serde(default)]
    expires: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    name: String,
    expires: Option<SystemTime>,
}

mod session;
pub use session::SessionRefused;

/// The configured tokens, by hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], Known>,
    /// Session id → hash (see [`session`]).
    by_session: HashMap<[u8; 16], [u8; 32]>,
}

/// Why a presented token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("bearer token not recognized: mistyped or revoked")]
    Unknown,
    #[error("bearer token {name:?} expired at {at}; mint a new one (interlock token new)")]
    Expired { name: String, at: String },
}

/// The hex SHA-256 of a token, as written in `tokens.json`.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token: `ilk_` and 64 hex digits (256 bits).
pub fn mint() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{PREFIX}{}", hex::encode(bytes))
}

impl Tokens {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let file: File = parse_json(text, "tokens.json")?;
        let mut by_hash = HashMap::new();
        for (i, e) in file.tokens.into_iter().enumerate() {
            let at = format!("tokens.json: tokens[{i}]");
            if e.name.is_empty() || e.name.contains(char::is_whitespace) {
                return Err(ConfigError(format!(
                    "{at}: name {:?} must be non-empty and without spaces",
                    e.name
                )));
            }
            let mut digest = [0u8; 32];
            hex::decode_to_slice(e.sha256.trim(), &mut digest).map_err(|_| {
                ConfigError(format!(
                    "{at} ({}): sha256 must be 64 hex digits (the output of `interlock token new`), got {:?}",
                    e.name, e.sha256
                ))
            })?;
            let expires = e
                .expires
                .as_deref()
                .map(|t| {
                    humantime::parse_rfc3339_weak(t).map_err(|err| {
                        ConfigError(format!(
                            "{at} ({}): expires {t:?} is not an RFC 3339 time like \
                             2027-03-01T00:00:00Z: {err}",
                            e.name
                        ))
                    })
                })
                .transpose()?;
            let known = Known {
                name: e.name.clone(),
                expires,
            };
            if let Some(other) = by_hash.insert(digest, known) {
                return Err(ConfigError(format!(
                    "{at} ({}): same hash as {:?}; one secret must not have two names",
                    e.name, other.name
                )));
            }
        }
        let by_session = by_hash
            .keys()
            .map(|d| (session::session_id(d), *d))
            .collect();
        Ok(Self {
            by_hash,
            by_session,
        })
    }

    /// The name of the token `presented`, if it is known and, at `now`,
    /// not expired.
    pub fn verify(&self, presented: &str, now: SystemTime) -> Result<&str, Refused> {
        self.entry(presented, now).map(|(_, k)| k.name.as_str())
    }

    /// The hash and entry of the token `presented`, if it is good at `now`.
    fn entry(&self, presented: &str, now: SystemTime) -> Result<([u8; 32], &Known), Refused> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let k = self.by_hash.get(&digest).ok_or(Refused::Unknown)?;
        k.current(now)?;
        Ok((digest, k))
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

impl Known {
    /// Refused once past its expiry.
    fn current(&self, now: SystemTime) -> Result<(), Refused> {
        match self.expires {
            Some(at) if now >= at => Err(Refused::Expired {
                name: self.name.clone(),
                at: humantime::format_rfc3339_seconds(at).to_string(),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn text_after_the_json_value_is_refused() {
        let e = Tokens::parse(r#"{"tokens": []} {"tokens": []}"#).unwrap_err();
        assert!(e.to_string().contains("after the first JSON value"), "{e}");
    }

    use super::*;

    fn file(entries: &[(&str, &str)]) -> String {
        let v: Vec<_> = entries
            .iter()
            .map(|(n, h)| serde_json::json!({"name": n, "sha256": h}))
            .collect();
        serde_json::json!({ "tokens": v }).to_string()
    }

    #[test]
    fn a_minted_token_verifies_by_its_hash_only() {
        let (a, b) = (mint(), mint());
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 64);
        let t = Tokens::parse(&file(&[("ci", &hash(&a)), ("bot", &hash(&b))])).unwrap();
        let now = SystemTime::now();
        assert_eq!(t.verify(&a, now), Ok("ci"));
        assert_eq!(t.verify(&b, now), Ok("bot"));
        let unknown = Err(Refused::Unknown);
        assert_eq!(
            t.verify(&hash(&a), now),
            unknown,
            "the stored hash is not a token"
        );
        assert_eq!(t.verify("", now), unknown);
        assert_eq!(t.verify(&format!("{a} "), now), unknown);
    }

    #[test]
    fn a_name_may_hold_two_tokens_while_it_rotates() {
        let (old, new) = (mint(), mint());
        let t = Tokens::parse(&file(&[("ci", &hash(&old)), ("ci", &hash(&new))])).unwrap();
        let now = SystemTime::now();
        assert_eq!(t.verify(&old, now), Ok("ci"));
        assert_eq!(t.verify(&new, now), Ok("ci"));
    }

    #[test]
    fn a_token_stops_working_when_it_expires() {
        let a = mint();
        let text = serde_json::json!({"tokens": [
            {"name": "temp", "sha256": hash(&a), "expires": "2027-03-01T00:00:00Z"}
        ]})
        .to_string();
        let t = Tokens::parse(&text).unwrap();
        let at = humantime::parse_rfc3339("2027-03-01T00:00:00Z").unwrap();
        let second = std::time::Duration::from_secs(1);
        assert_eq!(t.verify(&a, at - second), Ok("temp"));
        let err = t.verify(&a, at).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bearer token \"temp\" expired at 2027-03-01T00:00:00Z; mint a new one (interlock token new)"
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_entry_named() {
        let h = hash("x");
        let cases = [
            (file(&[("a", "zz")]), "tokens[0] (a): sha256 must be 64 hex"),
            (file(&[("a", &h), ("b", &h)]), "same hash as \"a\""),
            (file(&[("", &h)]), "must be non-empty"),
            (
                serde_json::json!({"tokens": [{"name": "a", "sha256": h, "expires": "next week"}]})
                    .to_string(),
                "tokens[0] (a): expires \"next week\" is not an RFC 3339 time",
            ),
            (
                r#"{"tokens": [{"name": "a", "hash": "x"}]}"#.into(),
                "unknown field",
            ),
            ("[]".into(), "tokens.json"),
        ];
        for (text, want) in cases {
            let err = Tokens::parse(&text).unwrap_err().0;
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
