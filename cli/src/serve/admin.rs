//! The optional admin listener: `POST /revoke`, on its own address, behind a
//! bearer secret.
//!
//! Revocations made here go straight to the running verifier, which
//! journals (`state_dir`) and publishes (`revocation.redis`) them once.
//! Serve keeps no log of its own: a reload carries the running verifier's
//! trust state into the new one (`Verifier::inherit_trust_from`), so a
//! SIGHUP cannot bring back a token an operator revoked, and writes or
//! publishes nothing again.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use jwtwarden::{Propagation, Revocation, RevocationKind, Verifier};
use serde::Deserialize;
use serde_json::json;

use super::http::Resp;
use super::App;

/// The body of `POST /revoke`, as accepted (the shapes of docs/serve.md):
/// `{"issuer", "jti", "exp"?}`, `{"issuer", "sub", "issued_before"?}` or
/// `{"issuer", "kid"}`. Only read into the core's [`Revocation`] record
/// ([`parse`]); serve keeps no revocation type of its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Asked {
    issuer: String,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    issued_before: Option<u64>,
    #[serde(default)]
    kid: Option<String>,
}

/// Read a `POST /revoke` body into the core's record: exactly one of
/// `jti`, `sub` or `kid`, with its issuer (`"*"`: every issuer). A request
/// naming two (say a `jti` and a `kid`) is refused rather than read as one
/// of them. A subject's cut-off defaults to `now_secs + 1` (fixed here, so
/// the record names one cut-off wherever it is journaled or published). A
/// `jti`'s `exp` (seconds), if given, is the record's `until_ms` as asked;
/// the verifier makes the record it keeps from it ([`apply`]: leeway added).
pub fn parse(body: &[u8], now_secs: u64) -> Option<Revocation> {
    let a: Asked = serde_json::from_slice(body).ok()?;
    let record = |kind, value: String| Revocation {
        kind,
        issuer: a.issuer.clone(),
        value,
        issued_before: None,
        until_ms: None,
    };
    match (a.jti.clone(), a.sub.clone(), a.kid.clone()) {
        (Some(jti), None, None) if a.issued_before.is_none() => Some(Revocation {
            until_ms: a.exp.map(|exp| exp.saturating_mul(1000)),
            ..record(RevocationKind::Jti, jti)
        }),
        (None, Some(sub), None) if a.exp.is_none() => Some(Revocation {
            issued_before: Some(a.issued_before.unwrap_or(now_secs + 1)),
            ..record(RevocationKind::Subject, sub)
        }),
        (None, None, Some(kid)) if a.exp.is_none() && a.issued_before.is_none() => {
            Some(record(RevocationKind::Kid, kid))
        }
        _ => None,
    }
}

/// Apply a record read by [`parse`] to a verifier; how far it reached.
pub fn apply(r: &Revocation, v: &Verifier) -> Result<Propagation, jwtwarden::Error> {
    match r.kind {
        RevocationKind::Jti => v.revoke_jti(&r.issuer, &r.value, r.until_ms.map(|ms| ms / 1000)),
        RevocationKind::Subject => v.revoke_subject(&r.issuer, &r.value, r.issued_before.unwrap_or(0)),
        RevocationKind::Kid => v.revoke_kid(&r.issuer, &r.value),
    }
}

const MAX_BODY: usize = 4096;

