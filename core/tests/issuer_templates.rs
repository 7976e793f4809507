//! Issuer templates (issue 27): one issuer per tenant, materialised on its
//! first token, against a real multi-tenant test issuer on 127.0.0.1, with
//! a manual clock. Each attack counts the requests the issuer saw.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwtwarden::{Config, ErrorKind, Health, ManualClock, Verifier};
use jwtwarden_testissuer::{TenantIssuer, TenantMode};
use serde_json::{json, Value};

const UUID: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

/// A valid-looking tenant id.
fn tid(n: u64) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", n >> 48, n & 0xffff_ffff_ffff)
}

fn template(idp: &TenantIssuer, adjust: impl FnOnce(&mut Value)) -> Value {
    let mut t = json!({
        "issuer": format!("{}/{{tenant}}/v2.0", idp.url()),
        "tenant_pattern": UUID,
        "discovery": true,
        "audiences": ["api://orders"],
        "max_tenants": 10000,
        "new_tenant_fetches_per_minute": 60,
    });
    adjust(&mut t);
    t
}

fn verifier(clock: &ManualClock, templates: Vec<Value>) -> Verifier {
    let cfg = json!({
        "issuer_templates": templates,
        "http": { "allow_http": true, "timeout_ms": 3000, "connect_timeout_ms": 500 },
        "background_refresh": false,
    });
    let config = Config::from_value(cfg).expect("valid config");
    Verifier::with_clock(config, Arc::new(clock.clone())).expect("verifier starts")
}

fn setup(mode: TenantMode, adjust: impl FnOnce(&mut Value)) -> (TenantIssuer, ManualClock, Verifier) {
    let idp = TenantIssuer::start(mode);
    let clock = ManualClock::starting_now();
    let t = template(&idp, adjust);
    let v = verifier(&clock, vec![t]);
    (idp, clock, v)
}

/// An ES256-shaped token with any claims and a garbage signature: what an
/// attacker sends without holding any key.
fn forged(claims: &Value) -> String {
    let b = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!(
        "{}.{}.{}",
        b(&json!({"alg": "ES256", "kid": "k-attacker"})),
        b(claims),
        URL_SAFE_NO_PAD.encode([7u8; 64])
    )
}

fn kind(v: &Verifier, token: &str) -> ErrorKind {
    v.verify(token).expect_err("must be refused").kind()
}

#[test]
fn a_valid_tenant_token_is_accepted_then_served_from_the_cache() {
    let (idp, clock, v) = setup(TenantMode::PerTenant, |_| {});
    let a = tid(1);
    let token = idp.mint(&a, "alice", clock.now_secs());
    let first = v.verify(&token).expect("accepted");
    assert!(!first.cached());
    assert_eq!(first.claims()["tid"], a.as_str());
    assert!(v.verify(&token).expect("accepted").cached());
    assert_eq!((idp.discovery_requests(), idp.jwks_requests()), (1, 1));
    assert_eq!(v.issuer_health(&idp.issuer(&a)).unwrap(), Health::Fresh);
    let stats = &v.template_stats()[0];
    assert_eq!((stats.tenants_held, stats.materialised), (1, 1));
    assert!(stats.template.ends_with("/{tenant}/v2.0"), "{}", stats.template);
}

#[test]
fn tenants_outside_the_pattern_or_the_allowlist_cost_no_fetch() {
    let allowed = tid(1);
    let (idp, clock, v) = setup(TenantMode::PerTenant, |t| t["tenants"] = json!([allowed]));
    let now = clock.now_secs();
    let other = tid(2);
    assert_eq!(kind(&v, &idp.mint(&other, "x", now)), ErrorKind::TenantNotAllowed);
    for bad in ["not-a-uuid", "00000001-0000-4000-8000-00000000000G", "", "..", "."] {
        let mut claims = idp.claims(&allowed, "x", now);
        claims["iss"] = json!(format!("{}/{bad}/v2.0", idp.url()));
        assert_eq!(
            kind(&v, &idp.mint_as(&allowed, &claims)),
            ErrorKind::UnknownIssuer,
            "{bad:?}"
        );
    }
    assert_eq!(idp.total_requests(), 0, "nothing was fetched");
    let stats = &v.template_stats()[0];
    assert_eq!(
        (stats.refused_allowlist, stats.refused_pattern, stats.tenants_held),
        (1, 5, 0)
    );
    v.verify(idp.mint(&allowed, "x", now))
        .expect("the allowed tenant is accepted");
}

