//! A reload (a new verifier built from the configuration, replacing the
//! running one) must never lose trust state: `Verifier::inherit_trust_from`
//! carries every live revocation, the policy version and the fleet feed's
//! staleness clock from the old verifier into the new one. The attacks:
//! revoke, cut Redis, make the server reload, replay the token; or keep
//! Redis cut and reload again and again to never reach `max_stale_secs`.
//!
//! Staleness runs on the manual clock; the only real waits are for
//! messages to cross loopback, each bounded by `eventually`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::verifier_for;
use jwtwarden::{Config, ErrorKind, FeedState, ManualClock, Propagation, Revoker, Verifier};
use jwtwarden_testissuer::redis::RedisServer;
use jwtwarden_testissuer::TestIssuer;
use serde_json::{json, Value};

/// Poll `f` until it holds; fail after 20 s (a bound for a broken feed, not
/// a timing assertion: loopback delivery takes milliseconds).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kind(v: &Verifier, token: &str) -> Option<ErrorKind> {
    v.verify(token).err().map(|e| e.kind())
}

fn state(v: &Verifier) -> FeedState {
    v.revocation_feed().expect("a feed is configured").state
}

/// Stop Redis under `old` (subscribed) and wait until it notices.
fn cut_off(redis: &mut RedisServer, old: &Verifier) {
    redis.stop();
    eventually("the outage is noticed", || state(old) == FeedState::Lagging);
}

fn token(issuer: &TestIssuer, clock: &ManualClock, jti: &str) -> String {
    let mut claims = issuer.default_claims("svc", clock.now_secs());
    claims["jti"] = json!(jti);
    claims["aud"] = json!("api");
    issuer.mint(&issuer.first_kid(), &claims)
}

fn with_feed(redis: &RedisServer) -> impl Fn(&mut Value) + '_ {
    move |c: &mut Value| {
        c["revocation"] = json!({"redis": {"url": redis.url(), "timeout_ms": 2000, "max_stale_secs": 60}});
    }
}

#[test]
fn a_verifier_built_during_a_redis_outage_inherits_what_the_feed_taught_the_old_one() {
    let Some(mut redis) = RedisServer::start() else { return };
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let old = verifier_for(&issuer, &clock, with_feed(&redis));
    eventually("the feed is connected", || state(&old) == FeedState::Connected);
    let t = token(&issuer, &clock, "j-feed");
    assert!(old.verify(&t).is_ok());
    // Another process revokes; the old verifier learns it from the feed
    // only (no state_dir: it lives in memory).
    let mut cfg = common::config_json(&issuer);
    with_feed(&redis)(&mut cfg);
    let revoker = Revoker::with_clock(Config::from_value(cfg).unwrap(), Arc::new(clock.clone())).unwrap();
    assert_eq!(
        revoker.revoke_jti(&issuer.url(), "j-feed", None).unwrap(),
        Propagation::Fleet
    );
    eventually("the feed delivers", || kind(&old, &t) == Some(ErrorKind::Revoked));
    redis.stop();
    // The reload: same configuration, Redis unreachable.
    let new = verifier_for(&issuer, &clock, with_feed(&redis));
    assert!(new.verify(&t).is_ok(), "alone, the new verifier cannot know");
    new.inherit_trust_from(&old).unwrap();
    assert_eq!(kind(&new, &t), Some(ErrorKind::Revoked), "carried across the reload");
    assert!(
        new.verify_cached(&t, &Default::default()).is_none(),
        "no cached success survives either"
    );
    assert!(new.revocations().iter().any(|r| r.value == "j-feed"));
}

#[test]
fn a_reload_during_a_redis_outage_does_not_extend_the_fail_closed_deadline() {
    let Some(mut redis) = RedisServer::start() else { return };
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let old = verifier_for(&issuer, &clock, with_feed(&redis));
    eventually("the feed is connected", || state(&old) == FeedState::Connected);
    let t = token(&issuer, &clock, "j-stale");
    cut_off(&mut redis, &old);
    // One second before the old verifier fails closed, the server reloads.
    clock.advance_secs(59);
    assert!(old.verify(&t).is_ok());
    let new = verifier_for(&issuer, &clock, with_feed(&redis));
    new.inherit_trust_from(&old).unwrap();
    assert!(new.verify(&t).is_ok(), "still within max_stale_secs");
    clock.advance_secs(2);
    assert_eq!(kind(&old, &t), Some(ErrorKind::RevocationsStale));
    assert_eq!(
        kind(&new, &t),
        Some(ErrorKind::RevocationsStale),
        "a reload granted another max_stale_secs without the feed"
    );
    assert_eq!(state(&new), FeedState::FailedClosed);
    // And it recovers like any verifier once Redis is back.
    redis.resume();
    eventually("the new verifier recovers", || new.verify(&t).is_ok());
}

