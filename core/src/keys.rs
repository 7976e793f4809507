//! Turning a JWKS document into usable verification keys.
//!
//! Filtering rules (DESIGN "Key filtering"): `use` must be `sig` or absent,
//! `key_ops` (if present) must allow `verify`, `alg`/`kty`/`crv` must fit an
//! algorithm the issuer allows, RSA moduli below 2048 bits (or above 8192)
//! are refused, and symmetric `oct` keys are never taken from a JWKS. One bad
//! key is skipped with a reason; it never poisons the rest of the set.

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::DecodingKey;
use serde_json::{Map, Value};

use crate::token::{Alg, KeyFamily};

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (bounds verification cost).
pub const MAX_RSA_BITS: usize = 8192;

/// One usable verification key.
pub struct Key {
    /// The key id, if the JWK has one.
    pub kid: Option<String>,
    /// `kty` as published (`RSA`, `EC`, `OKP`, or `oct` for local secrets).
    pub kty: &'static str,
    /// Which algorithms' family this key serves.
    pub family: KeyFamily,
    /// The JWK's declared `alg`, if any; then only that algorithm may use it.
    pub alg: Option<Alg>,
    /// RSA modulus size, or curve size, in bits.
    pub bits: usize,
    /// RFC 7638 SHA-256 thumbprint (base64url). Identifies the key material.
    pub thumbprint: String,
    pub(crate) decoding: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("kty", &self.kty)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .field("bits", &self.bits)
            .field("thumbprint", &self.thumbprint)
            .finish()
    }
}

impl Key {
    /// Whether this key may verify a token signed with `alg`.
    pub fn fits(&self, alg: Alg) -> bool {
        self.family == alg.family() && self.alg.is_none_or(|a| a == alg)
    }

    /// A key for a locally configured HMAC secret.
    pub(crate) fn hmac(kid: Option<String>, secret: &[u8]) -> Key {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret);
        Key {
            kid,
            kty: "oct",
            family: KeyFamily::Hmac,
            alg: None,
            bits: secret.len() * 8,
            // Not an RFC 7638 thumbprint of the secret (that would leak a
            // hash of it): a digest of the digest, only used to detect change.
            thumbprint: URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, digest.as_ref())),
            decoding: DecodingKey::from_secret(secret),
        }
    }
}

/// A key in a JWKS that was not taken, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedKey {
    /// Its `kid`, if it had a string one.
    pub kid: Option<String>,
    /// Why it was skipped.
    pub reason: String,
}

/// Result of looking a token's key up in a keyset.
pub enum Lookup<'a> {
    /// The key to verify with.
    Found(&'a Arc<Key>),
    /// No key has this kid.
    UnknownKid,
    /// Keys with this kid exist, but none fits the token's alg.
    Mismatch,
    /// The token has no kid, and not exactly one key fits its alg.
    MissingKid,
}

/// An issuer's usable keys, indexed by `kid` and by thumbprint.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Arc<Key>>,
    by_kid: HashMap<String, Vec<usize>>,
    /// For [`KeySet::contains`], which a refresh calls once per old key: a
    /// scan there made comparing two large sets quadratic.
    by_thumbprint: HashMap<String, Vec<usize>>,
}

impl KeySet {
    /// A keyset from keys (order is kept; first fitting key wins).
    pub fn new(keys: Vec<Arc<Key>>) -> KeySet {
        let mut by_kid: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_thumbprint: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            if let Some(kid) = &k.kid {
                by_kid.entry(kid.clone()).or_default().push(i);
            }
            by_thumbprint.entry(k.thumbprint.clone()).or_default().push(i);
        }
        KeySet {
            keys,
            by_kid,
            by_thumbprint,
        }
    }

    /// All keys.
    pub fn keys(&self) -> &[Arc<Key>] {
        &self.keys
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key with this kid and thumbprint is in the set.
    pub fn contains(&self, kid: Option<&str>, thumbprint: &str) -> bool {
        self.by_thumbprint
            .get(thumbprint)
            .is_some_and(|idx| idx.iter().any(|&i| self.keys[i].kid.as_deref() == kid))
    }

    /// Find the key for a token's `kid` and `alg`.
    pub fn find(&self, kid: Option<&str>, alg: Alg) -> Lookup<'_> {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                None => Lookup::UnknownKid,
                Some(idx) => idx
                    .iter()
                    .map(|&i| &self.keys[i])
                    .find(|k| k.fits(alg))
                    .map_or(Lookup::Mismatch, Lookup::Found),
            },
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Lookup::Found(k),
                    _ => Lookup::MissingKid,
                }
            }
        }
    }
}

