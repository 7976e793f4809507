//! RFC 7662 token introspection (optional): `POST /introspect` on its own
//! listener, for resource servers that would rather ask than verify.
//!
//! The first part of the trust hand-off (docs/trust-handoff.md): a
//! component behind the edge asks "is this token active?" and gets the
//! engine's answer, from the same verifier, cache and trust state as the
//! forward-auth path (a cached token costs no signature check and no JWKS
//! fetch; a revoked one is inactive the moment the revocation returns).
//!
//! Why its own listener and not a path on the admin listener: the admin
//! secret revokes tokens, while introspection clients are resource servers,
//! many of them, each with its own secret and rate limit, usually on
//! another network than the operators. Separate addresses let a firewall
//! tell them apart, and give each its own connection budget, so a busy
//! resource server cannot lock operators out of `/revoke` (nor the other
//! way round).
//!
//! The order of a request, each step one answer: client authentication
//! (401, nothing verified), the client's rate limit (429), path, method,
//! media type, body size (413), the form, then the engine. Inactive tokens
//! get `{"active": false}` and nothing else; the reason goes to the log as
//! an error kind only. An outage (keys or revocation state unavailable) is
//! not an inactive token: 503 with `Retry-After`, so a resource server
//! does not take it for a revocation.
//!
//! Optionally (`jwt_response = true`) the answer is signed, as RFC 9701
//! has it, for a client that asks with `Accept:
//! application/token-introspection+jwt`: a JWS (EdDSA, `typ:
//! token-introspection+jwt`) whose `token_introspection` claim is the
//! RFC 7662 object, `aud` the client's id. Only the answers about a token
//! (active or inactive) are signed; refusals (401, 429, 4xx, 503) stay
//! plain JSON, and nothing is ever signed for a caller without credentials.
//! The signing keys are introspection's own (`signing_key`, optionally
//! `previous_signing_key` while rotating), published with the assertion
//! keys on the admin listener's `/.well-known/jwks.json`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use jwtwarden::{Category, Verified, VerifyOptions};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::admin::constant_time_eq;
use super::http::Resp;
use super::stats::{ClientCounters, ClientEvent};
use super::App;

/// The media type of a signed introspection answer (RFC 9701 §4, §5).
pub const JWT_MEDIA_TYPE: &str = "application/token-introspection+jwt";
/// The `typ` header of a signed introspection answer (RFC 9701 §5).
pub const JWT_TYP: &str = "token-introspection+jwt";

/// The `[introspection]` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IntrospectionFile {
    listen: String,
    path: Option<String>,
    max_body_bytes: Option<usize>,
    max_connections: Option<usize>,
    rate_per_sec: Option<f64>,
    burst: Option<u32>,
    #[serde(default)]
    clients: Vec<ClientFile>,
    /// Sign answers for clients that ask (RFC 9701). Default false.
    #[serde(default)]
    jwt_response: bool,
    /// The signed answers' `iss`; default `[assertion].name`.
    issuer: Option<String>,
    /// The key that signs answers.
    signing_key: Option<KeyFile>,
    /// A key being rotated out: published, never signing.
    previous_signing_key: Option<KeyFile>,
}

/// `[introspection.signing_key]` as written: the shape of `[assertion]`'s
/// keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    kid: String,
    pem_file: PathBuf,
}

/// One `[[introspection.clients]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    id: String,
    secret_file: Option<PathBuf>,
    secret_env: Option<String>,
}

/// One client allowed to introspect.
#[derive(Clone)]
pub struct Client {
    /// Its id (the user name of HTTP Basic; shown in logs).
    pub id: String,
    secret: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is never printed.
        f.debug_struct("Client").field("id", &self.id).finish()
    }
}

