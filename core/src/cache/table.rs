//! One cache shard's table: open addressing with linear probing, read
//! without a lock. Readers probe the tags and load a slot only on a matching
//! tag; only the shard's writer (under its lock) changes either.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwapOption, Guard};

use crate::verified::VerifiedToken;

/// One shard's open-addressed table (linear probing). Readers probe the
/// tags and load a slot only on a matching tag; only the shard's writer
/// changes either. A tag is the hash's high half with its low bit set (0 is
/// an empty slot); the probe starts at the tag's other bits.
pub(super) struct Table {
    pub(super) tags: Box<[AtomicU32]>,
    pub(super) slots: Box<[ArcSwapOption<VerifiedToken>]>,
    mask: usize,
}

/// Slots of a shard's first table.
pub(super) const INITIAL_SLOTS: usize = 8;

impl Table {
    pub(super) fn with_slots(n: usize) -> Table {
        Table {
            tags: (0..n).map(|_| AtomicU32::new(0)).collect(),
            slots: (0..n).map(|_| ArcSwapOption::empty()).collect(),
            mask: n - 1,
        }
    }

    #[inline]
    pub(super) fn tag(hash: u64) -> u32 {
        (hash >> 32) as u32 | 1
    }

    /// Where a probe for `tag` starts (the tag's bits above the low one).
    #[inline]
    fn home(&self, tag: u32) -> usize {
        (tag >> 1) as usize & self.mask
    }

    /// The slot holding `token`'s result, loaded, and its index.
    #[inline]
    pub(super) fn find(&self, hash: u64, token: &[u8]) -> Option<(usize, Guard<Option<Arc<VerifiedToken>>>)> {
        let tag = Self::tag(hash);
        let mut i = self.home(tag);
        for _ in 0..=self.mask {
            match self.tags[i].load(Ordering::Acquire) {
                0 => return None,
                t if t == tag => {
                    let slot = self.slots[i].load();
                    if (*slot).as_ref().is_some_and(|e| e.token_bytes() == token) {
                        return Some((i, slot));
                    }
                }
                _ => {}
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// The index of the slot holding exactly `e` (writer only).
    pub(super) fn position_of(&self, hash: u64, e: &Arc<VerifiedToken>) -> Option<usize> {
        let tag = Self::tag(hash);
        let mut i = self.home(tag);
        for _ in 0..=self.mask {
            match self.tags[i].load(Ordering::Relaxed) {
                0 => return None,
                t if t == tag && (*self.slots[i].load()).as_ref().is_some_and(|s| Arc::ptr_eq(s, e)) => {
                    return Some(i);
                }
                _ => {}
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Put `e` in the first free slot of its probe (writer only; the table
    /// has one).
    pub(super) fn place(&self, tag: u32, e: Arc<VerifiedToken>) {
        let mut i = self.home(tag);
        while self.tags[i].load(Ordering::Relaxed) != 0 {
            i = (i + 1) & self.mask;
        }
        // The result before its tag: a reader that sees the tag finds it.
        self.slots[i].store(Some(e));
        self.tags[i].store(tag, Ordering::Release);
    }

    /// Empty slot `i`, shifting later entries of its probe run back so every
    /// entry stays reachable from its home (writer only). A reader probing
    /// meanwhile may miss an entry in the run; it never finds a wrong one.
    pub(super) fn remove_at(&self, mut i: usize) {
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let tag = self.tags[j].load(Ordering::Relaxed);
            if tag == 0 {
                break;
            }
            // Entry j may move to i unless its home lies cyclically in (i, j].
            let home = self.home(tag);
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(i) & self.mask) {
                self.slots[i].store(self.slots[j].load_full());
                self.tags[i].store(tag, Ordering::Release);
                i = j;
            }
        }
        self.tags[i].store(0, Ordering::Release);
        self.slots[i].store(None);
    }

    pub(super) fn entries(&self) -> impl Iterator<Item = Arc<VerifiedToken>> + '_ {
        self.slots.iter().filter_map(|s| s.load_full())
    }
}
