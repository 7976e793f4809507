//! The cache's bookkeeping of one result: what it was verified under
//! ([`Stamp`]), until when it may be served ([`Lifetime`]), packed into the
//! result itself ([`EntryState`], [`Marks`]). Shared by the result type
//! (`verified`) and the cache, below both, so neither names the other both
//! ways; re-exported from `cache`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::status::StatusRef;

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

/// The instants that end a result's life in the cache, in ms.
pub(crate) struct Lifetime {
    /// The first instant the token is expired (`exp + leeway`).
    pub invalid_from_ms: u64,
    /// When it was verified plus `cache.max_ttl`.
    pub max_ttl_until_ms: u64,
    /// The end of the verifying key's rotation grace (`u64::MAX` if none).
    pub key_usable_until_ms: u64,
}

/// The cache's bookkeeping of one result, kept inside the result (one
/// allocation per cached result): its [`Stamp`], packed.
#[derive(Debug)]
pub(crate) struct EntryState {
    /// The stamp's issuer index.
    pub(crate) issuer: u32,
    /// Estimated bytes (`cache::bytes::entry_bytes`), for the byte bound.
    pub(crate) bytes: u32,
    /// The stamp's key epoch.
    pub(crate) key_epoch: u64,
    /// The stamp's policy version.
    pub(crate) policy_version: u64,
    /// Served only while `now_ms < valid_until_ms`.
    pub(crate) valid_until_ms: u64,
    /// The revocation generation the facts were last checked at (the
    /// stamp's, until a hit checks them again).
    pub(crate) revocation_seen: AtomicU64,
    /// Where the token's Token Status List status is read on every hit, if
    /// it references one: [`StatusRef::pack`]ed, [`NO_STATUS`] if none (8
    /// bytes where the `Option` takes 12 and pads the entry by 8).
    pub(crate) status: u64,
}

/// [`EntryState::status`] of a token without a status reference.
pub(crate) const NO_STATUS: u64 = u64::MAX;

/// The cache's one-byte marks on a result, apart from [`EntryState`] so
/// that they pack beside the result's other small fields.
#[derive(Debug, Default)]
pub(crate) struct Marks {
    /// CLOCK reference bit: set by a hit (only when clear), cleared by the
    /// eviction hand.
    pub(crate) referenced: AtomicBool,
    /// Set (under the shard's writer lock) once the result left its table.
    pub(crate) removed: AtomicBool,
}

impl EntryState {
    /// The bookkeeping of a result verified under `stamp`, served until the
    /// first instant of `life`.
    pub(crate) fn new(stamp: Stamp, life: &Lifetime, status: Option<StatusRef>) -> EntryState {
        EntryState {
            issuer: u32::try_from(stamp.issuer).expect("fewer than 2^32 issuers"),
            bytes: 0,
            key_epoch: stamp.key_epoch,
            policy_version: stamp.policy_version,
            valid_until_ms: life
                .invalid_from_ms
                .min(life.max_ttl_until_ms)
                .min(life.key_usable_until_ms),
            revocation_seen: AtomicU64::new(stamp.revocation_generation),
            status: status.map_or(NO_STATUS, |r| {
                let packed = r.pack();
                assert_ne!(packed, NO_STATUS, "no status list has slot u32::MAX");
                packed
            }),
        }
    }

    /// What the result was verified under (with the revocation generation
    /// its facts were last checked at).
    #[inline]
    pub(crate) fn stamp(&self) -> Stamp {
        Stamp {
            issuer: self.issuer as usize,
            key_epoch: self.key_epoch,
            policy_version: self.policy_version,
            revocation_generation: self.revocation_seen.load(Ordering::Acquire),
        }
    }
}

impl Clone for EntryState {
    fn clone(&self) -> EntryState {
        EntryState {
            revocation_seen: AtomicU64::new(self.revocation_seen.load(Ordering::Acquire)),
            ..*self
        }
    }
}
