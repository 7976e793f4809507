//! One issuer's key state.
//!
//! The state — keys in use, local HMAC keys, keys retired within their
//! rotation grace, revoked kids — is an immutable snapshot behind a lock.
//! Readers clone the `Arc` and look keys up without holding anything.
//! Every change (a refresh installing a fetched set, a 304 extending its
//! life, a kid revocation) goes through the verifier's trust door (each
//! writer demands its [`Inside`] proof) and is computed from the current
//! snapshot, so changes are serialized: a revocation is applied by every
//! install that follows it, and no install can bring back a key that a
//! revocation removed, whatever the interleaving.
//!
//! The key *epoch* stamps cached results. A change that takes a key away
//! bumps it before the write lock is released, after the new snapshot is in
//! place: a verification that reads the new epoch is guaranteed to look its
//! key up in the new snapshot, and one that read the old epoch produces a
//! result the cache will never serve.
//!
//! What a cache hit checks of a store (its epoch and the time its keys
//! fail closed) may also be copied into one [`HitSlot`] of a table the hit
//! already reads (an issuer family's member table, `crate::family`): the
//! copy is written under the store's own protocol, so it is never behind
//! the store once the call that changed the store has returned.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::door::Inside;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{Key, KeySet, Lookup};
use crate::token::Alg;

/// An immutable view of an issuer's keys.
pub(crate) struct KeyState {
    /// Fetched (or static) keys in use, revoked kids already removed.
    pub set: Arc<KeySet>,
    /// Locally configured HMAC keys, revoked kids already removed.
    pub local: Arc<KeySet>,
    /// Keys a refresh removed, usable until the given time (rotation grace).
    retired: Vec<(Arc<Key>, u64)>,
    /// Kids revoked by `revoke_kid`: never used again, whatever a fetch says.
    revoked: Arc<HashSet<String>>,
    /// Whether a set was ever installed.
    pub loaded: bool,
    /// When the set in use was fetched or confirmed (ms).
    pub fetched_at_ms: u64,
    /// When it expires by its cache lifetime (ms).
    pub expires_at_ms: u64,
}

impl KeyState {
    /// The key for a token's `kid` and `alg`, and until when it may be used
    /// (ms). `Ok(None)`: not known here (a refresh may find it).
    pub(crate) fn lookup(&self, kid: Option<&str>, alg: Alg, now: u64) -> Result<Option<(Arc<Key>, u64)>> {
        // Revocation first, for every algorithm and every kind of key.
        if let Some(kid) = kid.filter(|k| self.revoked.contains(*k)) {
            return Err(Error::new(
                ErrorKind::KeyRevoked,
                format!("kid {:?} was revoked", crate::token::truncate(kid)),
            ));
        }
        let (set, loaded) = if alg.is_hmac() {
            (&self.local, true)
        } else {
            (&self.set, self.loaded)
        };
        match set.find(kid, alg) {
            Lookup::Found(k) => Ok(Some((k.clone(), u64::MAX))),
            Lookup::Mismatch => Err(Error::new(
                ErrorKind::KeyAlgorithmMismatch,
                format!("key {} cannot verify {alg}", crate::token::describe_kid(kid)),
            )),
            Lookup::MissingKid if loaded => Err(Error::new(
                ErrorKind::MissingKid,
                "token has no kid and no single key fits its alg",
            )),
            Lookup::MissingKid => Ok(None),
            Lookup::UnknownKid if alg.is_hmac() => Ok(None),
            Lookup::UnknownKid => Ok(self
                .retired
                .iter()
                .find(|(k, until)| k.kid.as_deref() == kid && now < *until && k.fits(alg))
                .map(|(k, until)| (k.clone(), *until))),
        }
    }
}

/// What an install changed.
pub(crate) struct Installed {
    /// Keys now in use.
    pub usable: usize,
    /// Kids of the keys the new set no longer holds (`""` for none).
    pub removed: Vec<String>,
}

