//! Counters, the metrics snapshot, and the Prometheus exposition (a
//! registry built once per verifier, encoding live counters at each scrape).
//!
//! Counters on the cache-hit path are striped across cache-padded slots, one
//! per thread (modulo the stripe count), so two cores verifying the same
//! token do not bounce one cache line between them.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use std::sync::Weak;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::error::ErrorKind;
use crate::template::TemplateStats;

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
    /// Revocations applied, by source, and the fleet feed.
    pub revocations: RevocationStats,
    /// One entry per Token Status List referenced (or preloaded), by issuer.
    pub status_lists: Vec<StatusListStats>,
    /// One entry per issuer template, in configuration order: tenants
    /// held, materialised, evicted, and tokens refused before any fetch
    /// (budget, pattern, allowlist, a recent failure).
    pub templates: Vec<TemplateStats>,
}

/// Revocations applied (those that changed something), by where they came
/// from, and the fleet feed's state.
#[derive(Clone, Debug, Serialize)]
pub struct RevocationStats {
    /// Made by `revoke_*` in this process.
    pub local: u64,
    /// Replayed from the journal at start.
    pub journal: u64,
    /// Received from the fleet feed.
    pub feed: u64,
    /// The fleet feed (`revocation.redis`), if configured.
    pub fleet: Option<FeedStats>,
    /// A revocation from the journal or the fleet could not be held (the
    /// lists were full): every verification fails with
    /// `revocation_list_full` until it is.
    pub incomplete: bool,
}

/// The state of a verifier's subscription to the fleet feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedState {
    /// Subscribed and in sync.
    Connected,
    /// Cut off from Redis, still serving (within `max_stale_secs`, or past
    /// it with `serve_when_stale`).
    Lagging,
    /// Cut off for longer than `max_stale_secs`: every verification fails
    /// with `revocations_stale` until the subscription is back.
    FailedClosed,
}

impl FeedState {
    /// Stable lower-case name: `connected`, `lagging`, `failed_closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedState::Connected => "connected",
            FeedState::Lagging => "lagging",
            FeedState::FailedClosed => "failed_closed",
        }
    }
}

/// Counters and state of the fleet feed, for health checks and metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FeedStats {
    /// Connected, lagging or failed closed.
    pub state: FeedState,
    /// Milliseconds since the subscription last heard from Redis.
    pub last_contact_age_ms: u64,
    /// Milliseconds since the last event was applied (`None`: none yet).
    pub last_event_age_ms: Option<u64>,
    /// Events received and applied.
    pub events: u64,
    /// Events (and members of the set read at a sync) dropped as
    /// malformed, oversized or refused (an issuer not configured here, the
    /// lists full). A member read again at a later sync counts again.
    pub dropped_events: u64,
    /// Times the subscription was re-established after a loss.
    pub reconnects: u64,
    /// Local revocations not yet written to Redis.
    pub pending: u64,
    /// Propagation lag of received events, from the event's own timestamp
    /// to its application here: sum and count (for a mean) and maximum, ms.
    pub lag_ms_sum: u64,
    /// See `lag_ms_sum`.
    pub lag_ms_max: u64,
    /// A revocation from the feed or the journal could not be held because
    /// the lists are full (`revocation.max_entries`): every verification
    /// fails with `revocation_list_full` and `state` reads failed closed,
    /// until a re-sync holds every live record of the fleet's set.
    pub revocations_incomplete: bool,
    /// Records refused for want of room, in all.
    pub refused_for_room: u64,
}

/// One Token Status List's state and counters.
#[derive(Clone, Debug, Serialize)]
pub struct StatusListStats {
    /// The issuer whose tokens reference it.
    pub issuer: String,
    /// The list's `uri`.
    pub uri: String,
    /// Fresh, stale (serving the last good list) or failed closed.
    pub health: Health,
    /// Statuses in the list in use (0 before one is fetched).
    pub entries: u64,
    /// Bits per status (0 before one is fetched).
    pub bits: u8,
    /// Size of the Status List Token in use, bytes.
    pub token_bytes: u64,
    /// Seconds since the list was fetched (or confirmed by a 304).
    pub age_secs: Option<u64>,
    /// Fetches started.
    pub fetches: u64,
    /// Fetches that failed (network, status, verification, size).
    pub fetch_failures: u64,
    /// Conditional fetches answered 304 Not Modified.
    pub not_modified: u64,
    /// Tokens rejected by their status (revoked, suspended, not valid, index beyond the list).
    pub rejected: u64,
    /// When the last fetch succeeded, ms since the epoch.
    pub last_success_ms: Option<u64>,
    /// The last fetch error, if the last fetch failed.
    pub last_error: Option<String>,
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
    /// Results pushed out by `capacity` or `max_bytes` (CLOCK eviction).
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

/// What a scrape reads from a verifier: the snapshot, and the rejections by
/// typed kind (their category comes from the kind, not from its name).
pub(crate) trait Scrape: Send + Sync + 'static {
    /// Every metric now.
    fn snapshot(&self) -> MetricsSnapshot;
    /// Rejections by kind, kinds seen at least once.
    fn rejections(&self) -> Vec<(ErrorKind, u64)>;
}

