//! Unknown-`kid` handling: one coalesced refresh per cooldown, fail closed.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::{setup, with_header};
use jwtwarden::ErrorKind;
use serde_json::json;

#[test]
fn unknown_kid_storm_fetches_at_most_once_per_cooldown_window() {
    let s = setup();
    let base = s.token(&s.issuer.first_kid());
    assert_eq!(s.issuer.jwks_requests(), 1);
    let rejected = AtomicU64::new(0);

    // 10,000 tokens with random kids, from 8 threads.
    let storm = |round: u64| {
        std::thread::scope(|scope| {
            for t in 0..8u64 {
                let (s, base, rejected) = (&s, &base, &rejected);
                scope.spawn(move || {
                    for i in 0..1250u64 {
                        let kid = format!("storm-{round}-{t}-{i}-{:x}", fastrand::u64(..));
                        let token = with_header(base, &json!({"alg": "RS256", "kid": kid}));
                        let err = s.verifier.verify(&token).expect_err("unknown kid never verifies");
                        assert_eq!(err.kind(), ErrorKind::UnknownKid, "{err}");
                        rejected.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
    };

    storm(0);
    assert_eq!(rejected.load(Ordering::Relaxed), 10_000);
    assert_eq!(s.issuer.jwks_requests(), 2, "one refresh for the whole storm");

    // Still inside the cooldown: nothing more.
    s.clock.advance_secs(29);
    storm(1);
    assert_eq!(s.issuer.jwks_requests(), 2);

    // Next window: at most one more.
    s.clock.advance_secs(2);
    storm(2);
    assert_eq!(s.issuer.jwks_requests(), 3);

    let m = s.verifier.metrics();
    let i = &m.issuers[0];
    assert_eq!(i.fetches["unknown_kid"], 2);
    assert!(i.rate_limited_refreshes > 0);
    assert_eq!(i.unknown_kid, 30_000);
    assert_eq!(m.verifications.rejected["unknown_kid"], 30_000);
}

#[test]
fn remembered_unknown_kid_costs_no_fetch_and_a_new_key_is_still_found() {
    let s = setup();
    let base = s.token(&s.issuer.first_kid());
    let probe = with_header(&base, &json!({"alg": "RS256", "kid": "not-yet"}));
    assert_eq!(s.kind(&probe), ErrorKind::UnknownKid);
    assert_eq!(s.kind(&probe), ErrorKind::UnknownKid);
    assert_eq!(s.issuer.jwks_requests(), 2);

    // A key that appears later is picked up by the scheduled refresh even
    // while its kid is remembered as unknown.
    let kid = s.issuer.rotate(jwtwarden_testissuer::Alg::ES256);
    s.clock.advance_secs(300);
    s.verifier.run_due_refreshes();
    assert!(s.verifier.verify(s.token(&kid)).is_ok());
}

#[test]
fn bad_signature_under_known_kid_never_fetches() {
    let s = setup();
    let kid = s.issuer.first_kid();
    let token = s.token(&kid);
    let mut forged = token.clone();
    forged.truncate(token.len() - 4);
    forged.push_str("AAAA");
    for _ in 0..100 {
        assert_eq!(s.kind(&forged), ErrorKind::InvalidSignature);
    }
    assert_eq!(s.issuer.jwks_requests(), 1);
}

#[test]
fn token_without_kid_uses_the_single_fitting_key_and_never_fetches() {
    let s = setup();
    let kid = s.issuer.first_kid();
    let claims = s.issuer.default_claims("svc", s.clock.now_secs());
    let token = s
        .issuer
        .mint_with_header(&kid, &json!({"alg": "RS256", "typ": "JWT"}), &claims);
    assert!(s.verifier.verify(&token).is_ok());
    s.issuer.rotate(jwtwarden_testissuer::Alg::RS256);
    s.verifier.refresh_issuer(&s.issuer.url()).unwrap();
    let token2 = s.issuer.mint_with_header(&kid, &json!({"alg": "RS256"}), &claims);
    assert_eq!(s.kind(&token2), ErrorKind::MissingKid, "two RSA keys: ambiguous");
    assert_eq!(s.issuer.jwks_requests(), 2);
}
