//! Verifying assertions behind the edge: inherited trust.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::assertion::Request;
use crate::clock::Clock;
use crate::config::{IssuerConfig, IssuerKind, ASSERTION_LEEWAY_SECS};
use crate::error::{Error, ErrorKind, Result};
use crate::http::path::normalise;
use crate::token::Alg;
use crate::verifier::{Verifier, VerifyOptions};

pub use crate::revocation::replay::{RedisReplay, ReplayGuard, ReplayStore};

/// Larger inputs are refused before anything is decoded.
const MAX_ASSERTION_BYTES: usize = 16 * 1024;

/// The issuer entry for an edge, for assembling inherited trust by hand
/// with [`Inheritance`]: `name` is the edge's name (its assertions'
/// `iss`), `audience` the one this service accepts, and the key source is
/// set by the caller (`jwks_uri` of the edge's admin listener, or inline
/// `jwks`). Only EdDSA, only `typ` [`ASSERTION_TYP`](crate::assertion::ASSERTION_TYP), short leeway,
/// lifetime capped at 5 minutes, the binding claims required.
///
/// Its `kind` is `token`: an ordinary `verify` would accept its
/// assertions. Prefer configuring the edge with `kind = "assertion"`
/// (see [`IssuerConfig::kind`]) and [`Verifier::verify_assertion`], which
/// apply the same policy and keep assertions out of `verify`.
pub fn edge_issuer(name: &str, audience: &str) -> IssuerConfig {
    let mut cfg = IssuerConfig::new(name, "");
    cfg.jwks_uri = None;
    cfg.audiences = vec![audience.to_string()];
    cfg.kind = IssuerKind::Assertion;
    let cfg = cfg.assertion_policy();
    debug_assert_eq!(cfg.algorithms, [Alg::EdDSA]);
    debug_assert_eq!(cfg.leeway_secs, ASSERTION_LEEWAY_SECS);
    cfg
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
    /// How long the edge had trusted the key that verified the original
    /// token when it verified it (seconds since the edge first saw that
    /// key in its issuer's set; restarts at 0 for a new key, and after the
    /// edge restarts). `None` when the assertion does not say (a local
    /// HMAC key verified the original, or an older edge).
    pub key_age: Option<u64>,
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
        let edge = Edge {
            name: edge,
            fresh_within,
        };
        check(
            verifier,
            &edge,
            &*self.replay,
            self.clock.now_ms(),
            assertion,
            request,
            fresh,
        )
    }
}

impl Verifier {
    /// Verify a verification assertion minted by one of the edges this
    /// verifier is configured with (`issuers` of kind `assertion`) for
    /// `request` (its method and path as this service received them):
    /// inherited trust. Checked in order: size and form, the edge (by the
    /// unverified `iss`: an edge configured here, else `unknown_issuer`),
    /// signature, `typ`, `aud`, lifetime (never from a cache), the binding
    /// to the method and normalised path (`invalid_audience`), `fresh`
    /// when demanded (`token_lifetime_exceeded` unless the edge's
    /// `fresh_within_secs` covers its `verified_at`), and last the `jti`
    /// replay window (`revoked` for a replay; a refused assertion does not
    /// burn its `jti`): fleet-wide through `revocation.redis` when set,
    /// failing closed (`revocations_stale`) when Redis cannot answer.
    ///
    /// An ordinary token is never accepted here (its issuer is not an edge),
    /// nor an assertion by [`Verifier::verify`] (an edge is not an issuer
    /// of ordinary tokens).
    pub fn verify_assertion(&self, assertion: &str, request: &Request<'_>, fresh: bool) -> Result<Inherited> {
        let edges = self.edges().ok_or_else(|| {
            Error::new(
                ErrorKind::UnknownIssuer,
                "no issuer of kind \"assertion\" is configured: this service inherits trust from no edge",
            )
        })?;
        let name = unverified_iss(assertion)?;
        let fresh_within = *edges
            .fresh_within
            .get(&name)
            .ok_or_else(|| Error::new(ErrorKind::UnknownIssuer, "not an edge this service inherits trust from"))?;
        let edge = Edge { name, fresh_within };
        let now_ms = self.clock().now_ms();
        let result = check(
            &edges.verifier,
            &edge,
            &*edges.replay,
            now_ms,
            assertion,
            request,
            fresh,
        );
        if let Err(e) = &result {
            log::debug!(
                "rejected assertion {} from edge {:?}: {e}",
                crate::token::fingerprint(assertion.as_bytes()),
                crate::token::truncate(&edge.name)
            );
        }
        result
    }
}

/// The edge an assertion names, as configured.
struct Edge {
    name: String,
    fresh_within: Option<u64>,
}

/// The checks after the edge is chosen: signature, `typ`, `aud`, lifetime
/// by `verifier` (which holds the edge under the assertion policy), then
/// the binding, `fresh`, and the replay window.
fn check(
    verifier: &Verifier,
    edge: &Edge,
    replay: &dyn ReplayStore,
    now_ms: u64,
    assertion: &str,
    request: &Request<'_>,
    fresh: bool,
) -> Result<Inherited> {
    let opts = VerifyOptions {
        issuer: Some(&edge.name),
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
    if fresh {
        // `verified_at` is in whole seconds (rounded down), so "at most N
        // seconds ago" is counted in whole seconds too: compared with the
        // milliseconds, an edge whose clock was half a second into its
        // second would lose half a second of its window.
        let ok = edge
            .fresh_within
            .is_some_and(|w| verified_at.saturating_add(w) >= now_ms / 1000);
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
    if !replay.first_use(&edge.name, jti, until_ms, now_ms)? {
        return Err(Error::new(ErrorKind::Revoked, "assertion replayed (jti already used)"));
    }
    let original = claims
        .get("orig")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    Ok(Inherited {
        edge: edge.name.clone(),
        verified_at,
        cached: claims.get("cached").and_then(Value::as_bool).unwrap_or(false),
        fresh: claims.get("fresh").and_then(Value::as_bool).unwrap_or(false),
        key_age: claims.get("key_age").and_then(Value::as_u64),
        original,
        assertion: claims.clone(),
    })
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_config_requires_the_typ_the_minter_writes() {
        assert_eq!(crate::config::ASSERTION_TYP, crate::assertion::ASSERTION_TYP);
    }
}
