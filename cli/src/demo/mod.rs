//! `jwtwarden demo`: the whole mission in one run, in-process, no network.
//!
//! A test issuer on 127.0.0.1 publishes RS256, ES256 and EdDSA keys with
//! `Cache-Control: max-age=2`. Worker threads verify a pool of service
//! tokens with skewed popularity while the control thread walks through the
//! phases below; a monitor thread draws the live display. At the end every
//! guarantee is checked from the counts and the verifier's own metrics.
//!
//! Phase order matters for the unknown-kid cooldown: the rotation's new kid
//! may need the one unknown-kid refresh a cooldown window allows, so the
//! rotation comes first and the storm starts only after that window has
//! passed; after the storm no new kid appears before the run ends.

mod report;
mod workload;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use jwtwarden::{Config, ErrorKind, Health, MetricsSnapshot, Verifier};
use jwtwarden_testissuer::{Alg, Fault, IssuerOptions, TestIssuer};
use serde_json::{json, Value};

use crate::{logging, timefmt, Exit};
use workload::{PoolToken, Shared, REVOKED, REVOKING};

/// Demo settings from the command line.
pub struct DemoOptions {
    /// Target run time.
    pub duration: Duration,
    /// Verifying threads.
    pub threads: usize,
    /// Service tokens in the pool.
    pub tokens: usize,
    /// Tokens in the unknown-kid storm.
    pub storm: usize,
    /// Print the JSON summary instead of the table.
    pub json: bool,
    /// No phase lines or progress display.
    pub quiet: bool,
    /// Log level requested with -v.
    pub verbose: u8,
}

/// JWKS lifetime the issuer announces (`Cache-Control: max-age`).
pub const JWKS_MAX_AGE_SECS: u64 = 2;
/// Unknown-kid refreshes at most once per this many seconds.
pub const COOLDOWN_SECS: u64 = 2;
/// The outage lasts at least this long, so keys pass their TTL and the
/// verifier visibly serves stale keys.
const MIN_OUTAGE: Duration = Duration::from_millis(2500);
/// How long the retired key may take to disappear (a scheduled refresh
/// happens within 90 % of the 2 s TTL; generous for loaded machines).
const RETIRE_TIMEOUT: Duration = Duration::from_secs(6);
/// Longest extra wait for the first successful fetch after the outage.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(4);

/// The phases, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Steady traffic; the cache fills.
    Warmup,
    /// A new RS256 key is published and used at once; old tokens continue.
    Rotation,
    /// A popular token is revoked by `jti`.
    Revocation,
    /// Tokens with random kids.
    Storm,
    /// The old key is retired.
    Retirement,
    /// The issuer answers 500, then drops connections.
    Outage,
    /// The issuer is back.
    Recovery,
}

impl Phase {
    /// Number of phases.
    pub const COUNT: usize = 7;
    /// Every phase, in order.
    pub const ALL: [Phase; Phase::COUNT] = [
        Phase::Warmup,
        Phase::Rotation,
        Phase::Revocation,
        Phase::Storm,
        Phase::Retirement,
        Phase::Outage,
        Phase::Recovery,
    ];

    /// Stable lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Warmup => "warmup",
            Phase::Rotation => "rotation",
            Phase::Revocation => "revocation",
            Phase::Storm => "storm",
            Phase::Retirement => "retirement",
            Phase::Outage => "outage",
            Phase::Recovery => "recovery",
        }
    }
}

/// Which of the issuer's signing keys a pool token uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Rsa,
    Ec,
    Ed,
}

impl Slot {
    fn for_index(i: usize) -> Slot {
        match i % 5 {
            0 | 1 => Slot::Rsa,
            2 | 3 => Slot::Ec,
            _ => Slot::Ed,
        }
    }
}

