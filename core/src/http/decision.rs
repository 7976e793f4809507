//! The HTTP decision: a request (method, path, headers) and a policy (realm,
//! where the token is, route rules, claim headers) in; allow (with claim
//! headers) or refuse (status, headers, body) out.
//!
//! Two ways in. An asynchronous host that verifies off its event loop (serve)
//! calls the steps itself: [`HttpPolicy::route`], [`HttpPolicy::token`],
//! the engine, then [`HttpPolicy::judge`] and [`HttpPolicy::claim_headers`].
//! A host that wants one call (the C ABI) calls [`HttpPolicy::decide`],
//! which can also answer "would fetch" ([`DecideMode::CachedOnly`]) so an
//! event loop never waits on the network: it then runs the same call with
//! [`DecideMode::Verify`] on a thread of its own.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Deserialize;

use super::claim_headers::{ClaimHeaders, HeaderName};
use super::credentials::TokenSource;
use super::mint::{no_minter, Assertion, AssertionPolicyConfig, AssertionRule, Mint};
use super::path::normalise;
use super::refusal::{refusal, Reason, Refusal};
use super::route::{default_rules, has_audience, has_scopes, Route, RouteConfig, Routes};
use crate::error::{Category, Error, ErrorKind};
use crate::token::fingerprint;
use crate::verified::{Verified, VerifiedToken};
use crate::verifier::{Verifier, VerifyOptions};

/// `Retry-After` of a 503 unless configured (the contract's value).
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 5;

/// The policy as written (JSON for the C ABI; serve builds it from its own
/// file). Unknown fields are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPolicyConfig {
    /// `realm` of every challenge; absent: no `realm` parameter.
    pub realm: Option<String>,
    /// The header the token is read from (default `Authorization`, which
    /// means the `Bearer` scheme).
    pub token_header: Option<String>,
    /// A cookie the token is read from as well.
    pub token_cookie: Option<String>,
    /// `Retry-After` of a 503, 1 to 3600 (default 5).
    pub retry_after_secs: Option<u64>,
    /// Longest claim header value in bytes, 16 to 8192 (default 1024).
    pub max_claim_header_bytes: Option<usize>,
    /// Claim name to header name.
    #[serde(default)]
    pub claim_headers: BTreeMap<String, String>,
    /// Per-route rules, on the normalised path.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Methods that pass without a token on every path (default
    /// `["OPTIONS"]`, CORS preflight, as the middlewares do; `[]` for none).
    pub open_methods: Option<Vec<String>>,
    /// Mint a verification assertion for the upstream on allowed requests
    /// (`{"header", "audience", "audiences": {prefix: audience}}`, see
    /// [`AssertionPolicyConfig`]); needs a minter
    /// ([`HttpPolicy::decide_minting`]). Default: none.
    pub assertion: Option<AssertionPolicyConfig>,
}

/// A validated policy. A clone keeps the id (it is the same policy).
#[derive(Clone, Debug)]
pub struct HttpPolicy {
    id: u64,
    realm: Option<String>,
    source: TokenSource,
    retry_after_secs: u64,
    max_claim_header_bytes: usize,
    claim_headers: Vec<(String, HeaderName)>,
    routes: Routes,
    open_methods: Vec<String>,
    assertion: Option<AssertionRule>,
}

/// The rules of a method in `open_methods`.
static OPEN: Route = Route {
    prefix: String::new(),
    exact: false,
    methods: Vec::new(),
    open: true,
    issuer: None,
    fresh: false,
    scopes: Vec::new(),
    audiences: Vec::new(),
};

