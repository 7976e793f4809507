//! The verification assertion as part of the decision (issue 28,
//! docs/trust-handoff.md): a policy's `assertion` section says which routes
//! carry one, for which upstream audience and in which request header; the
//! decision of an allowed request then holds an assertion bound to that
//! audience and to the request's method and normalised path, so every front
//! end (serve, nginx, Apache) hands on the same thing.
//!
//! The signing itself is behind [`Mint`] (implemented by
//! `assertion::Minter`, a layer beside this one that uses the path rules
//! here), so the decision does not reach into the assertion module.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::claim_headers::HeaderName;
use super::route::Route;
use crate::error::{Error, ErrorKind};
use crate::token::fingerprint;
use crate::verified::VerifiedToken;

/// The header an assertion travels in unless the policy names another.
pub const DEFAULT_ASSERTION_HEADER: &str = "X-Jwtwarden-Assertion";

/// Signs assertions for the decision: `assertion::Minter` (from the engine
/// configuration's `assertion` section) implements it.
pub trait Mint: Send + Sync {
    /// A compact JWS for `verified` (the result of verifying `token`;
    /// `cached` when it came from the cache) bound to `audience`, `method`
    /// and `path` (the raw request target: the minter normalises it);
    /// `fresh` says whether the route demanded a fresh verification. One
    /// per call: its own `jti` and signature.
    #[allow(clippy::too_many_arguments)]
    fn mint_assertion(
        &self,
        verified: &VerifiedToken,
        cached: bool,
        token: &[u8],
        audience: &str,
        method: &str,
        path: &str,
        fresh: bool,
    ) -> Result<String, Error>;
}

/// A policy's `assertion` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionPolicyConfig {
    /// The request header the assertion is set in (default
    /// `X-Jwtwarden-Assertion`). The host must remove every client copy of
    /// it before the upstream, whatever the decision.
    pub header: Option<String>,
    /// The upstream's audience for every protected route not listed in
    /// `audiences`; absent: only the listed routes carry one.
    pub audience: Option<String>,
    /// Route prefix (as in `routes`) to the upstream's audience.
    #[serde(default)]
    pub audiences: BTreeMap<String, String>,
}

/// A validated `assertion` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssertionRule {
    header: HeaderName,
    audience: Option<String>,
    by_prefix: Vec<(String, String)>,
}

impl AssertionRule {
    /// Validate against the policy's route prefixes, token header and claim
    /// headers; errors start with the field name (after `assertion.`).
    pub(crate) fn new(
        c: AssertionPolicyConfig,
        prefixes: &[&str],
        token_header: &str,
        claim_headers: &[(String, HeaderName)],
    ) -> Result<AssertionRule, String> {
        let name = c.header.as_deref().unwrap_or(DEFAULT_ASSERTION_HEADER);
        let header = HeaderName::parse(name).map_err(|e| format!("header: {e}"))?;
        if header.as_str() == token_header || header.as_str() == "cookie" {
            return Err(format!("header: {name} is where the token is read"));
        }
        if claim_headers.iter().any(|(_, h)| *h == header) {
            return Err(format!("header: {name} is also a claim header"));
        }
        if c.audience.is_none() && c.audiences.is_empty() {
            return Err("audience: name the upstream's audience (audience or audiences)".into());
        }
        let bad = |a: &str| a.is_empty() || a.chars().any(char::is_control);
        if c.audience.as_deref().is_some_and(bad) {
            return Err("audience: empty or with a control character".into());
        }
        for (prefix, aud) in &c.audiences {
            if !prefixes.contains(&prefix.as_str()) {
                return Err(format!("audiences: {prefix:?} is not a route prefix"));
            }
            if bad(aud) {
                return Err(format!("audiences.{prefix}: empty or with a control character"));
            }
        }
        Ok(AssertionRule {
            header,
            audience: c.audience,
            by_prefix: c.audiences.into_iter().collect(),
        })
    }

    /// The request header the assertion goes in (lower case).
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The audience of a route's assertion; `None`: the route carries none.
    pub fn audience(&self, route: &Route) -> Option<&str> {
        self.by_prefix
            .iter()
            .find(|(p, _)| *p == route.prefix)
            .map(|(_, a)| a.as_str())
            .or(self.audience.as_deref())
    }
}

/// A minted assertion in a decision: the header and the compact JWS. Its
/// `Debug` shows a fingerprint only (it is a credential for the upstream).
#[derive(Clone, PartialEq, Eq)]
pub struct Assertion {
    /// The header name (lower case).
    pub header: HeaderName,
    /// The compact JWS.
    pub value: Arc<str>,
}

impl std::fmt::Debug for Assertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assertion")
            .field("header", &self.header.as_str())
            .field("value", &fingerprint(self.value.as_bytes()))
            .finish()
    }
}

/// The error of a policy that asks for assertions without a minter.
pub(crate) fn no_minter() -> Error {
    Error::new(
        ErrorKind::Internal,
        "the HTTP policy mints assertions but the engine has no assertion keys (engine config `assertion`)",
    )
}
