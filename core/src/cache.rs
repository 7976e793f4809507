//! The verification-result cache.
//!
//! Two levels, one set of rules:
//!
//! * **Shards** (the cache proper): `cache.shards` tables holding at most
//!   `cache.capacity` results and `cache.max_bytes` estimated bytes in all
//!   (each shard its share of both). A lookup takes **no lock** and writes
//!   no shared memory in the common case: each shard's table is an
//!   open-addressed array of `(hash tag, ArcSwapOption<result>)` slots,
//!   itself behind an `ArcSwap` (replaced whole when it grows), read with
//!   `arc_swap`'s loads, which borrow through a per-thread debt slot
//!   instead of touching the shared reference count. Inserts, evictions
//!   and removals take the shard's writer mutex, one at a time; a reader
//!   racing with them sees the old entry or the new one, or at worst misses
//!   (a miss costs a verification, never a wrong answer).
//! * **Eviction is CLOCK (second chance)**: the writer keeps every held
//!   result in insertion order; a hit sets the result's reference bit, with
//!   a plain store and only when it is clear, so a result hit again and
//!   again writes its cache line once per sweep, not once per hit. To make
//!   room the writer takes the oldest result: referenced, its bit is cleared
//!   and it goes to the back; not referenced, it is evicted (and counted).
//!   A count alone is no memory bound: 100,000 results of 15 KiB tokens
//!   would be gigabytes, so both bounds are enforced.
//! * **A per-thread front** of [`FRONT_SLOTS`] direct-mapped slots holding a
//!   thread-private copy of recently hit results. A shard hit shares no
//!   writes either (below), but the front skips its two table loads: a hot
//!   token is served in about four fifths of the time. A copy costs several
//!   hits, so a result is admitted only on its [`ADMIT_STREAK`]th
//!   consecutive shard hit in its slot: hot tokens get one, while a thread
//!   cycling at random through more distinct tokens than it has slots
//!   rarely pays for a copy it would evict before using it (with 4 tokens
//!   per slot, 1 shard hit in 64 instead of 1 in 4 at a streak of 2).
//!
//! A shard hit hands out no reference count either: the result is returned
//! *borrowed* through the same `arc-swap` debt slot its load used (the
//! slot's `Guard`, kept in the caller's [`Verified`]), so cores hitting the
//! same results in turn only ever read them. A reference count would be a
//! write to the result's first cache line on every hit and its drop, which
//! moves that line between cores each time another core hit the result
//! last: that alone held two threads on 256 random tokens to 1.2x one
//! thread. Handing out a copy instead would cost an allocation and a copy
//! of the token per hit and lose the per-result memo the C and Python
//! front ends share across hits. A caller that keeps a result (the C ABI,
//! a clone) takes a real count then.
//!
//! [`Verified`]: crate::Verified
//!
//! Both levels key on a seeded fast hash of the token (its length and
//! signature tail, see [`Cache::hash`]), but a hit always
//! compares the *whole* token byte for byte, so a hash collision can only
//! cost a miss, never serve another token's result. Every hit, at either
//! level, is re-validated: the entry's own validity window at the current
//! time, then its [`Stamp`] by the caller's [`Currency`] (issuer key epoch,
//! policy version, issuer not failed closed, fleet feed not stale), its
//! Token Status List status read from the list in use (when the token has
//! one), and the revocation lists against the result's compact [`Facts`]
//! when they changed since the entry was last checked.
//!
//! Why not a crate: `quick_cache` and `moka` were measured on this workload
//! first (`benches/rust/scaling.rs`: `jsonwebtoken` behind each, keyed by
//! the token; figures in `benches/RESULTS.md`). `moka` is out: its hit
//! records every read in a shared buffer for its frequency sketch and cost
//! 3-4x ours (290-370 ns for a hot token, 660-1,800 ns for 4,096 random
//! ones, on a loaded 2-core machine). `quick_cache`'s hit is about as fast
//! as ours on one thread, but it takes its shard's `RwLock` read lock (a
//! write to the lock word, shared by every core, on every hit) and clones
//! the value out; keyed by the token it would hold every token twice (key
//! and result: about 630 bytes more per entry than the budget allows) and
//! give no place to re-check a result in place (stamp, revocation mark).
//! The table here is what both lack for this workload, in ~300 lines over
//! `arc-swap` (already a dependency of the CLI).
//!
//! The cache only answers hit or miss and reports what an insert evicted;
//! the verifier keeps the counts.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde_json::{Map, Value};