#[test]
fn a_flood_of_random_tenants_fetches_at_most_the_budget() {
    let (idp, clock, v) = setup(TenantMode::PerTenant, |t| t["new_tenant_fetches_per_minute"] = json!(5));
    let now = clock.now_secs();
    let mut budget = 0;
    for n in 0..100_000u64 {
        let tenant = tid(fastrand::u64(..) << 20 | n);
        let claims = json!({"iss": idp.issuer(&tenant), "aud": "api://orders", "exp": now + 60, "tid": tenant});
        if kind(&v, &forged(&claims)) == ErrorKind::TenantBudgetExhausted {
            budget += 1;
        }
    }
    assert!(budget >= 100_000 - 5, "{budget}");
    assert!(idp.discovery_requests() <= 5, "{}", idp.discovery_requests());
    assert!(idp.jwks_requests() <= 5, "{}", idp.jwks_requests());
    assert_eq!(v.template_stats()[0].refused_budget, budget);
    // The budget refills on the clock: a real new tenant gets in a minute later.
    let real = tid(42);
    assert_eq!(kind(&v, &idp.mint(&real, "x", now)), ErrorKind::TenantBudgetExhausted);
    clock.advance_secs(12);
    v.verify(idp.mint(&real, "x", clock.now_secs()))
        .expect("budget refilled");
}

#[test]
fn a_token_signed_by_tenant_a_claiming_tenant_b_is_refused() {
    let (idp, clock, v) = setup(TenantMode::PerTenant, |_| {});
    let (a, b) = (tid(1), tid(2));
    let now = clock.now_secs();
    v.verify(idp.mint(&a, "x", now)).expect("a");
    v.verify(idp.mint(&b, "x", now)).expect("b");
    let forged_b = idp.mint_as(&a, &idp.claims(&b, "x", now));
    let k = kind(&v, &forged_b);
    assert!(
        matches!(k, ErrorKind::UnknownKid | ErrorKind::InvalidSignature),
        "{k:?}"
    );
    // Even claiming tenant A in `tid`.
    let mut claims = idp.claims(&b, "x", now);
    claims["tid"] = json!(a);
    assert!(v.verify(idp.mint_as(&a, &claims)).is_err());
}

#[test]
fn shared_keys_are_fetched_once_and_bound_to_the_tenant_by_its_claim() {
    let idp = TenantIssuer::start(TenantMode::SharedKeys);
    let clock = ManualClock::starting_now();
    let t = template(&idp, |t| {
        t.as_object_mut().unwrap().remove("discovery");
        t["jwks_uri"] = json!(format!("{}/common/keys", idp.url()));
        t["tenant_claim"] = json!("tid");
    });
    let v = verifier(&clock, vec![t]);
    let (a, b) = (tid(1), tid(2));
    let now = clock.now_secs();
    v.verify(idp.mint(&a, "x", now)).expect("a");
    v.verify(idp.mint(&b, "x", now)).expect("b");
    assert_eq!(idp.jwks_requests(), 1, "one shared key set, fetched once");
    // Every tenant signs with the shared key: only the claim binds it.
    let mut claims = idp.claims(&b, "x", now);
    claims["tid"] = json!(a);
    assert_eq!(kind(&v, &idp.mint_as(&a, &claims)), ErrorKind::InvalidIssuer);
    claims.as_object_mut().unwrap().remove("tid");
    assert_eq!(kind(&v, &idp.mint_as(&a, &claims)), ErrorKind::MissingRequiredClaim);
}

