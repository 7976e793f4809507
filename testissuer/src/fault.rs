//! Fault injection: the [`Fault`] type and the helpers that carry faults out.

use std::time::Duration;

/// A fault applied to the JWKS (`/jwks.json` unless moved) and `/.well-known/openid-configuration`
/// until it is changed with [`crate::TestIssuer::set_fault`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Serve normally.
    #[default]
    None,
    /// Answer with this HTTP status and a small JSON error body.
    Status(u16),
    /// Wait this long, then serve normally. Other requests are not blocked;
    /// the wait is cut short (and the connection dropped) when the issuer stops.
    Delay(Duration),
    /// Close the connection without sending any response.
    /// On non-Unix platforms the connection is left unanswered instead.
    Drop,
    /// Answer 200 with a valid JSON body of exactly this many bytes
    /// (the real document padded with a `"padding"` member), with `Content-Length`.
    Oversized(usize),
    /// Answer 200 with a truncated, syntactically invalid JSON body.
    InvalidJson,
    /// Answer `302 Found` with `Location:` set to this absolute URL.
    RedirectTo(String),
    /// Answer with this HTTP status (e.g. 429 or 503) and a `Retry-After` header with
    /// exactly this value (delta-seconds such as `"120"`, or an HTTP-date).
    StatusRetryAfter(u16, String),
    /// Answer `304 Not Modified` (with the configured cache headers) whatever the
    /// request's validators, even to a request that sent none.
    NotModified,
    /// Accept the connection, read the request and never answer. The connection is
    /// dropped when the issuer stops. A host that hangs, for timeout tests.
    Hang,
    /// A chain of same-host redirects that are each slow: the document's path waits
    /// `delay` and answers `302` to `/slow-redirect/1/<path>`, which waits `delay` and
    /// redirects to `/slow-redirect/2/<path>`, and so on; hop number `hops` waits
    /// `delay` and serves the document normally. One fetch thus makes `hops + 1`
    /// requests, each `delay` long.
    SlowRedirects {
        /// Redirects before the document is served.
        hops: u32,
        /// Wait before each answer (redirect or document).
        delay: Duration,
    },
}

/// The body served for [`Fault::InvalidJson`].
pub(crate) const INVALID_JSON_BODY: &str = r#"{"keys": [{"kty": "RSA", "kid": "#;

/// Pads the JSON object `body` with a `"padding"` member so that it is exactly `size` bytes.
/// If the document cannot fit, a smaller valid JSON object (or whitespace) of that size is used.
pub(crate) fn oversized_body(body: &str, size: usize) -> Vec<u8> {
    let trimmed = body.trim_end();
    let candidates = [trimmed, "{}"];
    for doc in candidates {
        let Some(inner) = doc.strip_suffix('}') else {
            continue;
        };
        let sep = if inner.trim_end().ends_with('{') { "" } else { "," };
        let overhead = inner.len() + sep.len() + r#""padding":""}"#.len();
        if size >= overhead {
            let mut out = Vec::with_capacity(size);
            out.extend_from_slice(inner.as_bytes());
            out.extend_from_slice(sep.as_bytes());
            out.extend_from_slice(br#""padding":""#);
            out.resize(out.len() + (size - overhead), b'x');
            out.extend_from_slice(br#""}"#);
            debug_assert_eq!(out.len(), size);
            return out;
        }
    }
    vec![b' '; size]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_is_exact_and_valid() {
        let doc = r#"{"keys":[{"kty":"OKP"}]}"#;
        for size in [0, 1, 5, 14, 15, 40, 41, 1000, 300_000] {
            let out = oversized_body(doc, size);
            assert_eq!(out.len(), size, "size {size}");
            if size >= 15 {
                serde_json::from_slice::<serde_json::Value>(&out).expect("valid JSON");
            }
        }
        let big = oversized_body(doc, 1000);
        let v: serde_json::Value = serde_json::from_slice(&big).unwrap();
        assert_eq!(v["keys"][0]["kty"], "OKP");
    }
}
