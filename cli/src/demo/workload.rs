//! The demo's traffic: worker threads verifying pooled service tokens with
//! skewed popularity, the revoked-token replays, and the unknown-kid storm.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwtwarden::Verifier;
use serde_json::json;

use super::Phase;

/// A service token in the pool.
#[derive(Debug)]
pub struct PoolToken {
    /// Unique within the run.
    pub id: u64,
    /// The compact JWT.
    pub token: String,
    /// The kid it was signed with.
    pub kid: String,
    /// Its `sub` (the service).
    pub sub: String,
    /// Its `jti`.
    pub jti: String,
    /// Its `exp`, seconds.
    pub exp: u64,
}

/// Revocation progress, seen by the workers.
pub const NOT_REVOKED: u8 = 0;
/// `revoke_jti` is running: either outcome is acceptable.
pub const REVOKING: u8 = 1;
/// `revoke_jti` has returned: the token must be rejected from now on.
pub const REVOKED: u8 = 2;

/// Per-phase counts of legitimate requests.
#[derive(Default)]
pub struct PhaseCounts {
    /// Legitimate requests (pool tokens not revoked).
    pub legit: AtomicU64,
    /// Of which served from the cache.
    pub cached: AtomicU64,
    /// Of which rejected: each one is a broken guarantee.
    pub failed: AtomicU64,
}

/// A legitimate request that failed, for the report.
#[derive(Clone, Debug)]
pub struct FailureSample {
    /// When, seconds into the run.
    pub at_secs: f64,
    /// The phase.
    pub phase: Phase,
    /// The error kind.
    pub kind: &'static str,
    /// The error message.
    pub message: String,
    /// The kid of the token.
    pub kid: String,
    /// The token's fingerprint.
    pub fingerprint: String,
}

/// State shared by the control thread, workers, storm and monitor.
pub struct Shared {
    /// The verifier under test.
    pub verifier: Verifier,
    /// The current phase (index into [`Phase::ALL`]).
    pub phase: AtomicUsize,
    /// Workers stop when set.
    pub stop: AtomicBool,
    /// Start of the traffic (set once, when the workers start).
    pub t0: OnceLock<Instant>,
    pool: RwLock<Arc<Vec<Arc<PoolToken>>>>,
    pool_gen: AtomicU64,
    /// The id of the token being revoked (`u64::MAX`: none).
    pub revoked_id: AtomicU64,
    /// [`NOT_REVOKED`], [`REVOKING`] or [`REVOKED`].
    pub revocation: AtomicU8,
    replay: RwLock<Option<Arc<PoolToken>>>,
    /// Legitimate requests by phase.
    pub phases: [PhaseCounts; Phase::COUNT],
    /// All verifications by the workers (flushed in batches).
    pub verifications: AtomicU64,
    /// Verifications of the revoked token after `revoke_jti` returned.
    pub replay_attempts: AtomicU64,
    /// ... of which accepted: must stay 0.
    pub replay_accepted: AtomicU64,
    /// Kinds the revoked token was rejected with after revocation.
    pub replay_kinds: Mutex<BTreeMap<&'static str, u64>>,
    /// The first legitimate failures.
    pub samples: Mutex<Vec<FailureSample>>,
}

const MAX_SAMPLES: usize = 20;
const FLUSH_EVERY: u64 = 1024;
/// One request in this many (per worker) replays the revoked token. A
/// replay is a cache miss that checks a signature, so it is kept rare.
pub const REPLAY_EVERY: u64 = 4096;

