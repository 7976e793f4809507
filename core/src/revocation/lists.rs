//! The revocation denylists in memory, scoped by issuer: by `jti`, by
//! subject for tokens issued before a time, and by kid.
//!
//! Every change bumps a generation counter once the lists are updated,
//! before their lock is released.
//! Cached results remember the generation they were last checked at, so a
//! cache hit only consults the lists when something was revoked since, and a
//! revocation is seen by every thread as soon as the call returns. A record
//! that changes nothing (the fleet echoing this process's own revocation, a
//! journal replay) leaves the generation alone, so a busy feed does not
//! make every hit re-check. Entries expire with the tokens they cover (kid
//! entries after `revocation.kid_revocation_secs`), so memory stays
//! bounded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use super::{Revocation, RevocationKind, ANY_ISSUER};
use crate::door::Inside;
use crate::error::{Error, ErrorKind, Result};
use crate::facts::{Facts, Iat};

/// One issuer's lists (or the `"*"` lists).
#[derive(Default)]
struct Scope {
    /// jti → drop the entry after this time (ms).
    jti: HashMap<String, u64>,
    /// sub → (tokens issued before this many seconds are revoked, drop after ms).
    subjects: HashMap<String, (u64, u64)>,
    /// Revoked kid → drop the entry after this time (ms).
    kids: HashMap<String, u64>,
}

impl Scope {
    fn len(&self) -> usize {
        self.jti.len() + self.subjects.len() + self.kids.len()
    }

    fn prune(&mut self, now_ms: u64) {
        self.jti.retain(|_, until| *until > now_ms);
        self.subjects.retain(|_, (_, until)| *until > now_ms);
        self.kids.retain(|_, until| *until > now_ms);
    }

    fn live_len(&self, now_ms: u64) -> usize {
        self.jti.values().filter(|until| **until > now_ms).count()
            + self.subjects.values().filter(|(_, until)| *until > now_ms).count()
            + self.kids.values().filter(|until| **until > now_ms).count()
    }

