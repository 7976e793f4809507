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
use jwtwarden::Verifier;
use serde::Deserialize;
use serde_json::json;

use super::http::Resp;
use super::App;

/// One revocation, as asked for.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged, deny_unknown_fields)]
pub enum Revocation {
    /// `{"issuer": ..., "jti": ..., "exp": secs?}`: one token.
    Jti {
        /// The configured issuer, or `"*"` for every issuer.
        issuer: String,
        /// The token's `jti`.
        jti: String,
        /// Its `exp`, if known (the entry then expires with the token).
        exp: Option<u64>,
    },
    /// `{"issuer": ..., "sub": ..., "issued_before": secs?}`: a subject's
    /// older tokens (default: issued before now).
    Subject {
        /// The configured issuer, or `"*"` for every issuer.
        issuer: String,
        /// The subject.
        sub: String,
        /// Tokens issued before this time (seconds) are revoked.
        issued_before: Option<u64>,
    },
    /// `{"issuer": ..., "kid": ...}`: emergency key removal.
    Kid {
        /// The configured issuer, or `"*"` for every issuer.
        issuer: String,
        /// The key id.
        kid: String,
    },
}

impl Revocation {
    /// Apply to a verifier; how far it reached.
    pub fn apply(&self, v: &Verifier) -> Result<jwtwarden::Propagation, jwtwarden::Error> {
        match self {
            Revocation::Jti { issuer, jti, exp } => v.revoke_jti(issuer, jti, *exp),
            Revocation::Subject {
                issuer,
                sub,
                issued_before,
            } => v.revoke_subject(issuer, sub, issued_before.unwrap_or(0)),
            Revocation::Kid { issuer, kid } => v.revoke_kid(issuer, kid),
        }
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
    let mut revocation: Revocation = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"error": "expected {\"issuer\", \"jti\", \"exp\"?}, {\"issuer\", \"sub\", \"issued_before\"?} or {\"issuer\", \"kid\"}"}),
            )
        }
    };
    if let Revocation::Subject { issued_before, .. } = &mut revocation {
        // Fixed here, so the record names one cut-off wherever it is
        // journaled or published.
        issued_before.get_or_insert_with(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() + 1)
        });
    }
    // Held across the apply: a reload carries trust state and swaps under
    // this gate, so a revocation lands in the old verifier before the carry
    // or in the new one after the swap.
    let applied = {
        let _gate = app.trust_gate.lock().unwrap_or_else(|e| e.into_inner());
        revocation.apply(&app.state.load_full().verifier)
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

/// Compare secrets without leaking how long a prefix matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_shapes() {
        let r: Revocation = serde_json::from_str(r#"{"issuer": "i", "jti": "j1", "exp": 5}"#).unwrap();
        assert_eq!(
            r,
            Revocation::Jti {
                issuer: "i".into(),
                jti: "j1".into(),
                exp: Some(5)
            }
        );
        let r: Revocation = serde_json::from_str(r#"{"issuer": "*", "sub": "alice"}"#).unwrap();
        assert_eq!(
            r,
            Revocation::Subject {
                issuer: "*".into(),
                sub: "alice".into(),
                issued_before: None
            }
        );
        let r: Revocation = serde_json::from_str(r#"{"issuer": "i", "kid": "k"}"#).unwrap();
        assert_eq!(
            r,
            Revocation::Kid {
                issuer: "i".into(),
                kid: "k".into()
            }
        );
        assert!(serde_json::from_str::<Revocation>(r#"{"kid": "k"}"#).is_err());
        // A jti or sub is unique only within its issuer: one must be named.
        assert!(serde_json::from_str::<Revocation>(r#"{"jti": "j1"}"#).is_err());
        assert!(serde_json::from_str::<Revocation>(r#"{"sub": "alice"}"#).is_err());
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
