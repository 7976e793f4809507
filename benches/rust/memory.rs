//! Memory held per cached verification result, measured with a counting
//! allocator: verify N distinct tokens into an empty cache and divide the
//! growth in live heap bytes by N.
//!
//! Run: `cargo bench -p jwtwarden-benches --bench memory`

use jwtwarden_benches::counting::Counting;
use jwtwarden_benches::Fixture;
use jwtwarden_testissuer::Alg;
use serde_json::json;

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    const N: usize = 2000;
    let f = Fixture::new();
    for alg in [Alg::RS256, Alg::ES256] {
        let verifier = f.verifier(json!({"capacity": 100_000}));
        let tokens: Vec<String> = (0..N).map(|i| f.token(alg, &format!("svc-{i}"))).collect();
        let token_len = tokens[0].len();
        verifier.verify(&tokens[0]).unwrap(); // warm lazily allocated state
        let before = Counting::live();
        for t in &tokens[1..] {
            verifier.verify(t).unwrap();
        }
        let grown = Counting::live() - before;
        let m = verifier.metrics().cache;
        println!(
            "{alg:?}: {} bytes per cached entry ({} of them the {token_len}-byte token itself), {N} entries; \
             cache.max_bytes accounting estimates {} bytes per entry",
            grown / (N as isize - 1),
            token_len,
            m.bytes / m.entries
        );
    }

    // Large tokens: the entry count alone does not bound memory, the byte
    // bound does. Same tokens, default max_bytes (256 MiB, not reached by
    // these 2000) and then 8 MiB.
    let pad = "x".repeat(11 * 1024);
    let tokens: Vec<String> = (0..N)
        .map(|i| {
            let mut c = f.claims(&format!("svc-{i}"));
            c["pad"] = json!(pad);
            f.issuer.mint(f.kid(Alg::ES256), &c)
        })
        .collect();
    let token_len = tokens[0].len();
    for max_bytes in [None, Some(8usize << 20)] {
        let cache = match max_bytes {
            None => json!({"capacity": 100_000}),
            Some(b) => json!({"capacity": 100_000, "max_bytes": b}),
        };
        let verifier = f.verifier(cache);
        verifier.verify(&tokens[0]).unwrap();
        let before = Counting::live();
        for t in &tokens[1..] {
            verifier.verify(t).unwrap();
        }
        let grown = Counting::live() - before;
        let m = verifier.metrics().cache;
        println!(
            "{token_len}-byte tokens, max_bytes {}: heap grew {} KiB for {N} tokens; {} entries held, \
             cache.bytes {} KiB of max_bytes {} KiB, {} evictions",
            max_bytes.map_or("default".to_string(), |b| b.to_string()),
            grown / 1024,
            m.entries,
            m.bytes / 1024,
            m.max_bytes / 1024,
            m.evictions
        );
    }
}
