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
//! * With `state_dir`, the highest sequence installed is persisted per
//!   trust domain (`spiffe-<trust domain>.sequence.json`, written
//!   atomically through `crate::safefile`) and read back whenever a bundle
//!   is judged, so a bundle endpoint rolled back while this process was
//!   down is refused after a restart too, and processes sharing the
//!   directory hold each other to the highest sequence any of them saw.
//!   Without `state_dir` the sequence lives in memory only.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

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
    /// The highest sequence installed here (or read back from `state_dir`).
    sequence: Mutex<Option<u64>>,
}

/// Where the trust domain is persisted, in `state_dir`.
pub(crate) struct Persist<'a> {
    /// The `state_dir`, if any.
    pub dir: Option<&'a Path>,
    /// The trust domain's issuer name, `spiffe://<trust domain>`.
    pub name: &'a str,
}

/// Largest sequence file read back.
const MAX_SEQUENCE_FILE_BYTES: u64 = 4096;

#[derive(serde::Serialize, serde::Deserialize)]
struct SequenceFile {
    trust_domain: String,
    spiffe_sequence: u64,
}

impl Persist<'_> {
    fn trust_domain(&self) -> &str {
        self.name.strip_prefix("spiffe://").unwrap_or(self.name)
    }

    fn path(&self, dir: &Path) -> PathBuf {
        // A trust domain is lowercase letters, digits, `.`, `-`, `_`: a
        // file name as it is (the prefix keeps `..` from being one).
        let safe: String = self
            .trust_domain()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        dir.join(format!("spiffe-{safe}.sequence.json"))
    }

    /// The persisted sequence, if any (an unreadable file is logged and
    /// taken as none).
    fn load(&self) -> Option<u64> {
        let dir = self.dir?;
        let path = self.path(dir);
        let f = match crate::safefile::open(&path, std::fs::OpenOptions::new().read(true)) {
            Ok(f) => f,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("trust domain {}: persisted spiffe_sequence not read: {e}", self.name);
                }
                return None;
            }
        };
        let mut bytes = Vec::new();
        f.take(MAX_SEQUENCE_FILE_BYTES).read_to_end(&mut bytes).ok()?;
        match serde_json::from_slice::<SequenceFile>(&bytes) {
            Ok(p) if p.trust_domain == self.trust_domain() => Some(p.spiffe_sequence),
            _ => {
                log::warn!(
                    "trust domain {}: {} is not a sequence file of it: ignored",
                    self.name,
                    path.display()
                );
                None
            }
        }
    }

    /// Persist `sequence` (temporary file, fsync, rename).
    fn save(&self, sequence: u64) -> std::io::Result<()> {
        let Some(dir) = self.dir else {
            return Ok(());
        };
        std::fs::create_dir_all(dir)?;
        let path = self.path(dir);
        let body = serde_json::to_vec(&SequenceFile {
            trust_domain: self.trust_domain().to_owned(),
            spiffe_sequence: sequence,
        })
        .map_err(std::io::Error::other)?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("spiffe.sequence.json");
        let (mut f, tmp) = crate::safefile::create_temp(dir, name)?;
        let written = f
            .write_all(&body)
            .and_then(|()| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

impl Bundle {
    /// Parse a bundle document; refuse a rollback (a `spiffe_sequence`
    /// lower than the held one, or than the one persisted in `state_dir`)
    /// and a bundle whose JWT authorities are all unusable. Nothing is held
    /// until [`Bundle::installed`].
    pub(crate) fn parse(&self, body: &[u8], allowed: &[Alg], persist: &Persist<'_>) -> Result<Parsed, String> {
        let doc: Value = serde_json::from_slice(body).map_err(|e| format!("SPIFFE bundle is not valid JSON: {e}"))?;
        let sequence = match doc.get("spiffe_sequence") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or_else(|| "spiffe_sequence is not a non-negative integer".to_string())?,
            ),
        };
        let held = {
            // The persisted one too: this process may have restarted, and
            // another one sharing `state_dir` may have seen a later bundle.
            let mut held = self.sequence.lock();
            *held = (*held).max(persist.load());
            *held
        };
        if let (Some(held), Some(new)) = (held, sequence) {
            if new < held {
                return Err(format!(
                    "SPIFFE bundle rollback refused: spiffe_sequence {new} is lower than the {held} held \
                     (persisted in state_dir, if set); keeping the held keys"
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

    /// The bundle of `sequence` is now the one in use: a higher sequence
    /// than held is persisted (with `state_dir`) before this returns.
    pub(crate) fn installed(&self, sequence: Option<u64>, persist: &Persist<'_>) {
        let Some(s) = sequence else {
            return;
        };
        let mut held = self.sequence.lock();
        *held = Some(held.map_or(s, |h| h.max(s)));
        // Never lower what another process sharing `state_dir` persisted.
        if persist.dir.is_some() && persist.load().is_none_or(|p| s > p) {
            if let Err(e) = persist.save(s) {
                log::error!(
                    "trust domain {}: spiffe_sequence {s} not persisted in state_dir ({e}): \
                     a rollback while this process is down would not be noticed",
                    persist.name
                );
            }
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
        let none = Persist {
            dir: None,
            name: "spiffe://example.org",
        };
        let empty = |seq: u64| format!(r#"{{"keys": [], "spiffe_sequence": {seq}}}"#);
        let p = b.parse(empty(5).as_bytes(), &[Alg::ES256], &none).unwrap();
        assert!(p.keys.is_empty());
        b.installed(p.sequence, &none);
        assert_eq!(b.sequence(), Some(5));
        assert!(refused(b.parse(empty(4).as_bytes(), &[Alg::ES256], &none)).contains("rollback"));
        assert!(b.parse(empty(5).as_bytes(), &[Alg::ES256], &none).is_ok());
        let junk = r#"{"keys": [{"kty": "EC", "use": "jwt-svid", "crv": "P-256", "x": "AA", "y": "AA"}]}"#;
        assert!(refused(b.parse(junk.as_bytes(), &[Alg::ES256], &none)).contains("none is usable"));
        // An X.509 authority only: no JWT authority, so every JWT key goes.
        let x509 = junk.replace("jwt-svid", "x509-svid");
        assert!(b.parse(x509.as_bytes(), &[Alg::ES256], &none).unwrap().keys.is_empty());
        assert!(b
            .parse(br#"{"keys": [], "spiffe_sequence": -1}"#, &[Alg::ES256], &none)
            .is_err());
        assert_eq!(refresh_hint(br#"{"keys": [], "spiffe_refresh_hint": 300}"#), Some(300));
        assert_eq!(refresh_hint(br#"{"keys": []}"#), None);
    }

    #[test]
    fn the_sequence_is_persisted_per_trust_domain_and_holds_across_restarts_and_processes_sharing_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name| Persist {
            dir: Some(dir.path()),
            name,
        };
        let empty = |seq: u64| format!(r#"{{"keys": [], "spiffe_sequence": {seq}}}"#);
        let b = Bundle::default();
        let p = b
            .parse(empty(7).as_bytes(), &[Alg::ES256], &at("spiffe://a.org"))
            .unwrap();
        b.installed(p.sequence, &at("spiffe://a.org"));
        // A restart: a new holder, the same directory.
        let b = Bundle::default();
        assert!(refused(b.parse(empty(6).as_bytes(), &[Alg::ES256], &at("spiffe://a.org"))).contains("rollback"));
        assert!(b
            .parse(empty(7).as_bytes(), &[Alg::ES256], &at("spiffe://a.org"))
            .is_ok());
        // A process sharing the directory that saw only sequence 5 is held
        // to the 7 another one persisted, and does not lower it.
        let lagging = Bundle::default();
        assert!(refused(lagging.parse(empty(5).as_bytes(), &[Alg::ES256], &at("spiffe://a.org"))).contains("rollback"));
        lagging.installed(Some(5), &at("spiffe://a.org"));
        assert!(
            refused(Bundle::default().parse(empty(6).as_bytes(), &[Alg::ES256], &at("spiffe://a.org")))
                .contains("rollback")
        );
        // Another trust domain is not held to it.
        let other = Bundle::default();
        assert!(other
            .parse(empty(1).as_bytes(), &[Alg::ES256], &at("spiffe://b.org"))
            .is_ok());
        // A file naming another trust domain is not taken.
        std::fs::copy(
            at("spiffe://a.org").path(dir.path()),
            at("spiffe://c.org").path(dir.path()),
        )
        .unwrap();
        let c = Bundle::default();
        assert!(c
            .parse(empty(1).as_bytes(), &[Alg::ES256], &at("spiffe://c.org"))
            .is_ok());
    }
}
