//! What a successful verification returns.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::token::Alg;

/// The verified facts about a token. Shared between cache hits of the same
/// token, so cloning a [`Verified`] is cheap.
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    /// The token's claims (the payload), verified.
    pub claims: Map<String, Value>,
    /// The configured issuer the token was verified for.
    pub issuer: Arc<str>,
    /// The `kid` of the key that verified it, if the token had one.
    pub kid: Option<String>,
    /// The signature algorithm.
    pub alg: Alg,
    /// When the signature was checked, ms since the epoch. For a cache hit,
    /// this is the time of the original verification.
    pub verified_at_ms: u64,
    /// The token's `exp`, seconds since the epoch.
    pub expires_at: u64,
}

/// A successful verification: the verified token and where it came from.
#[derive(Clone, Debug)]
pub struct Verified {
    token: Arc<VerifiedToken>,
    cached: bool,
}

impl Verified {
    pub(crate) fn new(token: Arc<VerifiedToken>, cached: bool) -> Verified {
        Verified { token, cached }
    }

    /// The verified claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.token.claims
    }

    /// The issuer the token was verified for.
    pub fn issuer(&self) -> &str {
        &self.token.issuer
    }

    /// The `kid` of the verifying key, if any.
    pub fn kid(&self) -> Option<&str> {
        self.token.kid.as_deref()
    }

    /// The signature algorithm.
    pub fn alg(&self) -> Alg {
        self.token.alg
    }

    /// True if this result was served from the cache (trust reused), false if
    /// the signature was checked during this call (trust fresh).
    pub fn cached(&self) -> bool {
        self.cached
    }

    /// When the signature was checked, ms since the epoch.
    pub fn verified_at_ms(&self) -> u64 {
        self.token.verified_at_ms
    }

    /// The token's `exp`, seconds since the epoch.
    pub fn expires_at(&self) -> u64 {
        self.token.expires_at
    }

    /// The shared verified token.
    pub fn token(&self) -> &Arc<VerifiedToken> {
        &self.token
    }

    /// The claims as a JSON string.
    pub fn claims_json(&self) -> String {
        serde_json::to_string(&self.token.claims).expect("a JSON map serializes")
    }
}
