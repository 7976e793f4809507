//! Verification assertions (issue 28): what minting adds to a cache hit at
//! the edge, where its time goes (the Ed25519 signature against the JSON
//! and base64 around it), what reusing a minted assertion would cost
//! instead (rejected: see docs/trust-handoff.md), and verifying one behind
//! (the bare Ed25519 check against the whole inherited-trust path, beside
//! an RS256 cache miss and hit).
//!
//! The opt-in HS256 mode (one secret per upstream audience) is measured
//! beside the default EdDSA in the same table.
//!
//! Run: `cargo bench -p jwtwarden-benches --bench assertion`

// criterion_group!/criterion_main! generate undocumented items.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use jwtwarden::assertion::{
    edge_issuer, AudienceSecretsConfig, Inheritance, Minter, MinterConfig, ReplayGuard, Request, SecretKeyConfig,
    SigningKeyConfig,
};
use jwtwarden::http::{DecideMode, HttpPolicy, HttpRequest};
use jwtwarden::{Config, SystemClock, Verifier, VerifyOptions};
use jwtwarden_benches::Fixture;
use jwtwarden_testissuer::Alg;
use serde_json::json;

const EDGE: &str = "edge-1";

fn edge_key() -> (Ed25519KeyPair, String) {
    let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).expect("keygen");
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(doc.as_ref())
    );
    (Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("key"), pem)
}

fn minter(pem: &str) -> Minter {
    let cfg = MinterConfig {
        name: EDGE.into(),
        current: SigningKeyConfig {
            kid: "e1".into(),
            pem: Some(pem.into()),
            pem_file: None,
        },
        previous: None,
        lifetime_secs: 30,
        hs256: Default::default(),
    };
    Minter::new(&cfg, Arc::new(SystemClock)).expect("minter")
}

/// The HS256 audience of the benches and its secret (base64url).
const HS_AUDIENCE: &str = "orders-hs";

/// A minter like [`minter`] that also signs HS256 for [`HS_AUDIENCE`],
/// and the secret (base64url) the service behind holds.
fn hs_minter(pem: &str) -> (Minter, String) {
    let mut secret = [0u8; 32];
    aws_lc_rs::rand::fill(&mut secret).unwrap();
    let b64 = URL_SAFE_NO_PAD.encode(secret);
    let file = std::env::temp_dir().join(format!("jwtwarden-bench-hs256-{}", std::process::id()));
    std::fs::write(&file, &b64).unwrap();
    let mut cfg = MinterConfig {
        name: EDGE.into(),
        current: SigningKeyConfig {
            kid: "e1".into(),
            pem: Some(pem.into()),
            pem_file: None,
        },
        previous: None,
        lifetime_secs: 30,
        hs256: Default::default(),
    };
    cfg.hs256.insert(
        HS_AUDIENCE.into(),
        AudienceSecretsConfig {
            current: SecretKeyConfig {
                kid: "hs-1".into(),
                secret_file: file.clone(),
            },
            previous: None,
        },
    );
    let m = Minter::new(&cfg, Arc::new(SystemClock)).expect("minter");
    let _ = std::fs::remove_file(file);
    (m, b64)
}