/// The first epoch of a new store: each store starts in its own range of
/// 2^32 epochs, so that a result stamped by one store (an issuer since
/// removed or rebuilt at runtime) is never current for another store that
/// takes its place (`Verifier::reload`).
fn next_epoch_base() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) << 32
}

/// What a cache hit of a held family member reads, together in one
/// 32-byte slot of the family's table (half a cache line): the member's
/// `held` word (written by the family: its id, shifted, and a used bit; 0
/// when free) and a copy of its key store's epoch and fail-closed time.
///
/// A store copies into at most one slot ([`KeyStore::mirror_into`]). The
/// copy is written under the store's mirror lock, from the store's current
/// values, by every change of either value before that change's call
/// returns (an epoch change before the store's write lock is released), so:
/// the copies only ever move to newer values, and a hit that begins after
/// a rotation or kid revocation returned reads its new epoch (the old
/// epoch's results are refused). Like the store's own epoch, the copy moves
/// after the new key set is in place, never before: a result stamped with a
/// new epoch was made with the new keys.
#[repr(align(32))]
#[derive(Default)]
pub(crate) struct HitSlot {
    /// The holder's word (its meaning is the family's); 0: free.
    pub held: AtomicU64,
    /// The store's key epoch.
    pub epoch: AtomicU64,
    /// The store's fail-closed time (ms).
    pub fail_closed_at_ms: AtomicU64,
}

/// The slot a store copies into.
struct Mirror {
    slots: Arc<[HitSlot]>,
    at: usize,
}

/// An issuer's key state, its epoch and its fail-closed time; the only
/// place that changes them.
pub(crate) struct KeyStore {
    current: RwLock<Arc<KeyState>>,
    epoch: AtomicU64,
    /// Keys are refused from this time (ms): TTL end + max_stale. 0 = never
    /// loaded; `u64::MAX` = static keys, never stale.
    fail_closed_at_ms: AtomicU64,
    /// Where the epoch and fail-closed time are copied, if anywhere.
    mirror: Mutex<Option<Mirror>>,
}

impl KeyStore {
    /// A store holding the local HMAC keys and no fetched set yet, failing
    /// closed from `fail_closed_at_ms` (0: until a set is installed).
    pub(crate) fn new(local: Vec<Arc<Key>>, fail_closed_at_ms: u64) -> KeyStore {
        KeyStore {
            current: RwLock::new(Arc::new(KeyState {
                set: Arc::default(),
                local: Arc::new(KeySet::new(local)),
                retired: Vec::new(),
                revoked: Arc::default(),
                loaded: false,
                fetched_at_ms: 0,
                expires_at_ms: 0,
            })),
            epoch: AtomicU64::new(next_epoch_base()),
            fail_closed_at_ms: AtomicU64::new(fail_closed_at_ms),
            mirror: Mutex::new(None),
        }
    }

    /// The current state.
    pub(crate) fn snapshot(&self) -> Arc<KeyState> {
        self.current.read().clone()
    }

    /// The current key epoch: changes whenever a key is taken away.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// When the keys fail closed (ms; 0: never loaded).
    #[inline]
    pub(crate) fn fail_closed_at_ms(&self) -> u64 {
        self.fail_closed_at_ms.load(Ordering::SeqCst)
    }

    /// Whether results stamped `key_epoch` are current at `now_ms`: the
    /// epoch unchanged and the keys not failed closed.
    #[inline]
    pub(crate) fn current(&self, key_epoch: u64, now_ms: u64) -> bool {
        self.epoch() == key_epoch && now_ms < self.fail_closed_at_ms()
    }

    /// Fail closed from `at` (ms), copied to the mirror before returning.
    pub(crate) fn set_fail_closed_at_ms(&self, at: u64) {
        self.fail_closed_at_ms.store(at, Ordering::SeqCst);
        self.sync_mirror();
    }

    /// Copy the epoch and fail-closed time into `slots[at]` from now on,
    /// and publish `held` there once the copy is in (the family calls this
    /// with the slot free, under its own lock).
    pub(crate) fn mirror_into(&self, slots: &Arc<[HitSlot]>, at: usize, held: u64) {
        let mut mirror = self.mirror.lock();
        let slot = &slots[at];
        slot.epoch.store(self.epoch(), Ordering::SeqCst);
        slot.fail_closed_at_ms.store(self.fail_closed_at_ms(), Ordering::SeqCst);
        slot.held.store(held, Ordering::Release);
        *mirror = Some(Mirror {
            slots: slots.clone(),
            at,
        });
    }

