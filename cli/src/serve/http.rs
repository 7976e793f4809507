//! The verification listener: the forward-auth endpoint, `/healthz` and
//! `/metrics`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use jwtwarden::{Error, ErrorKind, Health, Verified, VerifyOptions};

use super::claims::header_value;
use super::config::{Forwarded, Offload, ServeConfig};
use super::refusal::{refusal, Reason};
use super::routes::{has_audience, has_scopes, normalize};
use super::App;

/// Every response this server sends.
pub type Resp = Response<Full<Bytes>>;

/// Answer one request on the verification listener.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Resp {
    // One snapshot per request: a reload in the middle of it does not mix
    // the old routes with the new verifier.
    let state = app.state.load_full();
    let cfg = &state.config;
    let path = req.uri().path();
    let is_auth = path == cfg.auth_path
        || cfg.forwarded == Forwarded::Envoy
            && path.starts_with(&cfg.auth_path)
            && path.as_bytes().get(cfg.auth_path.len()) == Some(&b'/');
    if is_auth {
        let started = Instant::now();
        let resp = authorize(&state, &req).await;
        app.stats.record(resp.status().as_u16(), started.elapsed());
        resp
    } else if (path == cfg.health_path || path == cfg.metrics_path) && !is_read(req.method()) {
        plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n")
    } else if path == cfg.health_path {
        health(&state)
    } else if path == cfg.metrics_path {
        metrics(&app, &state)
    } else {
        plain(StatusCode::NOT_FOUND, "not found\n")
    }
}

/// The forward-auth decision for one request.
async fn authorize(state: &super::State, req: &Request<Incoming>) -> Resp {
    let cfg = &*state.config;
    let refuse = |reason: Reason<'_>| refused(cfg, &reason);

    let (target, method) = match original_request(cfg, req) {
        Ok(t) => t,
        Err(why) => return refuse(Reason::InvalidRequest(why)),
    };
    let route = if cfg.routes.is_empty() {
        cfg.routes.select("/", &method)
    } else {
        let Some(target) = target else {
            return refuse(Reason::InvalidRequest("the proxy did not send the original URI"));
        };
        let Some(path) = normalize(&target) else {
            return refuse(Reason::InvalidRequest("the original URI is not a readable path"));
        };
        cfg.routes.select(&path, &method)
    };
    if route.open {
        return ok_response(Vec::new());
    }
    let token = match bearer_token(req.headers(), cfg) {
        Ok(Some(t)) => t,
        Ok(None) => return refuse(Reason::MissingToken),
        Err(why) => return refuse(Reason::InvalidRequest(why)),
    };
    let fingerprint = || jwtwarden::fingerprint(token.as_bytes());
    let result = verify(state, token.clone(), route.issuer.clone(), route.fresh, cfg.offload).await;
    let verified = match result {
        Ok(v) => v,
        Err(e) => {
            if e.category() == jwtwarden::Category::KeysUnavailable {
                log::warn!("token {}: {e}", fingerprint());
            } else {
                log::debug!("token {} refused: {e}", fingerprint());
            }
            return refuse(Reason::Engine(&e));
        }
    };
    if !has_audience(verified.claims(), &route.audiences) {
        let e = Error::new(
            ErrorKind::InvalidAudience,
            format!("this route accepts audiences {}", route.audiences.join(", ")),
        );
        log::debug!("token {} refused on route {}: {e}", fingerprint(), route.prefix);
        return refuse(Reason::Engine(&e));
    }
    if !has_scopes(verified.claims(), &route.scopes) {
        log::debug!("token {} lacks scopes for route {}", fingerprint(), route.prefix);
        return refuse(Reason::InsufficientScope(&route.scopes));
    }
    let headers = cfg
        .claim_headers
        .iter()
        .filter_map(|(claim, name)| {
            let value = header_value(verified.claims().get(claim)?, cfg.max_claim_header_bytes)?;
            Some((name.as_str().to_string(), value))
        })
        .collect();
    ok_response(headers)
}

/// Run the engine without stalling the runtime on a key fetch (see
/// [`Offload`] and docs/serve.md for the measurement behind the default).
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
        Offload::SpawnBlocking => tokio::task::spawn_blocking(run).await.unwrap_or_else(|e| {
            Err(Error::new(
                ErrorKind::Internal,
                format!("verification task failed: {e}"),
            ))
        }),
    }
}

/// The original request's target and method, from wherever this proxy puts
/// them. The target is `None` when the proxy did not send it.
fn original_request(cfg: &ServeConfig, req: &Request<Incoming>) -> Result<(Option<String>, String), &'static str> {
    let one = |name: &str| -> Result<Option<String>, &'static str> {
        let mut values = req.headers().get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => v
                .to_str()
                .map(|s| Some(s.to_string()))
                .map_err(|_| "a forwarded header is not readable text"),
            (Some(_), Some(_)) => Err("a forwarded header is repeated"),
        }
    };
    let target = match cfg.forwarded.uri_header() {
        Some(h) => one(h)?,
        None => {
            // Envoy: the original path follows the auth path.
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let rest = pq.get(cfg.auth_path.len()..).unwrap_or_default();
            Some(if rest.is_empty() || rest.starts_with('?') {
                format!("/{rest}")
            } else {
                rest.to_string()
            })
        }
    };
    let method = match cfg.forwarded.method_header() {
        Some(h) => one(h)?,
        None => None,
    }
    .unwrap_or_else(|| req.method().as_str().to_string())
    .to_ascii_uppercase();
    Ok((target, method))
}