use crate::clock::Now;
pub(crate) use crate::entry::{EntryState, Lifetime, Stamp, NO_STATUS};
use crate::facts::Facts;
use crate::status::StatusRef;
use crate::verified::{Held, VerifiedToken};

mod bytes;
mod table;

use bytes::entry_bytes;
use table::{Table, INITIAL_SLOTS};

/// Slots in each thread's front cache.
pub const FRONT_SLOTS: usize = 64;

/// Bytes at the end of a token that its cache key hashes: 48 base64url
/// characters, 288 bits of signature.
const HASHED_TAIL: usize = 48;

/// What the cache asks of the verifier to decide whether a result may still
/// be served.
pub(crate) trait Currency {
    /// Whether results stamped `stamp` may be served at `now_ms`: the key
    /// epoch and policy version unchanged, the issuer not failed closed, and
    /// the issuer the one the caller pinned, if any.
    fn is_current(&self, stamp: &Stamp, now_ms: u64) -> bool;
    /// The revocation generation now.
    fn revocation_generation(&self) -> u64;
    /// Whether the token with these facts, verified for the stamp's
    /// issuer with the key of `kid`, is revoked.
    fn revoked(&self, stamp: &Stamp, facts: &Facts, kid: Option<&str>) -> bool;
    /// Whether the token's Token Status List status is still acceptable at
    /// `now_ms`: read from the list in use on every hit.
    fn status_ok(&self, stamp: &Stamp, status: StatusRef, now_ms: u64) -> bool;
}

/// Whether `e`, already known to be for the looked-up token, may be served
/// now: decided at the clock's cheap ceiling, and only if that says no, at
/// the exact time. Every check is "now is before a deadline", so a yes at
/// the ceiling (no earlier than now) is a yes now.
#[inline]
fn serves(e: &VerifiedToken, now: &Now<'_>, v: &impl Currency) -> bool {
    serves_at(e, now.ceiling(), v) || {
        let exact = now.exact();
        exact != now.ceiling() && serves_at(e, exact, v)
    }
}

/// Whether `e` may be served at `now_ms`. Writes `e` only when the
/// revocation generation moved since it was last checked (and it is not
/// revoked).
#[inline]
fn serves_at(e: &VerifiedToken, now_ms: u64, v: &impl Currency) -> bool {
    let state = &e.entry;
    if now_ms >= state.valid_until_ms || !v.is_current(&state.stamp(), now_ms) {
        return false;
    }
    if state.status != NO_STATUS && !v.status_ok(&state.stamp(), StatusRef::unpack(state.status), now_ms) {
        return false;
    }
    // The generation is read before the lists: a revocation is in the lists
    // before its generation is published.
    let generation = v.revocation_generation();
    if state.revocation_seen.load(Ordering::Acquire) != generation {
        if v.revoked(&state.stamp(), &e.facts, e.kid.as_deref()) {
            return false;
        }
        state.revocation_seen.store(generation, Ordering::Release);
    }
    true
}

/// Ask the CPU to start loading `bytes` into cache. A hit compares the
/// whole token, and a gateway's tokens are not all in cache: started as the
/// lookup begins, those loads overlap the table probe's instead of following
/// it (4,096 random tokens: 143 ns a hit without, 127-133 with; started
/// before hashing instead, they slowed the hash's own loads: 140-166).
#[inline(always)]
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch only hints; any address is allowed, and these
        // are inside `bytes`.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// A shard's mutable side, changed under its writer lock.
