//! Memory per idle tenant of an issuer template (issue 27's target: at most
//! 4 KiB besides its keys), measured with a counting allocator: materialise
//! N tenants into a verifier whose result cache is off (so no cached result
//! is counted) and divide the growth in live heap bytes by N.
//!
//! Two key modes: a shared `jwks_uri` (Entra ID style: the tenants' keys
//! are one set, fetched once, so none is counted per tenant), then a
//! `jwks_uri` per tenant (each tenant's own key holder and its one key are
//! counted; the key's aws-lc object is allocated by aws-lc, outside the
//! counting allocator). The test issuer runs in this process: its tokens
//! and keys are made before measuring, and its per-path request counter
//! (one small map entry per tenant in per-tenant mode) is counted.
//!
//! Besides the growth per tenant, a template holds a fixed table sized by
//! `max_tenants` (the ids of held members for the cache-hit path): printed
//! as the growth of building the verifier with the template.
//!
//! Run: `cargo bench -p jwtwarden-benches --bench tenant_memory`

use std::sync::Arc;

use jwtwarden::{Config, ManualClock, Verifier};
use jwtwarden_benches::counting::Counting;
use jwtwarden_testissuer::{TenantIssuer, TenantMode};
use serde_json::json;

#[global_allocator]
static GLOBAL: Counting = Counting;

fn tid(n: u64) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", n >> 48, n & 0xffff_ffff_ffff)
}

fn main() {
    for (mode, n) in [(TenantMode::SharedKeys, 10_000u64), (TenantMode::PerTenant, 2_000)] {
        let idp = TenantIssuer::start(mode);
        let clock = ManualClock::starting_now();
        let jwks_uri = match mode {
            TenantMode::SharedKeys => format!("{}/common/keys", idp.url()),
            TenantMode::PerTenant => format!("{}/{{tenant}}/keys", idp.url()),
        };
        let cfg = json!({
            "http": {"allow_http": true},
            "background_refresh": false,
            "cache": {"enabled": false},
            "issuer_templates": [{
                "issuer": format!("{}/{{tenant}}/v2.0", idp.url()),
                "tenant_pattern": "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                "jwks_uri": jwks_uri,
                "tenant_claim": "tid",
                "audiences": ["api://orders"],
                "max_tenants": n + 10,
                "new_tenant_fetches_per_minute": 1_000_000,
            }],
        });
        let now = clock.now_secs();
        let tokens: Vec<String> = (0..=n).map(|i| idp.mint(&tid(i), "user", now)).collect();
        let config = Config::from_value(cfg).unwrap();
        let before_build = Counting::live();
        let v = Verifier::with_clock(config, Arc::new(clock.clone())).unwrap();
        let built = Counting::live() - before_build;
        // The first tenant warms what is allocated once (the shared keys,
        // the HTTP client, the maps' first capacity).
        v.verify(&tokens[0]).unwrap();
        let before = Counting::live();
        for t in &tokens[1..] {
            v.verify(t).unwrap();
        }
        let grown = Counting::live() - before;
        let stats = &v.template_stats()[0];
        assert_eq!(stats.tenants_held, n + 1);
        assert_eq!(v.metrics().cache.entries, 0);
        println!(
            "{mode:?}: {} bytes per idle tenant ({n} tenants materialised, heap grew {} KiB; {} JWKS fetches); \
             the verifier with its template (max_tenants {}) took {} KiB when built",
            grown / n as isize,
            grown / 1024,
            idp.jwks_requests(),
            n + 10,
            built / 1024,
        );
    }
}
