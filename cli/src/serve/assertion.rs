//! The signed verification assertion `serve` attaches to its allow answer
//! (issue 28; contract in docs/trust-handoff.md): per route, a compact JWS
//! for the upstream, bound to the upstream's audience and the original
//! request's method and normalised path.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use jwtwarden::assertion::{Minter, MinterConfig, SigningKeyConfig, DEFAULT_LIFETIME_SECS};
use jwtwarden::SystemClock;
use serde::Deserialize;

/// The header the assertion travels in unless `header` names another.
pub const DEFAULT_HEADER: &str = "X-Jwtwarden-Assertion";

/// `[assertion]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionFile {
    name: String,
    header: Option<String>,
    lifetime_secs: Option<u64>,
    current: KeyFile,
    previous: Option<KeyFile>,
    /// Route prefix → the upstream's audience. Routes not listed carry no
    /// assertion.
    audiences: BTreeMap<String, String>,
    /// Opt-in HS256 per audience (`[assertion.hs256.<audience>]`, as the
    /// engine configuration's `assertion.hs256`): that audience's
    /// assertions are signed with its own secret instead of Ed25519.
    #[serde(default)]
    hs256: BTreeMap<String, jwtwarden::config::AudienceSecretsConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    kid: String,
    pem_file: PathBuf,
}

impl KeyFile {
    fn into_config(self) -> SigningKeyConfig {
        SigningKeyConfig {
            kid: self.kid,
            pem: None,
            pem_file: Some(self.pem_file),
        }
    }
}

/// The validated `[assertion]` section.
pub struct AssertionConfig {
    /// Signs; its public keys are served on the admin listener.
    pub minter: Minter,
    /// The response header carrying the assertion.
    pub header: hyper::header::HeaderName,
    /// Route prefix → audience.
    pub audiences: HashMap<String, String>,
}

impl std::fmt::Debug for AssertionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionConfig")
            .field("minter", &self.minter)
            .field("header", &self.header)
            .field("audiences", &self.audiences)
            .finish()
    }
}

impl AssertionConfig {
    /// Validate: keys load, the header is a header name, every audience
    /// names a configured route (`route_prefixes`).
    pub fn from_file(f: AssertionFile, route_prefixes: &[&str]) -> Result<Arc<AssertionConfig>, String> {
        let header = f.header.as_deref().unwrap_or(DEFAULT_HEADER);
        let header =
            hyper::header::HeaderName::from_bytes(header.as_bytes()).map_err(|e| format!("assertion.header: {e}"))?;
        if f.audiences.is_empty() {
            return Err("assertion.audiences: name at least one route prefix".into());
        }
        for (prefix, aud) in &f.audiences {
            if !route_prefixes.contains(&prefix.as_str()) {
                return Err(format!("assertion.audiences: {prefix:?} is not a route prefix"));
            }
            if aud.is_empty() {
                return Err(format!("assertion.audiences: {prefix:?}: empty audience"));
            }
        }
        for aud in f.hs256.keys() {
            if !f.audiences.values().any(|a| a == aud) {
                return Err(format!(
                    "assertion.hs256: {aud:?} is not an audience of assertion.audiences"
                ));
            }
        }
        let cfg = MinterConfig {
            name: f.name,
            current: f.current.into_config(),
            previous: f.previous.map(KeyFile::into_config),
            lifetime_secs: f.lifetime_secs.unwrap_or(DEFAULT_LIFETIME_SECS),
            hs256: f.hs256,
        };
        let minter = Minter::new(&cfg, Arc::new(SystemClock)).map_err(|e| format!("assertion: {}", e.message()))?;
        Ok(Arc::new(AssertionConfig {
            minter,
            header,
            audiences: f.audiences.into_iter().collect(),
        }))
    }
}
