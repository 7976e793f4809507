//! The verification listener: the forward-auth endpoint, `/healthz` and
//! `/metrics`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use jwtwarden::{Error, ErrorKind, Health, Verified, VerifyOptions};

use jwtwarden::http::{Reason, Refusal, Route};

use super::config::{Forwarded, Offload, ServeConfig};
use super::App;

/// Every response this server sends.
pub type Resp = Response<Full<Bytes>>;

/// Answer one request on the verification listener.
pub async fn handle(app: &App, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let resp = match decide(app, &req) {
        Decision::Done(resp) => return resp,
        Decision::Auth(resp) => resp,
        Decision::Verify(pending) => pending.run().await,
    };
    // Serve's metrics count forward-auth answers only.
    app.stats.record(resp.status().as_u16(), started.elapsed());
    resp
}

/// What a request needs, decided without waiting on anything.
enum Decision {
    /// Not a forward-auth request: answered.
    Done(Resp),
    /// A forward-auth request answered at once (a cache hit, a refusal).
    Auth(Resp),
    /// A forward-auth request whose token the engine must verify.
    Verify(Pending),
}

/// Everything a verification off the runtime thread needs, owned.
struct Pending {
    state: Arc<super::State>,
    token: String,
    route: Route,
    /// The original (method, target) when the route carries an assertion.
    bind: Option<(String, String)>,
}

fn decide(app: &App, req: &Request<Incoming>) -> Decision {
    // One snapshot per request: a reload in the middle of it does not mix
    // the old routes with the new verifier. A guard, not a clone of the
    // `Arc`: no shared reference count is touched on the hit path.
    let state = app.state.load();
    let cfg = &state.config;
    // hyper's own bound (`max_buf_size`) is its read buffer, which one
    // large write can fill past the limit: the exact check is here.
    if head_size(req) > cfg.max_request_header_bytes {
        let mut resp = plain(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request header too large\n",
        );
        resp.headers_mut()
            .insert("connection", HeaderValue::from_static("close"));
        return Decision::Done(resp);
    }
    let path = req.uri().path();
    let is_auth = path == cfg.auth_path
        || cfg.forwarded == Forwarded::Envoy
            && path.starts_with(&cfg.auth_path)
            && path.as_bytes().get(cfg.auth_path.len()) == Some(&b'/');
    if is_auth {
        match authorize(&state, req) {
            Ok(resp) => Decision::Auth(resp),
            Err(miss) => {
                let (token, route, bind) = *miss;
                Decision::Verify(Pending {
                    state: arc_swap::Guard::into_inner(state),
                    token,
                    route,
                    bind,
                })
            }
        }
    } else if (path == cfg.health_path || path == cfg.metrics_path) && !is_read(req.method()) {
        Decision::Done(plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n"))
    } else if path == cfg.health_path {
        Decision::Done(health(&state))
    } else if path == cfg.metrics_path {
        Decision::Done(metrics(app, &state))
    } else {
        Decision::Done(plain(StatusCode::NOT_FOUND, "not found\n"))
    }
}

/// The size of a request head as sent, in bytes: the request line, each
/// field as `name: value` and CRLF, and the empty line. Whitespace around
/// a field value is not kept by the parser, so a value padded with spaces
/// counts as if sent with one; such a head is held only by hyper's buffer
/// bound (seen accepting up to 1.5 times the limit in one write).
fn head_size<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len());
    // "METHOD SP target SP HTTP/1.1 CRLF", fields, CRLF.
    let line = req.method().as_str().len() + 1 + target + 1 + "HTTP/1.1".len() + 2;
    let fields: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + 2 + v.len() + 2)
        .sum();
    line + fields + 2
}