    /// Stop copying, and free the slot (its `held` word to 0).
    pub(crate) fn unmirror(&self) {
        if let Some(m) = self.mirror.lock().take() {
            m.slots[m.at].held.store(0, Ordering::Release);
        }
    }

    /// Copy the current epoch and fail-closed time to the mirror, if any.
    /// Read under the mirror lock, so a copy never overwrites a newer one.
    fn sync_mirror(&self) {
        if let Some(m) = &*self.mirror.lock() {
            let slot = &m.slots[m.at];
            slot.epoch.store(self.epoch(), Ordering::SeqCst);
            slot.fail_closed_at_ms.store(self.fail_closed_at_ms(), Ordering::SeqCst);
        }
    }

    /// Install a fetched set, without the revoked kids. Keys that left the
    /// set stay usable for `grace_ms` (rotation grace). A set left with no
    /// usable key is refused and the current one kept.
    pub(crate) fn install(
        &self,
        _door: &Inside<'_>,
        keys: Vec<Key>,
        now: u64,
        expires_at: u64,
        grace_ms: u64,
    ) -> std::result::Result<Installed, String> {
        let mut guard = self.current.write();
        let old = guard.clone();
        let offered = keys.len();
        let keys: Vec<Arc<Key>> = keys
            .into_iter()
            .filter(|k| !is_revoked(&old.revoked, k))
            .map(|mut k| {
                // First seen: carried while the key material stays (in the
                // set or within its rotation grace), else now.
                k.first_seen_ms = old
                    .set
                    .first_seen_ms(&k.thumbprint)
                    .or_else(|| {
                        old.retired
                            .iter()
                            .filter(|(r, _)| r.thumbprint == k.thumbprint)
                            .map(|(r, _)| r.first_seen_ms)
                            .min()
                    })
                    .unwrap_or(now);
                Arc::new(k)
            })
            .collect();
        if keys.is_empty() {
            return Err(if offered == 0 {
                "JWKS has no usable key".to_string()
            } else {
                format!("JWKS has no usable key ({offered} revoked)")
            });
        }
        let set = KeySet::new(keys);
        let removed: Vec<Arc<Key>> = old
            .set
            .keys()
            .iter()
            .filter(|k| !set.contains(k.kid.as_deref(), &k.thumbprint))
            .cloned()
            .collect();
        let mut retired: Vec<(Arc<Key>, u64)> = old
            .retired
            .iter()
            .filter(|(k, until)| now < *until && !set.contains(k.kid.as_deref(), &k.thumbprint))
            .cloned()
            .collect();
        if grace_ms > 0 {
            retired.extend(removed.iter().map(|k| (k.clone(), now + grace_ms)));
        }
        let usable = set.len();
        *guard = Arc::new(KeyState {
            set: Arc::new(set),
            local: old.local.clone(),
            retired,
            revoked: old.revoked.clone(),
            loaded: true,
            fetched_at_ms: now,
            expires_at_ms: expires_at,
        });
        if !removed.is_empty() {
            self.epoch.fetch_add(1, Ordering::SeqCst);
            self.sync_mirror();
        }
        drop(guard);
        Ok(Installed {
            usable,
            removed: removed
                .iter()
                .map(|k| k.kid.as_deref().unwrap_or_default().to_string())
                .collect(),
        })
    }