#[test]
fn iss_spellings_never_reach_another_tenant_or_host() {
    let (idp, clock, v) = setup(TenantMode::PerTenant, |_| {});
    let a = tid(0xabc);
    let now = clock.now_secs();
    v.verify(idp.mint(&a, "x", now)).expect("a");
    let seen = idp.total_requests();
    let url = idp.url();
    let host_port = url.trim_start_matches("http://");
    let port = host_port.rsplit(':').next().unwrap();
    let spellings = [
        format!("{url}/{a}/v2.0/"),
        format!("{url}/{}/v2.0", a.to_uppercase()),
        format!("{}/{a}/v2.0", url.replace("127.0.0.1", "127.0.0.1.")),
        format!("http://localhost:{port}/{a}/v2.0"),
        format!("http://evil@{host_port}/{a}/v2.0"),
        format!("{url}/{a}%2f..%2f{}/v2.0", tid(2)),
        format!("{url}/{}/v2.0", a.replacen('0', "%30", 1)),
        format!("{url}/../{a}/v2.0"),
        format!("{url}/{a}/../{}/v2.0", tid(2)),
        format!("{url}/{a}@evil.example/v2.0"),
        format!("{url}/{a}/v2.0?x=1"),
        format!("{url}/{a}/v2.0#x"),
        format!("{url}//{a}/v2.0"),
        format!("HTTP://{host_port}/{a}/v2.0"),
        format!("https://evil.example/{a}/v2.0"),
    ];
    for iss in &spellings {
        let mut claims = idp.claims(&a, "x", now);
        claims["iss"] = json!(iss);
        let k = kind(&v, &idp.mint_as(&a, &claims));
        assert!(
            matches!(k, ErrorKind::UnknownIssuer | ErrorKind::InvalidIssuer),
            "{iss}: {k:?}"
        );
    }
    assert_eq!(idp.total_requests(), seen, "no spelling fetched anything");
    assert_eq!(v.template_stats()[0].tenants_held, 1);
}

#[test]
fn a_thousand_concurrent_first_tokens_fetch_discovery_and_keys_once() {
    let (idp, clock, v) = setup(TenantMode::PerTenant, |_| {});
    idp.set_delay(Duration::from_millis(300));
    let a = tid(7);
    let now = clock.now_secs();
    let tokens: Vec<String> = (0..1000).map(|i| idp.mint(&a, &format!("u{i}"), now)).collect();
    let barrier = Barrier::new(tokens.len());
    let ok = std::thread::scope(|s| {
        let handles: Vec<_> = tokens
            .iter()
            .map(|t| {
                let (v, barrier) = (&v, &barrier);
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, move || {
                        barrier.wait();
                        v.verify(t).is_ok()
                    })
                    .unwrap()
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).filter(|ok| *ok).count()
    });
    assert_eq!(ok, 1000);
    assert_eq!((idp.discovery_requests(), idp.jwks_requests()), (1, 1));
    assert_eq!(v.template_stats()[0].materialised, 1);
}

#[test]
fn an_evicted_tenant_loses_its_cached_results_and_keys() {
    let (idp, clock, v) = setup(TenantMode::PerTenant, |t| t["max_tenants"] = json!(2));
    let now = clock.now_secs();
    let (a, b, c) = (tid(1), tid(2), tid(3));
    let (token_a, token_b) = (idp.mint(&a, "x", now), idp.mint(&b, "x", now));
    v.verify(&token_a).expect("a");
    assert!(v.verify(&token_a).unwrap().cached());
    // b served from the cache too: both had their second chance when c
    // comes, and a, the least recently verified, goes.
    v.verify(&token_b).expect("b");
    assert!(v.verify(&token_b).unwrap().cached());
    v.verify(idp.mint(&c, "x", now)).expect("c");
    let stats = &v.template_stats()[0];
    assert_eq!((stats.tenants_held, stats.evicted), (2, 1));
    assert!(v.issuer_health(&idp.issuer(&a)).is_err(), "a is no longer held");
    // The cached result is not served: a is materialised again and fetched.
    let again = v.verify(&token_a).expect("a verified again");
    assert!(!again.cached());
    assert_eq!(idp.requests(&format!("/{a}/keys")), 2);
}

#[test]
fn a_tenant_served_from_the_cache_is_not_idle_and_is_not_evicted_first() {
    // a is verified once and then only served from the cache; b is
    // verified once and never again; c's arrival evicts b, not a.
    let (idp, clock, v) = setup(TenantMode::PerTenant, |t| t["max_tenants"] = json!(2));
    let now = clock.now_secs();
    let (a, b, c) = (tid(1), tid(2), tid(3));
    let token_a = idp.mint(&a, "x", now);
    v.verify(&token_a).expect("a");
    v.verify(idp.mint(&b, "x", now)).expect("b");
    for _ in 0..3 {
        assert!(v.verify(&token_a).unwrap().cached());
    }
    v.verify(idp.mint(&c, "x", now)).expect("c");
    assert_eq!(v.template_stats()[0].evicted, 1);
    assert!(v.issuer_health(&idp.issuer(&b)).is_err(), "b, idle, was evicted");
    assert_eq!(v.issuer_health(&idp.issuer(&a)).unwrap(), Health::Fresh);
    assert!(v.verify(&token_a).unwrap().cached(), "a's cached result still served");
    // Served again since: d evicts c (idle), not a.
    v.verify(idp.mint(&tid(4), "x", now)).expect("d");
    assert!(v.issuer_health(&idp.issuer(&c)).is_err(), "c, idle, was evicted");
    assert!(v.verify(&token_a).unwrap().cached());
    assert_eq!(v.template_stats()[0].evicted, 2);
    assert_eq!(idp.requests(&format!("/{a}/keys")), 1, "a was never fetched again");
}

