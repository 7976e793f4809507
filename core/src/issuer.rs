//! One configured issuer: its key source, current keyset, health, and the
//! rules for refreshing keys.
//!
//! * Every fetch for an issuer goes through one gate, so at most one is in
//!   flight; threads that arrive meanwhile wait for it instead of fetching.
//! * An unknown `kid` may trigger a refresh at most once per
//!   `unknown_kid_cooldown_secs`; unknown kids are remembered that long, so a
//!   storm of random kids costs a hash lookup each, not a fetch.
//! * A fetched set replaces the current one only when it parses and holds at
//!   least one usable key. Failures keep the last known good set, back off
//!   exponentially, and past `max_stale` the issuer fails closed.
//! * Keys are held by a [`KeyStore`]. Installs and 304 extensions go
//!   through the verifier's trust door (`crate::trust`), like kid
//!   revocations, and the store bumps the key *epoch* when a key goes, so
//!   cached results verified before that are no longer served.
//! * Fetches go through one [`Flight`] gate per issuer (single flight).

use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lru::LruCache;
use parking_lot::Mutex;

use crate::claims::ClaimPolicy;
use crate::clock::Clock;
use crate::config::IssuerConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::{FetchError, Fetched, HttpClient, Validators};
use crate::flight::{Flight, Need};
use crate::keys::{parse_jwks, Key, SkippedKey};
use crate::keystore::KeyStore;
use crate::metrics::{FetchReason, Health, IssuerCounters, IssuerStats};
pub(crate) use crate::refresh::Refresh;
use crate::refresh::{Asker, Machine, Next, Policy};
use crate::source::KeySource;
use crate::token::Alg;

/// Unknown kids remembered per issuer at most (the cooldown still bounds
/// fetches when this is full). Each costs a hash and a time, whatever the
/// kid's length: about 0.5 MB in all.
const MAX_REMEMBERED_KIDS: usize = 10_000;
/// How often a static JWKS file's modification time is checked.
const FILE_POLL_MS: u64 = 2_000;
/// After this many consecutive failed fetches a discovered `jwks_uri` is
/// forgotten, so the next attempt asks discovery again: the provider may
/// have moved its keys, and the old URL would fail until `max_stale`.
const REDISCOVER_AFTER_FAILURES: u32 = 2;

/// What the issuer needs from the verifier to fetch.
pub(crate) struct Env {
    pub clock: Arc<dyn Clock>,
    pub http: HttpClient,
    pub state_dir: Option<PathBuf>,
    /// `http.timeout_ms`: the longest one fetch takes (redirects and
    /// discovery included), and the longest a verify waits for keys, whether
    /// its own fetch or another thread's.
    pub fetch_timeout: Duration,
    /// The trust state and its one door, through which keys are installed.
    pub trust: Arc<crate::trust::Trust>,
}

/// What the issuer knows besides its keys and their refresh schedule.
#[derive(Default)]
struct Schedule {
    /// The `jwks_uri` discovery found; rediscovered when the discovery
    /// document's own schedule (`Issuer::discovery`) says so.
    resolved_jwks_uri: Option<String>,
    file_mtime: Option<SystemTime>,
    skipped: Vec<SkippedKey>,
}

/// Unknown kids recently asked for, each remembered until a time (ms).
/// Keyed by a seeded 64-bit hash of the kid, so memory does not grow with
/// the kids' length and an attacker cannot aim collisions; the LRU bound
/// makes insertion and eviction O(1) when full.
struct UnknownKids {
    hasher: foldhash::fast::RandomState,
    until: LruCache<u64, u64>,
}

impl UnknownKids {
    fn new() -> UnknownKids {
        UnknownKids {
            hasher: foldhash::fast::RandomState::default(),
            // Grown as kids are remembered (bounded in `remember`): an
            // issuer template's tenants each have one, mostly empty.
            until: LruCache::unbounded(),
        }
    }

    fn remembered(&mut self, kid: &str, now: u64) -> bool {
        let h = self.hasher.hash_one(kid);
        self.until.peek(&h).is_some_and(|until| now < *until)
    }

    fn remember(&mut self, kid: &str, until: u64) {
        let h = self.hasher.hash_one(kid);
        if self.until.len() >= MAX_REMEMBERED_KIDS && !self.until.contains(&h) {
            self.until.pop_lru();
        }
        self.until.push(h, until);
    }
}

