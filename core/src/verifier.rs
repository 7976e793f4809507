//! The [`Verifier`]: the verification path of `docs/design.md`, in order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::cache::{Cache, Currency, EntryState, Lifetime, Stamp};
use crate::clock::{Clock, Now, SystemClock};
use crate::config::{Config, IssuerConfig, IssuerKind, IssuerTemplateConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::facts::Facts;
use crate::family::{Family, Member, FIRST_MEMBER_ID};
use crate::fetch::HttpClient;
use crate::issuer::{Env, Issuer};
use crate::keys::{Key, SkippedKey};
use crate::metrics::{CacheStats, Exporter, Health, MetricsSnapshot, Scrape, VerificationStats, VerifierCounters};
use crate::refresher::{Refreshable, Refresher};
use crate::revocation::replay::{RedisReplay, ReplayGuard, ReplayStore};
use crate::revocation::{Propagation, Revocation, ANY_ISSUER};
use crate::status::StatusRef;
use crate::template::TemplateStats;
use crate::token;
use crate::trust::Trust;
use crate::verified::{Fresh, Held, Verified, VerifiedToken};

/// Per-call options.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions<'a> {
    /// Verify for this configured issuer only, instead of choosing by the
    /// token's (unverified) `iss`. Only `issuers[]` entries can be pinned,
    /// not the tenants of `issuer_templates`.
    pub issuer: Option<&'a str>,
    /// Skip the cache: check the signature now (for high-risk paths). The
    /// fresh result still refreshes the cache.
    pub fresh: bool,
}

/// Verifies JWTs for the configured issuers. Cheap to share between threads
/// (`Send + Sync`); one background thread keeps keys fresh until it is dropped.
pub struct Verifier {
    shared: Arc<Shared>,
    refresher: Mutex<Option<Refresher>>,
    /// Fork generation the refresher was started in (see `fork`).
    refresher_fork: AtomicU64,
    /// The Prometheus registry, built once.
    exporter: Exporter,
    /// The edges this service inherits trust from (`issuers` of kind
    /// `assertion`), if any.
    edges: Option<Box<Edges>>,
}

/// The edges a verifier inherits trust from (`issuers` of kind
/// `assertion`, `docs/trust-handoff.md`). Their assertions are verified by
/// a verifier of their own, holding only them, so an ordinary `verify` of
/// an assertion finds no issuer (`unknown_issuer`) and an assertion check
/// never meets an ordinary issuer's token.
pub(crate) struct Edges {
    /// Holds the edges under the assertion policy
    /// ([`IssuerConfig::assertion_policy`]): no cache (an assertion is
    /// used once), no revocation state of its own.
    pub verifier: Verifier,
    /// Edge name → its `fresh_within_secs`.
    pub fresh_within: HashMap<String, Option<u64>>,
    /// The `jti` window: fleet-wide with `revocation.redis`, else this
    /// process's.
    pub replay: Arc<dyn ReplayStore>,
    /// The edge entries as configured (a reload must give the same).
    pub config: Vec<IssuerConfig>,
}

impl Edges {
    /// Take the edges out of `config`: the ordinary issuers stay.
    fn split(config: &mut Config, clock: &Arc<dyn Clock>) -> Result<Option<Box<Edges>>> {
        let (edges, issuers): (Vec<_>, Vec<_>) = std::mem::take(&mut config.issuers)
            .into_iter()
            .partition(|i| i.kind == IssuerKind::Assertion);
        config.issuers = issuers;
        if edges.is_empty() {
            return Ok(None);
        }
        let mut own = Config::new(edges.iter().map(IssuerConfig::assertion_policy).collect());
        own.http = config.http.clone();
        own.max_token_bytes = config.max_token_bytes;
        own.background_refresh = config.background_refresh;
        own.cache.enabled = false;
        let replay: Arc<dyn ReplayStore> = match &config.revocation.redis {
            Some(redis) => Arc::new(RedisReplay::new(redis)?),
            None => Arc::new(ReplayGuard::new(config.revocation.max_entries)),
        };
        Ok(Some(Box::new(Edges {
            verifier: Verifier::with_clock(own, clock.clone())?,
            fresh_within: edges.iter().map(|e| (e.issuer.clone(), e.fresh_within_secs)).collect(),
            replay,
            config: edges,
        })))
    }

    /// A runtime change (`add_issuer`, `reload`) may not touch the edges.
    fn refuse_change(config: &mut Config, current: &[IssuerConfig]) -> Result<()> {
        let (edges, issuers): (Vec<_>, Vec<_>) = std::mem::take(&mut config.issuers)
            .into_iter()
            .partition(|i| i.kind == IssuerKind::Assertion);
        config.issuers = issuers;
        let same = edges.len() == current.len()
            && edges
                .iter()
                .zip(current)
                .all(|(a, b)| serde_json::to_value(a).ok() == serde_json::to_value(b).ok());
        if same {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::InvalidConfig,
            "issuers: issuers of kind \"assertion\" (edges) cannot be added, removed or changed at runtime: \
             build a new verifier",
        ))
    }
}

pub(crate) struct Shared {
    pub env: Env,
    /// The issuers and templates trusted now: replaced as a whole by
    /// `add_issuer`, `remove_issuer` and `reload`.
    set: ArcSwap<Set>,
    /// Held by whoever changes `set` (one change at a time).
    edit: Mutex<()>,
    cache: Option<Cache>,
    cache_max_ttl_ms: u64,
    max_token_bytes: usize,
    counters: VerifierCounters,
    background: bool,
}

/// The issuers a verifier trusts at one moment. Changes at runtime build a
/// new one and swap it in. A cached result is stamped with its issuer's
/// *slot* (kept by an issuer whose configuration does not change, reused
/// once free) and its key epoch; epochs are never shared between key
/// stores (`crate::keystore`), so a result is current only for the issuer
/// instance that verified it.
pub(crate) struct Set {
    /// In configuration order (the index).
    issuers: Vec<Arc<Issuer>>,
    /// Each issuer's slot, by index.
    slots: Vec<usize>,
    /// Each slot's index, `u32::MAX` for a free slot.
    slot_index: Vec<u32>,
    by_name: HashMap<String, usize>,
    /// Issuer-published Token Status Lists, by issuer index.
    status: crate::status::Lists,
    /// Issuer templates and their materialised members (`crate::family`),
    /// as `config.issuer_templates`.
    families: Vec<Arc<Family>>,
    /// SPIFFE trust domains, held as issuers after the configured ones
    /// (`spiffe://<trust domain>`): each one's index, by trust domain.
    spiffe: HashMap<String, usize>,
    /// The whole configuration these were built from (as given: its
    /// `spiffe` list, not the issuers the trust domains are held as).
    config: Config,
}

/// One entry of `issuers` or of `issuer_templates`, for
/// [`Verifier::add_issuer`]: one method for both, as the configuration
/// file has one list of each and a caller (or a binding passing JSON)
/// holds one entry of either; `From` both configuration types.
#[derive(Clone, Debug)]
// Built once per runtime change, never held in bulk: boxing the larger
// variant would only change the public API.
#[allow(clippy::large_enum_variant)]
pub enum IssuerEntry {
    /// An entry of `issuers`.
    Issuer(IssuerConfig),
    /// An entry of `issuer_templates`.
    Template(IssuerTemplateConfig),
}

impl From<IssuerConfig> for IssuerEntry {
    fn from(c: IssuerConfig) -> IssuerEntry {
        IssuerEntry::Issuer(c)
    }
}

impl From<IssuerTemplateConfig> for IssuerEntry {
    fn from(c: IssuerTemplateConfig) -> IssuerEntry {
        IssuerEntry::Template(c)
    }
}