/// Facts gathered by the control thread while it runs the phases.
#[derive(Debug, Default)]
pub struct Facts {
    /// Seconds from process start to the first verification.
    pub setup_secs: f64,
    /// Seconds of traffic.
    pub run_secs: f64,
    /// Phase start times, seconds.
    pub phase_starts: Vec<(Phase, f64)>,
    /// (seconds, what happened).
    pub timeline: Vec<(f64, String)>,
    /// The RS256 kid before the rotation.
    pub old_kid: String,
    /// The RS256 kid after it.
    pub new_kid: String,
    /// Unknown-kid fetches during the rotation phase.
    pub rotation_unknown_kid_fetches: u64,
    /// An old-key token verified at the end of the rotation (key still published).
    pub old_token_ok_while_published: Option<Result<(), String>>,
    /// Seconds from retiring the key at the issuer to the verifier dropping it.
    pub retired_dropped_after: Option<f64>,
    /// How the old-key token was rejected after that.
    pub retired_token_result: Option<Result<(), String>>,
    /// The revoked token before revocation: `Ok(cached)` or the error kind.
    pub revoked_before: Option<Result<bool, String>>,
    /// The revoked token right after `revoke_jti`: `Ok` if accepted (bad), else the kind.
    pub revoked_after: Option<Result<(), String>>,
    /// The storm.
    pub storm: workload::StormOutcome,
    /// Unknown-kid fetches during the storm.
    pub storm_fetches: u64,
    /// Unknown-kid refreshes refused by the cooldown during the storm.
    pub storm_rate_limited: u64,
    /// Fetch failures during the outage.
    pub outage_fetch_failures: u64,
    /// Scheduled fetches attempted during the outage.
    pub outage_scheduled_fetches: u64,
    /// Seconds the outage lasted.
    pub outage_secs: f64,
    /// Seconds from the end of the outage to the next successful fetch.
    pub recovered_after: Option<f64>,
    /// Health at the end.
    pub final_health: Option<Health>,
    /// A worker or the monitor panicked: the counts are incomplete.
    pub thread_panicked: bool,
}

/// What the monitor thread saw.
#[derive(Debug, Default)]
pub struct Observed {
    /// Highest one-interval throughput, verifications per second.
    pub peak_per_sec: f64,
    /// Seconds the issuer's keys were reported stale.
    pub stale_secs: f64,
    /// Seconds the issuer was reported failed closed.
    pub failed_closed_secs: f64,
}

/// Run the demo.
pub fn run(opts: &DemoOptions) -> Exit {
    if opts.verbose == 0 {
        // The outage makes fetches fail on purpose; the summary reports them.
        log::set_max_level(log::LevelFilter::Error);
    }
    let started = Instant::now();
    let setup = match Setup::new(opts) {
        Ok(s) => s,
        Err(e) => {
            logging::eprint_line(&format!("jwtwarden: error: demo could not start: {e}"));
            return Exit::Unavailable;
        }
    };
    let outcome = setup.run(opts, started);
    let summary = report::Summary::build(opts, &outcome);
    if opts.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary.to_json()).expect("JSON serializes")
        );
    } else {
        summary.print();
    }
    if summary.all_held() {
        Exit::Ok
    } else {
        Exit::Failed
    }
}

/// Everything the report needs.
pub struct Outcome {
    /// The issuer URL.
    pub issuer: String,
    /// The verifier configuration used.
    pub config: Value,
    /// Control-thread facts.
    pub facts: Facts,
    /// Monitor observations.
    pub observed: Observed,
    /// Final metrics.
    pub metrics: MetricsSnapshot,
    /// Legitimate requests by phase: (legit, cached, failed).
    pub phases: Vec<(Phase, u64, u64, u64)>,
    /// All worker verifications.
    pub verifications: u64,
    /// Revoked-token verifications after revocation, and how many were accepted.
    pub replay_attempts: u64,
    /// See `replay_attempts`.
    pub replay_accepted: u64,
    /// Kinds the revoked token was rejected with.
    pub replay_kinds: BTreeMap<&'static str, u64>,
    /// The first legitimate failures.
    pub samples: Vec<workload::FailureSample>,
}

struct Setup {
    issuer: TestIssuer,
    config: Value,
    shared: Arc<Shared>,
    kids: BTreeMap<&'static str, String>,
    pool: Vec<Arc<PoolToken>>,
    next_id: u64,
    storm_tokens: Vec<String>,
    progress: ProgressBar,
    quiet: bool,
}