/// A verifier's Prometheus exposition: a registry built once, with one
/// collector that encodes the verifier's counters as they are at each
/// scrape. It holds the verifier weakly, so it never keeps it alive.
pub(crate) struct Exporter {
    registry: Registry,
}

impl Exporter {
    pub(crate) fn new<S: Scrape>(source: Weak<S>) -> Exporter {
        let mut registry = Registry::with_prefix("jwtwarden");
        registry.register_collector(Box::new(VerifierCollector(source)));
        Exporter { registry }
    }

    /// The text exposition format.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

struct VerifierCollector<S>(Weak<S>);

impl<S> std::fmt::Debug for VerifierCollector<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifierCollector")
    }
}

impl<S: Scrape> Collector for VerifierCollector<S> {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(source) = self.0.upgrade() else {
            return Ok(());
        };
        let m = source.snapshot();
        encode_verifications(&mut e, &m.verifications, &source.rejections())?;
        encode_cache(&mut e, &m.cache)?;
        encode_issuers(&mut e, &m.issuers)?;
        encode_revocations(&mut e, m.revocation_entries, &m.revocations)?;
        encode_status_lists(&mut e, &m.status_lists)?;
        encode_templates(&mut e, &m.templates)
    }
}

type Label<'a> = [(&'static str, &'a str)];

