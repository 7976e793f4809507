//! The shared issuer state and the tiny_http server that serves it.
//!
//! One listener thread receives requests from tiny_http and hands each one to a
//! thread of its own, so a delayed response never blocks other requests.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::{json, Value};
use tiny_http::{Header, Request, Response, Server};

use crate::fault::{self, Fault};
use crate::keys::{self, KeyEntry};
use crate::{sock, Alg};

/// Default path of the JWKS document (see [`Shared::jwks_path`]).
pub(crate) const JWKS_PATH: &str = "/jwks.json";
/// Path of the OIDC discovery document.
pub(crate) const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Path that redirects (302) to the JWKS on the same host.
pub(crate) const REDIRECT_PATH: &str = "/redirect-same-host";
/// Prefix of the hops of [`Fault::SlowRedirects`]: `/slow-redirect/<n><document path>`.
pub(crate) const SLOW_REDIRECT_PREFIX: &str = "/slow-redirect/";

/// Why `path` cannot be where the JWKS is served, if it cannot.
pub(crate) fn check_jwks_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.contains(['?', '#']) {
        return Err(format!("JWKS path {path:?} must start with '/' and have no query"));
    }
    if [DISCOVERY_PATH, REDIRECT_PATH, "/admin"].contains(&path)
        || path.starts_with("/admin/")
        || path.starts_with(SLOW_REDIRECT_PREFIX)
    {
        return Err(format!("JWKS path {path:?} is taken by another route"));
    }
    Ok(())
}

/// Response settings changed through the setters / admin API.
#[derive(Default)]
pub(crate) struct Config {
    pub(crate) fault: Fault,
    pub(crate) cache_control: Option<String>,
    pub(crate) expires: Option<String>,
    pub(crate) etag: bool,
    pub(crate) jwks_override: Option<String>,
    /// Where the JWKS is served and advertised; `None` means [`JWKS_PATH`].
    pub(crate) jwks_path: Option<String>,
    pub(crate) discovery_cache_control: Option<String>,
}

/// Request counters (admin requests are never counted).
#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) jwks: u64,
    /// The client end (address and port) of each JWKS request's connection,
    /// in order: which requests shared a keep-alive connection.
    pub(crate) jwks_peers: Vec<SocketAddr>,
    pub(crate) discovery: u64,
    pub(crate) total: u64,
    pub(crate) per_path: HashMap<String, u64>,
}

/// Everything the request handlers and the `TestIssuer` handle share.
pub(crate) struct Shared {
    pub(crate) url: String,
    pub(crate) addr: SocketAddr,
    admin: bool,
    pub(crate) keys: Mutex<Vec<KeyEntry>>,
    pub(crate) config: Mutex<Config>,
    pub(crate) counts: Mutex<Counts>,
    pub(crate) last_jwks_headers: Mutex<Vec<(String, String)>>,
    stopping: Mutex<bool>,
    stop_cv: Condvar,
    pub(crate) shutdown_requested: AtomicBool,
    /// Token Status Lists by path.
    pub(crate) status_lists: Mutex<HashMap<String, crate::status::Published>>,
}

impl Shared {
    /// Generates and publishes a key; returns its kid.
    pub(crate) fn add_key(&self, alg: Alg, fresh: bool) -> String {
        // Generate outside the lock (RSA can be slow) so serving is not held up.
        let used: HashSet<u64> = self.keys.lock().iter().map(KeyEntry::material_id).collect();
        let material = keys::material_for(alg, &used, fresh);
        let mut keys = self.keys.lock();
        let kid = loop {
            let kid = keys::random_kid();
            if !keys.iter().any(|k| k.kid == kid) {
                break kid;
            }
        };
        keys.push(KeyEntry::new(alg, material, kid.clone()));
        kid
    }

    /// Stops publishing `kid`; returns false if there is no such key.
    pub(crate) fn retire_key(&self, kid: &str) -> bool {
        let mut keys = self.keys.lock();
        match keys.iter_mut().find(|k| k.kid == kid) {
            Some(k) => {
                k.published = false;
                true
            }
            None => false,
        }
    }

    /// Kids of the published keys, in publication order.
    pub(crate) fn published_kids(&self) -> Vec<String> {
        let keys = self.keys.lock();
        keys.iter().filter(|k| k.published).map(|k| k.kid.clone()).collect()
    }