pub(crate) struct Issuer {
    pub name: Arc<str>,
    pub cfg: IssuerConfig,
    pub policy: ClaimPolicy,
    source: KeySource,
    /// Every key of this issuer, local and fetched, the key epoch and the
    /// time the keys fail closed.
    keys: Arc<KeyStore>,
    sched: Mutex<Schedule>,
    /// The rules keys and discovery documents are refreshed by.
    policy_refresh: Policy,
    /// The keyset's refresh schedule (one machine for every document).
    refresh: Machine,
    /// The discovery document's (when the source is discovery).
    discovery: Machine,
    flight: Flight,
    unknown_kids: Mutex<UnknownKids>,
    pub counters: IssuerCounters,
    /// For a SPIFFE trust domain: its bundle's sequence (`crate::spiffe`).
    bundle: Option<crate::spiffe::Bundle>,
}

impl Issuer {
    pub(crate) fn new(cfg: IssuerConfig) -> Result<Issuer> {
        let source = KeySource::from_config(&cfg);
        let mut local = Vec::new();
        for k in &cfg.hmac_keys {
            let secret = crate::token::decode_b64_lenient(&k.secret_base64)
                .ok_or_else(|| Error::new(ErrorKind::InvalidConfig, "hmac_keys: secret is not base64"))?;
            local.push(Arc::new(Key::hmac(k.kid.as_deref().map(Arc::from), &secret)));
        }
        let policy = ClaimPolicy::from_config(&cfg);
        let static_keys = !source.is_remote();
        Ok(Issuer {
            name: Arc::from(cfg.issuer.as_str()),
            policy,
            source,
            keys: Arc::new(KeyStore::new(local, if static_keys { u64::MAX } else { 0 })),
            sched: Mutex::new(Schedule::default()),
            policy_refresh: Policy::for_keys(&cfg.refresh),
            refresh: Machine::default(),
            discovery: Machine::default(),
            flight: Flight::default(),
            unknown_kids: Mutex::new(UnknownKids::new()),
            counters: IssuerCounters::default(),
            bundle: None,
            cfg,
        })
    }

    /// The key holder of a SPIFFE trust domain: `cfg` from
    /// `SpiffeConfig::issuer_config`, its keys from a JWT bundle; the token's
    /// `iss` must be `iss` if set, else is not checked.
    pub(crate) fn spiffe(cfg: IssuerConfig, iss: Option<&str>) -> Result<Issuer> {
        let mut issuer = Issuer::new(cfg)?;
        issuer.policy.issuer = iss.unwrap_or_default().to_string();
        issuer.bundle = Some(crate::spiffe::Bundle::default());
        Ok(issuer)
    }

    /// Whether this is a SPIFFE trust domain (chosen by `sub`, never by `iss`).
    pub(crate) fn is_spiffe(&self) -> bool {
        self.bundle.is_some()
    }

    fn is_remote(&self) -> bool {
        self.source.is_remote()
    }

    /// `alg` if this issuer allows it.
    pub(crate) fn check_algorithm(&self, alg: Alg) -> Result<Alg> {
        if !self.cfg.algorithms.contains(&alg) {
            return Err(Error::new(
                ErrorKind::AlgorithmNotAllowed,
                format!("alg {alg} is not allowed for {}", self.name),
            ));
        }
        Ok(alg)
    }

