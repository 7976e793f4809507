//! `http.timeout_ms` bounds a whole fetch (redirect hops and discovery
//! included) and the time a verify waits on keys. These run on real time,
//! since the network does; the assertions on it are generous upper bounds.

mod common;

use std::time::{Duration, Instant};

use common::{verifier_for, Fault};
use jwtwarden::{ErrorKind, ManualClock};
use jwtwarden_testissuer::TestIssuer;
use serde_json::json;

const TIMEOUT_MS: u64 = 1000;

fn timeout_ms(ms: u64) -> impl FnOnce(&mut serde_json::Value) {
    move |c| c["http"]["timeout_ms"] = json!(ms)
}

fn assert_timed_out(err: &str) {
    let lower = err.to_lowercase();
    assert!(lower.contains("timed out") || lower.contains("timeout"), "{err}");
}

#[test]
fn redirect_chain_is_bounded_by_one_timeout() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let verifier = verifier_for(&issuer, &clock, timeout_ms(TIMEOUT_MS));
    // Four requests (3 redirects, the default max) of 0.9 s each: every one
    // fits in the timeout, the chain (3.6 s) does not.
    issuer.set_fault(Fault::SlowRedirects {
        hops: 3,
        delay: Duration::from_millis(900),
    });
    let t = Instant::now();
    let result = verifier.refresh_issuer(&issuer.url());
    let took = t.elapsed();
    eprintln!("refresh through a slow redirect chain took {took:?} (timeout {TIMEOUT_MS} ms)");
    let err = result.expect_err("the chain takes longer than http.timeout_ms");
    assert_timed_out(err.message());
    assert!(
        took < Duration::from_millis(TIMEOUT_MS + 1000),
        "one fetch took {took:?} with timeout_ms {TIMEOUT_MS}"
    );
}

#[test]
fn discovery_and_jwks_fetch_share_one_timeout() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    // Discovery and the JWKS each take 0.9 s: each fits in the timeout,
    // both (1.8 s) do not.
    issuer.set_fault(Fault::Delay(Duration::from_millis(900)));
    let t = Instant::now();
    let verifier = verifier_for(&issuer, &clock, |c| {
        c["issuers"][0]["jwks_uri"] = serde_json::Value::Null;
        c["issuers"][0]["discovery"] = json!(true);
        c["http"]["timeout_ms"] = json!(TIMEOUT_MS);
    });
    let took = t.elapsed();
    eprintln!("startup with discovery took {took:?} (timeout {TIMEOUT_MS} ms)");
    assert!(
        took < Duration::from_millis(TIMEOUT_MS + 1000),
        "startup fetch took {took:?} with timeout_ms {TIMEOUT_MS}"
    );
    assert_eq!(issuer.discovery_requests(), 1);
    let err = verifier.metrics().issuers[0]
        .last_error
        .clone()
        .expect("startup failed");
    assert_timed_out(&err);
}

#[test]
fn verify_waiting_on_a_hung_fetch_does_not_start_a_second_one() {
    // 2 s so that one timeout and two are far apart.
    const HUNG_TIMEOUT_MS: u64 = 2000;
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let verifier = std::sync::Arc::new(verifier_for(&issuer, &clock, timeout_ms(HUNG_TIMEOUT_MS)));
    let new_kid = issuer.rotate(common::IssuerAlg::ES256);
    let token = issuer.mint(&new_kid, &issuer.default_claims("svc", clock.now_secs()));

    issuer.set_fault(Fault::Hang);
    issuer.reset_counts();
    clock.advance_secs(301); // the scheduled refresh is due
    let scheduled = {
        let v = verifier.clone();
        std::thread::spawn(move || v.run_due_refreshes())
    };
    // Wait (not for any expiry) until the scheduled fetch is at the server.
    let seen = Instant::now();
    while issuer.jwks_requests() == 0 {
        assert!(seen.elapsed() < Duration::from_secs(5), "scheduled fetch never arrived");
        std::thread::sleep(Duration::from_millis(5));
    }

    let t = Instant::now();
    let err = verifier.verify(&token).expect_err("keys cannot be fetched");
    let took = t.elapsed();
    scheduled.join().unwrap();
    eprintln!("verify of an unknown kid behind a hung fetch waited {took:?} (timeout {HUNG_TIMEOUT_MS} ms)");
    // The kid could not be checked (the fetch failed): keys unavailable
    // (HTTP 503, retry), not "no such key".
    assert_eq!(err.kind(), ErrorKind::KeysUnavailable, "{err}");
    assert_eq!(
        issuer.jwks_requests(),
        1,
        "the verify waited for the scheduled fetch and must not fetch again after it failed"
    );
    assert!(
        took < Duration::from_millis(HUNG_TIMEOUT_MS + 1000),
        "verify waited {took:?} with timeout_ms {HUNG_TIMEOUT_MS}"
    );
}

#[test]
fn unknown_kid_verify_through_a_slow_redirect_chain_waits_one_timeout() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let verifier = verifier_for(&issuer, &clock, timeout_ms(TIMEOUT_MS));
    let new_kid = issuer.rotate(common::IssuerAlg::ES256);
    let token = issuer.mint(&new_kid, &issuer.default_claims("svc", clock.now_secs()));
    issuer.set_fault(Fault::SlowRedirects {
        hops: 3,
        delay: Duration::from_millis(TIMEOUT_MS * 9 / 10),
    });
    let t = Instant::now();
    let err = verifier.verify(&token).expect_err("the fetch times out");
    let took = t.elapsed();
    eprintln!("unknown-kid verify through a slow redirect chain waited {took:?} (timeout {TIMEOUT_MS} ms)");
    // The fetch that could have found the kid failed: keys unavailable.
    assert_eq!(err.kind(), ErrorKind::KeysUnavailable, "{err}");
    assert!(
        took < Duration::from_millis(TIMEOUT_MS + 1000),
        "verify waited {took:?} with timeout_ms {TIMEOUT_MS}"
    );
}
