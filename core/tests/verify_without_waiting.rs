//! `Verifier::verify_without_waiting`: what `verify_with` would answer when
//! that is decided without a signature check or a network wait (the Python
//! binding keeps the GIL for it, an event loop answers it inline), `None`
//! otherwise. Each answer is the one `verify_with` gives, counted the same
//! way, and never costs a fetch (counted at the test issuer); a `None`
//! leaves no trace.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{setup, setup_with, with_header, Fault, Setup};
use jwtwarden::{ErrorKind, ManualClock, Verified, VerifyOptions};
use serde_json::json;

fn plain() -> VerifyOptions<'static> {
    VerifyOptions::default()
}

/// The answer without waiting: `Some(Ok(cached))`, `Some(Err(kind))` or `None`.
fn answer(s: &Setup, token: &str, opts: &VerifyOptions<'_>) -> Option<Result<Verified, ErrorKind>> {
    s.verifier
        .verify_without_waiting(token, opts)
        .map(|r| r.map_err(|e| e.kind()))
}

fn rejected(s: &Setup, kind: ErrorKind) -> u64 {
    let m = s.verifier.metrics();
    m.verifications.rejected.get(kind.as_str()).copied().unwrap_or(0)
}

#[test]
fn a_hit_is_answered_and_counted_once_as_a_cached_success() {
    let s = setup();
    let token = s.token(&s.issuer.first_kid());
    assert!(answer(&s, &token, &plain()).is_none(), "a miss needs a signature check");
    let m = s.verifier.metrics();
    assert_eq!(
        (m.cache.misses, m.verifications.ok_fresh, m.verifications.ok_cached),
        (0, 0, 0)
    );

    let fresh = s.verifier.verify_with(&token, &plain()).unwrap();
    let hit = answer(&s, &token, &plain()).expect("decided").expect("a hit");
    assert!(hit.cached());
    assert_eq!(hit.claims(), fresh.claims());
    assert_eq!(hit.verified_at_ms(), fresh.verified_at_ms());
    let m = s.verifier.metrics();
    assert_eq!(m.verifications.ok_cached, 1);
    assert_eq!(m.cache.misses, 1, "the one miss, counted by verify_with");

    // `fresh` skips the cache: a signature check, so not answered here.
    assert!(answer(&s, &token, &VerifyOptions { fresh: true, ..plain() }).is_none());
    // Pinned to the issuer that verified it: a hit.
    let url = s.issuer.url();
    let pinned = VerifyOptions {
        issuer: Some(&url),
        ..plain()
    };
    assert!(matches!(answer(&s, &token, &pinned), Some(Ok(v)) if v.cached()));
    assert_eq!(s.issuer.jwks_requests(), 1, "only the startup fetch");
}