/// The forward-auth decision for one request, when it needs no waiting:
/// a refusal, an open route, or (with the default `offload`) a cache hit.
/// Otherwise the token and route, for [`Pending::run`]. Every rule is the
/// core's HTTP decision (`jwtwarden::http`); this reads the request where
/// the proxy put it and writes the answer.
fn authorize(state: &super::State, req: &Request<Incoming>) -> Result<Resp, Box<(String, Route, Bind)>> {
    let cfg = &*state.config;
    let policy = &cfg.policy;
    let mut bind = None;
    let route = if policy.reads_request_line() {
        let (target, method) = match original_request(cfg, req) {
            Ok(t) => t,
            Err(reason) => return Ok(refused(cfg, &reason)),
        };
        let route = match policy.route(target.as_deref(), &method) {
            Ok(r) => r,
            Err(r) => return Ok(refusal_response(r)),
        };
        if !route.open
            && cfg
                .assertion
                .as_ref()
                .is_some_and(|a| a.audiences.contains_key(&route.prefix))
        {
            let Some(target) = target else {
                return Ok(refused(
                    cfg,
                    &Reason::UnsafePath("no original URI to bind the assertion to"),
                ));
            };
            bind = Some((method.into_owned(), target.into_owned()));
        }
        route
    } else {
        // Without routes or open methods the original request does not
        // matter: not read.
        jwtwarden::http::route::default_rules()
    };
    if route.open {
        return Ok(ok_response(None, None));
    }
    let headers = req.headers();
    let source = policy.token_source();
    let cookies = source
        .cookie
        .is_some()
        .then(|| headers.get_all("cookie"))
        .into_iter()
        .flatten()
        .map(HeaderValue::as_bytes);
    let token = match policy.token(
        headers
            .get_all(source.header.as_str())
            .iter()
            .map(HeaderValue::as_bytes),
        cookies,
    ) {
        Ok(t) => t,
        Err(r) => return Ok(refusal_response(r)),
    };
    if cfg.offload == Offload::Misses {
        let opts = VerifyOptions {
            issuer: route.issuer.as_deref(),
            fresh: route.fresh,
        };
        // A hit costs about as much as a hash lookup and never blocks: it
        // is answered here, on the runtime thread.
        if let Some(verified) = state.verifier.verify_cached(token, &opts) {
            return Ok(decide_verified(cfg, route, token, &verified, bind.as_ref()));
        }
    }
    Err(Box::new((token.to_string(), route.clone(), bind)))
}

/// The original (method, target) an assertion is bound to.
type Bind = Option<(String, String)>;

impl Pending {
    /// Verify with the engine, off the runtime thread unless `offload`
    /// says otherwise, and answer.
    async fn run(self) -> Resp {
        let Pending {
            state,
            token,
            route,
            bind,
        } = self;
        let cfg = &*state.config;
        let result = verify(&state, token.clone(), route.issuer.clone(), route.fresh, cfg.offload).await;
        match result {
            Ok(v) => decide_verified(cfg, &route, &token, &v, bind.as_ref()),
            Err(e) => {
                if e.category() == jwtwarden::Category::KeysUnavailable {
                    log::warn!("token {}: {e}", jwtwarden::fingerprint(token.as_bytes()));
                } else {
                    log::debug!("token {} refused: {e}", jwtwarden::fingerprint(token.as_bytes()));
                }
                refused(cfg, &Reason::Engine(&e))
            }
        }
    }
}

/// The answer for a token the engine accepted: the route's audience and
/// scope rules ([`HttpPolicy::judge`]), then 200 with the claim headers.
///
/// [`HttpPolicy::judge`]: jwtwarden::http::HttpPolicy::judge
fn decide_verified(
    cfg: &ServeConfig,
    route: &Route,
    token: &str,
    verified: &Verified,
    bind: Option<&(String, String)>,
) -> Resp {
    if let Err(r) = cfg.policy.judge(route, verified) {
        log::debug!(
            "token {} refused on route {}: {}",
            jwtwarden::fingerprint(token.as_bytes()),
            route.prefix,
            r.body
        );
        return refusal_response(r);
    }
    let mut resp = allow(cfg, verified);
    if let (Some(a), Some((method, target))) = (&cfg.assertion, bind) {
        let audience = a.audiences.get(&route.prefix).map(String::as_str).unwrap_or_default();
        let request = jwtwarden::assertion::Request { method, path: target };
        match a
            .minter
            .mint(verified, token.as_bytes(), audience, &request, route.fresh)
        {
            Ok(jws) => match HeaderValue::from_str(&jws) {
                Ok(v) => {
                    resp.headers_mut().insert(a.header.clone(), v);
                }
                Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "assertion not a header value"),
            },
            Err(e) => {
                log::debug!("token {}: no assertion: {e}", jwtwarden::fingerprint(token.as_bytes()));
                return refused(
                    cfg,
                    &Reason::UnsafePath("the original URI cannot be bound to an assertion"),
                );
            }
        }
    }
    resp
}

