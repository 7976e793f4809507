//! The [`Verifier`]: the verification path of `docs/design.md`, in order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::cache::{Cache, Entry, Validity};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::HttpClient;
use crate::issuer::{Env, Issuer};
use crate::keys::{Key, SkippedKey};
use crate::metrics::{CacheStats, Health, MetricsSnapshot, VerificationStats, VerifierCounters};
use crate::refresher::Refresher;
use crate::revocation::Revocations;
use crate::token;
use crate::verified::{Verified, VerifiedToken};

/// Per-call options.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions<'a> {
    /// Verify for this configured issuer only, instead of choosing by the
    /// token's (unverified) `iss`.
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
}

pub(crate) struct Shared {
    pub env: Env,
    pub issuers: Vec<Issuer>,
    by_name: HashMap<String, usize>,
    cache: Option<Cache>,
    cache_max_ttl_ms: u64,
    max_token_bytes: usize,
    policy_version: AtomicU64,
    revocations: Revocations,
    counters: VerifierCounters,
    background: bool,
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
    pub fn with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Verifier> {
        config.validate()?;
        crate::fork::install();
        let http = HttpClient::new(&config.http)?;
        let issuers = config
            .issuers
            .iter()
            .cloned()
            .map(Issuer::new)
            .collect::<Result<Vec<_>>>()?;
        let by_name = issuers
            .iter()
            .enumerate()
            .map(|(i, iss)| (iss.name.to_string(), i))
            .collect();
        let shared = Arc::new(Shared {
            env: Env {
                clock,
                http,
                state_dir: config.state_dir.clone(),
                fetch_timeout: Duration::from_millis(config.http.timeout_ms),
            },
            issuers,
            by_name,
            cache: config
                .cache
                .enabled
                .then(|| Cache::new(config.cache.capacity, config.cache.max_bytes, config.cache.shards)),
            cache_max_ttl_ms: config.cache.max_ttl_secs * 1000,
            max_token_bytes: config.max_token_bytes,
            policy_version: AtomicU64::new(0),
            revocations: Revocations::new(config.revocation.max_entries, config.revocation.max_token_lifetime_secs),
            counters: VerifierCounters::default(),
            background: config.background_refresh,
        });
        for (i, issuer) in shared.issuers.iter().enumerate() {
            issuer.start(&shared.env, i)?;
        }
        let verifier = Verifier {
            refresher: Mutex::new(Refresher::spawn_if_needed(&shared)),
            refresher_fork: AtomicU64::new(crate::fork::generation()),
            shared,
        };
        Ok(verifier)
    }

    /// Verify a token, choosing the issuer by its `iss` claim.
    pub fn verify(&self, token: impl AsRef<[u8]>) -> Result<Verified> {
        self.verify_with(token, &VerifyOptions::default())
    }

    /// Verify a token with options (explicit issuer, `fresh`).
    pub fn verify_with(&self, token: impl AsRef<[u8]>, opts: &VerifyOptions<'_>) -> Result<Verified> {
        let token = token.as_ref();
        self.ensure_refresher();
        let s = &*self.shared;
        let now = s.env.clock.now_ms();
        let result = s.verify(token, opts, now);
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
        // The old handle's thread does not exist in this process; dropping
        // the handle only sets a flag nobody reads.
        *slot = Refresher::spawn_if_needed(&self.shared);
        self.refresher_fork.store(generation, Ordering::Relaxed);
        log::info!("refresher restarted after fork (pid {})", std::process::id());
    }

    /// Revoke every token with this `jti` (until `expires_at_secs`, the
    /// token's `exp`, if known; else for `revocation.max_token_lifetime_secs`).
    /// Effective for all threads when this returns.
    pub fn revoke_jti(&self, jti: &str, expires_at_secs: Option<u64>) -> Result<()> {
        self.shared.revocations.revoke_jti(jti, expires_at_secs, self.now_ms())
    }

    /// Revoke tokens of subject `sub` issued before `issued_before_secs`
    /// (tokens without `iat` included). Effective when this returns.
    pub fn revoke_subject(&self, sub: &str, issued_before_secs: u64) -> Result<()> {
        self.shared
            .revocations
            .revoke_subject(sub, issued_before_secs, self.now_ms())
    }

