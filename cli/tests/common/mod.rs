//! Shared helpers: an in-process test issuer and config files pointing at it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

pub mod assertion;
pub mod contract;
pub mod serve;

use jwtwarden_testissuer::TestIssuer;
use serde_json::{json, Value};
use tempfile::TempDir;

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A test issuer and config files (JSON and TOML) that trust it.
pub struct Env {
    pub issuer: TestIssuer,
    pub dir: TempDir,
    pub json_config: PathBuf,
    pub toml_config: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        Env::with_issuer(TestIssuer::start())
    }

    pub fn with_issuer(issuer: TestIssuer) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let json_config = dir.path().join("jwtwarden.json");
        let config = json!({
            "issuers": [{"issuer": issuer.url(), "jwks_uri": issuer.jwks_uri(), "audiences": ["api"]}],
            "http": {"allow_http": true}
        });
        std::fs::write(&json_config, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        let toml_config = dir.path().join("jwtwarden.toml");
        std::fs::write(
            &toml_config,
            format!(
                "[[issuers]]\nissuer = \"{}\"\njwks_uri = \"{}\"\naudiences = [\"api\"]\n\n[http]\nallow_http = true\n",
                issuer.url(),
                issuer.jwks_uri()
            ),
        )
        .unwrap();
        Env {
            issuer,
            dir,
            json_config,
            toml_config,
        }
    }

    /// A token that verifies.
    pub fn good(&self, sub: &str) -> String {
        self.with_claims(|_| {}, sub)
    }

    /// A token from the first key with default claims changed by `edit`.
    pub fn with_claims(&self, edit: impl FnOnce(&mut Value), sub: &str) -> String {
        let mut claims = self.issuer.default_claims(sub, now());
        edit(&mut claims);
        self.issuer.mint(&self.issuer.first_kid(), &claims)
    }
}

/// A token signed by another issuer's key, claiming `issuer` and its `kid`
/// (sub `mallory`).
pub fn foreign_key_token(issuer: &TestIssuer, kid: &str) -> String {
    let stranger = TestIssuer::start();
    stranger.mint_with_header(
        &stranger.first_kid(),
        &json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
        &issuer.default_claims("mallory", now()),
    )
}

/// An unsigned token (`alg: none`) with `issuer`'s claims (sub `mallory`).
pub fn alg_none_token(issuer: &TestIssuer) -> String {
    issuer.mint_unsigned(
        &json!({"alg": "none", "typ": "JWT"}),
        &issuer.default_claims("mallory", now()),
    )
}

/// The JSON lines printed on stdout.
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}
