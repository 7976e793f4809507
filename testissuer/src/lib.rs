//! A real JWKS/OIDC issuer on `127.0.0.1`, for jwtwarden's tests, demo and benchmarks.
//!
//! [`TestIssuer::start`] binds an ephemeral port, publishes one RS256 key and serves:
//!
//! | path | response |
//! |---|---|
//! | `/jwks.json` | the published keys (`{"keys": [...]}`), subject to [`Fault`]s and cache headers; moved elsewhere by [`TestIssuer::set_jwks_path`] (then `/jwks.json` is `404`) |
//! | `/.well-known/openid-configuration` | `{"issuer": url, "jwks_uri": TestIssuer::jwks_uri()}`, subject to [`Fault`]s and its own `Cache-Control` |
//! | `/redirect-same-host` | `302` to [`TestIssuer::jwks_uri`] |
//! | a path given to [`TestIssuer::publish_status_list`] | a Token Status List (`statuslist+jwt`), see [`StatusListOptions`] |
//! | `/slow-redirect/<n><path>` | hop `n` of a [`Fault::SlowRedirects`] chain for the document at `<path>` |
//! | anything else | `404` (still counted per path) |
//!
//! All bodies are `application/json` with a `Content-Length`. Each request is served on
//! its own thread, so a [`Fault::Delay`] does not hold up other requests. The query string
//! is ignored for routing and counting.
//!
//! ```
//! use jwtwarden_testissuer::{Alg, Fault, TestIssuer};
//!
//! let issuer = TestIssuer::start(); // one RS256 key
//! let kid = issuer.first_kid();
//! let token = issuer.mint(&kid, &issuer.default_claims("alice", 1_700_000_000));
//! assert_eq!(token.split('.').count(), 3);
//!
//! let new_kid = issuer.rotate(Alg::ES256); // both keys published
//! issuer.retire_key(&kid); // only new_kid published; `kid` can still sign
//! assert_eq!(issuer.published_kids(), vec![new_kid]);
//!
//! issuer.set_fault(Fault::Status(503)); // /jwks.json now answers 503
//! assert_eq!(issuer.jwks_requests(), 0);
//! ```
//!
//! # Admin API
//!
//! Issuers started with [`IssuerOptions::admin`] (always the case for the
//! `jwtwarden-testissuer` binary) also answer JSON requests under `/admin/`, which are
//! never counted:
//!
//! | request | body | answer |
//! |---|---|---|
//! | `GET /admin/keys` | | `{"published": [kid, ...]}` |
//! | `POST /admin/keys` | `{"alg": "ES256", "fresh": false}` | `{"kid": kid}` |
//! | `DELETE /admin/keys/<kid>` | | `{"retired": kid}` |
//! | `GET /admin/keys/<kid>/private` | | `{"pem": pkcs8_pem, "alg": "ES256"}` |
//! | `GET /admin/keys/<kid>/public` | | `{"jwk": {...}}` |
//! | `POST /admin/mint` | `{"kid": kid, "claims": {...}, "header": {...}}` | `{"token": jwt}` |
//! | `POST /admin/fault` | `{"kind": "none" \| "status" \| "delay" \| "drop" \| "oversized" \| "invalid_json" \| "redirect" \| "not_modified" \| "hang" \| "slow_redirects", "status": 500, "retry_after": "120" \| 120, "delay_ms": 2000, "bytes": 300000, "location": url, "hops": 3}` | `{"ok": true}` |
//! | `POST /admin/headers` | `{"cache_control": "max-age=60" \| null, "expires": str \| null, "etag": true, "jwks_override": str \| null, "discovery_cache_control": str \| null}` | the resulting settings |
//! | `POST /admin/jwks_path` | `{"path": "/keys/v2" \| null}` | `{"jwks_path": path}` |
//! | `POST /admin/status_lists` | `{"path": "/status/1", "bits": 2, "len": 1024, "ttl": 60, "cache_control": str, "etag": true}` | `{"uri": uri}` (a Token Status List, all VALID) |
//! | `POST /admin/status` | `{"path": "/status/1", "idx": 7, "status": 2}` | `{"ok": true}` |
//! | `GET /admin/stats` | | `{"jwks_requests": n, "discovery_requests": n, "total_requests": n, "paths": {path: n}}` |
//! | `POST /admin/reset` | | `{"ok": true}` (zeroes the counters only) |
//! | `POST /admin/shutdown` | | `{"ok": true}`, then the binary exits |
//!
//! In `/admin/mint`, `kid` defaults to the first published key, `claims` to
//! [`TestIssuer::default_claims`]`("user", now)` and `header` to `{alg, typ, kid}`.
//! In `/admin/headers`, only the members present change. In `/admin/fault`, `"status"` with
//! `"retry_after"` is [`Fault::StatusRetryAfter`]; `"delay_ms"` is also the per-hop delay of
//! `"slow_redirects"`. `/admin/jwks_path` is [`TestIssuer::set_jwks_path`] (`null` restores
//! `/jwks.json`). Errors are `4xx` with `{"error": msg}`.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