    /// The key epoch cached results are stamped with.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.keys.epoch()
    }

    /// Keys are refused from this time (ms): TTL end + max_stale. 0 = never
    /// loaded; `u64::MAX` = static keys, never stale.
    #[inline]
    pub(crate) fn fail_closed_at_ms(&self) -> u64 {
        self.keys.fail_closed_at_ms()
    }

    /// For a cache hit: whether results stamped `key_epoch` are current at
    /// `now_ms` (epoch unchanged, keys not failed closed).
    #[inline]
    pub(crate) fn keys_current(&self, key_epoch: u64, now_ms: u64) -> bool {
        self.keys.current(key_epoch, now_ms)
    }

    /// Run a refresh that any fetch answers, with the usual deadline.
    fn refresh_now(&self, env: &Env, reason: FetchReason) -> Refresh {
        self.refresh(env, reason, Need::Any, Instant::now() + env.fetch_timeout)
    }

    /// Fetch now and return only after a fetch that started after this call
    /// ended: its error if it failed. Waits for a fetch already in flight
    /// first, so it may take up to twice `http.timeout_ms`.
    pub(crate) fn refresh_manual(&self, env: &Env) -> std::result::Result<(), String> {
        let deadline = Instant::now() + env.fetch_timeout * 2;
        match self.refresh(env, FetchReason::Manual, Need::StartedAfterCall, deadline) {
            Refresh::Ok { .. } => Ok(()),
            Refresh::Failed { error } => Err(error),
            Refresh::TimedOut => Err("timed out waiting for the fetch in flight".into()),
            Refresh::RateLimited(_) => unreachable!("manual refreshes have no cooldown"),
        }
    }

    /// Load keys at start. Static sources must load (they are
    /// configuration); a remote source that is unreachable falls back to the
    /// state directory, else stays unavailable until a later fetch works.
    pub(crate) fn start(&self, env: &Env, index: usize) -> Result<()> {
        match &self.source {
            KeySource::LocalOnly => Ok(()),
            KeySource::Inline(_) | KeySource::File(_) => match self.refresh_now(env, FetchReason::Startup) {
                Refresh::Failed { error: e } => Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!("issuers[{index}]: static JWKS unusable: {e}"),
                )),
                _ => Ok(()),
            },
            KeySource::Url(_) | KeySource::Discovery => {
                // refresh() has logged the failure already.
                if let Refresh::Failed { .. } = self.refresh_now(env, FetchReason::Startup) {
                    self.load_persisted(env);
                }
                Ok(())
            }
        }
    }

    fn load_persisted(&self, env: &Env) {
        let Some(dir) = &env.state_dir else { return };
        let Some((fetched_at, body)) = crate::state::load(dir, &self.name) else {
            return;
        };
        let ttl = self.cfg.refresh.default_ttl_secs * 1000;
        match self.apply_body(env, &body, fetched_at, fetched_at.saturating_add(ttl)) {
            Ok(n) => log::warn!(
                "issuer {}: serving {n} persisted keys fetched at {fetched_at} ms",
                self.name
            ),
            Err(e) => log::warn!("issuer {}: persisted JWKS unusable: {e}", self.name),
        }
    }

    /// Find the key for a token, refreshing at most once (coalesced and
    /// rate limited) for an unknown kid. Returns the key and until when it
    /// may be used (rotation grace), in ms. Waits for keys at most
    /// `http.timeout_ms` (see [`Env::fetch_timeout`]).
    pub(crate) fn resolve_key(&self, env: &Env, kid: Option<&str>, alg: Alg, now: u64) -> Result<(Arc<Key>, u64)> {
        if let Some(found) = self.key_without_waiting(kid, alg, now)? {
            return Ok(found);
        }
        let cooldown_ms = self.cfg.refresh.unknown_kid_cooldown_secs * 1000;
        let deadline = Instant::now() + env.fetch_timeout;
        let mut outcome = self.refresh_for(env, FetchReason::UnknownKid, Need::Any, deadline, kid);
        if matches!(outcome, Refresh::Ok { joined: true })
            && self.keys.snapshot().lookup(kid, alg, now)?.is_none()
            && deadline.saturating_duration_since(Instant::now()) >= env.fetch_timeout / 2
        {
            // The fetch we joined may have started before this key was
            // published: ask once more (still bound by the cooldown and by
            // this verify's deadline), rather than remember a valid new kid
            // as unknown for a whole window. A joined fetch that *failed* is
            // not retried: the endpoint just failed, and a second fetch
            // would double the wait.
            outcome = self.refresh_for(env, FetchReason::UnknownKid, Need::Any, deadline, kid);
        }
        match outcome {
            Refresh::Ok { .. } => {}
            Refresh::RateLimited(until) => return self.rate_limited(kid, alg, now, until),
            Refresh::Failed { .. } => self.remember(kid, now + cooldown_ms),
            Refresh::TimedOut => {
                // The fetch is still running: whether the kid exists could
                // not be checked (the fetch's own failure, if it fails,
                // answers the next ones through `not_found`).
                self.remember(kid, now + cooldown_ms);
                if let Some(found) = self.keys.snapshot().lookup(kid, alg, now)? {
                    return Ok(found);
                }
                return Err(self.unchecked(kid, "timed out waiting for the JWKS fetch"));
            }
        }
        self.after_refresh(kid, alg, now)
    }

    /// The part of [`resolve_key`](Issuer::resolve_key) decided without a
    /// fetch and without waiting for one: `Ok(None)` when only a fetch (or
    /// a fetch in flight) can tell. Decided here: failed closed, a key in
    /// the current set (or the rotation grace), a revoked kid, an unknown
    /// kid of an issuer that never fetches, a remembered unknown kid, and
    /// an unknown kid while the cooldown refuses a new fetch and none is
    /// in flight (what `refresh` would answer at once).
    pub(crate) fn key_without_waiting(&self, kid: Option<&str>, alg: Alg, now: u64) -> Result<Option<(Arc<Key>, u64)>> {
        if !alg.is_hmac() {
            let fail_closed_at = self.fail_closed_at_ms();
            if fail_closed_at != 0 && now >= fail_closed_at {
                return Err(Error::new(
                    ErrorKind::KeysStale,
                    format!("keys of {} are older than max_stale; failing closed", self.name),
                ));
            }
        }
        if let Some(found) = self.keys.snapshot().lookup(kid, alg, now)? {
            return Ok(Some(found));
        }
        if alg.is_hmac() || !self.is_remote() {
            return Err(self.unknown(kid));
        }
        if kid.is_some_and(|kid| self.unknown_kids.lock().remembered(kid, now)) {
            return Err(self.not_found(kid));
        }
        let cooldown_ms = self.cfg.refresh.unknown_kid_cooldown_secs * 1000;
        let held = self.refresh.held_until(now);
        match held.or_else(|| self.flight.rate_limited(now, cooldown_ms)) {
            Some(until) => self.rate_limited(kid, alg, now, until).map(Some),
            None => Ok(None),
        }
    }

    /// An unknown kid whose fetch the cooldown refused until `until` (ms).
    fn rate_limited(&self, kid: Option<&str>, alg: Alg, now: u64, until: u64) -> Result<(Arc<Key>, u64)> {
        self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        self.remember(kid, until);
        self.after_refresh(kid, alg, now)
    }

    /// The key after the refresh an unknown kid was allowed (or refused):
    /// found in the set now in use, or remembered as unknown for the
    /// cooldown and refused.
    fn after_refresh(&self, kid: Option<&str>, alg: Alg, now: u64) -> Result<(Arc<Key>, u64)> {
        if let Some(found) = self.keys.snapshot().lookup(kid, alg, now)? {
            return Ok(found);
        }
        self.remember(kid, now + self.cfg.refresh.unknown_kid_cooldown_secs * 1000);
        Err(self.not_found(kid))
    }

    /// The error for a key not found after any allowed refresh: the keys as a
    /// whole are unavailable if none was ever loaded; the kid is unknown if
    /// the issuer's last fetch succeeded (it answered: no such key); and if
    /// that fetch failed, whether the kid exists could not be checked
    /// (`keys_unavailable`: a client with a valid token of a key published
    /// during the outage is told to retry, not that its token is bad).
    fn not_found(&self, kid: Option<&str>) -> Error {
        let last_error = self.refresh.last_error();
        if !self.keys.snapshot().loaded {
            let why = last_error.unwrap_or_else(|| "no keys fetched yet".into());
            return Error::new(ErrorKind::KeysUnavailable, format!("no keys for {}: {why}", self.name));
        }
        match last_error {
            Some(why) if kid.is_some() => self.unchecked(kid, &why),
            _ => self.unknown(kid),
        }
    }

    /// An unknown kid that no fetch could check: `keys_unavailable`.
    fn unchecked(&self, kid: Option<&str>, why: &str) -> Error {
        let kid = kid.map_or_else(String::new, |k| format!(" {:?}", crate::token::truncate(k)));
        Error::new(
            ErrorKind::KeysUnavailable,
            format!(
                "no key{kid} for issuer {} and its JWKS could not be fetched: {why}",
                self.name
            ),
        )
    }

    fn unknown(&self, kid: Option<&str>) -> Error {
        match kid {
            Some(kid) => {
                self.counters.unknown_kid.fetch_add(1, Ordering::Relaxed);
                Error::new(
                    ErrorKind::UnknownKid,
                    format!("no key {:?} for issuer {}", crate::token::truncate(kid), self.name),
                )
            }
            None => Error::new(ErrorKind::MissingKid, "token has no kid and no single key fits its alg"),
        }
    }

    fn remember(&self, kid: Option<&str>, until: u64) {
        if let Some(kid) = kid {
            self.unknown_kids.lock().remember(kid, until);
        }
    }

    /// Fetch now, or join a fetch in flight that answers `need`; for an
    /// unknown kid, only if the cooldown allows a new fetch. Waiting, and
    /// this caller's own fetch, end at `deadline` (a fetch also ends within
    /// `http.timeout_ms` of its start).
    pub(crate) fn refresh(&self, env: &Env, reason: FetchReason, need: Need, deadline: Instant) -> Refresh {
        self.refresh_for(env, reason, need, deadline, None)
    }

    /// [`refresh`](Issuer::refresh) for a token's unknown `kid`, which a set
    /// another process fetched may answer (`crate::shared_fetch`).
    fn refresh_for(&self, env: &Env, reason: FetchReason, need: Need, deadline: Instant, kid: Option<&str>) -> Refresh {
        let now = env.clock.now_ms();
        let asker = match reason {
            FetchReason::UnknownKid => Asker::OnDemand(self.cfg.refresh.unknown_kid_cooldown_secs * 1000),
            FetchReason::Manual => Asker::Manual,
            FetchReason::Startup | FetchReason::Scheduled => Asker::Scheduled,
        };
        let fetch = || {
            let fetch_deadline = deadline.min(Instant::now() + env.fetch_timeout);
            self.fetch_or_adopt(env, reason, kid, now, fetch_deadline)
        };
        let failed = |e: &FetchError, attempt: u32| {
            self.counters.fetch_failures.fetch_add(1, Ordering::Relaxed);
            if attempt >= REDISCOVER_AFTER_FAILURES {
                self.sched.lock().resolved_jwks_uri = None;
            }
            log::warn!(
                "issuer {}: {} fetch failed (attempt {attempt}): {e}",
                self.name,
                reason.as_str(),
            );
        };
        let policy = &self.policy_refresh;
        self.refresh
            .run(policy, &self.flight, asker, need, now, deadline, fetch, failed)
    }

    fn ttl_ms(&self, max_age_secs: Option<u64>) -> u64 {
        self.policy_refresh.ttl_ms(max_age_secs)
    }

    fn fetch_and_apply(
        &self,
        env: &Env,
        reason: FetchReason,
        now: u64,
        deadline: Instant,
    ) -> std::result::Result<Next, FetchError> {
        self.counters.fetched(reason);
        match &self.source {
            KeySource::LocalOnly => Ok(Next::At(u64::MAX)),
            KeySource::Inline(body) => {
                self.apply_body(env, body, now, u64::MAX)?;
                Ok(Next::At(u64::MAX))
            }
            KeySource::File(path) => {
                let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                let body = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
                self.apply_body(env, &body, now, u64::MAX)?;
                self.sched.lock().file_mtime = mtime;
                Ok(Next::At(now + FILE_POLL_MS))
            }
            KeySource::Url(_) | KeySource::Discovery => self.fetch_remote(env, reason, now, deadline),
        }
    }

    /// Fetch the JWKS over HTTP(S) (conditionally once a set is loaded) and
    /// apply what came back. One budget for the whole fetch: discovery, the
    /// JWKS and every redirect of either share `deadline`.
    fn fetch_remote(
        &self,
        env: &Env,
        reason: FetchReason,
        now: u64,
        deadline: Instant,
    ) -> std::result::Result<Next, FetchError> {
        let url = match &self.source {
            KeySource::Url(u) => u.clone(),
            _ => self.discovered_jwks_uri(env, now, deadline)?,
        };
        let loaded = self.keys.snapshot().loaded;
        let validators = loaded.then(|| self.refresh.validators());
        let no_cache = matches!(reason, FetchReason::UnknownKid | FetchReason::Manual);
        match env.http.get_until(&url, validators.as_ref(), no_cache, deadline)? {
            Fetched::NotModified { max_age_secs } => {
                if !loaded {
                    return Err("304 Not Modified without a cached keyset".into());
                }
                self.counters.not_modified.fetch_add(1, Ordering::Relaxed);
                self.confirm_persisted(env, validators.as_ref(), max_age_secs, reason, now);
                let ttl = self.ttl_ms(max_age_secs);
                self.keys.extend(&env.trust.enter(), now, now + ttl);
                self.store_fail_closed(now + ttl);
                Ok(Next::Expires(now + ttl, None))
            }
            Fetched::Body {
                body,
                validators,
                max_age_secs,
                ..
            } => {
                // A SPIFFE bundle's refresh hint stands for `max-age`.
                let max_age_secs = self
                    .bundle
                    .as_ref()
                    .and_then(|_| crate::spiffe::refresh_hint(&body))
                    .or(max_age_secs);
                let ttl = self.ttl_ms(max_age_secs);
                let n = self.apply_body(env, &body, now, now + ttl)?;
                log::info!(
                    "issuer {}: {n} keys from {url} ({}), ttl {} s",
                    self.name,
                    reason.as_str(),
                    ttl / 1000
                );
                self.persist(env, body, validators.clone(), max_age_secs, reason, now);
                Ok(Next::Expires(now + ttl, Some(validators)))
            }
        }
    }

    /// The `jwks_uri` to fetch: the one discovery found, until the discovery
    /// document's own refresh machine says it is due (its TTL, clamped like
    /// a key TTL, with jitter; after a failure, its backoff), or repeated
    /// JWKS failures forgot it; then discovery is asked again, so a
    /// provider can move its keys.
    fn discovered_jwks_uri(&self, env: &Env, now: u64, deadline: Instant) -> std::result::Result<String, FetchError> {
        let known = self.sched.lock().resolved_jwks_uri.clone();
        if let Some(u) = known.as_ref().filter(|_| !self.discovery.due(now)) {
            return Ok(u.clone());
        }
        let policy = &self.policy_refresh;
        match env.http.discover_until(&self.name, deadline) {
            Ok(found) => {
                if let Some(old) = known.as_deref().filter(|old| *old != found.jwks_uri) {
                    log::info!("issuer {}: jwks_uri moved from {old} to {}", self.name, found.jwks_uri);
                }
                self.sched.lock().resolved_jwks_uri = Some(found.jwks_uri.clone());
                let expires_at = now + self.ttl_ms(found.max_age_secs);
                self.discovery.succeeded(policy, now, Next::Expires(expires_at, None));
                Ok(found.jwks_uri)
            }
            // Discovery is down but the keys may not be: keep the last
            // jwks_uri (discovery is retried after its backoff) rather than
            // fail a refresh the JWKS host could answer. Repeated JWKS
            // failures forget it (REDISCOVER_AFTER_FAILURES).
            Err(e) => {
                self.discovery.failed(policy, now, &e);
                match known {
                    Some(u) => {
                        log::warn!("issuer {}: rediscovery failed, keeping jwks_uri {u}: {e}", self.name);
                        Ok(u)
                    }
                    None => Err(e),
                }
            }
        }
    }

    /// Parse and install a JWKS; refuse a set with no usable key.
    fn apply_body(&self, env: &Env, body: &[u8], now: u64, expires_at: u64) -> std::result::Result<usize, String> {
        if let Some(bundle) = &self.bundle {
            return self.apply_bundle(env, bundle, body, now, expires_at);
        }
        let (keys, skipped) = parse_jwks(body, &self.cfg.algorithms)?;
        let grace_ms = self.cfg.refresh.rotation_grace_secs * 1000;
        let installed = self
            .keys
            .install(&env.trust.enter(), keys, now, expires_at, grace_ms)
            .map_err(|e| format!("{e} ({} skipped)", skipped.len()))?;
        // Diagnostics describe the set in use, so a refused set leaves them.
        self.sched.lock().skipped = skipped;
        if !installed.removed.is_empty() {
            log::info!(
                "issuer {}: keys removed {:?}; cached results for them invalidated",
                self.name,
                installed.removed
            );
        }
        self.store_fail_closed(expires_at);
        Ok(installed.usable)
    }

    /// Parse and install a SPIFFE bundle (`crate::spiffe`): a rollback is
    /// refused, an empty bundle removes every key.
    fn apply_bundle(
        &self,
        env: &Env,
        bundle: &crate::spiffe::Bundle,
        body: &[u8],
        now: u64,
        expires_at: u64,
    ) -> std::result::Result<usize, String> {
        let persist = crate::spiffe::Persist {
            dir: env.state_dir.as_deref(),
            name: &self.name,
        };
        let parsed = bundle.parse(body, &self.cfg.algorithms, &persist)?;
        let usable = if parsed.keys.is_empty() {
            let removed = self.keys.clear(&env.trust.enter(), now, expires_at);
            log::warn!(
                "trust domain {}: bundle (spiffe_sequence {:?}) has no JWT authority: \
                 every key removed ({removed:?}); its tokens are refused",
                self.name,
                parsed.sequence
            );
            0
        } else {
            let grace_ms = self.cfg.refresh.rotation_grace_secs * 1000;
            let installed = self
                .keys
                .install(&env.trust.enter(), parsed.keys, now, expires_at, grace_ms)
                .map_err(|e| format!("{e} ({} skipped)", parsed.skipped.len()))?;
            if !installed.removed.is_empty() {
                log::info!(
                    "trust domain {}: keys removed {:?}; cached results for them invalidated",
                    self.name,
                    installed.removed
                );
            }
            installed.usable
        };
        bundle.installed(parsed.sequence, &persist);
        self.sched.lock().skipped = parsed.skipped;
        self.store_fail_closed(expires_at);
        Ok(usable)
    }

    fn store_fail_closed(&self, expires_at: u64) {
        let at = if self.is_remote() {
            self.policy_refresh.stale_until(expires_at)
        } else {
            u64::MAX
        };
        self.keys.set_fail_closed_at_ms(at);
    }

    /// The key store, for the trust door's kid revocations.
    pub(crate) fn keystore(&self) -> Arc<KeyStore> {
        self.keys.clone()
    }

    /// Run a scheduled refresh if one is due. Returns when the next is due (ms).
    pub(crate) fn run_due(&self, env: &Env) -> u64 {
        let now = env.clock.now_ms();
        let next = self.refresh.next_ms();
        match &self.source {
            KeySource::LocalOnly | KeySource::Inline(_) => u64::MAX,
            KeySource::File(path) => {
                if now < next {
                    return next;
                }
                let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                let changed = mtime != self.sched.lock().file_mtime;
                if changed {
                    if let Refresh::Failed { error: e } = self.refresh_now(env, FetchReason::Scheduled) {
                        log::warn!("issuer {}: keeping previous keys: {e}", self.name);
                    }
                }
                self.refresh.schedule(now + FILE_POLL_MS);
                now + FILE_POLL_MS
            }
            KeySource::Url(_) | KeySource::Discovery => {
                if now >= next {
                    self.refresh_now(env, FetchReason::Scheduled);
                }
                self.refresh.next_ms()
            }
        }
    }

    /// Current health.
    pub(crate) fn health(&self, now: u64) -> Health {
        if !self.is_remote() {
            return Health::Fresh;
        }
        let fail_closed_at = self.fail_closed_at_ms();
        let ks = self.keys.snapshot();
        crate::refresh::health(now, ks.loaded.then_some(ks.expires_at_ms), fail_closed_at)
    }

    /// Usable and skipped keys, for diagnostics (CLI `jwks`).
    pub(crate) fn describe_keys(&self) -> (Vec<Arc<Key>>, Vec<SkippedKey>) {
        let ks = self.keys.snapshot();
        let mut keys = ks.set.keys().to_vec();
        keys.extend(ks.local.keys().iter().cloned());
        (keys, self.sched.lock().skipped.clone())
    }

    pub(crate) fn stats(&self, now: u64) -> IssuerStats {
        let ks = self.keys.snapshot();
        let c = &self.counters;
        IssuerStats {
            issuer: self.name.to_string(),
            health: self.health(now),
            keys: (ks.set.len() + ks.local.len()) as u64,
            fetches: FetchReason::ALL
                .iter()
                .zip(&c.fetches)
                .map(|(r, n)| (r.as_str().to_string(), n.load(Ordering::Relaxed)))
                .collect(),
            fetch_failures: c.fetch_failures.load(Ordering::Relaxed),
            not_modified: c.not_modified.load(Ordering::Relaxed),
            rate_limited_refreshes: c.rate_limited.load(Ordering::Relaxed),
            unknown_kid: c.unknown_kid.load(Ordering::Relaxed),
            keyset_age_secs: ks.loaded.then(|| now.saturating_sub(ks.fetched_at_ms) / 1000),
            last_success_ms: self.refresh.last_success_ms(),
            last_error: self.refresh.last_error(),
        }
    }
}

