//! What the cross-language comparison (`benches/run`) shares with the Rust
//! harness: the token set minted by `benches/peers/fixture.py`, the timing
//! method every harness uses, JSON-lines output, the test issuer's admin API
//! and storm tokens.
//!
//! The timing method (the C, Go and Python harnesses do the same):
//! warm up for a tenth of the budget; time calibrated batches (at least 2 ms
//! each) for six tenths and report the median batch's ns/op; time single
//! calls for the remaining three tenths and report their p50 and p99 (these
//! include one clock read per call).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

/// The shared token set (`target/bench-results/fixture/fixture.json`).
#[derive(Debug, Deserialize)]
pub struct TokenSet {
    /// Issuer URL (also `iss`).
    pub issuer: String,
    /// The issuer's JWKS URL.
    pub jwks_uri: String,
    /// The audience every token carries.
    pub audience: String,
    /// The JWKS as published when the fixture was made.
    pub jwks: Value,
    /// Algorithms, in report order.
    pub algs: Vec<String>,
    /// Size labels, in report order.
    pub sizes: Vec<String>,
    /// Key per algorithm.
    pub keys: std::collections::BTreeMap<String, KeyInfo>,
    /// One entry per (alg, size).
    pub tokens: Vec<TokenCase>,
    /// Distinct RS256 ~600-byte tokens, one per user, for throughput runs.
    #[serde(default)]
    pub crowd: Vec<String>,
}

/// One signing key of the issuer.
#[derive(Debug, Deserialize)]
pub struct KeyInfo {
    /// Its `kid`.
    pub kid: String,
    /// The public JWK.
    pub jwk: Value,
    /// Path of the public key as SubjectPublicKeyInfo PEM.
    pub public_pem_file: String,
}

/// Tokens of one algorithm and size.
#[derive(Debug, Deserialize)]
pub struct TokenCase {
    /// JWS `alg`.
    pub alg: String,
    /// Size label ("600B", "2KB").
    pub size: String,
    /// Length of `token`.
    pub bytes: usize,
    /// The token every hit and every peer verification uses.
    pub token: String,
    /// Distinct tokens of the same alg and size, for cache misses.
    pub pool: Vec<String>,
}

impl TokenSet {
    /// Read a fixture file.
    pub fn load(path: &Path) -> TokenSet {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
    }

    /// A jwtwarden configuration for the issuer with the given `cache` section.
    pub fn config(&self, cache: Value) -> Value {
        json!({
            "issuers": [{"issuer": self.issuer, "jwks_uri": self.jwks_uri, "audiences": [self.audience]}],
            "http": {"allow_http": true},
            "cache": cache,
        })
    }

    /// The token case for `alg` and `size`.
    pub fn case(&self, alg: &str, size: &str) -> &TokenCase {
        self.tokens
            .iter()
            .find(|t| t.alg == alg && t.size == size)
            .unwrap_or_else(|| panic!("no token for {alg} {size}"))
    }
}

/// Result of [`measure`].
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// Calls made while timing (batches and single calls).
    pub iterations: u64,
    /// Median batch's nanoseconds per call.
    pub ns_per_op: f64,
    /// Median of single timed calls.
    pub p50_ns: f64,
    /// 99th percentile of single timed calls.
    pub p99_ns: f64,
}

/// The per-case time budget: `BENCH_SECONDS` (default 1.0).
pub fn budget() -> Duration {
    let secs = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.0);
    Duration::from_secs_f64(secs.max(0.05))
}

