//! The Rust side of benches/c/run: a cache hit through the Rust API, and
//! through the C ABI functions called from Rust, timed exactly like
//! bench_hit.c times the C API (same token, same issuer, same loop).
//!
//! Reads the configuration and the token from the files named by
//! JWTWARDEN_BENCH_CONFIG and JWTWARDEN_BENCH_TOKEN (benches/c/run writes them).

// A bench binary; its items need no docs.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

const ITERATIONS: u32 = 200_000;
const ROUNDS: usize = 15;

/// ns/op of one round of `iterations` calls of `f`.
fn round(iterations: u32, f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(iterations)
}

/// (median, best) ns/op of each function over ROUNDS rounds, the functions'
/// rounds interleaved so a change in machine load affects all of them alike.
fn time(iterations: u32, fs: &mut [&mut dyn FnMut()]) -> Vec<(f64, f64)> {
    for f in fs.iter_mut() {
        round(iterations / 10, *f);
    }
    let mut per_op = vec![Vec::with_capacity(ROUNDS); fs.len()];
    for _ in 0..ROUNDS {
        for (i, f) in fs.iter_mut().enumerate() {
            per_op[i].push(round(iterations, *f));
        }
    }
    per_op
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            (v[ROUNDS / 2], v[0])
        })
        .collect()
}

fn main() {
    let read = |var: &str| {
        let path = std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set; run benches/c/run"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let config = read("JWTWARDEN_BENCH_CONFIG");
    let token = read("JWTWARDEN_BENCH_TOKEN").trim().to_string();

    let verifier = jwtwarden_core::Verifier::from_json(&config).expect("verifier");
    let first = verifier.verify(&token).expect("the token verifies");
    assert!(!first.cached());
    assert!(verifier.verify(&token).unwrap().cached(), "second verify is a hit");
    // The same C functions bench_hit.c calls, called from Rust.
    let mut raw = std::ptr::null_mut();
    // SAFETY: valid buffers and out-pointers; everything created is freed below.
    unsafe {
        let rc =
            jwtwarden::jwtwarden_verifier_new(config.as_ptr().cast(), config.len(), &mut raw, std::ptr::null_mut());
        assert_eq!(rc, jwtwarden::jwtwarden_result::Ok);
    }
    let mut rust_hit = || {
        let v = verifier.verify(black_box(token.as_bytes())).unwrap();
        black_box(v.cached());
    };
    let mut c_abi_hit = || {
        let mut out = std::ptr::null_mut();
        // SAFETY: raw is a live verifier; out is freed right away.
        unsafe {
            let rc = jwtwarden::jwtwarden_verifier_verify(
                raw,
                black_box(token.as_ptr().cast()),
                token.len(),
                &mut out,
                std::ptr::null_mut(),
            );
            assert_eq!(rc, jwtwarden::jwtwarden_result::Ok);
            black_box(jwtwarden::jwtwarden_verified_cached(out));
            jwtwarden::jwtwarden_verified_free(out);
        }
    };
    let hits = time(ITERATIONS, &mut [&mut rust_hit, &mut c_abi_hit]);
    let [(rm, rb), (cm, cb)] = [hits[0], hits[1]];
    println!("rust_api_hit       median {rm:7.1} ns/op   best {rb:7.1} ns/op");
    println!("c_abi_from_rust    median {cm:7.1} ns/op   best {cb:7.1} ns/op   (same process, rounds interleaved)");
    // SAFETY: raw is live and no longer used.
    unsafe { jwtwarden::jwtwarden_verifier_free(raw) };

    let fresh = jwtwarden_core::VerifyOptions {
        issuer: None,
        fresh: true,
    };
    let mut rust_miss = || {
        let v = verifier.verify_with(black_box(token.as_bytes()), &fresh).unwrap();
        black_box(v.cached());
    };
    let (median, best) = time(ITERATIONS / 100, &mut [&mut rust_miss])[0];
    println!("rust_api_miss      median {median:7.1} ns/op   best {best:7.1} ns/op   (fresh: signature checked)");
}