/// Sharing one fetch with the other processes on `state_dir`
/// (`crate::shared_fetch`).
impl Issuer {
    /// Fetch and apply, or, with `state_dir`, adopt the set another process
    /// fetched when it answers this refresh. Holds the host-wide lock on
    /// this issuer's fetch while deciding and fetching. The lock is waited
    /// for until `deadline`; a scheduled or start-up refresh then fetches
    /// with a whole fetch timeout of its own, a verify with what is left of
    /// its deadline (none: it fails closed, as after a fetch that timed out).
    fn fetch_or_adopt(
        &self,
        env: &Env,
        reason: FetchReason,
        kid: Option<&str>,
        now: u64,
        deadline: Instant,
    ) -> std::result::Result<Next, FetchError> {
        use crate::shared_fetch::{judge, lock, Locked, Verdict, Want};
        let Some(dir) = env.state_dir.as_deref().filter(|_| self.is_remote()) else {
            return self.fetch_and_apply(env, reason, now, deadline);
        };
        let want = match reason {
            FetchReason::Startup | FetchReason::Scheduled => Want::Keys,
            FetchReason::UnknownKid => Want::Kid {
                cooldown_ms: self.cfg.refresh.unknown_kid_cooldown_secs * 1000,
            },
            // "Fetch now": nothing another process did answers it.
            FetchReason::Manual => return self.fetch_and_apply(env, reason, now, deadline),
        };
        let _lock = match lock(dir, &self.name, deadline) {
            Locked::Held(guard) => Some(guard),
            Locked::TimedOut => {
                log::warn!(
                    "issuer {}: another process held the fetch lock in {} until the deadline; fetching without it",
                    self.name,
                    dir.display()
                );
                None
            }
            Locked::Unusable(why) => {
                log::warn!("issuer {}: fetching without the shared lock: {why}", self.name);
                None
            }
        };
        // The wait may have been long: decide and fetch at the time it ended.
        let now = env.clock.now_ms().max(now);
        if let Some(found) = crate::state::load_record(dir, &self.name) {
            let held = self.keys.snapshot();
            let held_ms = held.loaded.then_some(held.fetched_at_ms);
            let verdict = judge(&found.record, found.owner, want, held_ms, now, |max_age| {
                self.ttl_ms(max_age)
            });
            let adopted = match verdict {
                Verdict::Fetch => Err(String::new()),
                // Another process's fetch answered this need: the schedule
                // stays as it is.
                Verdict::Answered => return Ok(Next::At(self.refresh.next_ms())),
                Verdict::Adopt => self.adopt(env, &found.record, None),
                Verdict::AdoptIfItHoldsTheKid => self.adopt(env, &found.record, kid),
            };
            match adopted {
                Ok(next) => return Ok(next),
                Err(e) if !e.is_empty() => {
                    log::warn!("issuer {}: persisted JWKS not adopted: {e}", self.name)
                }
                Err(_) => {}
            }
        }
        let fetch_deadline = match reason {
            FetchReason::UnknownKid => deadline,
            _ => Instant::now() + env.fetch_timeout,
        };
        self.fetch_and_apply(env, reason, now, fetch_deadline)
    }

