//! Lenient, unverified decoding of a compact JWT, for `inspect` and for
//! describing rejected tokens. Deliberately separate from the core's strict
//! parser: it must show what is inside tokens jwtwarden rejects.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde_json::{Map, Value};

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);

/// One decoded segment.
#[derive(Debug)]
pub enum Part {
    /// A JSON object.
    Object(Map<String, Value>),
    /// Valid JSON, but not an object.
    OtherJson(Value),
    /// Decoded text that is not JSON.
    NotJson(String),
    /// Decoded bytes that are not printable text: only their count is shown,
    /// so raw bytes never reach the terminal.
    Binary(usize),
    /// The segment is not base64 at all.
    NotBase64,
    /// The token has no such segment.
    Missing,
}

impl Part {
    fn decode(segment: Option<&str>, notes: &mut Vec<String>, name: &str) -> Part {
        let Some(segment) = segment else { return Part::Missing };
        let Some(bytes) = b64(segment, notes, name) else {
            return Part::NotBase64;
        };
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Part::Object(m),
            Ok(other) => Part::OtherJson(other),
            Err(_) => match std::str::from_utf8(&bytes) {
                Ok(text) if !text.chars().any(char::is_control) => Part::NotJson(text.to_owned()),
                _ => Part::Binary(bytes.len()),
            },
        }
    }

    /// The object, if the segment is one.
    pub fn object(&self) -> Option<&Map<String, Value>> {
        match self {
            Part::Object(m) => Some(m),
            _ => None,
        }
    }

    /// A JSON rendering for machine output: the object, or a description.
    pub fn to_json(&self) -> Value {
        match self {
            Part::Object(m) => Value::Object(m.clone()),
            Part::OtherJson(v) => v.clone(),
            Part::NotJson(text) => Value::String(text.clone()),
            Part::Binary(_) | Part::NotBase64 | Part::Missing => Value::Null,
        }
    }
}

/// What could be read from a token without verifying anything.
#[derive(Debug)]
pub struct Decoded {
    /// Number of dot-separated segments (3 for a JWS, 5 for a JWE).
    pub segments: usize,
    /// The JOSE header.
    pub header: Part,
    /// The payload (claims). Not decoded for a JWE, whose payload is encrypted.
    pub payload: Part,
    /// Signature length in bytes, if the third segment decodes.
    pub signature_bytes: Option<usize>,
    /// Everything odd about the encoding, in words.
    pub notes: Vec<String>,
}

impl Decoded {
    /// The header's string member `name`.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.object()?.get(name)?.as_str()
    }

    /// The payload's string member `name`.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.payload.object()?.get(name)?.as_str()
    }
}

fn b64(segment: &str, notes: &mut Vec<String>, name: &str) -> Option<Vec<u8>> {
    if let Ok(bytes) = URL_SAFE.decode(segment) {
        if segment.ends_with('=') {
            notes.push(format!("{name} is padded (JWS base64url has no '=' padding)"));
        }
        return Some(bytes);
    }
    if let Ok(bytes) = STANDARD.decode(segment) {
        notes.push(format!("{name} uses the standard base64 alphabet, not base64url"));
        return Some(bytes);
    }
    notes.push(format!("{name} is not base64url"));
    None
}

/// Decode `token` as far as possible. Surrounding whitespace and a
/// `Bearer ` prefix are ignored.
pub fn decode(token: &str) -> Decoded {
    let token = clean(token);
    let parts: Vec<&str> = token.split('.').collect();
    let mut notes = Vec::new();
    let segments = parts.len();
    match segments {
        3 => {}
        5 => notes.push("5 segments: an encrypted JWE; only its header can be read".into()),
        n => notes.push(format!("{n} segment(s); a signed JWT has exactly 3")),
    }
    let header = Part::decode(parts.first().copied(), &mut notes, "header");
    let (payload, signature_bytes) = if segments == 5 {
        (Part::Missing, None)
    } else {
        let payload = Part::decode(parts.get(1).copied(), &mut notes, "payload");
        let sig = match parts.get(2) {
            Some(&"") => Some(0),
            Some(s) => b64(s, &mut notes, "signature").map(|b| b.len()),
            None => None,
        };
        (payload, sig)
    };
    Decoded {
        segments,
        header,
        payload,
        signature_bytes,
        notes,
    }
}

/// The token without surrounding whitespace or an `Authorization` scheme.
pub fn clean(token: &str) -> &str {
    let t = token.trim();
    t.strip_prefix("Bearer ")
        .or_else(|| t.strip_prefix("bearer "))
        .unwrap_or(t)
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn enc(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn decodes_what_core_would_reject() {
        let none = format!("{}.{}.", enc(r#"{"alg":"none"}"#), enc(r#"{"sub":"x","exp":1}"#));
        let d = decode(&none);
        assert_eq!(d.header_str("alg"), Some("none"));
        assert_eq!(d.claim_str("sub"), Some("x"));
        assert_eq!(d.signature_bytes, Some(0));

        let two = format!("{}.{}", enc(r#"{"alg":"RS256"}"#), enc("not json"));
        let d = decode(&two);
        assert!(matches!(d.payload, Part::NotJson(ref t) if t == "not json"));
        assert!(d.notes[0].contains("2 segment"));

        let d = decode("Bearer !!!.???.x");
        assert!(matches!(d.header, Part::NotBase64));
        // Bytes that are not text are counted, never printed.
        let d = decode("not-a-token");
        assert!(matches!(d.header, Part::Binary(8)), "{:?}", d.header);
    }
}
