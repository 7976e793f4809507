//! Revocation and invalidation take effect for every thread the moment the
//! call returns, cached results included.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::setup;
use jwtwarden::{Clock, ErrorKind, Verifier};

/// Verify `token` from 4 threads in a loop while `revoke` runs on this one.
/// Any success that *started* after `revoke` returned is a violation.
fn revoke_while_hammering(verifier: &Verifier, token: &str, revoke: impl FnOnce(), expect: ErrorKind) {
    verifier.verify(token).unwrap();
    assert!(verifier.verify(token).unwrap().cached());
    let revoked = AtomicBool::new(false);
    let violations = AtomicU64::new(0);
    let rejections = AtomicU64::new(0);
    // The four verifiers and this thread: revoke only once every verifier has
    // a warm cache and is looping.
    let warmed = std::sync::Barrier::new(5);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                // Warm this thread's cache before the revocation.
                assert!(verifier.verify(token).is_ok());
                assert!(verifier.verify(token).unwrap().cached());
                warmed.wait();
                loop {
                    let after = revoked.load(Ordering::SeqCst);
                    match verifier.verify(token) {
                        Ok(_) if after => {
                            violations.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            assert_eq!(e.kind(), expect);
                            if rejections.fetch_add(1, Ordering::Relaxed) > 2000 {
                                return;
                            }
                        }
                    }
                    if after && rejections.load(Ordering::Relaxed) > 2000 {
                        return;
                    }
                }
            });
        }
        warmed.wait();
        revoke();
        revoked.store(true, Ordering::SeqCst);
    });
    assert_eq!(
        violations.load(Ordering::Relaxed),
        0,
        "a success after revocation returned"
    );
    assert_eq!(verifier.verify(token).unwrap_err().kind(), expect);
}

#[test]
fn revoke_jti_rejects_a_cached_token_immediately_on_all_threads() {
    let s = setup();
    let token = s.token(&s.issuer.first_kid());
    let jti = common::payload(&token)["jti"].as_str().unwrap().to_owned();
    let other = s.token(&s.issuer.first_kid());
    revoke_while_hammering(
        &s.verifier,
        &token,
        || {
            assert_eq!(
                s.verifier.revoke_jti(&s.issuer.url(), &jti, None).unwrap(),
                jwtwarden::Propagation::Local
            )
        },
        ErrorKind::Revoked,
    );
    assert!(s.verifier.verify(&other).is_ok(), "other tokens are unaffected");
}

#[test]
fn revoke_subject_rejects_tokens_issued_before_and_accepts_later_ones() {
    let s = setup();
    let token = s.token(&s.issuer.first_kid());
    let cutoff = s.clock.now_secs() + 1;
    revoke_while_hammering(
        &s.verifier,
        &token,
        || {
            assert_eq!(
                s.verifier.revoke_subject(&s.issuer.url(), "svc-a", cutoff).unwrap(),
                jwtwarden::Propagation::Local
            )
        },
        ErrorKind::Revoked,
    );
    s.clock.advance_secs(2);
    let reissued = s.token(&s.issuer.first_kid());
    assert!(
        s.verifier.verify(&reissued).is_ok(),
        "a token issued after the cutoff is fine"
    );
}

#[test]
fn revoke_kid_rejects_a_cached_token_immediately_on_all_threads() {
    let s = setup();
    let kid = s.issuer.first_kid();
    let token = s.token(&kid);
    let url = s.issuer.url();
    revoke_while_hammering(
        &s.verifier,
        &token,
        || {
            assert_eq!(
                s.verifier.revoke_kid(&url, &kid).unwrap(),
                jwtwarden::Propagation::Local
            )
        },
        ErrorKind::KeyRevoked,
    );
}

#[test]
fn policy_bump_stops_reuse_of_cached_trust() {
    let s = setup();
    let token = s.token(&s.issuer.first_kid());
    s.verifier.verify(&token).unwrap();
    let t = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                assert!(s.verifier.verify(&token).unwrap().cached());
            })
            .join()
    });
    t.unwrap();
    assert!(s.verifier.verify(&token).unwrap().cached());
    let v1 = s.verifier.bump_policy_version();
    assert_eq!(s.verifier.metrics().policy_version, v1);
    let again = s.verifier.verify(&token).unwrap();
    assert!(!again.cached(), "after a policy bump the signature is checked again");
    std::thread::scope(|scope| {
        scope.spawn(|| {
            assert!(
                s.verifier.verify(&token).unwrap().cached(),
                "re-cached under the new policy"
            )
        });
    });
}

#[test]
fn fresh_option_always_checks_the_signature() {
    let s = setup();
    let token = s.token(&s.issuer.first_kid());
    s.verifier.verify(&token).unwrap();
    let opts = jwtwarden::VerifyOptions {
        issuer: None,
        fresh: true,
    };
    let v = s.verifier.verify_with(&token, &opts).unwrap();
    assert!(!v.cached());
    assert_eq!(v.verified_at_ms(), s.clock.now_ms());
}