    /// Install a set another process fetched, as of its real fetch time;
    /// with `kid`, only if the set holds it (else `Err("")`: fetch).
    fn adopt(&self, env: &Env, record: &crate::state::Record, kid: Option<&str>) -> std::result::Result<Next, String> {
        if let Some(kid) = kid {
            let (keys, _) = parse_jwks(&record.jwks, &self.cfg.algorithms)?;
            if !keys.iter().any(|k| k.kid.as_deref() == Some(kid)) {
                return Err(String::new());
            }
        }
        let at = record.fetched_at_ms;
        let ttl = self.ttl_ms(record.max_age_secs);
        let n = self.apply_body(env, &record.jwks, at, at.saturating_add(ttl))?;
        log::info!(
            "issuer {}: {n} keys adopted from state_dir, fetched by another process at {at} ms",
            self.name
        );
        Ok(Next::Expires(at.saturating_add(ttl), Some(record.validators.clone())))
    }

    /// Persist a set this process fetched, for a later start and for the
    /// other processes on `state_dir`.
    fn persist(
        &self,
        env: &Env,
        jwks: Vec<u8>,
        validators: Validators,
        max_age_secs: Option<u64>,
        reason: FetchReason,
        now: u64,
    ) {
        let Some(dir) = &env.state_dir else { return };
        let record = crate::state::Record {
            fetched_at_ms: now,
            jwks,
            max_age_secs,
            validators,
            on_demand: matches!(reason, FetchReason::UnknownKid | FetchReason::Manual),
        };
        if let Err(e) = crate::shared_fetch::persist(dir, &self.name, &record, env.clock.now_ms()) {
            log::warn!("issuer {}: cannot persist JWKS in {}: {e}", self.name, dir.display());
        }
    }

