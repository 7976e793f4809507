//! What issuer templates cost on the hit path: cache hits of tokens of
//! 1,000 tenants of a template holding 10,000 materialised tenants, next to
//! hits of 1,000 tokens of one configured issuer, interleaved in the same
//! run (issue 27's target: within 5 %, p50 and p99). The template uses a
//! shared `jwks_uri` (Entra ID style) so materialising 10,000 tenants costs
//! one fetch; the hit path is the same for per-tenant keys.
//!
//! `cargo bench -p jwtwarden-benches --bench tenants`. Prints one line per
//! pattern: mean, p50 and p99 ns per hit (per-call timing, medians of rounds).

use std::sync::Arc;
use std::time::Instant;

use jwtwarden::{Config, ManualClock, Verifier};
use jwtwarden_testissuer::{TenantIssuer, TenantMode};
use serde_json::json;

const TENANTS: u64 = 10_000;
const TOKENS: usize = 1_000;
const ROUNDS: usize = 7;
const OPS: usize = 1_000_000;

fn tid(n: u64) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", n >> 48, n & 0xffff_ffff_ffff)
}

/// (mean, p50, p99) ns per hit over `OPS` hits cycling through `tokens`.
fn hits(v: &Verifier, tokens: &[String]) -> (f64, f64, f64) {
    for t in tokens {
        assert!(v.verify(t).unwrap().cached());
    }
    let mut samples = Vec::with_capacity(OPS);
    let start = Instant::now();
    for i in 0..OPS {
        let t = &tokens[i % tokens.len()];
        let s = Instant::now();
        std::hint::black_box(v.verify(t).unwrap());
        samples.push(s.elapsed().as_nanos() as u32);
    }
    let mean = start.elapsed().as_nanos() as f64 / OPS as f64;
    samples.sort_unstable();
    let p = |q: f64| f64::from(samples[((OPS as f64 * q) as usize).min(OPS - 1)]);
    (mean, p(0.50), p(0.99))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let idp = TenantIssuer::start(TenantMode::SharedKeys);
    let clock = ManualClock::starting_now();
    let base = json!({
        "http": {"allow_http": true},
        "background_refresh": false,
        "cache": {"capacity": 100_000},
    });
    let mut single = base.clone();
    single["issuers"] = json!([{
        "issuer": idp.issuer(&tid(0)), "jwks_uri": format!("{}/common/keys", idp.url()),
        "audiences": ["api://orders"],
    }]);
    let mut family = base;
    family["issuer_templates"] = json!([{
        "issuer": format!("{}/{{tenant}}/v2.0", idp.url()),
        "tenant_pattern": "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "jwks_uri": format!("{}/common/keys", idp.url()),
        "tenant_claim": "tid",
        "audiences": ["api://orders"],
        "max_tenants": TENANTS + 10,
        "new_tenant_fetches_per_minute": TENANTS + 10,
    }]);
    let build =
        |c: serde_json::Value| Verifier::with_clock(Config::from_value(c).unwrap(), Arc::new(clock.clone())).unwrap();
    let (single, family) = (build(single), build(family));
    let now = clock.now_secs();
    let started = Instant::now();
    let mut tenant_tokens = Vec::new();
    for n in 0..TENANTS {
        let t = idp.mint(&tid(n), "user", now);
        family.verify(&t).unwrap();
        if (n as usize) < TOKENS {
            tenant_tokens.push(t);
        }
    }
    assert_eq!(family.template_stats()[0].tenants_held, TENANTS);
    println!(
        "{TENANTS} tenants materialised in {:.1} s ({} JWKS fetch)",
        started.elapsed().as_secs_f64(),
        idp.jwks_requests()
    );
    let single_tokens: Vec<String> = (0..TOKENS).map(|i| idp.mint(&tid(0), &format!("u{i}"), now)).collect();
    for t in &single_tokens {
        single.verify(t).unwrap();
    }
    // The same 1,000 tokens' shape, all of one tenant: tells the cost of
    // reaching 1,000 different members from that of the member lookup.
    let one_tenant: Vec<String> = (0..TOKENS).map(|i| idp.mint(&tid(1), &format!("u{i}"), now)).collect();
    for t in &one_tenant {
        family.verify(t).unwrap();
    }
    for (pattern, tenant_tokens) in [("1,000 tenants", &tenant_tokens), ("one tenant", &one_tenant)] {
        println!("tokens of {pattern}:");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            if round % 2 == 0 {
                a.push(hits(&single, &single_tokens));
                b.push(hits(&family, tenant_tokens));
            } else {
                b.push(hits(&family, tenant_tokens));
                a.push(hits(&single, &single_tokens));
            }
        }
        let med = |v: &[(f64, f64, f64)], f: fn(&(f64, f64, f64)) -> f64| median(v.iter().map(f).collect());
        for (name, f) in [
            ("mean", (|x: &(f64, f64, f64)| x.0) as fn(&(f64, f64, f64)) -> f64),
            ("p50", |x| x.1),
            ("p99", |x| x.2),
        ] {
            let (x, y) = (med(&a, f), med(&b, f));
            println!(
                "{name}: one issuer {x:.0} ns/hit, {TENANTS} tenants held {y:.0} ns/hit ({:+.1}%)",
                (y / x - 1.0) * 100.0
            );
        }
    }
}