/// The allow answer: 200 with the claim headers and the cached header.
fn allow(cfg: &ServeConfig, verified: &Verified) -> Resp {
    let cached = cfg.cached_header.as_ref().map(|name| (name, verified.cached()));
    if cfg.policy.claim_mapping().is_empty() {
        return ok_response(None, cached);
    }
    // Built once per verified result and shared by its cache hits. The
    // claim headers belong to the serve configuration, which is swapped
    // together with the verifier (whose results start empty), so a result
    // never meets another configuration's headers.
    let headers = verified.token().memo(|t| ClaimHeaders::new(cfg, t.claims()));
    ok_response(Some(&headers), cached)
}

/// The response headers a verified result's claims map to: the core's
/// sanitised values, as hyper values once per result.
struct ClaimHeaders(Vec<(hyper::header::HeaderName, HeaderValue)>);

impl ClaimHeaders {
    fn new(cfg: &ServeConfig, claims: &serde_json::Map<String, serde_json::Value>) -> ClaimHeaders {
        let p = &cfg.policy;
        let built = jwtwarden::http::ClaimHeaders::new(p.claim_mapping(), claims, p.max_claim_header_bytes());
        ClaimHeaders(
            built
                .headers
                .into_iter()
                .filter_map(|(name, value)| {
                    // Both parts were checked (config time, header_value); a
                    // failure here drops the header rather than the request.
                    Some((
                        hyper::header::HeaderName::from_bytes(name.as_str().as_bytes()).ok()?,
                        HeaderValue::from_str(&value).ok()?,
                    ))
                })
                .collect(),
        )
    }
}

/// Run the engine without stalling the runtime on a key fetch (see
/// [`Offload`] and docs/serve.md for the measurements behind the default).
async fn verify(
    state: &super::State,
    token: String,
    issuer: Option<String>,
    fresh: bool,
    mode: Offload,
) -> Result<Verified, Error> {
    let verifier = state.verifier.clone();
    let run = move || {
        verifier.verify_with(
            token.as_bytes(),
            &VerifyOptions {
                issuer: issuer.as_deref(),
                fresh,
            },
        )
    };
    match mode {
        Offload::Inline => run(),
        Offload::BlockInPlace => tokio::task::block_in_place(run),
        Offload::Misses | Offload::SpawnBlocking => tokio::task::spawn_blocking(run).await.unwrap_or_else(|e| {
            Err(Error::new(
                ErrorKind::Internal,
                format!("verification task failed: {e}"),
            ))
        }),
    }
}

/// The original request's target and method, from wherever this proxy puts
/// them. The target is `None` when the proxy did not send it. Borrowed from
/// the request where possible: the hit path allocates nothing here. An
/// unreadable or repeated URI header is refused like any path that cannot
/// be normalised safely (403); a bad method header is a bad request (400).
fn original_request<'r>(
    cfg: &ServeConfig,
    req: &'r Request<Incoming>,
) -> Result<(Option<Cow<'r, str>>, Cow<'r, str>), Reason<'static>> {
    let one = |name: &str| -> Result<Option<&'r str>, &'static str> {
        let mut values = req.headers().get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => v
                .to_str()
                .map(Some)
                .map_err(|_| "a forwarded header is not readable text"),
            (Some(_), Some(_)) => Err("a forwarded header is repeated"),
        }
    };
    let target = match cfg.forwarded.uri_header() {
        Some(h) => one(h).map_err(Reason::UnsafePath)?.map(Cow::Borrowed),
        None => {
            // Envoy: the original path follows the auth path.
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let rest = pq.get(cfg.auth_path.len()..).unwrap_or_default();
            Some(if rest.is_empty() || rest.starts_with('?') {
                Cow::Owned(format!("/{rest}"))
            } else {
                Cow::Borrowed(rest)
            })
        }
    };
    let method = match cfg.forwarded.method_header() {
        Some(h) => one(h).map_err(Reason::InvalidRequest)?,
        None => None,
    }
    .unwrap_or_else(|| req.method().as_str());
    let method = if method.bytes().any(|b| b.is_ascii_lowercase()) {
        Cow::Owned(method.to_ascii_uppercase())
    } else {
        Cow::Borrowed(method)
    };
    Ok((target, method))
}