#[test]
fn an_evicted_tenant_past_the_budget_is_refused_even_with_a_cached_result() {
    let (idp, clock, v) = setup(TenantMode::PerTenant, |t| {
        t["max_tenants"] = json!(1);
        t["new_tenant_fetches_per_minute"] = json!(2);
    });
    let now = clock.now_secs();
    let token_a = idp.mint(&tid(1), "x", now);
    v.verify(&token_a).expect("a");
    v.verify(idp.mint(&tid(2), "x", now)).expect("b evicts a");
    assert_eq!(kind(&v, &token_a), ErrorKind::TenantBudgetExhausted);
}

#[test]
fn a_revocation_for_tenant_a_does_not_touch_tenant_b() {
    let (idp, clock, v) = setup(TenantMode::PerTenant, |_| {});
    let (a, b) = (tid(1), tid(2));
    let now = clock.now_secs();
    let mut ca = idp.claims(&a, "alice", now);
    let mut cb = idp.claims(&b, "alice", now);
    ca["jti"] = json!("same-jti");
    cb["jti"] = json!("same-jti");
    let (ta, tb) = (idp.mint_as(&a, &ca), idp.mint_as(&b, &cb));
    v.verify(&ta).expect("a");
    v.verify(&tb).expect("b");
    v.revoke_jti(&idp.issuer(&a), "same-jti", None)
        .expect("revocation for a tenant");
    assert_eq!(kind(&v, &ta), ErrorKind::Revoked);
    assert!(v.verify(&tb).expect("b untouched").cached());
    v.revoke_subject(&idp.issuer(&b), "bob", now + 10).unwrap();
    assert!(v.verify(&tb).is_ok());
    // A tenant the template refuses cannot be named.
    assert_eq!(
        v.revoke_jti(&format!("{}/nope/v2.0", idp.url()), "j", None)
            .unwrap_err()
            .kind(),
        ErrorKind::UnknownIssuer
    );
}

#[test]
fn a_tenant_whose_discovery_failed_is_refused_without_a_fetch_for_a_minute() {
    let (idp, clock, v) = setup(TenantMode::PerTenant, |_| {});
    let f = tid(9);
    idp.fail_tenant(&f);
    let now = clock.now_secs();
    assert_eq!(kind(&v, &idp.mint(&f, "x", now)), ErrorKind::KeysUnavailable);
    let seen = idp.total_requests();
    assert!(seen >= 1);
    assert_eq!(kind(&v, &idp.mint(&f, "y", now)), ErrorKind::TenantUnavailable);
    assert_eq!(idp.total_requests(), seen);
    clock.advance_secs(61);
    assert_eq!(
        kind(&v, &idp.mint(&f, "z", clock.now_secs())),
        ErrorKind::KeysUnavailable
    );
    assert!(idp.total_requests() > seen, "asked again after the minute");
    assert_eq!(v.template_stats()[0].refused_unavailable, 1);
}