impl HttpPolicy {
    /// Validate a policy; errors start with the field name.
    pub fn new(c: HttpPolicyConfig) -> Result<HttpPolicy, String> {
        static IDS: AtomicU64 = AtomicU64::new(1);
        if let Some(realm) = &c.realm {
            if realm.chars().any(|ch| ch.is_control() || ch == '"' || ch == '\\') {
                return Err("realm: no quotes, backslashes or control characters".into());
            }
        }
        let token_header = c.token_header.unwrap_or_else(|| "authorization".to_string());
        HeaderName::parse(&token_header).map_err(|e| format!("token_header: {e}"))?;
        if let Some(ck) = &c.token_cookie {
            if ck.is_empty()
                || !ck
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
            {
                return Err(format!("token_cookie: {ck:?} is not a cookie name"));
            }
        }
        let mut claim_headers = Vec::new();
        for (claim, header) in c.claim_headers {
            let name = HeaderName::parse(&header).map_err(|e| format!("claim_headers.{claim}: {e}"))?;
            if claim_headers.iter().any(|(_, n): &(String, HeaderName)| n == &name) {
                return Err(format!("claim_headers.{claim}: header {header} is mapped twice"));
            }
            claim_headers.push((claim, name));
        }
        let routes = c
            .routes
            .into_iter()
            .enumerate()
            .map(|(i, r)| Route::new(r).map_err(|e| format!("routes[{i}].{e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let assertion = match c.assertion {
            None => None,
            Some(a) => {
                let prefixes: Vec<&str> = routes.iter().map(|r| r.prefix.as_str()).collect();
                let rule = AssertionRule::new(a, &prefixes, &token_header.to_ascii_lowercase(), &claim_headers)
                    .map_err(|e| format!("assertion.{e}"))?;
                Some(rule)
            }
        };
        let open_methods = c
            .open_methods
            .unwrap_or_else(|| vec!["OPTIONS".to_string()])
            .into_iter()
            .map(|m| {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                    Err(format!("open_methods: {m:?} is not a method"))
                } else {
                    Ok(m.to_ascii_uppercase())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HttpPolicy {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            realm: c.realm,
            source: TokenSource {
                header: token_header.to_ascii_lowercase(),
                cookie: c.token_cookie,
            },
            retry_after_secs: c.retry_after_secs.unwrap_or(DEFAULT_RETRY_AFTER_SECS).clamp(1, 3600),
            max_claim_header_bytes: c.max_claim_header_bytes.unwrap_or(1024).clamp(16, 8192),
            claim_headers,
            routes: Routes::new(routes),
            open_methods,
            assertion,
        })
    }

    /// Parse and validate a JSON policy; errors name the field.
    pub fn from_json(json: &str) -> Result<HttpPolicy, String> {
        let de = &mut serde_json::Deserializer::from_str(json);
        let c: HttpPolicyConfig =
            serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
        HttpPolicy::new(c)
    }

    /// This policy's identity (unique in the process).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The challenge realm, if any.
    pub fn realm(&self) -> Option<&str> {
        self.realm.as_deref()
    }

    /// Where the token is read.
    pub fn token_source(&self) -> &TokenSource {
        &self.source
    }

    /// `Retry-After` of a 503, in seconds.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_secs
    }

    /// The route rules.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// Claim name to header name, in order.
    pub fn claim_mapping(&self) -> &[(String, HeaderName)] {
        &self.claim_headers
    }

    /// Longest claim header value, in bytes.
    pub fn max_claim_header_bytes(&self) -> usize {
        self.max_claim_header_bytes
    }

    /// Whether [`route`](Self::route) reads the method and target at all:
    /// without routes and open methods they do not matter.
    pub fn reads_request_line(&self) -> bool {
        !self.routes.is_empty() || !self.open_methods.is_empty()
    }

    /// The policy's assertion rule, if it mints assertions.
    pub fn assertion(&self) -> Option<&AssertionRule> {
        self.assertion.as_ref()
    }

    /// The refusal for `reason` under this policy.
    pub fn refuse(&self, reason: &Reason<'_>) -> Refusal {
        refusal(reason, self.realm.as_deref(), self.retry_after_secs)
    }

    /// The rules for the original request: `target` is its raw request
    /// target (path and query, as sent), `method` its method (upper case).
    /// An open route or method needs no token. Refused: a path that cannot
    /// be normalised safely or reads as two protected routes (403), routes
    /// configured but no target (400).
    pub fn route(&self, target: Option<&str>, method: &str) -> Result<&Route, Refusal> {
        let route = if self.routes.is_empty() {
            default_rules()
        } else {
            let Some(target) = target else {
                return Err(self.refuse(&Reason::InvalidRequest("the proxy did not send the original URI")));
            };
            // A path that cannot be normalised safely, or reads as two
            // different protected routes, is refused whatever the token.
            let path = normalise(target).map_err(|why| self.refuse(&Reason::UnsafePath(why)))?;
            self.routes
                .select(&path, method)
                .map_err(|why| self.refuse(&Reason::UnsafePath(why)))?
        };
        if self.open_methods.iter().any(|m| m == method) {
            return Ok(&OPEN);
        }
        Ok(route)
    }

    /// The token of a request (see [`TokenSource::token`]): refused when
    /// there is none (401, bare challenge) or it is ambiguous (400).
    pub fn token<'h>(
        &self,
        header_values: impl IntoIterator<Item = &'h [u8]>,
        cookie_values: impl IntoIterator<Item = &'h [u8]>,
    ) -> Result<&'h str, Refusal> {
        match self.source.token(header_values, cookie_values) {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(self.refuse(&Reason::MissingToken)),
            Err(why) => Err(self.refuse(&Reason::InvalidRequest(why))),
        }
    }

