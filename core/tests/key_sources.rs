//! Key sources other than a plain `jwks_uri`, and the background refresher.

mod common;

use std::sync::Arc;
use std::time::Duration;

use jwtwarden::{Clock, Config, ErrorKind, ManualClock, Verifier};
use jwtwarden_testissuer::{Alg as IssuerAlg, TestIssuer};
use serde_json::json;

#[test]
fn oidc_discovery_finds_the_jwks() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let config = Config::from_value(json!({
        "issuers": [{"issuer": issuer.url(), "discovery": true, "audiences": ["api"]}],
        "http": {"allow_http": true},
        "background_refresh": false,
    }))
    .unwrap();
    let v = Verifier::with_clock(config, Arc::new(clock.clone())).unwrap();
    let token = issuer.mint(&issuer.first_kid(), &issuer.default_claims("svc", clock.now_secs()));
    assert!(v.verify(&token).is_ok());
    assert_eq!(issuer.discovery_requests(), 1);
    assert_eq!(issuer.jwks_requests(), 1);
}

#[test]
fn static_jwks_file_is_reloaded_when_it_changes_and_never_fetched() {
    let issuer = TestIssuer::start_empty();
    let a = issuer.add_key(IssuerAlg::ES256);
    let b = issuer.add_key(IssuerAlg::EdDSA);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, json!({"keys": [issuer.public_jwk(&a)]}).to_string()).unwrap();
    let clock = ManualClock::starting_now();
    let config = Config::from_value(json!({
        "issuers": [{"issuer": issuer.url(), "jwks_file": path, "audiences": ["api"]}],
        "background_refresh": false,
    }))
    .unwrap();
    let v = Verifier::with_clock(config, Arc::new(clock.clone())).unwrap();
    let ta = issuer.mint(&a, &issuer.default_claims("svc", clock.now_secs()));
    let tb = issuer.mint(&b, &issuer.default_claims("svc", clock.now_secs()));
    assert!(v.verify(&ta).is_ok());
    assert_eq!(v.verify(&tb).unwrap_err().kind(), ErrorKind::UnknownKid);

    std::thread::sleep(Duration::from_millis(20)); // a distinct mtime
    std::fs::write(&path, json!({"keys": [issuer.public_jwk(&b)]}).to_string()).unwrap();
    clock.advance_secs(3);
    v.run_due_refreshes();
    assert!(v.verify(&tb).is_ok());
    assert_eq!(
        v.verify(&ta).unwrap_err().kind(),
        ErrorKind::UnknownKid,
        "key a left the file"
    );
    assert_eq!(issuer.total_requests(), 0);

    // A broken file keeps the last good keys.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&path, "{ not json").unwrap();
    clock.advance_secs(3);
    v.run_due_refreshes();
    assert!(v.verify(&tb).is_ok());
}

#[test]
fn inline_jwks_and_bad_static_config_are_checked_at_start() {
    let issuer = TestIssuer::start_empty();
    let kid = issuer.add_key(IssuerAlg::RS256);
    let ok = Config::from_value(json!({
        "issuers": [{"issuer": "https://static.example", "jwks": {"keys": [issuer.public_jwk(&kid)]}, "audiences": ["api"]}],
    }))
    .unwrap();
    let v = Verifier::new(ok).unwrap();
    let mut claims = issuer.default_claims("svc", jwtwarden::SystemClock.now_ms() / 1000);
    claims["iss"] = json!("https://static.example");
    assert!(v.verify(issuer.mint(&kid, &claims)).is_ok());

    let bad = Config::from_value(json!({
        "issuers": [{"issuer": "https://static.example", "jwks": {"keys": []}, "audiences": ["api"]}],
    }))
    .unwrap();
    let err = Verifier::new(bad).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.message().contains("issuers[0]"), "{err}");
}

#[test]
fn background_thread_refreshes_ahead_of_expiry_and_stops_when_dropped() {
    let issuer = TestIssuer::start();
    let v = common::background_verifier(&issuer);
    // Real time here: the point is the real thread. Wait (bounded) for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while issuer.jwks_requests() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(issuer.jwks_requests() >= 3, "scheduled refreshes ran in the background");
    assert!(v.metrics().issuers[0].fetches["scheduled"] >= 2);
    drop(v);
    // A refresh already under way when the verifier is dropped may finish;
    // give it one refresher cycle (at most 1 s), then nothing more may come.
    std::thread::sleep(Duration::from_millis(1200));
    let after_drop = issuer.jwks_requests();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        issuer.jwks_requests(),
        after_drop,
        "the refresher stopped with the verifier"
    );
}
