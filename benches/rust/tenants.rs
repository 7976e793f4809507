//! What issuer templates cost on the hit path: cache hits of tokens of
//! 1,000 tenants of a template holding 10,000 materialised tenants, next to
//! hits of 1,000 tokens of one configured issuer, interleaved in the same
//! run (issue 27's target: within 5 %, p50 and p99): each tenant's first
//! token (cached when the tenant was materialised), a later token of the
//! same tenants, and 1,000 tokens of a single tenant. Twice: with a shared
//! `jwks_uri` (Entra ID style: materialising 10,000 tenants costs one
//! fetch), then with a `jwks_uri` per tenant (10,000 fetches on loopback);
//! a per-tenant member's hit reads its key epoch and fail-closed time from
//! its slot of the member table, where its key store copies them.
//!
//! `cargo bench -p jwtwarden-benches --bench tenants`. Prints one line per
//! pattern: mean, p50 and p99 ns per hit (percentiles of the mean of each
//! batch of 8 consecutive hits, see `BATCH`; medians of rounds).

use std::sync::Arc;
use std::time::Instant;

use jwtwarden::{Config, ManualClock, Verifier};
use jwtwarden_testissuer::{TenantIssuer, TenantMode};
use serde_json::json;

const TENANTS: u64 = 10_000;
const TOKENS: usize = 1_000;
const ROUNDS: usize = 11;
const OPS: usize = 1_000_000;

fn tid(n: u64) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", n >> 48, n & 0xffff_ffff_ffff)
}

/// Hits per timed sample. This machine's clocks (`Instant`, and the
/// time-stamp counter too) move in steps of 10 ns, as large as the gap
/// being measured: one sample is the mean of `BATCH` consecutive hits
/// (1.25 ns steps), and the percentiles are those of these means.
const BATCH: usize = 8;

/// (mean, p50, p99) ns per hit over `OPS` hits cycling through `tokens`.
fn hits(v: &Verifier, tokens: &[String]) -> (f64, f64, f64) {
    for t in tokens {
        assert!(v.verify(t).unwrap().cached());
    }
    let n = OPS / BATCH;
    let mut samples = Vec::with_capacity(n);
    let start = Instant::now();
    for b in 0..n {
        let s = Instant::now();
        for i in b * BATCH..(b + 1) * BATCH {
            std::hint::black_box(v.verify(&tokens[i % tokens.len()]).unwrap());
        }
        samples.push(s.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    let mean = start.elapsed().as_nanos() as f64 / (n * BATCH) as f64;
    samples.sort_by(f64::total_cmp);
    let p = |q: f64| samples[((n as f64 * q) as usize).min(n - 1)];
    (mean, p(0.50), p(0.99))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    for mode in [TenantMode::SharedKeys, TenantMode::PerTenant] {
        run(mode);
    }
}

/// One key mode: a template of `TENANTS` materialised tenants next to one
/// configured issuer of the same test issuer. Both verifiers' caches hold
/// the same number of results (`TENANTS + 2 * TOKENS`), so the gap measured
/// is the member's, not that of a larger cache table.
fn run(mode: TenantMode) {
    let idp = TenantIssuer::start(mode);
    let clock = ManualClock::starting_now();
    let base = json!({
        "http": {"allow_http": true},
        "background_refresh": false,
        "cache": {"capacity": 100_000},
    });
    let jwks_uri = |tenant: &str| match mode {
        TenantMode::SharedKeys => format!("{}/common/keys", idp.url()),
        TenantMode::PerTenant => format!("{}/{tenant}/keys", idp.url()),
    };
    let mut single = base.clone();
    single["issuers"] = json!([{
        "issuer": idp.issuer(&tid(0)), "jwks_uri": jwks_uri(&tid(0)),
        "audiences": ["api://orders"],
    }]);
    let mut family = base;
    family["issuer_templates"] = json!([{
        "issuer": format!("{}/{{tenant}}/v2.0", idp.url()),
        "tenant_pattern": "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "jwks_uri": jwks_uri("{tenant}"),
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
    // Interleaved, so both sides' tokens and cached results are spread
    // over the heap alike (the members' allocations come between the
    // template's), and in turn first: a result cached right after a
    // member's materialisation (its fetch's buffers freed just then) lands
    // elsewhere in the heap than one cached next, and that placement alone
    // moved either side's hits by 5 to 7 % when one side always came first
    // (the side first was the slower; swapped, the gap changed sign).
    let (mut tenant_tokens, mut single_tokens) = (Vec::new(), Vec::new());
    let mut single_secs = 0.0;
    for n in 0..TENANTS {
        let t = idp.mint(&tid(n), "user", now);
        let u = idp.mint(&tid(0), &format!("user{n}"), now);
        if n % 2 == 0 {
            family.verify(&t).unwrap();
        }
        let s = Instant::now();
        single.verify(&u).unwrap();
        single_secs += s.elapsed().as_secs_f64();
        if n % 2 == 1 {
            family.verify(&t).unwrap();
        }
        if (n as usize) < TOKENS {
            tenant_tokens.push(t);
            single_tokens.push(u);
        }
    }
    assert_eq!(family.template_stats()[0].tenants_held, TENANTS);
    println!(
        "{mode:?}: {TENANTS} tenants materialised in {:.1} s ({} JWKS fetches)",
        started.elapsed().as_secs_f64() - single_secs,
        idp.jwks_requests()
    );
    // The same 1,000 tokens' shape, all of one tenant: tells the cost of
    // reaching 1,000 different members from that of the member lookup.
    let one_tenant: Vec<String> = (0..TOKENS).map(|i| idp.mint(&tid(1), &format!("u{i}"), now)).collect();
    let one_issuer: Vec<String> = (0..TOKENS).map(|i| idp.mint(&tid(0), &format!("u{i}"), now)).collect();
    for (t, u) in one_tenant.iter().zip(&one_issuer) {
        family.verify(t).unwrap();
        single.verify(u).unwrap();
    }
    // Tokens of 1,000 tenants again, first verified now (their results
    // allocated interleaved with the one issuer's, after the members'
    // materialisation).
    let (mut later_tenants, mut later_single) = (Vec::new(), Vec::new());
    for n in 0..TOKENS as u64 {
        let t = idp.mint(&tid(n), "later", now);
        let u = idp.mint(&tid(0), &format!("later{n}"), now);
        family.verify(&t).unwrap();
        single.verify(&u).unwrap();
        later_tenants.push(t);
        later_single.push(u);
    }
    assert_eq!(single.metrics().cache.entries, family.metrics().cache.entries);
    for (pattern, single_tokens, tenant_tokens) in [
        ("1,000 tenants", &single_tokens, &tenant_tokens),
        (
            "1,000 tenants, cached after materialising",
            &later_single,
            &later_tenants,
        ),
        ("one tenant", &one_issuer, &one_tenant),
    ] {
        println!("{mode:?}, tokens of {pattern}:");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            if round % 2 == 0 {
                a.push(hits(&single, single_tokens));
                b.push(hits(&family, tenant_tokens));
            } else {
                b.push(hits(&family, tenant_tokens));
                a.push(hits(&single, single_tokens));
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
                "  {name}: one issuer {x:.1} ns/hit, {TENANTS} tenants held {y:.1} ns/hit ({:+.1}%)",
                (y / x - 1.0) * 100.0
            );
        }
    }
}
