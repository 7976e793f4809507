//! The verification-result cache.
//!
//! Two levels, one set of rules:
//!
//! * **Shards** (the cache proper): `cache.shards` LRU maps, each behind a
//!   `parking_lot` mutex, holding at most `cache.capacity` results in all.
//!   Evictions are counted.
//! * **A per-thread front** of [`FRONT_SLOTS`] direct-mapped slots holding a
//!   thread-private copy of recently hit results. A hit there writes no
//!   shared memory at all (no lock, no shared reference count), which is what
//!   lets two cores serve the same hot token in parallel. A copy costs
//!   several hits, so a result is admitted only on its second consecutive
//!   shard hit in its slot: hot tokens get one, while a thread cycling
//!   through more distinct tokens than it has slots never pays for copies it
//!   would evict before using.
//!
//! Both levels key on a seeded fast hash of the token, but a hit always
//! compares the *whole* token byte for byte, so a hash collision can only
//! cost a miss, never serve another token's result. Every hit, at either
//! level, is re-validated by the caller's [`Validity`] (expiry at the current
//! time, issuer key epoch, policy version) and against the revocation lists
//! when they changed since the entry was last checked.

use std::cell::RefCell;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use crate::metrics::VerifierCounters;
use crate::verified::VerifiedToken;

/// Slots in each thread's front cache.
pub const FRONT_SLOTS: usize = 64;

/// One cached verification result.
pub(crate) struct Entry {
    pub token: Box<[u8]>,
    pub issuer: usize,
    pub key_epoch: u64,
    pub policy_version: u64,
    /// Served only while `now_ms < valid_until_ms`: min(exp + leeway (the
    /// first instant the token is expired), verified + cache.max_ttl, end of
    /// the key's rotation grace).
    pub valid_until_ms: u64,
    pub verified: Arc<VerifiedToken>,
}

impl Entry {
    fn private_copy(&self) -> Entry {
        Entry {
            token: self.token.clone(),
            issuer: self.issuer,
            key_epoch: self.key_epoch,
            policy_version: self.policy_version,
            valid_until_ms: self.valid_until_ms,
            verified: Arc::new((*self.verified).clone()),
        }
    }
}

/// What the cache asks of the verifier to decide whether an entry may still
/// be served.
pub(crate) trait Validity {
    /// Expiry, key epoch, policy version, issuer not failed closed.
    fn still_valid(&self, e: &Entry, now_ms: u64) -> bool;
    /// The revocation generation now.
    fn revocation_generation(&self) -> u64;
    /// Whether the entry's token is revoked.
    fn revoked(&self, e: &Entry) -> bool;
}

/// The key is already a hash; don't hash it again.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type Shard = LruCache<u64, (Arc<Entry>, u64), BuildHasherDefault<IdentityHasher>>;

#[repr(align(128))]
struct PaddedShard(Mutex<Shard>);

static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) struct Cache {
    id: u64,
    hasher: foldhash::fast::RandomState,
    shards: Box<[PaddedShard]>,
    mask: u64,
    capacity: usize,
}

struct FrontSlot {
    cache_id: u64,
    hash: u64,
    entry: Arc<Entry>,
    revocation_seen: u64,
}

/// One thread's front: the slots, and per slot the hash of the last token
/// that hit the shards there (the admission candidate).
struct Front {
    slots: Vec<Option<FrontSlot>>,
    candidates: [u64; FRONT_SLOTS],
}

thread_local! {
    static FRONT: RefCell<Front> = RefCell::new(Front {
        slots: (0..FRONT_SLOTS).map(|_| None).collect(),
        candidates: [0; FRONT_SLOTS],
    });
}

