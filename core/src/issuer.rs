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
//! * When a refresh sees a key gone, the issuer's key *epoch* is bumped, so
//!   cached results verified before that are no longer served.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::claims::ClaimPolicy;
use crate::clock::Clock;
use crate::config::IssuerConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::{FetchError, Fetched, HttpClient, Validators};
use crate::keys::{parse_jwks, Key, KeySet, Lookup, SkippedKey};
use crate::metrics::{FetchReason, Health, IssuerCounters, IssuerStats};
use crate::token::Alg;

/// Unknown kids remembered per issuer at most (the cooldown still bounds
/// fetches when this is full).
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
    /// How long a thread waits for another thread's fetch to finish. That
    /// fetch ends by its own deadline (`http.timeout_ms` from its start), so
    /// this is only a backstop: the margin above `timeout_ms` covers the
    /// work after the last byte (parsing, installing keys).
    pub fetch_wait: Duration,
}

enum Source {
    /// Fetched over HTTP(S); without a `jwks_uri`, found by OIDC discovery.
    Remote {
        jwks_uri: Option<String>,
    },
    Inline(Vec<u8>),
    File(PathBuf),
    /// Only local HMAC secrets; nothing to fetch.
    LocalOnly,
}

struct KeyState {
    set: KeySet,
    /// Keys removed by a refresh, usable until the given time (rotation grace).
    retired: Vec<(Arc<Key>, u64)>,
    loaded: bool,
    fetched_at_ms: u64,
    expires_at_ms: u64,
}

#[derive(Default)]
struct Schedule {
    next_ms: u64,
    failures: u32,
    validators: Validators,
    resolved_jwks_uri: Option<String>,
    /// When `resolved_jwks_uri` is due for rediscovery (ms): the discovery
    /// document's own TTL, clamped like a key TTL.
    discovery_expires_ms: u64,
    last_success_ms: Option<u64>,
    last_error: Option<String>,
    file_mtime: Option<SystemTime>,
    skipped: Vec<SkippedKey>,
}

#[derive(Default)]
struct Gate {
    in_flight: bool,
    /// Fork generation of the thread doing the in-flight fetch: a child
    /// process must not wait for a fetch that died with its parent's thread.
    in_flight_fork: u64,
    completed: u64,
    /// Whether the fetch that last completed succeeded, for threads that
    /// waited for it.
    last_ok: bool,
    last_on_demand_ms: Option<u64>,
}

/// The outcome of asking for a refresh.
pub(crate) enum Refresh {
    /// This thread fetched, successfully.
    Done,
    /// Another thread's fetch finished, successfully, while we waited.
    Coalesced,
    /// Refused by the unknown-kid cooldown, until the given time.
    RateLimited(u64),
    /// This thread fetched and it failed, or the other thread's fetch it
    /// waited for failed or did not finish within `Env::fetch_wait`.
    Failed(String),
}

pub(crate) struct Issuer {
    pub name: Arc<str>,
    pub cfg: IssuerConfig,
    pub policy: ClaimPolicy,
    source: Source,
    local: KeySet,
    keys: RwLock<Arc<KeyState>>,
    /// Bumped when a key disappears or is revoked: invalidates cached results.
    pub epoch: AtomicU64,
    /// Keys are refused from this time (ms): TTL end + max_stale. 0 = never
    /// loaded; `u64::MAX` = static keys, never stale.
    pub fail_closed_at_ms: AtomicU64,
    sched: Mutex<Schedule>,
    gate: Mutex<Gate>,
    gate_cv: Condvar,
    unknown_kids: Mutex<HashMap<String, u64>>,
    revoked_kids: RwLock<HashSet<String>>,
    pub counters: IssuerCounters,
}