    /// Runs `f` on the key `kid` (published or retired).
    pub(crate) fn with_key<T>(&self, kid: &str, f: impl FnOnce(&KeyEntry) -> T) -> Option<T> {
        let keys = self.keys.lock();
        keys.iter().find(|k| k.kid == kid).map(f)
    }

    /// The generated JWKS document of the published keys.
    pub(crate) fn generated_jwks(&self) -> String {
        let keys = self.keys.lock();
        let set: Vec<&Value> = keys.iter().filter(|k| k.published).map(|k| k.jwk()).collect();
        json!({ "keys": set }).to_string()
    }

    /// The path the JWKS is served at now.
    pub(crate) fn jwks_path(&self) -> String {
        let c = self.config.lock();
        c.jwks_path.clone().unwrap_or_else(|| JWKS_PATH.to_string())
    }

    /// The OIDC discovery document, advertising the current JWKS path.
    pub(crate) fn discovery_doc(&self) -> String {
        json!({ "issuer": self.url, "jwks_uri": format!("{}{}", self.url, self.jwks_path()) }).to_string()
    }

    /// `{"iss": url, "aud": "api", "sub", "iat", "nbf", "exp": now+3600, "jti"}`.
    pub(crate) fn default_claims(&self, sub: &str, now: u64) -> Value {
        let jti: String = (0..16).map(|_| format!("{:02x}", fastrand::u8(..))).collect();
        json!({
            "iss": self.url, "aud": "api", "sub": sub,
            "iat": now, "nbf": now, "exp": now + 3600, "jti": jti,
        })
    }

    /// Signs `claims` with `header` using `kid`'s key, or `None` if there is no such key.
    pub(crate) fn mint(&self, kid: &str, header: Option<&Value>, claims: &Value) -> Option<String> {
        self.with_key(kid, |k| match header {
            Some(h) => k.sign(h, claims),
            None => k.sign(&json!({ "alg": k.alg.as_str(), "typ": "JWT", "kid": k.kid }), claims),
        })
    }

    /// Zeroes all request counters.
    pub(crate) fn reset_counts(&self) {
        *self.counts.lock() = Counts::default();
    }

    fn is_stopping(&self) -> bool {
        *self.stopping.lock()
    }

    /// Blocks until the issuer stops.
    fn wait_until_stopping(&self) {
        let mut stopping = self.stopping.lock();
        while !*stopping {
            self.stop_cv.wait(&mut stopping);
        }
    }

    /// Sleeps for `d`, returning early with `false` if the issuer stops meanwhile.
    fn sleep_unless_stopping(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut stopping = self.stopping.lock();
        while !*stopping {
            if self.stop_cv.wait_until(&mut stopping, deadline).timed_out() {
                return !*stopping;
            }
        }
        false
    }
}

/// A running tiny_http server plus its listener thread.
pub(crate) struct Running {
    shared: Arc<Shared>,
    server: Option<Arc<Server>>,
    thread: Option<JoinHandle<()>>,
}

/// Binds `127.0.0.1:port` and starts serving `shared`'s state.
pub(crate) fn start(port: u16, admin: bool) -> io::Result<(Arc<Shared>, Running)> {
    let server = Server::http(("127.0.0.1", port)).map_err(io::Error::other)?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| io::Error::other("tiny_http did not bind an IP address"))?;
    let shared = Arc::new(Shared {
        url: format!("http://127.0.0.1:{}", addr.port()),
        addr,
        admin,
        keys: Mutex::new(Vec::new()),
        config: Mutex::new(Config::default()),
        counts: Mutex::new(Counts::default()),
        last_jwks_headers: Mutex::new(Vec::new()),
        stopping: Mutex::new(false),
        stop_cv: Condvar::new(),
        shutdown_requested: AtomicBool::new(false),
        status_lists: Mutex::new(HashMap::new()),
    });
    let server = Arc::new(server);
    let thread = {
        let (shared, server) = (shared.clone(), server.clone());
        std::thread::Builder::new()
            .name(format!("testissuer-{}", addr.port()))
            .spawn(move || listen(&shared, &server))?
    };
    let running = Running {
        shared: shared.clone(),
        server: Some(server),
        thread: Some(thread),
    };
    Ok((shared, running))
}

