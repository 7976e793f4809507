//! Cache hit rules: expiry re-checked, bounded lifetime, capacity and CLOCK
//! (second-chance) eviction, byte-identical tokens only, and honest metadata.

mod common;

use common::setup_with;

use jwtwarden::{Clock, ErrorKind, VerifyOptions};
use serde_json::json;

#[test]
fn cached_entry_is_not_served_after_exp() {
    let s = common::setup();
    let exp = s.clock.now_secs() + 60;
    let token = s.token_with(&s.issuer.first_kid(), json!({"exp": exp}));
    let first = s.verifier.verify(&token).unwrap();
    assert!(!first.cached());
    let hit = s.verifier.verify(&token).unwrap();
    assert!(hit.cached());
    assert_eq!(
        hit.verified_at_ms(),
        first.verified_at_ms(),
        "a hit reports when trust was established"
    );
    assert_eq!(hit.expires_at(), exp);

    // The last millisecond before exp plus the default leeway: still fine.
    // (This step used to advance whole seconds and accept the token anywhere
    // in the second *starting* at exp + leeway; it is invalid from then on.)
    s.clock.set_ms((exp + 30) * 1000 - 1);
    assert!(s.verifier.verify(&token).unwrap().cached());
    s.clock.advance_ms(1);
    assert_eq!(s.kind(&token), ErrorKind::Expired);
}

#[test]
fn cached_entry_lives_at_most_max_ttl() {
    let s = setup_with(|c| c["cache"] = json!({"max_ttl_secs": 10}));
    let token = s.token(&s.issuer.first_kid());
    s.verifier.verify(&token).unwrap();
    s.clock.advance_secs(9);
    assert!(s.verifier.verify(&token).unwrap().cached());
    s.clock.advance_secs(1);
    let v = s.verifier.verify(&token).unwrap();
    assert!(!v.cached(), "re-verified after cache.max_ttl_secs");
    assert_eq!(v.verified_at_ms(), s.clock.now_ms());
}

#[test]
fn capacity_is_respected_and_a_result_hit_since_the_last_pass_survives() {
    let s = setup_with(|c| c["cache"] = json!({"capacity": 64, "shards": 1}));
    let kid = s.issuer.first_kid();
    let tokens: Vec<String> = (0..200)
        .map(|i| s.token_with(&kid, json!({"sub": format!("svc-{i}")})))
        .collect();
    // Fill to capacity, then touch token 0 from a fresh thread (so the shared
    // cache's reference bit, not a thread-local copy, sees the use).
    for t in &tokens[..64] {
        s.verifier.verify(t).unwrap();
    }
    std::thread::scope(|sc| {
        sc.spawn(|| assert!(s.verifier.verify(&tokens[0]).unwrap().cached()));
    });
    s.verifier.verify(&tokens[64]).unwrap();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            assert!(
                s.verifier.verify(&tokens[0]).unwrap().cached(),
                "recently used survives"
            );
            assert!(
                !s.verifier.verify(&tokens[1]).unwrap().cached(),
                "the oldest result not hit since was evicted"
            );
        });
    });
    for t in &tokens {
        s.verifier.verify(t).unwrap();
    }
    let m = s.verifier.metrics();
    assert_eq!(m.cache.capacity, 64);
    assert!(m.cache.entries <= 64, "{} entries", m.cache.entries);
    assert!(m.cache.inserts >= 200, "{:?}", m.cache);
    assert!(m.cache.evictions >= 136, "{:?}", m.cache);
    let prom = s.verifier.prometheus();
    assert!(
        prom.contains("jwtwarden_cache_events_total{event=\"eviction\"}"),
        "{prom}"
    );
    assert!(prom.contains("jwtwarden_cache_events_total{event=\"insert\"}"));
}

