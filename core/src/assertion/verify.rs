//! Verifying assertions behind the edge: inherited trust.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Map, Value};

use crate::assertion::{Request, ASSERTION_TYP};
use crate::clock::Clock;
use crate::config::IssuerConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::http::path::normalise;
use crate::token::Alg;
use crate::verifier::{Verifier, VerifyOptions};

/// Claims every assertion must carry (besides `exp`).
const REQUIRED: &[&str] = &["iat", "jti", "htm", "htu", "verified_at", "orig"];

/// Leeway for an assertion's `exp`/`iat`: assertions live seconds, so the
/// ordinary 30 s would double their life.
const ASSERTION_LEEWAY_SECS: u64 = 5;

/// Larger inputs are refused before anything is decoded.
const MAX_ASSERTION_BYTES: usize = 16 * 1024;

/// The issuer entry for an edge, to add to [`crate::Config::issuers`]:
/// `name` is the edge's name (its assertions' `iss`), `audience` the one
/// this service accepts, and the key source is set by the caller
/// (`jwks_uri` of the edge's admin listener, or inline `jwks`). Only
/// EdDSA, only `typ` [`ASSERTION_TYP`], short leeway, lifetime capped at
/// 5 minutes, the binding claims required.
pub fn edge_issuer(name: &str, audience: &str) -> IssuerConfig {
    let mut cfg = IssuerConfig::new(name, "");
    cfg.jwks_uri = None;
    cfg.audiences = vec![audience.to_string()];
    cfg.algorithms = vec![Alg::EdDSA];
    cfg.typ = Some(ASSERTION_TYP.to_string());
    cfg.required_claims = REQUIRED.iter().map(|s| s.to_string()).collect();
    cfg.leeway_secs = ASSERTION_LEEWAY_SECS;
    cfg.max_token_lifetime_secs = Some(300);
    cfg
}

/// Where `jti`s already seen are remembered. The in-process [`ReplayGuard`]
/// is the default; a fleet-wide store (the Redis feed) implements the
/// same trait.
pub trait ReplayStore: Send + Sync {
    /// Record `(edge, jti)` until `until_ms`; `Ok(false)` if it was already
    /// recorded (a replay). An error refuses the assertion (fail closed).
    fn first_use(&self, edge: &str, jti: &str, until_ms: u64, now_ms: u64) -> Result<bool>;
}

/// The per-process replay window: `jti`s kept until their assertion's
/// `exp` plus leeway, bounded in entries (full: refuse, never forget).
pub struct ReplayGuard {
    seen: Mutex<HashMap<(String, String), u64>>,
    max_entries: usize,
}

impl ReplayGuard {
    /// A guard holding at most `max_entries` live `jti`s.
    pub fn new(max_entries: usize) -> ReplayGuard {
        ReplayGuard {
            seen: Mutex::new(HashMap::new()),
            max_entries,
        }
    }
}

impl ReplayStore for ReplayGuard {
    fn first_use(&self, edge: &str, jti: &str, until_ms: u64, now_ms: u64) -> Result<bool> {
        let mut seen = self.seen.lock();
        let key = (edge.to_string(), jti.to_string());
        if seen.get(&key).is_some_and(|&until| until > now_ms) {
            return Ok(false);
        }
        if seen.len() >= self.max_entries {
            seen.retain(|_, until| *until > now_ms);
            if seen.len() >= self.max_entries {
                return Err(Error::new(
                    ErrorKind::RevocationListFull,
                    "assertion replay window full: refusing rather than forgetting a jti",
                ));
            }
        }
        seen.insert(key, until_ms);
        Ok(true)
    }
}

/// A verified assertion: trust inherited from an edge.
#[derive(Clone, Debug)]
pub struct Inherited {
    /// The edge that minted it (its `iss`).
    pub edge: String,
    /// When the edge verified the original token (seconds).
    pub verified_at: u64,
    /// Whether the edge's result came from its cache.
    pub cached: bool,
    /// Whether the edge's route demanded a fresh verification.
    pub fresh: bool,
    /// The original token's claims as the edge saw them (`iss`, `sub`,
    /// `aud`, `scope`, `jti` or `tjh`).
    pub original: Map<String, Value>,
    /// All claims of the assertion.
    pub assertion: Map<String, Value>,
}

impl Inherited {
    /// Always true: this trust was inherited, not established here.
    pub fn inherited(&self) -> bool {
        true
    }
}