impl Running {
    /// Stops the server: no new connections are accepted once this returns, open
    /// connections (idle keep-alive ones included) are shut down, and requests waiting
    /// on a [`Fault::Delay`] have their connections dropped.
    pub(crate) fn stop(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        *self.shared.stopping.lock() = true;
        self.shared.stop_cv.notify_all();
        server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Dropping the last handle makes tiny_http's accept thread exit and close the
        // listener, but asynchronously: wait (briefly) until connections are refused.
        drop(server);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline
            && std::net::TcpStream::connect_timeout(&self.shared.addr, Duration::from_millis(100)).is_ok()
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        sock::shutdown_server_connections(self.shared.addr);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

fn listen(shared: &Arc<Shared>, server: &Server) {
    loop {
        match server.recv() {
            Ok(rq) => {
                if shared.is_stopping() {
                    drop_connection(shared, rq);
                    continue;
                }
                let shared = shared.clone();
                // If the spawn fails the request is dropped and tiny_http answers 500.
                let _ = std::thread::Builder::new()
                    .name("testissuer-request".into())
                    .spawn(move || handle(&shared, rq));
            }
            Err(_) if shared.is_stopping() => return,
            Err(_) => {}
        }
    }
}

fn handle(shared: &Shared, rq: Request) {
    let path = rq.url().split(['?', '#']).next().unwrap_or_default().to_string();
    if shared.admin && (path == "/admin" || path.starts_with("/admin/")) {
        crate::admin::handle(shared, rq, &path);
        return;
    }
    let jwks_path = shared.jwks_path();
    {
        let mut c = shared.counts.lock();
        c.total += 1;
        *c.per_path.entry(path.clone()).or_default() += 1;
        if path == jwks_path {
            c.jwks += 1;
            c.jwks_peers.extend(rq.remote_addr().copied());
        } else if path == DISCOVERY_PATH {
            c.discovery += 1;
        }
    }
    match path.as_str() {
        p if p == jwks_path => {
            *shared.last_jwks_headers.lock() = rq
                .headers()
                .iter()
                .map(|h| {
                    (
                        h.field.as_str().as_str().to_ascii_lowercase(),
                        h.value.as_str().to_string(),
                    )
                })
                .collect();
            serve_with_fault(shared, rq, true);
        }
        DISCOVERY_PATH => serve_with_fault(shared, rq, false),
        REDIRECT_PATH => {
            let location = format!("{}{}", shared.url, jwks_path);
            respond(rq, redirect(&location));
        }
        p if p.starts_with(SLOW_REDIRECT_PREFIX) => slow_redirect_hop(shared, rq, p, &jwks_path),
        p if shared.status_lists.lock().contains_key(p) => serve_status_list(shared, rq, p),
        _ => not_found(rq),
    }
}

fn not_found(rq: Request) {
    respond(rq, json_response(404, json!({"error": "not found"}).to_string()));
}

/// Hop `n` of a [`Fault::SlowRedirects`] chain for the document at `target`
/// (path `/slow-redirect/<n><target>`). Without that fault (any more) it serves the
/// document at once, so a chain cut short by `set_fault` still ends normally.
fn slow_redirect_hop(shared: &Shared, rq: Request, path: &str, jwks_path: &str) {
    let rest = &path[SLOW_REDIRECT_PREFIX.len()..];
    let Some((n, target)) = rest
        .split_once('/')
        .and_then(|(n, t)| Some((n.parse::<u32>().ok()?, format!("/{t}"))))
    else {
        return not_found(rq);
    };
    let jwks = if target == jwks_path {
        true
    } else if target == DISCOVERY_PATH {
        false
    } else {
        return not_found(rq);
    };
    let fault = shared.config.lock().fault.clone();
    if let Fault::SlowRedirects { hops, delay } = fault {
        if !shared.sleep_unless_stopping(delay) {
            return drop_connection(shared, rq);
        }
        if n < hops {
            return respond(rq, redirect(&slow_hop_url(shared, n + 1, &target)));
        }
    }
    serve_normal(shared, rq, jwks, false);
}

fn slow_hop_url(shared: &Shared, n: u32, target: &str) -> String {
    format!("{}{SLOW_REDIRECT_PREFIX}{n}{target}", shared.url)
}

fn serve_with_fault(shared: &Shared, rq: Request, jwks: bool) {
    let fault = shared.config.lock().fault.clone();
    match fault {
        Fault::None => serve_normal(shared, rq, jwks, false),
        Fault::Status(code) => {
            let body = json!({"error": "injected fault", "status": code}).to_string();
            respond(rq, json_response(code, body));
        }
        Fault::Delay(d) => {
            if shared.sleep_unless_stopping(d) {
                serve_normal(shared, rq, jwks, false);
            } else {
                drop_connection(shared, rq);
            }
        }
        Fault::Drop => drop_connection(shared, rq),
        Fault::Oversized(size) => {
            let doc = if jwks {
                current_jwks(shared)
            } else {
                shared.discovery_doc()
            };
            respond(rq, json_response(200, fault::oversized_body(&doc, size)));
        }
        Fault::InvalidJson => respond(rq, json_response(200, fault::INVALID_JSON_BODY)),
        Fault::RedirectTo(location) => respond(rq, redirect(&location)),
        Fault::StatusRetryAfter(code, retry_after) => {
            let body = json!({"error": "injected fault", "status": code}).to_string();
            let mut resp = json_response(code, body);
            if let Ok(h) = Header::from_bytes(&b"Retry-After"[..], retry_after.as_bytes()) {
                resp.add_header(h);
            }
            respond(rq, resp);
        }
        Fault::NotModified => serve_normal(shared, rq, jwks, true),
        Fault::Hang => {
            shared.wait_until_stopping();
            drop_connection(shared, rq);
        }
        Fault::SlowRedirects { hops, delay } => {
            if !shared.sleep_unless_stopping(delay) {
                return drop_connection(shared, rq);
            }
            if hops == 0 {
                return serve_normal(shared, rq, jwks, false);
            }
            let target = if jwks {
                shared.jwks_path()
            } else {
                DISCOVERY_PATH.to_string()
            };
            respond(rq, redirect(&slow_hop_url(shared, 1, &target)));
        }
    }
}

fn current_jwks(shared: &Shared) -> String {
    let over = shared.config.lock().jwks_override.clone();
    over.unwrap_or_else(|| shared.generated_jwks())
}

/// Serves the document; with `force_not_modified`, a `304` whatever the request sent.
fn serve_normal(shared: &Shared, rq: Request, jwks: bool, force_not_modified: bool) {
    if !jwks {
        let cache_control = shared.config.lock().discovery_cache_control.clone();
        let mut resp = if force_not_modified {
            Response::from_data(Vec::new()).with_status_code(304)
        } else {
            json_response(200, shared.discovery_doc())
        };
        if let Some(h) = cache_control.and_then(|v| Header::from_bytes(&b"Cache-Control"[..], v.as_bytes()).ok()) {
            resp.add_header(h);
        }
        respond(rq, resp);
        return;
    }
    let body = current_jwks(shared);
    let (cache_control, expires, etag_enabled) = {
        let c = shared.config.lock();
        (c.cache_control.clone(), c.expires.clone(), c.etag)
    };
    let etag = etag_enabled.then(|| etag_of(&body));
    let not_modified = force_not_modified || etag.as_deref().is_some_and(|tag| client_has(&rq, tag));
    let resp = if not_modified {
        Response::from_data(Vec::new()).with_status_code(304)
    } else {
        json_response(200, body)
    };
    let resp = with_headers(
        resp,
        [("Cache-Control", cache_control), ("Expires", expires), ("ETag", etag)],
    );
    respond(rq, resp);
}

/// A strong ETag for `body`.
fn etag_of(body: &str) -> String {
    format!("\"{:016x}\"", fnv1a(body.as_bytes()))
}

/// Whether the request's `If-None-Match` names `tag`.
fn client_has(rq: &Request, tag: &str) -> bool {
    rq.headers()
        .iter()
        .filter(|h| h.field.equiv("If-None-Match"))
        .any(|h| if_none_match_matches(h.value.as_str(), tag))
}

/// `resp` with each header whose value is set.
fn with_headers<const N: usize>(
    mut resp: Response<std::io::Cursor<Vec<u8>>>,
    headers: [(&str, Option<String>); N],
) -> Response<std::io::Cursor<Vec<u8>>> {
    for (name, value) in headers {
        if let Some(v) = value {
            if let Ok(h) = Header::from_bytes(name.as_bytes(), v.as_bytes()) {
                resp.add_header(h);
            }
        }
    }
    resp
}

/// Serves the Status List Token at `path`, with its own fault, cache headers and ETag.
fn serve_status_list(shared: &Shared, rq: Request, path: &str) {
    let Some((body, options)) = shared.status_list_body(path) else {
        return not_found(rq);
    };
    match options.fault {
        Fault::None => {}
        Fault::Status(code) => {
            return respond(rq, json_response(code, json!({"error": "injected fault"}).to_string()));
        }
        Fault::Delay(d) => {
            if !shared.sleep_unless_stopping(d) {
                return drop_connection(shared, rq);
            }
        }
        Fault::Hang => {
            shared.wait_until_stopping();
            return drop_connection(shared, rq);
        }
        Fault::RedirectTo(location) => return respond(rq, redirect(&location)),
        Fault::StatusRetryAfter(code, retry_after) => {
            let mut resp = json_response(code, json!({"error": "injected fault"}).to_string());
            if let Ok(h) = Header::from_bytes(&b"Retry-After"[..], retry_after.as_bytes()) {
                resp.add_header(h);
            }
            return respond(rq, resp);
        }
        _ => return drop_connection(shared, rq),
    }
    let etag = options.etag.then(|| etag_of(&body));
    let not_modified = etag.as_deref().is_some_and(|tag| client_has(&rq, tag));
    let resp = if not_modified {
        Response::from_data(Vec::new()).with_status_code(304)
    } else {
        Response::from_data(body.into_bytes()).with_status_code(200)
    };
    let content_type = Some("application/statuslist+jwt".to_string());
    let resp = with_headers(
        resp,
        [
            ("Content-Type", content_type),
            ("Cache-Control", options.cache_control),
            ("ETag", etag),
        ],
    );
    respond(rq, resp);
}

impl Shared {
    /// The body served at the status list `path` now (signed on first
    /// request after a change), and its options.
    pub(crate) fn status_list_body(&self, path: &str) -> Option<(String, crate::status::StatusListOptions)> {
        let (claims, header_kid, typ, options) = {
            let lists = self.status_lists.lock();
            let list = lists.get(path)?;
            if let Some(body) = &list.options.body_override {
                return Some((body.clone(), list.options.clone()));
            }
            if let Some(signed) = &list.signed {
                return Some((signed.clone(), list.options.clone()));
            }
            let o = &list.options;
            let mut claims = json!({
                "iss": o.iss.clone().unwrap_or_else(|| self.url.clone()),
                "sub": o.sub.clone().unwrap_or_else(|| format!("{}{path}", self.url)),
                "iat": o.iat.unwrap_or_else(crate::now),
                "status_list": list.status_list(),
            });
            if let Some(ttl) = o.ttl {
                claims["ttl"] = json!(ttl);
            }
            if let Some(exp) = o.exp {
                claims["exp"] = json!(exp);
            }
            (claims, o.kid.clone(), o.typ.clone(), o.clone())
        };
        let kid = header_kid.or_else(|| self.published_kids().into_iter().next())?;
        let token = self.with_key(&kid, |k| {
            k.sign(&json!({"alg": k.alg.as_str(), "typ": typ, "kid": k.kid}), &claims)
        })?;
        let mut lists = self.status_lists.lock();
        let list = lists.get_mut(path)?;
        if list.options == options {
            list.signed = Some(token.clone());
        }
        Some((token, options))
    }
}

/// Whether an `If-None-Match` value (a list of entity tags or `*`) matches `tag` (weak comparison).
fn if_none_match_matches(value: &str, tag: &str) -> bool {
    value
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == tag)
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A JSON response with `Content-Type: application/json` and a `Content-Length`.
pub(crate) fn json_response(status: u16, body: impl Into<Vec<u8>>) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_data(body.into())
        .with_status_code(status)
        .with_header(content_type_json())
}

fn content_type_json() -> Header {
    Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).expect("valid header")
}

fn redirect(location: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    let resp = Response::from_data(Vec::new()).with_status_code(302);
    match Header::from_bytes(&b"Location"[..], location.as_bytes()) {
        Ok(h) => resp.with_header(h),
        Err(()) => resp,
    }
}

/// Sends `resp`, always with `Content-Length` (never chunked). Client-side errors are ignored.
pub(crate) fn respond(rq: Request, resp: Response<std::io::Cursor<Vec<u8>>>) {
    let _ = rq.respond(resp.with_chunked_threshold(usize::MAX));
}

/// Closes the request's connection without sending a response.
fn drop_connection(shared: &Shared, rq: Request) {
    if let Some(peer) = rq.remote_addr().copied() {
        sock::shutdown_connection(shared.addr, peer);
    }
    // Taking the writer means tiny_http will not send its automatic 500 on drop.
    drop(rq.into_writer());
}
