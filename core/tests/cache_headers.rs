//! JWKS lifetime from Cache-Control / Expires, clamped; conditional GET.

mod common;

use common::{setup_with, Fault, Setup};
use jwtwarden::Health;
use serde_json::json;

fn with_refresh(refresh: serde_json::Value) -> Setup {
    setup_with(|c| c["issuers"][0]["refresh"] = refresh)
}

/// Seconds (simulated) until the next scheduled fetch, stepping 1 s.
fn seconds_until_next_fetch(s: &Setup, limit: u64) -> u64 {
    let before = s.issuer.jwks_requests();
    for t in 1..=limit {
        s.clock.advance_secs(1);
        s.verifier.run_due_refreshes();
        if s.issuer.jwks_requests() > before {
            return t;
        }
    }
    panic!("no scheduled fetch within {limit} s");
}

#[test]
fn max_age_is_honoured_with_refresh_ahead_of_expiry() {
    let issuer = jwtwarden_testissuer::TestIssuer::start();
    issuer.set_cache_control(Some("public, max-age=120"));
    let s = common::setup_for(issuer);
    // Refresh at 75–90 % of the TTL: before expiry, never before 75 %.
    let t = seconds_until_next_fetch(&s, 200);
    assert!((90..=108).contains(&t), "refreshed after {t} s of a 120 s TTL");
    assert_eq!(s.verifier.issuer_health(&s.issuer.url()).unwrap(), Health::Fresh);
}

#[test]
fn max_age_is_clamped_to_min_and_max() {
    let s = with_refresh(json!({"min_ttl_secs": 60, "max_ttl_secs": 600}));
    s.issuer.set_cache_control(Some("max-age=5"));
    s.verifier.refresh_issuer(&s.issuer.url()).unwrap();
    let t = seconds_until_next_fetch(&s, 700);
    assert!(
        (45..=54).contains(&t),
        "max-age=5 clamped up to 60 s: refreshed after {t} s"
    );

    s.issuer.set_cache_control(Some("max-age=999999"));
    s.verifier.refresh_issuer(&s.issuer.url()).unwrap();
    let t = seconds_until_next_fetch(&s, 700);
    assert!(
        (450..=540).contains(&t),
        "max-age clamped down to 600 s: refreshed after {t} s"
    );
}

#[test]
fn expires_header_is_used_without_max_age() {
    let issuer = jwtwarden_testissuer::TestIssuer::start();
    let now = std::time::SystemTime::now();
    issuer.set_expires(Some(&httpdate::fmt_http_date(
        now + std::time::Duration::from_secs(200),
    )));
    let s = common::setup_for(issuer);
    let t = seconds_until_next_fetch(&s, 400);
    assert!((145..=182).contains(&t), "Expires ~200 s ahead: refreshed after {t} s");
}

#[test]
fn not_modified_after_etag_extends_the_ttl() {
    let issuer = jwtwarden_testissuer::TestIssuer::start();
    issuer.set_etag(true);
    issuer.set_cache_control(Some("max-age=100"));
    let s = common::setup_for(issuer);
    let token = s.token(&s.issuer.first_kid());
    s.verifier.verify(&token).unwrap();

    seconds_until_next_fetch(&s, 100);
    let headers = s.issuer.last_jwks_request_headers();
    assert!(
        headers.iter().any(|(k, _)| k == "if-none-match"),
        "conditional GET: {headers:?}"
    );
    let m = s.verifier.metrics();
    assert_eq!(m.issuers[0].not_modified, 1);
    assert_eq!(m.issuers[0].fetch_failures, 0);

    // Past the first TTL, the 304 keeps the set fresh and usable.
    s.clock.advance_secs(50);
    assert_eq!(s.verifier.issuer_health(&s.issuer.url()).unwrap(), Health::Fresh);
    assert_eq!(s.verifier.metrics().issuers[0].keyset_age_secs, Some(50));
    assert!(s.verifier.verify(s.token(&s.issuer.first_kid())).is_ok());
}

fn outage_refresh() -> serde_json::Value {
    json!({"backoff_initial_secs": 1, "backoff_max_secs": 120})
}