#[test]
fn a_placeholder_that_could_reach_another_host_is_refused_at_load() {
    for (issuer, jwks_uri, field) in [
        (
            "https://{tenant}.okta.com/oauth2/default",
            None,
            "issuer_templates[0].issuer",
        ),
        (
            "https://login.example.com{tenant}/v2.0",
            None,
            "issuer_templates[0].issuer",
        ),
        (
            "https://login.example.com/{tenant}/v2.0",
            Some("https://{tenant}.example.com/keys"),
            "issuer_templates[0].jwks_uri",
        ),
    ] {
        let mut t = json!({"issuer": issuer, "tenant_pattern": "[a-z]+", "audiences": ["a"]});
        match jwks_uri {
            Some(u) => t["jwks_uri"] = json!(u),
            None => t["discovery"] = json!(true),
        }
        let e = Config::from_value(json!({ "issuer_templates": [t] })).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.message().starts_with(field), "{issuer}: {e}");
    }
    let e = Config::from_toml(
        r#"
        [[issuer_templates]]
        issuer = "https://login.example.com/{tenant}/v2.0"
        tenant_pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
        discovery = true
        audiences = ["api://orders"]
        tenant_claim = "tid"
        tenants = ["nope"]
        max_tenants = 10000
        new_tenant_fetches_per_minute = 60
        "#,
    )
    .unwrap_err();
    assert!(e.message().contains("issuer_templates[0].tenants[0]"), "{e}");
}

#[test]
fn each_templates_counters_are_in_metrics_and_prometheus_and_a_tenant_has_health() {
    let (idp, clock, v) = setup(TenantMode::PerTenant, |t| {
        t["max_tenants"] = json!(2);
        t["new_tenant_fetches_per_minute"] = json!(3);
    });
    let now = clock.now_secs();
    let (a, b, c, f) = (tid(1), tid(2), tid(3), tid(9));
    assert!(v.issuer_health(&idp.issuer(&a)).is_err(), "not materialised yet");
    v.verify(idp.mint(&a, "x", now)).expect("a");
    idp.fail_tenant(&f);
    assert_eq!(kind(&v, &idp.mint(&f, "x", now)), ErrorKind::KeysUnavailable);
    assert_eq!(kind(&v, &idp.mint(&f, "x", now)), ErrorKind::TenantUnavailable);
    v.verify(idp.mint(&b, "x", now)).expect("b");
    assert_eq!(kind(&v, &idp.mint(&c, "x", now)), ErrorKind::TenantBudgetExhausted);
    let mut claims = idp.claims(&a, "x", now);
    claims["iss"] = json!(format!("{}/not-a-tenant/v2.0", idp.url()));
    assert_eq!(kind(&v, &idp.mint_as(&a, &claims)), ErrorKind::UnknownIssuer);
    clock.advance_secs(60);
    v.verify(idp.mint(&c, "x", clock.now_secs()))
        .expect("c, budget refilled, evicts a");

    let stats = v.template_stats();
    let t = &stats[0];
    // f was materialised, its first fetch failed, and it was forgotten.
    assert_eq!((t.tenants_held, t.materialised, t.evicted), (2, 4, 1), "{t:?}");
    assert_eq!(
        (
            t.refused_budget,
            t.refused_pattern,
            t.refused_allowlist,
            t.refused_unavailable
        ),
        (1, 1, 0, 1),
        "{t:?}"
    );
    // The snapshot (and so the C, Go and Python metrics JSON) carries them.
    let m = v.metrics();
    assert_eq!(m.templates, stats);
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["templates"][0]["refused_unavailable"], 1);
    assert_eq!(json["templates"][0]["template"], t.template.as_str());
    let text = v.prometheus();
    let label = format!("template=\"{}\"", t.template);
    for line in [
        format!("jwtwarden_template_tenants_held{{{label}}} 2"),
        format!("jwtwarden_template_tenants_materialised_total{{{label}}} 4"),
        format!("jwtwarden_template_tenants_evicted_total{{{label}}} 1"),
        format!("jwtwarden_template_tenants_refused_total{{{label},reason=\"budget\"}} 1"),
        format!("jwtwarden_template_tenants_refused_total{{{label},reason=\"pattern\"}} 1"),
        format!("jwtwarden_template_tenants_refused_total{{{label},reason=\"allowlist\"}} 0"),
        format!("jwtwarden_template_tenants_refused_total{{{label},reason=\"unavailable\"}} 1"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }
    // issuer_health answers for a tenant held, and not for one evicted,
    // forgotten or never seen.
    assert_eq!(v.issuer_health(&idp.issuer(&b)).unwrap(), Health::Fresh);
    assert_eq!(v.issuer_health(&idp.issuer(&c)).unwrap(), Health::Fresh);
    for gone in [&a, &f, &tid(77)] {
        assert_eq!(
            v.issuer_health(&idp.issuer(gone)).unwrap_err().kind(),
            ErrorKind::UnknownIssuer,
            "{gone}"
        );
    }
}
