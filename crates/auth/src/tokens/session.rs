//! Browser sessions derived from a bearer token, so the browser never
//! keeps the token itself.
//!
//! Signing in with a token gives a session value
//! `<id>.<expiry>.<mac>`: `id` names the token's tokens.json entry without
//! revealing its hash, `expiry` is a Unix time, and `mac` is an
//! HMAC-SHA256 keyed by the token's hash (which only the server, from
//! tokens.json, and the token's holder can compute) over both. Nothing is
//! kept on the server: every replica with the same tokens.json accepts the
//! session, a restart keeps it, and removing or expiring the token ends it.
//!
//! A session's CSRF token is another HMAC under the same key, over the
//! session value: a page served to the session can send it, a page of
//! another site (which cannot read the session cookie) cannot make it.
//!
//! Invariants: a session is accepted only before its expiry, only while
//! its token is in tokens.json and not expired, and only with a MAC that
//! verifies (compared in constant time).

use super::{Known, Refused, Tokens};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};

type HmacSha256 = Hmac<sha2_next::Sha256>;

/// The id a session uses for the token whose hash is `digest`.
pub(super) fn session_id(digest: &[u8; 32]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"interlock session id v1\0");
    h.update(digest);
    let full: [u8; 32] = h.finalize().into();
    full[..16].try_into().expect("16 of 32 bytes")
}

fn mac(digest: &[u8; 32], label: &[u8], msg: &str) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(digest).expect("HMAC takes any key length");
    m.update(label);
    m.update(msg.as_bytes());
    m
}

/// Why a session value was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefused {
    #[error("the session is not valid: sign in again")]
    Malformed,
    #[error("the session expired: sign in again")]
    Expired,
    #[error("the session's token was revoked or expired: sign in with a current token")]
    Token(#[from] Refused),
}