#[test]
fn retry_after_is_honoured_and_clamped() {
    let s = with_refresh(outage_refresh());
    s.issuer.set_fault(Fault::StatusRetryAfter(429, "60".into()));
    s.clock.advance_secs(301);
    s.verifier.run_due_refreshes();
    assert_eq!(s.verifier.metrics().issuers[0].fetch_failures, 1);

    // Retry-After: 60 replaces the 1 s backoff.
    s.issuer.set_fault(Fault::StatusRetryAfter(503, "100000".into()));
    let t = seconds_until_next_fetch(&s, 300);
    assert_eq!(t, 60, "429 with Retry-After: 60 retried after {t} s");

    // A day is clamped to backoff_max_secs (120), not the 2 s backoff.
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + std::time::Duration::from_secs(90));
    s.issuer.set_fault(Fault::StatusRetryAfter(429, date));
    let t = seconds_until_next_fetch(&s, 300);
    assert_eq!(t, 120, "503 with Retry-After: 100000 retried after {t} s");

    // An HTTP-date, relative to the response's Date (whole seconds apart).
    s.issuer.set_fault(Fault::None);
    let t = seconds_until_next_fetch(&s, 300);
    assert!((88..=92).contains(&t), "Retry-After ~90 s ahead: retried after {t} s");
    assert_eq!(s.verifier.issuer_health(&s.issuer.url()).unwrap(), Health::Fresh);
}

#[test]
fn retry_after_zero_does_not_retry_sooner_than_the_backoff() {
    let s = with_refresh(json!({"backoff_initial_secs": 10, "backoff_max_secs": 120}));
    s.issuer.set_fault(Fault::StatusRetryAfter(503, "0".into()));
    s.clock.advance_secs(301);
    s.verifier.run_due_refreshes();
    let t = seconds_until_next_fetch(&s, 300);
    assert!((8..=12).contains(&t), "retried after {t} s, backoff 10 s ± 20 %");
}

#[test]
fn no_store_wins_over_max_age() {
    let s = with_refresh(json!({"min_ttl_secs": 60}));
    for cc in ["max-age=600, no-store", "public, max-age=600, no-cache"] {
        s.issuer.set_cache_control(Some(cc));
        s.verifier.refresh_issuer(&s.issuer.url()).unwrap();
        let t = seconds_until_next_fetch(&s, 700);
        assert!(
            (45..=54).contains(&t),
            "{cc}: lifetime 0 clamped up to 60 s, refreshed after {t} s"
        );
    }
}

#[test]
fn zero_or_invalid_expires_means_already_expired() {
    let s = with_refresh(json!({"min_ttl_secs": 60, "default_ttl_secs": 300}));
    for expires in ["0", "not a date"] {
        s.issuer.set_expires(Some(expires));
        s.verifier.refresh_issuer(&s.issuer.url()).unwrap();
        let t = seconds_until_next_fetch(&s, 700);
        assert!(
            (45..=54).contains(&t),
            "Expires: {expires}: lifetime 0 clamped up to 60 s (not the 300 s default), refreshed after {t} s"
        );
    }
}

#[test]
fn not_modified_without_a_validator_is_a_failed_fetch() {
    let s = with_refresh(outage_refresh());
    // No ETag and no Last-Modified: the verifier has nothing to send.
    s.issuer.set_fault(Fault::NotModified);
    s.clock.advance_secs(301);
    s.verifier.run_due_refreshes();
    let headers = s.issuer.last_jwks_request_headers();
    assert!(!headers.iter().any(|(k, _)| k.starts_with("if-")), "{headers:?}");
    let m = s.verifier.metrics();
    assert_eq!(m.issuers[0].not_modified, 0, "a 304 that confirms nothing");
    assert_eq!(m.issuers[0].fetch_failures, 1);
    assert!(m.issuers[0].last_error.clone().unwrap().contains("304"));
    assert_eq!(
        s.verifier.issuer_health(&s.issuer.url()).unwrap(),
        Health::Stale,
        "the TTL was not extended"
    );
}