    fn is_revoked(&self, facts: &Facts) -> bool {
        if let Some(jti) = facts.jti() {
            if self.jti.contains_key(jti) {
                return true;
            }
        }
        if let Some(sub) = facts.sub() {
            if let Some((before, _)) = self.subjects.get(sub) {
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

    /// The scope's live records.
    fn records(&self, issuer: &str, now_ms: u64, out: &mut Vec<Revocation>) {
        let record = |kind, value: &String, issued_before, until_ms| Revocation {
            kind,
            issuer: issuer.to_owned(),
            value: value.clone(),
            issued_before,
            until_ms,
        };
        out.extend(
            self.jti
                .iter()
                .filter(|(_, until)| **until > now_ms)
                .map(|(v, until)| record(RevocationKind::Jti, v, None, Some(*until))),
        );
        out.extend(
            self.subjects
                .iter()
                .filter(|(_, (_, until))| *until > now_ms)
                .map(|(v, (before, until))| record(RevocationKind::Subject, v, Some(*before), Some(*until))),
        );
        out.extend(
            self.kids
                .iter()
                .filter(|(_, until)| **until > now_ms)
                .map(|(v, until)| record(RevocationKind::Kid, v, None, Some(*until))),
        );
    }
}

pub(crate) struct Revocations {
    generation: AtomicU64,
    scopes: RwLock<HashMap<String, Scope>>,
    max_entries: usize,
}

impl Revocations {
    pub(crate) fn new(max_entries: usize) -> Revocations {
        Revocations {
            generation: AtomicU64::new(0),
            scopes: RwLock::new(HashMap::new()),
            max_entries,
        }
    }

    /// The current generation; changes after every revocation that changed
    /// something.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Add (or extend) a validated record. `Ok(true)` if it changed the
    /// lists; `Ok(false)` if they already covered it or it has expired.
    /// Only the trust door calls this (hence `Inside`).
    pub(crate) fn add(&self, _door: &Inside<'_>, r: &Revocation, now_ms: u64) -> Result<bool> {
        if !r.is_live(now_ms) {
            return Ok(false);
        }
        let until = r.until_ms.unwrap_or(u64::MAX);
        let mut scopes = self.scopes.write();
        if !covers(scopes.get(&r.issuer), r) {
            make_room(&mut scopes, self.max_entries, now_ms)?;
        }
        let scope = scopes.entry(r.issuer.clone()).or_default();
        let changed = match r.kind {
            RevocationKind::Jti => {
                let e = scope.jti.entry(r.value.clone()).or_insert(0);
                let changed = until > *e;
                *e = (*e).max(until);
                changed
            }
            RevocationKind::Subject => {
                let before = r.issued_before.unwrap_or(0);
                let e = scope.subjects.entry(r.value.clone()).or_insert((0, 0));
                // Only a later cut-off revokes more tokens; a longer life
                // alone is kept without counting as a change.
                let changed = before > e.0;
                *e = (e.0.max(before), e.1.max(until));
                changed
            }
            RevocationKind::Kid => {
                // A kid is revoked or not: a longer life is kept without
                // counting as a change (but one that had lapsed, not yet
                // pruned, is revoked again).
                let e = scope.kids.entry(r.value.clone()).or_insert(0);
                let changed = *e <= now_ms;
                *e = (*e).max(until);
                changed
            }
        };
        if changed {
            // After the entry is in, and before the write lock is released:
            // a hit that reads the new generation then takes the read lock
            // and finds the entry, and anyone who can see the entry (through
            // the lists) already sees the new generation, so no hit checked
            // at the old one is served after the entry was visible.
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        drop(scopes);
        Ok(changed)
    }

    /// Whether a token of `issuer` with these facts is revoked, by a record
    /// for that issuer or for every issuer.
    pub(crate) fn is_revoked(&self, issuer: &str, facts: &Facts) -> bool {
        let scopes = self.scopes.read();
        if scopes.is_empty() {
            return false;
        }
        [issuer, ANY_ISSUER]
            .iter()
            .filter_map(|name| scopes.get(*name))
            .any(|scope| scope.is_revoked(facts))
    }

    /// Whether `kid` of `issuer` is revoked at `now_ms`, by a record for
    /// that issuer or for every issuer. For the tenants of issuer
    /// templates, whose key sets may be shared with other tenants: their
    /// kid revocations are read here, per tenant, rather than removed from
    /// the key set (`docs/issuer-families.md`).
    pub(crate) fn is_kid_revoked(&self, issuer: &str, kid: &str, now_ms: u64) -> bool {
        let scopes = self.scopes.read();
        if scopes.is_empty() {
            return false;
        }
        [issuer, ANY_ISSUER]
            .iter()
            .filter_map(|name| scopes.get(*name))
            .any(|scope| scope.kids.get(kid).is_some_and(|until| *until > now_ms))
    }

    /// Every record still live at `now_ms`.
    pub(crate) fn live(&self, now_ms: u64) -> Vec<Revocation> {
        let scopes = self.scopes.read();
        let mut out = Vec::new();
        for (issuer, scope) in scopes.iter() {
            scope.records(issuer, now_ms, &mut out);
        }
        out
    }

    pub(crate) fn len(&self) -> usize {
        self.scopes.read().values().map(Scope::len).sum()
    }

    /// How many records are still live at `now_ms` (what `live` would
    /// return, without building it).
    pub(crate) fn live_len(&self, now_ms: u64) -> usize {
        self.scopes.read().values().map(|s| s.live_len(now_ms)).sum()
    }
}

/// Whether `scope` already holds an entry for the record's key (so adding it
/// takes no room).
fn covers(scope: Option<&Scope>, r: &Revocation) -> bool {
    scope.is_some_and(|s| match r.kind {
        RevocationKind::Jti => s.jti.contains_key(&r.value),
        RevocationKind::Subject => s.subjects.contains_key(&r.value),
        RevocationKind::Kid => s.kids.contains_key(&r.value),
    })
}

/// Drop expired entries if the lists are full; refuse if still full.
fn make_room(scopes: &mut HashMap<String, Scope>, max: usize, now_ms: u64) -> Result<()> {
    let len = |s: &HashMap<String, Scope>| s.values().map(Scope::len).sum::<usize>();
    if len(scopes) < max {
        return Ok(());
    }
    scopes.values_mut().for_each(|s| s.prune(now_ms));
    scopes.retain(|_, s| s.len() > 0);
    if len(scopes) < max {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::RevocationListFull,
        format!("revocation lists hold {max} entries (revocation.max_entries)"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::door::Door;
    use serde_json::{json, Value};

    fn claims(v: Value) -> Facts {
        Facts::of(v.as_object().unwrap())
    }

    fn jti(iss: &str, v: &str, until_ms: u64) -> Revocation {
        Revocation {
            kind: RevocationKind::Jti,
            issuer: iss.into(),
            value: v.into(),
            issued_before: None,
            until_ms: Some(until_ms),
        }
    }

    fn subject(iss: &str, v: &str, before: u64) -> Revocation {
        Revocation {
            kind: RevocationKind::Subject,
            issuer: iss.into(),
            value: v.into(),
            issued_before: Some(before),
            until_ms: Some(u64::MAX / 2),
        }
    }

    #[test]
    fn jti_and_subject_revocation_are_scoped_by_issuer() {
        let door = Door::default();
        let r = Revocations::new(10);
        let g0 = r.generation();
        assert!(r.add(&door.enter(), &jti("A", "a", 1000), 0).unwrap());
        assert!(r.generation() > g0);
        assert!(r.is_revoked("A", &claims(json!({"jti": "a"}))));
        assert!(
            !r.is_revoked("B", &claims(json!({"jti": "a"}))),
            "a jti is unique only within its issuer"
        );
        assert!(!r.is_revoked("A", &claims(json!({"jti": "b"}))));
        r.add(&door.enter(), &subject("A", "alice", 500), 0).unwrap();
        assert!(r.is_revoked("A", &claims(json!({"sub": "alice", "iat": 499}))));
        assert!(!r.is_revoked("A", &claims(json!({"sub": "alice", "iat": 500}))));
        assert!(r.is_revoked("A", &claims(json!({"sub": "alice"}))));
        assert!(!r.is_revoked("B", &claims(json!({"sub": "alice"}))));
    }

    #[test]
    fn the_any_issuer_scope_covers_every_issuer() {
        let door = Door::default();
        let r = Revocations::new(10);
        r.add(&door.enter(), &jti(ANY_ISSUER, "a", 1000), 0).unwrap();
        assert!(r.is_revoked("A", &claims(json!({"jti": "a"}))));
        assert!(r.is_revoked("B", &claims(json!({"jti": "a"}))));
    }

    #[test]
    fn a_record_that_changes_nothing_leaves_the_generation_alone() {
        let door = Door::default();
        let r = Revocations::new(10);
        assert!(r.add(&door.enter(), &jti("A", "a", 1000), 0).unwrap());
        let g = r.generation();
        assert!(!r.add(&door.enter(), &jti("A", "a", 1000), 0).unwrap());
        assert!(!r.add(&door.enter(), &jti("A", "a", 900), 0).unwrap());
        assert!(!r.add(&door.enter(), &jti("A", "b", 10), 20).unwrap(), "expired");
        assert_eq!(r.generation(), g);
        assert!(r.add(&door.enter(), &jti("A", "a", 2000), 0).unwrap(), "a longer life");
    }

    #[test]
    fn subject_revocation_reads_iat_without_saturating_casts() {
        let door = Door::default();
        let r = Revocations::new(10);
        r.add(&door.enter(), &subject("A", "alice", 500), 0).unwrap();
        let revoked = |c| r.is_revoked("A", &claims(c));
        assert!(revoked(json!({"sub": "alice", "iat": 499.9999})));
        assert!(!revoked(json!({"sub": "alice", "iat": 500.0})));
        assert!(!revoked(json!({"sub": "alice", "iat": 500.0001})));
        // An out-of-range iat proves nothing: revoked (it was "after" the
        // cut-off when read as a float before).
        assert!(revoked(json!({"sub": "alice", "iat": 1e30})));
        assert!(revoked(json!({"sub": "alice", "iat": "600"})));
        assert!(revoked(json!({"sub": "alice", "iat": -1})));
    }

    #[test]
    fn bounded_and_expiring() {
        let door = Door::default();
        let r = Revocations::new(2);
        r.add(&door.enter(), &jti("A", "a", 10_000), 0).unwrap();
        r.add(&door.enter(), &jti("A", "b", 10_000), 0).unwrap();
        assert_eq!(
            r.add(&door.enter(), &jti("A", "c", 10_000), 0).unwrap_err().kind(),
            ErrorKind::RevocationListFull
        );
        // Extending a held entry takes no room.
        r.add(&door.enter(), &jti("A", "a", 20_000), 0).unwrap();
        // Once the covered tokens expired, their entries make room.
        r.add(&door.enter(), &jti("A", "c", 90_000), 10_001).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r.live(10_001).len(), 2);
    }
}