fn ok_response(headers: Option<&ClaimHeaders>, cached: Option<(&hyper::header::HeaderName, bool)>) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::new()));
    if let Some(headers) = headers {
        let map = resp.headers_mut();
        map.reserve(headers.0.len());
        for (name, value) in &headers.0 {
            map.append(name.clone(), value.clone());
        }
    }
    if let Some((name, cached)) = cached {
        let value = HeaderValue::from_static(if cached { "true" } else { "false" });
        resp.headers_mut().insert(name.clone(), value);
    }
    resp
}

fn refused(cfg: &ServeConfig, reason: &Reason<'_>) -> Resp {
    refusal_response(cfg.policy.refuse(reason))
}

/// The core's refusal as a response.
fn refusal_response(r: Refusal) -> Resp {
    let mut resp = json_response(r.status, r.body);
    for (name, value) in r.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

fn json_response(status: u16, body: String) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp
}

fn plain(status: StatusCode, body: &'static str) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// `/healthz`: 200 while every issuer can verify (fresh or serving stale
/// keys within `max_stale`), the fleet revocation feed, if configured, has
/// not failed closed, and every revocation is held; 503 otherwise.
fn health(state: &super::State) -> Resp {
    let v = &state.verifier;
    let mut ok = true;
    let mut issuers = serde_json::Map::new();
    for name in v.issuers() {
        let h = v.issuer_health(&name).unwrap_or(Health::FailedClosed);
        ok &= h != Health::FailedClosed;
        issuers.insert(name, h.as_str().into());
    }
    let mut body = serde_json::json!({"ok": ok, "issuers": issuers});
    // The fleet revocation feed, when configured: failed closed means every
    // verification is refused (revocations_stale), so not healthy.
    if let Some(feed) = v.revocation_feed() {
        ok &= feed.state != jwtwarden::FeedState::FailedClosed;
        body["ok"] = ok.into();
        body["revocation_feed"] = feed.state.as_str().into();
    }
    // A revocation from the journal or the feed that the lists could not
    // hold: every verification is refused (revocation_list_full), feed or
    // no feed, so not healthy.
    if v.metrics().revocations.incomplete {
        ok = false;
        body["ok"] = ok.into();
        body["revocations"] = "incomplete".into();
    }
    let body = body.to_string();
    let mut resp = json_response(if ok { 200 } else { 503 }, body);
    resp.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    resp
}

/// `/metrics`: the engine's metrics, then serve's, as one exposition.
fn metrics(app: &App, state: &super::State) -> Resp {
    let engine = state.verifier.prometheus();
    let mut text = engine.strip_suffix("# EOF\n").unwrap_or(&engine).to_string();
    text.push_str(&app.stats.encode());
    text.push_str("# EOF\n");
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

/// Methods the health and metrics endpoints answer.
fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_size_counts_the_head_as_sent() {
        let req = Request::builder()
            .method("GET")
            .uri("/auth?x=1")
            .header("host", "x")
            .header("authorization", "Bearer abc")
            .body(())
            .unwrap();
        let sent = "GET /auth?x=1 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer abc\r\n\r\n";
        assert_eq!(head_size(&req), sent.len());
    }
}