    /// The route's own rules for a token the engine accepted: audience,
    /// then scopes.
    pub fn judge(&self, route: &Route, verified: &Verified) -> Result<(), Refusal> {
        if !has_audience(verified.claims(), &route.audiences) {
            let e = Error::new(
                ErrorKind::InvalidAudience,
                format!("this route accepts audiences {}", route.audiences.join(", ")),
            );
            return Err(self.refuse(&Reason::Engine(&e)));
        }
        if !has_scopes(verified.claims(), &route.scopes) {
            return Err(self.refuse(&Reason::InsufficientScope(&route.scopes)));
        }
        Ok(())
    }

    /// The claim headers of an accepted token: built once per verified
    /// result and policy, shared by the result's cache hits.
    pub fn claim_headers(&self, verified: &Verified) -> Arc<ClaimHeaders> {
        let build = |claims: &serde_json::Map<String, serde_json::Value>| {
            let mut h = ClaimHeaders::new(&self.claim_headers, claims, self.max_claim_header_bytes);
            h.policy = self.id;
            h
        };
        let memo = verified.token().memo(|t| build(t.claims()));
        if memo.policy == self.id {
            memo
        } else {
            // Another policy's headers (two policies over one verifier).
            Arc::new(build(verified.claims()))
        }
    }

    /// The whole decision in one call. With [`DecideMode::CachedOnly`] a
    /// token the cache cannot answer is not verified: the decision says
    /// [`would_fetch`](Decision::would_fetch) and nothing waited. Open
    /// routes and refusals made before the engine are answered either way.
    pub fn decide<H: HeaderFields + ?Sized>(
        &self,
        verifier: &Verifier,
        req: &HttpRequest<'_, H>,
        mode: DecideMode,
    ) -> Decision {
        self.decide_minting(verifier, None, req, mode)
    }

    /// [`decide`](Self::decide), and for an allowed request on a route the
    /// policy's `assertion` covers, an assertion minted by `minter` for the
    /// route's audience, bound to the request's method and normalised path
    /// ([`Decision::assertion`]). A policy with `assertion` and no minter,
    /// or a mint that fails, is a 500: the request never goes on without
    /// the assertion it was configured to carry.
    pub fn decide_minting<H: HeaderFields + ?Sized>(
        &self,
        verifier: &Verifier,
        minter: Option<&dyn Mint>,
        req: &HttpRequest<'_, H>,
        mode: DecideMode,
    ) -> Decision {
        let route = match self.route(req.target, req.method) {
            Ok(r) => r,
            Err(r) => return Decision::refused(r, None),
        };
        if route.open {
            return Decision::allow(None, None);
        }
        let header = self.source.header.as_str();
        let cookies = self.source.cookie.is_some().then(|| req.headers.values("cookie"));
        let token = match self.token(req.headers.values(header), cookies.into_iter().flatten()) {
            Ok(t) => t,
            Err(r) => return Decision::refused(r, None),
        };
        let opts = VerifyOptions {
            issuer: route.issuer.as_deref(),
            fresh: route.fresh,
        };
        let result = match mode {
            DecideMode::CachedOnly => match verifier.verify_cached(token, &opts) {
                Some(v) => Ok(v),
                None => return Decision::pending(),
            },
            DecideMode::Verify => verifier.verify_with(token.as_bytes(), &opts),
        };
        match result {
            Ok(v) => match self.judge(route, &v) {
                Ok(()) => {
                    let headers = (!self.claim_headers.is_empty()).then(|| self.claim_headers(&v));
                    let mut d = Decision::allow(Some(v.cached()), headers);
                    let (token_result, cached) = v.into_parts();
                    if let Some(rule) = &self.assertion {
                        match self.mint(rule, route, minter, &token_result, cached, token, req) {
                            Ok(a) => d.assertion = a,
                            Err(e) => {
                                log::error!("token {}: {e}", fingerprint(token.as_bytes()));
                                return Decision::refused(self.refuse(&Reason::Engine(&e)), Some(e.kind()));
                            }
                        }
                    }
                    d.verified = Some(token_result);
                    d
                }
                Err(r) => Decision::refused(r, None),
            },
            Err(e) => {
                let fp = fingerprint(token.as_bytes());
                if e.category() == Category::KeysUnavailable {
                    log::warn!("token {fp}: {e}");
                } else {
                    log::debug!("token {fp} refused: {e}");
                }
                Decision::refused(self.refuse(&Reason::Engine(&e)), Some(e.kind()))
            }
        }
    }
}

