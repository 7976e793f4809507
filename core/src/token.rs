//! Cheap, strict parsing of a compact JWS before any key or network work.
//!
//! Step 1 of the verification path: size limit, exactly three base64url
//! segments, a JSON-object header with an allowed `alg` (never `none`) and no
//! `crit` extensions (we implement none, so any is unknown). Header fields
//! that point at keys (`jku`, `jwk`, `x5u`, `x5c`) are deliberately never read.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result};

/// A signature algorithm jwtwarden accepts. `none` is not representable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[allow(clippy::upper_case_acronyms)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
    /// HMAC with SHA-256 (local secrets only).
    HS256,
    /// HMAC with SHA-384 (local secrets only).
    HS384,
    /// HMAC with SHA-512 (local secrets only).
    HS512,
}

/// The key family an algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyFamily {
    /// RSA keys (`kty: RSA`).
    Rsa,
    /// P-256 keys.
    EcP256,
    /// P-384 keys.
    EcP384,
    /// Ed25519 keys (`kty: OKP`, `crv: Ed25519`).
    Ed25519,
    /// Local HMAC secrets.
    Hmac,
}

impl Alg {
    /// Parse the header's `alg` value. `none` and unknown names give `None`.
    pub fn parse(s: &str) -> Option<Alg> {
        Some(match s {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "EdDSA" => Alg::EdDSA,
            "HS256" => Alg::HS256,
            "HS384" => Alg::HS384,
            "HS512" => Alg::HS512,
            _ => return None,
        })
    }

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
        }
    }

    /// Whether this is an HMAC algorithm.
    pub fn is_hmac(self) -> bool {
        matches!(self, Alg::HS256 | Alg::HS384 | Alg::HS512)
    }

    /// The key family this algorithm verifies with.
    pub fn family(self) -> KeyFamily {
        match self {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => KeyFamily::Rsa,
            Alg::ES256 => KeyFamily::EcP256,
            Alg::ES384 => KeyFamily::EcP384,
            Alg::EdDSA => KeyFamily::Ed25519,
            Alg::HS256 | Alg::HS384 | Alg::HS512 => KeyFamily::Hmac,
        }
    }

    /// The `jsonwebtoken` algorithm.
    pub(crate) fn to_jwt(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as A;
        match self {
            Alg::RS256 => A::RS256,
            Alg::RS384 => A::RS384,
            Alg::RS512 => A::RS512,
            Alg::PS256 => A::PS256,
            Alg::PS384 => A::PS384,
            Alg::PS512 => A::PS512,
            Alg::ES256 => A::ES256,
            Alg::ES384 => A::ES384,
            Alg::EdDSA => A::EdDSA,
            Alg::HS256 => A::HS256,
            Alg::HS384 => A::HS384,
            Alg::HS512 => A::HS512,
        }
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The header fields jwtwarden acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The signature algorithm.
    pub alg: Alg,
    /// The key id, if any.
    pub kid: Option<String>,
    /// The media type, if any.
    pub typ: Option<String>,
}

/// A token split and decoded, signature not yet checked.
#[derive(Debug)]
pub struct ParsedToken<'a> {
    /// `base64url(header) . base64url(payload)`: the bytes that were signed.
    pub signing_input: &'a [u8],
    /// The third segment, still base64url.
    pub signature_b64: &'a str,
    /// The parsed header.
    pub header: Header,
    /// The decoded payload (unverified until the signature is checked).
    pub claims: Map<String, Value>,
}

/// Split and decode `raw`, rejecting anything malformed. Never allocates more
/// than a few times the token size and never touches the network.
pub fn parse(raw: &[u8], max_bytes: usize) -> Result<ParsedToken<'_>> {
    if raw.len() > max_bytes {
        return Err(Error::new(
            ErrorKind::TokenTooLarge,
            format!("token is {} bytes, limit {max_bytes}", raw.len()),
        ));
    }
    let text = std::str::from_utf8(raw).map_err(|_| malformed("token is not ASCII"))?;
    let mut parts = text.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(malformed("a JWS has exactly three dot-separated segments"));
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(malformed("empty segment (unsigned tokens are never accepted)"));
    }
    let header_bytes = b64(h, "header")?;
    let header_json: Map<String, Value> = serde_json::from_slice(&header_bytes)
        .map_err(|_| Error::new(ErrorKind::InvalidHeader, "header is not a JSON object"))?;
    let header = header_fields(&header_json)?;
    // Decode the signature here too, so a malformed one is rejected as a
    // malformed token before key lookup (which may fetch). The signature
    // check decodes it again; that costs well under 1 % of a miss.
    b64(s, "signature")?;
    let payload_bytes = b64(p, "payload")?;
    let claims: Map<String, Value> = serde_json::from_slice(&payload_bytes)
        .map_err(|_| Error::new(ErrorKind::InvalidPayload, "payload is not a JSON object"))?;
    Ok(ParsedToken {
        signing_input: &raw[..h.len() + 1 + p.len()],
        signature_b64: s,
        header,
        claims,
    })
}