/// The introspection endpoint, validated.
#[derive(Clone, Debug)]
pub struct IntrospectionConfig {
    /// Its own address, never the verification or admin listener's.
    pub listen: SocketAddr,
    /// The endpoint's path (default `/introspect`).
    pub path: String,
    /// Largest request body, in bytes (default 32768: a 16 KiB token, the
    /// engine's default limit, percent-encoded, fits).
    pub max_body_bytes: usize,
    /// Connections the listener serves at once (default 256).
    pub max_connections: usize,
    /// The clients, each with its own secret.
    pub clients: Vec<Client>,
    /// Each client's token bucket (rates from the configuration; a reload
    /// starts them full).
    pub limiter: Arc<RateLimiter>,
    /// Signs answers for clients that ask (`jwt_response = true`).
    pub jwt: Option<Arc<JwtSigner>>,
    /// Each client's counters (by index), looked up in serve's stats by id
    /// on first use: a reload that keeps a client keeps its counts.
    counters: OnceLock<Vec<Arc<ClientCounters>>>,
}

/// Signs introspection answers (RFC 9701): EdDSA over Ed25519.
pub struct JwtSigner {
    issuer: String,
    kid: String,
    pair: Ed25519KeyPair,
    /// `base64url(header) + "."`, built once.
    header_b64: String,
    /// The public keys, `current` first.
    jwks: Vec<Value>,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("JwtSigner")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish()
    }
}

impl JwtSigner {
    fn load(field: &str, k: &KeyFile) -> Result<(Ed25519KeyPair, Value), String> {
        if k.kid.is_empty() || k.kid.len() > 128 {
            return Err(format!("{field}.kid: 1 to 128 characters"));
        }
        let pem = std::fs::read_to_string(&k.pem_file)
            .map_err(|e| format!("{field}.pem_file: cannot read {}: {e}", k.pem_file.display()))?;
        let body: String = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| format!("{field}.pem_file: not PEM"))?;
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der))
            .map_err(|_| format!("{field}.pem_file: not an Ed25519 PKCS#8 private key"))?;
        let jwk = json!({
            "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": k.kid,
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        });
        Ok((pair, jwk))
    }

    /// The public keys (current, then previous), as JWKs.
    pub fn jwks(&self) -> &[Value] {
        &self.jwks
    }

    /// The compact JWS of RFC 9701 §5 for client `aud`: `iss`, `aud`,
    /// `iat` and `token_introspection` (the RFC 7662 object), nothing
    /// else at the top (no `sub`, no `exp`: it is an answer, not a token).
    pub fn sign(&self, aud: &str, answer: Value, iat: u64) -> String {
        let payload = json!({
            "iss": self.issuer,
            "aud": aud,
            "iat": iat,
            "token_introspection": answer,
        });
        let mut out = String::with_capacity(512);
        out.push_str(&self.header_b64);
        URL_SAFE_NO_PAD.encode_string(payload.to_string(), &mut out);
        let sig = self.pair.sign(out.as_bytes());
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut out);
        out
    }
}

/// The keys the admin listener publishes at `/.well-known/jwks.json`:
/// the assertion keys, then introspection's (a key listed in both, same
/// `kid` and same public key, once). `None` when neither signs.
pub fn published_jwks(cfg: &super::config::ServeConfig) -> Option<Value> {
    let mut keys: Vec<Value> = match &cfg.assertion {
        Some(a) => a.minter.jwks()["keys"].as_array().cloned().unwrap_or_default(),
        None => Vec::new(),
    };
    let signer = cfg.introspection.as_ref().and_then(|i| i.jwt.as_ref());
    for k in signer.map_or(&[][..], |s| s.jwks()) {
        if !keys.iter().any(|o| o["kid"] == k["kid"]) {
            keys.push(k.clone());
        }
    }
    (cfg.assertion.is_some() || signer.is_some()).then(|| json!({ "keys": keys }))
}

/// Default requests per second per client.
pub const DEFAULT_RATE_PER_SEC: f64 = 100.0;
/// Default bucket size per client.
pub const DEFAULT_BURST: u32 = 200;