impl HttpPolicy {
    /// The assertion of an allowed request under `rule`, if its route
    /// carries one.
    #[allow(clippy::too_many_arguments)]
    fn mint<H: HeaderFields + ?Sized>(
        &self,
        rule: &AssertionRule,
        route: &Route,
        minter: Option<&dyn Mint>,
        verified: &VerifiedToken,
        cached: bool,
        token: &str,
        req: &HttpRequest<'_, H>,
    ) -> Result<Option<Assertion>, Error> {
        let Some(audience) = rule.audience(route) else {
            return Ok(None);
        };
        let minter = minter.ok_or_else(no_minter)?;
        let Some(target) = req.target else {
            return Err(Error::new(
                ErrorKind::Internal,
                "an assertion is bound to the request path, and the host did not pass it",
            ));
        };
        let value = minter.mint_assertion(
            verified,
            cached,
            token.as_bytes(),
            audience,
            req.method,
            target,
            route.fresh,
        )?;
        Ok(Some(Assertion {
            header: rule.header().clone(),
            value: value.into(),
        }))
    }
}

/// A request's header fields as a host holds them (read in place: the
/// decision copies nothing).
pub trait HeaderFields {
    /// The values of the fields named `name` (lower case; matched ASCII
    /// case-insensitively), in the order sent.
    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's;
}

impl HeaderFields for [(&[u8], &[u8])] {
    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| *v)
    }
}

/// A request as the decision sees it, borrowed from the host.
#[derive(Debug)]
pub struct HttpRequest<'a, H: ?Sized = [(&'a [u8], &'a [u8])]> {
    /// The original request's method, upper case.
    pub method: &'a str,
    /// Its raw target (path and query as sent); `None` when the host does
    /// not know it (then only a policy without routes can decide).
    pub target: Option<&'a str>,
    /// Its header fields, names in any case, repeated names as sent.
    pub headers: &'a H,
}

/// How far [`HttpPolicy::decide`] may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecideMode {
    /// Verify on this thread, fetching keys if needed (bounded by the
    /// engine's `http.timeout_ms`).
    Verify,
    /// Answer from the cache only; anything else says "would fetch".
    CachedOnly,
}

/// The answer to one request.
#[derive(Clone, Debug)]
pub struct Decision {
    status: u16,
    refusal: Option<Refusal>,
    kind: Option<ErrorKind>,
    cached: Option<bool>,
    claims: Option<Arc<ClaimHeaders>>,
    verified: Option<Arc<VerifiedToken>>,
    assertion: Option<Assertion>,
}

impl Decision {
    fn allow(cached: Option<bool>, claims: Option<Arc<ClaimHeaders>>) -> Decision {
        Decision {
            status: 200,
            refusal: None,
            kind: None,
            cached,
            claims,
            verified: None,
            assertion: None,
        }
    }

    /// A refusal the host made with [`HttpPolicy::refuse`] (a request it
    /// could not even read, say), as a decision.
    pub fn from_refusal(r: Refusal) -> Decision {
        Decision::refused(r, None)
    }

    fn refused(r: Refusal, kind: Option<ErrorKind>) -> Decision {
        Decision {
            status: r.status,
            refusal: Some(r),
            kind,
            cached: None,
            claims: None,
            verified: None,
            assertion: None,
        }
    }

