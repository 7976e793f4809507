//! What the fleet revocation feed costs on the hit path: cache hits of a
//! verifier subscribed to a real `redis-server` and holding 100,000
//! revocations, next to a verifier without a feed, interleaved in the same
//! run (issue 10's target: within noise).
//!
//! `cargo bench -p jwtwarden-benches --bench revocation` (needs
//! `redis-server` on the PATH). Prints one line per round and the medians.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jwtwarden::{Config, ManualClock, Revoker, Verifier};
use jwtwarden_testissuer::redis::RedisServer;
use jwtwarden_testissuer::TestIssuer;
use serde_json::{json, Value};

const HELD: usize = 100_000;
const ROUNDS: usize = 7;
const OPS: u64 = 2_000_000;

fn config(issuer: &TestIssuer, redis: Option<&RedisServer>) -> Value {
    let mut c = json!({
        "issuers": [{"issuer": issuer.url(), "jwks_uri": issuer.jwks_uri(), "audiences": ["api"]}],
        "http": {"allow_http": true},
        "background_refresh": false,
        "revocation": {"max_entries": HELD * 2},
    });
    if let Some(r) = redis {
        c["revocation"]["redis"] = json!({"url": r.url()});
    }
    c
}

/// ns per hit over `OPS` hits cycling through `tokens`.
fn hits(v: &Verifier, tokens: &[String]) -> f64 {
    for t in tokens {
        assert!(v.verify(t).unwrap().cached() || v.verify(t).unwrap().cached());
    }
    let start = Instant::now();
    for i in 0..OPS {
        let t = &tokens[i as usize % tokens.len()];
        std::hint::black_box(v.verify(t).unwrap());
    }
    start.elapsed().as_nanos() as f64 / OPS as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let Some(redis) = RedisServer::start() else {
        println!("skipped: redis-server is not installed");
        return;
    };
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let plain = Verifier::with_clock(
        Config::from_value(config(&issuer, None)).unwrap(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let fleet = Verifier::with_clock(
        Config::from_value(config(&issuer, Some(&redis))).unwrap(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    // 100,000 revocations made by "another process" and streamed in.
    let revoker = Revoker::with_clock(
        Config::from_value(config(&issuer, Some(&redis))).unwrap(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let started = Instant::now();
    for i in 0..HELD {
        revoker
            .revoke_jti(&issuer.url(), &format!("revoked-{i}"), None)
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while fleet.metrics().revocation_entries < HELD as u64 {
        assert!(Instant::now() < deadline, "the feed did not deliver {HELD} revocations");
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "{HELD} revocations published and applied by the subscriber in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mint = |i: usize| {
        let mut c = issuer.default_claims(&format!("svc-{i}"), clock.now_secs());
        c["aud"] = json!("api");
        c["jti"] = json!(format!("live-{i}"));
        issuer.mint(&issuer.first_kid(), &c)
    };
    let hot = vec![mint(0)];
    let crowd: Vec<String> = (0..256).map(mint).collect();
    for (name, tokens) in [("hot token", &hot), ("256 distinct tokens", &crowd)] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            // Interleaved, alternating which goes first.
            let (x, y) = if round % 2 == 0 {
                (hits(&plain, tokens), hits(&fleet, tokens))
            } else {
                let y = hits(&fleet, tokens);
                (hits(&plain, tokens), y)
            };
            a.push(x);
            b.push(y);
        }
        let (a, b) = (median(a), median(b));
        println!(
            "{name}: no feed {a:.1} ns/hit, feed connected with {HELD} revocations held {b:.1} ns/hit ({:+.1}%)",
            (b / a - 1.0) * 100.0
        );
        println!(
            "{}",
            json!({"bench": "revocation_hit", "pattern": name, "no_feed_ns": a, "feed_100k_ns": b})
        );
    }
}