#[test]
fn every_early_rejection_is_answered_as_verify_with_answers_it_without_a_fetch() {
    let s = setup_with(|cfg| {
        cfg["issuers"][0]["algorithms"] = json!(["RS256", "ES256"]);
    });
    let kid = s.issuer.first_kid();
    let good = s.token(&kid);
    let (h, p, sig) = {
        let parts: Vec<&str> = good.split('.').collect();
        (parts[0].to_string(), parts[1].to_string(), parts[2].to_string())
    };
    let foreign = s.token_with(&kid, json!({"iss": "https://evil.example"}));
    let no_iss = common::with_payload(&good, &json!({"sub": "x", "aud": "api", "exp": 4_000_000_000u64}));
    let cases: Vec<(String, ErrorKind)> = vec![
        ("a".repeat(17 * 1024), ErrorKind::TokenTooLarge),
        (format!("{h}.{p}"), ErrorKind::MalformedToken),
        (format!("{h}.{p}.{sig}.x"), ErrorKind::MalformedToken),
        (format!("{h}.{p}!.{sig}"), ErrorKind::InvalidBase64),
        (format!("bm90IGpzb24.{p}.{sig}"), ErrorKind::InvalidHeader),
        (
            with_header(&good, &json!({"alg": "none", "kid": kid})),
            ErrorKind::AlgorithmNotAllowed,
        ),
        (
            with_header(&good, &json!({"alg": "HS256", "kid": kid})),
            ErrorKind::AlgorithmNotAllowed,
        ),
        (
            with_header(&good, &json!({"alg": "PS256", "kid": kid})),
            ErrorKind::AlgorithmNotAllowed,
        ),
        (
            with_header(
                &good,
                &json!({"alg": "RS256", "kid": kid, "crit": ["x-unknown"], "x-unknown": 1}),
            ),
            ErrorKind::UnsupportedCritical,
        ),
        // The key exists, but for another algorithm: no signature is checked.
        (
            with_header(&good, &json!({"alg": "ES256", "kid": kid})),
            ErrorKind::KeyAlgorithmMismatch,
        ),
        (foreign, ErrorKind::UnknownIssuer),
        (no_iss, ErrorKind::UnknownIssuer),
    ];
    for (token, want) in &cases {
        let before = rejected(&s, *want);
        let got = answer(&s, token, &plain());
        assert!(
            matches!(got, Some(Err(k)) if k == *want),
            "{want:?}: got {:?}",
            got.map(|r| r.map(|_| ()))
        );
        assert_eq!(
            rejected(&s, *want),
            before + 1,
            "{want:?} counted once, as verify_with counts it"
        );
        assert_eq!(s.kind(token), *want, "verify_with agrees");
    }
    // A pinned issuer that is not configured; a slash away from the real one.
    let slashed = format!("{}/", s.issuer.url());
    let pinned = VerifyOptions {
        issuer: Some(&slashed),
        ..plain()
    };
    assert!(matches!(
        answer(&s, &good, &pinned),
        Some(Err(ErrorKind::UnknownIssuer))
    ));
    // Every case but the oversized one (refused before the cache) and the
    // pinned one (likewise) missed the cache once here and once in verify_with.
    assert_eq!(s.verifier.metrics().cache.misses, 2 * (cases.len() as u64 - 1));
    assert_eq!(s.issuer.jwks_requests(), 1, "no rejection fetched anything");
}

#[test]
fn a_token_that_needs_its_signature_checked_is_not_answered() {
    let s = setup();
    let kid = s.issuer.first_kid();
    let token = s.token(&kid);
    let mut forged = token.clone();
    forged.truncate(token.len() - 4);
    forged.push_str("AAAA");
    let expired = s.token_with(&kid, json!({"exp": s.clock.now_secs() - 3600}));
    let wrong_aud = s.token_with(&kid, json!({"aud": "other"}));
    let revoked = s.token_with(&kid, json!({"jti": "gone"}));
    s.verifier.revoke_jti(&s.issuer.url(), "gone", None).unwrap();
    // A forged token naming a revoked jti must not be told "revoked" (nor
    // anything else) before its signature is checked: the signature decides.
    let forged_revoked = common::with_payload(&forged, &common::payload(&revoked));
    for t in [&token, &forged, &expired, &wrong_aud, &revoked, &forged_revoked] {
        assert!(answer(&s, t, &plain()).is_none());
    }
    let m = s.verifier.metrics();
    assert_eq!(
        m.verifications.rejected.values().sum::<u64>(),
        0,
        "a None counts nothing"
    );
    assert_eq!(m.cache.misses, 0);
    assert_eq!(s.kind(&forged), ErrorKind::InvalidSignature);
    assert_eq!(s.kind(&forged_revoked), ErrorKind::InvalidSignature);
    assert_eq!(s.kind(&revoked), ErrorKind::Revoked);
    assert_eq!(s.issuer.jwks_requests(), 1);
}

#[test]
fn revoked_and_invalidated_hits_are_left_to_the_full_path() {
    let s = setup();
    let kid = s.issuer.first_kid();
    let by_jti = s.token_with(&kid, json!({"jti": "j1"}));
    let other = s.token(&kid);
    s.verifier.verify(&by_jti).unwrap();
    s.verifier.verify(&other).unwrap();
    assert!(matches!(answer(&s, &by_jti, &plain()), Some(Ok(_))));

    s.verifier.revoke_jti(&s.issuer.url(), "j1", None).unwrap();
    assert!(
        answer(&s, &by_jti, &plain()).is_none(),
        "a revoked result is never served"
    );
    assert_eq!(s.kind(&by_jti), ErrorKind::Revoked);

    s.verifier.bump_policy_version();
    assert!(
        answer(&s, &other, &plain()).is_none(),
        "a policy bump invalidates the hit"
    );

    // A revoked kid is decided before any signature: key_revoked at once.
    s.verifier.verify(&other).unwrap();
    s.verifier.revoke_kid(&s.issuer.url(), &kid).unwrap();
    assert!(matches!(answer(&s, &other, &plain()), Some(Err(ErrorKind::KeyRevoked))));
    assert_eq!(s.kind(&other), ErrorKind::KeyRevoked);
    assert_eq!(s.issuer.jwks_requests(), 1);
}