impl IntrospectionConfig {
    /// Validate the `[introspection]` section (errors name the field).
    /// `assertion`: serve's `[assertion]`, if configured (its name is the
    /// default `issuer`; a signing key may be one of its keys, same `kid`
    /// and same key, but a `kid` of its with another key is refused).
    pub(super) fn from_file(
        f: IntrospectionFile,
        assertion: Option<&super::assertion::AssertionConfig>,
    ) -> Result<IntrospectionConfig, String> {
        let listen = f
            .listen
            .parse()
            .map_err(|_| format!("introspection.listen: {:?} is not an IP:port address", f.listen))?;
        let path = f.path.unwrap_or_else(|| "/introspect".to_string());
        if !path.starts_with('/') || path.len() > 1 && path.ends_with('/') || path.contains(['?', '#']) {
            return Err(format!(
                "introspection.path: {path:?} must start with '/', not end with one, and have no query"
            ));
        }
        let max_body_bytes = f.max_body_bytes.unwrap_or(32 * 1024);
        if !(256..=1024 * 1024).contains(&max_body_bytes) {
            return Err("introspection.max_body_bytes: between 256 and 1048576".into());
        }
        let max_connections = match f.max_connections {
            Some(0) => return Err("introspection.max_connections: at least 1".into()),
            n => n.unwrap_or(256),
        };
        let rate = f.rate_per_sec.unwrap_or(DEFAULT_RATE_PER_SEC);
        if !(rate.is_finite() && rate > 0.0) {
            return Err("introspection.rate_per_sec: a positive number".into());
        }
        let burst = match f.burst {
            Some(0) => return Err("introspection.burst: at least 1".into()),
            b => b.unwrap_or(DEFAULT_BURST),
        };
        if f.clients.is_empty() {
            return Err("introspection.clients: at least one client (nobody could ask otherwise)".into());
        }
        let mut clients: Vec<Client> = Vec::with_capacity(f.clients.len());
        for (i, c) in f.clients.into_iter().enumerate() {
            let field = format!("introspection.clients[{i}]");
            if c.id.is_empty()
                || c.id.len() > 128
                || !c.id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Err(format!("{field}.id: 1 to 128 characters of A-Z a-z 0-9 . _ -"));
            }
            let secret = match (&c.secret_file, &c.secret_env) {
                (Some(p), None) => std::fs::read_to_string(p)
                    .map_err(|e| format!("{field}.secret_file: cannot read {}: {e}", p.display()))?
                    .trim()
                    .to_string(),
                (None, Some(var)) => std::env::var(var).map_err(|_| format!("{field}.secret_env: {var} is not set"))?,
                _ => return Err(format!("{field}: exactly one of secret_file and secret_env")),
            };
            if secret.len() < 16 || !secret.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "{field}: the secret must be at least 16 visible ASCII characters"
                ));
            }
            if clients.iter().any(|o| o.id == c.id) {
                return Err(format!("{field}.id: {:?} is listed twice", c.id));
            }
            // A bearer secret names its client: two alike would be one.
            if clients.iter().any(|o| o.secret == secret) {
                return Err(format!("{field}: the secret is another client's"));
            }
            clients.push(Client { id: c.id, secret });
        }
        let limiter = Arc::new(RateLimiter::new(clients.len(), rate, burst));
        let jwt = jwt_signer(
            f.jwt_response,
            f.issuer,
            f.signing_key,
            f.previous_signing_key,
            assertion,
        )?;
        Ok(IntrospectionConfig {
            listen,
            path,
            max_body_bytes,
            max_connections,
            clients,
            limiter,
            jwt,
            counters: OnceLock::new(),
        })
    }

    /// Client `i`'s counters in `stats`.
    fn counters(&self, stats: &super::stats::Stats) -> &[Arc<ClientCounters>] {
        self.counters.get_or_init(|| {
            self.clients
                .iter()
                .map(|c| stats.introspection().client(&c.id))
                .collect()
        })
    }

    /// The client a request's `Authorization` header authenticates, if any:
    /// `Bearer <secret>` or `Basic base64(id:secret)` (RFC 7662 §2.1, the
    /// client credentials of RFC 6749 §2.3.1, each form-urlencoded).
    /// Secrets are compared in constant time, and a bearer secret against
    /// every client's, so the time taken does not say which one matched.
    pub fn authenticate(&self, authorization: &[u8]) -> Option<usize> {
        let (scheme, rest) = split_scheme(authorization)?;
        if scheme.eq_ignore_ascii_case(b"bearer") {
            let mut found = None;
            for (i, c) in self.clients.iter().enumerate() {
                if constant_time_eq(rest, c.secret.as_bytes()) {
                    found = Some(i);
                }
            }
            found
        } else if scheme.eq_ignore_ascii_case(b"basic") {
            let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
            let colon = decoded.iter().position(|&b| b == b':')?;
            let id = form_decode(&decoded[..colon])?;
            let secret = form_decode(&decoded[colon + 1..])?;
            // Every client's secret is compared, whatever the id names, so
            // the time taken says nothing about which ids exist.
            let mut found = None;
            for (i, c) in self.clients.iter().enumerate() {
                if constant_time_eq(secret.as_bytes(), c.secret.as_bytes()) & (c.id == id) {
                    found = Some(i);
                }
            }
            found
        } else {
            None
        }
    }
}

