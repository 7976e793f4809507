//! Shared fixture for the Rust benchmarks: a test issuer with one key per
//! algorithm, ~600-byte service tokens, and verifiers configured for hits
//! or for misses. [`shared`] is what the cross-language comparison
//! (`benches/run`, bench `compare`) uses.

pub mod counting;
pub mod shared;

use std::sync::Arc;

use jwtwarden::{Config, Verifier};
use jwtwarden_testissuer::{Alg, TestIssuer};
use serde_json::{json, Value};

/// The algorithms the benchmarks report.
pub const ALGS: [Alg; 3] = [Alg::RS256, Alg::ES256, Alg::EdDSA];

/// An issuer with one key per algorithm in [`ALGS`].
pub struct Fixture {
    /// The issuer serving the JWKS.
    pub issuer: TestIssuer,
    /// kid per algorithm, in [`ALGS`] order.
    pub kids: Vec<String>,
}

impl Fixture {
    /// Start the issuer.
    pub fn new() -> Fixture {
        let issuer = TestIssuer::start_empty();
        let kids = ALGS.iter().map(|a| issuer.add_key(*a)).collect();
        Fixture { issuer, kids }
    }

    /// kid for `alg`.
    pub fn kid(&self, alg: Alg) -> &str {
        &self.kids[ALGS.iter().position(|a| *a == alg).expect("alg in ALGS")]
    }

    /// Service-token claims; an RS256 token with them is about 600 bytes.
    pub fn claims(&self, sub: &str) -> Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut c = self.issuer.default_claims(sub, now);
        c["scope"] = json!("orders:read");
        c
    }

    /// A token signed with `alg`'s key.
    pub fn token(&self, alg: Alg, sub: &str) -> String {
        self.issuer.mint(self.kid(alg), &self.claims(sub))
    }

    /// A verifier for the issuer with the given cache settings.
    pub fn verifier(&self, cache: Value) -> Verifier {
        let config = Config::from_value(json!({
            "issuers": [{"issuer": self.issuer.url(), "jwks_uri": self.issuer.jwks_uri(), "audiences": ["api"]}],
            "http": {"allow_http": true},
            "cache": cache,
        }))
        .expect("bench config");
        Verifier::new(config).expect("bench verifier")
    }

    /// `jsonwebtoken`'s key and validation for the raw-decode baseline.
    pub fn raw(&self, alg: Alg) -> (jsonwebtoken::DecodingKey, jsonwebtoken::Validation) {
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(self.issuer.public_jwk(self.kid(alg))).expect("jwk");
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("decoding key");
        let mut validation = jsonwebtoken::Validation::new(alg.algorithm());
        validation.set_audience(&["api"]);
        validation.set_issuer(&[self.issuer.url()]);
        (key, validation)
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

/// Keep the verifier type nameable for benches that share one across threads.
pub type SharedVerifier = Arc<Verifier>;