impl Tokens {
    /// Checks `presented` as [`Tokens::verify`] does and, if it is good,
    /// starts a session lasting `ttl` (never past the token's own expiry):
    /// the session value and the token's name.
    pub fn open_session(
        &self,
        presented: &str,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<(String, &str), Refused> {
        let (digest, k) = self.entry(presented, now)?;
        let mut until = now + ttl;
        if let Some(at) = k.expires {
            until = until.min(at);
        }
        let secs = until
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let body = format!("{}.{secs}", hex::encode(session_id(&digest)));
        let tag = hex::encode(mac(&digest, b"session v1\0", &body).finalize().into_bytes());
        Ok((format!("{body}.{tag}"), k.name.as_str()))
    }

    /// The name of the token behind a session value, if the session is
    /// good at `now`.
    pub fn verify_session(&self, value: &str, now: SystemTime) -> Result<&str, SessionRefused> {
        let (digest, k) = self.session_entry(value)?;
        let (body, tag) = value.rsplit_once('.').ok_or(SessionRefused::Malformed)?;
        let tag = hex::decode(tag).map_err(|_| SessionRefused::Malformed)?;
        mac(digest, b"session v1\0", body)
            .verify_slice(&tag)
            .map_err(|_| SessionRefused::Malformed)?;
        let secs: u64 = body
            .split_once('.')
            .and_then(|(_, s)| s.parse().ok())
            .ok_or(SessionRefused::Malformed)?;
        if now >= SystemTime::UNIX_EPOCH + Duration::from_secs(secs) {
            return Err(SessionRefused::Expired);
        }
        k.current(now)?;
        Ok(&k.name)
    }

    /// The CSRF token of a session value (`None` when its token is gone).
    pub fn session_csrf(&self, value: &str) -> Option<String> {
        let (digest, _) = self.session_entry(value).ok()?;
        Some(hex::encode(
            mac(digest, b"csrf v1\0", value).finalize().into_bytes(),
        ))
    }

    /// Whether `sent` is the CSRF token of the session `value`, compared in
    /// constant time.
    pub fn session_csrf_ok(&self, value: &str, sent: &str) -> bool {
        let (Ok((digest, _)), Ok(sent)) = (self.session_entry(value), hex::decode(sent)) else {
            return false;
        };
        mac(digest, b"csrf v1\0", value).verify_slice(&sent).is_ok()
    }

    fn session_entry(&self, value: &str) -> Result<(&[u8; 32], &Known), SessionRefused> {
        let id = value.split('.').next().ok_or(SessionRefused::Malformed)?;
        let mut raw = [0u8; 16];
        hex::decode_to_slice(id, &mut raw).map_err(|_| SessionRefused::Malformed)?;
        let digest = self
            .by_session
            .get(&raw)
            .ok_or(SessionRefused::Token(Refused::Unknown))?;
        Ok((digest, &self.by_hash[digest]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(entries: &[(&str, &str, Option<&str>)]) -> Tokens {
        let list: Vec<_> = entries
            .iter()
            .map(|(n, t, e)| {
                let mut v = serde_json::json!({"name": n, "sha256": crate::tokens::hash(t)});
                if let Some(e) = e {
                    v["expires"] = serde_json::json!(e);
                }
                v
            })
            .collect();
        Tokens::parse(&serde_json::json!({ "tokens": list }).to_string()).unwrap()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_session_stands_for_its_token_until_it_expires_or_the_token_goes() {
        let now = SystemTime::now();
        let t = tokens(&[("ops", "ilk_a", None), ("bot", "ilk_b", None)]);
        let (value, name) = t.open_session("ilk_a", now, HOUR).unwrap();
        assert_eq!(name, "ops");
        assert!(!value.contains("ilk_a"), "the token is not in the session");
        assert_eq!(t.verify_session(&value, now + HOUR / 2), Ok("ops"));
        assert_eq!(
            t.verify_session(&value, now + HOUR),
            Err(SessionRefused::Expired)
        );
        assert!(t.open_session("ilk_wrong", now, HOUR).is_err());

        // Tampering with the expiry or the id breaks the MAC.
        let (body, tag) = value.rsplit_once('.').unwrap();
        let (id, secs) = body.split_once('.').unwrap();
        let later: u64 = secs.parse::<u64>().unwrap() + 86_400;
        let forged = format!("{id}.{later}.{tag}");
        assert_eq!(
            t.verify_session(&forged, now),
            Err(SessionRefused::Malformed)
        );
        let (bot, _) = t.open_session("ilk_b", now, HOUR).unwrap();
        let other_id = bot.split('.').next().unwrap();
        let swapped = format!("{other_id}.{secs}.{tag}");
        assert_eq!(
            t.verify_session(&swapped, now),
            Err(SessionRefused::Malformed)
        );
        for junk in ["", ".", "zz.1.aa", "00112233445566778899aabbccddeeff.x.00"] {
            assert!(t.verify_session(junk, now).is_err(), "{junk:?}");
        }

        // Revoked: the same session no longer opens.
        let revoked = tokens(&[("bot", "ilk_b", None)]);
        assert_eq!(
            revoked.verify_session(&value, now),
            Err(SessionRefused::Token(Refused::Unknown))
        );
    }

    #[test]
    fn a_session_ends_with_its_token_and_csrf_tokens_are_per_session() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let t = tokens(&[("ops", "ilk_a", Some("2027-01-15T08:30:00Z"))]);
        let (value, _) = t.open_session("ilk_a", now, 1000 * HOUR).unwrap();
        let end = humantime::parse_rfc3339("2027-01-15T08:30:00Z").unwrap();
        assert!(t.verify_session(&value, end - HOUR).is_ok());
        assert!(
            t.verify_session(&value, end).is_err(),
            "capped at the token's expiry"
        );

        let (second, _) = t
            .open_session("ilk_a", now + Duration::from_secs(60), HOUR / 4)
            .unwrap();
        let csrf = t.session_csrf(&value).unwrap();
        assert!(t.session_csrf_ok(&value, &csrf));
        assert!(!t.session_csrf_ok(&second, &csrf), "bound to one session");
        assert!(!t.session_csrf_ok(&value, "00"));
        assert!(!t.session_csrf_ok(&value, "not hex"));
    }
}