struct Writer {
    /// Results held.
    len: usize,
    /// Their estimated bytes.
    bytes: usize,
    /// Every held result in CLOCK order (oldest first), plus removed ones
    /// not yet dropped from it (marked `removed`, skipped and compacted).
    queue: VecDeque<Arc<VerifiedToken>>,
}

#[repr(align(128))]
struct Shard {
    /// Read without a lock; replaced whole when it grows.
    table: ArcSwap<Table>,
    writer: Mutex<Writer>,
}

static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) struct Cache {
    id: u64,
    hasher: foldhash::fast::RandomState,
    shards: Box<[Shard]>,
    mask: u64,
    shard_capacity: usize,
    shard_max_bytes: usize,
}

struct FrontSlot {
    cache_id: u64,
    hash: u64,
    /// A private copy: its counts and revocation mark are this thread's.
    entry: Arc<VerifiedToken>,
}

/// One thread's front: the slots, and per slot the hash of the last token
/// that hit the shards there (the admission candidate) and how many shard
/// hits in a row it has had there.
struct Front {
    slots: Vec<Option<FrontSlot>>,
    candidates: [(u64, u8); FRONT_SLOTS],
}

/// Consecutive shard hits of a token in its front slot that earn it a
/// private copy there.
const ADMIT_STREAK: u8 = 4;

thread_local! {
    static FRONT: RefCell<Front> = RefCell::new(Front {
        slots: (0..FRONT_SLOTS).map(|_| None).collect(),
        candidates: [(0, 0); FRONT_SLOTS],
    });
}

