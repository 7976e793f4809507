//! The HTTP decision of a cache hit allocates nothing beyond the engine's
//! own cache hit: no per-request copy of headers, claims or strings
//! (`HttpPolicy::decide` with `DecideMode::CachedOnly`, what an event loop
//! calls inline). Counted with a global allocator, on this thread only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use jwtwarden::http::{DecideMode, HttpPolicy, HttpRequest};
use jwtwarden::{Verifier, VerifyOptions};
use jwtwarden_testissuer::TestIssuer;
use serde_json::json;

struct Counting;

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> u64 {
    let before = COUNT.with(Cell::get);
    f();
    COUNT.with(Cell::get) - before
}

#[test]
fn a_hit_decision_allocates_no_more_than_the_engine_hit() {
    let issuer = TestIssuer::start();
    let verifier = Verifier::from_json(
        &json!({"issuers": [{"issuer": issuer.url(), "jwks_uri": issuer.jwks_uri(), "audiences": ["api"]}],
                "http": {"allow_http": true}})
        .to_string(),
    )
    .unwrap();
    let policy = HttpPolicy::from_json(
        &json!({"realm": "api", "claim_headers": {"sub": "X-Auth-Sub", "aud": "X-Auth-Aud"},
                "routes": [{"prefix": "/public/", "open": true}, {"prefix": "/api/", "scopes": []}]})
        .to_string(),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = issuer.mint(&issuer.first_kid(), &issuer.default_claims("alice", now));
    let auth = format!("Bearer {token}");
    let headers: &[(&[u8], &[u8])] = &[
        (b"host", b"api.example"),
        (b"authorization", auth.as_bytes()),
        (b"accept", b"*/*"),
    ];
    let req = HttpRequest {
        method: "GET",
        target: Some("/api/orders?page=2"),
        headers,
    };
    // Warm: the fresh verification, then the first hit builds the claim
    // headers once for the result.
    assert!(policy.decide(&verifier, &req, DecideMode::Verify).allowed());
    assert!(policy.decide(&verifier, &req, DecideMode::CachedOnly).allowed());

    let engine = allocations(|| {
        let hit = verifier.verify_cached(&token, &VerifyOptions::default());
        assert!(hit.is_some());
    });
    let decision = allocations(|| {
        let d = policy.decide(&verifier, &req, DecideMode::CachedOnly);
        assert!(d.allowed() && d.cached() == Some(true));
        assert_eq!(d.claim_headers().len(), 2);
    });
    assert!(
        decision <= engine,
        "a hit decision allocated {decision} times, the engine's hit {engine}"
    );
}
