//! JWKS endpoint failures: last known good keys keep working, backoff keeps
//! retries cold, past `max_stale` the issuer fails closed, and it recovers.

mod common;

use std::time::Duration;

use common::{setup_with, verifier_for, with_header, Fault, Setup};
use jwtwarden::{ErrorKind, Health, ManualClock, VerifyOptions};
use jwtwarden_testissuer::TestIssuer;
use serde_json::json;

fn outage_setup() -> Setup {
    setup_with(|c| {
        c["issuers"][0]["refresh"] =
            json!({"max_stale_secs": 3600, "backoff_initial_secs": 1, "backoff_max_secs": 120});
    })
}

const FRESH: VerifyOptions<'static> = VerifyOptions {
    issuer: None,
    fresh: true,
};

/// Drive an outage with `fault` through its whole life cycle.
fn survives_outage(fault: Fault, simulate_minutes: u64) {
    let s = outage_setup();
    let iss = s.issuer.url();
    let kid = s.issuer.first_kid();
    let token = s.token(&kid);
    s.verifier.verify(&token).unwrap();

    s.issuer.set_fault(fault.clone());
    s.clock.advance_secs(301); // past the 300 s default TTL
    s.verifier.run_due_refreshes();
    assert_eq!(s.verifier.issuer_health(&iss).unwrap(), Health::Stale, "{fault:?}");
    let m = s.verifier.metrics();
    assert!(m.issuers[0].fetch_failures >= 1, "{fault:?}");
    assert!(m.issuers[0].last_error.is_some());

    // Last known good keys keep verifying, with a real signature check.
    let v = s
        .verifier
        .verify_with(&token, &FRESH)
        .expect("last known good key verifies");
    assert!(!v.cached());
    let later = s.token(&kid);
    assert!(s.verifier.verify(&later).is_ok());

    // No hot retry loop: asking again at the same instant fetches nothing,
    // and over simulated minutes the retries back off exponentially.
    let before = s.issuer.jwks_requests();
    for _ in 0..100 {
        s.verifier.run_due_refreshes();
    }
    assert_eq!(s.issuer.jwks_requests(), before, "{fault:?}: retried without waiting");
    for _ in 0..simulate_minutes * 60 {
        s.clock.advance_secs(1);
        s.verifier.run_due_refreshes();
    }
    let retries = s.issuer.jwks_requests() - before;
    // 1, 2, 4, … 120 s (±20 %): about 6 + minutes/2 attempts; once a second would be 60/min.
    assert!(
        retries <= 6 + simulate_minutes,
        "{fault:?}: {retries} retries in {simulate_minutes} min"
    );

    // Past max_stale: fail closed, cached results included, with its own kind.
    s.clock.advance_secs(3600);
    s.verifier.run_due_refreshes();
    assert_eq!(s.kind(&token), ErrorKind::KeysStale, "{fault:?}");
    assert_eq!(s.kind(&later), ErrorKind::KeysStale);
    assert_eq!(s.verifier.issuer_health(&iss).unwrap(), Health::FailedClosed);

    // Recovery once the endpoint answers again, on the next retry: at most
    // backoff_max_secs + 20 % jitter away.
    s.issuer.set_fault(Fault::None);
    for _ in 0..(120 * 6 / 5 + 1) {
        s.clock.advance_secs(1);
        s.verifier.run_due_refreshes();
    }
    assert_eq!(s.verifier.issuer_health(&iss).unwrap(), Health::Fresh, "{fault:?}");
    assert!(s.verifier.verify(s.token(&kid)).is_ok());
}

#[test]
fn endpoint_500_serves_last_known_good_then_fails_closed_then_recovers() {
    survives_outage(Fault::Status(500), 10);
}

#[test]
fn endpoint_invalid_json_keeps_last_known_good() {
    survives_outage(Fault::InvalidJson, 2);
}

#[test]
fn endpoint_oversized_body_is_refused_and_last_known_good_kept() {
    survives_outage(Fault::Oversized(300_000), 2);
}

#[test]
fn endpoint_dropping_connections_keeps_last_known_good() {
    survives_outage(Fault::Drop, 2);
}

