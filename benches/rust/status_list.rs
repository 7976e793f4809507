//! Token Status Lists: the cost a status reference adds to a cache hit
//! (the hit re-reads the token's status from the list in use), and reading
//! a 1,000,000-entry list (base64url, inflate, index), with the heap it
//! takes, measured with a counting allocator.
//!
//! Run: `cargo bench -p jwtwarden-benches --bench status_list`

// criterion_group!/criterion_main! generate undocumented items.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use jwtwarden::status::StatusList;
use jwtwarden::{Config, Verifier};
use jwtwarden_benches::counting::Counting;
use jwtwarden_benches::Fixture;
use jwtwarden_testissuer::Alg;
use serde_json::json;

#[global_allocator]
static GLOBAL: Counting = Counting;

const LIST: &str = "/status/1";

fn hits(c: &mut Criterion) {
    let f = Fixture::new();
    f.issuer.publish_status_list(LIST, 2, 100_000);
    let config = Config::from_value(json!({
        "issuers": [{"issuer": f.issuer.url(), "jwks_uri": f.issuer.jwks_uri(), "audiences": ["api"],
                     "status_list": {"allowed_uris": [format!("{}/status", f.issuer.url())]}}],
        "http": {"allow_http": true},
    }))
    .expect("bench config");
    let verifier = Verifier::new(config).expect("bench verifier");
    let plain = f.token(Alg::RS256, "svc-bench");
    let mut claims = f.claims("svc-bench");
    claims["status"] = f.issuer.status_claim(LIST, 77_777);
    let referencing = f.issuer.mint(f.kid(Alg::RS256), &claims);
    for t in [&plain, &referencing] {
        verifier.verify(t).expect("verifies");
        assert!(verifier.verify(t).unwrap().cached());
    }
    println!(
        "tokens: {} bytes without a status reference, {} with",
        plain.len(),
        referencing.len()
    );
    let mut group = c.benchmark_group("status_list");
    group.bench_function("hit_without_status", |b| {
        b.iter(|| verifier.verify(black_box(&plain)).unwrap())
    });
    group.bench_function("hit_with_status", |b| {
        b.iter(|| verifier.verify(black_box(&referencing)).unwrap())
    });
    group.finish();
}

/// A 1,000,000-entry list at `bits`, about 1 % of entries not VALID, as `lst`.
fn million(bits: u8) -> String {
    let n = 1_000_000usize;
    let per = 8 / usize::from(bits);
    let mut bytes = vec![0u8; n / per];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..n / 100 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let i = (rng % n as u64) as usize;
        let bit = i * usize::from(bits);
        bytes[bit / 8] |= 1 << (bit % 8);
    }
    StatusList::new(bits, bytes).expect("valid bits").encode()
}

fn read_million(c: &mut Criterion) {
    let mut group = c.benchmark_group("status_list_1m");
    for bits in [1u8, 8] {
        let lst = million(bits);
        let before = Counting::live();
        Counting::reset_peak();
        let list = StatusList::decode(bits, &lst, 16 << 20).expect("decodes");
        let held = Counting::live() - before;
        let peak = Counting::peak() - before;
        println!(
            "1,000,000 entries at {bits} bit(s): lst {} bytes; decoded list holds {held} bytes, \
             peak while decoding {peak} bytes; {} entries",
            lst.len(),
            list.len()
        );
        group.bench_function(format!("decode_{bits}bit"), |b| {
            b.iter(|| StatusList::decode(bits, black_box(&lst), 16 << 20).unwrap())
        });
        group.bench_function(format!("get_{bits}bit"), |b| {
            let mut i = 0u64;
            b.iter(|| {
                i = (i + 7_919) % 1_000_000;
                black_box(list.get(black_box(i)))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = hits, read_million
}
criterion_main!(benches);