/// The claims of a token that [`parse`] already accepted, decoded again
/// from its payload segment (a cached result keeps only the token and
/// decodes its claims when a caller first asks for them).
pub(crate) fn payload_claims(raw: &[u8]) -> Result<Map<String, Value>> {
    let text = std::str::from_utf8(raw).map_err(|_| malformed("token is not ASCII"))?;
    let payload = text
        .split('.')
        .nth(1)
        .ok_or_else(|| malformed("a JWS has exactly three dot-separated segments"))?;
    serde_json::from_slice(&b64(payload, "payload")?)
        .map_err(|_| Error::new(ErrorKind::InvalidPayload, "payload is not a JSON object"))
}

fn header_fields(h: &Map<String, Value>) -> Result<Header> {
    let alg = match h.get("alg") {
        Some(Value::String(a)) => Alg::parse(a).ok_or_else(|| {
            Error::new(
                ErrorKind::AlgorithmNotAllowed,
                format!("alg {:?} is not supported", truncate(a)),
            )
        })?,
        _ => return Err(Error::new(ErrorKind::InvalidHeader, "header has no string alg")),
    };
    match h.get("crit") {
        None => {}
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string) => {
            // We implement no JWS extensions, so every critical one is unknown.
            return Err(Error::new(
                ErrorKind::UnsupportedCritical,
                format!(
                    "unsupported critical header parameters: {}",
                    Value::Array(items.clone())
                ),
            ));
        }
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidHeader,
                "crit must be a non-empty array of strings",
            ))
        }
    }
    let opt_str = |name: &str| -> Result<Option<String>> {
        match h.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Error::new(ErrorKind::InvalidHeader, format!("{name} must be a string"))),
        }
    };
    Ok(Header {
        alg,
        kid: opt_str("kid")?,
        typ: opt_str("typ")?,
    })
}

fn b64(segment: &str, what: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Error::new(ErrorKind::InvalidBase64, format!("{what} is not unpadded base64url")))
}

fn malformed(msg: &str) -> Error {
    Error::new(ErrorKind::MalformedToken, msg)
}

/// At most 64 characters of an attacker-controlled string, for messages.
pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A token's `kid` for messages: quoted and truncated, or `(none)`.
pub(crate) fn describe_kid(kid: Option<&str>) -> String {
    kid.map_or_else(|| "(none)".to_string(), |k| format!("{:?}", truncate(k)))
}

/// Decode base64url or base64, padded or not (for configured secrets).
pub(crate) fn decode_b64_lenient(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD.decode(s).or_else(|_| STANDARD_NO_PAD.decode(s)).ok()
}

/// A short, non-reversible fingerprint of a token for logs: the first 12 hex
/// digits of its SHA-256. A token is never logged whole.
pub fn fingerprint(raw: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, raw);
    digest.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &str) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    fn tok(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", enc(header), enc(payload))
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = tok(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#, r#"{"sub":"a"}"#);
        let p = parse(t.as_bytes(), 16384).unwrap();
        assert_eq!(p.header.alg, Alg::RS256);
        assert_eq!(p.header.kid.as_deref(), Some("k1"));
        assert_eq!(p.claims["sub"], "a");
        assert_eq!(p.signature_b64, "c2ln");
    }

    #[test]
    fn rejects_malformed_shapes() {
        let kind = |t: &str| parse(t.as_bytes(), 16384).unwrap_err().kind();
        assert_eq!(kind("a.b"), ErrorKind::MalformedToken);
        assert_eq!(kind("a.b.c.d"), ErrorKind::MalformedToken);
        assert_eq!(
            kind(&format!("{}.{}.", enc(r#"{"alg":"RS256"}"#), enc("{}"))),
            ErrorKind::MalformedToken
        );
        assert_eq!(kind("!!.b.c"), ErrorKind::InvalidBase64);
        assert_eq!(kind(&tok("[1]", "{}")), ErrorKind::InvalidHeader);
        assert_eq!(kind(&tok("not json", "{}")), ErrorKind::InvalidHeader);
        assert_eq!(kind(&tok(r#"{"alg":"none"}"#, "{}")), ErrorKind::AlgorithmNotAllowed);
        assert_eq!(
            kind(&tok(r#"{"alg":"RS256","crit":["b64"],"b64":false}"#, "{}")),
            ErrorKind::UnsupportedCritical
        );
        assert_eq!(kind(&tok(r#"{"alg":"RS256"}"#, "[]")), ErrorKind::InvalidPayload);
        assert_eq!(parse(&[b'a'; 100], 64).unwrap_err().kind(), ErrorKind::TokenTooLarge);
    }

    #[test]
    fn fingerprint_is_short_and_stable() {
        assert_eq!(fingerprint(b"abc"), "ba7816bf8f01");
    }
}