#[test]
fn endpoint_redirecting_to_another_host_is_refused() {
    let s = outage_setup();
    let other = TestIssuer::start();
    // localhost vs 127.0.0.1: another host, even on this machine.
    s.issuer.set_fault(Fault::RedirectTo(format!(
        "http://localhost:{}/jwks.json",
        other.port()
    )));
    s.clock.advance_secs(301);
    s.verifier.run_due_refreshes();
    assert_eq!(other.total_requests(), 0, "never follows a redirect to another host");
    let err = s.verifier.metrics().issuers[0].last_error.clone().unwrap();
    assert!(err.contains("another host"), "{err}");
    assert!(s.verifier.verify(s.token(&s.issuer.first_kid())).is_ok());
}

#[test]
fn endpoint_timeout_keeps_last_known_good() {
    // Real time: each attempt waits for the 1.5 s timeout, so keep this short.
    let s = outage_setup();
    let kid = s.issuer.first_kid();
    s.issuer.set_fault(Fault::Delay(Duration::from_secs(5)));
    s.clock.advance_secs(301);
    s.verifier.run_due_refreshes();
    let err = s.verifier.metrics().issuers[0].last_error.clone().unwrap();
    assert!(
        err.to_lowercase().contains("timeout") || err.to_lowercase().contains("timed out"),
        "{err}"
    );
    assert!(s.verifier.verify(s.token(&kid)).is_ok());
    assert_eq!(s.verifier.issuer_health(&s.issuer.url()).unwrap(), Health::Stale);
}

#[test]
fn endpoint_refusing_connections_keeps_last_known_good_and_recovers_on_the_same_port() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let verifier = verifier_for(&issuer, &clock, |c| {
        c["issuers"][0]["refresh"] = json!({"backoff_initial_secs": 1, "backoff_max_secs": 10});
    });
    let url = issuer.url();
    let port = issuer.port();
    let token = issuer.mint(&issuer.first_kid(), &issuer.default_claims("svc", clock.now_secs()));
    verifier.verify(&token).unwrap();
    drop(issuer); // connection refused from now on

    clock.advance_secs(301);
    verifier.run_due_refreshes();
    assert_eq!(verifier.issuer_health(&url).unwrap(), Health::Stale);
    assert!(verifier.verify_with(&token, &FRESH).is_ok(), "last known good");

    let back = TestIssuer::start_with(&jwtwarden_testissuer::IssuerOptions {
        port,
        algs: vec![jwtwarden_testissuer::Alg::ES256],
        admin: false,
    })
    .expect("rebind the same port");
    for _ in 0..15 {
        clock.advance_secs(1);
        verifier.run_due_refreshes();
    }
    assert_eq!(verifier.issuer_health(&url).unwrap(), Health::Fresh);
    let new_token = back.mint(&back.first_kid(), &back.default_claims("svc", clock.now_secs()));
    assert!(verifier.verify(&new_token).is_ok());
    assert_eq!(
        verifier.verify(&token).unwrap_err().kind(),
        ErrorKind::UnknownKid,
        "old key is gone now"
    );
}

#[test]
fn never_reachable_issuer_rejects_with_keys_unavailable_and_retries_on_cooldown() {
    let issuer = TestIssuer::start();
    issuer.set_fault(Fault::Status(503));
    let clock = ManualClock::starting_now();
    let verifier = verifier_for(&issuer, &clock, |_| {});
    let token = issuer.mint(&issuer.first_kid(), &issuer.default_claims("svc", clock.now_secs()));
    for _ in 0..50 {
        assert_eq!(verifier.verify(&token).unwrap_err().kind(), ErrorKind::KeysUnavailable);
    }
    assert_eq!(
        issuer.jwks_requests(),
        2,
        "startup, then one on-demand fetch per cooldown"
    );
    assert_eq!(verifier.issuer_health(&issuer.url()).unwrap(), Health::FailedClosed);
    issuer.set_fault(Fault::None);
    clock.advance_secs(31);
    assert!(verifier.verify(&token).is_ok());
}

#[test]
fn state_dir_serves_persisted_keys_when_the_endpoint_is_down_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let with_state = |c: &mut serde_json::Value| c["state_dir"] = json!(dir.path());
    let token = issuer.mint(&issuer.first_kid(), &issuer.default_claims("svc", clock.now_secs()));
    {
        let first = verifier_for(&issuer, &clock, with_state);
        first.verify(&token).unwrap();
    }
    issuer.set_fault(Fault::Status(500));
    let second = verifier_for(&issuer, &clock, with_state);
    assert!(second.verify(&token).is_ok(), "keys loaded from the state directory");
    let without = verifier_for(&issuer, &clock, |_| {});
    assert_eq!(without.verify(&token).unwrap_err().kind(), ErrorKind::KeysUnavailable);
}