/// Parse a JWKS document. Errors only when the document itself is unusable
/// (not JSON, no `keys` array); individual bad keys are returned as skipped.
pub fn parse_jwks(body: &[u8], allowed: &[Alg]) -> Result<(Vec<Key>, Vec<SkippedKey>), String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("JWKS is not valid JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "JWKS has no \"keys\" array".to_string())?;
    let mut usable = Vec::new();
    let mut skipped = Vec::new();
    for jwk in keys {
        let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
        match parse_jwk(jwk, allowed) {
            Ok(key) => usable.push(key),
            Err(reason) => {
                log::warn!(
                    "skipping JWKS key kid={:?}: {reason}",
                    kid.as_deref().map(crate::token::truncate)
                );
                skipped.push(SkippedKey { kid, reason });
            }
        }
    }
    Ok((usable, skipped))
}

fn parse_jwk(jwk: &Value, allowed: &[Alg]) -> Result<Key, String> {
    let obj = jwk.as_object().ok_or("key is not a JSON object")?;
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("kid is not a string".into()),
    };
    match obj.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(other) => return Err(format!("use is {other}, not \"sig\"")),
    }
    if let Some(ops) = obj.get("key_ops") {
        let verify = ops.as_array().is_some_and(|a| a.iter().any(|o| o == "verify"));
        if !verify {
            return Err("key_ops does not include \"verify\"".into());
        }
    }
    let declared_alg = match obj.get("alg") {
        None => None,
        Some(Value::String(a)) => {
            Some(Alg::parse(a).ok_or_else(|| format!("unsupported alg {:?}", crate::token::truncate(a)))?)
        }
        Some(_) => return Err("alg is not a string".into()),
    };
    let kty = obj.get("kty").and_then(Value::as_str).ok_or("missing kty")?;
    let (kty, family, bits, decoding, thumb_members): (
        &'static str,
        KeyFamily,
        usize,
        DecodingKey,
        Vec<(&str, String)>,
    ) = match kty {
        "RSA" => {
            let n = member(obj, "n")?;
            let e = member(obj, "e")?;
            let n_bytes = b64(&n, "n")?;
            let bits = significant_bits(&n_bytes);
            if bits < MIN_RSA_BITS {
                return Err(format!("RSA key is {bits} bits, minimum {MIN_RSA_BITS}"));
            }
            if bits > MAX_RSA_BITS {
                return Err(format!("RSA key is {bits} bits, maximum {MAX_RSA_BITS}"));
            }
            let e_bytes = b64(&e, "e")?;
            if e_bytes.is_empty() || e_bytes.len() > 8 {
                return Err("RSA exponent is malformed".into());
            }
            let key = DecodingKey::from_rsa_raw_components(&n_bytes, &e_bytes);
            (
                "RSA",
                KeyFamily::Rsa,
                bits,
                key,
                vec![("e", e), ("kty", "RSA".into()), ("n", n)],
            )
        }
        "EC" => {
            let crv = member(obj, "crv")?;
            let (family, len) = match crv.as_str() {
                "P-256" => (KeyFamily::EcP256, 32),
                "P-384" => (KeyFamily::EcP384, 48),
                other => return Err(format!("unsupported curve {:?}", crate::token::truncate(other))),
            };
            let x = member(obj, "x")?;
            let y = member(obj, "y")?;
            if b64(&x, "x")?.len() != len || b64(&y, "y")?.len() != len {
                return Err(format!("{crv} coordinates must be {len} bytes"));
            }
            let key = DecodingKey::from_ec_components(&x, &y).map_err(|e| format!("bad EC key: {e}"))?;
            (
                "EC",
                family,
                len * 8,
                key,
                vec![("crv", crv), ("kty", "EC".into()), ("x", x), ("y", y)],
            )
        }
        "OKP" => {
            let crv = member(obj, "crv")?;
            if crv != "Ed25519" {
                return Err(format!("unsupported OKP curve {:?}", crate::token::truncate(&crv)));
            }
            let x = member(obj, "x")?;
            if b64(&x, "x")?.len() != 32 {
                return Err("Ed25519 public key must be 32 bytes".into());
            }
            let key = DecodingKey::from_ed_components(&x).map_err(|e| format!("bad Ed25519 key: {e}"))?;
            (
                "OKP",
                KeyFamily::Ed25519,
                256,
                key,
                vec![("crv", crv), ("kty", "OKP".into()), ("x", x)],
            )
        }
        "oct" => return Err("symmetric (oct) keys are never taken from a JWKS; configure hmac_keys".into()),
        other => return Err(format!("unsupported kty {:?}", crate::token::truncate(other))),
    };
    if let Some(a) = declared_alg {
        if a.family() != family {
            return Err(format!("alg {a} does not fit a {kty} key"));
        }
        if !allowed.contains(&a) {
            return Err(format!("alg {a} is not allowed for this issuer"));
        }
    } else if !allowed.iter().any(|a| a.family() == family) {
        return Err(format!("no allowed algorithm uses a {kty} key of this kind"));
    }
    Ok(Key {
        kid,
        kty,
        family,
        alg: declared_alg,
        bits,
        thumbprint: thumbprint(&thumb_members),
        decoding,
    })
}