impl Setup {
    fn new(opts: &DemoOptions) -> Result<Setup, String> {
        let issuer = TestIssuer::start_with(&IssuerOptions {
            port: 0,
            algs: vec![Alg::RS256, Alg::ES256, Alg::EdDSA],
            admin: false,
        })
        .map_err(|e| format!("cannot start the test issuer: {e}"))?;
        issuer.set_cache_control(Some(&format!("max-age={JWKS_MAX_AGE_SECS}")));
        let published = issuer.published_kids();
        let kids: BTreeMap<&'static str, String> = [("rsa", 0), ("ec", 1), ("ed", 2)]
            .into_iter()
            .map(|(name, i)| (name, published[i].clone()))
            .collect();
        let url = issuer.url();
        let config = json!({
            "issuers": [{
                "issuer": url,
                "jwks_uri": issuer.jwks_uri(),
                "audiences": ["api"],
                "algorithms": ["RS256", "ES256", "EdDSA"],
                "refresh": {
                    "min_ttl_secs": 1,
                    "unknown_kid_cooldown_secs": COOLDOWN_SECS,
                    "backoff_initial_secs": 1,
                    "backoff_max_secs": 2
                }
            }],
            // A new kid that meets a scheduled fetch begun before the
            // rotation asks again only with half of timeout_ms left: 2 s, so
            // a loaded machine's slow loopback fetch fails no legit request.
            "http": {"allow_http": true, "connect_timeout_ms": 500, "timeout_ms": 2000},
            "cache": {"capacity": 20000}
        });
        let verifier = Config::from_value(config.clone())
            .and_then(Verifier::new)
            .map_err(|e| format!("cannot build the verifier: {e}"))?;
        let storm_tokens = workload::storm_tokens(
            &url,
            opts.storm,
            timefmt::now_secs() as u64,
            &mut fastrand::Rng::with_seed(0x5707),
        );
        let progress = if opts.quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let pb = ProgressBar::new_spinner();
            pb.set_style(
                ProgressStyle::with_template("{spinner:.green} [{elapsed:>3}] {msg}")
                    .expect("valid template")
                    .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
            );
            pb.enable_steady_tick(Duration::from_millis(100));
            pb
        };
        logging::set_progress(Some(progress.clone()));
        let mut setup = Setup {
            issuer,
            config,
            shared: Arc::new(Shared::new(verifier, Vec::new())),
            kids,
            pool: Vec::new(),
            next_id: 0,
            storm_tokens,
            progress,
            quiet: opts.quiet,
        };
        setup.pool = (0..opts.tokens)
            .map(|i| setup.mint(&format!("svc-{i:03}"), Slot::for_index(i)))
            .collect();
        setup.shared.publish_pool(setup.pool.clone());
        Ok(setup)
    }

    fn kid(&self, slot: Slot) -> &str {
        match slot {
            Slot::Rsa => &self.kids["rsa"],
            Slot::Ec => &self.kids["ec"],
            Slot::Ed => &self.kids["ed"],
        }
    }

    fn mint(&mut self, sub: &str, slot: Slot) -> Arc<PoolToken> {
        let kid = self.kid(slot).to_string();
        let mut claims = self.issuer.default_claims(sub, timefmt::now_secs() as u64);
        claims["scope"] = json!("orders:read");
        let token = self.issuer.mint(&kid, &claims);
        self.next_id += 1;
        Arc::new(PoolToken {
            id: self.next_id,
            token,
            kid,
            sub: sub.to_string(),
            jti: claims["jti"].as_str().unwrap_or_default().to_string(),
            exp: claims["exp"].as_u64().unwrap_or_default(),
        })
    }

    /// Replace the token at `i` by a newly issued one for the same service.
    fn reissue(&mut self, i: usize) {
        let sub = self.pool[i].sub.clone();
        self.pool[i] = self.mint(&sub, Slot::for_index(i));
    }

    /// New sessions: `n` random tokens (outside the top 10) are reissued, so
    /// some verifications in every phase check a signature, not the cache.
    fn churn(&mut self, n: usize) {
        let len = self.pool.len();
        for _ in 0..n {
            let i = fastrand::usize(10..len);
            self.reissue(i);
        }
        self.shared.publish_pool(self.pool.clone());
    }

    fn say(&self, facts: &mut Facts, what: String) {
        let at = self.shared.secs();
        if !self.quiet {
            logging::eprint_line(&format!("[{at:5.1}s] {what}"));
        }
        facts.timeline.push((at, what));
    }

    fn enter(&self, facts: &mut Facts, phase: Phase, what: String) {
        let i = Phase::ALL.iter().position(|p| *p == phase).unwrap_or(0);
        self.shared.phase.store(i, Ordering::SeqCst);
        facts.phase_starts.push((phase, self.shared.secs()));
        self.say(facts, format!("{}: {what}", phase.name()));
    }

    fn issuer_stats(&self) -> jwtwarden::IssuerStats {
        self.shared.verifier.metrics().issuers.remove(0)
    }

    fn fetches(&self, reason: &str) -> u64 {
        self.issuer_stats().fetches.get(reason).copied().unwrap_or(0)
    }

    fn run(mut self, opts: &DemoOptions, started: Instant) -> Outcome {
        let mut facts = Facts::default();
        let observed = Arc::new(Mutex::new(Observed::default()));
        let t0 = *self.shared.t0.get_or_init(Instant::now);
        facts.setup_secs = t0.duration_since(started).as_secs_f64();
        let unit = opts.duration.as_secs_f64() / 10.0;
        let deadline = t0 + opts.duration;

        let mut threads = Vec::new();
        for w in 0..opts.threads {
            let shared = self.shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("demo-worker-{w}"))
                    .spawn(move || workload::worker(&shared, 0x9e37_79b9 ^ w as u64))
                    .expect("spawn a worker"),
            );
        }
        {
            let (shared, progress, observed) = (self.shared.clone(), self.progress.clone(), observed.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("demo-monitor".into())
                    .spawn(move || monitor(&shared, &progress, &observed))
                    .expect("spawn the monitor"),
            );
        }
        self.control(&mut facts, unit, deadline);
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in threads {
            if t.join().is_err() {
                logging::eprint_line("jwtwarden: error: a demo thread panicked");
                facts.thread_panicked = true;
            }
        }
        facts.run_secs = self.shared.secs();
        self.progress.finish_and_clear();
        logging::set_progress(None);

        let s = &self.shared;
        let phases = Phase::ALL
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let c = &s.phases[i];
                (
                    *p,
                    c.legit.load(Ordering::SeqCst),
                    c.cached.load(Ordering::SeqCst),
                    c.failed.load(Ordering::SeqCst),
                )
            })
            .collect();
        let observed = std::mem::take(&mut *observed.lock().unwrap_or_else(|e| e.into_inner()));
        Outcome {
            issuer: self.issuer.url(),
            config: self.config.clone(),
            facts,
            observed,
            metrics: s.verifier.metrics(),
            phases,
            verifications: s.verifications.load(Ordering::SeqCst),
            replay_attempts: s.replay_attempts.load(Ordering::SeqCst),
            replay_accepted: s.replay_accepted.load(Ordering::SeqCst),
            replay_kinds: s.replay_kinds.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            samples: s.samples.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// The phases, on the control thread, while workers verify.
    fn control(&mut self, facts: &mut Facts, unit: f64, deadline: Instant) {
        let secs = Duration::from_secs_f64;
        let shared = self.shared.clone();
        let v = || &shared.verifier;
        let iss = self.issuer.url();

        // 1. Warm-up.
        self.enter(
            facts,
            Phase::Warmup,
            format!(
                "{} service tokens (RS256 {}, ES256 {}, EdDSA {}), skewed popularity",
                self.pool.len(),
                self.kids["rsa"],
                self.kids["ec"],
                self.kids["ed"]
            ),
        );
        std::thread::sleep(secs(unit));

        // 2. Rotation: publish a new RS256 key and sign with it at once.
        let old_kid = self.kids["rsa"].clone();
        let old_probe = self.pool[0].clone(); // index 0 is RS256
        let unknown_before = self.fetches("unknown_kid");
        self.enter(
            facts,
            Phase::Rotation,
            format!("issuer rotates its RS256 key {old_kid}"),
        );
        let new_kid = self.issuer.rotate(Alg::RS256);
        self.kids.insert("rsa", new_kid.clone());
        facts.old_kid = old_kid.clone();
        facts.new_kid = new_kid.clone();
        self.say(
            facts,
            format!("  {new_kid} published and used for new tokens at once; {old_kid} still published"),
        );
        let rsa: Vec<usize> = (0..self.pool.len())
            .filter(|&i| Slot::for_index(i) == Slot::Rsa)
            .collect();
        let (first, rest) = rsa.split_at(rsa.len() / 2);
        for &i in first {
            self.reissue(i);
        }
        self.shared.publish_pool(self.pool.clone());
        self.say(
            facts,
            format!("  {} services renewed their token ({new_kid})", first.len()),
        );
        std::thread::sleep(secs(unit * 0.6));
        for &i in rest {
            self.reissue(i);
        }
        self.shared.publish_pool(self.pool.clone());
        self.say(
            facts,
            format!(
                "  the other {} renewed too: no token in use is signed by {old_kid}",
                rest.len()
            ),
        );
        std::thread::sleep(secs(unit * 0.6));
        facts.rotation_unknown_kid_fetches = self.fetches("unknown_kid") - unknown_before;
        facts.old_token_ok_while_published = Some(v().verify(&old_probe.token).map(drop).map_err(kind));

        // 3. Revocation of a popular (cached) token.
        self.enter(facts, Phase::Revocation, "revoke a popular token by jti".into());
        self.churn(5);
        let target = self.pool[2].clone();
        facts.revoked_before = Some(v().verify(&target.token).map(|r| r.cached()).map_err(kind));
        self.shared.revoked_id.store(target.id, Ordering::SeqCst);
        self.shared.revocation.store(REVOKING, Ordering::SeqCst);
        let revoke = v().revoke_jti(&self.issuer.url(), &target.jti, Some(target.exp));
        self.shared.revocation.store(REVOKED, Ordering::SeqCst);
        match revoke {
            Ok(_) => facts.revoked_after = Some(v().verify(&target.token).map(drop).map_err(kind)),
            Err(e) => self.say(facts, format!("  revoke_jti failed: {e}")),
        }
        self.say(
            facts,
            format!(
                "  {} ({}) revoked; replayed every {} requests per thread from now on",
                target.sub,
                jwtwarden::fingerprint(target.token.as_bytes()),
                workload::REPLAY_EVERY
            ),
        );
        self.shared.set_replay(target.clone());
        self.reissue(2);
        self.shared.publish_pool(self.pool.clone());
        std::thread::sleep(secs(unit));

        // 4. Unknown-kid storm.
        self.enter(
            facts,
            Phase::Storm,
            format!(
                "{} tokens for {iss} with random kids (cooldown {COOLDOWN_SECS} s)",
                self.storm_tokens.len()
            ),
        );
        self.churn(5);
        let before = self.issuer_stats();
        facts.storm = workload::storm(&self.shared, &self.storm_tokens);
        let after = self.issuer_stats();
        let get = |s: &jwtwarden::IssuerStats| s.fetches.get("unknown_kid").copied().unwrap_or(0);
        facts.storm_fetches = get(&after) - get(&before);
        facts.storm_rate_limited = after.rate_limited_refreshes - before.rate_limited_refreshes;
        let why = if facts.storm_fetches == 0 {
            " (a cooldown window was already open)"
        } else {
            ""
        };
        self.say(
            facts,
            format!(
                "  {} storm tokens in {:.2} s caused {} fetch(es){why}",
                facts.storm.tokens, facts.storm.secs, facts.storm_fetches
            ),
        );
        std::thread::sleep(secs((unit * 0.8 - facts.storm.secs).max(0.0)));

        // 5. Retire the old key at the issuer; wait for a scheduled refresh.
        self.enter(facts, Phase::Retirement, format!("issuer stops publishing {old_kid}"));
        let retire_start = Instant::now();
        self.issuer.retire_key(&old_kid);
        let dropped = workload::wait_for(RETIRE_TIMEOUT, || {
            let (keys, _) = v().issuer_keys(&iss).unwrap_or_default();
            !keys.iter().any(|k| k.kid.as_deref() == Some(old_kid.as_str()))
        });
        facts.retired_dropped_after = dropped.map(|d| d.as_secs_f64());
        if dropped.is_some() {
            facts.retired_token_result = Some(v().verify(&old_probe.token).map(drop).map_err(kind));
        }
        self.say(
            facts,
            match (dropped, &facts.retired_token_result) {
                (Some(d), Some(r)) => format!(
                    "  verifier dropped {old_kid} after {:.1} s (scheduled refresh); an old token now gets {}",
                    d.as_secs_f64(),
                    r.as_ref().err().map_or("ACCEPTED", |k| k.as_str())
                ),
                _ => format!("  verifier still lists {old_kid} after {RETIRE_TIMEOUT:?}"),
            },
        );
        let min_retire = secs(unit * 0.5);
        std::thread::sleep(min_retire.saturating_sub(retire_start.elapsed()));

        // 6. Outage: 500s, then dropped connections.
        let outage = secs(unit * 3.0).max(MIN_OUTAGE);
        let before = self.issuer_stats();
        self.enter(
            facts,
            Phase::Outage,
            format!(
                "issuer down for {:.1} s: HTTP 500, then connections dropped",
                outage.as_secs_f64()
            ),
        );
        let outage_start = Instant::now();
        self.issuer.set_fault(Fault::Status(500));
        std::thread::sleep(outage / 2);
        self.churn(5);
        self.say(
            facts,
            "  connections now dropped; 5 services got new tokens meanwhile".into(),
        );
        self.issuer.set_fault(Fault::Drop);
        std::thread::sleep(outage / 2);
        self.issuer.set_fault(Fault::None);
        facts.outage_secs = outage_start.elapsed().as_secs_f64();
        let outage_end_ms = timefmt::now_ms();
        let after = self.issuer_stats();
        facts.outage_fetch_failures = after.fetch_failures - before.fetch_failures;
        let sched = |s: &jwtwarden::IssuerStats| s.fetches.get("scheduled").copied().unwrap_or(0);
        facts.outage_scheduled_fetches = sched(&after) - sched(&before);

        // 7. Recovery.
        self.enter(facts, Phase::Recovery, "issuer back".into());
        let recovery_start = Instant::now();
        self.churn(5);
        let recovered = workload::wait_for(RECOVERY_TIMEOUT, || {
            self.issuer_stats().last_success_ms.is_some_and(|t| t >= outage_end_ms)
        });
        facts.recovered_after = recovered.map(|d| d.as_secs_f64());
        if let Some(d) = recovered {
            self.say(
                facts,
                format!("  keys refreshed again {:.1} s after the outage", d.as_secs_f64()),
            );
        }
        let min_end = recovery_start + secs(unit);
        std::thread::sleep(deadline.max(min_end).saturating_duration_since(Instant::now()));
        facts.final_health = Some(self.issuer_stats().health);
    }
}