/// One metric family: a descriptor, then one sample per label set.
fn family<'a, M: EncodeMetric>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Vec<(&'static str, &'a str)>, M)>,
) -> Result<(), std::fmt::Error> {
    let mut samples = samples.into_iter().peekable();
    let Some((_, first)) = samples.peek() else {
        return Ok(());
    };
    let mut metric = e.encode_descriptor(name, help, None, first.metric_type())?;
    for (labels, value) in samples {
        let labels: &Label<'_> = &labels;
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A metric without labels.
fn single<M: EncodeMetric>(e: &mut DescriptorEncoder, name: &str, help: &str, value: M) -> Result<(), std::fmt::Error> {
    let metric = e.encode_descriptor(name, help, None, value.metric_type())?;
    value.encode(metric)
}

fn counter(n: u64) -> ConstCounter<u64> {
    ConstCounter::new(n)
}

fn gauge(n: u64) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
}

fn encode_verifications(
    e: &mut DescriptorEncoder,
    v: &VerificationStats,
    rejections: &[(ErrorKind, u64)],
) -> Result<(), std::fmt::Error> {
    let ok = [
        (vec![("outcome", "ok"), ("source", "fresh")], counter(v.ok_fresh)),
        (vec![("outcome", "ok"), ("source", "cache")], counter(v.ok_cached)),
    ];
    let rejected = rejections.iter().map(|(k, n)| {
        (
            vec![("outcome", k.as_str()), ("category", k.category().as_str())],
            counter(*n),
        )
    });
    family(
        e,
        "verifications",
        "Verifications by outcome",
        ok.into_iter().chain(rejected),
    )
}

fn encode_cache(e: &mut DescriptorEncoder, c: &CacheStats) -> Result<(), std::fmt::Error> {
    let events = [
        ("hit", c.hits),
        ("miss", c.misses),
        ("insert", c.inserts),
        ("eviction", c.evictions),
    ];
    family(
        e,
        "cache_events",
        "Verification cache events",
        events.iter().map(|(event, n)| (vec![("event", *event)], counter(*n))),
    )?;
    single(
        e,
        "cache_entries",
        "Results held in the verification cache",
        gauge(c.entries),
    )?;
    single(
        e,
        "cache_capacity",
        "Most results the verification cache holds",
        gauge(c.capacity),
    )?;
    single(
        e,
        "cache_bytes",
        "Estimated bytes held by the verification cache",
        gauge(c.bytes),
    )?;
    single(
        e,
        "cache_max_bytes",
        "Most estimated bytes the verification cache holds",
        gauge(c.max_bytes),
    )
}

/// A per-issuer metric: name, help, and how to read it from the stats.
type PerIssuer = (&'static str, &'static str, fn(&IssuerStats) -> Option<u64>);

fn encode_issuers(e: &mut DescriptorEncoder, issuers: &[IssuerStats]) -> Result<(), std::fmt::Error> {
    let per_issuer = |f: fn(&IssuerStats) -> Option<u64>| {
        issuers
            .iter()
            .filter_map(move |i| f(i).map(|n| (vec![("issuer", i.issuer.as_str())], n)))
    };
    family(
        e,
        "jwks_fetches",
        "JWKS fetches by reason",
        issuers.iter().flat_map(|i| {
            i.fetches.iter().map(|(reason, n)| {
                (
                    vec![("issuer", i.issuer.as_str()), ("reason", reason.as_str())],
                    counter(*n),
                )
            })
        }),
    )?;
    let counters: [PerIssuer; 3] = [
        ("jwks_fetch_failures", "Failed JWKS fetches", |i| Some(i.fetch_failures)),
        (
            "jwks_rate_limited_refreshes",
            "Unknown-kid refreshes refused by the cooldown",
            |i| Some(i.rate_limited_refreshes),
        ),
        ("unknown_kid", "Tokens rejected for an unknown kid", |i| {
            Some(i.unknown_kid)
        }),
    ];
    for (name, help, f) in counters {
        family(e, name, help, per_issuer(f).map(|(l, n)| (l, counter(n))))?;
    }
    let gauges: [PerIssuer; 3] = [
        (
            "keyset_age_seconds",
            "Seconds since the keyset was fetched or confirmed",
            |i| i.keyset_age_secs,
        ),
        (
            "jwks_last_success_timestamp_seconds",
            "When the last JWKS fetch succeeded",
            |i| i.last_success_ms.map(|t| t / 1000),
        ),
        ("keys", "Usable keys in the issuer's keyset", |i| Some(i.keys)),
    ];
    for (name, help, f) in gauges {
        family(e, name, help, per_issuer(f).map(|(l, n)| (l, gauge(n))))?;
    }
    family(
        e,
        "issuer_health",
        "1 for the issuer's current key health state",
        issuers.iter().flat_map(|i| {
            [Health::Fresh, Health::Stale, Health::FailedClosed].map(|h| {
                (
                    vec![("issuer", i.issuer.as_str()), ("state", h.as_str())],
                    gauge(u64::from(i.health == h)),
                )
            })
        }),
    )
}

fn encode_revocations(e: &mut DescriptorEncoder, entries: u64, r: &RevocationStats) -> Result<(), std::fmt::Error> {
    single(
        e,
        "revocation_entries",
        "Entries in the revocation lists",
        gauge(entries),
    )?;
    family(
        e,
        "revocations_applied",
        "Revocations applied, by source",
        [("local", r.local), ("journal", r.journal), ("feed", r.feed)]
            .map(|(source, n)| (vec![("source", source)], counter(n))),
    )?;
    single(
        e,
        "revocations_incomplete",
        "1 while a revocation from the journal or the fleet could not be held (lists full): \
         every verification fails with revocation_list_full",
        gauge(u64::from(r.incomplete)),
    )?;
    let Some(f) = &r.fleet else { return Ok(()) };
    family(
        e,
        "revocation_feed_state",
        "1 for the fleet revocation feed's current state",
        [FeedState::Connected, FeedState::Lagging, FeedState::FailedClosed]
            .map(|s| (vec![("state", s.as_str())], gauge(u64::from(f.state == s)))),
    )?;
    let counters = [
        ("revocation_feed_events", "Fleet feed events applied", f.events),
        (
            "revocation_feed_dropped_events",
            "Fleet feed events dropped as malformed, oversized or refused",
            f.dropped_events,
        ),
        (
            "revocation_feed_reconnects",
            "Times the fleet feed subscription was re-established",
            f.reconnects,
        ),
        (
            "revocation_propagation_lag_milliseconds_sum",
            "Sum of the fleet feed events' propagation lag (from the event's timestamp to its application here); \
             divide by revocation_feed_events for the mean",
            f.lag_ms_sum,
        ),
    ];
    for (name, help, n) in counters {
        single(e, name, help, counter(n))?;
    }
    single(
        e,
        "revocation_propagation_lag_milliseconds_max",
        "Largest propagation lag of a fleet feed event",
        gauge(f.lag_ms_max),
    )?;
    single(
        e,
        "revocation_feed_contact_age_seconds",
        "Seconds since the fleet feed last heard from Redis",
        gauge(f.last_contact_age_ms / 1000),
    )?;
    if let Some(age) = f.last_event_age_ms {
        single(
            e,
            "revocation_feed_last_event_age_seconds",
            "Seconds since the last fleet feed event was applied",
            gauge(age / 1000),
        )?;
    }
    single(
        e,
        "revocation_feed_pending",
        "Local revocations not yet written to Redis",
        gauge(f.pending),
    )
}

/// A per-list metric: name, help, counter or gauge, and how to read it.
type PerList = (&'static str, &'static str, bool, fn(&StatusListStats) -> Option<u64>);

fn encode_status_lists(e: &mut DescriptorEncoder, lists: &[StatusListStats]) -> Result<(), std::fmt::Error> {
    const METRICS: [PerList; 8] = [
        ("status_list_fetches", "Status List Token fetches", true, |l| {
            Some(l.fetches)
        }),
        (
            "status_list_fetch_failures",
            "Status List Token fetches that failed",
            true,
            |l| Some(l.fetch_failures),
        ),
        (
            "status_list_not_modified",
            "Status List fetches answered 304",
            true,
            |l| Some(l.not_modified),
        ),
        (
            "status_list_rejected",
            "Tokens rejected by their status in this list",
            true,
            |l| Some(l.rejected),
        ),
        ("status_list_entries", "Statuses in the list in use", false, |l| {
            Some(l.entries)
        }),
        ("status_list_bits", "Bits per status of the list in use", false, |l| {
            Some(u64::from(l.bits))
        }),
        (
            "status_list_token_bytes",
            "Size of the Status List Token in use",
            false,
            |l| Some(l.token_bytes),
        ),
        (
            "status_list_age_seconds",
            "Seconds since the list was fetched or confirmed",
            false,
            |l| l.age_secs,
        ),
    ];
    for (name, help, is_counter, read) in METRICS {
        let samples = lists.iter().filter_map(|l| {
            let labels = vec![("issuer", l.issuer.as_str()), ("uri", l.uri.as_str())];
            read(l).map(|n| (labels, n))
        });
        if is_counter {
            family(e, name, help, samples.map(|(l, n)| (l, counter(n))))?;
        } else {
            family(e, name, help, samples.map(|(l, n)| (l, gauge(n))))?;
        }
    }
    family(
        e,
        "status_list_health",
        "Status list health (1 for the current state)",
        lists.iter().map(|l| {
            (
                vec![
                    ("issuer", l.issuer.as_str()),
                    ("uri", l.uri.as_str()),
                    ("health", l.health.as_str()),
                ],
                gauge(1),
            )
        }),
    )
}

/// Per issuer template, labelled `template` (its `issuer`, placeholder
/// included): tenants held, materialised and evicted, and tokens refused
/// before any fetch, by `reason`.
fn encode_templates(e: &mut DescriptorEncoder, templates: &[TemplateStats]) -> Result<(), std::fmt::Error> {
    let by = |f: fn(&TemplateStats) -> u64| {
        templates
            .iter()
            .map(move |t| (vec![("template", t.template.as_str())], f(t)))
    };
    family(
        e,
        "template_tenants_held",
        "Tenants of the issuer template held now",
        by(|t| t.tenants_held).map(|(l, n)| (l, gauge(n))),
    )?;
    family(
        e,
        "template_tenants_materialised",
        "Tenants materialised on their first token",
        by(|t| t.materialised).map(|(l, n)| (l, counter(n))),
    )?;
    family(
        e,
        "template_tenants_evicted",
        "Tenants evicted (idle) to stay within max_tenants",
        by(|t| t.evicted).map(|(l, n)| (l, counter(n))),
    )?;
    type Reason = (&'static str, fn(&TemplateStats) -> u64);
    const REASONS: [Reason; 4] = [
        ("budget", |t| t.refused_budget),
        ("pattern", |t| t.refused_pattern),
        ("allowlist", |t| t.refused_allowlist),
        ("unavailable", |t| t.refused_unavailable),
    ];
    family(
        e,
        "template_tenants_refused",
        "Tokens of a template refused before any fetch: new tenant past \
         new_tenant_fetches_per_minute (budget), tenant not matching tenant_pattern (pattern), \
         not in tenants (allowlist), first fetch failed recently (unavailable)",
        templates.iter().flat_map(|t| {
            REASONS.iter().map(move |(reason, f)| {
                (
                    vec![("template", t.template.as_str()), ("reason", *reason)],
                    counter(f(t)),
                )
            })
        }),
    )
}
