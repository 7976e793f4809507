//! Issuers and issuer templates added, removed or replaced at runtime
//! (issue 27): `Verifier::add_issuer`, `remove_issuer`, `reload`. The
//! promises: a removed issuer's tokens are refused from the moment the call
//! returns, a cache hit included, whatever other threads are doing; the
//! issuers whose configuration did not change keep their keys, cached
//! results and revocations; validation is the load's; and a revocation
//! outlives the removal of its issuer, so adding it again honours it.
//!
//! Time is the manual clock's; the only real waits are the loopback fetches.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use jwtwarden::{Config, ErrorKind, IssuerConfig, IssuerEntry, ManualClock, Verifier, VerifyOptions};
use jwtwarden_testissuer::{TenantIssuer, TenantMode, TestIssuer};
use serde_json::{json, Value};

fn entry(issuer: &TestIssuer) -> Value {
    json!({"issuer": issuer.url(), "jwks_uri": issuer.jwks_uri(), "audiences": ["api"]})
}

fn config(entries: Vec<Value>) -> Value {
    json!({
        "issuers": entries,
        "http": { "allow_http": true, "timeout_ms": 1500, "connect_timeout_ms": 500 },
        "background_refresh": false,
    })
}

fn verifier(clock: &ManualClock, entries: Vec<Value>) -> Verifier {
    let config = Config::from_value(config(entries)).expect("valid config");
    Verifier::with_clock(config, Arc::new(clock.clone())).expect("verifier starts")
}

fn issuer_config(v: Value) -> IssuerConfig {
    serde_json::from_value(v).expect("valid issuer entry")
}

fn token(issuer: &TestIssuer, clock: &ManualClock, jti: &str) -> String {
    let mut claims = issuer.default_claims("svc", clock.now_secs());
    claims["jti"] = json!(jti);
    claims["aud"] = json!("api");
    issuer.mint(&issuer.first_kid(), &claims)
}

fn kind(v: &Verifier, token: &str) -> Option<ErrorKind> {
    v.verify(token).err().map(|e| e.kind())
}

#[test]
fn a_removed_issuers_cached_token_is_refused_on_the_next_call() {
    let (a, b) = (TestIssuer::start(), TestIssuer::start());
    let clock = ManualClock::starting_now();
    let v = verifier(&clock, vec![entry(&a), entry(&b)]);
    let (ta, tb) = (token(&a, &clock, "a1"), token(&b, &clock, "b1"));
    for t in [&ta, &tb] {
        assert!(!v.verify(t).unwrap().cached());
        assert!(v.verify(t).unwrap().cached(), "a hit before the removal");
    }
    let b_fetches = b.jwks_requests();
    v.remove_issuer(&a.url()).unwrap();
    // The hit, by every door: the non-blocking lookup, the non-waiting
    // verify, and verify itself.
    assert!(v.verify_cached(&ta, &VerifyOptions::default()).is_none());
    let quick = v.verify_without_waiting(&ta, &VerifyOptions::default());
    assert_eq!(
        quick.map(|r| r.err().map(|e| e.kind())),
        Some(Some(ErrorKind::UnknownIssuer))
    );
    assert_eq!(kind(&v, &ta), Some(ErrorKind::UnknownIssuer));
    let fresh = VerifyOptions {
        fresh: true,
        ..Default::default()
    };
    assert_eq!(v.verify_with(&ta, &fresh).unwrap_err().kind(), ErrorKind::UnknownIssuer);
    // The other issuer kept its cached result and its keys.
    assert!(v.verify(&tb).unwrap().cached());
    assert_eq!(b.jwks_requests(), b_fetches);
    assert_eq!(v.issuers(), vec![b.url()]);
    // Unknown, and the last issuer: refused, nothing changed.
    assert_eq!(v.remove_issuer(&a.url()).unwrap_err().kind(), ErrorKind::UnknownIssuer);
    let last = v.remove_issuer(&b.url()).unwrap_err();
    assert_eq!(last.kind(), ErrorKind::InvalidConfig, "{last}");
    assert!(v.verify(&tb).unwrap().cached());
}