#[test]
fn unknown_kids_are_answered_only_when_no_fetch_could_change_the_answer() {
    let s = setup();
    let base = s.token(&s.issuer.first_kid());
    let kid = |k: &str| with_header(&base, &json!({"alg": "RS256", "kid": k}));

    // No unknown-kid fetch yet: the full path would fetch, so no answer,
    // and nothing fetched, counted or remembered.
    assert!(answer(&s, &kid("first"), &plain()).is_none());
    assert_eq!(s.issuer.jwks_requests(), 1);
    assert_eq!(s.verifier.metrics().issuers[0].unknown_kid, 0);
    assert_eq!(s.kind(&kid("first")), ErrorKind::UnknownKid);
    assert_eq!(s.issuer.jwks_requests(), 2, "verify_with fetched once");

    // Remembered: answered, no fetch.
    assert!(matches!(
        answer(&s, &kid("first"), &plain()),
        Some(Err(ErrorKind::UnknownKid))
    ));
    // A storm of new kids inside the cooldown: each answered, no fetch,
    // counted as verify_with counts it (rate limited, unknown kid).
    let before = s.verifier.metrics().issuers[0].rate_limited_refreshes;
    for i in 0..1000 {
        let got = answer(&s, &kid(&format!("storm-{i}")), &plain());
        assert!(matches!(got, Some(Err(ErrorKind::UnknownKid))), "storm-{i}");
    }
    let m = s.verifier.metrics();
    assert_eq!(s.issuer.jwks_requests(), 2);
    assert_eq!(m.issuers[0].rate_limited_refreshes, before + 1000);
    assert_eq!(m.issuers[0].unknown_kid, 1 + 1 + 1000);
    assert_eq!(m.verifications.rejected["unknown_kid"], 1 + 1 + 1000);
    // The same storm kid through verify_with: the same answer.
    assert_eq!(s.kind(&kid("storm-7")), ErrorKind::UnknownKid);

    // A key published meanwhile is not refused on the word of the cooldown
    // alone once the cooldown is over: the next new kid may fetch.
    let new_kid = s.issuer.rotate(jwtwarden_testissuer::Alg::RS256);
    s.clock.advance_secs(31);
    let fresh = s.token(&new_kid);
    assert!(
        answer(&s, &fresh, &plain()).is_none(),
        "the cooldown is over: a fetch may find it"
    );
    assert_eq!(s.issuer.jwks_requests(), 2);
    assert!(s.verifier.verify(&fresh).is_ok());
    assert_eq!(s.issuer.jwks_requests(), 3);
}