    /// Emergency key removal: stop trusting `kid` of `issuer` now, and ignore
    /// it in later fetches. Effective when this returns.
    pub fn revoke_kid(&self, issuer: &str, kid: &str) -> Result<()> {
        if kid.is_empty() {
            return Err(Error::new(ErrorKind::InvalidArgument, "kid must not be empty"));
        }
        self.issuer(issuer)?.revoke_kid(kid);
        Ok(())
    }

    /// Invalidate every cached result (for example after a policy change).
    /// Returns the new policy version.
    pub fn bump_policy_version(&self) -> u64 {
        self.shared.policy_version.fetch_add(1, Ordering::SeqCst) + 1
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
    pub fn run_due_refreshes(&self) {
        for iss in &self.shared.issuers {
            iss.run_due(&self.shared.env);
        }
    }

    /// The configured issuer names, in configuration order.
    pub fn issuers(&self) -> Vec<String> {
        self.shared.issuers.iter().map(|i| i.name.to_string()).collect()
    }

    /// Health of one issuer's keys.
    pub fn issuer_health(&self, issuer: &str) -> Result<Health> {
        Ok(self.issuer(issuer)?.health(self.now_ms()))
    }

    /// The usable keys of an issuer, and the keys its last fetch skipped.
    pub fn issuer_keys(&self, issuer: &str) -> Result<(Vec<Arc<Key>>, Vec<SkippedKey>)> {
        Ok(self.issuer(issuer)?.describe_keys())
    }

    /// A snapshot of every metric.
    pub fn metrics(&self) -> MetricsSnapshot {
        let s = &*self.shared;
        let now = self.now_ms();
        let c = &s.counters;
        let rejected = crate::error::ErrorKind::ALL
            .iter()
            .enumerate()
            .filter_map(|(i, k)| {
                let n = c.rejected[i.min(63)].load(Ordering::Relaxed);
                (n > 0).then(|| (k.as_str().to_string(), n))
            })
            .collect();
        MetricsSnapshot {
            verifications: VerificationStats {
                ok_fresh: c.ok_fresh.load(Ordering::Relaxed),
                ok_cached: c.ok_cached.get(),
                rejected,
            },
            cache: CacheStats {
                hits: c.cache_hits.get(),
                misses: c.cache_misses.load(Ordering::Relaxed),
                inserts: c.cache_inserts.load(Ordering::Relaxed),
                evictions: c.cache_evictions.load(Ordering::Relaxed),
                entries: s.cache.as_ref().map_or(0, |c| c.len()) as u64,
                capacity: s.cache.as_ref().map_or(0, |c| c.capacity()) as u64,
                bytes: s.cache.as_ref().map_or(0, |c| c.bytes()) as u64,
                max_bytes: s.cache.as_ref().map_or(0, |c| c.max_bytes()) as u64,
            },
            issuers: s.issuers.iter().map(|i| i.stats(now)).collect(),
            revocation_entries: s.revocations.len() as u64,
            policy_version: s.policy_version.load(Ordering::SeqCst),
        }
    }

    /// Metrics in the Prometheus text format.
    pub fn prometheus(&self) -> String {
        self.metrics().to_prometheus()
    }

    fn issuer(&self, name: &str) -> Result<&Issuer> {
        Ok(&self.shared.issuers[self.shared.index_of(name)?])
    }

    fn now_ms(&self) -> u64 {
        self.shared.env.clock.now_ms()
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("issuers", &self.issuers()).finish()
    }
}

/// Cache-entry validity for one lookup.
struct Check<'a> {
    s: &'a Shared,
    pinned: Option<usize>,
}

impl Validity for Check<'_> {
    #[inline]
    fn still_valid(&self, e: &Entry, now_ms: u64) -> bool {
        if now_ms >= e.valid_until_ms || self.pinned.is_some_and(|p| p != e.issuer) {
            return false;
        }
        let issuer = &self.s.issuers[e.issuer];
        issuer.epoch() == e.key_epoch
            && now_ms < issuer.fail_closed_at_ms.load(Ordering::Relaxed)
            && self.s.policy_version.load(Ordering::SeqCst) == e.policy_version
    }

    #[inline]
    fn revocation_generation(&self) -> u64 {
        self.s.revocations.generation()
    }

    fn revoked(&self, e: &Entry) -> bool {
        self.s.revocations.is_revoked(&e.verified.claims)
    }
}