impl Issuer {
    pub(crate) fn new(cfg: IssuerConfig) -> Result<Issuer> {
        let source = if let Some(uri) = &cfg.jwks_uri {
            Source::Remote {
                jwks_uri: Some(uri.clone()),
            }
        } else if cfg.discovery {
            Source::Remote { jwks_uri: None }
        } else if let Some(jwks) = &cfg.jwks {
            Source::Inline(serde_json::to_vec(jwks).expect("a JSON value serializes"))
        } else if let Some(path) = &cfg.jwks_file {
            Source::File(path.clone())
        } else {
            Source::LocalOnly
        };
        let mut local = Vec::new();
        for k in &cfg.hmac_keys {
            let secret = crate::token::decode_b64_lenient(&k.secret_base64)
                .ok_or_else(|| Error::new(ErrorKind::InvalidConfig, "hmac_keys: secret is not base64"))?;
            local.push(Arc::new(Key::hmac(k.kid.clone(), &secret)));
        }
        let policy = ClaimPolicy {
            issuer: cfg.issuer.clone(),
            audiences: cfg.audiences.clone(),
            allow_any_audience: cfg.allow_any_audience,
            required: cfg.required_claims.clone(),
            typ: cfg.typ.clone(),
            leeway_secs: cfg.leeway_secs,
        };
        let static_keys = !matches!(source, Source::Remote { .. });
        Ok(Issuer {
            name: Arc::from(cfg.issuer.as_str()),
            policy,
            source,
            local: KeySet::new(local),
            keys: RwLock::new(Arc::new(KeyState {
                set: KeySet::default(),
                retired: Vec::new(),
                loaded: false,
                fetched_at_ms: 0,
                expires_at_ms: 0,
            })),
            epoch: AtomicU64::new(0),
            fail_closed_at_ms: AtomicU64::new(if static_keys { u64::MAX } else { 0 }),
            sched: Mutex::new(Schedule::default()),
            gate: Mutex::new(Gate::default()),
            gate_cv: Condvar::new(),
            unknown_kids: Mutex::new(HashMap::new()),
            revoked_kids: RwLock::new(HashSet::new()),
            counters: IssuerCounters::default(),
            cfg,
        })
    }

    fn is_remote(&self) -> bool {
        matches!(self.source, Source::Remote { .. })
    }

