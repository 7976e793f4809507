//! The first token of a new tenant, and a flood of tokens naming random
//! tenants (issue 27).
//!
//! * First token: a template with `discovery = true` and keys per tenant,
//!   against the multi-tenant test issuer on loopback: each new tenant's
//!   first verification costs its discovery document, its JWKS and the
//!   signature. Printed: the latency of that first verification (p50, p99,
//!   mean over `NEW` tenants), next to a second token of a tenant already
//!   held (a cache miss: signature and claims only).
//! * Flood: 100,000 tokens naming random valid-looking tenants (garbage
//!   signatures, as an attacker without keys sends them) against the
//!   default budget (`new_tenant_fetches_per_minute = 60`), the clock
//!   standing still: the fetches the issuer saw, and the cost of a refusal.
//!
//! Run: `cargo bench -p jwtwarden-benches --bench tenant_first`

use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwtwarden::{Config, ErrorKind, ManualClock, Verifier};
use jwtwarden_testissuer::{TenantIssuer, TenantMode};
use serde_json::{json, Value};

const NEW: u64 = 500;
const FLOOD: u64 = 100_000;
const PATTERN: &str = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

fn tid(n: u64) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", n >> 48, n & 0xffff_ffff_ffff)
}

fn verifier(idp: &TenantIssuer, clock: &ManualClock, budget: u32) -> Verifier {
    let cfg = json!({
        "http": {"allow_http": true},
        "background_refresh": false,
        "issuer_templates": [{
            "issuer": format!("{}/{{tenant}}/v2.0", idp.url()),
            "tenant_pattern": PATTERN,
            "discovery": true,
            "tenant_claim": "tid",
            "audiences": ["api://orders"],
            "max_tenants": 10_000,
            "new_tenant_fetches_per_minute": budget,
        }],
    });
    Verifier::with_clock(Config::from_value(cfg).unwrap(), Arc::new(clock.clone())).unwrap()
}

/// (p50, p99, mean) of `v` in µs.
fn summary(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (p(0.5), p(0.99), v.iter().sum::<f64>() / v.len() as f64)
}

fn main() {
    let idp = TenantIssuer::start(TenantMode::PerTenant);
    let clock = ManualClock::starting_now();
    let v = verifier(&idp, &clock, 1_000_000);
    let now = clock.now_secs();
    let firsts: Vec<String> = (0..NEW).map(|n| idp.mint(&tid(n), "user", now)).collect();
    let seconds: Vec<String> = (0..NEW).map(|n| idp.mint(&tid(n), "other", now)).collect();
    // One tenant first: the HTTP client and the maps' first capacity.
    v.verify(idp.mint(&tid(NEW), "user", now)).unwrap();
    let time = |t: &String| {
        let s = Instant::now();
        let r = v.verify(t).unwrap();
        (s.elapsed().as_secs_f64() * 1e6, r.cached())
    };
    let first: Vec<f64> = firsts
        .iter()
        .map(&time)
        .map(|(us, cached)| {
            assert!(!cached);
            us
        })
        .collect();
    let second: Vec<f64> = seconds.iter().map(|t| time(t).0).collect();
    assert_eq!(idp.discovery_requests(), NEW + 1);
    let (p50, p99, mean) = summary(first);
    println!(
        "first token of a new tenant (discovery + JWKS on loopback + ES256): p50 {p50:.0} us, p99 {p99:.0} us, \
         mean {mean:.0} us over {NEW} tenants ({} discovery, {} JWKS fetches)",
        idp.discovery_requests(),
        idp.jwks_requests()
    );
    let (p50, p99, mean) = summary(second);
    println!(
        "a new token of a tenant held (cache miss, no fetch): p50 {p50:.0} us, p99 {p99:.0} us, mean {mean:.0} us"
    );

    let idp = TenantIssuer::start(TenantMode::PerTenant);
    let v = verifier(&idp, &clock, 60);
    let b = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let header = b(&json!({"alg": "ES256", "kid": "k-attacker"}));
    let sig = URL_SAFE_NO_PAD.encode([7u8; 64]);
    let tokens: Vec<String> = (0..FLOOD)
        .map(|n| {
            let tenant = tid(fastrand::u64(..) << 20 | n);
            let claims = json!({"iss": idp.issuer(&tenant), "aud": "api://orders", "exp": now + 60, "tid": tenant});
            format!("{header}.{}.{sig}", b(&claims))
        })
        .collect();
    let started = Instant::now();
    let mut budget = 0u64;
    for t in &tokens {
        if v.verify(t).unwrap_err().kind() == ErrorKind::TenantBudgetExhausted {
            budget += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let s = &v.template_stats()[0];
    println!(
        "flood of {FLOOD} tokens naming random tenants, budget 60/min, clock still: {} discovery + {} JWKS \
         fetches ({} requests in all), {budget} refused by the budget (refused_budget {}), \
         {} tenants materialised; {:.1} us per token",
        idp.discovery_requests(),
        idp.jwks_requests(),
        idp.total_requests(),
        s.refused_budget,
        s.materialised,
        secs * 1e6 / FLOOD as f64
    );
    assert!(idp.discovery_requests() <= 60 && idp.jwks_requests() <= 60);
}