#[test]
fn max_bytes_bounds_cache_memory_not_just_entry_count() {
    // 64 KiB in one shard, and room for 100,000 entries by count.
    let s = setup_with(|c| c["cache"] = json!({"max_bytes": 65536, "shards": 1}));
    let kid = s.issuer.first_kid();
    let pad = "x".repeat(4096);
    let tokens: Vec<String> = (0..100)
        .map(|i| s.token_with(&kid, json!({"sub": format!("svc-{i}"), "pad": pad})))
        .collect();
    assert!(tokens[0].len() > 5000, "{}", tokens[0].len());
    for t in &tokens {
        assert!(!s.verifier.verify(t).unwrap().cached());
        let m = s.verifier.metrics();
        assert!(
            m.cache.bytes <= m.cache.max_bytes,
            "{} > {}",
            m.cache.bytes,
            m.cache.max_bytes
        );
    }
    let m = s.verifier.metrics();
    assert_eq!(m.cache.max_bytes, 65536);
    assert_eq!(m.cache.capacity, 100_000);
    assert!(m.cache.entries > 0 && m.cache.entries < 10, "{:?}", m.cache);
    assert!(m.cache.bytes > m.cache.entries * 5000, "{:?}", m.cache);
    assert_eq!(m.cache.inserts, 100);
    assert_eq!(m.cache.evictions, 100 - m.cache.entries, "{:?}", m.cache);
    // The newest results are the ones kept.
    assert!(s.verifier.verify(&tokens[99]).unwrap().cached());
    assert!(!s.verifier.verify(&tokens[0]).unwrap().cached());

    let m = s.verifier.metrics();
    let prom = s.verifier.prometheus();
    for needle in [
        format!("jwtwarden_cache_bytes {}", m.cache.bytes),
        "jwtwarden_cache_max_bytes 65536".to_string(),
        format!("jwtwarden_cache_entries {}", m.cache.entries),
        "jwtwarden_cache_capacity 100000".to_string(),
    ] {
        assert!(prom.contains(&needle), "missing {needle} in\n{prom}");
    }
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["cache"]["max_bytes"], 65536);
    assert_eq!(json["cache"]["bytes"], m.cache.bytes);
}

#[test]
fn only_byte_identical_tokens_hit() {
    let s = common::setup();
    let token = s.token(&s.issuer.first_kid());
    s.verifier.verify(&token).unwrap();
    // Same claims and signature, one extra byte: never a hit.
    let padded = format!("{token} ");
    assert!(s.verifier.verify(&padded).is_err());
    assert!(s.verifier.verify(&token).unwrap().cached());
}

#[test]
fn pinned_issuer_must_match_the_cached_issuer() {
    let s = common::setup();
    let token = s.token(&s.issuer.first_kid());
    s.verifier.verify(&token).unwrap();
    let pinned = jwtwarden::VerifyOptions {
        issuer: Some("https://other.example"),
        fresh: false,
    };
    assert_eq!(
        s.verifier.verify_with(&token, &pinned).unwrap_err().kind(),
        ErrorKind::UnknownIssuer
    );
}

#[test]
fn metrics_count_outcomes_hits_and_fetches() {
    let s = common::setup();
    let token = s.token(&s.issuer.first_kid());
    for _ in 0..5 {
        s.verifier.verify(&token).unwrap();
    }
    let _ = s.verifier.verify("x.y");
    let m = s.verifier.metrics();
    assert_eq!(m.verifications.ok_fresh, 1);
    assert_eq!(m.verifications.ok_cached, 4);
    assert_eq!(m.verifications.rejected["malformed_token"], 1);
    assert_eq!(m.cache.hits, 4);
    assert_eq!(m.issuers[0].fetches["startup"], 1);
    assert_eq!(m.issuers[0].keys, 1);
    assert!(m.issuers[0].last_success_ms.is_some());
    let prom = s.verifier.prometheus();
    for needle in [
        "jwtwarden_verifications_total{outcome=\"ok\",source=\"cache\"} 4",
        "jwtwarden_jwks_fetches_total{issuer=",
        "jwtwarden_keyset_age_seconds{issuer=",
        "jwtwarden_issuer_health{issuer=",
    ] {
        assert!(prom.contains(needle), "missing {needle} in\n{prom}");
    }
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["cache"]["hits"], 4);
}

