//! Revocation denylists: by `jti`, and by subject for tokens issued before a
//! time. (Key revocation lives with the issuer's keys.)
//!
//! Every change bumps a generation counter *after* the list is updated.
//! Cached results remember the generation they were last checked at, so a
//! cache hit only consults the lists when something was revoked since, and a
//! revocation is seen by every thread as soon as the call returns.
//! Entries expire with the tokens they cover, so memory stays bounded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::error::{Error, ErrorKind, Result};
use crate::facts::{Facts, Iat};

#[derive(Default)]
struct Lists {
    /// jti → drop the entry after this time (ms).
    jti: HashMap<String, u64>,
    /// sub → (tokens issued before this many seconds are revoked, drop after ms).
    subjects: HashMap<String, (u64, u64)>,
}

pub(crate) struct Revocations {
    generation: AtomicU64,
    lists: RwLock<Lists>,
    max_entries: usize,
    default_lifetime_ms: u64,
}

impl Revocations {
    pub(crate) fn new(max_entries: usize, max_token_lifetime_secs: u64) -> Revocations {
        Revocations {
            generation: AtomicU64::new(0),
            lists: RwLock::new(Lists::default()),
            max_entries,
            default_lifetime_ms: max_token_lifetime_secs.saturating_mul(1000),
        }
    }

    /// The current generation; changes after every revocation.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub(crate) fn revoke_jti(&self, jti: &str, expires_at_secs: Option<u64>, now_ms: u64) -> Result<()> {
        if jti.is_empty() {
            return Err(Error::new(ErrorKind::InvalidArgument, "jti must not be empty"));
        }
        // Keep the entry until the token expires (plus a minute of slack for
        // leeway); without an expiry, for the configured maximum lifetime.
        let until = match expires_at_secs {
            Some(exp) => exp.saturating_add(60).saturating_mul(1000),
            None => now_ms.saturating_add(self.default_lifetime_ms),
        };
        self.update(now_ms, |l| {
            let e = l.jti.entry(jti.to_owned()).or_insert(0);
            *e = (*e).max(until);
        })
    }

    pub(crate) fn revoke_subject(&self, sub: &str, issued_before_secs: u64, now_ms: u64) -> Result<()> {
        if sub.is_empty() {
            return Err(Error::new(ErrorKind::InvalidArgument, "subject must not be empty"));
        }
        let until = issued_before_secs
            .saturating_mul(1000)
            .saturating_add(self.default_lifetime_ms);
        self.update(now_ms, |l| {
            let e = l.subjects.entry(sub.to_owned()).or_insert((0, 0));
            e.0 = e.0.max(issued_before_secs);
            e.1 = e.1.max(until);
        })
    }

    fn update(&self, now_ms: u64, f: impl FnOnce(&mut Lists)) -> Result<()> {
        {
            let mut l = self.lists.write();
            if l.jti.len() + l.subjects.len() >= self.max_entries {
                l.jti.retain(|_, until| *until > now_ms);
                l.subjects.retain(|_, (_, until)| *until > now_ms);
                if l.jti.len() + l.subjects.len() >= self.max_entries {
                    return Err(Error::new(
                        ErrorKind::RevocationListFull,
                        format!(
                            "revocation lists hold {} entries (revocation.max_entries)",
                            self.max_entries
                        ),
                    ));
                }
            }
            f(&mut l);
        }
        // After the lists are updated, so a reader that sees the new
        // generation also sees the new entry.
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Whether a token with these facts is revoked.
    pub(crate) fn is_revoked(&self, facts: &Facts) -> bool {
        let l = self.lists.read();
        if l.jti.is_empty() && l.subjects.is_empty() {
            return false;
        }
        if let Some(jti) = facts.jti() {
            if l.jti.contains_key(jti) {
                return true;
            }
        }
        if let Some(sub) = facts.sub() {
            if let Some((before, _)) = l.subjects.get(sub) {
                // A token without a valid iat cannot prove it was issued
                // after: fail closed. The iat was read by the same rules as
                // in the claim check (no saturating float casts), to the
                // microsecond so that 499.9999 counts as before 500.
                return match facts.iat() {
                    Iat::Us(iat_us) => iat_us < before.saturating_mul(1_000_000),
                    Iat::Absent | Iat::Invalid => true,
                };
            }
        }
        false
    }

    pub(crate) fn len(&self) -> usize {
        let l = self.lists.read();
        l.jti.len() + l.subjects.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn claims(v: Value) -> Facts {
        Facts::of(v.as_object().unwrap())
    }

    #[test]
    fn jti_and_subject_revocation() {
        let r = Revocations::new(10, 3600);
        let g0 = r.generation();
        r.revoke_jti("a", Some(1000), 0).unwrap();
        assert!(r.generation() > g0);
        assert!(r.is_revoked(&claims(json!({"jti": "a"}))));
        assert!(!r.is_revoked(&claims(json!({"jti": "b"}))));
        r.revoke_subject("alice", 500, 0).unwrap();
        assert!(r.is_revoked(&claims(json!({"sub": "alice", "iat": 499}))));
        assert!(!r.is_revoked(&claims(json!({"sub": "alice", "iat": 500}))));
        assert!(r.is_revoked(&claims(json!({"sub": "alice"}))));
    }

    #[test]
    fn subject_revocation_reads_iat_without_saturating_casts() {
        let r = Revocations::new(10, 3600);
        r.revoke_subject("alice", 500, 0).unwrap();
        assert!(r.is_revoked(&claims(json!({"sub": "alice", "iat": 499.9999}))));
        assert!(!r.is_revoked(&claims(json!({"sub": "alice", "iat": 500.0}))));
        assert!(!r.is_revoked(&claims(json!({"sub": "alice", "iat": 500.0001}))));
        // An out-of-range iat proves nothing: revoked (it was "after" the
        // cut-off when read as a float before).
        assert!(r.is_revoked(&claims(json!({"sub": "alice", "iat": 1e30}))));
        assert!(r.is_revoked(&claims(json!({"sub": "alice", "iat": "600"}))));
        assert!(r.is_revoked(&claims(json!({"sub": "alice", "iat": -1}))));
    }

    #[test]
    fn bounded_and_expiring() {
        let r = Revocations::new(2, 3600);
        r.revoke_jti("a", Some(10), 0).unwrap();
        r.revoke_jti("b", Some(10), 0).unwrap();
        assert_eq!(
            r.revoke_jti("c", Some(10), 0).unwrap_err().kind(),
            ErrorKind::RevocationListFull
        );
        // Once the covered tokens expired, their entries make room.
        r.revoke_jti("c", Some(10), 71_000).unwrap();
        assert_eq!(r.len(), 1);
    }
}