    fn pending() -> Decision {
        Decision {
            status: 0,
            refusal: None,
            kind: None,
            cached: None,
            claims: None,
            verified: None,
            assertion: None,
        }
    }

    /// 200 when allowed, the refusal's status, or 0 when it
    /// [`would_fetch`](Self::would_fetch).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The request may go on (to the upstream, the application).
    pub fn allowed(&self) -> bool {
        self.status == 200
    }

    /// Not decided: the token needs a verification that may fetch
    /// ([`DecideMode::CachedOnly`] only). Decide again with
    /// [`DecideMode::Verify`] where waiting is fine.
    pub fn would_fetch(&self) -> bool {
        self.status == 0
    }

    /// Whether an allowed token came from the cache (`None`: no token was
    /// verified, an open route).
    pub fn cached(&self) -> Option<bool> {
        self.cached
    }

    /// The verified token of an allowed request (`None`: an open route, a
    /// refusal, or not decided), shared with the cache: a front end that
    /// hands the verified result to its application (the Go middleware's
    /// request context) reads it here instead of verifying again.
    pub fn verified(&self) -> Option<&Arc<VerifiedToken>> {
        self.verified.as_ref()
    }

    /// The engine's error kind of a refusal the engine made.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        self.kind
    }

    /// A refusal's response headers (lower-case names; `Content-Type` is
    /// always `application/json` and not listed). Empty when allowed.
    pub fn headers(&self) -> &[(&'static str, String)] {
        self.refusal.as_ref().map_or(&[], |r| &r.headers)
    }

    /// A refusal's JSON body; empty when allowed.
    pub fn body(&self) -> &str {
        self.refusal.as_ref().map_or("", |r| &r.body)
    }

    /// The verification assertion minted for an allowed request (see
    /// [`HttpPolicy::decide_minting`]): set its header on the request to
    /// the upstream, replacing every copy the client sent. `None`: the
    /// route carries none (or the request was not allowed); the host
    /// still removes the client's copies.
    pub fn assertion(&self) -> Option<&Assertion> {
        self.assertion.as_ref()
    }

    /// An allowed token's claim headers (lower-case names, sanitised
    /// values) for the upstream.
    pub fn claim_headers(&self) -> &[(HeaderName, String)] {
        self.claims.as_ref().map_or(&[], |c| &c.headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwtwarden_testissuer::TestIssuer;
    use serde_json::json;

    fn policy(v: serde_json::Value) -> HttpPolicy {
        HttpPolicy::from_json(&v.to_string()).unwrap()
    }

    struct Fixture {
        issuer: TestIssuer,
        verifier: Verifier,
    }

    fn fixture() -> Fixture {
        let issuer = TestIssuer::start();
        let verifier = Verifier::from_json(
            &json!({"issuers": [{"issuer": issuer.url(), "jwks_uri": issuer.jwks_uri(), "audiences": ["api"]}],
                    "http": {"allow_http": true}})
            .to_string(),
        )
        .unwrap();
        Fixture { issuer, verifier }
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    impl Fixture {
        fn token(&self, edit: impl FnOnce(&mut serde_json::Value)) -> String {
            let mut claims = self.issuer.default_claims("alice", now());
            edit(&mut claims);
            self.issuer.mint(&self.issuer.first_kid(), &claims)
        }
    }

    fn get<'a>(method: &'a str, target: &'a str, headers: &'a [(&'a [u8], &'a [u8])]) -> HttpRequest<'a> {
        HttpRequest {
            method,
            target: Some(target),
            headers,
        }
    }

    fn header<'d>(d: &'d Decision, name: &str) -> Option<&'d str> {
        d.headers().iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn policies_are_validated_naming_the_field() {
        let bad = |v: serde_json::Value| HttpPolicy::from_json(&v.to_string()).unwrap_err();
        assert!(bad(json!({"realm": "a\"b"})).starts_with("realm"));
        assert!(bad(json!({"token_header": "X Y"})).starts_with("token_header"));
        assert!(bad(json!({"token_cookie": "a;b"})).starts_with("token_cookie"));
        assert!(bad(json!({"claim_headers": {"sub": "Content-Length"}})).starts_with("claim_headers.sub"));
        assert!(bad(json!({"routes": [{"prefix": "/a/../b"}]})).starts_with("routes[0].prefix"));
        assert!(bad(json!({"open_methods": ["GE T"]})).starts_with("open_methods"));
        assert!(bad(json!({"realmm": "x"})).contains("realmm"));
    }

    #[test]
    fn a_hit_allows_with_claim_headers_and_a_miss_would_fetch_first() {
        let f = fixture();
        let p = policy(json!({"realm": "api", "claim_headers": {"sub": "X-Auth-Sub"}}));
        let t = format!("Bearer {}", f.token(|_| {}));
        let h: &[(&[u8], &[u8])] = &[(b"Authorization", t.as_bytes())];
        let d = p.decide(&f.verifier, &get("GET", "/orders", h), DecideMode::CachedOnly);
        assert!(d.would_fetch() && !d.allowed(), "{d:?}");
        let d = p.decide(&f.verifier, &get("GET", "/orders", h), DecideMode::Verify);
        assert!(d.allowed(), "{d:?}");
        assert_eq!(d.cached(), Some(false));
        let d = p.decide(&f.verifier, &get("GET", "/orders", h), DecideMode::CachedOnly);
        assert_eq!((d.status(), d.cached()), (200, Some(true)));
        assert_eq!(d.claim_headers()[0].0.as_str(), "x-auth-sub");
        assert_eq!(d.claim_headers()[0].1, "alice");
        assert!(d.headers().is_empty() && d.body().is_empty());
    }

    /// An allowed decision carries the verified token (the Go middleware
    /// hands it to the application instead of verifying twice); an open
    /// route, a refusal and "would fetch" carry none.
    #[test]
    fn an_allowed_decision_carries_its_verified_token_and_nothing_else_does() {
        let f = fixture();
        let p = policy(json!({"routes": [{"prefix": "/docs/", "open": true}]}));
        let t = format!("Bearer {}", f.token(|_| {}));
        let h: &[(&[u8], &[u8])] = &[(b"Authorization", t.as_bytes())];
        assert!(p
            .decide(&f.verifier, &get("GET", "/orders", h), DecideMode::CachedOnly)
            .verified()
            .is_none());
        for mode in [DecideMode::Verify, DecideMode::CachedOnly] {
            let d = p.decide(&f.verifier, &get("GET", "/docs/../orders", h), mode);
            let v = d.verified().expect("an allowed token's result");
            assert_eq!(v.claims()["sub"], "alice");
        }
        for target in ["/docs/x", "/docs/..;/orders"] {
            let d = p.decide(&f.verifier, &get("GET", target, h), DecideMode::Verify);
            assert!(d.verified().is_none(), "{target}: {d:?}");
        }
        let expired = format!("Bearer {}", f.token(|c| c["exp"] = json!(now() - 3600)));
        let h: &[(&[u8], &[u8])] = &[(b"Authorization", expired.as_bytes())];
        let d = p.decide(&f.verifier, &get("GET", "/orders", h), DecideMode::Verify);
        assert!(d.status() == 401 && d.verified().is_none());
    }

    /// Two policies over one verifier: a cached result never answers with
    /// the other policy's claim headers.
    #[test]
    fn claim_headers_belong_to_their_policy() {
        let f = fixture();
        let a = policy(json!({"claim_headers": {"sub": "X-A"}}));
        let b = policy(json!({"claim_headers": {"sub": "X-B"}}));
        let t = format!("Bearer {}", f.token(|_| {}));
        let h: &[(&[u8], &[u8])] = &[(b"authorization", t.as_bytes())];
        for p in [&a, &b, &a, &b] {
            let d = p.decide(&f.verifier, &get("GET", "/", h), DecideMode::Verify);
            let want = if std::ptr::eq(p, &a) { "x-a" } else { "x-b" };
            assert_eq!(d.claim_headers()[0].0.as_str(), want);
        }
    }

    #[test]
    fn refusals_never_echo_the_token_and_always_say_no_store() {
        let f = fixture();
        let p = policy(json!({"realm": "api"}));
        let expired = f.token(|c| c["exp"] = json!(now() - 3600));
        let forged = format!("{}AAAA", &expired[..expired.len() - 4]);
        for (t, status, kind) in [
            (format!("Bearer {expired}"), 401, Some(ErrorKind::Expired)),
            (format!("Bearer {forged}"), 401, None),
            ("Bearer !!.b.c".to_string(), 401, Some(ErrorKind::InvalidBase64)),
            (format!("Bearer {expired} {expired}"), 400, None),
            (format!("Bearer\t{expired}"), 400, None),
        ] {
            let h: &[(&[u8], &[u8])] = &[(b"authorization", t.as_bytes())];
            let d = p.decide(&f.verifier, &get("GET", "/x", h), DecideMode::Verify);
            assert_eq!(d.status(), status, "{t}: {d:?}");
            if kind.is_some() {
                assert_eq!(d.error_kind(), kind, "{t}");
            }
            assert_eq!(header(&d, "cache-control"), Some("no-store"));
            let sig = expired.rsplit('.').next().unwrap();
            assert!(!d.body().contains(sig) && !d.headers().iter().any(|(_, v)| v.contains(sig)));
            assert!(!d.body().contains("!!.b.c"));
        }
    }

    #[test]
    fn routes_open_methods_and_unsafe_paths() {
        let f = fixture();
        let p = policy(json!({
            "realm": "api",
            "routes": [
                {"prefix": "/healthz", "exact": true, "open": true},
                {"prefix": "/public/", "open": true},
                {"prefix": "/admin/", "scopes": ["admin"], "fresh": true}
            ]
        }));
        let none: &[(&[u8], &[u8])] = &[];
        let at = |m: &str, path: &str| {
            p.decide(&f.verifier, &get(m, path, none), DecideMode::CachedOnly)
                .status()
        };
        assert_eq!(at("GET", "/healthz"), 200);
        assert_eq!(at("GET", "/healthz/x"), 401, "exact");
        assert_eq!(at("GET", "/public/a"), 200);
        assert_eq!(at("GET", "/PUBLIC/a"), 401, "an open route matches as written");
        assert_eq!(at("GET", "/public/../admin/x"), 401);
        assert_eq!(at("GET", "/public/..;/admin/x"), 403);
        assert_eq!(at("GET", "/public/%2e%2e/admin/x"), 401);
        assert_eq!(at("GET", "/public%2F..%2Fadmin/x"), 403);
        assert_eq!(at("OPTIONS", "/admin/x"), 200, "CORS preflight by default");
        assert_eq!(
            at("OPTIONS", "/public/..;/admin"),
            403,
            "an unsafe path whatever the method"
        );
        let strict = policy(json!({"open_methods": []}));
        let d = strict.decide(&f.verifier, &get("OPTIONS", "/x", none), DecideMode::CachedOnly);
        assert_eq!(d.status(), 401);
        assert_eq!(header(&d, "www-authenticate"), Some("Bearer"), "no realm configured");
        // Routes configured but the host does not know the target.
        let req = HttpRequest {
            method: "GET",
            target: None,
            headers: none,
        };
        assert_eq!(p.decide(&f.verifier, &req, DecideMode::CachedOnly).status(), 400);
    }

    #[test]
    fn scopes_and_audiences_per_route() {
        let f = fixture();
        let p = policy(json!({"routes": [
            {"prefix": "/admin/", "scopes": ["admin"]},
            {"prefix": "/orders", "audiences": ["orders"]}
        ]}));
        let plain = format!("Bearer {}", f.token(|_| {}));
        let admin = format!("Bearer {}", f.token(|c| c["scope"] = json!("read admin")));
        let d = |t: &str, path: &str| {
            let h: &[(&[u8], &[u8])] = &[(b"authorization", t.as_bytes())];
            p.decide(&f.verifier, &get("GET", path, h), DecideMode::Verify)
        };
        let r = d(&plain, "/admin/x");
        assert_eq!(r.status(), 403);
        assert!(header(&r, "www-authenticate").unwrap().contains("insufficient_scope"));
        assert_eq!(d(&admin, "/admin/x").status(), 200);
        assert_eq!(d(&plain, "/ADMIN/x").status(), 403, "a protected route in any case");
        assert_eq!(d(&plain, "/orders").status(), 401, "audience api, route wants orders");
        assert_eq!(d(&plain, "/other").status(), 200);
    }
}