#[test]
fn remove_racing_verifies_never_accepts_after_the_call_returns() {
    let (a, b) = (TestIssuer::start(), TestIssuer::start());
    let clock = ManualClock::starting_now();
    let v = Arc::new(verifier(&clock, vec![entry(&a), entry(&b)]));
    let ta = token(&a, &clock, "race");
    v.verify(&ta).unwrap();
    assert!(v.verify(&ta).unwrap().cached());
    let removed = Arc::new(AtomicBool::new(false));
    let late_accepts = Arc::new(AtomicU64::new(0));
    let accepted_before = Arc::new(AtomicU64::new(0));
    let threads = 4;
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|n| {
            let (v, ta, removed, late, before, barrier) = (
                v.clone(),
                ta.clone(),
                removed.clone(),
                late_accepts.clone(),
                accepted_before.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                // Half the threads take the signature path, half the cache.
                let opts = VerifyOptions {
                    fresh: n % 2 == 1,
                    ..Default::default()
                };
                barrier.wait();
                let mut after = 0;
                while after < 200 {
                    let was_removed = removed.load(Ordering::SeqCst);
                    let ok = v.verify_with(&ta, &opts).is_ok();
                    if was_removed {
                        after += 1;
                        if ok {
                            late.fetch_add(1, Ordering::SeqCst);
                        }
                    } else if ok {
                        before.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    barrier.wait();
    // Let the threads be accepted a little before the removal, if they
    // happen to run first (not a timing assertion: none is required).
    for _ in 0..50 {
        assert!(v.verify(&ta).is_ok());
    }
    v.remove_issuer(&a.url()).unwrap();
    removed.store(true, Ordering::SeqCst);
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        late_accepts.load(Ordering::SeqCst),
        0,
        "accepted after remove_issuer returned"
    );
    assert_eq!(kind(&v, &ta), Some(ErrorKind::UnknownIssuer));
}

#[test]
fn add_issuer_validates_as_the_load_does() {
    let (a, b) = (TestIssuer::start(), TestIssuer::start());
    let clock = ManualClock::starting_now();
    let v = verifier(&clock, vec![entry(&a)]);
    let mut bad = entry(&b);
    bad["audiences"] = json!([]);
    let at_load = Config::from_value(config(vec![entry(&a), bad.clone()])).unwrap_err();
    let at_runtime = v.add_issuer(issuer_config(bad)).unwrap_err();
    assert_eq!(at_runtime.kind(), ErrorKind::InvalidConfig);
    assert_eq!(at_runtime.to_string(), at_load.to_string());
    assert!(at_runtime.to_string().contains("issuers[1]"), "{at_runtime}");
    // A duplicate issuer, as at load.
    let dup = v.add_issuer(issuer_config(entry(&a))).unwrap_err();
    let dup_at_load = Config::from_value(config(vec![entry(&a), entry(&a)])).unwrap_err();
    assert_eq!(dup.to_string(), dup_at_load.to_string());
    // A JSON entry naming an unknown field is refused naming it.
    let unknown = IssuerEntry::from_json(r#"{"issuer": "https://x.example", "audience": ["a"]}"#).unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::InvalidConfig);
    assert!(unknown.to_string().contains("audience"), "{unknown}");
    // Nothing changed; then the good entry, from JSON, works.
    assert_eq!(v.issuers(), vec![a.url()]);
    let tb = token(&b, &clock, "b");
    assert_eq!(kind(&v, &tb), Some(ErrorKind::UnknownIssuer));
    let good = IssuerEntry::from_json(&entry(&b).to_string()).unwrap();
    assert!(matches!(good, IssuerEntry::Issuer(_)));
    v.add_issuer(good).unwrap();
    assert!(v.verify(&tb).is_ok());
    assert_eq!(v.issuers(), vec![a.url(), b.url()]);
}

#[test]
fn reload_keeps_unchanged_issuers_rebuilds_changed_ones_and_drops_removed_ones() {
    let (a, b, c, d) = (
        TestIssuer::start(),
        TestIssuer::start(),
        TestIssuer::start(),
        TestIssuer::start(),
    );
    let clock = ManualClock::starting_now();
    let v = verifier(&clock, vec![entry(&a), entry(&b), entry(&c)]);
    let (ta, tb, tc) = (token(&a, &clock, "a"), token(&b, &clock, "b"), token(&c, &clock, "c"));
    let ta_revoked = token(&a, &clock, "a-revoked");
    for t in [&ta, &tb, &tc] {
        v.verify(t).unwrap();
    }
    v.revoke_jti(&a.url(), "a-revoked", None).unwrap();
    let (a_fetches, b_fetches) = (a.jwks_requests(), b.jwks_requests());
    // A unchanged; B changed (one more audience); C removed; D added.
    let mut b_changed = entry(&b);
    b_changed["audiences"] = json!(["api", "other"]);
    let next = Config::from_value(config(vec![entry(&a), b_changed, entry(&d)])).unwrap();
    v.reload(next).unwrap();
    assert!(
        v.verify(&ta).unwrap().cached(),
        "an unchanged issuer keeps its cached result"
    );
    assert_eq!(kind(&v, &ta_revoked), Some(ErrorKind::Revoked));
    assert_eq!(a.jwks_requests(), a_fetches, "an unchanged issuer keeps its keys");
    let b_result = v.verify(&tb).unwrap();
    assert!(!b_result.cached(), "a changed issuer's results are dropped");
    assert_eq!(b.jwks_requests(), b_fetches + 1, "a changed issuer is rebuilt");
    assert_eq!(kind(&v, &tc), Some(ErrorKind::UnknownIssuer));
    assert!(v.verify(token(&d, &clock, "d")).is_ok());
    // Only issuers and templates change on reload: nothing else, nothing
    // half-applied.
    let mut other = config(vec![entry(&a)]);
    other["cache"] = json!({"capacity": 7});
    let refused = v.reload(Config::from_value(other).unwrap()).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::InvalidConfig);
    assert!(
        refused.to_string().contains("cache: cannot change on reload"),
        "{refused}"
    );
    assert!(v.verify(token(&d, &clock, "d2")).is_ok());
    assert!(v.verify(&ta).unwrap().cached());
}

#[test]
fn revocations_of_a_removed_issuer_hold_when_it_is_added_again() {
    let (a, b) = (TestIssuer::start(), TestIssuer::start());
    let clock = ManualClock::starting_now();
    let v = verifier(&clock, vec![entry(&a), entry(&b)]);
    let revoked = token(&a, &clock, "gone");
    let fine = token(&a, &clock, "fine");
    assert!(v.verify(&revoked).is_ok());
    v.revoke_jti(&a.url(), "gone", None).unwrap();
    v.remove_issuer(&a.url()).unwrap();
    // Held meanwhile (until it expires), though no issuer is named by it.
    assert!(v.revocations().iter().any(|r| r.value == "gone"));
    v.add_issuer(issuer_config(entry(&a))).unwrap();
    assert_eq!(kind(&v, &revoked), Some(ErrorKind::Revoked));
    assert!(v.verify(&fine).is_ok());
    // A kid revocation reaches the new key store of the issuer added again.
    let kid = a.first_kid();
    v.revoke_kid(&a.url(), &kid).unwrap();
    v.remove_issuer(&a.url()).unwrap();
    v.add_issuer(issuer_config(entry(&a))).unwrap();
    assert!(v.verify(token(&a, &clock, "after-kid")).is_err());
}

#[test]
fn a_template_added_and_removed_at_runtime() {
    let a = TestIssuer::start();
    let idp = TenantIssuer::start(TenantMode::PerTenant);
    let clock = ManualClock::starting_now();
    let v = verifier(&clock, vec![entry(&a)]);
    let template = json!({
        "issuer": format!("{}/{{tenant}}/v2.0", idp.url()),
        "tenant_pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        "discovery": true,
        "audiences": ["api://orders"],
    });
    let tenant = "00000001-0000-4000-8000-000000000001";
    let t = idp.mint(tenant, "alice", clock.now_secs());
    assert_eq!(kind(&v, &t), Some(ErrorKind::UnknownIssuer));
    let parsed = IssuerEntry::from_json(&template.to_string()).unwrap();
    assert!(matches!(parsed, IssuerEntry::Template(_)));
    v.add_issuer(parsed).unwrap();
    assert!(!v.verify(&t).unwrap().cached());
    assert!(v.verify(&t).unwrap().cached());
    // A reload that keeps the template keeps its tenant's cached result.
    let mut same = config(vec![entry(&a)]);
    same["issuer_templates"] = json!([template.clone()]);
    v.reload(Config::from_value(same).unwrap()).unwrap();
    assert!(v.verify(&t).unwrap().cached());
    v.remove_issuer(template["issuer"].as_str().unwrap()).unwrap();
    assert!(v.verify_cached(&t, &VerifyOptions::default()).is_none());
    assert_eq!(kind(&v, &t), Some(ErrorKind::UnknownIssuer));
}

#[test]
fn remove_issuer_returns_only_after_a_verification_in_flight_has_answered() {
    let (a, b) = (TestIssuer::start(), TestIssuer::start());
    let clock = ManualClock::starting_now();
    let v = Arc::new(verifier(&clock, vec![entry(&a), entry(&b)]));
    // A token signed by a key the verifier has not seen: verifying it
    // fetches A's JWKS, which A answers slowly.
    let kid = a.add_key(jwtwarden_testissuer::Alg::ES256);
    let mut claims = a.default_claims("svc", clock.now_secs());
    claims["aud"] = json!("api");
    let t = a.mint(&kid, &claims);
    a.set_fault(jwtwarden_testissuer::Fault::Delay(std::time::Duration::from_millis(
        300,
    )));
    let before = a.jwks_requests();
    let done = Arc::new(AtomicBool::new(false));
    let verifying = {
        let (v, done) = (v.clone(), done.clone());
        std::thread::spawn(move || {
            let result = v.verify(&t).map(|_| ());
            done.store(true, Ordering::SeqCst);
            result
        })
    };
    // Bounded poll (not a timing assertion): the fetch has reached A.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while a.jwks_requests() == before {
        assert!(std::time::Instant::now() < deadline, "the verification never fetched");
        std::thread::yield_now();
    }
    v.remove_issuer(&a.url()).unwrap();
    assert!(
        done.load(Ordering::SeqCst),
        "remove_issuer returned while a verification of the removed issuer was still deciding"
    );
    // Whatever it answered, it answered before the call returned.
    let _ = verifying.join().unwrap();
}

#[test]
fn a_changed_issuer_whose_keys_cannot_be_fetched_does_not_replace_the_running_one() {
    let (a, b) = (TestIssuer::start(), TestIssuer::start());
    let clock = ManualClock::starting_now();
    let v = verifier(&clock, vec![entry(&a), entry(&b)]);
    let tb = token(&b, &clock, "b");
    v.verify(&tb).unwrap();
    b.set_fault(jwtwarden_testissuer::Fault::Status(503));
    let mut b_changed = entry(&b);
    b_changed["audiences"] = json!(["api", "other"]);
    let refused = v
        .reload(Config::from_value(config(vec![entry(&a), b_changed.clone()])).unwrap())
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::KeysUnavailable, "{refused}");
    assert!(v.verify(&tb).unwrap().cached(), "nothing changed");
    assert!(v
        .verify_with(
            &tb,
            &VerifyOptions {
                fresh: true,
                ..Default::default()
            }
        )
        .is_ok());
    // An unchanged configuration reloads during the outage: nothing fetched.
    let fetches = b.jwks_requests();
    v.reload(Config::from_value(config(vec![entry(&a), entry(&b)])).unwrap())
        .unwrap();
    assert_eq!(b.jwks_requests(), fetches);
    assert!(v.verify(&tb).unwrap().cached());
    b.set_fault(jwtwarden_testissuer::Fault::None);
    v.reload(Config::from_value(config(vec![entry(&a), b_changed])).unwrap())
        .unwrap();
    assert!(!v.verify(&tb).unwrap().cached());
}

#[test]
fn a_revocation_another_process_journals_while_the_issuer_is_removed_holds_when_it_returns() {
    let (a, b) = (TestIssuer::start(), TestIssuer::start());
    let clock = ManualClock::starting_now();
    let dir = tempfile::tempdir().unwrap();
    let with_state = |entries: Vec<Value>| {
        let mut c = config(entries);
        c["state_dir"] = json!(dir.path());
        Verifier::with_clock(Config::from_value(c).unwrap(), Arc::new(clock.clone())).unwrap()
    };
    let v = with_state(vec![entry(&a), entry(&b)]);
    let other = with_state(vec![entry(&a), entry(&b)]);
    let t = token(&a, &clock, "while-away");
    assert!(v.verify(&t).is_ok());
    v.remove_issuer(&a.url()).unwrap();
    // Another process on the same state_dir revokes the token while this
    // one does not trust its issuer; this one reads the journal's appends.
    other.revoke_jti(&a.url(), "while-away", None).unwrap();
    v.run_due_refreshes();
    v.add_issuer(issuer_config(entry(&a))).unwrap();
    assert_eq!(kind(&v, &t), Some(ErrorKind::Revoked));
}

#[test]
fn a_tenant_revocation_journaled_while_its_template_is_removed_holds_when_it_returns() {
    let a = TestIssuer::start();
    let idp = TenantIssuer::start(TenantMode::PerTenant);
    let clock = ManualClock::starting_now();
    let dir = tempfile::tempdir().unwrap();
    let template = json!({
        "issuer": format!("{}/{{tenant}}/v2.0", idp.url()),
        "tenant_pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        "discovery": true,
        "audiences": ["api://orders"],
    });
    let with_state = || {
        let mut c = config(vec![entry(&a)]);
        c["issuer_templates"] = json!([template.clone()]);
        c["state_dir"] = json!(dir.path());
        Verifier::with_clock(Config::from_value(c).unwrap(), Arc::new(clock.clone())).unwrap()
    };
    let (v, other) = (with_state(), with_state());
    let tenant = "00000001-0000-4000-8000-000000000001";
    let mut claims = idp.claims(tenant, "alice", clock.now_secs());
    claims["jti"] = json!("tenant-jti");
    let t = idp.mint_as(tenant, &claims);
    assert!(v.verify(&t).is_ok());
    v.remove_issuer(template["issuer"].as_str().unwrap()).unwrap();
    other.revoke_jti(&idp.issuer(tenant), "tenant-jti", None).unwrap();
    v.run_due_refreshes();
    v.add_issuer(IssuerEntry::from_json(&template.to_string()).unwrap())
        .unwrap();
    assert_eq!(kind(&v, &t), Some(ErrorKind::Revoked));
}
