//! The JSON admin API under `/admin/`, so tests in other languages can drive an issuer.
//!
//! Enabled only for issuers started with [`crate::IssuerOptions::admin`] (the binary
//! always enables it). Admin requests are never counted. See the crate docs for the routes.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tiny_http::{Method, Request};

use crate::fault::Fault;
use crate::server::{json_response, respond, Shared};
use crate::Alg;

const MAX_BODY: u64 = 1 << 20;

type Reply = Result<Value, (u16, String)>;

fn bad(msg: impl Into<String>) -> (u16, String) {
    (400, msg.into())
}

fn not_found(msg: impl Into<String>) -> (u16, String) {
    (404, msg.into())
}

/// Handles one admin request and answers it with JSON.
pub(crate) fn handle(shared: &Shared, mut rq: Request, path: &str) {
    let mut raw = String::new();
    let read = rq
        .as_reader()
        .take(MAX_BODY)
        .read_to_string(&mut raw)
        .map_err(|e| bad(format!("cannot read body: {e}")));
    let reply = read.and_then(|_| {
        let body = if raw.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_str(&raw).map_err(|e| bad(format!("invalid JSON body: {e}")))?
        };
        route(shared, rq.method(), path, &body)
    });
    let resp = match reply {
        Ok(v) => json_response(200, v.to_string()),
        Err((status, msg)) => json_response(status, json!({ "error": msg }).to_string()),
    };
    respond(rq, resp);
}

fn route(shared: &Shared, method: &Method, path: &str, body: &Value) -> Reply {
    let segments: Vec<&str> = path
        .trim_start_matches("/admin")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match (method, segments.as_slice()) {
        (Method::Get, ["keys"]) => Ok(json!({ "published": shared.published_kids() })),
        (Method::Post, ["keys"]) => {
            let alg = parse_alg(body.get("alg"))?;
            let fresh = body.get("fresh").and_then(Value::as_bool).unwrap_or(false);
            Ok(json!({ "kid": shared.add_key(alg, fresh) }))
        }
        (Method::Delete, ["keys", kid]) => {
            if shared.retire_key(kid) {
                Ok(json!({ "retired": kid }))
            } else {
                Err(not_found(format!("unknown kid {kid}")))
            }
        }
        (Method::Get, ["keys", kid, "private"]) => shared
            .with_key(kid, |k| json!({ "pem": k.pem(), "alg": k.alg.as_str() }))
            .ok_or_else(|| not_found(format!("unknown kid {kid}"))),
        (Method::Get, ["keys", kid, "public"]) => shared
            .with_key(kid, |k| json!({ "jwk": k.jwk() }))
            .ok_or_else(|| not_found(format!("unknown kid {kid}"))),
        (Method::Post, ["mint"]) => mint(shared, body),
        (Method::Post, ["fault"]) => {
            let fault = parse_fault(body)?;
            shared.config.lock().fault = fault;
            Ok(json!({ "ok": true }))
        }
        (Method::Post, ["headers"]) => set_headers(shared, body),
        (Method::Post, ["jwks_path"]) => {
            let path = match body.get("path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) => {
                    crate::server::check_jwks_path(p).map_err(bad)?;
                    Some(p.clone())
                }
                Some(other) => return Err(bad(format!("\"path\" must be a string or null, got {other}"))),
            };
            shared.config.lock().jwks_path = path;
            Ok(json!({ "jwks_path": shared.jwks_path() }))
        }
        (Method::Post, ["status_lists"]) => publish_status_list(shared, body),
        (Method::Post, ["status"]) => set_status(shared, body),
        (Method::Get, ["stats"]) => {
            let c = shared.counts.lock();
            Ok(json!({
                "jwks_requests": c.jwks,
                "discovery_requests": c.discovery,
                "total_requests": c.total,
                "paths": c.per_path,
            }))
        }
        (Method::Post, ["reset"]) => {
            shared.reset_counts();
            Ok(json!({ "ok": true }))
        }
        (Method::Post, ["shutdown"]) => {
            shared.shutdown_requested.store(true, Ordering::SeqCst);
            Ok(json!({ "ok": true }))
        }
        _ => Err(not_found(format!("no admin route {method} {path}"))),
    }
}

fn parse_alg(v: Option<&Value>) -> Result<Alg, (u16, String)> {
    match v {
        None | Some(Value::Null) => Ok(Alg::RS256),
        Some(Value::String(s)) => s.parse().map_err(|e: crate::ParseAlgError| bad(e.to_string())),
        Some(other) => Err(bad(format!("\"alg\" must be a string, got {other}"))),
    }
}

/// `{"kid", "claims"?, "header"?}`; without claims, `default_claims("user", now)` is used.
fn mint(shared: &Shared, body: &Value) -> Reply {
    let kid = match body.get("kid") {
        Some(Value::String(k)) => k.clone(),
        None | Some(Value::Null) => shared
            .published_kids()
            .into_iter()
            .next()
            .ok_or_else(|| bad("no \"kid\" given and no key published"))?,
        Some(other) => return Err(bad(format!("\"kid\" must be a string, got {other}"))),
    };
    let claims = match body.get("claims") {
        None | Some(Value::Null) => shared.default_claims("user", crate::now()),
        Some(c) => c.clone(),
    };
    let header = body.get("header").filter(|h| !h.is_null());
    shared
        .mint(&kid, header, &claims)
        .map(|token| json!({ "token": token }))
        .ok_or_else(|| not_found(format!("unknown kid {kid}")))
}