    /// A 304 confirmed the set named by `validators`: say so in the
    /// persisted copy, which the other processes may then adopt.
    fn confirm_persisted(
        &self,
        env: &Env,
        validators: Option<&Validators>,
        max_age_secs: Option<u64>,
        reason: FetchReason,
        now: u64,
    ) {
        let (Some(dir), Some(validators)) = (&env.state_dir, validators) else {
            return;
        };
        let on_demand = matches!(reason, FetchReason::UnknownKid | FetchReason::Manual);
        if let Err(e) = crate::shared_fetch::confirm(dir, &self.name, validators, max_age_secs, on_demand, now) {
            log::warn!("issuer {}: cannot persist JWKS in {}: {e}", self.name, dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_unknown_kids_cost_the_same_whatever_their_length() {
        let mut kids = UnknownKids::new();
        // 20,000 kids of 11.5 KB: what was 110 MB before keeps only a hash
        // and a time each, and the oldest make way in O(1).
        let long = "k".repeat(11_500);
        for i in 0..2 * MAX_REMEMBERED_KIDS {
            kids.remember(&format!("{long}{i}"), 1_000);
        }
        assert_eq!(kids.until.len(), MAX_REMEMBERED_KIDS);
        assert!(kids.remembered(&format!("{long}{}", 2 * MAX_REMEMBERED_KIDS - 1), 999));
        assert!(!kids.remembered(&format!("{long}0"), 999), "the oldest was evicted");
        assert!(
            !kids.remembered(&format!("{long}19999"), 1_000),
            "remembered until, not at"
        );
    }
}
