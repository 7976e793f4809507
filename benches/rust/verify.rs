//! Cache hit, cache miss and raw `jsonwebtoken::decode` on the same tokens,
//! and hit-path throughput with 1 and 2 threads.
//!
//! Run: `cargo bench -p jwtwarden-benches --bench verify`

// criterion_group!/criterion_main! generate undocumented items.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use jwtwarden_benches::{Fixture, ALGS};
use serde_json::json;

fn single_thread(c: &mut Criterion) {
    let f = Fixture::new();
    let hits = f.verifier(json!({}));
    // Capacity 1 and a rotating pool: every call misses, verifies, inserts
    // and evicts — the whole miss path, not just the signature.
    let misses = f.verifier(json!({"capacity": 1, "shards": 1}));
    for alg in ALGS {
        let token = f.token(alg, "svc-bench");
        println!("{alg:?} token: {} bytes", token.len());
        let pool: Vec<String> = (0..64).map(|i| f.token(alg, &format!("svc-{i}"))).collect();
        let (key, validation) = f.raw(alg);
        hits.verify(&token).expect("verifies");

        let mut group = c.benchmark_group(alg.as_str());
        group.bench_function("hit", |b| b.iter(|| hits.verify(black_box(&token)).unwrap()));
        let mut i = 0usize;
        group.bench_function("miss", |b| {
            b.iter(|| {
                i = (i + 1) % pool.len();
                misses.verify(black_box(&pool[i])).unwrap()
            })
        });
        group.bench_function("raw_jsonwebtoken_decode", |b| {
            b.iter(|| jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &key, &validation).unwrap())
        });
        group.finish();
    }
}

/// Throughput of the hit path: `iters` verifications of the same token split
/// over `threads` threads; criterion reports time per verification.
fn scaling(c: &mut Criterion) {
    let f = Fixture::new();
    let verifier = f.verifier(json!({}));
    let token = f.token(jwtwarden_testissuer::Alg::RS256, "svc-bench");
    verifier.verify(&token).unwrap();
    let mut group = c.benchmark_group("hit_throughput_RS256");
    for threads in [1u64, 2] {
        group.bench_function(format!("{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(threads);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| {
                            for _ in 0..per_thread {
                                black_box(verifier.verify(black_box(&token)).unwrap());
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = single_thread, scaling
}
criterion_main!(benches);