fn member(obj: &Map<String, Value>, name: &str) -> Result<String, String> {
    obj.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("missing {name}"))
}

fn b64(s: &str, name: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| format!("{name} is not base64url"))
}

fn significant_bits(be: &[u8]) -> usize {
    match be.iter().position(|&b| b != 0) {
        None => 0,
        Some(i) => (be.len() - i) * 8 - be[i].leading_zeros() as usize,
    }
}

/// RFC 7638: SHA-256 over the required members, sorted, no whitespace.
fn thumbprint(members: &[(&str, String)]) -> String {
    let mut canonical = Map::new();
    for (k, v) in members {
        canonical.insert((*k).to_string(), Value::String(v.clone()));
    }
    // serde_json's Map is a BTreeMap without the preserve_order feature, so
    // members serialize sorted, as RFC 7638 requires.
    let json = serde_json::to_string(&canonical).expect("string map serializes");
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, json.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Alg] = &[Alg::RS256, Alg::ES256, Alg::EdDSA];

    #[test]
    fn rfc7638_example_thumbprint() {
        // The RSA key from RFC 7638 section 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let t = thumbprint(&[("e", "AQAB".into()), ("kty", "RSA".into()), ("n", n.into())]);
        assert_eq!(t, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn skips_bad_keys_and_keeps_good_ones() {
        let small_n = URL_SAFE_NO_PAD.encode([0xffu8; 128]); // 1024 bits
        let body = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "small", "n": small_n, "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": small_n, "e": "AQAB"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([7u8; 32])},
            "not an object"
        ]});
        let (keys, skipped) = parse_jwks(body.to_string().as_bytes(), ALL).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("ed"));
        assert_eq!(skipped.len(), 5);
        assert!(skipped[0].reason.contains("symmetric"));
        assert!(skipped[1].reason.contains("1024 bits"));
        assert!(skipped[2].reason.contains("not \"sig\""));
    }

    #[test]
    fn unusable_documents_are_errors() {
        assert!(parse_jwks(b"not json", ALL).is_err());
        assert!(parse_jwks(b"{\"nokeys\":[]}", ALL).is_err());
    }

    #[test]
    fn lookup_respects_alg_family() {
        let ed = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let body = serde_json::json!({"keys": [{"kty": "OKP", "kid": "a", "crv": "Ed25519", "x": ed}]});
        let (keys, _) = parse_jwks(body.to_string().as_bytes(), ALL).unwrap();
        let set = KeySet::new(keys.into_iter().map(Arc::new).collect());
        assert!(matches!(set.find(Some("a"), Alg::EdDSA), Lookup::Found(_)));
        assert!(matches!(set.find(Some("a"), Alg::RS256), Lookup::Mismatch));
        assert!(matches!(set.find(Some("b"), Alg::EdDSA), Lookup::UnknownKid));
        assert!(matches!(set.find(None, Alg::EdDSA), Lookup::Found(_)));
        assert!(matches!(set.find(None, Alg::ES256), Lookup::MissingKid));
    }

    fn fake_key(kid: String, thumbprint: String) -> Arc<Key> {
        Arc::new(Key {
            kid: Some(kid),
            kty: "OKP",
            family: KeyFamily::Ed25519,
            alg: None,
            bits: 256,
            thumbprint,
            decoding: DecodingKey::from_secret(b""),
        })
    }

    #[test]
    fn comparing_two_16000_key_sets_completes() {
        const N: usize = 16_000;
        // The new set drops the first half of the old one and adds as many.
        let old = KeySet::new((0..N).map(|i| fake_key(format!("k{i}"), format!("t{i}"))).collect());
        let new = KeySet::new(
            (N / 2..N + N / 2)
                .map(|i| fake_key(format!("k{i}"), format!("t{i}")))
                .collect(),
        );
        let started = std::time::Instant::now();
        // What Issuer::install does: which old keys are gone from the new set.
        let removed = old
            .keys()
            .iter()
            .filter(|k| !new.contains(k.kid.as_deref(), &k.thumbprint))
            .count();
        eprintln!("comparing two {N}-key sets: {:?}", started.elapsed());
        assert_eq!(removed, N / 2);
        // Both kid and thumbprint must match.
        assert!(new.contains(Some("k8000"), "t8000"));
        assert!(!new.contains(Some("k8001"), "t8000"));
        assert!(!new.contains(None, "t8000"));
        assert!(!new.contains(Some("k0"), "t0"));
    }
}