impl Cache {
    /// A cache of at most `capacity` results and `max_bytes` estimated
    /// bytes, in `shards` shards (rounded up to a power of two), each with
    /// its share of both bounds.
    pub(crate) fn new(capacity: usize, max_bytes: usize, shards: usize) -> Cache {
        let shards = shards.max(1).next_power_of_two();
        let per_shard = capacity.div_ceil(shards).max(1);
        Cache {
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..shards)
                .map(|_| Shard {
                    table: ArcSwap::from_pointee(Table::with_slots(INITIAL_SLOTS)),
                    writer: Mutex::new(Writer {
                        len: 0,
                        bytes: 0,
                        queue: VecDeque::new(),
                    }),
                })
                .collect(),
            mask: (shards - 1) as u64,
            shard_capacity: per_shard,
            // Rounded down, so the shards together never exceed max_bytes.
            shard_max_bytes: max_bytes / shards,
        }
    }

    /// The token's key in the cache: a seeded hash of its length and its
    /// last [`HASHED_TAIL`] bytes. That tail is the signature's, different
    /// for any two tokens that ever verified, and only verified tokens are
    /// stored, so nobody can pile up colliding entries; a collision would
    /// only cost a probe, since a hit compares the whole token. Hashing the
    /// tail instead of the whole token halves what a hit reads.
    #[inline]
    pub(crate) fn hash(&self, token: &[u8]) -> u64 {
        let tail = &token[token.len().saturating_sub(HASHED_TAIL)..];
        self.hasher.hash_one((token.len(), tail))
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Shard {
        // Low bits pick the shard; the table uses the high half.
        &self.shards[(hash & self.mask) as usize]
    }

    /// Look a token up. `None` is a miss; the caller verifies in full.
    // Inlined: see `Verifier::verify_with`.
    #[inline(always)]
    pub(crate) fn get(&self, hash: u64, token: &[u8], now: &Now<'_>, v: &impl Currency) -> Option<Held> {
        prefetch(token);
        let slot_index = (hash as usize) % FRONT_SLOTS;
        if let Some(hit) = self.front_get(slot_index, hash, token, now, v) {
            return Some(Held::Owned(hit));
        }

        let hit = {
            let table = self.shard(hash).table.load();
            let (_, slot) = table.find(hash, token)?;
            let e = (*slot).as_ref()?;
            if !serves(e, now, v) {
                let stale = Arc::clone(e);
                drop(slot);
                drop(table);
                self.remove(hash, &stale);
                return None;
            }
            let referenced = &e.marks.referenced;
            if !referenced.load(Ordering::Relaxed) {
                referenced.store(true, Ordering::Relaxed);
            }
            // The slot's borrow, not a count (see `Held::Borrowed`).
            Held::Borrowed(slot)
        };
        // The ADMIT_STREAK-th consecutive shard hit of this token in its
        // slot: give this thread a private copy. Before that, count.
        let admit = FRONT.with(|front| {
            let (candidate, streak) = &mut front.borrow_mut().candidates[slot_index];
            if *candidate == hash {
                *streak += 1;
            } else {
                (*candidate, *streak) = (hash, 1);
            }
            // Admitted: count afresh, should the copy be dropped later.
            let admit = *streak >= ADMIT_STREAK;
            if admit {
                *streak = 0;
            }
            admit
        });
        if admit {
            let private = Arc::new((*hit).clone());
            FRONT.with(|front| {
                front.borrow_mut().slots[slot_index] = Some(FrontSlot {
                    cache_id: self.id,
                    hash,
                    entry: private,
                });
            });
        }
        Some(hit)
    }

    /// A hit in this thread's front, re-validated like any hit; a slot that
    /// no longer serves is emptied.
    #[inline]
    fn front_get(
        &self,
        slot_index: usize,
        hash: u64,
        token: &[u8],
        now: &Now<'_>,
        v: &impl Currency,
    ) -> Option<Arc<VerifiedToken>> {
        FRONT.with(|front| {
            let front = &mut front.borrow_mut().slots;
            let slot = front[slot_index].as_ref()?;
            if slot.cache_id != self.id || slot.hash != hash || slot.entry.token_bytes() != token {
                return None;
            }
            if !serves(&slot.entry, now, v) {
                front[slot_index] = None;
                return None;
            }
            Some(slot.entry.clone())
        })
    }

    /// Drop `e` (no longer servable) from its shard, if it is still there.
    #[cold]
    fn remove(&self, hash: u64, e: &Arc<VerifiedToken>) {
        let shard = self.shard(hash);
        let mut w = shard.writer.lock();
        let table = shard.table.load_full();
        if let Some(i) = table.position_of(hash, e) {
            unlink(&table, &mut w, i);
        }
    }

    /// Store a fresh result, whose verified claims are `claims`, evicting
    /// results (CLOCK) until it fits both the entry and the byte bound of
    /// its shard. A result past its validity at `now_ms` is not stored, nor
    /// is one larger than a whole shard's byte budget (it would empty the
    /// shard for one token; it is verified afresh each time instead).
    /// Returns how many results were evicted, or `None` if not stored.
    pub(crate) fn insert(
        &self,
        hash: u64,
        mut result: VerifiedToken,
        claims: &Map<String, Value>,
        now_ms: u64,
    ) -> Option<u64> {
        if result.entry.valid_until_ms <= now_ms {
            return None;
        }
        let size = entry_bytes(&result, claims);
        if size > self.shard_max_bytes {
            return None;
        }
        result.entry.bytes = u32::try_from(size).unwrap_or(u32::MAX);
        let size = result.entry.bytes as usize;
        let result = Arc::new(result);
        let shard = self.shard(hash);
        let mut w = shard.writer.lock();
        let mut table = shard.table.load_full();
        // Replacing this token's own result is not an eviction.
        if let Some((i, _)) = table.find(hash, result.token_bytes()) {
            unlink(&table, &mut w, i);
        }
        let mut evicted = 0;
        while w.len >= self.shard_capacity || w.bytes + size > self.shard_max_bytes {
            if !self.evict_one(&table, &mut w) {
                break;
            }
            evicted += 1;
        }
        // Keep the table at most three quarters full.
        if (w.len + 1) * 4 > table.tags.len() * 3 {
            let grown = Table::with_slots(table.tags.len() * 2);
            for e in table.entries() {
                grown.place(Table::tag(self.hash(e.token_bytes())), e);
            }
            table = Arc::new(grown);
            shard.table.store(table.clone());
        }
        table.place(Table::tag(hash), result.clone());
        w.queue.push_back(result);
        w.len += 1;
        w.bytes += size;
        // Removed results linger in the queue until the hand reaches them;
        // don't let replacements pile up where nothing is evicted.
        if w.queue.len() > 2 * w.len + 64 {
            w.queue.retain(|e| !e.marks.removed.load(Ordering::Relaxed));
        }
        Some(evicted)
    }

    /// Evict one result, CLOCK order: the oldest not referenced since the
    /// hand last passed it. False if the shard is empty.
    fn evict_one(&self, table: &Table, w: &mut Writer) -> bool {
        // Hits may keep setting bits while the hand sweeps: after two full
        // rounds, take the oldest regardless.
        let mut chances = 2 * w.queue.len();
        while let Some(e) = w.queue.pop_front() {
            if e.marks.removed.load(Ordering::Relaxed) {
                continue;
            }
            if chances > 0 && e.marks.referenced.swap(false, Ordering::Relaxed) {
                chances -= 1;
                w.queue.push_back(e);
                continue;
            }
            match table.position_of(self.hash(e.token_bytes()), &e) {
                Some(i) => unlink(table, w, i),
                // Not in the table: only its queue place was left.
                None => continue,
            }
            return true;
        }
        false
    }

    /// Results held now.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.writer.lock().len).sum()
    }

    /// Estimated bytes held now ([`entry_bytes`] summed).
    pub(crate) fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.writer.lock().bytes).sum()
    }

    /// Maximum estimated bytes held: `cache.max_bytes`, rounded down to a
    /// multiple of the shard count.
    pub(crate) fn max_bytes(&self) -> usize {
        self.shard_max_bytes * self.shards.len()
    }

    /// Maximum results held.
    pub(crate) fn capacity(&self) -> usize {
        self.shard_capacity * self.shards.len()
    }
}

