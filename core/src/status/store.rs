//! One issuer's status lists.
//!
//! Each list referenced by a token (and allowed) gets a [`Slot`], up to
//! `status_list.max_lists`; a slot is never removed, so its number is a
//! stable name cached results keep (`StatusRef::list`). A slot holds the
//! list in use as an immutable snapshot behind an `ArcSwap`: a cache hit
//! reads its token's status with one atomic load and no shared write.
//!
//! Every change to a slot's list (an install from a fetch, a 304 extending
//! its life) goes through [`Slot::install`]/[`Slot::extend`], serialized
//! by the verifier's trust door (`crate::trust`, which every trust change
//! takes), and stores the list before its fail-closed
//! time, so a reader never pairs a new deadline with an old list.
//!
//! Fetching runs on the refresh machine keys use (`crate::refresh`): one
//! fetch in flight per list (`Flight`), on first use with the verify
//! waiting at most `http.timeout_ms`, then in the background ahead of the
//! list's lifetime (its `ttl`, else `max-age`, clamped; never past its
//! `exp`), conditional GET, backoff with jitter on failure (`Retry-After`
//! honoured), the last good list kept until `max_stale_secs` past its
//! lifetime, then failing closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;

use crate::config::{HttpConfig, RefreshConfig, StatusListConfig};
use crate::door::Inside;
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::{FetchError, Fetched, HttpClient};
use crate::flight::{Flight, Need};
use crate::issuer::{Env, Issuer};
use crate::metrics::{Health, StatusListStats};
use crate::refresh::{Asker, Machine, Next, Policy, Refresh};
use crate::status::list::StatusList;
use crate::status::{allowed, StatusRef};

/// A list in use.
pub(crate) struct Loaded {
    pub list: StatusList,
    /// When it was fetched or last confirmed (ms).
    pub fetched_at_ms: u64,
    /// The end of its lifetime (ms): fetch + ttl, never past `exp`.
    pub expires_at_ms: u64,
    /// Its `ttl` claim, kept for a 304's new lifetime.
    ttl_secs: Option<u64>,
    /// Its `exp` claim (ms).
    exp_ms: Option<u64>,
    /// Its `iat` claim (ms): an older list never replaces it.
    iat_ms: u64,
    /// Size of the Status List Token, bytes.
    pub token_bytes: usize,
}

#[derive(Default)]
struct Counters {
    fetches: AtomicU64,
    fetch_failures: AtomicU64,
    not_modified: AtomicU64,
    rejected: AtomicU64,
}

/// One referenced list.
pub(crate) struct Slot {
    pub uri: Arc<str>,
    current: ArcSwapOption<Loaded>,
    /// The list is refused from this time (ms); 0 until one is installed.
    fail_closed_at_ms: AtomicU64,
    refresh: Machine,
    flight: Flight,
    counters: Counters,
}

impl Slot {
    fn new(uri: &str) -> Slot {
        Slot {
            uri: Arc::from(uri),
            current: ArcSwapOption::empty(),
            fail_closed_at_ms: AtomicU64::new(0),
            refresh: Machine::default(),
            flight: Flight::default(),
            counters: Counters::default(),
        }
    }

    /// The list in use, if one was ever installed.
    pub(crate) fn current(&self) -> Option<Arc<Loaded>> {
        self.current.load_full()
    }

    /// Install a verified list: it is in use for every thread when this
    /// returns. Through the verifier's trust door, like every trust change.
    fn install(&self, _door: &Inside<'_>, loaded: Loaded, fail_closed_at: u64) {
        self.current.store(Some(Arc::new(loaded)));
        self.fail_closed_at_ms.store(fail_closed_at, Ordering::SeqCst);
    }

    /// A 304 confirmed the list in use at `now`.
    fn extend(&self, _door: &Inside<'_>, now: u64, policy: &Policy, leeway_ms: u64, max_age: Option<u64>) -> bool {
        let Some(old) = self.current.load_full() else {
            return false;
        };
        let (expires_at, fail_at) = lifetime(policy, now, old.ttl_secs.or(max_age), old.exp_ms, leeway_ms);
        self.current.store(Some(Arc::new(Loaded {
            list: old.list.clone(),
            fetched_at_ms: now,
            expires_at_ms: expires_at,
            ttl_secs: old.ttl_secs,
            exp_ms: old.exp_ms,
            iat_ms: old.iat_ms,
            token_bytes: old.token_bytes,
        })));
        self.fail_closed_at_ms.store(fail_at, Ordering::SeqCst);
        true
    }

    fn health(&self, now: u64) -> Health {
        let fail_at = self.fail_closed_at_ms.load(Ordering::SeqCst);
        let expires_at = self.current.load().as_ref().map(|l| l.expires_at_ms);
        crate::refresh::health(now, expires_at, fail_at)
    }
}