impl IssuerEntry {
    /// Parse one entry from a JSON object: an entry of `issuer_templates`
    /// when it has `tenant_pattern`, else of `issuers`. Errors
    /// (`invalid_config`) name the field, as [`Config::from_json`]'s do.
    pub fn from_json(text: &str) -> Result<IssuerEntry> {
        fn parse<T: serde::de::DeserializeOwned>(value: serde_json::Value, at: &str) -> Result<T> {
            serde_path_to_error::deserialize(value).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                Error::new(ErrorKind::InvalidConfig, format!("{at}.{path}: {inner}"))
            })
        }
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("issuer entry: {e}")))?;
        if !value.is_object() {
            return Err(Error::new(ErrorKind::InvalidConfig, "issuer entry: not a JSON object"));
        }
        Ok(if value.get("tenant_pattern").is_some() {
            IssuerEntry::Template(parse(value, "issuer_templates[]")?)
        } else {
            IssuerEntry::Issuer(parse(value, "issuers[]")?)
        })
    }

    /// The entry's `issuer` string.
    pub fn issuer(&self) -> &str {
        match self {
            IssuerEntry::Issuer(c) => &c.issuer,
            IssuerEntry::Template(t) => &t.issuer,
        }
    }
}

impl Verifier {
    /// Build a verifier with the system clock. Fetches every remote issuer's
    /// keys before returning (each bounded by `http.timeout_ms`); an
    /// unreachable issuer does not fail construction, its tokens are
    /// rejected with `keys_unavailable` until a fetch succeeds.
    pub fn new(config: Config) -> Result<Verifier> {
        Verifier::with_clock(config, Arc::new(SystemClock))
    }

    /// Build a verifier from a JSON configuration.
    pub fn from_json(json: &str) -> Result<Verifier> {
        Verifier::new(Config::from_json(json)?)
    }

