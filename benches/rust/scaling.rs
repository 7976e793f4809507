//! Cache-hit throughput as a gateway sees it, next to what a Rust user
//! would write instead: one hot token; 256 and 4,096 distinct cached tokens
//! hit in random order; 1 and 2 threads (or `BENCH_THREADS`, e.g.
//! `1,2,4,8,16`) sharing one verifier.
//!
//! Peers, in the same run on the same tokens: `jsonwebtoken` alone (a full
//! decode per call), and `jsonwebtoken` behind `moka` and behind
//! `quick_cache`, each keyed by the token (a hit clones the cached claims'
//! `Arc`). Each configuration runs in interleaved rounds and the median
//! round is reported, in calls per second and ns per call per thread.
//!
//! Run: `BENCH_SECONDS=1 cargo bench -p jwtwarden-benches --bench scaling`
//! (`BENCH_ONLY=jwtwarden,hot` keeps the libraries and patterns named). With
//! an argument, also appends the figures as JSON lines to that file
//! (`benches/run` does, for its report).

use std::hint::black_box;
use std::sync::Arc;

use jwtwarden_benches::shared::{budget, throughput, Results};
use jwtwarden_benches::Fixture;
use jwtwarden_testissuer::Alg;
use serde_json::{json, Value};

/// Interleaved rounds per configuration (the median is reported).
const ROUNDS: usize = 5;

/// Calls in each thread's random visiting order (then it repeats).
const ORDER_LEN: usize = 1 << 16;

type Claims = Arc<Value>;

/// One way of turning a token into verified claims.
enum Library<'a> {
    Jwtwarden(&'a jwtwarden::Verifier),
    Jsonwebtoken(&'a (jsonwebtoken::DecodingKey, jsonwebtoken::Validation)),
    Moka(
        &'a (jsonwebtoken::DecodingKey, jsonwebtoken::Validation),
        moka::sync::Cache<String, Claims>,
    ),
    QuickCache(
        &'a (jsonwebtoken::DecodingKey, jsonwebtoken::Validation),
        quick_cache::sync::Cache<String, Claims>,
    ),
}

fn decode(raw: &(jsonwebtoken::DecodingKey, jsonwebtoken::Validation), token: &str) -> Claims {
    Arc::new(
        jsonwebtoken::decode::<Value>(token, &raw.0, &raw.1)
            .expect("decodes")
            .claims,
    )
}

/// What a user writes around a cache keyed by the token: the cached claims,
/// or decode and insert them.
#[inline]
fn cached(
    raw: &(jsonwebtoken::DecodingKey, jsonwebtoken::Validation),
    token: &str,
    get: impl Fn(&str) -> Option<Claims>,
    insert: impl Fn(String, Claims),
) -> usize {
    let claims = get(token).unwrap_or_else(|| {
        let c = decode(raw, token);
        insert(token.to_owned(), c.clone());
        c
    });
    claims.as_object().map_or(0, |m| m.len())
}

impl Library<'_> {
    fn name(&self) -> &'static str {
        match self {
            Library::Jwtwarden(_) => "jwtwarden",
            Library::Jsonwebtoken(_) => "jsonwebtoken",
            Library::Moka(..) => "jsonwebtoken+moka",
            Library::QuickCache(..) => "jsonwebtoken+quick_cache",
        }
    }

    /// Verify `token`; the claims' `sub` length, so nothing is optimised out.
    #[inline]
    fn verify(&self, token: &str) -> usize {
        match self {
            Library::Jwtwarden(v) => {
                let r = v.verify(token).expect("verifies");
                black_box(&r);
                r.expires_at() as usize
            }
            Library::Jsonwebtoken(raw) => decode(raw, token).as_object().map_or(0, |m| m.len()),
            Library::Moka(raw, cache) => cached(raw, token, |t| cache.get(t), |t, c| cache.insert(t, c)),
            Library::QuickCache(raw, cache) => cached(raw, token, |t| cache.get(t), |t, c| cache.insert(t, c)),
        }
    }
}

/// Each thread's own random visiting order over `distinct` tokens.
fn orders(distinct: usize, threads: usize) -> Vec<Vec<u32>> {
    (0..threads)
        .map(|t| {
            let mut rng = fastrand::Rng::with_seed(0x5eed + t as u64);
            (0..ORDER_LEN).map(|_| rng.u32(0..distinct as u32)).collect()
        })
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; an optional output file is ours.
    let out = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let mut results = out.map(|path| Results::open(std::path::Path::new(&path), "rust"));
    let threads: Vec<usize> = std::env::var("BENCH_THREADS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .map(|s| s.trim().parse().expect("BENCH_THREADS: numbers"))
        .collect();
    let budget = budget();
    let f = Fixture::new();
    let tokens: Vec<String> = (0..4096).map(|i| f.token(Alg::RS256, &format!("user-{i}"))).collect();
    let raw = f.raw(Alg::RS256);
    let verifier = f.verifier(json!({}));
    let libraries = [
        Library::Jwtwarden(&verifier),
        Library::Jsonwebtoken(&raw),
        Library::Moka(&raw, moka::sync::Cache::new(100_000)),
        Library::QuickCache(&raw, quick_cache::sync::Cache::new(100_000)),
    ];
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
    let libraries: Vec<&Library> = libraries.iter().filter(|l| wanted(l.name())).collect();
    for lib in &libraries {
        for t in &tokens {
            lib.verify(t);
        }
    }
    let max_threads = threads.iter().copied().max().unwrap_or(1);
    let patterns: [(&str, usize); 3] = [("hot", 1), ("256 random", 256), ("4096 random", 4096)];
    println!(
        "machine: {} cores, load {}; RS256 tokens of {} bytes; {} s per configuration in {ROUNDS} rounds",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        tokens[0].len(),
        budget.as_secs_f64()
    );
    println!(
        "{:<26} {:<12} {:>7} {:>12} {:>12}",
        "library", "pattern", "threads", "calls/s", "ns/call"
    );
    for (pattern, distinct) in patterns {
        if !wanted(pattern) && patterns.iter().any(|(p, _)| wanted(p)) {
            continue;
        }
        let order = orders(distinct, max_threads);
        let mut configs: Vec<(&Library, usize, Vec<f64>)> = Vec::new();
        for &lib in &libraries {
            for &n in &threads {
                configs.push((lib, n, Vec::new()));
            }
        }
        for _ in 0..ROUNDS {
            for (lib, n, rounds) in &mut configs {
                rounds.push(throughput(*n, budget / ROUNDS as u32, |index, call| {
                    let i = order[index][call as usize % ORDER_LEN] as usize;
                    black_box(lib.verify(black_box(&tokens[i])));
                }));
            }
        }
        for (lib, n, mut rounds) in configs {
            rounds.sort_by(f64::total_cmp);
            let median = rounds[rounds.len() / 2];
            if let Some(results) = results.as_mut() {
                results.record(json!({
                    "library": lib.name(), "operation": "hit", "alg": "RS256", "size": "600B",
                    "token_bytes": tokens[0].len(), "threads": n, "tokens": pattern,
                    "ops_per_s": median, "rounds": rounds,
                }));
            }
            println!(
                "{:<26} {:<12} {:>7} {:>12.0} {:>12.1}",
                lib.name(),
                pattern,
                n,
                median,
                1e9 * n as f64 / median
            );
        }
    }
}