/// The value at quantile `q` (0..=1) of `samples` (sorted in place).
pub fn quantile(samples: &mut [u64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable();
    let idx = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[idx] as f64
}

/// Time `op` within `budget` (see the module documentation).
pub fn measure(budget: Duration, mut op: impl FnMut()) -> Stats {
    let warm_until = Instant::now() + budget / 10;
    while Instant::now() < warm_until {
        op();
    }

    // Calibrate a batch of at least 2 ms.
    let mut batch = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            op();
        }
        if t.elapsed() >= Duration::from_millis(2) || batch >= 1 << 30 {
            break;
        }
        batch *= 2;
    }
    let mut iterations = 0;
    let mut per_op = Vec::new();
    let until = Instant::now() + budget * 6 / 10;
    while Instant::now() < until || per_op.len() < 3 {
        let t = Instant::now();
        for _ in 0..batch {
            op();
        }
        per_op.push(t.elapsed().as_nanos() as f64 / batch as f64);
        iterations += batch;
    }
    per_op.sort_by(f64::total_cmp);
    let ns_per_op = per_op[per_op.len() / 2];

    let mut single = Vec::with_capacity(1 << 16);
    let until = Instant::now() + budget * 3 / 10;
    loop {
        let t = Instant::now();
        op();
        let now = Instant::now();
        single.push((now - t).as_nanos() as u64);
        if now >= until && single.len() >= 100 || single.len() >= 2_000_000 {
            break;
        }
    }
    iterations += single.len() as u64;
    let p50_ns = quantile(&mut single, 0.50);
    let p99_ns = quantile(&mut single, 0.99);
    Stats {
        iterations,
        ns_per_op,
        p50_ns,
        p99_ns,
    }
}

/// Calls per second of `op` run by `threads` threads at once for `budget`
/// (after a warm-up of a tenth of it); `op` gets the thread's index and how
/// many calls that thread has made before.
pub fn throughput(threads: usize, budget: Duration, op: impl Fn(usize, u64) + Sync) -> f64 {
    let stop = AtomicBool::new(false);
    let counting = AtomicBool::new(false);
    let total = AtomicU64::new(0);
    let mut elapsed = Duration::ZERO;
    std::thread::scope(|s| {
        for index in 0..threads {
            let (op, stop, counting, total) = (&op, &stop, &counting, &total);
            s.spawn(move || {
                let mut n = 0u64;
                let mut calls = 0u64;
                let mut counted = false;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        op(index, calls);
                        calls += 1;
                    }
                    if counting.load(Ordering::Relaxed) {
                        if !counted {
                            counted = true;
                            n = 0;
                        }
                        n += 64;
                    }
                }
                total.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(budget / 10);
        counting.store(true, Ordering::Relaxed);
        let t = Instant::now();
        std::thread::sleep(budget * 9 / 10);
        stop.store(true, Ordering::Relaxed);
        elapsed = t.elapsed();
    });
    total.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}

/// Appends JSON lines to a results file, and echoes a short summary to stderr.
pub struct Results {
    file: std::fs::File,
    language: &'static str,
}

impl Results {
    /// Open (append) `path` for results of `language`.
    pub fn open(path: &Path, language: &'static str) -> Results {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        Results { file, language }
    }

    /// Write one record; `language` is added.
    pub fn record(&mut self, mut record: Value) {
        record["language"] = json!(self.language);
        eprintln!("{record}");
        writeln!(self.file, "{record}").expect("write results");
    }

    /// Record a timing of `library` doing `operation` on `case`.
    pub fn timing(&mut self, library: &str, operation: &str, case: &TokenCase, stats: Stats) {
        self.record(json!({
            "library": library,
            "operation": operation,
            "alg": case.alg,
            "size": case.size,
            "token_bytes": case.bytes,
            "threads": 1,
            "ns_per_op": stats.ns_per_op,
            "ops_per_s": 1e9 / stats.ns_per_op,
            "p50_ns": stats.p50_ns,
            "p99_ns": stats.p99_ns,
            "iterations": stats.iterations,
        }));
    }

    /// Record that `library` could not be measured, and why.
    pub fn skipped(&mut self, library: &str, operation: &str, alg: Option<&str>, reason: &str) {
        eprintln!(
            "skipped: {} {library} {operation} {}: {reason}",
            self.language,
            alg.unwrap_or("")
        );
        self.record(json!({
            "library": library,
            "operation": operation,
            "alg": alg,
            "skipped": reason,
        }));
    }
}

/// One request to the test issuer's admin API (`method` `path`, JSON body),
/// over a plain HTTP/1.0 connection; returns the JSON reply.
pub fn admin(issuer: &str, method: &str, path: &str) -> Value {
    let host = issuer.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    let body = if method == "POST" { "{}" } else { "" };
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write admin request");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read admin reply");
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    assert!(head.contains(" 200 "), "admin {method} {path}: {head}");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// Zero the issuer's request counters.
pub fn reset_counts(issuer: &str) {
    admin(issuer, "POST", "/admin/reset");
}

/// JWKS requests the issuer has served since the last reset.
pub fn jwks_requests(issuer: &str) -> u64 {
    admin(issuer, "GET", "/admin/stats")["jwks_requests"]
        .as_u64()
        .expect("jwks_requests in /admin/stats")
}

/// `token` with its header replaced by `{"alg", "kid": "storm-<tag>-<i>", "typ"}`:
/// a token whose `kid` no key has (its signature is irrelevant: the unknown
/// `kid` is what every library acts on first).
pub fn storm_token(token: &str, alg: &str, tag: &str, i: usize) -> String {
    let header = json!({"alg": alg, "kid": format!("storm-{tag}-{i}"), "typ": "JWT"});
    let rest = token.split_once('.').expect("a JWS").1;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string());
    format!("{b64}.{rest}")
}