/// Take the result in slot `i` out of the table and the shard's counts
/// (its queue place goes when the hand or a compaction reaches it).
fn unlink(table: &Table, w: &mut Writer, i: usize) {
    if let Some(old) = table.slots[i].load_full() {
        old.marks.removed.store(true, Ordering::Relaxed);
        w.len -= 1;
        w.bytes -= old.entry.bytes as usize;
    }
    table.remove_at(i);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::token::Alg;
    use crate::verified::Fresh;

    struct AlwaysValid;

    impl Currency for AlwaysValid {
        fn is_current(&self, _: &Stamp, _: u64) -> bool {
            true
        }
        fn revocation_generation(&self) -> u64 {
            0
        }
        fn revoked(&self, _: &Stamp, _: &Facts, _: Option<&str>) -> bool {
            false
        }
        fn status_ok(&self, _: &Stamp, _: StatusRef, _: u64) -> bool {
            true
        }
    }

    const STAMP: Stamp = Stamp {
        issuer: 0,
        key_epoch: 0,
        policy_version: 0,
        revocation_generation: 0,
    };

    const FOREVER: Lifetime = Lifetime {
        invalid_from_ms: u64::MAX,
        max_ttl_until_ms: u64::MAX,
        key_usable_until_ms: u64::MAX,
    };

    fn entry(token: &[u8]) -> VerifiedToken {
        VerifiedToken::new(
            Fresh {
                token,
                issuer: Arc::from("https://idp"),
                kid: None,
                alg: Alg::RS256,
                verified_at_ms: 0,
                key_first_seen_ms: None,
                expires_at: 0,
            },
            Facts::of(&Map::new()),
            EntryState::new(STAMP, &FOREVER, None),
        )
    }

    fn insert(cache: &Cache, token: &[u8]) -> Option<u64> {
        cache.insert(cache.hash(token), entry(token), &Map::new(), 0)
    }

    fn hit(cache: &Cache, token: &[u8]) -> bool {
        cache
            .get(cache.hash(token), token, &Now::new(&ManualClock::new(0)), &AlwaysValid)
            .is_some()
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
    fn front_admits_a_token_on_its_streak_of_shard_hits_only() {
        let cache = Cache::new(100, 1 << 20, 1);
        let hot = b"hot.token.x".as_slice();
        let h = cache.hash(hot);
        insert(&cache, hot);
        for _ in 1..ADMIT_STREAK {
            assert!(hit(&cache, hot));
            assert!(!in_front(&cache, h), "a shorter streak earns no private copy");
        }
        assert!(hit(&cache, hot));
        assert!(in_front(&cache, h), "the streak's last hit does");
    }

    #[test]
    fn byte_bound_evicts_oldest_unreferenced_until_it_holds() {
        // Room for 1000 entries by count, but only 64 KiB: about four
        // 15 KiB tokens.
        let cache = Cache::new(1000, 64 * 1024, 1);
        let tokens: Vec<Vec<u8>> = (0..20u8).map(|i| vec![b'a' + i; 15 * 1024]).collect();
        let size = entry_bytes(&entry(&tokens[0]), &Map::new());
        assert!(size > 15 * 1024, "the estimate counts the token: {size}");
        let mut evictions = 0;
        for t in &tokens {
            evictions += insert(&cache, t).expect("stored");
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
        assert!(hit(&cache, &tokens[19]));
        assert!(!hit(&cache, &tokens[0]));
        // Re-inserting a held token replaces it: no eviction, no double count.
        assert_eq!(insert(&cache, &tokens[19]), Some(0));
        assert_eq!(cache.bytes(), held * size);
        assert_eq!(cache.len(), held);
    }

    #[test]
    fn a_hit_gives_a_result_a_second_chance() {
        let cache = Cache::new(4, 1 << 20, 1);
        let tokens: Vec<Vec<u8>> = (0..6).map(|i| format!("token-{i}").into_bytes()).collect();
        for t in &tokens[..4] {
            insert(&cache, t);
        }
        // From another thread, so this thread's front does not serve it.
        std::thread::scope(|s| {
            s.spawn(|| assert!(hit(&cache, &tokens[0])));
        });
        assert_eq!(insert(&cache, &tokens[4]), Some(1));
        assert_eq!(insert(&cache, &tokens[5]), Some(1));
        let held: Vec<bool> = tokens.iter().map(|t| hit(&cache, t)).collect();
        assert_eq!(held, [true, false, false, true, true, true]);
    }

    #[test]
    fn capacity_bounds_every_shard_under_churn_and_replacement() {
        let cache = Cache::new(64, 1 << 20, 4);
        let tokens: Vec<Vec<u8>> = (0..1000).map(|i| format!("token-{i}").into_bytes()).collect();
        let mut evicted = 0;
        for round in 0..3 {
            for (i, t) in tokens.iter().enumerate() {
                evicted += insert(&cache, t).expect("stored");
                if i % 3 == round {
                    // Replacing the newest is not an eviction.
                    assert_eq!(insert(&cache, t), Some(0));
                }
                assert!(cache.len() <= cache.capacity());
            }
        }
        assert_eq!(cache.len(), cache.capacity());
        assert_eq!(evicted, 3000 - cache.capacity() as u64);
        let held = tokens.iter().filter(|t| hit(&cache, t)).count();
        assert_eq!(held, cache.len(), "every counted result is reachable");
        for shard in cache.shards.iter() {
            let w = shard.writer.lock();
            assert!(w.queue.len() <= 2 * w.len + 64, "replaced results do not pile up");
        }
    }

    #[test]
    fn removal_keeps_every_other_entry_reachable() {
        // One shard, many tokens, small capacity: backward-shift deletion in
        // long probe runs must never strand an entry.
        let cache = Cache::new(200, 1 << 22, 1);
        let tokens: Vec<Vec<u8>> = (0..2000).map(|i| format!("t{i}").into_bytes()).collect();
        for (i, t) in tokens.iter().enumerate() {
            insert(&cache, t);
            if i >= 200 {
                let newest = &tokens[i - 199..=i];
                assert!(newest.iter().all(|t| hit_shard(&cache, t)), "after insert {i}");
            }
        }
    }

    /// A shard hit, bypassing (and not feeding) this thread's front.
    fn hit_shard(cache: &Cache, token: &[u8]) -> bool {
        let hash = cache.hash(token);
        cache.shard(hash).table.load().find(hash, token).is_some()
    }

    #[test]
    fn borrowed_hits_outlive_their_eviction_and_removal() {
        // More borrowed hits than a thread has arc-swap debt slots (8), so
        // some are real counts; then every one leaves the cache.
        let cache = Cache::new(32, 1 << 20, 1);
        let tokens: Vec<Vec<u8>> = (0..32).map(|i| format!("held-{i}").into_bytes()).collect();
        for t in &tokens {
            insert(&cache, t);
        }
        let held: Vec<Held> = tokens
            .iter()
            .map(|t| {
                cache
                    .get(cache.hash(t), t, &Now::new(&ManualClock::new(0)), &AlwaysValid)
                    .expect("a hit")
            })
            .collect();
        assert!(held.iter().any(|h| matches!(h, Held::Borrowed(_))));
        for i in 0..64 {
            insert(&cache, format!("newer-{i}").as_bytes());
        }
        let stale = tokens[0].clone();
        cache.remove(cache.hash(&stale), held[0].arc());
        assert!(tokens.iter().all(|t| !hit_shard(&cache, t)), "all evicted");
        for (h, t) in held.iter().zip(&tokens) {
            assert_eq!(h.token_bytes(), &t[..], "a held result stays whole");
        }
    }

    #[test]
    fn result_larger_than_a_shard_budget_is_not_cached() {
        let cache = Cache::new(1000, 8 * 1024, 1);
        let small = b"small.token.x".as_slice();
        assert_eq!(insert(&cache, small), Some(0));
        let big = vec![b'b'; 9 * 1024];
        assert_eq!(insert(&cache, &big), None, "not stored");
        assert!(!hit(&cache, &big));
        assert!(hit(&cache, small), "an oversized result does not empty the shard");
    }

    #[test]
    fn expired_result_is_not_stored() {
        let cache = Cache::new(10, 1 << 20, 1);
        let mut e = entry(b"t");
        e.entry = EntryState::new(
            STAMP,
            &Lifetime {
                invalid_from_ms: 5,
                ..FOREVER
            },
            None,
        );
        assert_eq!(cache.insert(cache.hash(b"t"), e, &Map::new(), 5), None);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn claims_count_toward_entry_bytes() {
        let e = entry(b"t");
        let bare = entry_bytes(&e, &Map::new());
        let mut claims = Map::new();
        claims.insert("scope".into(), Value::String("x".repeat(1000)));
        claims.insert(
            "groups".into(),
            serde_json::json!(["a".repeat(500), {"k": "b".repeat(500)}]),
        );
        assert!(entry_bytes(&e, &claims) >= bare + 2000);
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
            insert(&cache, t);
        }
        for _ in 0..10 {
            for t in &tokens {
                assert!(hit(&cache, t));
            }
        }
        assert!(tokens.iter().all(|t| !in_front(&cache, cache.hash(t))));
    }
}