    /// Build a verifier reading time from `clock` (tests use a `ManualClock`).
    pub fn with_clock(mut config: Config, clock: Arc<dyn Clock>) -> Result<Verifier> {
        config.validate()?;
        let edges = Edges::split(&mut config, &clock)?;
        crate::fork::install();
        let http = HttpClient::new(&config.http)?;
        // SPIFFE trust domains are held as issuers after the configured
        // ones (`spiffe://<trust domain>`), chosen by `sub` only.
        let given = config.clone();
        let config = held(config);
        let first_spiffe = given.issuers.len();
        let domains = given.spiffe.clone();
        let issuers = config
            .issuers
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, cfg)| match i.checked_sub(first_spiffe) {
                Some(d) => Issuer::spiffe(cfg, domains[d].issuer.as_deref()),
                None => Issuer::new(cfg),
            })
            .map(|issuer| issuer.map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        let keystores = issuers.iter().map(|i| (i.name.clone(), i.keystore())).collect();
        // The journal is replayed here, before any key is fetched or any
        // token verified.
        let trust = Arc::new(Trust::new(&config, clock.clone(), keystores)?);
        let stores = config
            .issuers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                // A trust domain's lists name its `issuer`, when set.
                let iss = i.checked_sub(first_spiffe).and_then(|d| domains[d].issuer.as_deref());
                crate::status::Lists::store_naming(c, &config, iss)
            })
            .collect::<Result<Vec<_>>>()?;
        let families = config
            .issuer_templates
            .iter()
            .map(|t| Family::new(t, config.http.allow_http).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        let slots = (0..issuers.len()).collect();
        let set = Set::new(given, issuers, slots, stores, families);
        let shared = Arc::new(Shared {
            env: Env {
                clock,
                http,
                state_dir: config.state_dir.clone(),
                fetch_timeout: Duration::from_millis(config.http.timeout_ms),
                trust: trust.clone(),
            },
            set: ArcSwap::from_pointee(set),
            edit: Mutex::new(()),
            cache: config
                .cache
                .enabled
                .then(|| Cache::new(config.cache.capacity, config.cache.max_bytes, config.cache.shards)),
            cache_max_ttl_ms: config.cache.max_ttl_secs * 1000,
            max_token_bytes: config.max_token_bytes,
            counters: VerifierCounters::default(),
            background: config.background_refresh,
        });
        trust.sync_feed_now();
        trust.ensure_subscribed();
        let set = shared.set.load_full();
        for (i, issuer) in set.issuers.iter().enumerate() {
            issuer.start(&shared.env, i)?;
        }
        for (i, issuer) in set.issuers.iter().enumerate() {
            set.status.preload(i, issuer, &shared.env);
        }
        drop(set);
        let verifier = Verifier {
            refresher: Mutex::new(Refresher::spawn_if_needed(&shared)),
            refresher_fork: AtomicU64::new(crate::fork::generation()),
            exporter: Exporter::new(Arc::downgrade(&shared)),
            shared,
            edges,
        };
        Ok(verifier)
    }

    /// Verify a token, choosing the issuer by its `iss` claim.
    pub fn verify(&self, token: impl AsRef<[u8]>) -> Result<Verified> {
        self.verify_with(token, &VerifyOptions::default())
    }

    /// Verify a token with options (explicit issuer, `fresh`).
    // Inlined into every caller, as are `verify_cached`, `Shared::cached`
    // and `Cache::get`: a hit returned through memory is copied by the
    // caller with wider loads than the stores that wrote it, and each copy
    // stalls (no store-to-load forwarding). That was the whole gap between
    // the C ABI's hit and the Rust hit (1.4x, now 1.0x: benches/c/run),
    // and 30 ns of Python's.
    #[inline(always)]
    pub fn verify_with(&self, token: impl AsRef<[u8]>, opts: &VerifyOptions<'_>) -> Result<Verified> {
        let token = token.as_ref();
        self.ensure_refresher();
        let s = &*self.shared;
        let result = s.verify(token, opts, &Now::new(&*s.env.clock));
        match &result {
            Ok(v) if v.cached() => s.counters.ok_cached.inc(),
            Ok(_) => {
                s.counters.ok_fresh.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                s.counters.reject(e.kind());
                log::debug!("rejected token {}: {e}", token::fingerprint(token));
            }
        }
        result
    }

    /// The cached result for this token, if the cache holds a current one;
    /// `None` otherwise. Never parses, verifies or fetches, so it never
    /// blocks: for servers that must not block their event loop, which
    /// answer a hit here and hand only a `None` to [`verify_with`] on a
    /// thread that may block (a miss can wait up to `http.timeout_ms` for a
    /// key fetch).
    ///
    /// A hit is exactly what `verify_with` with the same options would return
    /// from its cache (same lookup, same rules: expiry, `cache.max_ttl_secs`,
    /// revocations, policy version, key epoch, failed-closed issuer, pinned
    /// issuer), and it is counted the same way, as a cached success. `None`
    /// is returned, and nothing is counted, on a miss and whenever
    /// `verify_with` would not consult the cache: `opts.fresh`, a token over
    /// `max_token_bytes`, a pinned issuer that is not configured, the cache
    /// disabled. A miss is counted (`cache.misses`) by the `verify_with`
    /// that follows, so a lookup here and then there counts one miss, not two;
    /// a caller that drops the token after a `None` leaves no trace in the
    /// metrics.
    ///
    /// [`verify_with`]: Verifier::verify_with
    // Inlined: see `verify_with`.
    #[inline(always)]
    pub fn verify_cached(&self, token: impl AsRef<[u8]>, opts: &VerifyOptions<'_>) -> Option<Verified> {
        let token = token.as_ref();
        self.ensure_refresher();
        let s = &*self.shared;
        if opts.fresh || s.check_size(token).is_err() {
            return None;
        }
        let set = s.set.load();
        let pinned = match opts.issuer {
            Some(name) => Some(set.by_name.get(name).copied()?),
            None => None,
        };
        let cache = s.cache.as_ref()?;
        let hit = s.cached(
            &set,
            Some(cache.hash(token)),
            token,
            pinned,
            &Now::new(&*s.env.clock),
            false,
        )?;
        s.counters.ok_cached.inc();
        Some(Verified::new(hit, true))
    }

    /// A child process after `fork()` has no refresher thread: start one.
    #[inline]
    fn ensure_refresher(&self) {
        if self.refresher_fork.load(Ordering::Relaxed) != crate::fork::generation() {
            self.respawn_refresher();
        }
    }

    #[cold]
    fn respawn_refresher(&self) {
        let mut slot = self.refresher.lock();
        let generation = crate::fork::generation();
        if self.refresher_fork.load(Ordering::Relaxed) == generation {
            return;
        }
        // The old handle's thread does not exist in this process. Dropping
        // the handle would notify a condition variable whose waiter is that
        // missing thread, which can spin forever in the child: forget it.
        if let Some(old) = slot.take() {
            std::mem::forget(old);
        }
        *slot = Refresher::spawn_if_needed(&self.shared);
        // The child holds the revocations it copied at the fork; catch up
        // with the fleet before this first call goes on (as a new verifier
        // does), then keep up through its own subscription.
        self.shared.env.trust.sync_feed_now();
        self.shared.env.trust.ensure_subscribed();
        self.refresher_fork.store(generation, Ordering::Relaxed);
        log::info!("refresher restarted after fork (pid {})", std::process::id());
    }

    /// Revoke every token of `issuer` with this `jti` (`issuer` exactly as
    /// configured, or `"*"` for every issuer), until `expires_at_secs` (the
    /// token's `exp`, if known) plus the issuer's leeway, or else for the
    /// longest lifetime a token may have (see `docs/revocation.md`).
    ///
    /// In force for all threads of this process when this returns, and
    /// journaled (fsynced) with `state_dir`. The result says how far it has
    /// reached: [`Propagation::Pending`] means a fleet feed is configured but
    /// Redis was unreachable, so it is **not yet fleet-wide** (it is
    /// published once Redis is back).
    pub fn revoke_jti(&self, issuer: &str, jti: &str, expires_at_secs: Option<u64>) -> Result<Propagation> {
        self.revoke(issuer, |t| t.jti_record(issuer, jti, expires_at_secs))
    }

    /// Revoke the tokens of `issuer` (or `"*"`) for subject `sub` issued
    /// before `issued_before_secs` (tokens without a valid `iat` included).
    /// Takes effect and propagates as [`revoke_jti`](Verifier::revoke_jti).
    pub fn revoke_subject(&self, issuer: &str, sub: &str, issued_before_secs: u64) -> Result<Propagation> {
        self.revoke(issuer, |t| t.subject_record(issuer, sub, issued_before_secs))
    }

    /// Emergency key removal: stop trusting `kid` of `issuer` (or of every
    /// issuer, `"*"`) now, and ignore it in later fetches, for
    /// `revocation.kid_revocation_secs` (default 30 days; rotate the key out
    /// of the issuer's JWKS within that time). Takes effect and propagates
    /// as [`revoke_jti`](Verifier::revoke_jti).
    ///
    /// For a tenant of an issuer template (its issuer string), the kid is
    /// revoked for that tenant only, also when its key set is shared with
    /// other tenants (Entra ID style): the key stays trusted for them.
    pub fn revoke_kid(&self, issuer: &str, kid: &str) -> Result<Propagation> {
        self.revoke(issuer, |t| t.kid_record(issuer, kid))
    }

    fn revoke(&self, issuer: &str, record: impl FnOnce(&Trust) -> Revocation) -> Result<Propagation> {
        let set = self.shared.set.load();
        if issuer != ANY_ISSUER && !set.by_name.contains_key(issuer) && set.names_member(issuer) {
            // A tenant of an issuer template: revocations are scoped to its
            // issuer string (the trust state accepts it).
        } else if issuer != ANY_ISSUER {
            // For the near-miss hint ("did you mean ...").
            set.index_of(issuer)?;
        }
        drop(set);
        let trust = &self.shared.env.trust;
        trust.revoke(record(trust))
    }

    /// Every revocation this process holds and still needs (local, from the
    /// journal and from the fleet feed).
    pub fn revocations(&self) -> Vec<Revocation> {
        self.shared.env.trust.live_revocations(self.now_ms())
    }

    /// The fleet feed's state and counters; `None` without `revocation.redis`.
    pub fn revocation_feed(&self) -> Option<crate::revocation::feed::FeedStats> {
        self.shared.env.trust.feed_stats()
    }

    /// Invalidate every cached result (for example after a policy change).
    /// Returns the new policy version. This process only: the policy is
    /// each process's configuration.
    pub fn bump_policy_version(&self) -> u64 {
        self.shared.env.trust.bump_policy_version()
    }

    /// Fetch `issuer`'s keys now. Returns once a fetch that started after
    /// this call has ended (its error if it failed), so a key the issuer has
    /// just removed is no longer trusted when this returns `Ok`. A fetch
    /// already in flight is waited for first: this can take up to twice
    /// `http.timeout_ms`.
    pub fn refresh_issuer(&self, issuer: &str) -> Result<()> {
        self.issuer(issuer)?
            .refresh_manual(&self.shared.env)
            .map_err(|e| Error::new(ErrorKind::KeysUnavailable, e))
    }

    /// Run any scheduled refresh that is due now, on this thread. The
    /// background thread does this by itself; call it when
    /// `background_refresh` is false (for example in tests with a manual clock).
    /// With `state_dir`, it first applies the revocations other processes
    /// appended to the journal.
    pub fn run_due_refreshes(&self) {
        self.shared.run_due();
    }

    /// The configured issuer names, in configuration order.
    pub fn issuers(&self) -> Vec<String> {
        self.shared
            .set
            .load()
            .issuers
            .iter()
            .map(|i| i.name.to_string())
            .collect()
    }

    /// Health of one issuer's keys: a configured issuer, or a tenant of an
    /// issuer template while it is materialised (by its issuer string).
    pub fn issuer_health(&self, issuer: &str) -> Result<Health> {
        let set = self.shared.set.load();
        if !set.by_name.contains_key(issuer) {
            if let Some(m) = set.families.iter().find_map(|f| f.held(issuer)) {
                return Ok(m.keys.health(self.now_ms()));
            }
        }
        Ok(self.issuer(issuer)?.health(self.now_ms()))
    }

    /// Each issuer template's counters (tenants held, materialised,
    /// evicted, refused by budget, pattern, allowlist or a recent failure),
    /// in configuration order.
    pub fn template_stats(&self) -> Vec<TemplateStats> {
        self.shared.set.load().families.iter().map(|f| f.stats()).collect()
    }

    /// Health of the Token Status List at `uri` of `issuer` (a configured
    /// issuer, a trust domain, or a tenant of an issuer template while it
    /// is held); `None` if no token referenced it yet (and it is not
    /// preloaded).
    pub fn status_list_health(&self, issuer: &str, uri: &str) -> Result<Option<Health>> {
        let set = self.shared.set.load();
        if !set.by_name.contains_key(issuer) {
            if let Some(m) = set.families.iter().find_map(|f| f.held(issuer)) {
                return Ok(m.status.get().and_then(|s| s.health(uri, self.now_ms())));
            }
        }
        let index = set.index_of(issuer)?;
        Ok(set.status.health(index, uri, self.now_ms()))
    }

    /// The usable keys of an issuer, and the keys its last fetch skipped.
    pub fn issuer_keys(&self, issuer: &str) -> Result<(Vec<Arc<Key>>, Vec<SkippedKey>)> {
        Ok(self.issuer(issuer)?.describe_keys())
    }

    /// A snapshot of every metric.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.snapshot()
    }

    /// Metrics in the Prometheus text format.
    pub fn prometheus(&self) -> String {
        self.exporter.encode()
    }

    fn issuer(&self, name: &str) -> Result<Arc<Issuer>> {
        let set = self.shared.set.load();
        Ok(set.issuers[set.index_of(name)?].clone())
    }

    fn now_ms(&self) -> u64 {
        self.shared.env.clock.now_ms()
    }

    /// Carry the trust state of `old` into this verifier: for a server that
    /// reloads its configuration by building a new verifier and swapping
    /// it in, so the reload loses nothing `old` knew. Call it on the new
    /// verifier before it serves a request, and make no `revoke_*` call on
    /// `old` between this call and the swap (or call it again after them).
    ///
    /// Carried, through the one door for trust changes:
    /// * every live revocation `old` holds, whatever its source (local
    ///   calls, the journal, the fleet feed): a revocation learned from the
    ///   feed while `state_dir` is unset lives only in memory, and a new
    ///   verifier built while Redis is unreachable could not learn it again;
    /// * kid revocations remove the key from this verifier's key sets too;
    /// * the policy version, raised to at least `old`'s;
    /// * the fleet feed's staleness clock: unless this verifier has reached
    ///   Redis itself, it fails closed (`revocations_stale`) when `old`
    ///   would have, so reloads cannot extend `max_stale_secs`; and the
    ///   records `old` could not publish yet are reported as pending here
    ///   (this verifier re-seeds the fleet with them once Redis answers).
    ///
    /// Not carried: cached verification results (this verifier starts with
    /// an empty cache) and metrics. Nothing is journaled or published:
    /// `old` did that when it learned each record. Revocations naming an
    /// issuer this configuration no longer has are kept all the same.
    ///
    /// Returns how many revocations changed anything here (the others this
    /// verifier already held, from the journal or the feed). Fails with
    /// `revocation_list_full` when this verifier's `revocation.max_entries`
    /// cannot hold them all: it then holds only some, and must not replace
    /// `old`.
    pub fn inherit_trust_from(&self, old: &Verifier) -> Result<usize> {
        let carried = self.shared.env.trust.inherit_from(&old.shared.env.trust)?;
        if carried > 0 {
            log::info!("carried {carried} revocations from the previous verifier");
        }
        Ok(carried)
    }

    /// Add an issuer (an entry of `issuers`) or an issuer template (an
    /// entry of `issuer_templates`), given as the same object the
    /// configuration holds. Validated as at load, with the whole
    /// configuration (the same errors, naming the field: the entry is the
    /// last of its list); a duplicate `issuer` is refused. A remote
    /// issuer's keys are fetched before this returns (bounded by
    /// `http.timeout_ms`; a failed fetch does not fail the call, as at
    /// construction). Revocations held for this issuer string (an issuer
    /// removed earlier and added again) are honoured. The other issuers
    /// keep their keys, cached results and revocations.
    pub fn add_issuer(&self, entry: impl Into<IssuerEntry>) -> Result<()> {
        let entry = entry.into();
        self.change(|config| {
            match entry {
                IssuerEntry::Issuer(c) => config.issuers.push(c),
                IssuerEntry::Template(t) => config.issuer_templates.push(t),
            }
            Edges::refuse_change(config, self.edges.as_ref().map_or(&[], |e| &e.config))
        })
    }

    /// Remove the issuer or issuer template whose `issuer` string is
    /// `issuer` (as configured; for a template, its template string, which
    /// removes every tenant). When this returns, no verification accepts a
    /// token of it any more, a cached result included: it waits for the
    /// verifications that started before it (at most `http.timeout_ms`
    /// for one waiting on a fetch). Its revocations stay held until they
    /// expire (journaled ones in the journal too), so adding the issuer
    /// again honours them. Removing the last issuer is refused, as a
    /// configuration without one is (`invalid_config`); an issuer not
    /// configured is `unknown_issuer`. The other issuers keep their keys,
    /// cached results and revocations.
    pub fn remove_issuer(&self, issuer: &str) -> Result<()> {
        self.change(|config| {
            let before = config.issuers.len() + config.issuer_templates.len();
            config.issuers.retain(|c| c.issuer != issuer);
            config.issuer_templates.retain(|t| t.issuer != issuer);
            if config.issuers.len() + config.issuer_templates.len() == before {
                let mut message = format!("issuer {:?} is not configured", token::truncate(issuer));
                if let Some(near) = config.issuers.iter().find(|c| c.issuer.eq_ignore_ascii_case(issuer)) {
                    message.push_str(&format!(
                        "; did you mean {:?}? (issuers are matched exactly)",
                        near.issuer
                    ));
                }
                return Err(Error::new(ErrorKind::UnknownIssuer, message));
            }
            Ok(())
        })
    }

    /// Replace the issuers and issuer templates with `config`'s: issuers
    /// and templates whose configuration did not change keep their keys,
    /// cached results (a template: its tenants) and revocations; changed
    /// ones are rebuilt (keys fetched again, cached results dropped);
    /// removed ones are dropped as by [`remove_issuer`]. Validated as at
    /// load. Every other field must equal the current configuration's
    /// (`invalid_config` naming the first that differs): a change of the
    /// cache, HTTP, revocation or state settings needs a new verifier
    /// (see [`inherit_trust_from`]). On an error nothing changes.
    ///
    /// [`remove_issuer`]: Verifier::remove_issuer
    /// [`inherit_trust_from`]: Verifier::inherit_trust_from
    pub fn reload(&self, config: Config) -> Result<()> {
        self.change(|current| {
            let fixed = |c: &Config| {
                let mut c = c.clone();
                c.issuers.clear();
                c.issuer_templates.clear();
                serde_json::to_value(c).ok()
            };
            if let (Some(serde_json::Value::Object(was)), Some(serde_json::Value::Object(now))) =
                (fixed(current), fixed(&config))
            {
                if let Some(field) = was.keys().chain(now.keys()).find(|k| was.get(*k) != now.get(*k)) {
                    return Err(Error::new(
                        ErrorKind::InvalidConfig,
                        format!(
                            "{field}: cannot change on reload (only issuers and issuer_templates can): \
                             build a new verifier"
                        ),
                    ));
                }
            }
            let mut config = config;
            Edges::refuse_change(&mut config, self.edges.as_ref().map_or(&[], |e| &e.config))?;
            *current = config;
            Ok(())
        })
    }

    /// The edges this verifier inherits trust from, if any
    /// (`crate::assertion`'s `verify_assertion`).
    pub(crate) fn edges(&self) -> Option<&Edges> {
        self.edges.as_deref()
    }

    /// This verifier's clock.
    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.env.clock
    }

    /// Apply `edit` to the current configuration and put the result in
    /// service: validated whole, unchanged issuers and templates carried,
    /// new ones built and started, then swapped in; returns once no
    /// verification uses the old set.
    fn change(&self, edit: impl FnOnce(&mut Config) -> Result<()>) -> Result<()> {
        let s = &*self.shared;
        let _one_at_a_time = s.edit.lock();
        let mut config = s.set.load().config.clone();
        edit(&mut config)?;
        config.validate()?;
        let next = Arc::new(s.set.load().rebuilt(config, &s.env)?);
        let keystores = next.issuers.iter().map(|i| (i.name.clone(), i.keystore())).collect();
        s.env.trust.set_roster(&held(next.config.clone()), keystores);
        let old = s.set.swap(next);
        // Every `load` of the old set still in progress holds a reference
        // (arc-swap pays a reader's debt on `swap`): wait for them, so that
        // nothing decided against the old set is answered after this.
        let mut spins = 0u32;
        while Arc::strong_count(&old) > 1 {
            spins += 1;
            if spins < 1000 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        drop(old);
        let mut refresher = self.refresher.lock();
        if refresher.is_none() {
            *refresher = Refresher::spawn_if_needed(&self.shared);
        }
        Ok(())
    }

    /// What [`verify_with`] would answer, when that is decided without a
    /// signature check and without a network wait; `None` otherwise. For
    /// callers that must not block a thread the answer is not worth
    /// blocking for: Python keeps the GIL for what this answers and
    /// releases it only for the `verify_with` that follows a `None`; an
    /// asyncio or nginx event loop answers these inline and hands only a
    /// `None` to a thread that may block (the nginx module, issue 25, is to
    /// use it the same way).
    ///
    /// Answered here, exactly as `verify_with` with the same options would
    /// (same steps, same error kind, counted in the metrics the same way):
    /// a cache hit; a token too large, malformed, with an `alg` the issuer
    /// does not allow, for an unknown issuer (pinned or by `iss`); a key
    /// failed closed (`keys_stale`), a revoked `kid`, a `kid` mismatching
    /// its key's algorithm, an unknown `kid` of an issuer that never
    /// fetches, a `kid` remembered as unknown, and an unknown `kid` while
    /// the unknown-kid cooldown refuses a fetch and none is in flight.
    ///
    /// `None`, with nothing counted, when the next step would check a
    /// signature (a key was found: every success that is not a hit, every
    /// bad signature, expiry, audience, `jti` and subject revocation
    /// answer comes after it), when it may fetch or wait for a fetch in
    /// flight (an unknown `kid` outside the cooldown, keys never loaded),
    /// on the first call in a child after `fork()` (which restarts the
    /// refresher and catches up with the fleet's revocations), and for a
    /// token of an issuer template's tenant that is not a cache hit
    /// (materialising a tenant may fetch). It never
    /// fetches and takes no lock that is held across a fetch.
    ///
    /// [`verify_with`]: Verifier::verify_with
    pub fn verify_without_waiting(
        &self,
        token: impl AsRef<[u8]>,
        opts: &VerifyOptions<'_>,
    ) -> Option<Result<Verified>> {
        if self.refresher_fork.load(Ordering::Relaxed) != crate::fork::generation() {
            return None;
        }
        let token = token.as_ref();
        let s = &*self.shared;
        let now = Now::new(&*s.env.clock);
        let mut missed = false;
        // The steps of `Shared::verify` up to the key lookup, each the same
        // call; `Ok(None)`: the next step checks a signature or may fetch.
        let set = s.set.load();
        let mut decide = || -> Result<Option<Held>> {
            s.check_size(token)?;
            let pinned = opts.issuer.map(|name| set.index_of(name)).transpose()?;
            if !opts.fresh {
                let hash = s.cache.as_ref().map(|c| c.hash(token));
                if let Some(hit) = s.cached(&set, hash, token, pinned, &now, false) {
                    return Ok(Some(hit));
                }
                missed = hash.is_some();
            }
            let now = now.exact();
            let parsed = token::parse(token, s.max_token_bytes)?;
            if pinned.is_none() && set.family_iss(&parsed).is_some() {
                // A tenant of an issuer template: materialising may fetch.
                return Ok(None);
            }
            let index = match set.spiffe_for(&parsed, pinned)? {
                Some(domain) => domain,
                None => set.issuer_for(&parsed, pinned)?,
            };
            let issuer = &set.issuers[index];
            let alg = issuer.check_algorithm(parsed.header.alg)?;
            issuer.key_without_waiting(parsed.header.kid.as_deref(), alg, now)?;
            Ok(None)
        };
        match decide() {
            Ok(Some(hit)) => {
                s.counters.ok_cached.inc();
                Some(Ok(Verified::new(hit, true)))
            }
            Ok(None) => None,
            Err(e) => {
                if missed {
                    s.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
                }
                s.counters.reject(e.kind());
                log::debug!("rejected token {}: {e}", token::fingerprint(token));
                Some(Err(e))
            }
        }
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("issuers", &self.issuers()).finish()
    }
}