/// Number of storm tokens per library (`BENCH_STORM_TOKENS`, default 10,000).
pub fn storm_size() -> usize {
    std::env::var("BENCH_STORM_TOKENS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000)
}

/// An unknown-`kid` storm: one thread verifies `storm` tokens as fast as it
/// can (stopping early after `cap`), while this thread times `legit` calls
/// until the storm is over. Counts the JWKS requests the issuer saw.
/// `storm_op` returns whether a storm token was (wrongly) accepted.
pub fn storm(
    issuer: &str,
    storm: &[String],
    cap: Duration,
    storm_op: impl Fn(&str) -> bool + Sync,
    mut legit: impl FnMut(),
) -> StormStats {
    reset_counts(issuer);
    let done = AtomicBool::new(false);
    let mut samples = Vec::with_capacity(1 << 16);
    let (sent, accepted, storm_time) = std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let t = Instant::now();
            let mut sent = 0usize;
            let mut accepted = 0usize;
            for token in storm {
                if storm_op(token) {
                    accepted += 1;
                }
                sent += 1;
                if t.elapsed() > cap {
                    break;
                }
            }
            let elapsed = t.elapsed();
            done.store(true, Ordering::SeqCst);
            (sent, accepted, elapsed)
        });
        while !done.load(Ordering::SeqCst) {
            let t = Instant::now();
            legit();
            samples.push(t.elapsed().as_nanos() as u64);
        }
        worker.join().expect("storm thread")
    });
    let requests = jwks_requests(issuer);
    StormStats {
        sent,
        accepted,
        requests,
        storm_ms: storm_time.as_secs_f64() * 1e3,
        legit_samples: samples.len(),
        legit_p50_ns: quantile(&mut samples, 0.50),
        legit_p99_ns: quantile(&mut samples, 0.99),
    }
}

/// Result of [`storm`].
#[derive(Clone, Copy, Debug)]
pub struct StormStats {
    /// Storm tokens verified.
    pub sent: usize,
    /// Storm tokens that verified (must be 0).
    pub accepted: usize,
    /// JWKS requests the issuer served during the storm.
    pub requests: u64,
    /// How long the storm took.
    pub storm_ms: f64,
    /// Legitimate calls timed during the storm.
    pub legit_samples: usize,
    /// Their median latency.
    pub legit_p50_ns: f64,
    /// Their 99th percentile latency.
    pub legit_p99_ns: f64,
}

impl StormStats {
    /// The JSON record for `library` (`baseline_p99_ns`: legit p99 without a storm).
    pub fn record(&self, library: &str, alg: &str, cooldown_secs: Option<u64>, baseline_p99_ns: f64) -> Value {
        json!({
            "library": library,
            "operation": "storm",
            "alg": alg,
            "threads": 2,
            "storm_tokens": self.sent,
            "storm_accepted": self.accepted,
            "jwks_requests": self.requests,
            "requests_per_10k": self.requests as f64 * 10_000.0 / self.sent.max(1) as f64,
            "storm_ms": self.storm_ms,
            "cooldown_secs": cooldown_secs,
            "legit_samples": self.legit_samples,
            "legit_p50_ns": self.legit_p50_ns,
            "legit_p99_ns": self.legit_p99_ns,
            "baseline_p99_ns": baseline_p99_ns,
        })
    }
}