#[test]
fn verify_cached_serves_only_what_verify_would_serve_from_the_cache() {
    let s = common::setup();
    let token = s.token(&s.issuer.first_kid());
    let opts = VerifyOptions::default();
    assert!(
        s.verifier.verify_cached(&token, &opts).is_none(),
        "never verified: a miss"
    );
    let first = s.verifier.verify(&token).unwrap();
    let hit = s.verifier.verify_cached(&token, &opts).expect("a hit");
    assert!(hit.cached());
    // The cached result of that verification (the cache keeps its own
    // compact copy, so not the caller's `Arc`).
    assert_eq!(hit.verified_at_ms(), first.verified_at_ms(), "the same verification");
    assert_eq!(hit.claims(), first.claims());
    let fresh = VerifyOptions {
        issuer: None,
        fresh: true,
    };
    assert!(
        s.verifier.verify_cached(&token, &fresh).is_none(),
        "fresh never uses the cache"
    );
    let unknown = VerifyOptions {
        issuer: Some("https://not-configured.example"),
        fresh: false,
    };
    assert!(
        s.verifier.verify_cached(&token, &unknown).is_none(),
        "errors are verify's to report"
    );
    // The same rules as verify's cache step: a policy bump, a revocation or
    // exp passing makes it a miss.
    s.verifier.bump_policy_version();
    assert!(
        s.verifier.verify_cached(&token, &opts).is_none(),
        "stale after a policy bump"
    );
    s.verifier.verify(&token).unwrap();
    assert!(s.verifier.verify_cached(&token, &opts).is_some());
    s.verifier
        .revoke_subject(&s.issuer.url(), "svc-a", s.clock.now_secs() + 10)
        .unwrap();
    assert!(s.verifier.verify_cached(&token, &opts).is_none(), "revoked");
    let later = s.token_with(
        &s.issuer.first_kid(),
        json!({"sub": "other", "exp": s.clock.now_secs() + 60}),
    );
    s.verifier.verify(&later).unwrap();
    s.clock.advance_secs(3600);
    assert!(s.verifier.verify_cached(&later, &opts).is_none(), "expired");
}

/// The Prometheus exposition is one registry built with the verifier; each
/// scrape reads the live counters (typed kinds, their categories from the
/// kind itself).
#[test]
fn prometheus_scrapes_read_the_live_counters() {
    let s = common::setup();
    let token = s.token(&s.issuer.first_kid());
    s.verifier.verify(&token).unwrap();
    let first = s.verifier.prometheus();
    assert!(
        first.contains(r#"jwtwarden_verifications_total{outcome="ok",source="fresh"} 1"#),
        "{first}"
    );
    assert!(first.ends_with("# EOF\n"), "{first}");
    s.verifier.verify(&token).unwrap();
    let bad = common::with_header(
        &token,
        &serde_json::json!({"alg": "RS256", "kid": "nope", "crit": ["x"]}),
    );
    assert!(s.verifier.verify(&bad).is_err());
    let second = s.verifier.prometheus();
    assert!(
        second.contains(r#"jwtwarden_verifications_total{outcome="ok",source="cache"} 1"#),
        "{second}"
    );
    assert!(
        second.contains(r#"jwtwarden_verifications_total{outcome="unsupported_critical",category="malformed"} 1"#),
        "{second}"
    );
    assert!(second.contains(r#"jwtwarden_issuer_health{issuer="#), "{second}");
}

/// A clock whose cheap reading runs ahead of the exact one, as the system
/// clock's coarse ceiling may (by up to a second).
struct CeilingAhead(jwtwarden::ManualClock, u64);

impl Clock for CeilingAhead {
    fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }
    fn now_ceiling_ms(&self) -> u64 {
        self.0.now_ms() + self.1
    }
}

#[test]
fn a_hit_near_its_deadline_is_decided_at_the_exact_time() {
    let issuer = jwtwarden_testissuer::TestIssuer::start();
    let clock = jwtwarden::ManualClock::starting_now();
    let mut cfg = common::config_json(&issuer);
    cfg["issuers"][0]["leeway_secs"] = json!(0);
    let config = jwtwarden::Config::from_value(cfg).unwrap();
    let verifier =
        jwtwarden::Verifier::with_clock(config, std::sync::Arc::new(CeilingAhead(clock.clone(), 1000))).unwrap();
    let exp = clock.now_secs() + 60;
    let mut claims = issuer.default_claims("svc", clock.now_secs());
    claims["exp"] = json!(exp);
    let token = issuer.mint(&issuer.first_kid(), &claims);
    assert!(!verifier.verify(&token).unwrap().cached());

    // Within the ceiling's margin of exp: the ceiling says no, the exact
    // time says yes, and the result is still served from the cache (not
    // dropped and verified again).
    clock.set_ms(exp * 1000 - 500);
    for _ in 0..3 {
        assert!(verifier.verify(&token).unwrap().cached());
    }
    assert_eq!(verifier.metrics().verifications.ok_fresh, 1);
    // The last millisecond, then exp itself: invalid at exp, never later.
    clock.set_ms(exp * 1000 - 1);
    assert!(verifier.verify(&token).unwrap().cached());
    clock.set_ms(exp * 1000);
    assert_eq!(verifier.verify(&token).unwrap_err().kind(), ErrorKind::Expired);
}