/// The verifier's view of whether a cached result's stamp is current, for
/// one lookup.
struct Check<'a> {
    s: &'a Shared,
    set: &'a Set,
    pinned: Option<usize>,
}

impl Currency for Check<'_> {
    #[inline]
    fn is_current(&self, stamp: &Stamp, now_ms: u64) -> bool {
        if self.pinned.is_some_and(|p| self.set.slots[p] != stamp.issuer) {
            return false;
        }
        let trust = &self.s.env.trust;
        let keys = if stamp.issuer < FIRST_MEMBER_ID {
            // An issuer removed (or rebuilt) at runtime: no issuer at its
            // index, or one whose epochs are not the stamp's.
            self.set
                .at_slot(stamp.issuer)
                .is_some_and(|i| self.set.issuers[i].keys_current(stamp.key_epoch, now_ms))
        } else {
            // An evicted member's results are no longer current, nor are
            // those of a template removed at runtime.
            self.set.member_hit(stamp.issuer, stamp.key_epoch, now_ms) == Some(true)
        };
        keys && now_ms < trust.feed_fail_closed_at_ms() && trust.policy_version() == stamp.policy_version
    }

    #[inline]
    fn revocation_generation(&self) -> u64 {
        self.s.env.trust.revocations.generation()
    }

    fn revoked(&self, stamp: &Stamp, facts: &Facts, kid: Option<&str>) -> bool {
        if stamp.issuer >= FIRST_MEMBER_ID {
            // A member's kid revocations are its own (its key set may be
            // shared): read from the lists, not from the key store.
            let lists = &self.s.env.trust.revocations;
            let now = self.s.env.clock.now_ms();
            let revoked = |m: &Member| {
                lists.is_revoked(&m.name, facts) || kid.is_some_and(|k| lists.is_kid_revoked(&m.name, k, now))
            };
            return self.set.with_member(stamp.issuer, revoked).unwrap_or(true);
        }
        let Some(index) = self.set.at_slot(stamp.issuer) else {
            return true;
        };
        self.s
            .env
            .trust
            .revocations
            .is_revoked(&self.set.issuers[index].name, facts)
    }

    #[inline]
    fn status_ok(&self, stamp: &Stamp, status: StatusRef, now_ms: u64) -> bool {
        if stamp.issuer >= FIRST_MEMBER_ID {
            // A member's own lists (an evicted member's result is refused).
            let ok = |m: &Member| m.status.get().is_some_and(|s| s.status_ok(status, now_ms));
            return self.set.with_member(stamp.issuer, ok) == Some(true);
        }
        self.set
            .at_slot(stamp.issuer)
            .is_some_and(|i| self.set.status.status_ok(i, status, now_ms))
    }
}

