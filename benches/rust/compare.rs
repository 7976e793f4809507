//! The Rust part of the cross-language comparison run by `benches/run`:
//! jwtwarden cache hit and miss against `jsonwebtoken::decode` and
//! `jwt-simple` on the shared token set, hit-path throughput with 1 and 2
//! threads, and an unknown-`kid` storm. Writes JSON lines.
//!
//! Run (after `benches/run` has started an issuer and written the fixture):
//! `cargo bench -p jwtwarden-benches --bench compare -- FIXTURE.json OUT.jsonl`

use std::collections::HashSet;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use jwt_simple::prelude::{
    ECDSAP256PublicKeyLike, ES256PublicKey, Ed25519PublicKey, EdDSAPublicKeyLike, PS256PublicKey, RS256PublicKey,
    RSAPublicKeyLike, VerificationOptions,
};
use jwtwarden::{Config, Verifier};
use jwtwarden_benches::shared::{budget, measure, storm, storm_size, storm_token, throughput, Results, TokenSet};
use serde_json::{json, Map, Value};

type Claims = Map<String, Value>;

/// Interleaved rounds per throughput configuration (the median is reported).
const ROUNDS: usize = 3;

/// A `jwt-simple` public key of any of the benchmarked algorithms.
enum SimpleKey {
    Rs(RS256PublicKey),
    Ps(PS256PublicKey),
    Es(ES256PublicKey),
    Ed(Ed25519PublicKey),
}

impl SimpleKey {
    fn from_pem(alg: &str, pem: &str) -> Result<SimpleKey, String> {
        let e = |e: jwt_simple::Error| e.to_string();
        Ok(match alg {
            "RS256" => SimpleKey::Rs(RS256PublicKey::from_pem(pem).map_err(e)?),
            "PS256" => SimpleKey::Ps(PS256PublicKey::from_pem(pem).map_err(e)?),
            "ES256" => SimpleKey::Es(ES256PublicKey::from_pem(pem).map_err(e)?),
            "EdDSA" => SimpleKey::Ed(Ed25519PublicKey::from_pem(pem).map_err(e)?),
            other => return Err(format!("no jwt-simple key type for {other}")),
        })
    }

    fn verify(&self, token: &str, options: &VerificationOptions) -> Result<Claims, jwt_simple::Error> {
        let o = Some(options.clone());
        let claims = match self {
            SimpleKey::Rs(k) => k.verify_token::<Claims>(token, o),
            SimpleKey::Ps(k) => k.verify_token::<Claims>(token, o),
            SimpleKey::Es(k) => k.verify_token::<Claims>(token, o),
            SimpleKey::Ed(k) => k.verify_token::<Claims>(token, o),
        }?;
        Ok(claims.custom)
    }
}

fn jsonwebtoken_key(set: &TokenSet, alg: &str) -> (jsonwebtoken::DecodingKey, jsonwebtoken::Validation) {
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(set.keys[alg].jwk.clone()).expect("jwk");
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("decoding key");
    let mut validation = jsonwebtoken::Validation::new(alg.parse().expect("jsonwebtoken alg"));
    validation.set_audience(&[&set.audience]);
    validation.set_issuer(&[&set.issuer]);
    (key, validation)
}

fn verifier(set: &TokenSet, cache: Value) -> Verifier {
    Verifier::new(Config::from_value(set.config(cache)).expect("bench config")).expect("bench verifier")
}