impl Cache {
    pub(crate) fn new(capacity: usize, shards: usize) -> Cache {
        let shards = shards.max(1).next_power_of_two();
        let per_shard = capacity.div_ceil(shards).max(1);
        let cap = NonZeroUsize::new(per_shard).expect("per_shard >= 1");
        Cache {
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..shards)
                .map(|_| PaddedShard(Mutex::new(LruCache::with_hasher(cap, BuildHasherDefault::default()))))
                .collect(),
            mask: (shards - 1) as u64,
            capacity: per_shard * shards,
        }
    }

    #[inline]
    pub(crate) fn hash(&self, token: &[u8]) -> u64 {
        self.hasher.hash_one(token)
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        // High bits pick the shard; the LRU map uses the whole hash.
        &self.shards[((hash >> 48) & self.mask) as usize].0
    }

    /// Look a token up. `None` is a miss; the caller verifies in full.
    #[inline]
    pub(crate) fn get(
        &self,
        hash: u64,
        token: &[u8],
        now_ms: u64,
        v: &impl Validity,
        counters: &VerifierCounters,
    ) -> Option<Arc<VerifiedToken>> {
        let slot_index = (hash as usize) % FRONT_SLOTS;
        let front = FRONT.with(|front| {
            let front = &mut front.borrow_mut().slots;
            let slot = front[slot_index].as_mut()?;
            if slot.cache_id != self.id || slot.hash != hash || *slot.entry.token != *token {
                return None;
            }
            if !v.still_valid(&slot.entry, now_ms) {
                front[slot_index] = None;
                return None;
            }
            let generation = v.revocation_generation();
            if slot.revocation_seen != generation {
                if v.revoked(&slot.entry) {
                    front[slot_index] = None;
                    return None;
                }
                slot.revocation_seen = generation;
            }
            Some(slot.entry.verified.clone())
        });
        if front.is_some() {
            counters.cache_hits.inc();
            return front;
        }

        let (entry, revocation_seen) = {
            let mut shard = self.shard(hash).lock();
            let Some((entry, seen)) = shard.get_mut(&hash) else {
                drop(shard);
                counters.cache_misses.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            let usable = *entry.token == *token && v.still_valid(entry, now_ms);
            let generation = v.revocation_generation();
            let usable = usable && (*seen == generation || !v.revoked(entry));
            if !usable {
                // Only drop it if it is this token's entry; a colliding
                // token's entry is simply not ours to serve.
                if *entry.token == *token {
                    shard.pop(&hash);
                }
                drop(shard);
                counters.cache_misses.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            *seen = generation;
            (entry.clone(), generation)
        };
        counters.cache_hits.inc();
        // Second consecutive shard hit of this token in its slot: give this
        // thread a private copy (made outside the lock), so its next hits
        // share nothing with other threads. First hit: just remember it.
        let admit = FRONT.with(|front| {
            let candidates = &mut front.borrow_mut().candidates;
            let again = candidates[slot_index] == hash;
            candidates[slot_index] = hash;
            again
        });
        if admit {
            let private = Arc::new(entry.private_copy());
            FRONT.with(|front| {
                front.borrow_mut().slots[slot_index] = Some(FrontSlot {
                    cache_id: self.id,
                    hash,
                    entry: private,
                    revocation_seen,
                });
            });
        }
        Some(entry.verified.clone())
    }

    /// Store a fresh result, evicting the least recently used if full.
    pub(crate) fn insert(&self, hash: u64, entry: Entry, revocation_seen: u64, counters: &VerifierCounters) {
        let evicted = {
            let mut shard = self.shard(hash).lock();
            match shard.push(hash, (Arc::new(entry), revocation_seen)) {
                // `push` returns the replaced value for the same key too:
                // only a different key is an eviction.
                Some((old_key, _)) => old_key != hash,
                None => false,
            }
        };
        counters.cache_inserts.fetch_add(1, Ordering::Relaxed);
        if evicted {
            counters.cache_evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Results held now.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().len()).sum()
    }

    /// Maximum results held.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Alg;

    struct AlwaysValid;

    impl Validity for AlwaysValid {
        fn still_valid(&self, _: &Entry, _: u64) -> bool {
            true
        }
        fn revocation_generation(&self) -> u64 {
            0
        }
        fn revoked(&self, _: &Entry) -> bool {
            false
        }
    }

    fn entry(token: &[u8]) -> Entry {
        Entry {
            token: token.into(),
            issuer: 0,
            key_epoch: 0,
            policy_version: 0,
            valid_until_ms: u64::MAX,
            verified: Arc::new(VerifiedToken {
                claims: serde_json::Map::new(),
                issuer: Arc::from("https://idp"),
                kid: None,
                alg: Alg::RS256,
                verified_at_ms: 0,
                expires_at: 0,
            }),
        }
    }

    /// Whether this thread's front holds `hash` for `cache`.
    fn in_front(cache: &Cache, hash: u64) -> bool {
        FRONT.with(|f| {
            f.borrow().slots[(hash as usize) % FRONT_SLOTS]
                .as_ref()
                .is_some_and(|s| s.cache_id == cache.id && s.hash == hash)
        })
    }

    #[test]
    fn front_admits_a_token_on_its_second_shard_hit_only() {
        let cache = Cache::new(100, 1);
        let counters = VerifierCounters::default();
        let hot = b"hot.token.x".as_slice();
        let h = cache.hash(hot);
        cache.insert(h, entry(hot), 0, &counters);
        assert!(cache.get(h, hot, 0, &AlwaysValid, &counters).is_some());
        assert!(!in_front(&cache, h), "one hit does not earn a private copy");
        assert!(cache.get(h, hot, 0, &AlwaysValid, &counters).is_some());
        assert!(in_front(&cache, h), "the second consecutive hit does");
        assert_eq!(counters.cache_hits.get(), 2);
    }

    #[test]
    fn tokens_taking_turns_in_a_slot_never_copy() {
        let cache = Cache::new(1000, 1);
        let counters = VerifierCounters::default();
        // Two tokens whose hashes share a front slot, hit alternately.
        let tokens: Vec<Vec<u8>> = (0u32..)
            .map(|i| format!("token-{i}").into_bytes())
            .scan(None, |first: &mut Option<usize>, t| {
                let slot = (cache.hash(&t) as usize) % FRONT_SLOTS;
                Some(match first {
                    None => {
                        *first = Some(slot);
                        Some(t)
                    }
                    Some(s) if *s == slot => Some(t),
                    _ => None,
                })
            })
            .flatten()
            .take(2)
            .collect();
        for t in &tokens {
            cache.insert(cache.hash(t), entry(t), 0, &counters);
        }
        for _ in 0..10 {
            for t in &tokens {
                assert!(cache.get(cache.hash(t), t, 0, &AlwaysValid, &counters).is_some());
            }
        }
        assert!(tokens.iter().all(|t| !in_front(&cache, cache.hash(t))));
    }
}