mod admin;
mod fault;
mod keys;
pub mod redis;
mod server;
mod sock;
mod spiffe;
mod status;
mod tenants;

pub use fault::Fault;
pub use spiffe::SpiffeBundleServer;
pub use status::{encode_lst, zlib_b64, StatusListOptions};
pub use tenants::{TenantIssuer, TenantMode};

/// A JWS signature algorithm the issuer can publish keys for.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RSA 2048).
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384 (RSA 2048).
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512 (RSA 2048).
    RS512,
    /// RSASSA-PSS with SHA-256 (RSA 2048).
    PS256,
    /// RSASSA-PSS with SHA-384 (RSA 2048).
    PS384,
    /// RSASSA-PSS with SHA-512 (RSA 2048).
    PS512,
    /// ECDSA with P-256 and SHA-256.
    ES256,
    /// ECDSA with P-384 and SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl Alg {
    /// Every algorithm, in declaration order.
    pub const ALL: [Alg; 9] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    /// The JOSE name, e.g. `"RS256"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// The matching `jsonwebtoken` algorithm.
    pub fn algorithm(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as A;
        match self {
            Alg::RS256 => A::RS256,
            Alg::RS384 => A::RS384,
            Alg::RS512 => A::RS512,
            Alg::PS256 => A::PS256,
            Alg::PS384 => A::PS384,
            Alg::PS512 => A::PS512,
            Alg::ES256 => A::ES256,
            Alg::ES384 => A::ES384,
            Alg::EdDSA => A::EdDSA,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown algorithm name into an [`Alg`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseAlgError(pub String);

impl fmt::Display for ParseAlgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unsupported algorithm {:?}", self.0)
    }
}

impl std::error::Error for ParseAlgError {}

impl FromStr for Alg {
    type Err = ParseAlgError;

    /// Parses an exact JOSE name such as `"RS256"` or `"EdDSA"`.
    fn from_str(s: &str) -> Result<Alg, ParseAlgError> {
        Alg::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| ParseAlgError(s.to_string()))
    }
}

/// Options for [`TestIssuer::start_with`].
#[derive(Clone, Debug, Default)]
pub struct IssuerOptions {
    /// Port on 127.0.0.1; `0` picks a free one.
    pub port: u16,
    /// One key is generated and published per entry, in order.
    pub algs: Vec<Alg>,
    /// Serve the JSON admin API under `/admin/` (see the crate docs).
    pub admin: bool,
}

/// A running issuer on 127.0.0.1. Dropping it stops the server: the listener is closed
/// promptly and requests still waiting on a [`Fault::Delay`] get their connection dropped.
pub struct TestIssuer {
    shared: std::sync::Arc<server::Shared>,
    // Declared last so it is dropped after nothing else needs it; stops the server on drop.
    _running: server::Running,
}

