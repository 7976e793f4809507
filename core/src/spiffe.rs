//! SPIFFE JWT bundles as a key source: the bundle document of one trust
//! domain (a JWKS whose `keys` have `use: "jwt-svid"`, with
//! `spiffe_sequence` and `spiffe_refresh_hint`), and what is held of it
//! between fetches.
//!
//! * Only `use: "jwt-svid"` keys are taken, through the usual key checks
//!   (`crate::keys`); ordinary issuers never take them.
//! * A bundle whose `spiffe_sequence` is lower than the one held is refused
//!   (no rollback): the held keys stay, and the refusal counts as a failed
//!   fetch (logged, backed off, failing closed past `max_stale`).
//! * A bundle with no JWT authority (`keys` empty, or none of `use:
//!   "jwt-svid"`) removes every key of the trust domain, so its tokens fail
//!   closed. A bundle whose `jwt-svid` keys are all unusable is refused
//!   instead (a broken document is not a revocation).
//! * `spiffe_refresh_hint` (seconds) stands for the response's `max-age`:
//!   the refresh machine clamps it like any TTL.

use parking_lot::Mutex;
use serde_json::Value;

use crate::keys::{parse_key_set, Key, KeyUse, SkippedKey};
use crate::token::Alg;

/// A parsed bundle, not yet installed.
pub(crate) struct Parsed {
    /// The usable JWT authorities (may be empty: remove every key).
    pub keys: Vec<Key>,
    /// Keys skipped, with why.
    pub skipped: Vec<SkippedKey>,
    /// The bundle's `spiffe_sequence`, if it has one.
    pub sequence: Option<u64>,
}

/// What a trust domain holds of its bundle besides the keys: the sequence
/// of the bundle in use.
#[derive(Default)]
pub(crate) struct Bundle {
    sequence: Mutex<Option<u64>>,
}

impl Bundle {
    /// Parse a bundle document; refuse a rollback (a `spiffe_sequence`
    /// lower than the held one) and a bundle whose JWT authorities are all
    /// unusable. Nothing is held until [`Bundle::installed`].
    pub(crate) fn parse(&self, body: &[u8], allowed: &[Alg]) -> Result<Parsed, String> {
        let doc: Value = serde_json::from_slice(body).map_err(|e| format!("SPIFFE bundle is not valid JSON: {e}"))?;
        let sequence = match doc.get("spiffe_sequence") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or_else(|| "spiffe_sequence is not a non-negative integer".to_string())?,
            ),
        };
        let held = *self.sequence.lock();
        if let (Some(held), Some(new)) = (held, sequence) {
            if new < held {
                return Err(format!(
                    "SPIFFE bundle rollback refused: spiffe_sequence {new} is lower than the {held} held; \
                     keeping the held keys"
                ));
            }
        }
        let (keys, skipped) = parse_key_set(body, allowed, KeyUse::JwtSvid)?;
        let authorities = doc.get("keys").and_then(Value::as_array).map_or(0, |keys| {
            keys.iter()
                .filter(|k| k.get("use") == Some(&Value::from("jwt-svid")))
                .count()
        });
        if keys.is_empty() && authorities > 0 {
            return Err(format!(
                "SPIFFE bundle has {authorities} jwt-svid keys and none is usable; keeping the held keys"
            ));
        }
        Ok(Parsed {
            keys,
            skipped,
            sequence,
        })
    }

    /// The bundle of `sequence` is now the one in use.
    pub(crate) fn installed(&self, sequence: Option<u64>) {
        if let Some(s) = sequence {
            *self.sequence.lock() = Some(s);
        }
    }

    /// The sequence of the bundle in use, if it had one.
    #[cfg(test)]
    pub(crate) fn sequence(&self) -> Option<u64> {
        *self.sequence.lock()
    }
}

/// The `spiffe_refresh_hint` (seconds) of a bundle document, if it has a
/// valid one.
pub(crate) fn refresh_hint(body: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Hint {
        spiffe_refresh_hint: Option<u64>,
    }
    serde_json::from_slice::<Hint>(body).ok()?.spiffe_refresh_hint
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(r: Result<Parsed, String>) -> String {
        match r {
            Err(e) => e,
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn a_rollback_and_an_unusable_bundle_are_refused_an_empty_one_is_not() {
        let b = Bundle::default();
        let empty = |seq: u64| format!(r#"{{"keys": [], "spiffe_sequence": {seq}}}"#);
        let p = b.parse(empty(5).as_bytes(), &[Alg::ES256]).unwrap();
        assert!(p.keys.is_empty());
        b.installed(p.sequence);
        assert_eq!(b.sequence(), Some(5));
        assert!(refused(b.parse(empty(4).as_bytes(), &[Alg::ES256])).contains("rollback"));
        assert!(b.parse(empty(5).as_bytes(), &[Alg::ES256]).is_ok());
        let junk = r#"{"keys": [{"kty": "EC", "use": "jwt-svid", "crv": "P-256", "x": "AA", "y": "AA"}]}"#;
        assert!(refused(b.parse(junk.as_bytes(), &[Alg::ES256])).contains("none is usable"));
        // An X.509 authority only: no JWT authority, so every JWT key goes.
        let x509 = junk.replace("jwt-svid", "x509-svid");
        assert!(b.parse(x509.as_bytes(), &[Alg::ES256]).unwrap().keys.is_empty());
        assert!(b
            .parse(br#"{"keys": [], "spiffe_sequence": -1}"#, &[Alg::ES256])
            .is_err());
        assert_eq!(refresh_hint(br#"{"keys": [], "spiffe_refresh_hint": 300}"#), Some(300));
        assert_eq!(refresh_hint(br#"{"keys": []}"#), None);
    }
}