/// The token: from the configured header (`Authorization` means the
/// `Bearer` scheme; another header holds the token itself, an optional
/// `Bearer ` prefix allowed), else from the configured cookie. `Ok(None)`
/// when there is none; `Err` for a header that is there but malformed.
pub fn bearer_token(headers: &HeaderMap, cfg: &ServeConfig) -> Result<Option<String>, &'static str> {
    let mut values = headers.get_all(cfg.token_header.as_str()).iter();
    let from_header = match (values.next(), values.next()) {
        (Some(_), Some(_)) => return Err("more than one credentials header"),
        (None, _) => None,
        (Some(v), None) => {
            let v = v.to_str().map_err(|_| "malformed credentials header")?.trim();
            let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
            if scheme.eq_ignore_ascii_case("bearer") {
                Some(check_token(rest.trim_start())?)
            } else if cfg.token_header == "authorization" {
                // Another scheme (Basic, say): no bearer credentials, so the
                // answer is the bare challenge (RFC 6750 §3.1).
                None
            } else if v.is_empty() {
                None
            } else {
                Some(check_token(v)?)
            }
        }
    };
    if from_header.is_some() {
        return Ok(from_header);
    }
    let Some(cookie) = &cfg.token_cookie else {
        return Ok(None);
    };
    for header in headers.get_all("cookie") {
        let Ok(header) = header.to_str() else { continue };
        for pair in header.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=') {
                if name == cookie && !value.is_empty() {
                    return check_token(value.trim_matches('"')).map(Some);
                }
            }
        }
    }
    Ok(None)
}

/// A bearer credential is token68 (RFC 6750 §2.1): no spaces, no quotes.
fn check_token(t: &str) -> Result<String, &'static str> {
    let token68 = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
    if t.is_empty() || !t.bytes().all(token68) {
        return Err("malformed bearer credentials");
    }
    Ok(t.to_string())
}

fn ok_response(headers: Vec<(String, String)>) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::new()));
    for (name, value) in headers {
        // Both parts were checked (config time, header_value); a failure
        // here drops the header rather than the request.
        if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}

fn refused(cfg: &ServeConfig, reason: &Reason<'_>) -> Resp {
    let r = refusal(reason, &cfg.realm, cfg.retry_after_secs);
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
/// keys within `max_stale`), 503 as soon as one has failed closed.
fn health(state: &super::State) -> Resp {
    let v = &state.verifier;
    let mut ok = true;
    let mut issuers = serde_json::Map::new();
    for name in v.issuers() {
        let h = v.issuer_health(&name).unwrap_or(Health::FailedClosed);
        ok &= h != Health::FailedClosed;
        issuers.insert(name, h.as_str().into());
    }
    let body = serde_json::json!({"ok": ok, "issuers": issuers}).to_string();
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

    fn cfg(toml: &str) -> ServeConfig {
        ServeConfig::from_toml_str(toml).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                hyper::header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_strict() {
        let c = cfg("");
        let t = |pairs: &[(&str, &str)]| bearer_token(&headers(pairs), &c);
        assert_eq!(
            t(&[("authorization", "Bearer abc.def.ghi")]),
            Ok(Some("abc.def.ghi".into()))
        );
        assert_eq!(t(&[("authorization", "bearer  abc")]), Ok(Some("abc".into())));
        assert_eq!(t(&[]), Ok(None));
        assert_eq!(t(&[("authorization", "Basic dXNlcjpwYXNz")]), Ok(None));
        assert!(t(&[("authorization", "Bearer")]).is_err());
        assert!(t(&[("authorization", "Bearer a b")]).is_err());
        assert!(t(&[("authorization", "Bearer \"abc\"")]).is_err());
        assert!(t(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]).is_err());
    }

    #[test]
    fn custom_header_and_cookie() {
        let c = cfg("token_header = \"X-Access-Token\"\ntoken_cookie = \"at\"");
        let t = |pairs: &[(&str, &str)]| bearer_token(&headers(pairs), &c);
        assert_eq!(t(&[("x-access-token", "abc")]), Ok(Some("abc".into())));
        assert_eq!(t(&[("x-access-token", "Bearer abc")]), Ok(Some("abc".into())));
        assert_eq!(t(&[("cookie", "a=1; at=tok.en.x; b=2")]), Ok(Some("tok.en.x".into())));
        assert_eq!(t(&[("cookie", "a=1"), ("cookie", "at=zz")]), Ok(Some("zz".into())));
        assert_eq!(t(&[("cookie", "xat=zz")]), Ok(None));
        assert_eq!(
            t(&[("authorization", "Bearer abc")]),
            Ok(None),
            "only the configured header"
        );
    }
}