impl Scrape for Shared {
    fn snapshot(&self) -> MetricsSnapshot {
        let now = self.env.clock.now_ms();
        let set = self.set.load();
        let c = &self.counters;
        let rejected = self
            .rejections()
            .into_iter()
            .map(|(k, n)| (k.as_str().to_string(), n))
            .collect();
        let cache = self.cache.as_ref();
        MetricsSnapshot {
            verifications: VerificationStats {
                ok_fresh: c.ok_fresh.load(Ordering::Relaxed),
                ok_cached: c.ok_cached.get(),
                rejected,
            },
            cache: CacheStats {
                // Every cache hit is a cached success, counted once.
                hits: c.ok_cached.get(),
                misses: c.cache_misses.load(Ordering::Relaxed),
                inserts: c.cache_inserts.load(Ordering::Relaxed),
                evictions: c.cache_evictions.load(Ordering::Relaxed),
                entries: cache.map_or(0, |c| c.len()) as u64,
                capacity: cache.map_or(0, |c| c.capacity()) as u64,
                bytes: cache.map_or(0, |c| c.bytes()) as u64,
                max_bytes: cache.map_or(0, |c| c.max_bytes()) as u64,
            },
            issuers: set.issuers.iter().map(|i| i.stats(now)).collect(),
            revocation_entries: self.env.trust.revocations.len() as u64,
            policy_version: self.env.trust.policy_version(),
            revocations: crate::metrics::RevocationStats {
                local: self.env.trust.applied.local.load(Ordering::Relaxed),
                journal: self.env.trust.applied.journal.load(Ordering::Relaxed),
                feed: self.env.trust.applied.feed.load(Ordering::Relaxed),
                fleet: self.env.trust.feed_stats(),
                incomplete: self.env.trust.revocations_incomplete(now),
            },
            status_lists: set.status.stats(&set.issuers, now),
            templates: set.families.iter().map(|f| f.stats()).collect(),
        }
    }

