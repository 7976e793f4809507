//! The verification-result cache.
//!
//! Two levels, one set of rules:
//!
//! * **Shards** (the cache proper): `cache.shards` LRU maps, each behind a
//!   `parking_lot` mutex, holding at most `cache.capacity` results and
//!   `cache.max_bytes` estimated bytes in all (each shard its share of
//!   both). Least recently used results are evicted until both bounds hold;
//!   evictions are counted. A count alone is no memory bound: 100,000
//!   results of 15 KiB tokens would be gigabytes.
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
//! level, is re-validated: the entry's own validity window at the current
//! time, then its [`Stamp`] by the caller's [`Currency`] (issuer key epoch,
//! policy version, issuer not failed closed), and the revocation lists when
//! they changed since the entry was last checked.
//!
//! The cache only answers hit or miss and reports what an insert evicted;
//! the verifier keeps the counts.

use std::cell::RefCell;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;
use serde_json::{Map, Value};

use crate::status::StatusRef;
use crate::verified::VerifiedToken;

/// Slots in each thread's front cache.
pub const FRONT_SLOTS: usize = 64;

/// What a result was verified under, taken once on the miss path *before*
/// the key lookup: a concurrent key removal, revocation or policy bump then
/// makes the result stale rather than letting it slip into the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Index of the configured issuer.
    pub issuer: usize,
    /// The issuer's key epoch.
    pub key_epoch: u64,
    /// The verifier's policy version.
    pub policy_version: u64,
    /// The revocation generation the claims were checked against.
    pub revocation_generation: u64,
}

/// One cached verification result.
pub(crate) struct Entry {
    pub token: Box<[u8]>,
    pub stamp: Stamp,
    /// Served only while `now_ms < valid_until_ms`.
    valid_until_ms: u64,
    pub verified: Arc<VerifiedToken>,
    /// Where its Token Status List status is read on every hit, if it has one.
    pub status: Option<StatusRef>,
}

/// The instants that end a result's life in the cache, in ms.
pub(crate) struct Lifetime {
    /// The first instant the token is expired (`exp + leeway`).
    pub invalid_from_ms: u64,
    /// When it was verified plus `cache.max_ttl`.
    pub max_ttl_until_ms: u64,
    /// The end of the verifying key's rotation grace (`u64::MAX` if none).
    pub key_usable_until_ms: u64,
}

impl Entry {
    /// An entry served until the first instant of `life`; `None` when that
    /// is already past at `now_ms` (nothing to cache).
    pub(crate) fn new(
        token: &[u8],
        stamp: Stamp,
        verified: Arc<VerifiedToken>,
        life: Lifetime,
        now_ms: u64,
    ) -> Option<Entry> {
        let valid_until_ms = life
            .invalid_from_ms
            .min(life.max_ttl_until_ms)
            .min(life.key_usable_until_ms);
        (valid_until_ms > now_ms).then(|| Entry {
            token: token.into(),
            stamp,
            valid_until_ms,
            verified,
            status: None,
        })
    }

    /// Whether the entry is for `token` and inside its validity window.
    #[inline]
    fn serves(&self, token: &[u8], now_ms: u64) -> bool {
        now_ms < self.valid_until_ms && *self.token == *token
    }

    fn private_copy(&self) -> Entry {
        Entry {
            token: self.token.clone(),
            stamp: self.stamp,
            valid_until_ms: self.valid_until_ms,
            verified: Arc::new((*self.verified).clone()),
            status: self.status,
        }
    }
}

