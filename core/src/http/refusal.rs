//! The HTTP refusal contract, in one table.
//!
//! Every front end that answers HTTP (`jwtwarden serve`, the C ABI's HTTP
//! decision, and the Go and Python middlewares, which still keep their own
//! copy) refuses the same way: docs/http.md, whose table
//! `tests/http_contract.json` the tests compare `ROWS` with. The whole
//! mapping from a reason to a response is `ROWS` and [`refusal()`].
//!
//! Every refusal has `Cache-Control: no-store` and a JSON body
//! `{"error": kind, "code": n, "category": ..., "message": ...}`; the body
//! never contains the token. Refusals made before (or, for scopes, after)
//! the engine have no engine code: `"code": null`. On 503 and 500 the
//! message is a fixed text, since the engine's can name internal URLs.

use crate::error::{Category, Error};
use serde_json::json;

/// Why a request is refused.
#[derive(Clone, Debug)]
pub enum Reason<'a> {
    /// No token in the request (no header, another scheme, no cookie).
    MissingToken,
    /// An `Authorization` header that is not a well-formed `Bearer`
    /// credential (or a forwarded URI the server cannot read).
    InvalidRequest(&'a str),
    /// The original URI cannot be normalised safely (double encoding, `..;`,
    /// an encoded slash...), or reads as two different protected routes:
    /// 403 whatever the token, body `invalid_request`. Not 400: nginx
    /// `auth_request` passes only 401 and 403 to the client (a 400 becomes
    /// a 500), and no credentials would make the request acceptable, so no
    /// challenge either (docs/serve.md, "Path normalisation").
    UnsafePath(&'a str),
    /// The engine rejected the token, or found the keys unavailable.
    Engine(&'a Error),
    /// A valid token without the scopes the route requires.
    InsufficientScope(&'a [String]),
}

/// RFC 6750 §3 challenge variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Challenge {
    /// `Bearer realm="..."` (no credentials were presented).
    Bare,
    /// `Bearer realm="...", error="<code>", error_description="<kind>"`.
    Error(&'static str),
    /// No `WWW-Authenticate`: not the client's credentials' fault.
    None,
}

/// One row: what a class of refusal looks like on the wire.
struct Row {
    status: u16,
    challenge: Challenge,
    retry_after: bool,
}

/// The message of a request that carries no token (as every middleware says it).
const MISSING_MESSAGE: &str = "a bearer token is required";

/// Fixed messages for 503 and 500 (docs/http.md).
fn server_message(status: u16) -> Option<&'static str> {
    match status {
        503 => Some("the token issuer's keys are unavailable; retry later"),
        500 => Some("token verification failed on the server"),
        _ => None,
    }
}

/// The table. Keys: the request class or the engine's error category.
const ROWS: &[(&str, Row)] = &[
    (
        "missing_token",
        Row {
            status: 401,
            challenge: Challenge::Bare,
            retry_after: false,
        },
    ),
    (
        "invalid_request",
        Row {
            status: 400,
            challenge: Challenge::Error("invalid_request"),
            retry_after: false,
        },
    ),
    (
        "unsafe_path",
        Row {
            status: 403,
            challenge: Challenge::None,
            retry_after: false,
        },
    ),
    (
        "insufficient_scope",
        Row {
            status: 403,
            challenge: Challenge::Error("insufficient_scope"),
            retry_after: false,
        },
    ),
    (
        "malformed",
        Row {
            status: 401,
            challenge: Challenge::Error("invalid_token"),
            retry_after: false,
        },
    ),
    (
        "verification",
        Row {
            status: 401,
            challenge: Challenge::Error("invalid_token"),
            retry_after: false,
        },
    ),
    (
        "policy",
        Row {
            status: 401,
            challenge: Challenge::Error("invalid_token"),
            retry_after: false,
        },
    ),
    // The token may be fine: tell the client to come back, not to discard it.
    (
        "keys_unavailable",
        Row {
            status: 503,
            challenge: Challenge::None,
            retry_after: true,
        },
    ),
    (
        "usage",
        Row {
            status: 500,
            challenge: Challenge::None,
            retry_after: false,
        },
    ),
    (
        "internal",
        Row {
            status: 500,
            challenge: Challenge::None,
            retry_after: false,
        },
    ),
];

/// A refusal, ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// Headers besides `Content-Type` and `Content-Length`.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: String,
}

/// The response for `reason`. `realm` is already checked to need no
/// escaping; `None` leaves the `realm` parameter out of the challenge
/// (RFC 6750 §3: it is optional).
pub fn refusal(reason: &Reason<'_>, realm: Option<&str>, retry_after_secs: u64) -> Refusal {
    // error_description: the stable kind for a token the engine refused
    // (machine-readable, nothing taken from the token); our own words for a
    // malformed request.
    let (key, kind, code, category, message, scope) = match reason {
        Reason::MissingToken => (
            "missing_token",
            "missing_token",
            None,
            "request",
            MISSING_MESSAGE.to_string(),
            None,
        ),
        Reason::InvalidRequest(why) => (
            "invalid_request",
            "invalid_request",
            None,
            "request",
            why.to_string(),
            None,
        ),
        Reason::UnsafePath(why) => ("unsafe_path", "invalid_request", None, "request", why.to_string(), None),
        Reason::InsufficientScope(scopes) => (
            "insufficient_scope",
            "insufficient_scope",
            None,
            "policy",
            format!("the token lacks a required scope ({})", scopes.join(" ")),
            Some(scopes.join(" ")),
        ),
        Reason::Engine(e) => (
            e.category().as_str(),
            e.kind().as_str(),
            Some(e.code()),
            e.category().as_str(),
            e.message().to_string(),
            None,
        ),
    };
    let row = &ROWS
        .iter()
        .find(|(k, _)| *k == key)
        .or_else(|| ROWS.iter().find(|(k, _)| *k == Category::Internal.as_str()))
        .expect("the table has an internal row")
        .1;
    let mut headers = vec![("cache-control", "no-store".to_string())];
    let realm_param = realm.map(|r| format!("realm=\"{r}\""));
    match row.challenge {
        Challenge::Bare => headers.push((
            "www-authenticate",
            realm_param.map_or_else(|| "Bearer".to_string(), |r| format!("Bearer {r}")),
        )),
        Challenge::Error(err) => {
            let description = match reason {
                Reason::InvalidRequest(why) => why,
                _ => kind,
            };
            let mut c = match realm_param {
                Some(r) => format!("Bearer {r}, "),
                None => "Bearer ".to_string(),
            };
            c.push_str(&format!("error=\"{err}\", error_description=\"{description}\""));
            if let Some(scope) = &scope {
                c.push_str(&format!(", scope=\"{scope}\""));
            }
            headers.push(("www-authenticate", c));
        }
        Challenge::None => {}
    }
    if row.retry_after {
        headers.push(("retry-after", retry_after_secs.to_string()));
    }
    let message = server_message(row.status).map_or(message, str::to_string);
    let body = json!({"error": kind, "code": code, "category": category, "message": message}).to_string();
    Refusal {
        status: row.status,
        headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn header<'a>(r: &'a Refusal, name: &str) -> Option<&'a str> {
        r.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_engine_kind_maps_to_a_status_by_category() {
        for &kind in ErrorKind::ALL {
            let e = Error::new(kind, "m");
            let r = refusal(&Reason::Engine(&e), Some("api"), 5);
            let want = match kind.category() {
                Category::Malformed | Category::Verification | Category::Policy => 401,
                Category::KeysUnavailable => 503,
                Category::Usage | Category::Internal => 500,
            };
            assert_eq!(r.status, want, "{kind}");
            assert_eq!(header(&r, "cache-control"), Some("no-store"));
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body["error"], kind.as_str());
            assert_eq!(body["code"], kind.code());
            assert_eq!(body["category"], kind.category().as_str());
            // The engine's message only where it cannot leak server internals.
            let message = if want == 401 {
                "m"
            } else {
                server_message(want).unwrap()
            };
            assert_eq!(body["message"], message);
        }
    }

    /// The mapping is the one every middleware runs (docs/http.md): the
    /// shared contract table's statuses by category and `Retry-After`.
    #[test]
    fn rows_match_the_shared_http_contract_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/http_contract.json");
        let table: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for (category, status) in table["status_by_category"].as_object().unwrap() {
            let row = &ROWS.iter().find(|(k, _)| k == category).expect(category).1;
            assert_eq!(u64::from(row.status), status.as_u64().unwrap(), "{category}");
        }
        assert_eq!(
            super::super::DEFAULT_RETRY_AFTER_SECS.to_string(),
            table["retry_after"].as_str().unwrap(),
            "the default Retry-After is the middlewares'"
        );
        let r = refusal(&Reason::MissingToken, Some("api"), 5);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["code"], serde_json::Value::Null);
        assert_eq!(body["category"], "request");
    }

    #[test]
    fn rejected_tokens_get_an_rfc6750_challenge() {
        let e = Error::new(ErrorKind::Expired, "token expired at ...");
        let r = refusal(&Reason::Engine(&e), Some("api"), 5);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some(r#"Bearer realm="api", error="invalid_token", error_description="expired""#)
        );
        assert_eq!(header(&r, "retry-after"), None);
    }

    #[test]
    fn without_a_realm_the_challenge_has_none() {
        let r = refusal(&Reason::MissingToken, None, 5);
        assert_eq!(header(&r, "www-authenticate"), Some("Bearer"));
        let e = Error::new(ErrorKind::Expired, "m");
        let r = refusal(&Reason::Engine(&e), None, 5);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some(r#"Bearer error="invalid_token", error_description="expired""#)
        );
    }

    #[test]
    fn missing_token_gets_a_bare_challenge() {
        let r = refusal(&Reason::MissingToken, Some("api"), 5);
        assert_eq!(r.status, 401);
        assert_eq!(header(&r, "www-authenticate"), Some(r#"Bearer realm="api""#));
        assert!(r.body.contains("\"missing_token\""));
    }

    #[test]
    fn malformed_header_is_400_invalid_request() {
        let r = refusal(
            &Reason::InvalidRequest("malformed Authorization header"),
            Some("api"),
            5,
        );
        assert_eq!(r.status, 400);
        assert!(header(&r, "www-authenticate")
            .unwrap()
            .contains(r#"error="invalid_request""#));
    }

    #[test]
    fn keys_unavailable_is_503_with_retry_after_and_no_challenge() {
        let e = Error::new(ErrorKind::KeysStale, "stale");
        let r = refusal(&Reason::Engine(&e), Some("api"), 7);
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "retry-after"), Some("7"));
        assert_eq!(header(&r, "www-authenticate"), None);
    }

    #[test]
    fn an_unsafe_path_is_403_invalid_request_without_a_challenge() {
        let r = refusal(&Reason::UnsafePath("the original URI is encoded twice"), Some("api"), 5);
        assert_eq!(r.status, 403, "nginx auth_request turns a 400 into a 500");
        assert_eq!(header(&r, "www-authenticate"), None, "no credentials would help");
        assert_eq!(header(&r, "cache-control"), Some("no-store"));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "invalid_request");
        assert_eq!(body["code"], serde_json::Value::Null);
        assert_eq!(body["message"], "the original URI is encoded twice");
    }

    #[test]
    fn insufficient_scope_is_403_naming_the_scopes() {
        let scopes = vec!["admin".to_string(), "write".to_string()];
        let r = refusal(&Reason::InsufficientScope(&scopes), Some("api"), 5);
        assert_eq!(r.status, 403);
        assert!(header(&r, "www-authenticate")
            .unwrap()
            .ends_with(r#"scope="admin write""#));
    }
}