/// The RFC 9701 signer, when `jwt_response` is on (errors name the field).
fn jwt_signer(
    on: bool,
    issuer: Option<String>,
    current: Option<KeyFile>,
    previous: Option<KeyFile>,
    assertion: Option<&super::assertion::AssertionConfig>,
) -> Result<Option<Arc<JwtSigner>>, String> {
    if !on {
        if current.is_some() || previous.is_some() || issuer.is_some() {
            return Err(
                "introspection.signing_key, previous_signing_key and issuer are used only with jwt_response = true"
                    .into(),
            );
        }
        return Ok(None);
    }
    let Some(current) = current else {
        return Err(
            "introspection.signing_key: jwt_response = true needs a key (kid, pem_file: Ed25519 PKCS#8)".into(),
        );
    };
    let issuer = match issuer.or_else(|| assertion.map(|a| a.minter.name().to_string())) {
        Some(i) if !i.is_empty() => i,
        _ => return Err("introspection.issuer: the signed answers' iss (default: assertion.name)".into()),
    };
    let (pair, jwk) = JwtSigner::load("introspection.signing_key", &current)?;
    let mut jwks = vec![jwk];
    if let Some(p) = &previous {
        if p.kid == current.kid {
            return Err("introspection.previous_signing_key.kid: the same as signing_key's".into());
        }
        jwks.push(JwtSigner::load("introspection.previous_signing_key", p)?.1);
    }
    // One kid, one key, across everything the JWKS publishes.
    if let Some(a) = assertion {
        let theirs = a.minter.jwks();
        for k in &jwks {
            let clash = theirs["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| o["kid"] == k["kid"] && o["x"] != k["x"]);
            if clash {
                return Err(format!(
                    "introspection.signing_key: kid {} is an assertion key's, with another key",
                    k["kid"]
                ));
            }
        }
    }
    let header = json!({"alg": "EdDSA", "typ": JWT_TYP, "kid": current.kid});
    let mut header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
    header_b64.push('.');
    Ok(Some(Arc::new(JwtSigner {
        issuer,
        kid: current.kid,
        pair,
        header_b64,
        jwks,
    })))
}

/// Whether the `Accept` headers prefer the signed answer: the RFC 9701
/// type with a higher quality than any range that admits JSON
/// (`application/json`, `application/*`, `*/*`). Only an exact type asks
/// for it (`*/*` never does).
pub fn wants_jwt(headers: &hyper::HeaderMap) -> bool {
    let mut jwt = 0.0_f32;
    let mut json = 0.0_f32;
    for value in headers.get_all("accept") {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .filter(|q| (0.0..=1.0).contains(q))
                .unwrap_or(1.0);
            if media.eq_ignore_ascii_case(JWT_MEDIA_TYPE) {
                jwt = jwt.max(q);
            } else if media.eq_ignore_ascii_case("application/json")
                || media.eq_ignore_ascii_case("application/*")
                || media == "*/*"
            {
                json = json.max(q);
            }
        }
    }
    jwt > 0.0 && jwt >= json
}