/// What the cache asks of the verifier to decide whether a result may still
/// be served.
pub(crate) trait Currency {
    /// Whether results stamped `stamp` may be served at `now_ms`: the key
    /// epoch and policy version unchanged, the issuer not failed closed, and
    /// the issuer the one the caller pinned, if any.
    fn is_current(&self, stamp: &Stamp, now_ms: u64) -> bool;
    /// The revocation generation now.
    fn revocation_generation(&self) -> u64;
    /// Whether the entry's token is revoked.
    fn revoked(&self, e: &Entry) -> bool;
    /// Whether the entry's Token Status List status (if any) is still
    /// acceptable at `now_ms`: read from the list in use on every hit.
    fn status_ok(&self, e: &Entry, now_ms: u64) -> bool;
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

/// A cached result: the entry, the revocation generation it was last
/// checked at, and its estimated size in bytes ([`entry_bytes`]).
type Slot = (Arc<Entry>, u64, usize);

/// One shard: its LRU map and the estimated bytes of the entries in it.
struct Shard {
    lru: LruCache<u64, Slot, BuildHasherDefault<IdentityHasher>>,
    bytes: usize,
}

#[repr(align(128))]
struct PaddedShard(Mutex<Shard>);

/// Per-entry bytes not proportional to the token or its claims: the
/// `Entry` and `VerifiedToken` structs and their `Arc` headers, the LRU
/// node and its hash-table slot, allocator rounding. Calibrated with
/// `cargo bench -p jwtwarden-benches --bench memory`, which prints the
/// estimate next to the measured heap growth.
pub(crate) const ENTRY_OVERHEAD_BYTES: usize = 384;

/// Bytes per JSON object member besides its key's and value's own heap: the
/// key `String` and the `Value` inline in the map's node, and a share of the
/// node's unused slots and allocator rounding.
const MEMBER_BYTES: usize = std::mem::size_of::<String>() + std::mem::size_of::<Value>() + 16;

/// Estimated heap bytes of a cached result. An estimate, not an
/// accounting: it only has to be proportional enough that `max_bytes`
/// bounds memory, so it walks the claims once at insert, never on a hit.
pub(crate) fn entry_bytes(e: &Entry) -> usize {
    ENTRY_OVERHEAD_BYTES
        + e.token.len()
        + e.verified.kid.as_ref().map_or(0, String::len)
        + map_bytes(&e.verified.claims)
}

fn map_bytes(m: &Map<String, Value>) -> usize {
    m.iter().map(|(k, v)| MEMBER_BYTES + k.len() + value_bytes(v)).sum()
}

/// What a JSON value owns on the heap (its inline size is counted by the
/// object member or array slot holding it).
fn value_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(items) => items
            .iter()
            .map(|v| std::mem::size_of::<Value>() + value_bytes(v))
            .sum(),
        Value::Object(m) => map_bytes(m),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) struct Cache {
    id: u64,
    hasher: foldhash::fast::RandomState,
    shards: Box<[PaddedShard]>,
    mask: u64,
    capacity: usize,
    shard_max_bytes: usize,
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
    /// A cache of at most `capacity` results and `max_bytes` estimated
    /// bytes, in `shards` shards (rounded up to a power of two), each with
    /// its share of both bounds.
    pub(crate) fn new(capacity: usize, max_bytes: usize, shards: usize) -> Cache {
        let shards = shards.max(1).next_power_of_two();
        let per_shard = capacity.div_ceil(shards).max(1);
        let cap = NonZeroUsize::new(per_shard).expect("per_shard >= 1");
        Cache {
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..shards)
                .map(|_| {
                    PaddedShard(Mutex::new(Shard {
                        lru: LruCache::with_hasher(cap, BuildHasherDefault::default()),
                        bytes: 0,
                    }))
                })
                .collect(),
            mask: (shards - 1) as u64,
            capacity: per_shard * shards,
            // Rounded down, so the shards together never exceed max_bytes.
            shard_max_bytes: max_bytes / shards,
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
    pub(crate) fn get(&self, hash: u64, token: &[u8], now_ms: u64, v: &impl Currency) -> Option<Arc<VerifiedToken>> {
        let slot_index = (hash as usize) % FRONT_SLOTS;
        if let Some(hit) = self.front_get(slot_index, hash, token, now_ms, v) {
            return Some(hit);
        }

        let (entry, revocation_seen) = {
            let mut guard = self.shard(hash).lock();
            let shard = &mut *guard;
            let (entry, seen, _) = shard.lru.get_mut(&hash)?;
            let usable =
                entry.serves(token, now_ms) && v.is_current(&entry.stamp, now_ms) && v.status_ok(entry, now_ms);
            let generation = v.revocation_generation();
            let usable = usable && (*seen == generation || !v.revoked(entry));
            if !usable {
                // Only drop it if it is this token's entry; a colliding
                // token's entry is simply not ours to serve.
                if *entry.token == *token {
                    if let Some((_, _, size)) = shard.lru.pop(&hash) {
                        shard.bytes -= size;
                    }
                }
                return None;
            }
            *seen = generation;
            (entry.clone(), generation)
        };
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

    /// A hit in this thread's front, re-validated like any hit; a slot that
    /// no longer serves is emptied.
    #[inline]
    fn front_get(
        &self,
        slot_index: usize,
        hash: u64,
        token: &[u8],
        now_ms: u64,
        v: &impl Currency,
    ) -> Option<Arc<VerifiedToken>> {
        FRONT.with(|front| {
            let front = &mut front.borrow_mut().slots;
            let slot = front[slot_index].as_mut()?;
            if slot.cache_id != self.id || slot.hash != hash || *slot.entry.token != *token {
                return None;
            }
            if !slot.entry.serves(token, now_ms)
                || !v.is_current(&slot.entry.stamp, now_ms)
                || !v.status_ok(&slot.entry, now_ms)
            {
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
        })
    }

    /// Store a fresh result, evicting least recently used results until it
    /// fits both the entry and the byte bound of its shard. A result larger
    /// than a whole shard's byte budget is not stored (it would empty the
    /// shard for one token); it is verified afresh each time instead.
    /// Returns how many results were evicted, or `None` if not stored.
    pub(crate) fn insert(&self, hash: u64, entry: Entry) -> Option<u64> {
        let size = entry_bytes(&entry);
        if size > self.shard_max_bytes {
            return None;
        }
        let revocation_seen = entry.stamp.revocation_generation;
        let mut evicted = 0;
        {
            let mut guard = self.shard(hash).lock();
            let shard = &mut *guard;
            // Replacing this token's own result is not an eviction.
            if let Some((_, _, old)) = shard.lru.pop(&hash) {
                shard.bytes -= old;
            }
            while shard.lru.len() >= shard.lru.cap().get() || shard.bytes + size > self.shard_max_bytes {
                let Some((_, (_, _, old))) = shard.lru.pop_lru() else {
                    break;
                };
                shard.bytes -= old;
                evicted += 1;
            }
            shard.lru.push(hash, (Arc::new(entry), revocation_seen, size));
            shard.bytes += size;
        }
        Some(evicted)
    }

    /// Results held now.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().lru.len()).sum()
    }

    /// Estimated bytes held now ([`entry_bytes`] summed).
    pub(crate) fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().bytes).sum()
    }

    /// Maximum estimated bytes held: `cache.max_bytes`, rounded down to a
    /// multiple of the shard count.
    pub(crate) fn max_bytes(&self) -> usize {
        self.shard_max_bytes * self.shards.len()
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

    impl Currency for AlwaysValid {
        fn is_current(&self, _: &Stamp, _: u64) -> bool {
            true
        }
        fn revocation_generation(&self) -> u64 {
            0
        }
        fn revoked(&self, _: &Entry) -> bool {
            false
        }
        fn status_ok(&self, _: &Entry, _: u64) -> bool {
            true
        }
    }

    fn entry(token: &[u8]) -> Entry {
        Entry {
            token: token.into(),
            stamp: Stamp {
                issuer: 0,
                key_epoch: 0,
                policy_version: 0,
                revocation_generation: 0,
            },
            valid_until_ms: u64::MAX,
            verified: Arc::new(VerifiedToken {
                claims: serde_json::Map::new(),
                issuer: Arc::from("https://idp"),
                kid: None,
                alg: Alg::RS256,
                verified_at_ms: 0,
                expires_at: 0,
                memo: Default::default(),
            }),
            status: None,
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
        let cache = Cache::new(100, 1 << 20, 1);
        let hot = b"hot.token.x".as_slice();
        let h = cache.hash(hot);
        cache.insert(h, entry(hot));
        assert!(cache.get(h, hot, 0, &AlwaysValid).is_some());
        assert!(!in_front(&cache, h), "one hit does not earn a private copy");
        assert!(cache.get(h, hot, 0, &AlwaysValid).is_some());
        assert!(in_front(&cache, h), "the second consecutive hit does");
    }

    #[test]
    fn byte_bound_evicts_least_recently_used_until_it_holds() {
        // Room for 1000 entries by count, but only 64 KiB: about four
        // 15 KiB tokens.
        let cache = Cache::new(1000, 64 * 1024, 1);
        let tokens: Vec<Vec<u8>> = (0..20u8).map(|i| vec![b'a' + i; 15 * 1024]).collect();
        let size = entry_bytes(&entry(&tokens[0]));
        assert!(size > 15 * 1024, "the estimate counts the token: {size}");
        let mut evictions = 0;
        for t in &tokens {
            evictions += cache.insert(cache.hash(t), entry(t)).expect("stored");
            assert!(
                cache.bytes() <= cache.max_bytes(),
                "{} > {}",
                cache.bytes(),
                cache.max_bytes()
            );
        }
        let held = (64 * 1024) / size;
        assert_eq!(cache.len(), held);
        assert_eq!(cache.bytes(), held * size);
        assert_eq!(evictions, (20 - held) as u64);
        // The newest survive, the oldest went first.
        let last = &tokens[19];
        assert!(cache.get(cache.hash(last), last, 0, &AlwaysValid).is_some());
        let first = &tokens[0];
        assert!(cache.get(cache.hash(first), first, 0, &AlwaysValid).is_none());
        // Re-inserting a held token replaces it: no eviction, no double count.
        assert_eq!(cache.insert(cache.hash(last), entry(last)), Some(0));
        assert_eq!(cache.bytes(), held * size);
    }

    #[test]
    fn result_larger_than_a_shard_budget_is_not_cached() {
        let cache = Cache::new(1000, 8 * 1024, 1);
        let small = b"small.token.x".as_slice();
        assert_eq!(cache.insert(cache.hash(small), entry(small)), Some(0));
        let big = vec![b'b'; 9 * 1024];
        assert_eq!(cache.insert(cache.hash(&big), entry(&big)), None, "not stored");
        assert!(cache.get(cache.hash(&big), &big, 0, &AlwaysValid).is_none());
        assert!(
            cache.get(cache.hash(small), small, 0, &AlwaysValid).is_some(),
            "an oversized result does not empty the shard"
        );
    }

    #[test]
    fn claims_count_toward_entry_bytes() {
        let mut e = entry(b"t");
        let bare = entry_bytes(&e);
        let mut claims = Map::new();
        claims.insert("scope".into(), Value::String("x".repeat(1000)));
        claims.insert(
            "groups".into(),
            serde_json::json!(["a".repeat(500), {"k": "b".repeat(500)}]),
        );
        e.verified = Arc::new(VerifiedToken {
            claims,
            ..(*e.verified).clone()
        });
        assert!(entry_bytes(&e) >= bare + 2000, "{} vs {bare}", entry_bytes(&e));
    }

    #[test]
    fn tokens_taking_turns_in_a_slot_never_copy() {
        let cache = Cache::new(1000, 1 << 20, 1);
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
            cache.insert(cache.hash(t), entry(t));
        }
        for _ in 0..10 {
            for t in &tokens {
                assert!(cache.get(cache.hash(t), t, 0, &AlwaysValid).is_some());
            }
        }
        assert!(tokens.iter().all(|t| !in_front(&cache, cache.hash(t))));
    }
}
