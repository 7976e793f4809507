//! Counters, the metrics snapshot, and its Prometheus text encoding.
//!
//! Counters on the cache-hit path are striped across cache-padded slots, one
//! per thread (modulo the stripe count), so two cores verifying the same
//! token do not bounce one cache line between them.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::error::ErrorKind;

const STRIPES: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

/// A counter written by many threads without sharing a cache line.
pub(crate) struct StripedCounter {
    slots: [Padded; STRIPES],
}

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

#[inline]
fn my_stripe() -> usize {
    STRIPE.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
        s.set(v);
        v
    })
}

impl Default for StripedCounter {
    fn default() -> Self {
        StripedCounter {
            slots: std::array::from_fn(|_| Padded::default()),
        }
    }
}

impl StripedCounter {
    #[inline]
    pub(crate) fn inc(&self) {
        self.slots[my_stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// Why a JWKS fetch was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchReason {
    /// The first fetch when the verifier starts.
    Startup,
    /// A refresh ahead of the keyset's expiry (or a retry after a failure).
    Scheduled,
    /// A token carried a `kid` not in the keyset.
    UnknownKid,
    /// The application asked (`refresh_issuer`).
    Manual,
}

impl FetchReason {
    pub(crate) const ALL: [FetchReason; 4] = [
        FetchReason::Startup,
        FetchReason::Scheduled,
        FetchReason::UnknownKid,
        FetchReason::Manual,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FetchReason::Startup => "startup",
            FetchReason::Scheduled => "scheduled",
            FetchReason::UnknownKid => "unknown_kid",
            FetchReason::Manual => "manual",
        }
    }
}

/// Verifier-wide counters.
pub(crate) struct VerifierCounters {
    pub ok_fresh: AtomicU64,
    pub ok_cached: StripedCounter,
    pub rejected: [AtomicU64; 64],
    pub cache_misses: AtomicU64,
    pub cache_inserts: AtomicU64,
    pub cache_evictions: AtomicU64,
}

impl Default for VerifierCounters {
    fn default() -> Self {
        VerifierCounters {
            ok_fresh: AtomicU64::new(0),
            ok_cached: StripedCounter::default(),
            rejected: std::array::from_fn(|_| AtomicU64::new(0)),
            cache_misses: AtomicU64::new(0),
            cache_inserts: AtomicU64::new(0),
            cache_evictions: AtomicU64::new(0),
        }
    }
}

impl VerifierCounters {
    pub(crate) fn reject(&self, kind: ErrorKind) {
        if let Some(i) = ErrorKind::ALL.iter().position(|k| *k == kind) {
            self.rejected[i.min(63)].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Per-issuer counters.
#[derive(Default)]
pub(crate) struct IssuerCounters {
    pub fetches: [AtomicU64; 4],
    pub fetch_failures: AtomicU64,
    pub not_modified: AtomicU64,
    pub rate_limited: AtomicU64,
    pub unknown_kid: AtomicU64,
}

impl IssuerCounters {
    pub(crate) fn fetched(&self, reason: FetchReason) {
        let i = FetchReason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.fetches[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// Health of one issuer's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Keys within their TTL (or a static keyset).
    Fresh,
    /// Past the TTL, refreshes failing: serving last known good keys.
    Stale,
    /// Past `max_stale`, or never loaded: every token of this issuer is rejected.
    FailedClosed,
}

impl Health {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Fresh => "fresh",
            Health::Stale => "stale",
            Health::FailedClosed => "failed_closed",
        }
    }
}

/// A point-in-time copy of every metric.
#[derive(Clone, Debug, Serialize)]
pub struct MetricsSnapshot {
    /// Verifications by outcome.
    pub verifications: VerificationStats,
    /// The verification-result cache.
    pub cache: CacheStats,
    /// One entry per configured issuer, in configuration order.
    pub issuers: Vec<IssuerStats>,
    /// Entries in the revocation lists.
    pub revocation_entries: u64,
    /// The current policy version.
    pub policy_version: u64,
}

/// Verifications by outcome.
#[derive(Clone, Debug, Serialize)]
pub struct VerificationStats {
    /// Verified with a signature check.
    pub ok_fresh: u64,
    /// Served from the cache.
    pub ok_cached: u64,
    /// Rejections by error kind name (only kinds seen at least once).
    pub rejected: BTreeMap<String, u64>,
}

/// Cache counters.
#[derive(Clone, Debug, Serialize)]
pub struct CacheStats {
    /// Lookups served from the cache.
    pub hits: u64,
    /// Lookups that had to verify.
    pub misses: u64,
    /// Results stored.
    pub inserts: u64,
    /// Results pushed out by `capacity` or `max_bytes` (LRU).
    pub evictions: u64,
    /// Results held now.
    pub entries: u64,
    /// Maximum results held.
    pub capacity: u64,
    /// Estimated bytes held now: tokens, decoded claims and per-entry
    /// overhead (see `cache.max_bytes`).
    pub bytes: u64,
    /// Maximum estimated bytes held (`cache.max_bytes`, rounded down to a
    /// multiple of the shard count).
    pub max_bytes: u64,
}

/// One issuer's key state and fetch counters.
#[derive(Clone, Debug, Serialize)]
pub struct IssuerStats {
    /// The issuer identifier.
    pub issuer: String,
    /// Health of its keys.
    pub health: Health,
    /// Usable keys in the current keyset.
    pub keys: u64,
    /// Fetches by reason (`startup`, `scheduled`, `unknown_kid`, `manual`).
    pub fetches: BTreeMap<String, u64>,
    /// Fetches that failed (network, status, parse, no usable key).
    pub fetch_failures: u64,
    /// Conditional fetches answered 304 Not Modified.
    pub not_modified: u64,
    /// Unknown-`kid` refreshes refused by the cooldown.
    pub rate_limited_refreshes: u64,
    /// Tokens rejected because their `kid` was unknown.
    pub unknown_kid: u64,
    /// Seconds since the keyset was fetched (or confirmed by a 304).
    pub keyset_age_secs: Option<u64>,
    /// When the last fetch succeeded, ms since the epoch.
    pub last_success_ms: Option<u64>,
    /// The last fetch error, if the last fetch failed.
    pub last_error: Option<String>,
}

type Labels = Vec<(String, String)>;

fn label(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

impl MetricsSnapshot {
    /// The snapshot in the Prometheus text exposition format.
    pub fn to_prometheus(&self) -> String {
        let mut reg = Registry::with_prefix("jwtwarden");
        self.register_verifications(&mut reg);
        self.register_cache(&mut reg);
        self.register_issuers(&mut reg);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).expect("writing to a String cannot fail");
        out
    }

    fn register_verifications(&self, reg: &mut Registry) {
        let verifications = Family::<Labels, Counter>::default();
        verifications
            .get_or_create(&label(&[("outcome", "ok"), ("source", "fresh")]))
            .inc_by(self.verifications.ok_fresh);
        verifications
            .get_or_create(&label(&[("outcome", "ok"), ("source", "cache")]))
            .inc_by(self.verifications.ok_cached);
        for (kind, n) in &self.verifications.rejected {
            let category = ErrorKind::ALL
                .iter()
                .find(|k| k.as_str() == kind)
                .map_or("internal", |k| k.category().as_str());
            verifications
                .get_or_create(&label(&[("outcome", kind), ("category", category)]))
                .inc_by(*n);
        }
        reg.register("verifications", "Verifications by outcome", verifications);
    }

    fn register_cache(&self, reg: &mut Registry) {
        let cache = Family::<Labels, Counter>::default();
        for (event, n) in [
            ("hit", self.cache.hits),
            ("miss", self.cache.misses),
            ("insert", self.cache.inserts),
            ("eviction", self.cache.evictions),
        ] {
            cache.get_or_create(&label(&[("event", event)])).inc_by(n);
        }
        reg.register("cache_events", "Verification cache events", cache);
        let entries = Gauge::<i64>::default();
        entries.set(self.cache.entries as i64);
        reg.register("cache_entries", "Results held in the verification cache", entries);
        let capacity = Gauge::<i64>::default();
        capacity.set(self.cache.capacity as i64);
        reg.register("cache_capacity", "Most results the verification cache holds", capacity);
        let bytes = Gauge::<i64>::default();
        bytes.set(self.cache.bytes as i64);
        reg.register("cache_bytes", "Estimated bytes held by the verification cache", bytes);
        let max_bytes = Gauge::<i64>::default();
        max_bytes.set(self.cache.max_bytes as i64);
        reg.register(
            "cache_max_bytes",
            "Most estimated bytes the verification cache holds",
            max_bytes,
        );
    }

    fn register_issuers(&self, reg: &mut Registry) {
        let fetches = Family::<Labels, Counter>::default();
        let failures = Family::<Labels, Counter>::default();
        let rate_limited = Family::<Labels, Counter>::default();
        let unknown = Family::<Labels, Counter>::default();
        let age = Family::<Labels, Gauge<i64>>::default();
        let last_ok = Family::<Labels, Gauge<i64>>::default();
        let health = Family::<Labels, Gauge<i64>>::default();
        let keys = Family::<Labels, Gauge<i64>>::default();
        for i in &self.issuers {
            let iss = i.issuer.as_str();
            for (reason, n) in &i.fetches {
                fetches
                    .get_or_create(&label(&[("issuer", iss), ("reason", reason)]))
                    .inc_by(*n);
            }
            failures
                .get_or_create(&label(&[("issuer", iss)]))
                .inc_by(i.fetch_failures);
            rate_limited
                .get_or_create(&label(&[("issuer", iss)]))
                .inc_by(i.rate_limited_refreshes);
            unknown.get_or_create(&label(&[("issuer", iss)])).inc_by(i.unknown_kid);
            if let Some(a) = i.keyset_age_secs {
                age.get_or_create(&label(&[("issuer", iss)])).set(a as i64);
            }
            if let Some(t) = i.last_success_ms {
                last_ok.get_or_create(&label(&[("issuer", iss)])).set((t / 1000) as i64);
            }
            for h in [Health::Fresh, Health::Stale, Health::FailedClosed] {
                health
                    .get_or_create(&label(&[("issuer", iss), ("state", h.as_str())]))
                    .set(i64::from(i.health == h));
            }
            keys.get_or_create(&label(&[("issuer", iss)])).set(i.keys as i64);
        }
        reg.register("jwks_fetches", "JWKS fetches by reason", fetches);
        reg.register("jwks_fetch_failures", "Failed JWKS fetches", failures);
        reg.register(
            "jwks_rate_limited_refreshes",
            "Unknown-kid refreshes refused by the cooldown",
            rate_limited,
        );
        reg.register("unknown_kid", "Tokens rejected for an unknown kid", unknown);
        reg.register(
            "keyset_age_seconds",
            "Seconds since the keyset was fetched or confirmed",
            age,
        );
        reg.register(
            "jwks_last_success_timestamp_seconds",
            "When the last JWKS fetch succeeded",
            last_ok,
        );
        reg.register("issuer_health", "1 for the issuer's current key health state", health);
        reg.register("keys", "Usable keys in the issuer's keyset", keys);
    }
}