/// A list's end of life and fail-closed time (ms) for a fetch at `now`.
fn lifetime(policy: &Policy, now: u64, ttl: Option<u64>, exp_ms: Option<u64>, leeway_ms: u64) -> (u64, u64) {
    let by_ttl = now.saturating_add(policy.ttl_ms(ttl));
    let expires_at = exp_ms.map_or(by_ttl, |exp| by_ttl.min(exp));
    let stale_until = policy.stale_until(expires_at);
    let fail_at = exp_ms.map_or(stale_until, |exp| stale_until.min(exp.saturating_add(leeway_ms)));
    (expires_at, fail_at)
}

/// One issuer's lists.
pub(crate) struct Store {
    cfg: StatusListConfig,
    /// The refresh rules of this issuer's lists.
    policy: Policy,
    /// Application-specific values accepted, as a bitset over 0..=255 (0 set).
    valid: [u64; 4],
    /// Own client: the list size cap, and no redirects (a redirect could
    /// leave the allowed path).
    http: Option<HttpClient>,
    slots: Box<[OnceLock<Slot>]>,
    by_uri: Mutex<HashMap<Arc<str>, u32>>,
    /// The `iss` a Status List Token must have, when it is not the name of
    /// the issuer whose keys verify it: a tenant whose key set is shared
    /// (its own issuer string), a SPIFFE trust domain with `issuer`.
    iss: Option<Arc<str>>,
}

impl Store {
    pub(crate) fn new(cfg: &StatusListConfig, refresh: &RefreshConfig, http: &HttpConfig) -> Result<Store> {
        Ok(Store::with_client(cfg, refresh, Store::client_for(cfg, http)?))
    }

    /// The client a store of `cfg` fetches with (`None` without
    /// `allowed_uris`): the list size cap, and no redirects. Stores of one
    /// `cfg` may share one (the tenants of one template).
    pub(crate) fn client_for(cfg: &StatusListConfig, http: &HttpConfig) -> Result<Option<HttpClient>> {
        if cfg.allowed_uris.is_empty() {
            return Ok(None);
        }
        let mut h = http.clone();
        h.max_response_bytes = cfg.max_token_bytes as u64;
        h.max_redirects = 0;
        HttpClient::new(&h).map(Some)
    }

    /// A store of `cfg` fetching with `client` (from [`Store::client_for`]
    /// of the same `cfg`, up to `allowed_uris`).
    pub(crate) fn with_client(cfg: &StatusListConfig, refresh: &RefreshConfig, client: Option<HttpClient>) -> Store {
        let mut valid = [0u64; 4];
        for v in std::iter::once(0u8).chain(cfg.valid_statuses.iter().copied()) {
            valid[usize::from(v / 64)] |= 1 << (v % 64);
        }
        Store {
            valid,
            http: client,
            slots: (0..cfg.max_lists).map(|_| OnceLock::new()).collect(),
            by_uri: Mutex::new(HashMap::new()),
            policy: Policy::for_status_lists(cfg, refresh),
            cfg: cfg.clone(),
            iss: None,
        }
    }

    /// The same store, whose lists must name `iss` as their issuer (not
    /// the name of the issuer whose keys verify them).
    pub(crate) fn with_iss(mut self, iss: &str) -> Store {
        self.iss = Some(Arc::from(iss));
        self
    }

    /// The issuer the lists must name, and that logs name.
    fn iss<'a>(&'a self, issuer: &'a Issuer) -> &'a str {
        self.iss.as_deref().unwrap_or(&issuer.name)
    }

    /// Whether `status` is acceptable for this issuer.
    #[inline]
    fn acceptable(&self, status: u8) -> bool {
        self.valid[usize::from(status / 64)] & (1 << (status % 64)) != 0
    }

    /// Whether a cached result with this reference may still be served:
    /// its list is not failed closed and its status is acceptable now.
    #[inline]
    pub(crate) fn status_ok(&self, r: StatusRef, now: u64) -> bool {
        let Some(slot) = self.slots.get(r.list as usize).and_then(OnceLock::get) else {
            return false;
        };
        if now >= slot.fail_closed_at_ms.load(Ordering::Relaxed) {
            return false;
        }
        let guard = slot.current.load();
        guard
            .as_ref()
            .and_then(|l| l.list.get(u64::from(r.idx)))
            .is_some_and(|s| self.acceptable(s))
    }