#[test]
fn an_unknown_kid_is_not_refused_while_a_fetch_that_may_publish_it_is_in_flight() {
    let issuer = jwtwarden_testissuer::TestIssuer::start();
    let clock = ManualClock::starting_now();
    // A long fetch timeout: the fetch below stays in flight until the
    // issuer is stopped, however slow this machine is.
    let verifier = Arc::new(common::verifier_for(&issuer, &clock, |cfg| {
        cfg["http"]["timeout_ms"] = json!(60_000);
    }));
    let s_kid = issuer.first_kid();
    let base = issuer.mint(&s_kid, &issuer.default_claims("svc-a", clock.now_secs()));
    let kid = |k: &str| with_header(&base, &json!({"alg": "RS256", "kid": k}));

    issuer.set_fault(Fault::Hang);
    let leader = {
        let (verifier, token) = (verifier.clone(), kid("leads-the-fetch"));
        std::thread::spawn(move || verifier.verify(&token).map_err(|e| e.kind()))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while issuer.jwks_requests() < 2 {
        assert!(
            Instant::now() < deadline,
            "the unknown-kid fetch never reached the issuer"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The cooldown started with that fetch; verify_with would wait for it
    // (it may publish this kid), so this cannot be answered without waiting.
    for k in ["leads-the-fetch", "another"] {
        assert!(verifier.verify_without_waiting(kid(k), &plain()).is_none(), "{k}");
    }
    // A hit and an early rejection are still answered meanwhile.
    assert!(matches!(
        verifier.verify_without_waiting("a.b", &plain()),
        Some(Err(e)) if e.kind() == ErrorKind::MalformedToken
    ));
    drop(issuer); // ends the hung fetch
    assert!(leader.join().unwrap().is_err());
}

#[test]
fn the_first_call_in_a_forked_child_is_left_to_the_full_path() {
    let s = setup();
    let token = s.token(&s.issuer.first_kid());
    s.verifier.verify(&token).unwrap();
    assert!(matches!(answer(&s, &token, &plain()), Some(Ok(_))));
    let code = common::in_forked_child(Duration::from_secs(30), || {
        // The child restarts its refresher and catches up with the fleet
        // on its first verify_with: not here.
        if s.verifier.verify_without_waiting(&token, &plain()).is_some() {
            return 1;
        }
        if s.verifier.verify(&token).is_err() {
            return 2;
        }
        match s.verifier.verify_without_waiting(&token, &plain()) {
            Some(Ok(v)) if v.cached() => 0,
            _ => 3,
        }
    });
    assert_eq!(code, Some(0));
}

#[test]
fn failed_closed_keys_are_answered_keys_stale() {
    let s = setup_with(|cfg| {
        cfg["issuers"][0]["refresh"] = json!({"max_stale_secs": 60, "default_ttl_secs": 60, "jitter": 0.0});
    });
    let token = s.token(&s.issuer.first_kid());
    s.verifier.verify(&token).unwrap();
    s.issuer.set_fault(Fault::Status(500));
    s.clock.advance_secs(3600);
    s.verifier.run_due_refreshes();
    let fetches = s.issuer.jwks_requests();
    assert!(matches!(answer(&s, &token, &plain()), Some(Err(ErrorKind::KeysStale))));
    assert_eq!(s.kind(&token), ErrorKind::KeysStale);
    assert_eq!(s.issuer.jwks_requests(), fetches);
}

/// Adversarial: whatever a mutated token is, an answer given without
/// waiting is the answer `verify_with` gives (on an identical verifier that
/// never saw the fast call).
#[test]
fn answers_agree_with_verify_with_on_mutated_tokens() {
    let fast = setup();
    let full_clock = fast.clock.clone();
    let full = common::verifier_for(&fast.issuer, &full_clock, |_| {});
    let kid = fast.issuer.first_kid();
    let good = fast.token(&kid);
    fast.verifier.verify(&good).unwrap();
    full.verify(&good).unwrap();
    let mut rng = fastrand::Rng::with_seed(29);
    let mut answered = 0;
    for i in 0..3000 {
        let mut bytes = good.clone().into_bytes();
        match i % 3 {
            0 => {
                let at = rng.usize(..bytes.len());
                bytes[at] = b"AZaz09-_.!{"[rng.usize(..11)];
            }
            1 => bytes.truncate(rng.usize(..bytes.len())),
            _ => {
                let alg = ["RS256", "ES256", "none", "HS256"][rng.usize(..4)];
                let named = if rng.bool() {
                    kid.clone()
                } else {
                    format!("k{}", rng.u8(..))
                };
                let header = json!({"alg": alg, "kid": named});
                bytes = with_header(&good, &header).into_bytes();
            }
        }
        let token = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(got) = fast.verifier.verify_without_waiting(&token, &plain()) {
            answered += 1;
            let want = full.verify(&token);
            match (got, want) {
                (Ok(a), Ok(b)) => assert_eq!(a.claims(), b.claims(), "{token}"),
                (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "{token}"),
                (a, b) => panic!(
                    "{token}: without waiting {:?}, verify_with {:?}",
                    a.map(|_| ()),
                    b.map(|_| ())
                ),
            }
        }
    }
    assert!(answered > 1000, "most mutations are early rejections ({answered})");
}