/// Checks assertions from the configured edges.
pub struct Inheritance {
    /// Edge name → `fresh_within_secs` (how recent `verified_at` must be
    /// for a `fresh` call to accept the assertion; `None`: never).
    edges: HashMap<String, Option<u64>>,
    replay: Arc<dyn ReplayStore>,
    clock: Arc<dyn Clock>,
}

impl Inheritance {
    /// Accept assertions from `edges` (name, `fresh_within_secs`), each of
    /// which must also be an issuer of the verifier (see [`edge_issuer`]);
    /// replays are refused through `replay`.
    pub fn new(
        edges: impl IntoIterator<Item = (String, Option<u64>)>,
        replay: Arc<dyn ReplayStore>,
        clock: Arc<dyn Clock>,
    ) -> Inheritance {
        Inheritance {
            edges: edges.into_iter().collect(),
            replay,
            clock,
        }
    }

    /// Verify `assertion` for this `request`: signature, `typ`, `iss`,
    /// `aud`, lifetime (the verifier's path, never from its cache), then
    /// the binding (method and normalised path), `fresh` when demanded,
    /// and last the replay window (a refused assertion does not burn its
    /// `jti`).
    pub fn verify(
        &self,
        verifier: &Verifier,
        assertion: &str,
        request: &Request<'_>,
        fresh: bool,
    ) -> Result<Inherited> {
        let edge = unverified_iss(assertion)?;
        let fresh_within = *self
            .edges
            .get(&edge)
            .ok_or_else(|| Error::new(ErrorKind::UnknownIssuer, "not an edge this service inherits trust from"))?;
        let opts = VerifyOptions {
            issuer: Some(&edge),
            fresh: true,
        };
        let v = verifier.verify_with(assertion, &opts)?;
        let claims = v.claims();
        let htu = normalise(request.path)
            .map_err(|why| Error::new(ErrorKind::InvalidArgument, format!("request path: {why}")))?
            .path;
        if claims.get("htm").and_then(Value::as_str) != Some(request.method) {
            return Err(Error::new(
                ErrorKind::InvalidAudience,
                "assertion is bound to another method",
            ));
        }
        if claims.get("htu").and_then(Value::as_str) != Some(&*htu) {
            return Err(Error::new(
                ErrorKind::InvalidAudience,
                "assertion is bound to another path",
            ));
        }
        let verified_at = claims
            .get("verified_at")
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::new(ErrorKind::InvalidPayload, "verified_at must be a non-negative integer"))?;
        let now_ms = self.clock.now_ms();
        if fresh {
            let ok = fresh_within.is_some_and(|w| verified_at.saturating_add(w).saturating_mul(1000) >= now_ms);
            if !ok {
                return Err(Error::new(
                    ErrorKind::TokenLifetimeExceeded,
                    "fresh verification demanded: inherited trust is not fresh enough",
                ));
            }
        }
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::new(ErrorKind::InvalidPayload, "jti must be a string"))?;
        let until_ms = v.expires_at().saturating_mul(1000) + ASSERTION_LEEWAY_SECS * 1000;
        if !self.replay.first_use(&edge, jti, until_ms, now_ms)? {
            return Err(Error::new(ErrorKind::Revoked, "assertion replayed (jti already used)"));
        }
        let original = claims
            .get("orig")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        Ok(Inherited {
            edge,
            verified_at,
            cached: claims.get("cached").and_then(Value::as_bool).unwrap_or(false),
            fresh: claims.get("fresh").and_then(Value::as_bool).unwrap_or(false),
            original,
            assertion: claims.clone(),
        })
    }
}

/// The unverified `iss`, only to choose the edge (the signature is checked
/// with that edge's keys only).
fn unverified_iss(token: &str) -> Result<String> {
    if token.len() > MAX_ASSERTION_BYTES {
        return Err(Error::new(ErrorKind::TokenTooLarge, "assertion larger than 16 KiB"));
    }
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut parts = token.split('.');
    let payload = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(p), Some(_), None) => p,
        _ => return Err(Error::new(ErrorKind::MalformedToken, "not a compact JWS")),
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| Error::new(ErrorKind::InvalidBase64, "payload is not base64url"))?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|_| Error::new(ErrorKind::InvalidPayload, "payload is not JSON"))?;
    value
        .get("iss")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::new(ErrorKind::InvalidIssuer, "assertion has no iss"))
}