/// `scheme SP credentials`, the credentials without surrounding spaces.
fn split_scheme(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let sp = v.iter().position(|&b| b == b' ')?;
    let rest = v[sp + 1..].trim_ascii();
    (!rest.is_empty()).then_some((&v[..sp], rest))
}

/// A token bucket per client: `burst` requests at once, refilled at `rate`
/// per second.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Vec<Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// Full buckets for `clients` clients.
    pub fn new(clients: usize, rate: f64, burst: u32) -> RateLimiter {
        let now = Instant::now();
        RateLimiter {
            rate,
            burst: f64::from(burst),
            buckets: (0..clients)
                .map(|_| {
                    Mutex::new(Bucket {
                        tokens: f64::from(burst),
                        at: now,
                    })
                })
                .collect(),
        }
    }

    /// Take one request from client `i`'s bucket at `now`; when it is
    /// empty, how long until it holds one.
    pub fn take(&self, i: usize, now: Instant) -> Result<(), Duration> {
        let Some(bucket) = self.buckets.get(i) else {
            return Err(Duration::from_secs(1));
        };
        let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(((1.0 - b.tokens) / self.rate).min(86_400.0)))
        }
    }
}

/// Answer one request on the introspection listener.
pub async fn handle(app: &App, req: Request<Incoming>) -> Resp {
    let state = app.state.load_full();
    // The clients of the current configuration: a reload can rotate
    // secrets, or switch introspection off (then every request is refused).
    let Some(cfg) = &state.config.introspection else {
        return answer(StatusCode::NOT_FOUND, json!({"error": "introspection is disabled"}));
    };
    let counters = cfg.counters(&app.stats);
    let mut auth = req.headers().get_all("authorization").iter();
    let client = match (auth.next(), auth.next()) {
        (Some(v), None) => cfg.authenticate(v.as_bytes()),
        _ => None,
    };
    let Some(client) = client else {
        // Nothing about the token, and nothing verified.
        app.stats.introspection().unauthenticated();
        let mut resp = answer(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
        let h = resp.headers_mut();
        h.append(
            "www-authenticate",
            HeaderValue::from_static("Basic realm=\"jwtwarden-introspection\""),
        );
        h.append(
            "www-authenticate",
            HeaderValue::from_static("Bearer realm=\"jwtwarden-introspection\""),
        );
        return resp;
    };
    let id = &cfg.clients[client].id;
    let counter = &counters[client];
    counter.count(ClientEvent::Request);
    if let Err(wait) = cfg.limiter.take(client, Instant::now()) {
        counter.count(ClientEvent::RateLimited);
        log::warn!("introspection: client {id}: rate limited");
        let mut resp = answer(StatusCode::TOO_MANY_REQUESTS, json!({"error": "rate_limited"}));
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        resp.headers_mut().insert("retry-after", HeaderValue::from(secs.max(1)));
        return resp;
    }
    if req.uri().path() != cfg.path {
        return answer(StatusCode::NOT_FOUND, json!({"error": "not found"}));
    }
    if req.method() != Method::POST {
        let mut resp = answer(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "use POST"}));
        resp.headers_mut().insert("allow", HeaderValue::from_static("POST"));
        return resp;
    }
    let form = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"error": "invalid_request", "error_description": "application/x-www-form-urlencoded"}),
        );
    }
    // Signed only for this authenticated client, and only if it asks.
    let signer = cfg.jwt.as_deref().filter(|_| wants_jwt(req.headers()));
    let reply = |body: Value| match signer {
        Some(s) => signed(s, id, body),
        None => answer(StatusCode::OK, body),
    };
    let too_large = || {
        answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": "invalid_request", "error_description": "body too large"}),
        )
    };
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cfg.max_body_bytes as u64) {
        return too_large();
    }
    let body = match Limited::new(req.into_body(), cfg.max_body_bytes).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(_) => return answer(StatusCode::BAD_REQUEST, json!({"error": "invalid_request"})),
    };
    let Some(token) = token_param(&body) else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "one token parameter"}),
        );
    };
    let opts = VerifyOptions::default();
    // A hit never blocks: answered on the runtime thread, as forward auth
    // does. A miss may wait for a key fetch: on the blocking pool.
    let result = match state.verifier.verify_cached(&token, &opts) {
        Some(v) => Ok(v),
        None => {
            let verifier = state.verifier.clone();
            tokio::task::spawn_blocking(move || verifier.verify_with(token.as_bytes(), &VerifyOptions::default()))
                .await
                .unwrap_or_else(|e| {
                    Err(jwtwarden::Error::new(
                        jwtwarden::ErrorKind::Internal,
                        format!("verification task failed: {e}"),
                    ))
                })
        }
    };
    let cached_header = state.config.cached_header.clone();
    match result {
        Ok(v) => {
            counter.count(ClientEvent::Active);
            let mut resp = reply(active(&v));
            if let Some(name) = cached_header {
                let value = HeaderValue::from_static(if v.cached() { "true" } else { "false" });
                resp.headers_mut().insert(name, value);
            }
            resp
        }
        Err(e) => match e.category() {
            Category::Malformed | Category::Verification | Category::Policy => {
                // The kind, for the operator; never the token, never to
                // the client.
                log::info!("introspection: client {id}: inactive ({})", e.kind().as_str());
                counter.count(ClientEvent::Inactive);
                reply(json!({"active": false}))
            }
            Category::KeysUnavailable => {
                log::warn!("introspection: client {id}: cannot decide ({})", e.kind().as_str());
                let mut resp = answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "temporarily_unavailable"}),
                );
                resp.headers_mut()
                    .insert("retry-after", HeaderValue::from(state.config.policy.retry_after_secs()));
                resp
            }
            Category::Usage | Category::Internal => {
                log::error!("introspection: client {id}: cannot decide ({})", e.kind().as_str());
                answer(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "server_error"}))
            }
        },
    }
}