impl Shared {
    /// State around `verifier`, with the initial token pool.
    pub fn new(verifier: Verifier, pool: Vec<Arc<PoolToken>>) -> Shared {
        Shared {
            verifier,
            phase: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            t0: OnceLock::new(),
            pool: RwLock::new(Arc::new(pool)),
            pool_gen: AtomicU64::new(0),
            revoked_id: AtomicU64::new(u64::MAX),
            revocation: AtomicU8::new(NOT_REVOKED),
            replay: RwLock::new(None),
            phases: Default::default(),
            verifications: AtomicU64::new(0),
            replay_attempts: AtomicU64::new(0),
            replay_accepted: AtomicU64::new(0),
            replay_kinds: Mutex::new(BTreeMap::new()),
            samples: Mutex::new(Vec::new()),
        }
    }

    /// Make `pool` the one workers draw from.
    pub fn publish_pool(&self, pool: Vec<Arc<PoolToken>>) {
        *self.pool.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pool);
        self.pool_gen.fetch_add(1, Ordering::SeqCst);
    }

    fn snapshot(&self) -> (u64, Arc<Vec<Arc<PoolToken>>>) {
        let generation = self.pool_gen.load(Ordering::SeqCst);
        let pool = self.pool.read().unwrap_or_else(|e| e.into_inner()).clone();
        (generation, pool)
    }

    /// Start replaying `token` (revoked) from the workers.
    pub fn set_replay(&self, token: Arc<PoolToken>) {
        *self.replay.write().unwrap_or_else(|e| e.into_inner()) = Some(token);
    }

    /// Seconds since the run started.
    pub fn secs(&self) -> f64 {
        self.t0.get().map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    /// The current phase.
    pub fn current_phase(&self) -> Phase {
        Phase::ALL[self.phase.load(Ordering::Relaxed)]
    }
}

/// A worker's unflushed counts.
#[derive(Default)]
struct Local {
    phases: [[u64; 3]; Phase::COUNT],
    verifications: u64,
    replay_attempts: u64,
    replay_accepted: u64,
}

impl Local {
    fn flush(&mut self, s: &Shared) {
        for (i, [legit, cached, failed]) in self.phases.iter().enumerate() {
            let c = &s.phases[i];
            c.legit.fetch_add(*legit, Ordering::Relaxed);
            c.cached.fetch_add(*cached, Ordering::Relaxed);
            c.failed.fetch_add(*failed, Ordering::Relaxed);
        }
        s.verifications.fetch_add(self.verifications, Ordering::Relaxed);
        s.replay_attempts.fetch_add(self.replay_attempts, Ordering::Relaxed);
        s.replay_accepted.fetch_add(self.replay_accepted, Ordering::Relaxed);
        *self = Local::default();
    }
}

/// Skewed popularity: index `i` of `n` with probability falling off like a
/// cube root (the top 1 % of tokens take about a fifth of the traffic).
fn pick(rng: &mut fastrand::Rng, n: usize) -> usize {
    let u = rng.f64();
    ((u * u * u) * n as f64) as usize % n
}

/// One worker: verify until told to stop.
pub fn worker(s: &Shared, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut generation, mut pool) = s.snapshot();
    let mut local = Local::default();
    let mut i: u64 = 0;
    while !s.stop.load(Ordering::Relaxed) {
        i += 1;
        if s.pool_gen.load(Ordering::Relaxed) != generation {
            (generation, pool) = s.snapshot();
        }
        let phase = s.phase.load(Ordering::Relaxed);
        if i.is_multiple_of(REPLAY_EVERY) && s.revocation.load(Ordering::SeqCst) == REVOKED {
            let replay = s.replay.read().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(t) = replay {
                check(s, &t, phase, &mut local);
            }
        }
        let t = &pool[pick(&mut rng, pool.len())];
        check(s, t, phase, &mut local);
        if i.is_multiple_of(FLUSH_EVERY) {
            local.flush(s);
        }
    }
    local.flush(s);
}

