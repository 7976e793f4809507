//! Key rotation and removal, end to end against the test issuer.

mod common;

use common::{setup, setup_with, IssuerAlg};
use jwtwarden::ErrorKind;

#[test]
fn rotation_with_overlap_new_kid_verifies_after_exactly_one_fetch() {
    let s = setup();
    let old = s.issuer.first_kid();
    let old_token = s.token(&old);
    assert!(s.verifier.verify(&old_token).is_ok());
    assert_eq!(s.issuer.jwks_requests(), 1, "startup fetch only");

    let new = s.issuer.rotate(IssuerAlg::RS256);
    let new_token = s.token(&new);
    let v = s.verifier.verify(&new_token).expect("new kid verifies after a refresh");
    assert_eq!(v.kid(), Some(new.as_str()));
    assert!(!v.cached());
    assert_eq!(s.issuer.jwks_requests(), 2, "exactly one unknown-kid fetch");
    let headers = s.issuer.last_jwks_request_headers();
    assert!(
        headers.iter().any(|(k, v)| k == "cache-control" && v == "no-cache"),
        "unknown-kid refetch asks intermediaries for a fresh copy: {headers:?}"
    );

    // Old tokens keep verifying while the old key is published (fresh or cached).
    assert!(s.verifier.verify(&old_token).unwrap().cached());
    let another_old = s.token(&old);
    assert!(s.verifier.verify(&another_old).is_ok());
    assert!(s.verifier.verify(&new_token).unwrap().cached());
    assert_eq!(s.issuer.jwks_requests(), 2, "no more fetches");
}

#[test]
fn removed_key_stops_serving_cached_results_once_refresh_sees_it_gone() {
    let s = setup();
    let old = s.issuer.first_kid();
    let new = s.issuer.rotate(IssuerAlg::ES256);
    let old_token = s.token(&old);
    let new_token = s.token(&new);
    s.verifier.verify(&old_token).unwrap();
    s.verifier.verify(&new_token).unwrap();
    assert!(s.verifier.verify(&old_token).unwrap().cached());

    s.issuer.retire_key(&old);
    // Before the refresh sees it, the cache may still serve it (bounded by
    // the cache TTL); after the scheduled refresh, never.
    s.clock.advance_secs(300);
    s.verifier.run_due_refreshes();
    assert_eq!(s.kind(&old_token), ErrorKind::UnknownKid);
    // Tokens of keys still published keep verifying.
    assert!(s.verifier.verify(&new_token).is_ok());
}

#[test]
fn removed_key_is_rejected_even_from_another_thread_cache() {
    let s = setup();
    let old = s.issuer.first_kid();
    s.issuer.rotate(IssuerAlg::RS256);
    let old_token = s.token(&old);
    // Warm the per-thread caches of another thread too.
    std::thread::scope(|scope| {
        scope.spawn(|| {
            s.verifier.verify(&old_token).unwrap();
            assert!(s.verifier.verify(&old_token).unwrap().cached());
        });
    });
    assert!(s.verifier.verify(&old_token).unwrap().cached());
    s.issuer.retire_key(&old);
    s.verifier.refresh_issuer(&s.issuer.url()).unwrap();
    assert_eq!(s.kind(&old_token), ErrorKind::UnknownKid);
    std::thread::scope(|scope| {
        scope.spawn(|| assert!(s.verifier.verify(&old_token).is_err()));
    });
}

#[test]
fn rotation_grace_window_keeps_a_removed_key_for_a_bounded_time() {
    let s = setup_with(|c| c["issuers"][0]["refresh"] = serde_json::json!({"rotation_grace_secs": 60}));
    let old = s.issuer.first_kid();
    s.issuer.rotate(IssuerAlg::RS256);
    let old_token = s.token(&old);
    s.verifier.verify(&old_token).unwrap();
    s.issuer.retire_key(&old);
    s.verifier.refresh_issuer(&s.issuer.url()).unwrap();
    let v = s.verifier.verify(&old_token).expect("inside the grace window");
    assert!(!v.cached(), "the keyset changed: re-verified with the retired key");
    s.clock.advance_secs(61);
    assert_eq!(s.kind(&old_token), ErrorKind::UnknownKid);
}

#[test]
fn emergency_kid_revocation_survives_refreshes() {
    let s = setup();
    let kid = s.issuer.first_kid();
    let token = s.token(&kid);
    s.verifier.verify(&token).unwrap();
    s.verifier.revoke_kid(&s.issuer.url(), &kid).unwrap();
    assert_eq!(s.kind(&token), ErrorKind::KeyRevoked);
    s.verifier.refresh_issuer(&s.issuer.url()).ok(); // the JWKS still publishes it
    assert_eq!(s.kind(&token), ErrorKind::KeyRevoked);
}