    /// Install an empty fetched set (a SPIFFE bundle with no JWT
    /// authority): every fetched key goes at once, retired ones included
    /// (no rotation grace); local keys stay. Returns the kids removed.
    pub(crate) fn clear(&self, _door: &Inside<'_>, now: u64, expires_at: u64) -> Vec<String> {
        let mut guard = self.current.write();
        let old = guard.clone();
        let removed: Vec<String> = old
            .set
            .keys()
            .iter()
            .chain(old.retired.iter().map(|(k, _)| k))
            .map(|k| k.kid.as_deref().unwrap_or_default().to_string())
            .collect();
        *guard = Arc::new(KeyState {
            set: Arc::default(),
            local: old.local.clone(),
            retired: Vec::new(),
            revoked: old.revoked.clone(),
            loaded: true,
            fetched_at_ms: now,
            expires_at_ms: expires_at,
        });
        if !removed.is_empty() {
            self.epoch.fetch_add(1, Ordering::SeqCst);
            self.sync_mirror();
        }
        drop(guard);
        removed
    }

    /// A 304 confirmed the set in use: it was fetched (again) at `now` and
    /// expires at `expires_at`.
    pub(crate) fn extend(&self, _door: &Inside<'_>, now: u64, expires_at: u64) {
        let mut guard = self.current.write();
        let old = guard.clone();
        *guard = Arc::new(KeyState {
            set: old.set.clone(),
            local: old.local.clone(),
            retired: old.retired.clone(),
            revoked: old.revoked.clone(),
            loaded: true,
            fetched_at_ms: now,
            expires_at_ms: expires_at,
        });
    }

    /// Stop trusting `kid` now, whether fetched, retired or local, and in
    /// every later install.
    pub(crate) fn revoke(&self, _door: &Inside<'_>, kid: &str) {
        let mut guard = self.current.write();
        let old = guard.clone();
        let mut revoked = (*old.revoked).clone();
        revoked.insert(kid.to_owned());
        let keep = |k: &&Arc<Key>| k.kid.as_deref() != Some(kid);
        *guard = Arc::new(KeyState {
            set: Arc::new(KeySet::new(old.set.keys().iter().filter(keep).cloned().collect())),
            local: Arc::new(KeySet::new(old.local.keys().iter().filter(keep).cloned().collect())),
            retired: old.retired.iter().filter(|(k, _)| keep(&k)).cloned().collect(),
            revoked: Arc::new(revoked),
            loaded: old.loaded,
            fetched_at_ms: old.fetched_at_ms,
            expires_at_ms: old.expires_at_ms,
        });
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.sync_mirror();
    }
}

fn is_revoked(revoked: &HashSet<String>, key: &Key) -> bool {
    key.kid.as_deref().is_some_and(|kid| revoked.contains(kid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::door::Door;

    fn hmac(kid: &str) -> Key {
        Key::hmac(Some(kid.into()), &[7u8; 32])
    }

    #[test]
    fn a_revoked_local_hmac_key_verifies_nothing() {
        let store = KeyStore::new(vec![Arc::new(hmac("h1"))], u64::MAX);
        let snap = store.snapshot();
        assert!(snap.lookup(Some("h1"), Alg::HS256, 0).unwrap().is_some());
        assert!(snap.lookup(None, Alg::HS256, 0).unwrap().is_some());
        let before = store.epoch();
        store.revoke(&Door::default().enter(), "h1");
        assert!(store.epoch() > before, "revocation invalidates cached results");
        let snap = store.snapshot();
        let err = snap.lookup(Some("h1"), Alg::HS256, 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::KeyRevoked);
        // A token without kid no longer finds the revoked secret either.
        assert!(snap.lookup(None, Alg::HS256, 0).is_err());
    }

    #[test]
    fn an_install_after_a_revocation_never_brings_the_key_back() {
        let door = Door::default();
        let store = KeyStore::new(Vec::new(), 0);
        store.revoke(&door.enter(), "k1");
        let err = store
            .install(&door.enter(), vec![hmac("k1")], 0, u64::MAX, 0)
            .err()
            .unwrap();
        assert!(err.contains("revoked"), "{err}");
        store
            .install(&door.enter(), vec![hmac("k1"), hmac("k2")], 0, u64::MAX, 0)
            .unwrap();
        let snap = store.snapshot();
        assert_eq!(snap.set.len(), 1);
        assert_eq!(snap.set.keys()[0].kid.as_deref(), Some("k2"));
    }
}