fn check(s: &Shared, t: &PoolToken, phase: usize, local: &mut Local) {
    // Read the revocation state *before* verifying: only a verification that
    // started after `revoke_jti` returned must be a rejection.
    let revocation = s.revocation.load(Ordering::SeqCst);
    let result = s.verifier.verify(&t.token);
    local.verifications += 1;
    // ... and the revoked id *after*: a rejection as revoked implies it is set.
    if t.id == s.revoked_id.load(Ordering::SeqCst) {
        if revocation == REVOKED {
            local.replay_attempts += 1;
            match &result {
                Ok(_) => local.replay_accepted += 1,
                Err(e) => {
                    *s.replay_kinds
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(e.kind().as_str())
                        .or_default() += 1
                }
            }
        }
        return;
    }
    let counts = &mut local.phases[phase];
    counts[0] += 1;
    match result {
        Ok(v) => counts[1] += u64::from(v.cached()),
        Err(e) => {
            counts[2] += 1;
            let mut samples = s.samples.lock().unwrap_or_else(|e| e.into_inner());
            if samples.len() < MAX_SAMPLES {
                samples.push(FailureSample {
                    at_secs: s.secs(),
                    phase: Phase::ALL[phase],
                    kind: e.kind().as_str(),
                    message: e.message().to_string(),
                    kid: t.kid.clone(),
                    fingerprint: jwtwarden::fingerprint(t.token.as_bytes()),
                });
            }
        }
    }
}

/// What the unknown-kid storm did.
#[derive(Debug, Default)]
pub struct StormOutcome {
    /// Tokens sent.
    pub tokens: u64,
    /// Of which accepted (must be 0).
    pub accepted: u64,
    /// Rejections by kind.
    pub rejected: BTreeMap<&'static str, u64>,
    /// How long sending them took.
    pub secs: f64,
}

/// `n` well-formed tokens claiming the real issuer, each with a new random
/// kid and a random signature: what an attacker (or a confused client) can
/// produce without any key.
pub fn storm_tokens(issuer: &str, n: usize, now: u64, rng: &mut fastrand::Rng) -> Vec<String> {
    (0..n)
        .map(|_| {
            let header = json!({"alg": "RS256", "typ": "JWT", "kid": format!("storm-{:016x}", rng.u64(..))});
            let claims = json!({
                "iss": issuer, "aud": "api", "sub": "attacker",
                "iat": now, "exp": now + 3600, "jti": format!("{:032x}", rng.u128(..)),
            });
            let mut sig = [0u8; 256];
            rng.fill(&mut sig);
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string()),
                URL_SAFE_NO_PAD.encode(sig)
            )
        })
        .collect()
}

/// Send every storm token once, as fast as possible.
pub fn storm(s: &Shared, tokens: &[String]) -> StormOutcome {
    let start = Instant::now();
    let mut out = StormOutcome::default();
    for t in tokens {
        out.tokens += 1;
        match s.verifier.verify(t) {
            Ok(_) => out.accepted += 1,
            Err(e) => *out.rejected.entry(e.kind().as_str()).or_default() += 1,
        }
    }
    out.secs = start.elapsed().as_secs_f64();
    out
}

/// Poll `cond` every 10 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popularity_is_skewed_and_in_range() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut hits = [0u32; 200];
        for _ in 0..100_000 {
            hits[pick(&mut rng, 200)] += 1;
        }
        assert!(hits[0] > 10 * hits[199].max(1), "{} vs {}", hits[0], hits[199]);
        assert!(hits.iter().all(|&h| h > 0));
    }

    #[test]
    fn storm_tokens_are_distinct_and_well_formed() {
        let mut rng = fastrand::Rng::with_seed(1);
        let t = storm_tokens("http://127.0.0.1:1", 100, 1_700_000_000, &mut rng);
        let kids: std::collections::HashSet<_> = t
            .iter()
            .map(|t| crate::decode::decode(t).header_str("kid").map(str::to_owned))
            .collect();
        assert_eq!(kids.len(), 100);
        assert_eq!(
            crate::decode::decode(&t[0]).claim_str("iss"),
            Some("http://127.0.0.1:1")
        );
    }
}