/// An unknown kid whose refetch failed could not be checked: the engine
/// answers `keys_unavailable` (HTTP 503 with `Retry-After`: a client whose
/// token is signed by a key published during the outage must retry, not
/// throw its token away), for every request of the cooldown and with no
/// extra fetch; keys it holds keep verifying. With the issuer answering
/// again, an unknown kid is `unknown_kid` (401), during its cooldown too.
#[test]
fn an_unknown_kid_that_the_failed_refetch_could_not_check_is_keys_unavailable_503() {
    use jwtwarden::http::{DecideMode, HttpPolicy, HttpRequest};
    let s = setup_with(|c| {
        c["issuers"][0]["refresh"] = json!({"unknown_kid_cooldown_secs": 30, "backoff_initial_secs": 1});
    });
    let policy = HttpPolicy::from_json(&json!({"realm": "api"}).to_string()).unwrap();
    let decide = |token: &str| {
        let auth = format!("Bearer {token}");
        let headers: &[(&[u8], &[u8])] = &[(b"authorization", auth.as_bytes())];
        let req = HttpRequest {
            method: "GET",
            target: Some("/orders"),
            headers,
        };
        let d = policy.decide(&s.verifier, &req, DecideMode::Verify);
        let retry_after = d
            .headers()
            .iter()
            .find(|(n, _)| *n == "retry-after")
            .map(|(_, v)| v.clone());
        (d.status(), retry_after)
    };
    let old = s.token(&s.issuer.first_kid());
    assert_eq!(decide(&old), (200, None));

    // Healthy issuer, a kid it does not publish: "no such key", 401 (and
    // 401 again from memory during the cooldown).
    let stranger = with_header(&old, &json!({"alg": "RS256", "typ": "JWT", "kid": "never-published"}));
    assert_eq!(s.kind(&stranger), ErrorKind::UnknownKid);
    assert_eq!(decide(&stranger).0, 401);

    // The issuer rotates, and is unreachable before any worker fetched.
    let new_kid = s.issuer.rotate(jwtwarden_testissuer::Alg::ES256);
    let new = s.token(&new_kid);
    s.issuer.set_fault(Fault::Status(500));
    s.clock.advance_secs(31); // the cooldown allows one fetch
    let before = s.issuer.jwks_requests();
    assert_eq!(s.kind(&new), ErrorKind::KeysUnavailable, "the refetch failed");
    assert_eq!(s.issuer.jwks_requests(), before + 1);
    // The same kid, and a storm of random kids, during the cooldown: still
    // unchecked (the issuer's last fetch failed), no fetch.
    for i in 0..50 {
        assert_eq!(s.kind(&new), ErrorKind::KeysUnavailable);
        let random = with_header(
            &old,
            &json!({"alg": "RS256", "typ": "JWT", "kid": format!("storm-{i}")}),
        );
        assert_eq!(s.kind(&random), ErrorKind::KeysUnavailable);
    }
    assert_eq!(s.issuer.jwks_requests(), before + 1, "the cooldown holds in the outage");
    assert_eq!(decide(&new), (503, Some("5".to_string())));
    // Keys held keep verifying; a bad signature under a known kid stays 401.
    assert!(s.verifier.verify_with(&old, &FRESH).is_ok());
    let sig_at = old.rfind('.').unwrap() + 11;
    let flip = if &old[sig_at..=sig_at] == "A" { "B" } else { "A" };
    let forged = format!("{}{flip}{}", &old[..sig_at], &old[sig_at + 1..]);
    assert_eq!(decide(&forged).0, 401);

    // Back: the next allowed fetch finds the new key; an unknown kid is
    // "no such key" again.
    s.issuer.set_fault(Fault::None);
    s.clock.advance_secs(31);
    assert!(s.verifier.verify(&new).is_ok());
    assert_eq!(s.kind(&stranger), ErrorKind::UnknownKid);
    assert_eq!(decide(&stranger).0, 401);
}