    /// Load keys at start. Static sources must load (they are
    /// configuration); a remote source that is unreachable falls back to the
    /// state directory, else stays unavailable until a later fetch works.
    pub(crate) fn start(&self, env: &Env, index: usize) -> Result<()> {
        match &self.source {
            Source::LocalOnly => Ok(()),
            Source::Inline(_) | Source::File(_) => match self.refresh(env, FetchReason::Startup) {
                Refresh::Failed(e) => Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!("issuers[{index}]: static JWKS unusable: {e}"),
                )),
                _ => Ok(()),
            },
            Source::Remote { .. } => {
                if let Refresh::Failed(e) = self.refresh(env, FetchReason::Startup) {
                    log::warn!("issuer {}: startup fetch failed: {e}", self.name);
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
        match self.apply_body(&body, fetched_at, fetched_at.saturating_add(ttl)) {
            Ok(n) => log::warn!(
                "issuer {}: serving {n} persisted keys fetched at {fetched_at} ms",
                self.name
            ),
            Err(e) => log::warn!("issuer {}: persisted JWKS unusable: {e}", self.name),
        }
    }

    /// Find the key for a token, refreshing at most once (coalesced and
    /// rate limited) for an unknown kid. Returns the key and until when it
    /// may be used (rotation grace), in ms.
    pub(crate) fn resolve_key(&self, env: &Env, kid: Option<&str>, alg: Alg, now: u64) -> Result<(Arc<Key>, u64)> {
        if alg.is_hmac() {
            return match self.local.find(kid, alg) {
                Lookup::Found(k) => Ok((k.clone(), u64::MAX)),
                Lookup::Mismatch => Err(mismatch(kid, alg)),
                Lookup::MissingKid => Err(Error::new(
                    ErrorKind::MissingKid,
                    "no single HMAC key fits a token without kid",
                )),
                Lookup::UnknownKid => Err(self.unknown(kid)),
            };
        }
        let fail_closed_at = self.fail_closed_at_ms.load(Ordering::SeqCst);
        if fail_closed_at != 0 && now >= fail_closed_at {
            return Err(Error::new(
                ErrorKind::KeysStale,
                format!("keys of {} are older than max_stale; failing closed", self.name),
            ));
        }
        if let Some(kid) = kid {
            if self.revoked_kids.read().contains(kid) {
                return Err(Error::new(
                    ErrorKind::KeyRevoked,
                    format!("kid {:?} was revoked", crate::token::truncate(kid)),
                ));
            }
        }
        if let Some(found) = self.lookup(kid, alg, now)? {
            return Ok(found);
        }
        if !self.is_remote() {
            return Err(self.unknown(kid));
        }
        if let Some(kid) = kid {
            let remembered = self.unknown_kids.lock().get(kid).is_some_and(|until| now < *until);
            if remembered {
                return Err(self.not_found(Some(kid)));
            }
        }
        let cooldown_ms = self.cfg.refresh.unknown_kid_cooldown_secs * 1000;
        let mut outcome = self.refresh(env, FetchReason::UnknownKid);
        if matches!(outcome, Refresh::Coalesced) && self.lookup(kid, alg, now)?.is_none() {
            // The fetch we waited for may have started before this key was
            // published: ask once more (still bound by the cooldown), rather
            // than remember a valid new kid as unknown for a whole window.
            outcome = self.refresh(env, FetchReason::UnknownKid);
        }
        match outcome {
            Refresh::Done | Refresh::Coalesced => {}
            Refresh::RateLimited(until) => {
                self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                self.remember(kid, now, until);
            }
            Refresh::Failed(_) => self.remember(kid, now, now + cooldown_ms),
        }
        if let Some(found) = self.lookup(kid, alg, now)? {
            return Ok(found);
        }
        self.remember(kid, now, now + cooldown_ms);
        Err(self.not_found(kid))
    }

    /// The error for a key not found after any allowed refresh: the keys as a
    /// whole are unavailable if none was ever loaded, else the kid is unknown.
    fn not_found(&self, kid: Option<&str>) -> Error {
        if self.keys.read().loaded {
            return self.unknown(kid);
        }
        let why = self
            .sched
            .lock()
            .last_error
            .clone()
            .unwrap_or_else(|| "no keys fetched yet".into());
        Error::new(ErrorKind::KeysUnavailable, format!("no keys for {}: {why}", self.name))
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

    fn remember(&self, kid: Option<&str>, now: u64, until: u64) {
        let Some(kid) = kid else { return };
        let mut m = self.unknown_kids.lock();
        if m.len() >= MAX_REMEMBERED_KIDS {
            m.retain(|_, u| *u > now);
        }
        if m.len() < MAX_REMEMBERED_KIDS {
            m.insert(kid.to_owned(), until);
        }
    }

    fn lookup(&self, kid: Option<&str>, alg: Alg, now: u64) -> Result<Option<(Arc<Key>, u64)>> {
        let ks = self.keys.read().clone();
        match ks.set.find(kid, alg) {
            Lookup::Found(k) => Ok(Some((k.clone(), u64::MAX))),
            Lookup::Mismatch => Err(mismatch(kid, alg)),
            Lookup::MissingKid if ks.loaded => Err(Error::new(
                ErrorKind::MissingKid,
                "token has no kid and no single key fits its alg",
            )),
            Lookup::MissingKid => Ok(None),
            Lookup::UnknownKid => Ok(ks
                .retired
                .iter()
                .find(|(k, until)| k.kid.as_deref() == kid && now < *until && k.fits(alg))
                .map(|(k, until)| (k.clone(), *until))),
        }
    }

    /// Fetch now, unless another thread is already fetching (then wait for
    /// it) or, for an unknown kid, the cooldown forbids it.
    pub(crate) fn refresh(&self, env: &Env, reason: FetchReason) -> Refresh {
        let fork = crate::fork::generation();
        let mut gate = self.gate.lock();
        if gate.in_flight && gate.in_flight_fork == fork {
            let seen = gate.completed;
            let deadline = std::time::Instant::now() + env.fetch_wait;
            while gate.in_flight && gate.completed == seen {
                if self.gate_cv.wait_until(&mut gate, deadline).timed_out() {
                    break;
                }
            }
            let finished = gate.completed != seen;
            if finished && gate.last_ok {
                return Refresh::Coalesced;
            }
            drop(gate);
            // The waiter gets the outcome of the fetch it waited for: a caller
            // that fetched again after a failure or a hang would wait a second
            // timeout (http.timeout_ms bounds the whole wait of a verify).
            let why = if finished {
                self.sched
                    .lock()
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "fetch failed".into())
            } else {
                format!(
                    "the fetch in flight did not finish within {} ms",
                    env.fetch_wait.as_millis()
                )
            };
            return Refresh::Failed(why);
        }
        let now = env.clock.now_ms();
        if reason == FetchReason::UnknownKid {
            let cooldown = self.cfg.refresh.unknown_kid_cooldown_secs * 1000;
            if let Some(last) = gate.last_on_demand_ms {
                if now < last.saturating_add(cooldown) {
                    return Refresh::RateLimited(last + cooldown);
                }
            }
            gate.last_on_demand_ms = Some(now);
        }
        gate.in_flight = true;
        gate.in_flight_fork = fork;
        drop(gate);

        // Reset the gate even if the fetch panics, so no thread waits forever.
        struct Release<'a> {
            issuer: &'a Issuer,
            ok: bool,
        }
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                let mut gate = self.issuer.gate.lock();
                gate.in_flight = false;
                gate.completed += 1;
                gate.last_ok = self.ok;
                drop(gate);
                self.issuer.gate_cv.notify_all();
            }
        }
        let mut release = Release {
            issuer: self,
            ok: false,
        };
        match self.fetch_and_apply(env, reason, now) {
            Ok(()) => {
                release.ok = true;
                let mut s = self.sched.lock();
                s.failures = 0;
                s.last_success_ms = Some(now);
                s.last_error = None;
                Refresh::Done
            }
            Err(e) => {
                self.counters.fetch_failures.fetch_add(1, Ordering::Relaxed);
                let mut s = self.sched.lock();
                s.failures = s.failures.saturating_add(1);
                s.next_ms = now + self.backoff_ms(s.failures, e.retry_after_secs);
                if s.failures >= REDISCOVER_AFTER_FAILURES {
                    s.resolved_jwks_uri = None;
                }
                s.last_error = Some(e.message.clone());
                log::warn!(
                    "issuer {}: {} fetch failed (attempt {}): {e}",
                    self.name,
                    reason.as_str(),
                    s.failures
                );
                Refresh::Failed(e.message)
            }
        }
    }

    /// Delay before the next attempt after `failures` consecutive failures.
    /// A server's `Retry-After` is honoured as a lower bound on it (retrying
    /// sooner is what it asked us not to do), clamped to `backoff_max_secs`
    /// so a server cannot push refreshes out until the keys go stale.
    fn backoff_ms(&self, failures: u32, retry_after_secs: Option<u64>) -> u64 {
        let r = &self.cfg.refresh;
        let exp = r
            .backoff_initial_secs
            .saturating_mul(1u64 << failures.saturating_sub(1).min(30));
        let base = exp.min(r.backoff_max_secs) * 1000;
        // ±20 % jitter so a fleet does not retry in lockstep.
        let spread = base / 5;
        let backoff = base - spread + fastrand::u64(0..=spread * 2);
        match retry_after_secs {
            Some(secs) => backoff.max(secs.min(r.backoff_max_secs) * 1000),
            None => backoff,
        }
    }

    fn ttl_ms(&self, max_age_secs: Option<u64>) -> u64 {
        self.cfg.refresh.ttl_secs(max_age_secs) * 1000
    }

    fn schedule_after_success(&self, now: u64, ttl_ms: u64) {
        // Refresh at (0.9 - jitter·U) of the TTL, ahead of expiry.
        let fraction = 0.9 - self.cfg.refresh.jitter * fastrand::f64();
        self.sched.lock().next_ms = now + (ttl_ms as f64 * fraction) as u64;
    }

    fn fetch_and_apply(&self, env: &Env, reason: FetchReason, now: u64) -> std::result::Result<(), FetchError> {
        self.counters.fetched(reason);
        match &self.source {
            Source::LocalOnly => Ok(()),
            Source::Inline(body) => Ok(self.apply_body(body, now, u64::MAX).map(drop)?),
            Source::File(path) => {
                let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                let body = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
                self.apply_body(&body, now, u64::MAX)?;
                let mut s = self.sched.lock();
                s.file_mtime = mtime;
                s.next_ms = now + FILE_POLL_MS;
                Ok(())
            }
            Source::Remote { jwks_uri } => {
                // One budget for the whole fetch: discovery, the JWKS and
                // every redirect of either share it.
                let deadline = env.http.deadline();
                let url = match jwks_uri {
                    Some(u) => u.clone(),
                    None => self.discovered_jwks_uri(env, now, deadline)?,
                };
                let loaded = self.keys.read().loaded;
                let validators = if loaded {
                    Some(self.sched.lock().validators.clone())
                } else {
                    None
                };
                let no_cache = matches!(reason, FetchReason::UnknownKid | FetchReason::Manual);
                match env.http.get_until(&url, validators.as_ref(), no_cache, deadline)? {
                    Fetched::NotModified { max_age_secs } => {
                        if !loaded {
                            return Err("304 Not Modified without a cached keyset".into());
                        }
                        self.counters.not_modified.fetch_add(1, Ordering::Relaxed);
                        let ttl = self.ttl_ms(max_age_secs);
                        self.extend(now, ttl);
                        self.schedule_after_success(now, ttl);
                        Ok(())
                    }
                    Fetched::Body {
                        body,
                        validators,
                        max_age_secs,
                        ..
                    } => {
                        let ttl = self.ttl_ms(max_age_secs);
                        let n = self.apply_body(&body, now, now + ttl)?;
                        self.sched.lock().validators = validators;
                        self.schedule_after_success(now, ttl);
                        log::info!(
                            "issuer {}: {} keys from {url} ({}), ttl {} s",
                            self.name,
                            n,
                            reason.as_str(),
                            ttl / 1000
                        );
                        if let Some(dir) = &env.state_dir {
                            if let Err(e) = crate::state::save(dir, &self.name, now, &body) {
                                log::warn!("issuer {}: cannot persist JWKS in {}: {e}", self.name, dir.display());
                            }
                        }
                        Ok(())
                    }
                }
            }
        }
    }

    /// The `jwks_uri` to fetch: the one discovery found, until the discovery
    /// document's TTL runs out (or repeated failures forgot it); then
    /// discovery is asked again, so a provider can move its keys.
    fn discovered_jwks_uri(&self, env: &Env, now: u64, deadline: Instant) -> std::result::Result<String, FetchError> {
        let known = {
            let s = self.sched.lock();
            match &s.resolved_jwks_uri {
                Some(u) if now < s.discovery_expires_ms => return Ok(u.clone()),
                known => known.clone(),
            }
        };
        match env.http.discover_until(&self.name, deadline) {
            Ok(found) => {
                if let Some(old) = known.as_deref().filter(|old| *old != found.jwks_uri) {
                    log::info!("issuer {}: jwks_uri moved from {old} to {}", self.name, found.jwks_uri);
                }
                let mut s = self.sched.lock();
                s.resolved_jwks_uri = Some(found.jwks_uri.clone());
                s.discovery_expires_ms = now + self.ttl_ms(found.max_age_secs);
                Ok(found.jwks_uri)
            }
            // Discovery is down but the keys may not be: keep the last
            // jwks_uri (discovery is retried next refresh) rather than fail a
            // refresh the JWKS host could answer. Repeated JWKS failures
            // forget it (REDISCOVER_AFTER_FAILURES).
            Err(e) => match known {
                Some(u) => {
                    log::warn!("issuer {}: rediscovery failed, keeping jwks_uri {u}: {e}", self.name);
                    Ok(u)
                }
                None => Err(e),
            },
        }
    }

    /// Parse and install a JWKS; refuse a set with no usable key.
    fn apply_body(&self, body: &[u8], now: u64, expires_at: u64) -> std::result::Result<usize, String> {
        let (keys, skipped) = parse_jwks(body, &self.cfg.algorithms)?;
        let keys: Vec<Arc<Key>> = {
            let revoked = self.revoked_kids.read();
            keys.into_iter()
                .filter(|k| !k.kid.as_ref().is_some_and(|kid| revoked.contains(kid)))
                .map(Arc::new)
                .collect()
        };
        if keys.is_empty() {
            return Err(format!("JWKS has no usable key ({} skipped)", skipped.len()));
        }
        let n = keys.len();
        self.sched.lock().skipped = skipped;
        self.install(KeySet::new(keys), now, expires_at);
        Ok(n)
    }

    fn install(&self, set: KeySet, now: u64, expires_at: u64) {
        let grace_ms = self.cfg.refresh.rotation_grace_secs * 1000;
        let removed = {
            let mut guard = self.keys.write();
            let old = guard.clone();
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
            *guard = Arc::new(KeyState {
                set,
                retired,
                loaded: true,
                fetched_at_ms: now,
                expires_at_ms: expires_at,
            });
            removed
        };
        // After the new set is visible: a verification that reads the new
        // epoch is guaranteed to look keys up in the new set.
        if !removed.is_empty() {
            self.epoch.fetch_add(1, Ordering::SeqCst);
            let kids: Vec<_> = removed.iter().map(|k| k.kid.clone().unwrap_or_default()).collect();
            log::info!(
                "issuer {}: keys removed {kids:?}; cached results for them invalidated",
                self.name
            );
        }
        self.store_fail_closed(expires_at);
    }

    /// A 304 confirmed the current set: extend its lifetime.
    fn extend(&self, now: u64, ttl_ms: u64) {
        let mut guard = self.keys.write();
        let old = guard.clone();
        *guard = Arc::new(KeyState {
            set: KeySet::new(old.set.keys().to_vec()),
            retired: old.retired.clone(),
            loaded: true,
            fetched_at_ms: now,
            expires_at_ms: now + ttl_ms,
        });
        drop(guard);
        self.store_fail_closed(now + ttl_ms);
    }

    fn store_fail_closed(&self, expires_at: u64) {
        let at = if self.is_remote() {
            expires_at.saturating_add(self.cfg.refresh.max_stale_secs * 1000)
        } else {
            u64::MAX
        };
        self.fail_closed_at_ms.store(at, Ordering::SeqCst);
    }

    /// Remove a key now and refuse it from later fetches.
    pub(crate) fn revoke_kid(&self, kid: &str) {
        self.revoked_kids.write().insert(kid.to_owned());
        {
            let mut guard = self.keys.write();
            let old = guard.clone();
            let keep = |k: &Arc<Key>| k.kid.as_deref() != Some(kid);
            *guard = Arc::new(KeyState {
                set: KeySet::new(old.set.keys().iter().filter(|k| keep(k)).cloned().collect()),
                retired: old.retired.iter().filter(|(k, _)| keep(k)).cloned().collect(),
                loaded: old.loaded,
                fetched_at_ms: old.fetched_at_ms,
                expires_at_ms: old.expires_at_ms,
            });
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
        log::warn!("issuer {}: kid {:?} revoked", self.name, crate::token::truncate(kid));
    }

    /// Run a scheduled refresh if one is due. Returns when the next is due (ms).
    pub(crate) fn run_due(&self, env: &Env) -> u64 {
        let now = env.clock.now_ms();
        let next = self.sched.lock().next_ms;
        match &self.source {
            Source::LocalOnly | Source::Inline(_) => u64::MAX,
            Source::File(path) => {
                if now < next {
                    return next;
                }
                let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                let changed = mtime != self.sched.lock().file_mtime;
                if changed {
                    if let Refresh::Failed(e) = self.refresh(env, FetchReason::Scheduled) {
                        log::warn!("issuer {}: keeping previous keys: {e}", self.name);
                    }
                }
                let mut s = self.sched.lock();
                s.next_ms = now + FILE_POLL_MS;
                s.next_ms
            }
            Source::Remote { .. } => {
                if now >= next {
                    self.refresh(env, FetchReason::Scheduled);
                }
                self.sched.lock().next_ms
            }
        }
    }

    /// Current health.
    pub(crate) fn health(&self, now: u64) -> Health {
        if !self.is_remote() {
            return Health::Fresh;
        }
        let fail_closed_at = self.fail_closed_at_ms.load(Ordering::SeqCst);
        let ks = self.keys.read().clone();
        if !ks.loaded || now >= fail_closed_at {
            Health::FailedClosed
        } else if now > ks.expires_at_ms {
            Health::Stale
        } else {
            Health::Fresh
        }
    }

    /// Usable and skipped keys, for diagnostics (CLI `jwks`).
    pub(crate) fn describe_keys(&self) -> (Vec<Arc<Key>>, Vec<SkippedKey>) {
        let ks = self.keys.read().clone();
        let mut keys = ks.set.keys().to_vec();
        keys.extend(self.local.keys().iter().cloned());
        (keys, self.sched.lock().skipped.clone())
    }

    pub(crate) fn stats(&self, now: u64) -> IssuerStats {
        let ks = self.keys.read().clone();
        let s = self.sched.lock();
        let c = &self.counters;
        IssuerStats {
            issuer: self.name.to_string(),
            health: self.health(now),
            keys: (ks.set.len() + self.local.len()) as u64,
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
            last_success_ms: s.last_success_ms,
            last_error: s.last_error.clone(),
        }
    }
}

fn mismatch(kid: Option<&str>, alg: Alg) -> Error {
    Error::new(
        ErrorKind::KeyAlgorithmMismatch,
        format!("key {} cannot verify {alg}", crate::token::describe_kid(kid)),
    )
}
