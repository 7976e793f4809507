//! `Verifier::verify_cached`: the cache alone, for servers that must not
//! block their event loop. A hit follows the rules of `verify_with`'s cache
//! (expiry, revocation, policy version, key epoch, pinned issuer), is counted
//! once as a cached success, and nothing ever parses, verifies or fetches; a
//! miss is counted once, by the `verify_with` that follows.

mod common;

use common::IssuerAlg;
use jwtwarden::{ErrorKind, VerifyOptions};
use serde_json::json;

fn plain() -> VerifyOptions<'static> {
    VerifyOptions::default()
}

#[test]
fn a_hit_is_what_verify_with_returns_and_is_counted_once() {
    let s = common::setup();
    let token = s.token(&s.issuer.first_kid());
    let fetches = s.issuer.jwks_requests();

    assert!(
        s.verifier.verify_cached(&token, &plain()).is_none(),
        "nothing cached yet"
    );
    let m = s.verifier.metrics();
    assert_eq!(m.cache.misses, 0, "verify_cached does not count its miss");
    assert_eq!(m.verifications.ok_cached + m.verifications.ok_fresh, 0);

    // The caller then verifies: one miss, counted there.
    let fresh = s.verifier.verify_with(&token, &plain()).unwrap();
    assert!(!fresh.cached());
    let m = s.verifier.metrics();
    assert_eq!((m.cache.misses, m.verifications.ok_fresh), (1, 1));

    let hit = s.verifier.verify_cached(&token, &plain()).expect("a hit");
    assert!(hit.cached());
    assert_eq!(hit.claims(), fresh.claims());
    assert_eq!(hit.verified_at_ms(), fresh.verified_at_ms());
    assert_eq!(hit.expires_at(), fresh.expires_at());
    assert_eq!(hit.issuer(), fresh.issuer());
    let via_verify = s.verifier.verify_with(&token, &plain()).unwrap();
    assert!(via_verify.cached());
    assert_eq!(via_verify.claims(), hit.claims());

    let m = s.verifier.metrics();
    assert_eq!(m.verifications.ok_cached, 2, "each hit counted once");
    assert_eq!(m.cache.hits, 2);
    assert_eq!(m.cache.misses, 1, "the miss was counted once");
    assert_eq!(m.verifications.ok_fresh, 1);
    assert_eq!(s.issuer.jwks_requests(), fetches, "no fetch");
}

#[test]
fn expired_results_are_not_served() {
    let s = common::setup();
    let exp = s.clock.now_secs() + 60;
    let token = s.token_with(&s.issuer.first_kid(), json!({"exp": exp}));
    s.verifier.verify(&token).unwrap();
    // exp plus the default 30 s leeway, as for verify_with.
    s.clock.set_ms((exp + 30) * 1000 - 1);
    assert!(s.verifier.verify_cached(&token, &plain()).is_some());
    s.clock.advance_ms(1);
    assert!(s.verifier.verify_cached(&token, &plain()).is_none());
    assert_eq!(s.kind(&token), ErrorKind::Expired);
}

#[test]
fn revoked_tokens_are_not_served() {
    let s = common::setup();
    let kid = s.issuer.first_kid();
    let by_jti = s.token_with(&kid, json!({"jti": "revoke-me"}));
    let by_sub = s.token_with(&kid, json!({"sub": "mallory"}));
    s.verifier.verify(&by_jti).unwrap();
    s.verifier.verify(&by_sub).unwrap();
    assert!(s.verifier.verify_cached(&by_jti, &plain()).is_some());
    assert!(s.verifier.verify_cached(&by_sub, &plain()).is_some());

    s.verifier.revoke_jti(&s.issuer.url(), "revoke-me", None).unwrap();
    assert!(s.verifier.verify_cached(&by_jti, &plain()).is_none());
    s.verifier
        .revoke_subject(&s.issuer.url(), "mallory", s.clock.now_secs() + 1)
        .unwrap();
    assert!(s.verifier.verify_cached(&by_sub, &plain()).is_none());
    assert_eq!(s.kind(&by_jti), ErrorKind::Revoked);
    assert_eq!(s.kind(&by_sub), ErrorKind::Revoked);
}