fn edge(c: &mut Criterion) {
    let f = Fixture::new();
    let verifier = f.verifier(json!({}));
    let token = f.token(Alg::RS256, "svc-bench");
    let (pair, pem) = edge_key();
    let minter = minter(&pem);
    let plain = HttpPolicy::from_json("{}").unwrap();
    let minting = HttpPolicy::from_json(r#"{"assertion": {"audience": "orders"}}"#).unwrap();
    let auth = format!("Bearer {token}");
    let h: &[(&[u8], &[u8])] = &[(b"authorization", auth.as_bytes())];
    let req = HttpRequest {
        method: "GET",
        target: Some("/api/orders/7"),
        headers: h,
    };
    assert!(plain.decide(&verifier, &req, DecideMode::Verify).allowed());
    let d = minting.decide_minting(&verifier, Some(&minter), &req, DecideMode::CachedOnly);
    let sample = d.assertion().expect("an assertion").value.clone();
    let signing_input = &sample[..sample.rfind('.').unwrap()];
    println!(
        "assertion: {} bytes, signing input {} bytes",
        sample.len(),
        signing_input.len()
    );
    let v = verifier.verify(&token).unwrap();
    let r = Request {
        method: "GET",
        path: "/api/orders/7",
    };

    let mut g = c.benchmark_group("assertion_edge");
    g.bench_function("decide_hit", |b| {
        b.iter(|| plain.decide(&verifier, black_box(&req), DecideMode::CachedOnly))
    });
    g.bench_function("decide_hit_and_mint", |b| {
        b.iter(|| minting.decide_minting(&verifier, Some(&minter), black_box(&req), DecideMode::CachedOnly))
    });
    g.bench_function("mint", |b| {
        b.iter(|| {
            minter
                .mint(&v, token.as_bytes(), "orders", black_box(&r), false)
                .unwrap()
        })
    });
    g.bench_function("ed25519_sign_alone", |b| {
        b.iter(|| pair.sign(black_box(signing_input.as_bytes())))
    });
    // The rejected design: one minted assertion reused per (token, audience,
    // method, path) within a window: a map lookup and a reference count.
    let mut reuse: HashMap<(String, &str, &str, &str), Arc<str>> = HashMap::new();
    reuse.insert((token.clone(), "orders", "GET", "/api/orders/7"), sample.clone());
    g.bench_function("reuse_from_a_cache", |b| {
        b.iter(|| {
            reuse
                .get(&(black_box(&token).clone(), "orders", "GET", "/api/orders/7"))
                .cloned()
        })
    });
    g.finish();
}

fn behind(c: &mut Criterion) {
    let f = Fixture::new();
    let (pair, pem) = edge_key();
    let minter = minter(&pem);
    let edge_verifier = f.verifier(json!({}));
    let token = f.token(Alg::RS256, "svc-bench");
    let v = edge_verifier.verify(&token).unwrap();
    let mut issuer = edge_issuer(EDGE, "orders");
    issuer.jwks = Some(minter.jwks());
    let mut config = Config::new(vec![issuer]);
    config.background_refresh = false;
    let service = Verifier::new(config).unwrap();
    let inheritance = Inheritance::new(
        [(EDGE.to_string(), None)],
        Arc::new(ReplayGuard::new(10_000_000)),
        Arc::new(SystemClock),
    );
    let r = Request {
        method: "GET",
        path: "/api/orders/7",
    };
    let mint = || minter.mint(&v, token.as_bytes(), "orders", &r, false).unwrap();
    let sample = mint();
    let (input, sig) = sample.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let public = UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref().to_vec());
    public.verify(input.as_bytes(), &sig).expect("verifies");
    let fresh = VerifyOptions {
        issuer: None,
        fresh: true,
    };
    // A cache miss of an ordinary RS256 token, for comparison.
    let misses = f.verifier(json!({"capacity": 1, "shards": 1}));
    let pool: Vec<String> = (0..64).map(|i| f.token(Alg::RS256, &format!("svc-{i}"))).collect();
    let ed_pool: Vec<String> = (0..64).map(|i| f.token(Alg::EdDSA, &format!("svc-{i}"))).collect();

    let mut g = c.benchmark_group("assertion_behind");
    g.bench_function("inherited_verify", |b| {
        b.iter_batched(
            mint,
            |a| inheritance.verify(&service, &a, &r, false).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("engine_verify_fresh", |b| {
        b.iter(|| service.verify_with(black_box(&sample), &fresh).unwrap())
    });
    g.bench_function("ed25519_verify_alone", |b| {
        b.iter(|| public.verify(black_box(input.as_bytes()), &sig).unwrap())
    });
    let mut i = 0usize;
    g.bench_function("rs256_miss", |b| {
        b.iter(|| {
            i = (i + 1) % pool.len();
            misses.verify(black_box(&pool[i])).unwrap()
        })
    });
    // An ordinary EdDSA access token (the test issuer's), missing the
    // cache: the engine's path around the same Ed25519 check.
    let mut j = 0usize;
    g.bench_function("eddsa_miss", |b| {
        b.iter(|| {
            j = (j + 1) % ed_pool.len();
            misses.verify(black_box(&ed_pool[j])).unwrap()
        })
    });
    g.bench_function("rs256_hit", |b| {
        b.iter(|| edge_verifier.verify(black_box(&token)).unwrap())
    });
    g.finish();
}

/// The mint of the previous session (commit f30a03b), replicated: the
/// whole claims object built as a `serde_json::Value` per call. For the
/// before/after of the JSON part only; signs with `pair` like the real one.
fn mint_as_before(pair: &Ed25519KeyPair, header_b64: &str, v: &jwtwarden::Verified, r: &Request<'_>) -> String {
    let htu = jwtwarden::http::normalise(r.path).unwrap().path;
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = v.claims();
    let mut orig = serde_json::Map::new();
    for name in ["iss", "sub", "aud", "scope", "jti"] {
        if let Some(x) = claims.get(name) {
            orig.insert(name.into(), x.clone());
        }
    }
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).unwrap();
    let mut payload = json!({
        "iss": EDGE, "aud": "orders", "iat": iat, "exp": iat + 30,
        "jti": URL_SAFE_NO_PAD.encode(jti), "htm": r.method, "htu": htu,
        "verified_at": v.verified_at_ms() / 1000, "cached": v.cached(), "fresh": false,
        "checked_at": iat, "orig": orig,
    });
    if let Some(sub) = claims.get("sub") {
        payload["sub"] = sub.clone();
    }
    if let Some(kid) = v.kid() {
        payload["key_kid"] = kid.into();
    }
    let mut out = String::with_capacity(512);
    out.push_str(header_b64);
    URL_SAFE_NO_PAD.encode_string(payload.to_string(), &mut out);
    let sig = pair.sign(out.as_bytes());
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut out);
    out
}

/// This thread's CPU time, ns: on a machine shared with other work the
/// wall time of a loop includes waiting for a core; this does not.
fn cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Best of 5 rounds of `iters` calls, CPU ns per call; `setup` runs before
/// each round, outside the timing, and hands `run` its inputs.
fn cpu_per_op<T>(iters: usize, mut setup: impl FnMut(usize) -> Vec<T>, mut run: impl FnMut(T)) -> f64 {
    (0..5)
        .map(|_| {
            let inputs = setup(iters);
            let start = cpu_ns();
            for x in inputs {
                run(x);
            }
            (cpu_ns() - start) as f64 / iters as f64
        })
        .fold(f64::MAX, f64::min)
}

/// The same costs as CPU time per call (best of 5 rounds), printed as the
/// table benches/RESULTS.md carries.
fn cpu_time_table(_: &mut Criterion) {
    let f = Fixture::new();
    let (pair, pem) = edge_key();
    let minter = minter(&pem);
    let verifier = f.verifier(json!({}));
    let token = f.token(Alg::RS256, "svc-bench");
    let plain = HttpPolicy::from_json("{}").unwrap();
    let minting = HttpPolicy::from_json(r#"{"assertion": {"audience": "orders"}}"#).unwrap();
    let auth = format!("Bearer {token}");
    let h: &[(&[u8], &[u8])] = &[(b"authorization", auth.as_bytes())];
    let req = HttpRequest {
        method: "GET",
        target: Some("/api/orders/7"),
        headers: h,
    };
    assert!(plain.decide(&verifier, &req, DecideMode::Verify).allowed());
    let v = verifier.verify(&token).unwrap();
    let r = Request {
        method: "GET",
        path: "/api/orders/7",
    };
    let sample = minter.mint(&v, token.as_bytes(), "orders", &r, false).unwrap();
    let (input, sig) = sample.rsplit_once('.').unwrap();
    let header_b64 = format!("{}.", input.split('.').next().unwrap());
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let public = UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref().to_vec());
    let mut issuer = edge_issuer(EDGE, "orders");
    issuer.jwks = Some(minter.jwks());
    let mut config = Config::new(vec![issuer]);
    config.background_refresh = false;
    let service = Verifier::new(config).unwrap();
    let inheritance = Inheritance::new(
        [(EDGE.to_string(), None)],
        Arc::new(ReplayGuard::new(10_000_000)),
        Arc::new(SystemClock),
    );
    let fresh = VerifyOptions {
        issuer: None,
        fresh: true,
    };
    // The HS256 mode: the same edge, the audience `orders-hs` keyed by its
    // own secret, and its service.
    let (hs_minter, hs_secret) = hs_minter(&pem);
    let hs_policy = HttpPolicy::from_json(&format!(r#"{{"assertion": {{"audience": "{HS_AUDIENCE}"}}}}"#)).unwrap();
    let hs_sample = hs_minter.mint(&v, token.as_bytes(), HS_AUDIENCE, &r, false).unwrap();
    let hs_input = hs_sample.rsplit_once('.').unwrap().0.to_string();
    let hs_key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        &URL_SAFE_NO_PAD.decode(&hs_secret).unwrap(),
    );
    let hs_service = Verifier::new(
        Config::from_value(json!({
            "issuers": [{"kind": "assertion", "issuer": EDGE, "audiences": [HS_AUDIENCE],
                         "algorithms": ["HS256"], "hmac_keys": [{"kid": "hs-1", "secret_base64": hs_secret}]}],
            "background_refresh": false,
        }))
        .unwrap(),
    )
    .unwrap();
    let ed_service = Verifier::new(
        Config::from_value(json!({
            "issuers": [{"kind": "assertion", "issuer": EDGE, "audiences": ["orders"], "jwks": minter.jwks()}],
            "background_refresh": false,
        }))
        .unwrap(),
    )
    .unwrap();
    let misses = f.verifier(json!({"capacity": 1, "shards": 1}));
    let rs: Vec<String> = (0..64).map(|i| f.token(Alg::RS256, &format!("svc-{i}"))).collect();
    let ed: Vec<String> = (0..64).map(|i| f.token(Alg::EdDSA, &format!("svc-{i}"))).collect();
    let unit = |n: usize| vec![(); n];
    let cycle = |pool: &Vec<String>| {
        let pool = pool.clone();
        move |n: usize| (0..n).map(|i| pool[i % pool.len()].clone()).collect::<Vec<_>>()
    };
    let rows: Vec<(&str, f64)> = vec![
        (
            "edge: HTTP decision, cache hit",
            cpu_per_op(20_000, unit, |_| {
                black_box(plain.decide(&verifier, &req, DecideMode::CachedOnly));
            }),
        ),
        (
            "edge: HTTP decision, cache hit + mint",
            cpu_per_op(2_000, unit, |_| {
                black_box(minting.decide_minting(&verifier, Some(&minter), &req, DecideMode::CachedOnly));
            }),
        ),
        (
            "edge: mint alone",
            cpu_per_op(2_000, unit, |_| {
                black_box(minter.mint(&v, token.as_bytes(), "orders", &r, false).unwrap());
            }),
        ),
        (
            "edge: mint as built before (claims as a serde_json::Value per call)",
            cpu_per_op(2_000, unit, |_| {
                black_box(mint_as_before(&pair, &header_b64, &v, &r));
            }),
        ),
        (
            "edge: Ed25519 sign alone (aws-lc)",
            cpu_per_op(2_000, unit, |_| {
                black_box(pair.sign(input.as_bytes()));
            }),
        ),
        (
            "edge: HTTP decision, cache hit + HS256 mint",
            cpu_per_op(20_000, unit, |_| {
                black_box(hs_policy.decide_minting(&verifier, Some(&hs_minter), &req, DecideMode::CachedOnly));
            }),
        ),
        (
            "edge: HS256 mint alone",
            cpu_per_op(20_000, unit, |_| {
                black_box(hs_minter.mint(&v, token.as_bytes(), HS_AUDIENCE, &r, false).unwrap());
            }),
        ),
        (
            "edge: HMAC-SHA256 alone (aws-lc)",
            cpu_per_op(20_000, unit, |_| {
                black_box(aws_lc_rs::hmac::sign(&hs_key, hs_input.as_bytes()));
            }),
        ),
        (
            "edge: 16 random bytes from aws-lc (one call per jti, as before)",
            cpu_per_op(20_000, unit, |_| {
                let mut jti = [0u8; 16];
                aws_lc_rs::rand::fill(&mut jti).unwrap();
                black_box(jti);
            }),
        ),
        (
            "edge: getpid (the jti pool's fork check)",
            cpu_per_op(20_000, unit, |_| {
                black_box(std::process::id());
            }),
        ),
        (
            "behind: inherited verify, HS256 (verify_assertion: signature, claims, binding, replay)",
            cpu_per_op(
                5_000,
                |n| {
                    (0..n)
                        .map(|_| hs_minter.mint(&v, token.as_bytes(), HS_AUDIENCE, &r, false).unwrap())
                        .collect()
                },
                |a: String| {
                    hs_service.verify_assertion(&a, &r, false).unwrap();
                },
            ),
        ),
        (
            "behind: inherited verify, EdDSA (verify_assertion: signature, claims, binding, replay)",
            cpu_per_op(
                1_000,
                |n| {
                    (0..n)
                        .map(|_| minter.mint(&v, token.as_bytes(), "orders", &r, false).unwrap())
                        .collect()
                },
                |a: String| {
                    ed_service.verify_assertion(&a, &r, false).unwrap();
                },
            ),
        ),
        (
            "behind: inherited verify (signature, claims, binding, replay)",
            cpu_per_op(
                1_000,
                |n| {
                    (0..n)
                        .map(|_| minter.mint(&v, token.as_bytes(), "orders", &r, false).unwrap())
                        .collect()
                },
                |a: String| {
                    inheritance.verify(&service, &a, &r, false).unwrap();
                },
            ),
        ),
        (
            "behind: the engine's verify of an assertion (fresh)",
            cpu_per_op(1_000, unit, |_| {
                service.verify_with(&sample, &fresh).unwrap();
            }),
        ),
        (
            "behind: Ed25519 verify alone (aws-lc)",
            cpu_per_op(1_000, unit, |_| public.verify(input.as_bytes(), &sig).unwrap()),
        ),
        (
            "an ordinary EdDSA token, cache miss",
            cpu_per_op(1_000, cycle(&ed), |t| {
                misses.verify(&t).unwrap();
            }),
        ),
        (
            "an ordinary RS256 token, cache miss",
            cpu_per_op(1_000, cycle(&rs), |t| {
                misses.verify(&t).unwrap();
            }),
        ),
        (
            "an ordinary RS256 token, cache hit",
            cpu_per_op(20_000, unit, |_| {
                black_box(verifier.verify(&token).unwrap());
            }),
        ),
    ];
    println!("\n| step | CPU time per call |\n|---|---:|");
    for (name, ns) in rows {
        if ns >= 1000.0 {
            println!("| {name} | {:.1} µs |", ns / 1000.0);
        } else {
            println!("| {name} | {ns:.0} ns |");
        }
    }
    println!();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = cpu_time_table, edge, behind
}
criterion_main!(benches);