fn main() {
    // `cargo bench` passes `--bench`; the rest are ours.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let [fixture, out] = args.as_slice() else {
        eprintln!("usage: compare FIXTURE.json OUT.jsonl");
        std::process::exit(2);
    };
    let set = TokenSet::load(&PathBuf::from(fixture));
    let mut results = Results::open(&PathBuf::from(out), "rust");
    let budget = budget();

    let hits = verifier(&set, json!({}));
    // Capacity 1 and a rotating pool of distinct tokens: every call misses,
    // verifies, inserts and evicts: the whole miss path.
    let misses = verifier(&set, json!({"capacity": 1, "shards": 1}));
    let mut options = VerificationOptions {
        allowed_issuers: Some(HashSet::from([set.issuer.clone()])),
        allowed_audiences: Some(HashSet::from([set.audience.clone()])),
        ..VerificationOptions::default()
    };
    options.max_token_length = Some(16 * 1024);

    for alg in &set.algs {
        let (key, validation) = jsonwebtoken_key(&set, alg);
        let pem = std::fs::read_to_string(&set.keys[alg].public_pem_file).expect("public PEM");
        let simple = SimpleKey::from_pem(alg, &pem);
        for size in &set.sizes {
            let case = set.case(alg, size);
            let token = case.token.as_str();

            hits.verify(token).expect("jwtwarden verifies the token");
            assert!(hits.verify(token).unwrap().cached(), "a repeated token is a cache hit");
            assert!(!misses.verify(&case.pool[0]).unwrap().cached() && !misses.verify(&case.pool[1]).unwrap().cached());
            results.timing(
                "jwtwarden",
                "hit",
                case,
                measure(budget, || {
                    black_box(hits.verify(black_box(token)).unwrap());
                }),
            );
            let mut i = 0usize;
            results.timing(
                "jwtwarden",
                "miss",
                case,
                measure(budget, || {
                    i = (i + 1) % case.pool.len();
                    black_box(misses.verify(black_box(&case.pool[i])).unwrap());
                }),
            );

            match jsonwebtoken::decode::<Value>(token, &key, &validation) {
                Ok(_) => results.timing(
                    "jsonwebtoken",
                    "verify",
                    case,
                    measure(budget, || {
                        black_box(jsonwebtoken::decode::<Value>(black_box(token), &key, &validation).unwrap());
                    }),
                ),
                Err(e) => results.skipped("jsonwebtoken", "verify", Some(alg), &format!("rejects the token: {e}")),
            }

            match simple.as_ref().map(|k| k.verify(token, &options).map(|_| k)) {
                Ok(Ok(k)) => results.timing(
                    "jwt-simple",
                    "verify",
                    case,
                    measure(budget, || {
                        black_box(k.verify(black_box(token), &options).unwrap());
                    }),
                ),
                Ok(Err(e)) => results.skipped("jwt-simple", "verify", Some(alg), &format!("rejects the token: {e}")),
                Err(e) => results.skipped("jwt-simple", "verify", Some(alg), e),
            }
        }
    }

    // Hit-path throughput with 1 and 2 threads sharing one verifier: every
    // thread on the same token, or each cycling through its own half of the
    // crowd of distinct cached tokens (many users). Each configuration runs
    // in ROUNDS interleaved rounds; the median round is reported.
    let case = set.case("RS256", "600B");
    let per_thread = set.crowd.len() / 2;
    for t in &set.crowd {
        hits.verify(t).expect("crowd token verifies");
    }
    let crowd_label = format!("{per_thread} per thread");
    let mut configs: Vec<(&str, bool, usize, Vec<f64>)> = Vec::new();
    for (tokens, crowd) in [("same", false), (crowd_label.as_str(), true)] {
        if !crowd || per_thread > 0 {
            configs.extend([1usize, 2].map(|threads| (tokens, crowd, threads, Vec::new())));
        }
    }
    for _ in 0..ROUNDS {
        for (_, crowd, threads, rounds) in &mut configs {
            let crowd = *crowd;
            rounds.push(throughput(*threads, budget / ROUNDS as u32, |index, call| {
                let token = if crowd {
                    &set.crowd[index * per_thread + (call as usize % per_thread)]
                } else {
                    &case.token
                };
                black_box(hits.verify(black_box(token)).unwrap());
            }));
        }
    }
    for (tokens, _, threads, mut rounds) in configs {
        rounds.sort_by(f64::total_cmp);
        results.record(json!({
            "library": "jwtwarden", "operation": "hit", "alg": case.alg, "size": case.size,
            "token_bytes": case.bytes, "threads": threads, "tokens": tokens,
            "ops_per_s": rounds[rounds.len() / 2], "rounds": rounds,
        }));
    }

    // Unknown-kid storm: a fresh verifier (default cooldown), legitimate
    // cached tokens timed on this thread while another sends storm tokens.
    let cooldown = Config::from_value(set.config(json!({}))).expect("config").issuers[0]
        .refresh
        .unknown_kid_cooldown_secs;
    let v = verifier(&set, json!({}));
    v.verify(&case.token).expect("legit token");
    let baseline = measure(Duration::from_millis(300), || {
        black_box(v.verify(black_box(&case.token)).unwrap());
    });
    let tokens: Vec<String> = (0..storm_size())
        .map(|i| storm_token(&case.token, &case.alg, "rs", i))
        .collect();
    let stats = storm(
        &set.issuer,
        &tokens,
        Duration::from_secs(20),
        |t| v.verify(t).is_ok(),
        || {
            black_box(v.verify(black_box(&case.token)).unwrap());
        },
    );
    let mut record = stats.record("jwtwarden", &case.alg, Some(cooldown), baseline.p99_ns);
    record["note"] = json!("default unknown_kid_cooldown_secs");
    results.record(record);
}