impl fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestIssuer")
            .field("url", &self.shared.url)
            .field("published", &self.published_kids())
            .finish()
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TestIssuer {
    /// Binds `127.0.0.1:0` and publishes one RS256 key.
    ///
    /// # Panics
    /// If the server cannot be started.
    pub fn start() -> TestIssuer {
        Self::start_with(&IssuerOptions {
            algs: vec![Alg::RS256],
            ..IssuerOptions::default()
        })
        .expect("testissuer: cannot start")
    }

    /// Binds `127.0.0.1:0` with no key published.
    ///
    /// # Panics
    /// If the server cannot be started.
    pub fn start_empty() -> TestIssuer {
        Self::start_with(&IssuerOptions::default()).expect("testissuer: cannot start")
    }

    /// Starts an issuer with explicit options (port, initial keys, admin API).
    pub fn start_with(opts: &IssuerOptions) -> std::io::Result<TestIssuer> {
        let (shared, running) = server::start(opts.port, opts.admin)?;
        let issuer = TestIssuer {
            shared,
            _running: running,
        };
        for &alg in &opts.algs {
            issuer.add_key(alg);
        }
        Ok(issuer)
    }

    /// `http://127.0.0.1:PORT`; also the issuer id (`iss`) and the OIDC `issuer`.
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    /// Where the JWKS is served now: `url() + "/jwks.json"` unless moved with
    /// [`Self::set_jwks_path`].
    pub fn jwks_uri(&self) -> String {
        format!("{}{}", self.shared.url, self.shared.jwks_path())
    }

    /// Serves the JWKS at `path` (e.g. `"/keys/v2"`) instead of `/jwks.json` and advertises
    /// it as the discovery document's `jwks_uri`; the old path then answers `404`. `None`
    /// moves it back. [`Self::jwks_requests`] counts requests to the current path.
    ///
    /// # Panics
    /// If `path` does not start with `/`, has a query, or is another route's path.
    pub fn set_jwks_path(&self, path: Option<&str>) {
        if let Some(p) = path {
            if let Err(e) = server::check_jwks_path(p) {
                panic!("testissuer: {e}");
            }
        }
        self.shared.config.lock().jwks_path = path.map(str::to_string);
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.shared.addr.port()
    }

    /// Generates a key pair for `alg`, publishes it and returns its kid (e.g. `k-3fa9c2`).
    ///
    /// RSA material comes from a process-wide pool: never reused within this issuer, but
    /// possibly shared (under another kid) with other issuers. See [`Self::add_fresh_key`].
    pub fn add_key(&self, alg: Alg) -> String {
        self.shared.add_key(alg, false)
    }

    /// Like [`Self::add_key`] but always generates new key material that no other key in
    /// the process shares (e.g. for "attacker key" tests). Slower for RSA.
    pub fn add_fresh_key(&self, alg: Alg) -> String {
        self.shared.add_key(alg, true)
    }

    /// Stops publishing `kid`. The key can still sign, for testing removed keys.
    ///
    /// # Panics
    /// If there is no key `kid`.
    pub fn retire_key(&self, kid: &str) {
        assert!(self.shared.retire_key(kid), "testissuer: unknown kid {kid}");
    }

    /// Same as [`Self::add_key`]: old keys stay published until retired (overlap).
    pub fn rotate(&self, alg: Alg) -> String {
        self.add_key(alg)
    }

    /// Kids of the published keys, in publication order.
    pub fn published_kids(&self) -> Vec<String> {
        self.shared.published_kids()
    }

    /// The kid of the first published key.
    ///
    /// # Panics
    /// If no key is published.
    pub fn first_kid(&self) -> String {
        self.published_kids()
            .into_iter()
            .next()
            .expect("testissuer: no key published")
    }

    /// The algorithm of key `kid`.
    ///
    /// # Panics
    /// If there is no key `kid`.
    pub fn key_alg(&self, kid: &str) -> Alg {
        self.key(kid, |k| k.alg)
    }

    /// Signs `claims` with key `kid`; the header is `{"alg", "typ": "JWT", "kid"}`.
    ///
    /// # Panics
    /// If there is no key `kid` (retired keys still sign).
    pub fn mint(&self, kid: &str, claims: &serde_json::Value) -> String {
        self.shared
            .mint(kid, None, claims)
            .unwrap_or_else(|| panic!("testissuer: unknown kid {kid}"))
    }

    /// Signs with key `kid`'s algorithm using exactly `header` as the JOSE header
    /// (its `alg`/`kid`/`jku`/... are not checked or changed, so it may lie).
    ///
    /// # Panics
    /// If there is no key `kid`.
    pub fn mint_with_header(&self, kid: &str, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        self.shared
            .mint(kid, Some(header), claims)
            .unwrap_or_else(|| panic!("testissuer: unknown kid {kid}"))
    }

    /// `base64url(header).base64url(claims).` — an unsigned token with an empty signature
    /// (e.g. for `alg: none` tests).
    pub fn mint_unsigned(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        keys::unsigned_token(header, claims)
    }

    /// `{"iss": url, "aud": "api", "sub": sub, "iat": now, "nbf": now, "exp": now + 3600, "jti": random hex}`.
    pub fn default_claims(&self, sub: &str, now: u64) -> serde_json::Value {
        self.shared.default_claims(sub, now)
    }

    /// The private key of `kid` as a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    ///
    /// # Panics
    /// If there is no key `kid`.
    pub fn private_key_pem(&self, kid: &str) -> String {
        self.key(kid, |k| k.pem().to_string())
    }

    /// The `jsonwebtoken` encoding key of `kid`, e.g. for `jsonwebtoken::encode`.
    ///
    /// # Panics
    /// If there is no key `kid`.
    pub fn encoding_key(&self, kid: &str) -> jsonwebtoken::EncodingKey {
        self.key(kid, |k| k.encoding_key().clone())
    }

    /// The public JWK of `kid` as published (`kty`, `kid`, `alg`, `use: "sig"`, and
    /// `n`/`e`, `crv`/`x`/`y` or `crv`/`x`), also for retired keys.
    ///
    /// # Panics
    /// If there is no key `kid`.
    pub fn public_jwk(&self, kid: &str) -> serde_json::Value {
        self.key(kid, |k| k.jwk().clone())
    }

    /// Sets the fault applied to the JWKS and the discovery document until changed.
    pub fn set_fault(&self, f: Fault) {
        self.shared.config.lock().fault = f;
    }

    /// `Cache-Control` header on the JWKS response (default: none).
    pub fn set_cache_control(&self, v: Option<&str>) {
        self.shared.config.lock().cache_control = v.map(str::to_string);
    }

    /// `Cache-Control` header on the discovery document (default: none).
    pub fn set_discovery_cache_control(&self, v: Option<&str>) {
        self.shared.config.lock().discovery_cache_control = v.map(str::to_string);
    }

    /// `Expires` header on the JWKS response (default: none).
    pub fn set_expires(&self, v: Option<&str>) {
        self.shared.config.lock().expires = v.map(str::to_string);
    }

    /// When enabled, the JWKS response has `ETag: "<hash of the body>"` and a request whose
    /// `If-None-Match` matches gets `304 Not Modified` with no body.
    pub fn set_etag(&self, enabled: bool) {
        self.shared.config.lock().etag = enabled;
    }

    /// Serves exactly `body` as the JWKS instead of the generated set (`None` restores it).
    pub fn set_jwks_override(&self, body: Option<String>) {
        self.shared.config.lock().jwks_override = body;
    }

    /// Requests to the JWKS at its current path (all of them, including 304s and faulted
    /// ones; not the hops of a [`Fault::SlowRedirects`] chain).
    pub fn jwks_requests(&self) -> u64 {
        self.shared.counts.lock().jwks
    }

    /// The client address and port of each JWKS request counted by
    /// [`Self::jwks_requests`], in order. Two requests with the same one came
    /// on one keep-alive connection.
    pub fn jwks_peers(&self) -> Vec<std::net::SocketAddr> {
        self.shared.counts.lock().jwks_peers.clone()
    }

    /// Requests to `/.well-known/openid-configuration`.
    pub fn discovery_requests(&self) -> u64 {
        self.shared.counts.lock().discovery
    }

    /// Requests to any path, unknown paths included (admin requests excluded).
    pub fn total_requests(&self) -> u64 {
        self.shared.counts.lock().total
    }

    /// Requests to `path` (without query string), e.g. `"/evil-jku"`.
    pub fn requests_to(&self, path: &str) -> u64 {
        let counts = self.shared.counts.lock();
        counts.per_path.get(path).copied().unwrap_or(0)
    }

    /// Zeroes all request counters.
    pub fn reset_counts(&self) {
        self.shared.reset_counts();
    }

    /// Headers of the latest JWKS request, names lower-cased, in arrival order.
    pub fn last_jwks_request_headers(&self) -> Vec<(String, String)> {
        self.shared.last_jwks_headers.lock().clone()
    }

    /// Whether `POST /admin/shutdown` was received.
    pub fn shutdown_requested(&self) -> bool {
        self.shared.shutdown_requested.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Publishes a Token Status List of `len` entries at `bits` each, all
    /// VALID (0), at `path` (e.g. `"/status/1"`); returns its URI. The list
    /// is a `statuslist+jwt` signed by the first published key, with `sub`
    /// its URI and `iss` the issuer, re-signed whenever it changes.
    ///
    /// # Panics
    /// If `bits` is not 1, 2, 4 or 8, or `path` does not start with `/`.
    pub fn publish_status_list(&self, path: &str, bits: u8, len: usize) -> String {
        assert!(
            path.starts_with('/'),
            "testissuer: status list path must start with '/'"
        );
        self.shared
            .status_lists
            .lock()
            .insert(path.to_string(), status::Published::new(bits, len));
        self.status_list_uri(path)
    }

    /// The URI of the status list at `path`.
    pub fn status_list_uri(&self, path: &str) -> String {
        format!("{}{path}", self.shared.url)
    }

    /// Sets entry `idx` of the list at `path` to `status` (0 VALID, 1
    /// INVALID, 2 SUSPENDED, 3.. application-specific).
    ///
    /// # Panics
    /// If there is no list at `path` or `idx` is beyond it.
    pub fn set_status(&self, path: &str, idx: usize, status: u8) {
        let mut lists = self.shared.status_lists.lock();
        let list = lists.get_mut(path).expect("testissuer: no status list there");
        list.statuses[idx] = status;
        list.signed = None;
    }

    /// Changes how the list at `path` is served (claims, signer, headers, fault).
    ///
    /// # Panics
    /// If there is no list at `path`.
    pub fn configure_status_list(&self, path: &str, f: impl FnOnce(&mut StatusListOptions)) {
        let mut lists = self.shared.status_lists.lock();
        let list = lists.get_mut(path).expect("testissuer: no status list there");
        f(&mut list.options);
        list.signed = None;
    }

    /// The Status List Token served at `path` now.
    ///
    /// # Panics
    /// If there is no list at `path` or no key to sign it.
    pub fn status_list_token(&self, path: &str) -> String {
        self.shared
            .status_list_body(path)
            .expect("testissuer: no status list there, or no key")
            .0
    }

    /// The `status` claim referencing entry `idx` of the list at `path`:
    /// `{"status_list": {"idx": idx, "uri": uri}}`.
    pub fn status_claim(&self, path: &str, idx: usize) -> serde_json::Value {
        serde_json::json!({"status_list": {"idx": idx, "uri": self.status_list_uri(path)}})
    }

    fn key<T>(&self, kid: &str, f: impl FnOnce(&keys::KeyEntry) -> T) -> T {
        self.shared
            .with_key(kid, f)
            .unwrap_or_else(|| panic!("testissuer: unknown kid {kid}"))
    }
}