/// Answer one request on the admin listener.
pub async fn handle(app: &App, req: Request<Incoming>) -> Resp {
    let state = app.state.load_full();
    // The secret of the current configuration: a reload can rotate it, or
    // switch the listener off (then every request is refused).
    let Some(admin) = &state.config.admin else {
        return answer(StatusCode::NOT_FOUND, json!({"error": "the admin API is disabled"}));
    };
    // The assertion keys are public: served without the secret.
    if req.uri().path() == "/.well-known/jwks.json" {
        // The assertion keys and the signed introspection answers' keys.
        return match super::introspect::published_jwks(&state.config) {
            Some(jwks) if req.method() == Method::GET || req.method() == Method::HEAD => {
                let mut resp = answer(StatusCode::OK, jwks);
                resp.headers_mut()
                    .insert("cache-control", HeaderValue::from_static("max-age=60"));
                resp.headers_mut()
                    .insert("content-type", HeaderValue::from_static("application/jwk-set+json"));
                resp
            }
            Some(_) => answer(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "use GET"})),
            None => answer(StatusCode::NOT_FOUND, json!({"error": "no signing keys configured"})),
        };
    }
    let presented = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !constant_time_eq(presented.as_bytes(), admin.secret.as_bytes()) {
        let mut resp = answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "bad or missing admin secret"}),
        );
        resp.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Bearer realm=\"jwtwarden-admin\""),
        );
        return resp;
    }
    // Serve's own counters as JSON, for operators (introspection per
    // client; client ids, never secrets).
    if req.uri().path() == "/stats" && (req.method() == Method::GET || req.method() == Method::HEAD) {
        return answer(
            StatusCode::OK,
            json!({"introspection": app.stats.introspection().snapshot()}),
        );
    }
    if req.uri().path() != "/revoke" {
        return answer(
            StatusCode::NOT_FOUND,
            json!({"error": "POST /revoke is the only admin request"}),
        );
    }
    if req.method() != Method::POST {
        return answer(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "use POST"}));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return answer(StatusCode::PAYLOAD_TOO_LARGE, json!({"error": "body over 4 KiB"})),
    };
    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let Some(revocation) = parse(&body, now_secs) else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "expected {\"issuer\", \"jti\", \"exp\"?}, {\"issuer\", \"sub\", \"issued_before\"?} or {\"issuer\", \"kid\"}"}),
        );
    };
    // Held across the apply: a reload carries trust state and swaps under
    // this gate, so a revocation lands in the old verifier before the carry
    // or in the new one after the swap.
    let applied = {
        let _gate = app.trust_gate.lock().unwrap_or_else(|e| e.into_inner());
        apply(&revocation, &app.state.load_full().verifier)
    };
    match applied {
        Ok(propagation) => {
            log::info!("admin: revoked {revocation:?} ({propagation})");
            // "pending": in force here, not yet fleet-wide (Redis unreachable).
            answer(StatusCode::OK, json!({"ok": true, "propagation": propagation.as_str()}))
        }
        Err(e) => answer(
            StatusCode::BAD_REQUEST,
            json!({"error": e.kind().as_str(), "code": e.code(), "message": e.message()}),
        ),
    }
}

fn answer(status: StatusCode, body: serde_json::Value) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    resp
}

/// Compare secrets without leaking how long a prefix matched (the admin
/// secret here, the introspection clients' secrets in `introspect`).
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: RevocationKind, issuer: &str, value: &str) -> Revocation {
        Revocation {
            kind,
            issuer: issuer.into(),
            value: value.into(),
            issued_before: None,
            until_ms: None,
        }
    }

    #[test]
    fn revocation_shapes_read_into_the_cores_record() {
        let r = parse(br#"{"issuer": "i", "jti": "j1", "exp": 5}"#, 100).unwrap();
        assert_eq!(
            r,
            Revocation {
                until_ms: Some(5_000),
                ..rec(RevocationKind::Jti, "i", "j1")
            }
        );
        let r = parse(br#"{"issuer": "i", "jti": "j1", "exp": null}"#, 100).unwrap();
        assert_eq!(r, rec(RevocationKind::Jti, "i", "j1"));
        let r = parse(br#"{"issuer": "*", "sub": "alice"}"#, 100).unwrap();
        assert_eq!(
            r,
            Revocation {
                issued_before: Some(101),
                ..rec(RevocationKind::Subject, "*", "alice")
            }
        );
        let r = parse(br#"{"issuer": "*", "sub": "alice", "issued_before": 7}"#, 100).unwrap();
        assert_eq!(r.issued_before, Some(7));
        let r = parse(br#"{"issuer": "i", "kid": "k"}"#, 100).unwrap();
        assert_eq!(r, rec(RevocationKind::Kid, "i", "k"));
        assert!(parse(br#"{"kid": "k"}"#, 100).is_none());
        // A jti or sub is unique only within its issuer: one must be named.
        assert!(parse(br#"{"jti": "j1"}"#, 100).is_none());
        assert!(parse(br#"{"sub": "alice"}"#, 100).is_none());
    }

    #[test]
    fn a_request_naming_two_things_is_refused_not_read_as_one() {
        for body in [
            r#"{"issuer": "i", "jti": "j1", "kid": "k"}"#,
            r#"{"issuer": "i", "sub": "alice", "kid": "k"}"#,
            r#"{"issuer": "i", "jti": "j1", "sub": "alice"}"#,
            r#"{"issuer": "i", "kid": "k", "exp": 5}"#,
            r#"{"issuer": "i", "kid": "k", "issued_before": 5}"#,
            r#"{"issuer": "i", "jti": "j1", "issued_before": 5}"#,
            r#"{"issuer": "i", "sub": "alice", "exp": 5}"#,
            r#"{"issuer": "i", "jti": "j1", "until_ms": 5}"#,
            r#"{"issuer": "i"}"#,
        ] {
            assert!(parse(body.as_bytes(), 100).is_none(), "{body}");
        }
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