fn kind(e: jwtwarden::Error) -> String {
    e.kind().as_str().to_string()
}

/// Redraw the live display every 100 ms and note what the issuer's health was.
fn monitor(s: &Shared, progress: &ProgressBar, observed: &Mutex<Observed>) {
    let tick = Duration::from_millis(100);
    let mut last = (Instant::now(), 0u64);
    while !s.stop.load(Ordering::Relaxed) {
        std::thread::sleep(tick);
        let now = Instant::now();
        let total = s.verifications.load(Ordering::Relaxed);
        let dt = now.duration_since(last.0).as_secs_f64();
        let rate = (total - last.1) as f64 / dt.max(1e-3);
        last = (now, total);
        let m = s.verifier.metrics();
        let Some(i) = m.issuers.first() else { continue };
        let lookups = m.cache.hits + m.cache.misses;
        let hit = if lookups == 0 {
            0.0
        } else {
            100.0 * m.cache.hits as f64 / lookups as f64
        };
        let fetches: u64 = i.fetches.values().sum();
        {
            let mut o = observed.lock().unwrap_or_else(|e| e.into_inner());
            o.peak_per_sec = o.peak_per_sec.max(rate);
            match i.health {
                Health::Stale => o.stale_secs += dt,
                Health::FailedClosed => o.failed_closed_secs += dt,
                Health::Fresh => {}
            }
        }
        progress.set_message(format!(
            "{:<10} {:>8}/s  hit {:.2}%  fetches {} ({} failed)  keys {}",
            s.current_phase().name(),
            report::si(rate),
            hit,
            fetches,
            i.fetch_failures,
            i.health.as_str()
        ));
    }
}

/// Whether a rejection kind is the one expected for an unknown kid.
pub fn unknown_kid(kind: &str) -> bool {
    kind == ErrorKind::UnknownKid.as_str()
}