#[test]
fn a_policy_bump_invalidates() {
    let s = common::setup();
    let token = s.token(&s.issuer.first_kid());
    s.verifier.verify(&token).unwrap();
    assert!(s.verifier.verify_cached(&token, &plain()).is_some());
    s.verifier.bump_policy_version();
    assert!(s.verifier.verify_cached(&token, &plain()).is_none());
    assert!(!s.verifier.verify(&token).unwrap().cached(), "verified again");
    assert!(s.verifier.verify_cached(&token, &plain()).is_some());
}

#[test]
fn a_key_epoch_change_invalidates() {
    let s = common::setup();
    let kid = s.issuer.first_kid();
    let other = s.issuer.add_key(IssuerAlg::RS256);
    s.verifier.refresh_issuer(&s.issuer.url()).unwrap();
    let token = s.token(&kid);
    s.verifier.verify(&token).unwrap();
    assert!(s.verifier.verify_cached(&token, &plain()).is_some());

    // Another key goes: the epoch moves, every result verified before is stale.
    s.issuer.retire_key(&other);
    s.verifier.refresh_issuer(&s.issuer.url()).unwrap();
    assert!(s.verifier.verify_cached(&token, &plain()).is_none());
    assert!(!s.verifier.verify(&token).unwrap().cached());
    assert!(s.verifier.verify_cached(&token, &plain()).is_some());

    // The token's own key revoked: gone from the cache at once.
    s.verifier.revoke_kid(&s.issuer.url(), &kid).unwrap();
    assert!(s.verifier.verify_cached(&token, &plain()).is_none());
}

#[test]
fn options_follow_verify_with() {
    let s = common::setup();
    let token = s.token(&s.issuer.first_kid());
    s.verifier.verify(&token).unwrap();
    let url = s.issuer.url();
    let pinned = VerifyOptions {
        issuer: Some(&url),
        fresh: false,
    };
    assert!(s.verifier.verify_cached(&token, &pinned).is_some());
    let elsewhere = VerifyOptions {
        issuer: Some("https://other.example"),
        fresh: false,
    };
    assert!(
        s.verifier.verify_cached(&token, &elsewhere).is_none(),
        "unknown pinned issuer"
    );
    let fresh = VerifyOptions {
        issuer: None,
        fresh: true,
    };
    assert!(s.verifier.verify_cached(&token, &fresh).is_none(), "fresh must verify");
    assert!(
        s.verifier.verify_cached("x".repeat(100_000), &plain()).is_none(),
        "too large"
    );
    assert_eq!(s.verifier.metrics().verifications.ok_cached, 1);
}

#[test]
fn the_cache_disabled_never_hits() {
    let s = common::setup_with(|c| c["cache"] = json!({"enabled": false}));
    let token = s.token(&s.issuer.first_kid());
    s.verifier.verify(&token).unwrap();
    assert!(s.verifier.verify_cached(&token, &plain()).is_none());
}

#[test]
fn it_never_fetches() {
    let s = common::setup();
    let fetches = s.issuer.jwks_requests();
    // A kid the verifier has never seen: verify_with would fetch the JWKS.
    let new_kid = s.issuer.add_key(IssuerAlg::RS256);
    let unknown = s.token(&new_kid);
    let garbage = "not.a.jwt";
    for _ in 0..50 {
        assert!(s.verifier.verify_cached(&unknown, &plain()).is_none());
        assert!(s.verifier.verify_cached(garbage, &plain()).is_none());
    }
    assert_eq!(s.issuer.jwks_requests(), fetches, "verify_cached fetched");
    let m = s.verifier.metrics();
    assert_eq!(m.cache.misses, 0);
    assert!(m.verifications.rejected.is_empty(), "never verifies, never rejects");

    // The same token through verify_with fetches the new key, once.
    assert!(!s.verifier.verify(&unknown).unwrap().cached());
    assert_eq!(s.issuer.jwks_requests(), fetches + 1);
    assert!(s.verifier.verify_cached(&unknown, &plain()).is_some());
    assert_eq!(s.issuer.jwks_requests(), fetches + 1);
}