    fn rejections(&self) -> Vec<(ErrorKind, u64)> {
        ErrorKind::ALL
            .iter()
            .enumerate()
            .map(|(i, &k)| (k, self.counters.rejected[i.min(63)].load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

impl Shared {
    /// The verification path of `docs/design.md`, step by step: size, pin,
    /// cache, parse, issuer, algorithm, stamp, key, signature, claims,
    /// revocation, status, insert. Each step is one call with one error.
    fn verify(&self, token: &[u8], opts: &VerifyOptions<'_>, now: &Now<'_>) -> Result<Verified> {
        self.check_size(token)?;
        let set = self.set.load();
        let set: &Set = &set;
        let pinned = opts.issuer.map(|name| set.index_of(name)).transpose()?;
        let hash = self.cache.as_ref().map(|c| c.hash(token));
        if !opts.fresh {
            if let Some(hit) = self.cached(set, hash, token, pinned, now, true) {
                return Ok(Verified::new(hit, true));
            }
        }
        // Past the cache, every decision is at the exact time.
        let now = now.exact();
        let parsed = token::parse(token, self.max_token_bytes)?;
        if pinned.is_none() {
            if let Some(family) = set.family_iss(&parsed) {
                let iss = parsed.claims.get("iss").and_then(|v| v.as_str()).unwrap_or_default();
                if let Some(member) = set.families[family].member(iss, now) {
                    let family = &set.families[family];
                    return self.verify_member(family, &*member?, &set.config.http, token, hash, parsed, now);
                }
            }
        }
        let index = match set.spiffe_for(&parsed, pinned)? {
            Some(domain) => domain,
            None => set.issuer_for(&parsed, pinned)?,
        };
        let issuer = &set.issuers[index];
        let alg = issuer.check_algorithm(parsed.header.alg)?;
        let stamp = self.stamp(set, index);
        let kid = parsed.header.kid.as_deref();
        let (key, key_usable_until_ms) = issuer.resolve_key(&self.env, kid, alg, now)?;
        key.verify(&parsed, alg)?;
        let exp_ms = issuer.policy.check(&parsed.claims, parsed.header.typ.as_deref(), now)?;
        let facts = Facts::of(&parsed.claims);
        self.check_not_revoked(&issuer.name, &facts, now)?;
        let status = set.status.check(index, issuer, &self.env, &parsed.claims, now)?;
        let life = Lifetime {
            // The same instant the claim check starts rejecting.
            invalid_from_ms: issuer.policy.invalid_from_ms(exp_ms),
            max_ttl_until_ms: now.saturating_add(self.cache_max_ttl_ms),
            key_usable_until_ms,
        };
        let fresh = Fresh {
            token,
            issuer: issuer.name.clone(),
            // The key's `kid` (shared) when it is the token's, as it is
            // whenever the token names one.
            kid: match (&key.kid, parsed.header.kid) {
                (Some(shared), Some(named)) if **shared == *named => Some(shared.clone()),
                (_, named) => named.map(Arc::from),
            },
            alg,
            verified_at_ms: now,
            key_first_seen_ms: (key.kty != "oct").then_some(key.first_seen_ms),
            // The API reports `exp` in whole seconds: the millisecond `exp`
            // the checks used, rounded down.
            expires_at: exp_ms / 1000,
        };
        // The cache keeps a compact result (claims decoded again when a
        // hit asks); the caller gets one with the claims already decoded.
        let compact = VerifiedToken::new(fresh, facts, EntryState::new(stamp, &life, status));
        let verified = Arc::new(compact.with_claims(parsed.claims));
        self.insert(hash, compact, verified.claims(), now);
        Ok(Verified::new(Held::Owned(verified), false))
    }

    /// The verification path for a tenant of an issuer template, from the
    /// algorithm step on: the same steps, with the member's keys, claim
    /// policy, kid revocations and status lists, and the `tenant_claim`
    /// check after the claims.
    #[allow(clippy::too_many_arguments)]
    fn verify_member(
        &self,
        family: &Family,
        member: &Member,
        http: &crate::config::HttpConfig,
        token: &[u8],
        hash: Option<u64>,
        parsed: token::ParsedToken<'_>,
        now: u64,
    ) -> Result<Verified> {
        let issuer = &*member.keys;
        let alg = issuer.check_algorithm(parsed.header.alg)?;
        let trust = &self.env.trust;
        let stamp = Stamp {
            issuer: member.id,
            key_epoch: issuer.epoch(),
            policy_version: trust.policy_version(),
            revocation_generation: trust.revocations.generation(),
        };
        let kid = parsed.header.kid.as_deref();
        // The member's revoked kids, before any fetch the kid could cause.
        self.check_member_kid(member, kid, now)?;
        let (key, key_usable_until_ms) = issuer.resolve_key(&self.env, kid, alg, now).inspect_err(|e| {
            if e.kind() == ErrorKind::KeysUnavailable {
                family.first_fetch_failed(member, now);
            }
        })?;
        // And the key found (a token without `kid` may still find a revoked
        // key, the only one of its algorithm).
        self.check_member_kid(member, key.kid.as_deref(), now)?;
        key.verify(&parsed, alg)?;
        let exp_ms = member.policy.check(&parsed.claims, parsed.header.typ.as_deref(), now)?;
        family.check_tenant_claim(member, &parsed.claims)?;
        let facts = Facts::of(&parsed.claims);
        self.check_not_revoked(&member.name, &facts, now)?;
        let status = self.member_status(family, member, http, &parsed.claims, now)?;
        let life = Lifetime {
            invalid_from_ms: member.policy.invalid_from_ms(exp_ms),
            max_ttl_until_ms: now.saturating_add(self.cache_max_ttl_ms),
            key_usable_until_ms,
        };
        let fresh = Fresh {
            token,
            issuer: member.name.clone(),
            // The key's `kid` also when the token named none, so that a
            // cache hit sees a revocation of that key (checked by kid).
            kid: match (&key.kid, parsed.header.kid) {
                (Some(shared), Some(named)) if **shared == *named => Some(shared.clone()),
                (Some(shared), None) => Some(shared.clone()),
                (_, named) => named.map(Arc::from),
            },
            alg,
            verified_at_ms: now,
            key_first_seen_ms: (key.kty != "oct").then_some(key.first_seen_ms),
            expires_at: exp_ms / 1000,
        };
        let compact = VerifiedToken::new(fresh, facts, EntryState::new(stamp, &life, status));
        let verified = Arc::new(compact.with_claims(parsed.claims));
        self.insert(hash, compact, verified.claims(), now);
        Ok(Verified::new(Held::Owned(verified), false))
    }

    /// The status step for a tenant: its token's `status.status_list`
    /// checked against the tenant's own lists (the template's
    /// `status_list`, `{tenant}` put in), which are made on first use and
    /// never serve another tenant. `Ok(Some(r))`: keep `r` with the cached
    /// result.
    fn member_status(
        &self,
        family: &Family,
        member: &Member,
        http: &crate::config::HttpConfig,
        claims: &serde_json::Map<String, serde_json::Value>,
        now: u64,
    ) -> Result<Option<StatusRef>> {
        let template = family.config();
        let Some((uri, idx)) = crate::status::reference(claims)? else {
            if template.status_list.require_status {
                return Err(Error::new(
                    ErrorKind::StatusMissing,
                    format!("issuer {} requires a status claim", member.name),
                ));
            }
            return Ok(None);
        };
        let store = match member.status.get() {
            Some(store) => store,
            None => {
                // Refused before anything is made for the tenant: a URI
                // outside its allowlist (none by default).
                let cfg = template.status_list_for(&member.tenant);
                if !crate::status::allowed(&cfg.allowed_uris, uri) {
                    return Err(Error::new(
                        ErrorKind::StatusUriNotAllowed,
                        format!(
                            "status list {:?} is not under the status_list.allowed_uris of template {} \
                             for tenant {}",
                            crate::token::truncate(uri),
                            family.template.name(),
                            member.tenant
                        ),
                    ));
                }
                let client = match family.status_client.get() {
                    Some(c) => Some(c.clone()),
                    None => crate::status::Store::client_for(&cfg, http)?
                        .map(|c| family.status_client.get_or_init(|| c).clone()),
                };
                let store = crate::status::Store::with_client(&cfg, &template.refresh, client).with_iss(&member.name);
                // A concurrent first use may have set it: use the one set.
                let _ = member.status.set(Arc::new(store));
                member.status.get().expect("set above")
            }
        };
        store.check(&member.keys, &self.env, uri, idx, now).map(Some)
    }

    /// A tenant's kid revocations (`revoke_kid` naming its issuer, or
    /// `"*"`): held in the revocation lists rather than in its key store,
    /// which other tenants may share.
    fn check_member_kid(&self, member: &Member, kid: Option<&str>, now: u64) -> Result<()> {
        match kid {
            Some(kid) if self.env.trust.revocations.is_kid_revoked(&member.name, kid, now) => Err(Error::new(
                ErrorKind::KeyRevoked,
                format!("kid {:?} was revoked for {}", crate::token::truncate(kid), member.name),
            )),
            _ => Ok(()),
        }
    }

    fn check_size(&self, token: &[u8]) -> Result<()> {
        if token.len() > self.max_token_bytes {
            return Err(Error::new(
                ErrorKind::TokenTooLarge,
                format!("token is {} bytes, limit {}", token.len(), self.max_token_bytes),
            ));
        }
        Ok(())
    }

    /// A cache hit, if any. The cache is consulted before parsing: a hit is
    /// only possible for a byte-identical token that already passed every
    /// later step, and those steps depend only on the bytes and the
    /// configuration (whose changes bump the policy version). A miss is
    /// counted when `count_miss` (by `verify`, not by `verify_cached`, whose
    /// miss the following `verify` counts).
    // Inlined: see `Verifier::verify_with`.
    #[inline(always)]
    fn cached(
        &self,
        set: &Set,
        hash: Option<u64>,
        token: &[u8],
        pinned: Option<usize>,
        now: &Now<'_>,
        count_miss: bool,
    ) -> Option<Held> {
        let (cache, hash) = (self.cache.as_ref()?, hash?);
        let hit = cache.get(hash, token, now, &Check { s: self, set, pinned });
        if hit.is_none() && count_miss {
            self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// What a result verified from now on is stamped with. Read *before*
    /// the key lookup, so a concurrent key removal, revocation or policy
    /// bump makes the result stale rather than letting it slip into the
    /// cache.
    fn stamp(&self, set: &Set, issuer: usize) -> Stamp {
        let trust = &self.env.trust;
        Stamp {
            issuer: set.slots[issuer],
            key_epoch: set.issuers[issuer].epoch(),
            policy_version: trust.policy_version(),
            revocation_generation: trust.revocations.generation(),
        }
    }

    /// The revocation step: the token's own revocations, then whether this
    /// process can still vouch for the fleet's (the feed not stale).
    fn check_not_revoked(&self, issuer: &str, facts: &Facts, now: u64) -> Result<()> {
        let trust = &self.env.trust;
        if trust.revocations.is_revoked(issuer, facts) {
            return Err(Error::new(ErrorKind::Revoked, "token has been revoked"));
        }
        if trust.revocations_incomplete(now) {
            return Err(Error::new(
                ErrorKind::RevocationListFull,
                "a revocation from the journal or the fleet could not be held (revocation.max_entries): \
                 failing closed until it is",
            ));
        }
        if now >= trust.feed_fail_closed_at_ms() {
            return Err(Error::new(
                ErrorKind::RevocationsStale,
                "the fleet revocation feed has been unreachable for longer than \
                 revocation.redis.max_stale_secs: failing closed",
            ));
        }
        Ok(())
    }

    fn insert(
        &self,
        hash: Option<u64>,
        compact: VerifiedToken,
        claims: &serde_json::Map<String, serde_json::Value>,
        now: u64,
    ) {
        let (Some(cache), Some(hash)) = (&self.cache, hash) else {
            return;
        };
        if let Some(evicted) = cache.insert(hash, compact, claims, now) {
            self.counters.cache_inserts.fetch_add(1, Ordering::Relaxed);
            if evicted > 0 {
                self.counters.cache_evictions.fetch_add(evicted, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn has_refreshable_issuers(&self) -> bool {
        let set = self.set.load();
        self.background
            && (self.env.trust.has_journal()
                || set.issuers.iter().any(|i| {
                    i.cfg.jwks_uri.is_some()
                        || i.cfg.discovery
                        || i.cfg.jwks_file.is_some()
                        || !i.cfg.status_list.allowed_uris.is_empty()
                })
                || !set.families.is_empty())
    }

    /// Run every scheduled refresh that is due, keys then status lists,
    /// after applying what other processes appended to the revocation
    /// journal (the refresher calls this at least once a second).
    /// Returns when the next is due (ms).
    pub(crate) fn run_due(&self) -> u64 {
        self.env.trust.apply_journal_appends();
        let set = self.set.load();
        let keys = set.issuers.iter().map(|i| i.run_due(&self.env)).min();
        let lists = set
            .issuers
            .iter()
            .enumerate()
            .map(|(index, i)| set.status.run_due(index, i, &self.env))
            .min();
        let members = set.families.iter().map(|f| f.run_due(&self.env)).min();
        keys.into_iter().chain(lists).chain(members).min().unwrap_or(u64::MAX)
    }
}

/// `config` as the verifier holds it: each SPIFFE trust domain as one more
/// issuer (`spiffe://<trust domain>`) after the configured ones, the
/// `spiffe` list emptied. The trust door knows them by those names.
fn held(mut config: Config) -> Config {
    let domains = std::mem::take(&mut config.spiffe);
    config
        .issuers
        .extend(domains.iter().map(crate::config::SpiffeConfig::issuer_config));
    config
}

impl Set {
    fn new(
        config: Config,
        issuers: Vec<Arc<Issuer>>,
        slots: Vec<usize>,
        stores: Vec<Arc<crate::status::Store>>,
        families: Vec<Arc<Family>>,
    ) -> Set {
        let by_name = issuers
            .iter()
            .enumerate()
            .map(|(i, iss)| (iss.name.to_string(), i))
            .collect();
        let mut slot_index = vec![u32::MAX; slots.iter().max().map_or(0, |m| m + 1)];
        for (i, &slot) in slots.iter().enumerate() {
            slot_index[slot] = u32::try_from(i).expect("fewer than 2^32 issuers");
        }
        let spiffe = issuers
            .iter()
            .enumerate()
            .filter(|(_, iss)| iss.is_spiffe())
            .filter_map(|(i, iss)| Some((iss.name.strip_prefix("spiffe://")?.to_string(), i)))
            .collect();
        Set {
            issuers,
            slots,
            slot_index,
            by_name,
            status: crate::status::Lists::from_stores(stores),
            families,
            spiffe,
            config,
        }
    }

    /// The set for `config` (validated), carrying this one's issuers and
    /// templates whose configuration did not change. Unchanged issuers keep
    /// their index where they can (their cached results are stamped with
    /// it): new and changed ones take the places of removed ones first.
    fn rebuilt(&self, config: Config, env: &Env) -> Result<Set> {
        fn same<T: serde::Serialize>(a: &T, b: &T) -> bool {
            matches!((serde_json::to_value(a), serde_json::to_value(b)), (Ok(x), Ok(y)) if x == y)
        }
        let mut issuers = Vec::with_capacity(config.issuers.len());
        let mut stores = Vec::with_capacity(config.issuers.len());
        let mut slots: Vec<Option<usize>> = Vec::with_capacity(config.issuers.len());
        let mut fresh = Vec::new();
        for (at, c) in config.issuers.iter().enumerate() {
            match self.issuers.iter().position(|old| same(&old.cfg, c)) {
                Some(old) => {
                    issuers.push(self.issuers[old].clone());
                    stores.push(self.status.store(old));
                    slots.push(Some(self.slots[old]));
                }
                None => {
                    let issuer = Arc::new(Issuer::new(c.clone())?);
                    issuer.start(env, at)?;
                    // Keys are trust state: a changed issuer whose keys
                    // could not be fetched does not replace one that holds
                    // usable keys (reload again once it answers).
                    let now = env.clock.now_ms();
                    let held = self.issuers.iter().find(|old| old.name == issuer.name);
                    if issuer.health(now) == Health::FailedClosed
                        && held.is_some_and(|old| old.health(now) != Health::FailedClosed)
                    {
                        return Err(Error::new(
                            ErrorKind::KeysUnavailable,
                            format!(
                                "issuers[{at}]: no keys could be fetched for the changed issuer {:?}, whose \
                                 last good keys are held: nothing changed; reload again once it answers",
                                c.issuer
                            ),
                        ));
                    }
                    fresh.push(at);
                    issuers.push(issuer);
                    stores.push(crate::status::Lists::store_for(c, &config)?);
                    slots.push(None);
                }
            }
        }
        // SPIFFE trust domains come after the configured issuers, carried
        // as they are (`reload` refuses a change of `spiffe`).
        for (old, issuer) in self.issuers.iter().enumerate().filter(|(_, i)| i.is_spiffe()) {
            issuers.push(issuer.clone());
            stores.push(self.status.store(old));
            slots.push(Some(self.slots[old]));
        }
        // New and rebuilt issuers take the free slots, lowest first.
        let mut taken: Vec<usize> = slots.iter().flatten().copied().collect();
        let mut next_free = 0;
        let slots = slots
            .into_iter()
            .map(|slot| {
                slot.unwrap_or_else(|| {
                    while taken.contains(&next_free) {
                        next_free += 1;
                    }
                    taken.push(next_free);
                    next_free
                })
            })
            .collect();
        let families = config
            .issuer_templates
            .iter()
            .map(|t| {
                let kept = self.config.issuer_templates.iter().position(|old| same(old, t));
                match kept {
                    Some(k) => Ok(self.families[k].clone()),
                    None => Family::new(t, config.http.allow_http).map(Arc::new),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let set = Set::new(config, issuers, slots, stores, families);
        for i in fresh {
            set.status.preload(i, &set.issuers[i], env);
        }
        Ok(set)
    }

    /// The index of the issuer in `slot`, if one is.
    #[inline]
    fn at_slot(&self, slot: usize) -> Option<usize> {
        match self.slot_index.get(slot) {
            Some(&i) if i != u32::MAX => Some(i as usize),
            _ => None,
        }
    }

    /// The issuer template a token's `iss` is for, when it names no
    /// configured issuer (configured issuers win).
    fn family_iss(&self, parsed: &token::ParsedToken<'_>) -> Option<usize> {
        if self.families.is_empty() {
            return None;
        }
        let iss = parsed.claims.get("iss")?.as_str()?;
        if self.by_name.contains_key(iss) {
            return None;
        }
        self.families.iter().position(|f| f.template.tenant_of(iss).is_some())
    }

    /// Whether `name` is the issuer of a tenant some template accepts.
    fn names_member(&self, name: &str) -> bool {
        self.families
            .iter()
            .any(|f| matches!(f.template.tenant_of(name), Some(Ok(_))))
    }

    /// For a cache hit: whether the keys of the member stamped `id` are
    /// current for `key_epoch` at `now_ms`, if the member is still held
    /// (`crate::family::Family::hit`).
    #[inline]
    fn member_hit(&self, id: usize, key_epoch: u64, now_ms: u64) -> Option<bool> {
        self.families.iter().find_map(|fam| fam.hit(id, key_epoch, now_ms))
    }

    /// `f` of the member stamped `id`, if still held.
    #[inline]
    fn with_member<T>(&self, id: usize, f: impl Fn(&Member) -> T) -> Option<T> {
        self.families.iter().find_map(|fam| fam.with_member(id, &f))
    }

    /// The configured issuer a token is for: the pinned one, else the one
    /// its (unverified) `iss` names exactly.
    fn issuer_for(&self, parsed: &token::ParsedToken<'_>, pinned: Option<usize>) -> Result<usize> {
        if let Some(i) = pinned {
            return Ok(i);
        }
        match parsed.claims.get("iss") {
            Some(serde_json::Value::String(iss)) => match self.index_of(iss)? {
                i if self.issuers[i].is_spiffe() => Err(Error::new(
                    ErrorKind::UnknownIssuer,
                    format!(
                        "{:?} is a SPIFFE trust domain: its tokens are chosen by a SPIFFE ID sub, never by iss",
                        token::truncate(iss)
                    ),
                )),
                i => Ok(i),
            },
            // Nothing names a configured issuer: rejected without a fetch.
            _ => Err(Error::new(ErrorKind::UnknownIssuer, "token has no string iss claim")),
        }
    }

    /// The SPIFFE trust domain a token is for (`crate::spiffe_id`): when
    /// trust domains are configured, its `iss` names no configured issuer
    /// and its `sub` is a `spiffe:` URI, the trust domain of that SPIFFE ID,
    /// which must be valid (else `invalid_payload`) and configured (else
    /// `unknown_issuer`, without a fetch). Pinned to a trust domain, the
    /// token's `sub` must be a SPIFFE ID of it. `None`: not a SPIFFE token.
    fn spiffe_for(&self, parsed: &token::ParsedToken<'_>, pinned: Option<usize>) -> Result<Option<usize>> {
        if self.spiffe.is_empty() || pinned.is_some_and(|p| !self.issuers[p].is_spiffe()) {
            return Ok(None);
        }
        let named = parsed.claims.get("iss").and_then(|v| v.as_str());
        if pinned.is_none()
            && named
                .and_then(|iss| self.by_name.get(iss))
                .is_some_and(|&i| !self.issuers[i].is_spiffe())
        {
            return Ok(None);
        }
        let sub = match parsed.claims.get("sub") {
            Some(serde_json::Value::String(sub)) if sub.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("spiffe:")) => {
                sub
            }
            _ if pinned.is_some() => {
                return Err(Error::new(
                    ErrorKind::InvalidPayload,
                    "a JWT-SVID's sub must be a SPIFFE ID (spiffe://<trust domain>/<path>)",
                ))
            }
            _ => return Ok(None),
        };
        let domain = crate::spiffe_id::trust_domain_of(sub).map_err(|why| {
            Error::new(
                ErrorKind::InvalidPayload,
                format!("sub {:?} is not a valid SPIFFE ID: {why}", token::truncate(sub)),
            )
        })?;
        match self.spiffe.get(domain) {
            Some(&i) if pinned.is_none_or(|p| p == i) => Ok(Some(i)),
            _ => Err(Error::new(
                ErrorKind::UnknownIssuer,
                format!(
                    "SPIFFE trust domain {:?} is not configured (or not the one pinned)",
                    token::truncate(domain)
                ),
            )),
        }
    }

    /// The configured issuer named exactly `name`. Matching stays exact; a
    /// miss names a configured issuer that differs only by a trailing slash
    /// or by letter case, the usual configuration slip.
    fn index_of(&self, name: &str) -> Result<usize> {
        if let Some(&i) = self.by_name.get(name) {
            return Ok(i);
        }
        let near = self.issuers.iter().find_map(|iss| {
            let configured: &str = &iss.name;
            if configured.trim_end_matches('/') == name.trim_end_matches('/') {
                Some((configured, "a trailing slash"))
            } else if configured.eq_ignore_ascii_case(name) {
                Some((configured, "letter case"))
            } else {
                None
            }
        });
        let mut message = format!("issuer {:?} is not configured", token::truncate(name));
        if let Some((configured, how)) = near {
            message.push_str(&format!(
                "; did you mean the configured issuer {configured:?}, which differs by {how}? \
                 (issuers are matched exactly)"
            ));
        }
        Err(Error::new(ErrorKind::UnknownIssuer, message))
    }
}

/// The refresher thread runs the due refreshes through this.
impl Refreshable for Shared {
    fn has_refreshable_issuers(&self) -> bool {
        Shared::has_refreshable_issuers(self)
    }
    fn run_due(&self) -> u64 {
        Shared::run_due(self)
    }
    fn now_ms(&self) -> u64 {
        self.env.clock.now_ms()
    }
}
