//! The cache under concurrent insert, eviction, revocation, policy bumps and
//! key rotation: no hit is ever served against a stale stamp. Threads verify
//! a working set larger than the cache (so entries are evicted and inserted
//! all the time) while the main thread revokes tokens, bumps the policy and
//! removes a key; any success for a token whose verification *started* after
//! its revocation (or its key's removal) returned is a violation.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{setup_with, IssuerAlg};
use serde_json::json;

const NEVER: u64 = u64::MAX;

#[test]
fn no_hit_is_served_against_a_stale_stamp_under_concurrent_change() {
    // A cache smaller than the working set: constant eviction and insertion.
    let s = setup_with(|c| c["cache"] = json!({"capacity": 8, "shards": 1}));
    let iss = s.issuer.url();
    let k1 = s.issuer.first_kid();
    let k2 = s.issuer.add_key(IssuerAlg::ES256);
    s.verifier.refresh_issuer(&iss).unwrap();
    let tokens: Vec<(String, String, bool)> = (0..32)
        .map(|i| {
            let claims = s.issuer.default_claims(&format!("svc-{i}"), s.clock.now_secs());
            let jti = claims["jti"].as_str().unwrap().to_string();
            let by_k2 = i % 2 == 1;
            (s.issuer.mint(if by_k2 { &k2 } else { &k1 }, &claims), jti, by_k2)
        })
        .collect();
    for (t, _, _) in &tokens {
        s.verifier.verify(t).unwrap();
    }

    // `events` counts changes that have returned; a token's `invalid_from`
    // is the first event after which it must never verify.
    let events = AtomicU64::new(0);
    let invalid_from: Vec<AtomicU64> = tokens.iter().map(|_| AtomicU64::new(NEVER)).collect();
    let violations = AtomicU64::new(0);
    let successes = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let publish = |indices: &[usize]| {
        let e = events.load(Ordering::SeqCst) + 1;
        for &i in indices {
            invalid_from[i].store(e, Ordering::SeqCst);
        }
        events.store(e, Ordering::SeqCst);
    };

    std::thread::scope(|scope| {
        for t in 0..4 {
            let (tokens, events, invalid_from, violations, successes, done) =
                (&tokens, &events, &invalid_from, &violations, &successes, &done);
            let verifier = &s.verifier;
            scope.spawn(move || {
                let mut i = t;
                while !done.load(Ordering::SeqCst) {
                    i = (i * 7 + 3) % tokens.len();
                    let started_after = events.load(Ordering::SeqCst);
                    if verifier.verify(&tokens[i].0).is_ok() {
                        successes.fetch_add(1, Ordering::Relaxed);
                        if invalid_from[i].load(Ordering::SeqCst) <= started_after {
                            violations.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        // Between changes the threads verify for a while: 20 ms and at
        // least 100 successes, so a starved machine still interleaves (and
        // twelve pauses make the 1,000 successes checked below).
        let pause = || {
            let from = successes.load(Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(20));
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while successes.load(Ordering::Relaxed) < from + 100 {
                if std::time::Instant::now() > deadline {
                    done.store(true, Ordering::SeqCst); // else the scope waits for them for ever
                    panic!("the verifying threads stopped succeeding");
                }
                std::thread::yield_now();
            }
        };
        // Revoke every fourth token by jti, one at a time.
        for i in (0..tokens.len()).step_by(4) {
            pause();
            s.verifier.revoke_jti(&s.issuer.url(), &tokens[i].1, None).unwrap();
            publish(&[i]);
        }
        // A policy bump invalidates every cached result, but every token
        // still valid must keep verifying (fresh).
        pause();
        s.verifier.bump_policy_version();
        // Key rotation: the IdP drops k2; once a refresh that started after
        // the removal returns, no k2 token verifies, cached or not.
        pause();
        s.issuer.retire_key(&k2);
        s.verifier.refresh_issuer(&iss).unwrap();
        let k2_tokens: Vec<usize> = (0..tokens.len()).filter(|&i| tokens[i].2).collect();
        publish(&k2_tokens);
        pause();
        pause();
        done.store(true, Ordering::SeqCst);
    });

    assert_eq!(
        violations.load(Ordering::Relaxed),
        0,
        "a result was served after its revocation or key removal returned"
    );
    assert!(successes.load(Ordering::Relaxed) > 1000, "the threads really verified");
    for (i, (t, _, _)) in tokens.iter().enumerate() {
        let still_valid = invalid_from[i].load(Ordering::SeqCst) == NEVER;
        assert_eq!(s.verifier.verify(t).is_ok(), still_valid, "token {i}");
    }
    let m = s.verifier.metrics();
    assert!(m.cache.evictions > 0, "the working set really churned the cache");
}

/// The same property on the manual clock, with no sleeps: the main thread
/// makes each change only after the verifying threads have made progress
/// since the last one, so the test takes as long as the machine needs and
/// never depends on timing. A small sharded cache churns (every insert
/// evicts) while tokens are revoked by `jti` and by subject, expire as the
/// clock moves, lose their key to a rotation, and the policy is bumped.
#[test]
fn no_hit_outlives_a_change_under_churn_on_the_manual_clock() {
    let s = setup_with(|c| c["cache"] = json!({"capacity": 16, "shards": 4}));
    let iss = s.issuer.url();
    let k1 = s.issuer.first_kid();
    let k2 = s.issuer.add_key(IssuerAlg::ES256);
    s.verifier.refresh_issuer(&iss).unwrap();
    let now = s.clock.now_secs();
    // Token i: signed by k2 when i % 3 == 1; expires soon when i % 4 == 2;
    // subject "alice" when i % 5 == 0.
    struct Case {
        token: String,
        jti: String,
        by_k2: bool,
        expires_soon: bool,
        alice: bool,
    }
    let cases: Vec<Case> = (0..48)
        .map(|i| {
            let (by_k2, expires_soon, alice) = (i % 3 == 1, i % 4 == 2, i % 5 == 0);
            let sub = if alice { "alice".to_string() } else { format!("svc-{i}") };
            let mut claims = s.issuer.default_claims(&sub, now);
            if expires_soon {
                claims["exp"] = json!(now + 100);
            }
            let jti = claims["jti"].as_str().unwrap().to_string();
            let token = s.issuer.mint(if by_k2 { &k2 } else { &k1 }, &claims);
            Case {
                token,
                jti,
                by_k2,
                expires_soon,
                alice,
            }
        })
        .collect();
    for c in &cases {
        s.verifier.verify(&c.token).unwrap();
    }

    let events = AtomicU64::new(0);
    let invalid_from: Vec<AtomicU64> = cases.iter().map(|_| AtomicU64::new(NEVER)).collect();
    let (violations, successes, calls, done) = (
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicBool::new(false),
    );
    let publish = |invalid: &dyn Fn(&Case) -> bool| {
        let e = events.load(Ordering::SeqCst) + 1;
        for (i, c) in cases.iter().enumerate() {
            if invalid(c) && invalid_from[i].load(Ordering::SeqCst) == NEVER {
                invalid_from[i].store(e, Ordering::SeqCst);
            }
        }
        events.store(e, Ordering::SeqCst);
    };
    // Wait (yielding, not sleeping) until the workers made `n` more calls.
    let progress = |n: u64| {
        let target = calls.load(Ordering::SeqCst) + n;
        while calls.load(Ordering::SeqCst) < target {
            std::thread::yield_now();
        }
    };

    std::thread::scope(|scope| {
        for t in 0..3u64 {
            let (cases, events, invalid_from) = (&cases, &events, &invalid_from);
            let (violations, successes, calls, done) = (&violations, &successes, &calls, &done);
            let verifier = &s.verifier;
            scope.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                while !done.load(Ordering::SeqCst) {
                    let i = rng.usize(..cases.len());
                    let started_after = events.load(Ordering::SeqCst);
                    if verifier.verify(&cases[i].token).is_ok() {
                        successes.fetch_add(1, Ordering::Relaxed);
                        if invalid_from[i].load(Ordering::SeqCst) <= started_after {
                            violations.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    calls.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        // Revoke every seventh token by jti, one at a time.
        for i in (3..cases.len()).step_by(7) {
            progress(200);
            s.verifier.revoke_jti(&s.issuer.url(), &cases[i].jti, None).unwrap();
            let jti = &cases[i].jti;
            publish(&|c| c.jti == *jti);
        }
        // Revoke alice's tokens issued before now + 1 s (all of them).
        progress(200);
        s.verifier.revoke_subject(&s.issuer.url(), "alice", now + 1).unwrap();
        publish(&|c| c.alice);
        // Time passes beyond the short tokens' exp and the leeway.
        progress(200);
        s.clock.advance_secs(100 + 30 + 1);
        publish(&|c| c.expires_soon);
        // A policy bump: every valid token keeps verifying (afresh).
        progress(200);
        s.verifier.bump_policy_version();
        // Key rotation: k2 retired; once the refresh returns, no k2 token.
        progress(200);
        s.issuer.retire_key(&k2);
        s.verifier.refresh_issuer(&iss).unwrap();
        publish(&|c| c.by_k2);
        progress(1000);
        done.store(true, Ordering::SeqCst);
    });

    assert_eq!(
        violations.load(Ordering::Relaxed),
        0,
        "a result was served after its revocation, expiry or key removal"
    );
    assert!(successes.load(Ordering::Relaxed) > 1000, "the threads really verified");
    for (i, c) in cases.iter().enumerate() {
        let still_valid = invalid_from[i].load(Ordering::SeqCst) == NEVER;
        assert_eq!(s.verifier.verify(&c.token).is_ok(), still_valid, "token {i}");
    }
    let m = s.verifier.metrics();
    assert!(m.cache.evictions > 0, "the working set really churned the cache");
    assert!(m.cache.entries <= 16, "{:?}", m.cache);
}