    /// The slot for `uri`, made if it is allowed and there is room.
    fn slot_for(&self, uri: &str) -> Result<(u32, &Slot)> {
        let mut by_uri = self.by_uri.lock();
        if let Some(&i) = by_uri.get(uri) {
            return Ok((i, self.slots[i as usize].get().expect("a numbered slot is set")));
        }
        if !allowed(&self.cfg.allowed_uris, uri) {
            return Err(Error::new(
                ErrorKind::StatusUriNotAllowed,
                format!(
                    "status list {:?} is not under the issuer's status_list.allowed_uris",
                    crate::token::truncate(uri)
                ),
            ));
        }
        let i = by_uri.len();
        if i >= self.slots.len() {
            return Err(Error::new(
                ErrorKind::StatusListUnavailable,
                format!(
                    "more than status_list.max_lists ({}) lists referenced",
                    self.slots.len()
                ),
            ));
        }
        let slot = self.slots[i].get_or_init(|| Slot::new(uri));
        by_uri.insert(slot.uri.clone(), i as u32);
        Ok((i as u32, slot))
    }

    /// Check the status of a token whose signature and claims passed:
    /// `uri`/`idx` from its `status.status_list`. Fetches the list on its
    /// first use (if allowed), waiting at most `http.timeout_ms`. `Ok`: the
    /// reference to keep with the cached result.
    pub(crate) fn check(&self, issuer: &Issuer, env: &Env, uri: &str, idx: u64, now: u64) -> Result<StatusRef> {
        let (list_id, slot) = self.slot_for(uri)?;
        if slot.current.load().is_none() {
            let due = self.sched_due(slot, now);
            if due {
                let deadline = Instant::now() + env.fetch_timeout;
                let _ = self.refresh(slot, issuer, env, "first use", deadline);
            }
        }
        let Some(loaded) = slot.current() else {
            let why = slot.refresh.last_error().unwrap_or_else(|| "not fetched yet".into());
            return Err(Error::new(
                ErrorKind::StatusListUnavailable,
                format!("status list {uri} unavailable: {why}"),
            ));
        };
        if now >= slot.fail_closed_at_ms.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::StatusListStale,
                format!("status list {uri} is past max_stale or its exp; failing closed"),
            ));
        }
        let rejected = |kind, msg: String| {
            slot.counters.rejected.fetch_add(1, Ordering::Relaxed);
            Err(Error::new(kind, msg))
        };
        let Some(status) = loaded.list.get(idx).filter(|_| idx <= u64::from(u32::MAX)) else {
            return rejected(
                ErrorKind::StatusIndexOutOfRange,
                format!("status idx {idx} is beyond the {} entries of {uri}", loaded.list.len()),
            );
        };
        match status {
            s if self.acceptable(s) => Ok(StatusRef {
                list: list_id,
                idx: idx as u32,
            }),
            1 => rejected(ErrorKind::Revoked, format!("status list {uri} says INVALID (revoked)")),
            2 => rejected(ErrorKind::Suspended, format!("status list {uri} says SUSPENDED")),
            s => rejected(
                ErrorKind::StatusNotValid,
                format!("status list {uri} gives status {s:#04x}, not configured valid"),
            ),
        }
    }

    fn sched_due(&self, slot: &Slot, now: u64) -> bool {
        slot.refresh.due(now)
    }

    /// Fetch the lists named in `status_list.preload`.
    pub(crate) fn preload(&self, issuer: &Issuer, env: &Env) {
        for uri in &self.cfg.preload {
            match self.slot_for(uri) {
                Ok((_, slot)) => {
                    let deadline = Instant::now() + env.fetch_timeout;
                    let _ = self.refresh(slot, issuer, env, "preload", deadline);
                }
                Err(e) => log::warn!("issuer {}: status list {uri}: {e}", self.iss(issuer)),
            }
        }
    }

    /// Run the scheduled refreshes that are due. Returns when the next is due (ms).
    pub(crate) fn run_due(&self, issuer: &Issuer, env: &Env) -> u64 {
        let mut next = u64::MAX;
        for slot in self.slots.iter().map_while(OnceLock::get) {
            if self.sched_due(slot, env.clock.now_ms()) {
                let deadline = Instant::now() + env.fetch_timeout;
                let _ = self.refresh(slot, issuer, env, "scheduled", deadline);
            }
            next = next.min(slot.refresh.next_ms());
        }
        next
    }

    /// Fetch `slot`'s list now, or join the fetch in flight.
    fn refresh(
        &self,
        slot: &Slot,
        issuer: &Issuer,
        env: &Env,
        reason: &str,
        deadline: Instant,
    ) -> std::result::Result<(), String> {
        let now = env.clock.now_ms();
        let fetch = || {
            slot.counters.fetches.fetch_add(1, Ordering::Relaxed);
            let fetch_deadline = deadline.min(Instant::now() + env.fetch_timeout);
            self.fetch_and_apply(slot, issuer, env, now, fetch_deadline)
        };
        let failed = |e: &FetchError, attempt: u32| {
            slot.counters.fetch_failures.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "issuer {}: status list {} {reason} fetch failed (attempt {attempt}): {e}",
                self.iss(issuer),
                slot.uri,
            );
        };
        let asker = Asker::Scheduled;
        let outcome = slot.refresh.run(
            &self.policy,
            &slot.flight,
            asker,
            Need::Any,
            now,
            deadline,
            fetch,
            failed,
        );
        match outcome {
            Refresh::Ok { .. } => Ok(()),
            Refresh::Failed { error } => Err(error),
            Refresh::TimedOut => Err("timed out waiting for the fetch in flight".into()),
            Refresh::RateLimited(_) => unreachable!("no cooldown asked"),
        }
    }

    /// Fetch, verify and install; what it means for the schedule.
    fn fetch_and_apply(
        &self,
        slot: &Slot,
        issuer: &Issuer,
        env: &Env,
        now: u64,
        deadline: Instant,
    ) -> std::result::Result<Next, FetchError> {
        let http = self.http.as_ref().ok_or("no status_list.allowed_uris")?;
        let loaded = slot.current.load().is_some();
        let validators = loaded.then(|| slot.refresh.validators());
        let leeway_ms = issuer.cfg.leeway_secs * 1000;
        match http.get_until(&slot.uri, validators.as_ref(), false, deadline)? {
            Fetched::NotModified { max_age_secs } => {
                if !slot.extend(&env.trust.enter(), now, &self.policy, leeway_ms, max_age_secs) {
                    return Err("304 Not Modified without a cached list".into());
                }
                slot.counters.not_modified.fetch_add(1, Ordering::Relaxed);
                Ok(Next::Expires(slot.current().map_or(now, |l| l.expires_at_ms), None))
            }
            Fetched::Body {
                body,
                validators,
                max_age_secs,
                ..
            } => {
                let t = super::token::verify(
                    &body,
                    &slot.uri,
                    issuer,
                    self.iss(issuer),
                    env,
                    self.cfg.max_token_bytes,
                    self.cfg.max_inflated_bytes,
                    now,
                )
                .map_err(|e| format!("status list {} refused: {e}", slot.uri))?;
                // A replayed (older, still unexpired) response would undo
                // the statuses the list in use set: refused like any bad
                // fetch, so the list in use stays until max_stale.
                if let Some(cur) = slot.current().filter(|cur| t.iat_ms < cur.iat_ms) {
                    return Err(format!(
                        "status list {} refused: issued at {} ms, before the list in use ({} ms): a replayed response",
                        slot.uri, t.iat_ms, cur.iat_ms
                    )
                    .into());
                }
                let (expires_at, fail_at) =
                    lifetime(&self.policy, now, t.ttl_secs.or(max_age_secs), t.exp_ms, leeway_ms);
                log::info!(
                    "issuer {}: status list {}: {} entries of {} bits, ttl {} s",
                    self.iss(issuer),
                    slot.uri,
                    t.list.len(),
                    t.list.bits(),
                    expires_at.saturating_sub(now) / 1000
                );
                slot.install(
                    &env.trust.enter(),
                    Loaded {
                        list: t.list,
                        fetched_at_ms: now,
                        expires_at_ms: expires_at,
                        ttl_secs: t.ttl_secs.or(max_age_secs),
                        exp_ms: t.exp_ms,
                        iat_ms: t.iat_ms,
                        token_bytes: body.len(),
                    },
                    fail_at,
                );
                Ok(Next::Expires(expires_at, Some(validators)))
            }
        }
    }

    /// Health of the list at `uri`, if it was ever referenced.
    pub(crate) fn health(&self, uri: &str, now: u64) -> Option<Health> {
        let i = *self.by_uri.lock().get(uri)?;
        Some(self.slots[i as usize].get()?.health(now))
    }

    /// Metrics of every list.
    pub(crate) fn stats(&self, issuer: &str, now: u64) -> Vec<StatusListStats> {
        self.slots
            .iter()
            .map_while(OnceLock::get)
            .map(|slot| {
                let cur = slot.current();
                let c = &slot.counters;
                StatusListStats {
                    issuer: issuer.to_string(),
                    uri: slot.uri.to_string(),
                    health: slot.health(now),
                    entries: cur.as_ref().map_or(0, |l| l.list.len()),
                    bits: cur.as_ref().map_or(0, |l| l.list.bits()),
                    token_bytes: cur.as_ref().map_or(0, |l| l.token_bytes as u64),
                    age_secs: cur.as_ref().map(|l| now.saturating_sub(l.fetched_at_ms) / 1000),
                    fetches: c.fetches.load(Ordering::Relaxed),
                    fetch_failures: c.fetch_failures.load(Ordering::Relaxed),
                    not_modified: c.not_modified.load(Ordering::Relaxed),
                    rejected: c.rejected.load(Ordering::Relaxed),
                    last_success_ms: slot.refresh.last_success_ms(),
                    last_error: slot.refresh.last_error(),
                }
            })
            .collect()
    }
}
