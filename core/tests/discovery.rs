//! OIDC discovery is repeated: on the discovery document's own TTL, and
//! after repeated JWKS failures, so a provider can move its `jwks_uri`.

mod common;

use common::{verifier_for, Setup};
use jwtwarden::{Health, ManualClock};
use jwtwarden_testissuer::TestIssuer;
use serde_json::json;

/// A verifier that finds the JWKS by discovery, set up after `prepare`.
fn discovery_setup(prepare: impl FnOnce(&TestIssuer)) -> Setup {
    let issuer = TestIssuer::start();
    prepare(&issuer);
    let clock = ManualClock::starting_now();
    let verifier = verifier_for(&issuer, &clock, |c| {
        c["issuers"][0]["jwks_uri"] = serde_json::Value::Null;
        c["issuers"][0]["discovery"] = json!(true);
        c["issuers"][0]["refresh"] = json!({"min_ttl_secs": 60, "backoff_initial_secs": 1, "backoff_max_secs": 60});
    });
    Setup {
        issuer,
        clock,
        verifier,
    }
}

/// Step the clock 1 s at a time, running due refreshes, until `done`.
fn step_until(s: &Setup, limit_secs: u64, done: impl Fn(&Setup) -> bool) -> u64 {
    for t in 1..=limit_secs {
        s.clock.advance_secs(1);
        s.verifier.run_due_refreshes();
        if done(s) {
            return t;
        }
    }
    panic!("not done within {limit_secs} s");
}

#[test]
fn moved_jwks_uri_is_rediscovered() {
    // Discovery lives 100 s, the keys 200 s: the first key refresh (at
    // 150-180 s) finds the discovery document expired and asks again.
    let s = discovery_setup(|i| {
        i.set_discovery_cache_control(Some("max-age=100"));
        i.set_cache_control(Some("max-age=200"));
    });
    assert_eq!((s.issuer.discovery_requests(), s.issuer.jwks_requests()), (1, 1));
    s.issuer.set_jwks_path(Some("/keys/v2"));
    let new_kid = s.issuer.rotate(common::IssuerAlg::ES256);

    let t = step_until(&s, 400, |s| s.issuer.requests_to("/keys/v2") > 0);
    assert!((150..=180).contains(&t), "keys refreshed after {t} s");
    assert_eq!(s.issuer.discovery_requests(), 2);
    assert_eq!(
        s.issuer.requests_to("/jwks.json"),
        1,
        "the old path was not asked again"
    );
    let m = s.verifier.metrics();
    assert_eq!(m.issuers[0].fetch_failures, 0);
    assert_eq!(s.verifier.issuer_health(&s.issuer.url()).unwrap(), Health::Fresh);
    assert!(s.verifier.verify(s.token(&new_kid)).is_ok());
}

#[test]
fn discovery_is_not_repeated_while_its_document_is_fresh() {
    let s = discovery_setup(|i| {
        i.set_discovery_cache_control(Some("max-age=1000"));
        i.set_cache_control(Some("max-age=100"));
    });
    // Key refreshes every 75-90 s; discovery only once its 1000 s are up.
    step_until(&s, 200, |s| s.issuer.jwks_requests() >= 3);
    assert_eq!(s.issuer.discovery_requests(), 1);
    step_until(&s, 1100, |s| s.issuer.discovery_requests() == 2);
    assert_eq!(s.verifier.metrics().issuers[0].fetch_failures, 0);
}

#[test]
fn repeated_jwks_failures_trigger_rediscovery() {
    // Discovery is good for a day, but the keys have moved: after two failed
    // fetches at the old place, discovery is asked again.
    let s = discovery_setup(|i| i.set_discovery_cache_control(Some("max-age=86400")));
    s.issuer.set_jwks_path(Some("/keys/v2"));

    step_until(&s, 400, |s| s.issuer.requests_to("/keys/v2") > 0);
    assert_eq!(s.issuer.discovery_requests(), 2);
    assert_eq!(s.issuer.requests_to("/jwks.json"), 3, "startup, then two failures");
    let m = s.verifier.metrics();
    assert_eq!(m.issuers[0].fetch_failures, 2);
    assert_eq!(s.verifier.issuer_health(&s.issuer.url()).unwrap(), Health::Fresh);
    assert!(s.verifier.verify(s.token(&s.issuer.first_kid())).is_ok());
}
