//! Verified claims to response headers (Envoy's `claim_to_headers`), made
//! safe to copy into a request to the upstream.
//!
//! A claim value is chosen by whoever got the issuer to sign the token (a
//! user's display name, say). Proxies copy these headers verbatim, so a CR or
//! LF in a value would split a header in two: the value is rebuilt from
//! printable characters only, with a bounded length.

use serde_json::{Map, Value};

/// A response header name checked at configuration time: an RFC 9110 token,
/// and not one that changes how the message itself is framed or routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderName(String);

/// Headers a claim must never set: message framing, hop-by-hop and
/// security-relevant response headers of the auth server itself.
const FORBIDDEN: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "host",
    "content-type",
    "cache-control",
    "www-authenticate",
    "retry-after",
    "set-cookie",
    "location",
    "proxy-authenticate",
];

impl HeaderName {
    /// Check a configured name (case-insensitive; stored lower case).
    pub fn parse(name: &str) -> Result<HeaderName, String> {
        let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || name.len() > 128 || !name.bytes().all(tchar) {
            return Err(format!("{name:?} is not a valid header name"));
        }
        let lower = name.to_ascii_lowercase();
        if FORBIDDEN.contains(&lower.as_str()) {
            return Err(format!("{name} cannot be set from a claim"));
        }
        Ok(HeaderName(lower))
    }

    /// The lower-case name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The claim headers of one verified token under one policy: lower-case
/// names and sanitised values, in the policy's order, absent claims left
/// out. Built once per verified result and shared by its cache hits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimHeaders {
    /// The policy these headers were built for (see
    /// [`HttpPolicy::id`](super::HttpPolicy::id)): a result shared by two
    /// policies never answers with the other's headers.
    pub(crate) policy: u64,
    /// Header name (lower case) and value.
    pub headers: Vec<(HeaderName, String)>,
}

impl ClaimHeaders {
    /// The headers `mapping` (claim name to header name) gives `claims`,
    /// each value cut to `max_bytes`.
    pub fn new(mapping: &[(String, HeaderName)], claims: &Map<String, Value>, max_bytes: usize) -> ClaimHeaders {
        ClaimHeaders {
            policy: 0,
            headers: mapping
                .iter()
                .filter_map(|(claim, name)| Some((name.clone(), header_value(claims.get(claim)?, max_bytes)?)))
                .collect(),
        }
    }
}

/// The header value for a claim: strings as they are, arrays joined by
/// commas (each element a string or its JSON), anything else as JSON; then
/// control characters (C0, DEL, C1, Unicode line and paragraph separators)
/// become spaces, surrounding whitespace is trimmed and the result is cut
/// to at most `max_bytes` at a character boundary. `None` for an empty
/// result, so an absent header and an empty claim look the same.
pub fn header_value(claim: &Value, max_bytes: usize) -> Option<String> {
    let raw = match claim {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let mut out = String::with_capacity(raw.len().min(max_bytes));
    for c in raw.chars() {
        let c = if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            ' '
        } else {
            c
        };
        if out.len() + c.len_utf8() > max_bytes {
            break;
        }
        out.push(c);
    }
    let trimmed = out.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crlf_and_other_controls_cannot_split_a_header() {
        let v = header_value(&json!("alice\r\nX-Injected: yes\u{0}\u{7f}\u{85}\u{2028}"), 1024).unwrap();
        assert_eq!(v, "alice  X-Injected: yes");
        assert!(!v.bytes().any(|b| b < 0x20 || b == 0x7f));
        // A valid field value (RFC 9110 §5.5): visible ASCII, space, obs-text.
        assert!(v
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic() || b >= 0x80));
    }

    #[test]
    fn arrays_are_joined_and_other_types_are_json() {
        assert_eq!(
            header_value(&json!(["a", "b", 3, {"x": 1}]), 100).unwrap(),
            "a,b,3,{\"x\":1}"
        );
        assert_eq!(header_value(&json!(42), 100).unwrap(), "42");
        assert_eq!(header_value(&json!(true), 100).unwrap(), "true");
        assert_eq!(header_value(&json!({"k": "v\n"}), 100).unwrap(), "{\"k\":\"v\\n\"}");
        assert_eq!(header_value(&json!(""), 100), None);
        assert_eq!(header_value(&json!("  \r\n "), 100), None);
    }

    #[test]
    fn length_is_bounded_at_a_character_boundary() {
        let v = header_value(&json!("é".repeat(100)), 11).unwrap();
        assert_eq!(v, "ééééé");
        assert_eq!(header_value(&json!("x".repeat(5000)), 1024).unwrap().len(), 1024);
    }

    #[test]
    fn header_names_are_checked() {
        assert_eq!(HeaderName::parse("X-Auth-Subject").unwrap().as_str(), "x-auth-subject");
        for bad in [
            "",
            "X Auth",
            "X-Auth:",
            "X-Auth\r\n",
            "Content-Length",
            "set-cookie",
            "Transfer-Encoding",
        ] {
            assert!(HeaderName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