fn parse_fault(body: &Value) -> Result<Fault, (u16, String)> {
    let kind = body
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("\"kind\" (string) is required"))?;
    let uint = |name: &str, default: u64| -> Result<u64, (u16, String)> {
        match body.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| bad(format!("\"{name}\" must be a non-negative integer"))),
        }
    };
    Ok(match kind {
        "none" => Fault::None,
        "status" => {
            let status = uint("status", 500)?;
            if !(100..=999).contains(&status) {
                return Err(bad("\"status\" must be in 100..=999"));
            }
            match body.get("retry_after") {
                None | Some(Value::Null) => Fault::Status(status as u16),
                Some(Value::String(v)) => Fault::StatusRetryAfter(status as u16, v.clone()),
                Some(Value::Number(n)) if n.is_u64() => Fault::StatusRetryAfter(status as u16, n.to_string()),
                Some(_) => return Err(bad("\"retry_after\" must be a string or a non-negative integer")),
            }
        }
        "delay" => Fault::Delay(Duration::from_millis(uint("delay_ms", 1000)?)),
        "drop" => Fault::Drop,
        "oversized" => Fault::Oversized(uint("bytes", 1 << 20)? as usize),
        "invalid_json" => Fault::InvalidJson,
        "not_modified" => Fault::NotModified,
        "hang" => Fault::Hang,
        "slow_redirects" => Fault::SlowRedirects {
            hops: u32::try_from(uint("hops", 3)?).map_err(|_| bad("\"hops\" is too large"))?,
            delay: Duration::from_millis(uint("delay_ms", 1000)?),
        },
        "redirect" => Fault::RedirectTo(
            body.get("location")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("\"location\" (string) is required for redirect"))?
                .to_string(),
        ),
        other => return Err(bad(format!("unknown fault kind {other:?}"))),
    })
}

/// Only members present in the body change; `null` clears a header.
fn set_headers(shared: &Shared, body: &Value) -> Reply {
    let obj = body.as_object().ok_or_else(|| bad("body must be a JSON object"))?;
    let opt_string = |name: &str| -> Result<Option<Option<String>>, (u16, String)> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
            Some(_) => Err(bad(format!("\"{name}\" must be a string or null"))),
        }
    };
    let cache_control = opt_string("cache_control")?;
    let expires = opt_string("expires")?;
    let jwks_override = opt_string("jwks_override")?;
    let discovery_cache_control = opt_string("discovery_cache_control")?;
    let etag = match obj.get("etag") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(bad("\"etag\" must be a boolean")),
    };
    let mut c = shared.config.lock();
    if let Some(v) = cache_control {
        c.cache_control = v;
    }
    if let Some(v) = expires {
        c.expires = v;
    }
    if let Some(v) = jwks_override {
        c.jwks_override = v;
    }
    if let Some(v) = etag {
        c.etag = v;
    }
    if let Some(v) = discovery_cache_control {
        c.discovery_cache_control = v;
    }
    Ok(json!({
        "cache_control": c.cache_control,
        "expires": c.expires,
        "etag": c.etag,
        "jwks_override": c.jwks_override.is_some(),
        "discovery_cache_control": c.discovery_cache_control,
    }))
}

/// `POST /admin/status_lists` `{"path", "bits", "len", "ttl"?, "cache_control"?, "etag"?}`.
fn publish_status_list(shared: &Shared, body: &Value) -> Reply {
    let path = body
        .get("path")
        .and_then(Value::as_str)
        .filter(|p| p.starts_with('/') && !p.starts_with("/admin"))
        .ok_or_else(|| bad("\"path\" must be a string starting with '/'"))?;
    let bits = body
        .get("bits")
        .and_then(Value::as_u64)
        .and_then(|b| u8::try_from(b).ok())
        .filter(|b| [1, 2, 4, 8].contains(b))
        .ok_or_else(|| bad("\"bits\" must be 1, 2, 4 or 8"))?;
    let len = body.get("len").and_then(Value::as_u64).unwrap_or(1024) as usize;
    let mut list = crate::status::Published::new(bits, len);
    list.options.ttl = body.get("ttl").and_then(Value::as_u64);
    list.options.cache_control = body.get("cache_control").and_then(Value::as_str).map(str::to_string);
    list.options.etag = body.get("etag").and_then(Value::as_bool).unwrap_or(false);
    shared.status_lists.lock().insert(path.to_string(), list);
    Ok(json!({ "uri": format!("{}{path}", shared.url) }))
}

/// `POST /admin/status` `{"path", "idx", "status"}`.
fn set_status(shared: &Shared, body: &Value) -> Reply {
    let path = body.get("path").and_then(Value::as_str).unwrap_or_default();
    let idx = body
        .get("idx")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("\"idx\" is required"))? as usize;
    let status = body
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u8::try_from(s).ok())
        .ok_or_else(|| bad("\"status\" must be 0 to 255"))?;
    let mut lists = shared.status_lists.lock();
    let list = lists
        .get_mut(path)
        .ok_or_else(|| not_found(format!("no status list at {path}")))?;
    let slot = list
        .statuses
        .get_mut(idx)
        .ok_or_else(|| bad(format!("idx {idx} is beyond the list")))?;
    *slot = status;
    list.signed = None;
    Ok(json!({ "ok": true }))
}