/// `{"active": true, <the verified claims>, "token_type": "Bearer"}`. A
/// `scope` array is written space-separated, as RFC 7662 §2.2 has it.
/// `active` and `token_type` are this server's, whatever the token says.
fn active(v: &Verified) -> Value {
    let mut out = Map::with_capacity(v.claims().len() + 2);
    out.insert("active".into(), Value::Bool(true));
    for (k, val) in v.claims() {
        if k == "active" || k == "token_type" {
            continue;
        }
        let val = match (k.as_str(), val) {
            ("scope", Value::Array(items)) if items.iter().all(Value::is_string) => {
                Value::String(items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
            }
            _ => val.clone(),
        };
        out.insert(k.clone(), val);
    }
    out.insert("token_type".into(), Value::String("Bearer".into()));
    Value::Object(out)
}

/// The one `token` parameter of a form body. `token_type_hint` and any
/// other parameter are ignored (RFC 7662 §2.1 allows it); a repeated
/// `token`, or one that does not decode, is none (RFC 6749 §3.1: a
/// parameter is sent at most once).
fn token_param(body: &[u8]) -> Option<String> {
    let mut token = None;
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        if form_decode(name)? == "token" {
            if token.is_some() {
                return None;
            }
            token = Some(form_decode(value)?);
        }
    }
    token
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a
/// byte; the result must be UTF-8. A bad escape is `None`.
fn form_decode(s: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Every introspection answer: JSON, never stored (RFC 7662 §4 leaves
/// caching to the server; an answer about a revoked token must not be
/// replayed by an intermediary).
fn answer(status: StatusCode, body: Value) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    h.insert("pragma", HeaderValue::from_static("no-cache"));
    resp
}

/// A signed answer (RFC 9701 §5): the JWS as the body, never stored.
fn signed(signer: &JwtSigner, client_id: &str, body: Value) -> Resp {
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut resp = Response::new(Full::new(Bytes::from(signer.sign(client_id, body, iat))));
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static(JWT_MEDIA_TYPE));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    h.insert("pragma", HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Result<IntrospectionConfig, String> {
        #[derive(Deserialize)]
        struct Wrap {
            introspection: IntrospectionFile,
        }
        let w: Wrap = toml::from_str(toml).map_err(|e| e.to_string())?;
        IntrospectionConfig::from_file(w.introspection, None)
    }

    fn two_clients() -> IntrospectionConfig {
        std::env::set_var("JWTWARDEN_UNIT_INTROSPECT_A", "secret-of-client-a-0001");
        std::env::set_var("JWTWARDEN_UNIT_INTROSPECT_B", "secret-of-client-b-0002");
        config(
            "[introspection]\nlisten = \"127.0.0.1:0\"\n\
             [[introspection.clients]]\nid = \"orders\"\nsecret_env = \"JWTWARDEN_UNIT_INTROSPECT_A\"\n\
             [[introspection.clients]]\nid = \"billing\"\nsecret_env = \"JWTWARDEN_UNIT_INTROSPECT_B\"\n",
        )
        .unwrap()
    }

    fn basic(id: &str, secret: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        )
        .into_bytes()
    }

    #[test]
    fn clients_authenticate_by_bearer_or_basic() {
        let c = two_clients();
        assert_eq!(c.authenticate(b"Bearer secret-of-client-b-0002"), Some(1));
        assert_eq!(c.authenticate(b"bearer secret-of-client-a-0001"), Some(0));
        assert_eq!(c.authenticate(&basic("orders", "secret-of-client-a-0001")), Some(0));
        // Another client's secret under this id, a prefix, a wrong id.
        assert_eq!(c.authenticate(&basic("orders", "secret-of-client-b-0002")), None);
        assert_eq!(c.authenticate(&basic("orders", "secret-of-client-a-000")), None);
        assert_eq!(c.authenticate(&basic("nobody", "secret-of-client-a-0001")), None);
        assert_eq!(c.authenticate(b"Bearer secret-of-client-a-000"), None);
        assert_eq!(c.authenticate(b"Bearer "), None);
        assert_eq!(c.authenticate(b"Basic !!!"), None);
        assert_eq!(c.authenticate(b"Digest secret-of-client-a-0001"), None);
        // RFC 6749 §2.3.1: the Basic parts are form-urlencoded.
        assert_eq!(c.authenticate(&basic("orders", "secret%2Dof-client-a-0001")), Some(0));
    }

    #[test]
    fn config_errors_name_the_field() {
        std::env::set_var("JWTWARDEN_UNIT_INTROSPECT_SHORT", "short");
        let e = config(
            "[introspection]\nlisten = \"127.0.0.1:0\"\n[[introspection.clients]]\nid = \"a\"\nsecret_env = \"JWTWARDEN_UNIT_INTROSPECT_SHORT\"\n",
        )
        .unwrap_err();
        assert!(e.contains("16"), "{e}");
        let e = config("[introspection]\nlisten = \"127.0.0.1:0\"\n").unwrap_err();
        assert!(e.starts_with("introspection.clients"), "{e}");
        std::env::set_var("JWTWARDEN_UNIT_INTROSPECT_C", "secret-of-client-c-0003");
        let e = config(
            "[introspection]\nlisten = \"127.0.0.1:0\"\n\
             [[introspection.clients]]\nid = \"a\"\nsecret_env = \"JWTWARDEN_UNIT_INTROSPECT_C\"\n\
             [[introspection.clients]]\nid = \"b\"\nsecret_env = \"JWTWARDEN_UNIT_INTROSPECT_C\"\n",
        )
        .unwrap_err();
        assert!(e.contains("another client's"), "{e}");
        let e = config(
            "[introspection]\nlisten = \"127.0.0.1:0\"\nrate_per_sec = 0.0\n\
             [[introspection.clients]]\nid = \"a\"\nsecret_env = \"JWTWARDEN_UNIT_INTROSPECT_C\"\n",
        )
        .unwrap_err();
        assert!(e.starts_with("introspection.rate_per_sec"), "{e}");
        let e = config(
            "[introspection]\nlisten = \"127.0.0.1:0\"\n[[introspection.clients]]\nid = \"a:b\"\nsecret_env = \"JWTWARDEN_UNIT_INTROSPECT_C\"\n",
        )
        .unwrap_err();
        assert!(e.contains(".id"), "{e}");
        let c = two_clients();
        assert!(!format!("{c:?}").contains("secret-of"), "secrets never printed");
    }

    #[test]
    fn the_token_parameter_is_read_once() {
        assert_eq!(token_param(b"token=a.b.c").as_deref(), Some("a.b.c"));
        assert_eq!(
            token_param(b"token_type_hint=access_token&token=a%2Eb.c+d").as_deref(),
            Some("a.b.c d")
        );
        assert_eq!(token_param(b"token=a&token=b"), None);
        assert_eq!(token_param(b"tok=a"), None);
        assert_eq!(token_param(b"token=%zz"), None);
        assert_eq!(token_param(b"token=%ff"), None, "not UTF-8");
        assert_eq!(token_param(b"token=").as_deref(), Some(""));
    }

    #[test]
    fn only_an_exact_preferred_jwt_type_asks_for_a_signed_answer() {
        let accept = |values: &[&str]| {
            let mut h = hyper::HeaderMap::new();
            for v in values {
                h.append("accept", HeaderValue::from_str(v).unwrap());
            }
            wants_jwt(&h)
        };
        assert!(accept(&["application/token-introspection+jwt"]));
        assert!(accept(&["Application/Token-Introspection+JWT; charset=utf-8"]));
        assert!(accept(&["application/json;q=0.5, application/token-introspection+jwt"]));
        assert!(
            accept(&["application/json", "application/token-introspection+jwt"]),
            "a tie"
        );
        assert!(!accept(&[]));
        assert!(!accept(&["*/*"]));
        assert!(!accept(&["application/*"]));
        assert!(!accept(&["application/json"]));
        assert!(!accept(&["application/token-introspection+jwt;q=0"]));
        assert!(!accept(&["application/token-introspection+jwt;q=0.1, */*"]));
        assert!(!accept(&["application/jwt", "application/token-introspection+jwtx"]));
    }

    #[test]
    fn buckets_refill_at_the_rate() {
        let l = RateLimiter::new(2, 2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take(0, t0).is_ok());
        }
        let wait = l.take(0, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(l.take(1, t0).is_ok(), "one client's bucket is its own");
        assert!(l.take(0, t0 + Duration::from_millis(500)).is_ok());
        assert!(l.take(0, t0 + Duration::from_millis(500)).is_err());
        // Never more than the burst, however long idle.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(l.take(0, later).is_ok());
        }
        assert!(l.take(0, later).is_err());
    }

    /// The serve file docs/trust-handoff.md shows loads as written.
    #[test]
    fn the_documented_introspection_config_loads() {
        let doc = include_str!("../../../docs/trust-handoff.md");
        let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let block = &doc[start..start + doc[start..].find("```").unwrap()];
        std::env::set_var("JWTWARDEN_INTROSPECT_ORDERS", "orders-api-secret-0123456789");
        let dir = tempfile::tempdir().unwrap();
        let block = block.replace("/etc/jwtwarden/", &format!("{}/", dir.path().display()));
        std::fs::write(dir.path().join("introspect-billing"), "billing-api-secret-0123456789\n").unwrap();
        let c = super::super::config::ServeConfig::from_toml_str(&block)
            .unwrap_or_else(|e| panic!("docs/trust-handoff.md: {e}"));
        let i = c.introspection.expect("introspection configured");
        assert_eq!(i.clients.len(), 2);
        assert_eq!(i.path, "/introspect");
    }
}