#[test]
fn a_new_verifier_that_reached_redis_itself_keeps_its_own_contact() {
    let Some(mut redis) = RedisServer::start() else { return };
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let old = verifier_for(&issuer, &clock, with_feed(&redis));
    eventually("the feed is connected", || state(&old) == FeedState::Connected);
    cut_off(&mut redis, &old);
    clock.advance_secs(59);
    redis.resume();
    // Built once Redis answers again: its contact is real and current, the
    // old verifier's age does not shorten it.
    let new = verifier_for(&issuer, &clock, with_feed(&redis));
    new.inherit_trust_from(&old).unwrap();
    clock.advance_secs(2);
    let t = token(&issuer, &clock, "j-fresh");
    assert!(new.verify(&t).is_ok(), "{:?}", new.revocation_feed());
}

#[test]
fn local_revocations_kids_and_the_policy_version_are_carried() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let old = verifier_for(&issuer, &clock, |_| {});
    let iss = issuer.url();
    let by_jti = token(&issuer, &clock, "j-local");
    let mut claims = issuer.default_claims("mallory", clock.now_secs());
    claims["aud"] = json!("api");
    let by_sub = issuer.mint(&issuer.first_kid(), &claims);
    let second_kid = issuer.add_key(jwtwarden_testissuer::Alg::RS256);
    old.refresh_issuer(&iss).unwrap();
    let mut claims = issuer.default_claims("svc", clock.now_secs());
    claims["aud"] = json!("api");
    let by_kid = issuer.mint(&second_kid, &claims);
    for t in [&by_jti, &by_sub, &by_kid] {
        assert!(old.verify(t).is_ok());
    }
    old.revoke_jti(&iss, "j-local", None).unwrap();
    old.revoke_subject(&iss, "mallory", clock.now_secs() + 1).unwrap();
    old.revoke_kid(&iss, &second_kid).unwrap();
    let mut policy = 0;
    for _ in 0..3 {
        policy = old.bump_policy_version();
    }

    let new = verifier_for(&issuer, &clock, |_| {});
    assert!(new.verify(&by_kid).is_ok(), "the issuer still publishes the kid");
    let carried = new.inherit_trust_from(&old).unwrap();
    assert_eq!(carried, 3);
    assert_eq!(kind(&new, &by_jti), Some(ErrorKind::Revoked));
    assert_eq!(kind(&new, &by_sub), Some(ErrorKind::Revoked));
    assert!(new.verify(&by_kid).is_err(), "the revoked kid is trusted again");
    // Later fetches keep ignoring it.
    new.refresh_issuer(&iss).unwrap();
    assert!(new.verify(&by_kid).is_err());
    assert!(
        new.bump_policy_version() > policy,
        "the policy version went back below the old verifier's"
    );
    // Carrying again changes nothing.
    assert_eq!(new.inherit_trust_from(&old).unwrap(), 0);
}

#[test]
fn a_new_verifier_that_cannot_hold_the_old_ones_revocations_is_refused() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let old = verifier_for(&issuer, &clock, |_| {});
    for j in ["a", "b", "c"] {
        old.revoke_jti(&issuer.url(), j, None).unwrap();
    }
    // A reload that shrank revocation.max_entries below what is held.
    let new = verifier_for(&issuer, &clock, |c| c["revocation"] = json!({"max_entries": 2}));
    let err = new.inherit_trust_from(&old).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevocationListFull);
}

#[test]
fn a_revocation_not_yet_published_is_published_by_the_new_verifier() {
    let Some(mut redis) = RedisServer::start() else { return };
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let old = verifier_for(&issuer, &clock, with_feed(&redis));
    eventually("the feed is connected", || state(&old) == FeedState::Connected);
    cut_off(&mut redis, &old);
    let t = token(&issuer, &clock, "j-pending");
    assert_eq!(
        old.revoke_jti(&issuer.url(), "j-pending", None).unwrap(),
        Propagation::Pending
    );
    let new = verifier_for(&issuer, &clock, with_feed(&redis));
    new.inherit_trust_from(&old).unwrap();
    assert_eq!(
        new.revocation_feed().unwrap().pending,
        1,
        "reported as not yet fleet-wide"
    );
    // The reload's swap drops the old verifier before Redis is back.
    drop(old);
    redis.resume();
    eventually("the new verifier publishes it", || {
        new.revocation_feed().unwrap().pending == 0
    });
    let other = verifier_for(&issuer, &clock, with_feed(&redis));
    eventually("the rest of the fleet rejects it", || {
        kind(&other, &t) == Some(ErrorKind::Revoked)
    });
}
