//! A tenant's key rotation racing cache hits of its tokens on many threads
//! (issue 27): a tenant with keys of its own is checked on a cache hit
//! through the copy of its key epoch in its family's member table
//! (`crate::family`, `KeyStore::mirror_into`); that copy must never let a
//! result stamped with the old epoch be served once the call that rotated
//! the keys has returned. Against the multi-tenant test issuer on
//! 127.0.0.1, with a manual clock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use jwtwarden::{Config, ManualClock, Verifier};
use jwtwarden_testissuer::{TenantIssuer, TenantMode};
use serde_json::json;

fn tid(n: u64) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", n >> 48, n & 0xffff_ffff_ffff)
}

/// Each round: a new tenant's token is verified and cached; threads serve
/// it from the cache in a loop while the IdP rotates the tenant's key and
/// this thread verifies a token of the new key (an unknown kid: one
/// refresh installs the new set, which no longer holds the old key). A
/// verify that began after that call returned must refuse the old token,
/// whatever the threads' own verifications of it (stamped with the old
/// epoch, some inserted after the rotation) left in the cache.
#[test]
fn a_tenant_key_rotation_racing_hits_serves_no_old_epoch_result_after_it_returned() {
    const ROUNDS: u64 = 40;
    const THREADS: usize = 4;
    let idp = TenantIssuer::start(TenantMode::PerTenant);
    let clock = ManualClock::starting_now();
    let cfg = json!({
        "issuer_templates": [{
            "issuer": format!("{}/{{tenant}}/v2.0", idp.url()),
            "tenant_pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
            "jwks_uri": format!("{}/{{tenant}}/keys", idp.url()),
            "audiences": ["api://orders"],
            "max_tenants": 10000,
            "new_tenant_fetches_per_minute": 10000,
            "refresh": { "jitter": 0.0 },
        }],
        "http": { "allow_http": true, "timeout_ms": 3000, "connect_timeout_ms": 500 },
        "background_refresh": false,
    });
    let v = Verifier::with_clock(Config::from_value(cfg).unwrap(), Arc::new(clock.clone())).unwrap();
    let (mut hits_before, mut refused_after) = (0u64, 0u64);
    for round in 0..ROUNDS {
        let tenant = tid(round + 1);
        let old = idp.mint(&tenant, "user", clock.now_secs());
        v.verify(&old).unwrap();
        assert!(v.verify(&old).unwrap().cached());
        // Past the unknown-kid cooldown, so the new kid's token refreshes.
        clock.advance_secs(31);
        let rotated = AtomicBool::new(false);
        let stop = AtomicBool::new(false);
        let (hits, refused, accepted_after) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    while !stop.load(Ordering::SeqCst) {
                        let after = rotated.load(Ordering::SeqCst);
                        match (v.verify(&old), after) {
                            (Ok(_), true) => accepted_after.fetch_add(1, Ordering::SeqCst),
                            (Ok(r), false) => hits.fetch_add(u64::from(r.cached()), Ordering::Relaxed),
                            (Err(_), true) => refused.fetch_add(1, Ordering::Relaxed),
                            (Err(_), false) => 0,
                        };
                    }
                });
            }
            for _ in 0..(round % 10) * 2_000 {
                std::hint::spin_loop();
            }
            idp.rotate(&tenant);
            let new = idp.mint(&tenant, "user", clock.now_secs());
            v.verify(&new).expect("the new key is fetched on its first token");
            rotated.store(true, Ordering::SeqCst);
            // Let the threads meet the rotation several times each.
            while refused.load(Ordering::Relaxed) + accepted_after.load(Ordering::SeqCst) < 50 * THREADS as u64 {
                std::thread::yield_now();
            }
            stop.store(true, Ordering::SeqCst);
        });
        assert_eq!(
            accepted_after.load(Ordering::SeqCst),
            0,
            "round {round}: the old key's token was accepted after the rotation returned"
        );
        hits_before += hits.load(Ordering::Relaxed);
        refused_after += refused.load(Ordering::Relaxed);
        assert!(v.verify(&old).is_err(), "round {round}");
    }
    // The race was real: hits were served until the rotation.
    assert!(
        hits_before > 0 && refused_after > 0,
        "{hits_before} hits, {refused_after} refusals"
    );
}
