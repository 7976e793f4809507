//! One refresh machine (`core/src/refresh.rs`) keeps JWKS sets and status
//! lists: a rule given to it reaches both. Here, `Retry-After`: once an
//! endpoint has answered 429 with `Retry-After: 120`, nothing asks it again
//! for 120 s (simulated), whether the schedule, an unknown `kid` or a first
//! use of a list would, and the verifies in between fail closed.

mod common;

use common::{verifier_for, Fault, Setup};
use jwtwarden::{ErrorKind, ManualClock};
use jwtwarden_testissuer::TestIssuer;
use serde_json::json;

const LIST: &str = "/status/1";

/// The seconds (simulated, from now) at which `requests` grew, stepping the
/// clock 1 s at a time for `secs` s: each second `poke` verifies a token
/// that needs the document (and must fail closed while it is refused), then
/// due refreshes run.
fn fetch_times(s: &Setup, secs: u64, requests: impl Fn() -> u64, poke: impl Fn(u64)) -> Vec<u64> {
    let mut times = Vec::new();
    let mut seen = requests();
    for t in 1..=secs {
        s.clock.advance_secs(1);
        poke(t);
        s.verifier.run_due_refreshes();
        let now = requests();
        if now > seen {
            times.push(t);
            seen = now;
        }
    }
    times
}

/// The refresh settings of both setups: a 1 s backoff, so any retry before
/// 120 s would be the backoff's, not the server's.
fn refresh() -> serde_json::Value {
    json!({"backoff_initial_secs": 1, "backoff_max_secs": 300, "unknown_kid_cooldown_secs": 30})
}

#[test]
fn retry_after_holds_back_every_fetch_of_a_jwks_and_of_a_status_list_alike() {
    // A JWKS endpoint that rate limits us from the start: every verify
    // needs keys (an on-demand fetch, at most one per 30 s cooldown).
    let issuer = TestIssuer::start();
    issuer.set_fault(Fault::StatusRetryAfter(429, "120".into()));
    let clock = ManualClock::starting_now();
    let verifier = verifier_for(&issuer, &clock, |c| c["issuers"][0]["refresh"] = refresh());
    let keys = Setup {
        issuer,
        clock,
        verifier,
    };
    assert_eq!(keys.issuer.jwks_requests(), 1, "the startup fetch");
    let kid = keys.issuer.first_kid();
    let jwks = fetch_times(
        &keys,
        130,
        || keys.issuer.jwks_requests(),
        |t| {
            let e = keys.verifier.verify(keys.token(&kid)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::KeysUnavailable, "at {t} s: {e}");
        },
    );

    // A status list endpoint that rate limits us from its first use: every
    // verify references it (a first-use fetch while none is loaded).
    let issuer = TestIssuer::start();
    issuer.publish_status_list(LIST, 1, 64);
    issuer.configure_status_list(LIST, |o| o.fault = Fault::StatusRetryAfter(429, "120".into()));
    let clock = ManualClock::starting_now();
    let verifier = verifier_for(&issuer, &clock, |c| {
        c["issuers"][0]["refresh"] = refresh();
        c["issuers"][0]["status_list"] = json!({"allowed_uris": [format!("{}/status", issuer.url())]});
    });
    let lists = Setup {
        issuer,
        clock,
        verifier,
    };
    let claim = json!({"status": lists.issuer.status_claim(LIST, 0)});
    let e = lists
        .verifier
        .verify(lists.token_with(&lists.issuer.first_kid(), claim.clone()));
    assert_eq!(e.unwrap_err().kind(), ErrorKind::StatusListUnavailable);
    assert_eq!(lists.issuer.requests_to(LIST), 1, "the first use");
    let status = fetch_times(
        &lists,
        130,
        || lists.issuer.requests_to(LIST),
        |t| {
            let token = lists.token_with(&lists.issuer.first_kid(), claim.clone());
            let e = lists.verifier.verify(token).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::StatusListUnavailable, "at {t} s: {e}");
        },
    );

    assert_eq!(jwks, vec![120], "JWKS asked again only once its Retry-After passed");
    assert_eq!(status, jwks, "the status list follows the same rule");
}

#[test]
fn an_unknown_kid_during_retry_after_waits_for_it_then_fetches() {
    // Keys loaded; then the IdP rotates while it rate limits us. The
    // scheduled refresh fails with Retry-After: 120; tokens of the new kid
    // arrive every second. They fail closed without a fetch until 120 s
    // after the refused one, when the scheduled retry brings the key. The
    // kid could not be checked (the last fetch failed), so the answer is
    // `keys_unavailable` (503, retry), not `unknown_kid`.
    let s = common::setup_with(|c| c["issuers"][0]["refresh"] = refresh());
    s.issuer.set_fault(Fault::StatusRetryAfter(429, "120".into()));
    s.clock.advance_secs(300);
    s.verifier.run_due_refreshes();
    assert_eq!(s.issuer.jwks_requests(), 2, "startup, then the refused refresh");
    let new_kid = s.issuer.add_key(common::IssuerAlg::ES256);
    let times = fetch_times(
        &s,
        119,
        || s.issuer.jwks_requests(),
        |t| assert_eq!(s.kind(&s.token(&new_kid)), ErrorKind::KeysUnavailable, "at {t} s"),
    );
    assert_eq!(times, Vec::<u64>::new(), "no fetch inside Retry-After");
    s.issuer.set_fault(Fault::None);
    s.clock.advance_secs(1);
    s.verifier.run_due_refreshes();
    assert!(s.verifier.verify(s.token(&new_kid)).is_ok(), "fetched once it passed");
    assert_eq!(s.issuer.jwks_requests(), 3);
    let m = s.verifier.metrics();
    assert!(m.issuers[0].rate_limited_refreshes >= 1, "{:?}", m.issuers[0]);
}

#[test]
fn a_caller_that_must_not_wait_is_answered_inline_during_retry_after() {
    // An event loop (nginx, asyncio) hands a verify to a thread only when
    // it may fetch. Inside a Retry-After nothing fetches, so the unknown kid
    // is refused inline, exactly as verify would refuse it (`keys_unavailable`:
    // the last fetch failed, the kid could not be checked), and nothing is
    // asked of the IdP.
    let s = common::setup_with(|c| c["issuers"][0]["refresh"] = refresh());
    s.issuer.set_fault(Fault::StatusRetryAfter(503, "120".into()));
    s.clock.advance_secs(300);
    s.verifier.run_due_refreshes();
    let new_kid = s.issuer.add_key(common::IssuerAlg::ES256);
    s.clock.advance_secs(31);
    let token = s.token(&new_kid);
    let inline = s
        .verifier
        .verify_without_waiting(&token, &jwtwarden::VerifyOptions::default());
    assert_eq!(
        inline.map(|r| r.map(drop).map_err(|e| e.kind())),
        Some(Err(ErrorKind::KeysUnavailable))
    );
    assert_eq!(s.kind(&token), ErrorKind::KeysUnavailable);
    assert_eq!(s.issuer.jwks_requests(), 2, "startup, then the refused refresh");
}