impl Shared {
    fn verify(&self, token: &[u8], opts: &VerifyOptions<'_>, now: u64) -> Result<Verified> {
        if token.len() > self.max_token_bytes {
            return Err(Error::new(
                ErrorKind::TokenTooLarge,
                format!("token is {} bytes, limit {}", token.len(), self.max_token_bytes),
            ));
        }
        let pinned = match opts.issuer {
            None => None,
            Some(name) => Some(self.index_of(name)?),
        };
        // The cache is consulted before parsing: a hit is only possible for
        // a byte-identical token that already passed every step below, and
        // those steps depend only on the bytes and the configuration (whose
        // changes bump the policy version).
        let hash = self.cache.as_ref().map(|c| c.hash(token));
        if let (Some(cache), Some(hash), false) = (&self.cache, hash, opts.fresh) {
            if let Some(hit) = cache.get(hash, token, now, &Check { s: self, pinned }, &self.counters) {
                return Ok(Verified::new(hit, true));
            }
        }

        let parsed = token::parse(token, self.max_token_bytes)?;
        let index = match pinned {
            Some(i) => i,
            None => match parsed.claims.get("iss") {
                Some(serde_json::Value::String(iss)) => self.index_of(iss)?,
                // Nothing names a configured issuer: rejected without a fetch.
                _ => return Err(Error::new(ErrorKind::UnknownIssuer, "token has no string iss claim")),
            },
        };
        let issuer = &self.issuers[index];
        let alg = parsed.header.alg;
        if !issuer.cfg.algorithms.contains(&alg) {
            return Err(Error::new(
                ErrorKind::AlgorithmNotAllowed,
                format!("alg {alg} is not allowed for {}", issuer.name),
            ));
        }
        // Read the invalidation counters *before* looking keys up, so a
        // concurrent key removal or revocation makes this result stale
        // rather than letting it slip into the cache.
        let key_epoch = issuer.epoch();
        let policy_version = self.policy_version.load(Ordering::SeqCst);
        let revocation_seen = self.revocations.generation();

        let kid = parsed.header.kid.as_deref();
        let (key, key_usable_until) = issuer.resolve_key(&self.env, kid, alg, now)?;
        let signature_ok =
            jsonwebtoken::crypto::verify(parsed.signature_b64, parsed.signing_input, &key.decoding, alg.to_jwt())
                .unwrap_or(false);
        if !signature_ok {
            return Err(Error::new(
                ErrorKind::InvalidSignature,
                format!("signature does not verify with key {}", token::describe_kid(kid)),
            ));
        }
        let exp_ms = issuer.policy.check(&parsed.claims, parsed.header.typ.as_deref(), now)?;
        if self.revocations.is_revoked(&parsed.claims) {
            return Err(Error::new(ErrorKind::Revoked, "token has been revoked"));
        }
        let verified = Arc::new(VerifiedToken {
            claims: parsed.claims,
            issuer: issuer.name.clone(),
            kid: parsed.header.kid,
            alg,
            verified_at_ms: now,
            // The API reports `exp` in whole seconds: the millisecond `exp`
            // the checks used, rounded down.
            expires_at: exp_ms / 1000,
        });
        if let (Some(cache), Some(hash)) = (&self.cache, hash) {
            // Served only while now < valid_until_ms: the same instant the
            // claim check starts rejecting, not the end of that second.
            let valid_until_ms = issuer
                .policy
                .invalid_from_ms(exp_ms)
                .min(now.saturating_add(self.cache_max_ttl_ms))
                .min(key_usable_until);
            if valid_until_ms > now {
                let entry = Entry {
                    token: token.into(),
                    issuer: index,
                    key_epoch,
                    policy_version,
                    valid_until_ms,
                    verified: verified.clone(),
                };
                cache.insert(hash, entry, revocation_seen, &self.counters);
            }
        }
        Ok(Verified::new(verified, false))
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

    pub(crate) fn has_refreshable_issuers(&self) -> bool {
        self.background
            && self
                .issuers
                .iter()
                .any(|i| i.cfg.jwks_uri.is_some() || i.cfg.discovery || i.cfg.jwks_file.is_some())
    }
}
