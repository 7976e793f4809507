//! Turning a JWKS document into usable verification keys.
//!
//! Filtering rules (DESIGN "Key filtering"): `use` must be `sig` or absent,
//! `key_ops` (if present) must allow `verify`, `alg`/`kty`/`crv` must fit an
//! algorithm the issuer allows, RSA moduli below 2048 bits (or above 8192)
//! are refused, and symmetric `oct` keys are never taken from a JWKS. Every
//! key is also checked as the crypto backend (aws-lc) will use it: RSA
//! components without leading zeros, an odd modulus, an odd exponent in
//! 3..=2^33-1; EC points on the declared curve; Ed25519 points canonically
//! encoded, on the curve and not of small order. A key that passes the JSON
//! checks but could verify nothing would otherwise count as usable, and a set
//! of only such keys would replace a good one. One bad key is skipped with a
//! reason; it never poisons the rest of the set. The skipped keys of a JWKS
//! are logged as one summary line.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, EcdsaVerificationAlgorithm, ParsedPublicKey, RsaPublicKeyComponents};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use curve25519_dalek::edwards::CompressedEdwardsY;
use jsonwebtoken::DecodingKey;
use serde_json::{Map, Value};

use crate::token::{Alg, KeyFamily};

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (bounds verification cost).
pub const MAX_RSA_BITS: usize = 8192;

/// One usable verification key.
pub struct Key {
    /// The key id, if the JWK has one. Shared with the results it verifies
    /// (every cached result keeps its key's `kid` without a copy).
    pub kid: Option<Arc<str>>,
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
    /// When this process first saw this key material (by thumbprint) in
    /// its issuer's fetched set, ms since the epoch; kept across refreshes
    /// while the key stays in the set. Set when a set is installed; 0 when
    /// not known (local HMAC secrets, a key not installed).
    pub first_seen_ms: u64,
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

    /// Check `token`'s signature, made with `alg`, against this key.
    pub(crate) fn verify(&self, token: &crate::token::ParsedToken<'_>, alg: Alg) -> crate::error::Result<()> {
        let ok = jsonwebtoken::crypto::verify(token.signature_b64, token.signing_input, &self.decoding, alg.to_jwt())
            .unwrap_or(false);
        if ok {
            return Ok(());
        }
        Err(crate::error::Error::new(
            crate::error::ErrorKind::InvalidSignature,
            format!(
                "signature does not verify with key {}",
                crate::token::describe_kid(token.header.kid.as_deref())
            ),
        ))
    }

    /// A key for a locally configured HMAC secret.
    pub(crate) fn hmac(kid: Option<Arc<str>>, secret: &[u8]) -> Key {
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
            first_seen_ms: 0,
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
    by_kid: HashMap<Arc<str>, Vec<usize>>,
    /// For [`KeySet::contains`], which a refresh calls once per old key: a
    /// scan there made comparing two large sets quadratic.
    by_thumbprint: HashMap<String, Vec<usize>>,
}

impl KeySet {
    /// A keyset from keys (order is kept; first fitting key wins).
    pub fn new(keys: Vec<Arc<Key>>) -> KeySet {
        let mut by_kid: HashMap<Arc<str>, Vec<usize>> = HashMap::new();
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

    /// Whether a key with this kid and thumbprint is in the set.
    pub fn contains(&self, kid: Option<&str>, thumbprint: &str) -> bool {
        self.by_thumbprint
            .get(thumbprint)
            .is_some_and(|idx| idx.iter().any(|&i| self.keys[i].kid.as_deref() == kid))
    }

    /// When the key material with this thumbprint was first seen
    /// ([`Key::first_seen_ms`]), if the set holds it.
    pub fn first_seen_ms(&self, thumbprint: &str) -> Option<u64> {
        self.by_thumbprint
            .get(thumbprint)
            .and_then(|idx| idx.iter().map(|&i| self.keys[i].first_seen_ms).min())
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

/// Skipped keys listed one by one per JWKS; past this, the rest are only
/// counted, in one last entry, so a hostile JWKS cannot grow the list (kept
/// per issuer for diagnostics) without bound.
pub const MAX_SKIPPED_LISTED: usize = 100;

/// Kids named in the per-fetch summary log line.
const KIDS_IN_LOG: usize = 5;

/// Why a key was skipped: a broad category (counted in the log summary) and
/// the detailed reason (kept in [`SkippedKey`]).
struct Reject {
    category: &'static str,
    reason: String,
}

/// The JWK itself is malformed: wrong types, bad base64, wrong lengths.
const MALFORMED: &str = "malformed";
/// `use` / `key_ops` say the key is not for verifying signatures.
const NOT_FOR_SIGNING: &str = "not for signing";
/// A `kty`, `crv` or `alg` jwtwarden does not implement.
const UNSUPPORTED: &str = "unsupported";
/// The key's algorithm is not one this issuer allows.
const NOT_ALLOWED: &str = "not allowed";
/// Symmetric keys are never taken from a JWKS.
const SYMMETRIC: &str = "symmetric";
/// RSA modulus outside the accepted size range.
const KEY_SIZE: &str = "key size";
/// Well-formed, but no signature could (or should) ever verify with it.
const INVALID_KEY: &str = "invalid key";

fn reject(category: &'static str, reason: impl Into<String>) -> Reject {
    Reject {
        category,
        reason: reason.into(),
    }
}

/// Parse a JWKS document. Errors only when the document itself is unusable
/// (not JSON, no `keys` array); individual bad keys are returned as skipped:
/// the first [`MAX_SKIPPED_LISTED`] one by one, then, if there were more, one
/// entry without kid that says how many more. One warning summarizes the
/// skipped keys (never one line per key: a JWKS of junk must not flood logs).
pub fn parse_jwks(body: &[u8], allowed: &[Alg]) -> Result<(Vec<Key>, Vec<SkippedKey>), String> {
    parse_key_set(body, allowed, KeyUse::Sig)
}

/// Which `use` a key set's keys must declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyUse {
    /// An issuer's JWKS: `use` is `sig` or absent.
    Sig,
    /// A SPIFFE bundle's JWT authorities: `use` is exactly `jwt-svid`
    /// (`x509-svid` keys and keys without `use` are skipped).
    JwtSvid,
}

/// [`parse_jwks`] for keys of `usage`.
pub(crate) fn parse_key_set(
    body: &[u8],
    allowed: &[Alg],
    usage: KeyUse,
) -> Result<(Vec<Key>, Vec<SkippedKey>), String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("JWKS is not valid JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "JWKS has no \"keys\" array".to_string())?;
    let mut usable = Vec::new();
    let mut skipped = Vec::new();
    let mut skipped_total = 0usize;
    // BTreeMap: the log line lists categories in a stable order.
    let mut by_category: std::collections::BTreeMap<&'static str, usize> = Default::default();
    let mut first_kids: Vec<String> = Vec::new();
    for jwk in keys {
        match parse_jwk(jwk, allowed, usage) {
            Ok(key) => usable.push(key),
            Err(Reject { category, reason }) => {
                let kid = jwk.get("kid").and_then(Value::as_str);
                skipped_total += 1;
                *by_category.entry(category).or_default() += 1;
                if first_kids.len() < KIDS_IN_LOG {
                    first_kids.push(crate::token::describe_kid(kid));
                }
                if skipped.len() < MAX_SKIPPED_LISTED {
                    skipped.push(SkippedKey {
                        kid: kid.map(str::to_owned),
                        reason,
                    });
                }
            }
        }
    }
    if skipped_total > 0 {
        let categories: Vec<String> = by_category.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        let more = if skipped_total > first_kids.len() { ", ..." } else { "" };
        log::warn!(
            "JWKS: skipped {skipped_total} of {} keys ({}); kids {}{more}",
            keys.len(),
            categories.join(", "),
            first_kids.join(", "),
        );
    }
    if skipped_total > skipped.len() {
        skipped.push(SkippedKey {
            kid: None,
            reason: format!(
                "{} more keys skipped, not listed (only the first {MAX_SKIPPED_LISTED} are)",
                skipped_total - skipped.len()
            ),
        });
    }
    Ok((usable, skipped))
}

fn parse_jwk(jwk: &Value, allowed: &[Alg], usage: KeyUse) -> Result<Key, Reject> {
    let obj = jwk
        .as_object()
        .ok_or_else(|| reject(MALFORMED, "key is not a JSON object"))?;
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(Arc::from(s.as_str())),
        Some(_) => return Err(reject(MALFORMED, "kid is not a string")),
    };
    check_use(obj, usage)?;
    let declared_alg = declared_alg(obj)?;
    let kty = obj
        .get("kty")
        .and_then(Value::as_str)
        .ok_or_else(|| reject(MALFORMED, "missing kty"))?;
    let m = match kty {
        "RSA" => rsa_material(obj)?,
        "EC" => ec_material(obj)?,
        "OKP" => okp_material(obj)?,
        "oct" => {
            return Err(reject(
                SYMMETRIC,
                "symmetric (oct) keys are never taken from a JWKS; configure hmac_keys",
            ))
        }
        other => {
            return Err(reject(
                UNSUPPORTED,
                format!("unsupported kty {:?}", crate::token::truncate(other)),
            ))
        }
    };
    check_alg_fits(declared_alg, m.family, m.kty, allowed)?;
    Ok(Key {
        kid,
        kty: m.kty,
        family: m.family,
        alg: declared_alg,
        bits: m.bits,
        thumbprint: thumbprint(&m.thumb_members),
        first_seen_ms: 0,
        decoding: m.decoding,
    })
}

/// What one key type's parser yields: the key material, checked as the
/// backend will use it, and the members its RFC 7638 thumbprint covers.
struct Material {
    kty: &'static str,
    family: KeyFamily,
    bits: usize,
    decoding: DecodingKey,
    thumb_members: Vec<(&'static str, String)>,
}

/// `use` must be `sig` or absent (exactly `jwt-svid` in a SPIFFE bundle);
/// `key_ops`, if present, must allow `verify`.
fn check_use(obj: &Map<String, Value>, usage: KeyUse) -> Result<(), Reject> {
    match (obj.get("use"), usage) {
        (None, KeyUse::Sig) => {}
        (Some(Value::String(u)), KeyUse::Sig) if u == "sig" => {}
        (Some(Value::String(u)), KeyUse::JwtSvid) if u == "jwt-svid" => {}
        (None, KeyUse::JwtSvid) => return Err(reject(NOT_FOR_SIGNING, "a SPIFFE bundle key without use")),
        (Some(other), KeyUse::JwtSvid) => {
            let shown = crate::token::truncate(&other.to_string());
            return Err(reject(NOT_FOR_SIGNING, format!("use is {shown}, not \"jwt-svid\"")));
        }
        (Some(other), KeyUse::Sig) => {
            let shown = crate::token::truncate(&other.to_string());
            return Err(reject(NOT_FOR_SIGNING, format!("use is {shown}, not \"sig\"")));
        }
    }
    if let Some(ops) = obj.get("key_ops") {
        let verify = ops.as_array().is_some_and(|a| a.iter().any(|o| o == "verify"));
        if !verify {
            return Err(reject(NOT_FOR_SIGNING, "key_ops does not include \"verify\""));
        }
    }
    Ok(())
}

/// The JWK's own `alg`, if it declares one.
fn declared_alg(obj: &Map<String, Value>) -> Result<Option<Alg>, Reject> {
    match obj.get("alg") {
        None => Ok(None),
        Some(Value::String(a)) => Alg::parse(a)
            .map(Some)
            .ok_or_else(|| reject(UNSUPPORTED, format!("unsupported alg {:?}", crate::token::truncate(a)))),
        Some(_) => Err(reject(MALFORMED, "alg is not a string")),
    }
}

/// A declared `alg` must fit the key and be allowed; without one, some
/// allowed algorithm must use this kind of key.
fn check_alg_fits(declared: Option<Alg>, family: KeyFamily, kty: &str, allowed: &[Alg]) -> Result<(), Reject> {
    match declared {
        Some(a) if a.family() != family => Err(reject(NOT_ALLOWED, format!("alg {a} does not fit a {kty} key"))),
        Some(a) if !allowed.contains(&a) => Err(reject(NOT_ALLOWED, format!("alg {a} is not allowed for this issuer"))),
        Some(_) => Ok(()),
        None if allowed.iter().any(|a| a.family() == family) => Ok(()),
        None => Err(reject(
            NOT_ALLOWED,
            format!("no allowed algorithm uses a {kty} key of this kind"),
        )),
    }
}

fn rsa_material(obj: &Map<String, Value>) -> Result<Material, Reject> {
    let n = member(obj, "n")?;
    let e = member(obj, "e")?;
    let n_bytes = b64(&n, "n")?;
    let e_bytes = b64(&e, "e")?;
    let bits = check_rsa(&n_bytes, &e_bytes)?;
    Ok(Material {
        kty: "RSA",
        family: KeyFamily::Rsa,
        bits,
        decoding: DecodingKey::from_rsa_raw_components(&n_bytes, &e_bytes),
        thumb_members: vec![("e", e), ("kty", "RSA".into()), ("n", n)],
    })
}

fn ec_material(obj: &Map<String, Value>) -> Result<Material, Reject> {
    let crv = member(obj, "crv")?;
    let (family, len, backend): (_, _, &'static EcdsaVerificationAlgorithm) = match crv.as_str() {
        "P-256" => (KeyFamily::EcP256, 32, &signature::ECDSA_P256_SHA256_FIXED),
        "P-384" => (KeyFamily::EcP384, 48, &signature::ECDSA_P384_SHA384_FIXED),
        other => {
            return Err(reject(
                UNSUPPORTED,
                format!("unsupported curve {:?}", crate::token::truncate(other)),
            ))
        }
    };
    let x = member(obj, "x")?;
    let y = member(obj, "y")?;
    let (x_bytes, y_bytes) = (b64(&x, "x")?, b64(&y, "y")?);
    if x_bytes.len() != len || y_bytes.len() != len {
        return Err(reject(MALFORMED, format!("{crv} coordinates must be {len} bytes")));
    }
    // The backend decodes the uncompressed point and checks it is on the
    // curve; a point that is not can verify nothing.
    let point = [&[0x04][..], &x_bytes, &y_bytes].concat();
    ParsedPublicKey::new(backend, &point).map_err(|e| reject(INVALID_KEY, format!("EC point is not on {crv}: {e}")))?;
    let decoding =
        DecodingKey::from_ec_components(&x, &y).map_err(|e| reject(MALFORMED, format!("bad EC key: {e}")))?;
    Ok(Material {
        kty: "EC",
        family,
        bits: len * 8,
        decoding,
        thumb_members: vec![("crv", crv), ("kty", "EC".into()), ("x", x), ("y", y)],
    })
}

fn okp_material(obj: &Map<String, Value>) -> Result<Material, Reject> {
    let crv = member(obj, "crv")?;
    if crv != "Ed25519" {
        return Err(reject(
            UNSUPPORTED,
            format!("unsupported OKP curve {:?}", crate::token::truncate(&crv)),
        ));
    }
    let x = member(obj, "x")?;
    let x_bytes: [u8; 32] = b64(&x, "x")?
        .try_into()
        .map_err(|_| reject(MALFORMED, "Ed25519 public key must be 32 bytes"))?;
    check_ed25519(&x_bytes)?;
    let decoding =
        DecodingKey::from_ed_components(&x).map_err(|e| reject(MALFORMED, format!("bad Ed25519 key: {e}")))?;
    Ok(Material {
        kty: "OKP",
        family: KeyFamily::Ed25519,
        bits: 256,
        decoding,
        thumb_members: vec![("crv", crv), ("kty", "OKP".into()), ("x", x)],
    })
}

/// Largest RSA public exponent the crypto backend accepts: aws-lc refuses
/// exponents longer than 33 bits (a verification cost bound), so a key with
/// a larger one verifies nothing.
pub const MAX_RSA_EXPONENT: u64 = (1 << 33) - 1;

/// Check an RSA key as the backend will use it; returns the modulus size.
///
/// The explicit checks give a precise reason for the common failures; the
/// backend parse at the end is the authority, so this filter can never count
/// usable a key that aws-lc would refuse at verification time.
fn check_rsa(n: &[u8], e: &[u8]) -> Result<usize, Reject> {
    // RFC 7518 6.3.1.1: no leading zero octets. aws-lc-rs refuses them when
    // jsonwebtoken hands it the raw components, so such a key never verifies.
    if n.first() == Some(&0) {
        return Err(reject(
            MALFORMED,
            "RSA modulus has leading zero octets (RFC 7518 6.3.1.1)",
        ));
    }
    if e.is_empty() {
        return Err(reject(MALFORMED, "RSA exponent is empty"));
    }
    if e[0] == 0 {
        return Err(reject(
            MALFORMED,
            "RSA exponent has leading zero octets (RFC 7518 6.3.1.1)",
        ));
    }
    let bits = significant_bits(n);
    if bits < MIN_RSA_BITS {
        return Err(reject(
            KEY_SIZE,
            format!("RSA key is {bits} bits, minimum {MIN_RSA_BITS}"),
        ));
    }
    if bits > MAX_RSA_BITS {
        return Err(reject(
            KEY_SIZE,
            format!("RSA key is {bits} bits, maximum {MAX_RSA_BITS}"),
        ));
    }
    // Without leading zeros, more than 5 octets is at least 2^40.
    let e_value = (e.len() <= 5).then(|| e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)));
    let Some(e_value) = e_value.filter(|&v| v <= MAX_RSA_EXPONENT) else {
        return Err(reject(
            INVALID_KEY,
            format!("RSA exponent is larger than {MAX_RSA_EXPONENT} (2^33-1, the crypto backend's limit)"),
        ));
    };
    if e_value < 3 {
        return Err(reject(INVALID_KEY, format!("RSA exponent is {e_value}, minimum 3")));
    }
    if e_value % 2 == 0 {
        return Err(reject(INVALID_KEY, format!("RSA exponent {e_value} is even")));
    }
    if n.last().is_some_and(|b| b % 2 == 0) {
        return Err(reject(INVALID_KEY, "RSA modulus is even"));
    }
    // Parsing the SubjectPublicKeyInfo makes aws-lc run RSA_check_key on the
    // public components, the same rules its verification applies.
    let components = RsaPublicKeyComponents { n, e };
    components
        .as_der()
        .map_err(|_| ())
        .and_then(|der| ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, der.as_ref()).map_err(|_| ()))
        .map_err(|()| reject(INVALID_KEY, "the crypto backend refuses this RSA key"))?;
    Ok(bits)
}

/// Check an Ed25519 public key: a canonically encoded curve point, not of
/// small order.
///
/// A small-order key lets anyone forge: with S = 0 and R in the small
/// subgroup, the verification equation holds for many (for the identity, all)
/// messages, and aws-lc's Ed25519 verification does not refuse such keys.
fn check_ed25519(x: &[u8; 32]) -> Result<(), Reject> {
    let point = CompressedEdwardsY(*x)
        .decompress()
        .ok_or_else(|| reject(INVALID_KEY, "Ed25519 public key is not a point on the curve"))?;
    if point.is_small_order() {
        return Err(reject(
            INVALID_KEY,
            "Ed25519 public key is a point of small order (would let anyone forge signatures)",
        ));
    }
    // decompress() reduces y modulo p and ignores a sign bit set on x = 0;
    // re-encoding gives the one canonical encoding (RFC 8032 5.1.3).
    if point.compress().as_bytes() != x {
        return Err(reject(INVALID_KEY, "Ed25519 public key is not canonically encoded"));
    }
    ParsedPublicKey::new(&signature::ED25519, x)
        .map_err(|e| reject(INVALID_KEY, format!("the crypto backend refuses this Ed25519 key: {e}")))?;
    Ok(())
}

fn member(obj: &Map<String, Value>, name: &str) -> Result<String, Reject> {
    obj.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| reject(MALFORMED, format!("missing {name}")))
}

fn b64(s: &str, name: &str) -> Result<Vec<u8>, Reject> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| reject(MALFORMED, format!("{name} is not base64url")))
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

    /// RFC 8032 section 7.1, test 1: a real Ed25519 public key.
    const ED25519_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    /// The RSA modulus of RFC 7638 section 3.1 (2048 bits, a real key).
    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    /// The eight points of order dividing 8 on edwards25519, canonically
    /// encoded: identity (order 1), (0, -1) (order 2), (±sqrt(-1), 0)
    /// (order 4) and four of order 8.
    const SMALL_ORDER_CANONICAL: [&str; 8] = [
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    ];

    /// The same points under non-canonical encodings: the x sign bit set on
    /// x = 0, or y + p in place of y (only y = 0 and y = 1 have room below
    /// 2^255 for that).
    const SMALL_ORDER_NON_CANONICAL: [&str; 6] = [
        "0100000000000000000000000000000000000000000000000000000000000080",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    ];

    fn unhex32(h: &str) -> [u8; 32] {
        let v: Vec<u8> = (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }

    fn okp(kid: &str, x: &[u8]) -> Value {
        serde_json::json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(x)})
    }

    /// The one key of a single-key JWKS: taken, or the reason it was skipped.
    fn verdict(jwk: Value) -> Result<Key, String> {
        let body = serde_json::json!({ "keys": [jwk] }).to_string();
        let (mut keys, skipped) = parse_jwks(body.as_bytes(), ALL).unwrap();
        match (keys.pop(), skipped.first()) {
            (Some(k), None) => Ok(k),
            (None, Some(s)) => Err(s.reason.clone()),
            _ => panic!("one key in, one verdict out"),
        }
    }

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
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": ED25519_X},
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
        let body = serde_json::json!({"keys": [{"kty": "OKP", "kid": "a", "crv": "Ed25519", "x": ED25519_X}]});
        let (keys, _) = parse_jwks(body.to_string().as_bytes(), ALL).unwrap();
        let set = KeySet::new(keys.into_iter().map(Arc::new).collect());
        assert!(matches!(set.find(Some("a"), Alg::EdDSA), Lookup::Found(_)));
        assert!(matches!(set.find(Some("a"), Alg::RS256), Lookup::Mismatch));
        assert!(matches!(set.find(Some("b"), Alg::EdDSA), Lookup::UnknownKid));
        assert!(matches!(set.find(None, Alg::EdDSA), Lookup::Found(_)));
        assert!(matches!(set.find(None, Alg::ES256), Lookup::MissingKid));
    }

    #[test]
    fn small_order_constants_are_exactly_the_eight_torsion_points() {
        use curve25519_dalek::edwards::EdwardsPoint;
        let points: Vec<EdwardsPoint> = SMALL_ORDER_CANONICAL
            .iter()
            .map(|h| {
                let bytes = unhex32(h);
                let p = CompressedEdwardsY(bytes).decompress().expect("on the curve");
                assert!(p.is_small_order(), "{h}");
                assert_eq!(p.compress().to_bytes(), bytes, "{h} is canonical");
                p
            })
            .collect();
        // Eight distinct points closed under addition: the whole 8-torsion
        // subgroup (which has exactly eight elements), so no point is missing.
        for a in &points {
            for b in &points {
                assert!(points.contains(&(a + b)));
            }
            assert_eq!(points.iter().filter(|p| *p == a).count(), 1);
        }
        for h in SMALL_ORDER_NON_CANONICAL {
            let bytes = unhex32(h);
            let p = CompressedEdwardsY(bytes).decompress().expect("decodes leniently");
            assert!(p.is_small_order(), "{h}");
            assert_ne!(p.compress().to_bytes(), bytes, "{h} is not canonical");
        }
    }

    #[test]
    fn small_order_ed25519_keys_are_skipped() {
        for h in SMALL_ORDER_CANONICAL.iter().chain(&SMALL_ORDER_NON_CANONICAL) {
            let reason = verdict(okp("small", &unhex32(h))).expect_err(h);
            assert!(reason.contains("small order"), "{h}: {reason}");
        }
        assert!(verdict(okp("real", &URL_SAFE_NO_PAD.decode(ED25519_X).unwrap())).is_ok());
    }

    /// Little-endian y + p, for y < 19 (so it still fits in 255 bits).
    fn y_plus_p(y: u8) -> [u8; 32] {
        let mut b = [0xffu8; 32];
        b[0] = 0xed + y;
        b[31] = 0x7f;
        b
    }

    #[test]
    fn non_canonical_ed25519_encodings_are_skipped() {
        // y + p for some y in 2..19 that is on the curve: the same point as
        // the canonical y, but a different byte string (and thumbprint).
        let y = (2..19u8)
            .find(|&y| CompressedEdwardsY(y_plus_p(y)).decompress().is_some())
            .expect("some small y is on the curve");
        let p = CompressedEdwardsY(y_plus_p(y)).decompress().unwrap();
        assert!(!p.is_small_order());
        let reason = verdict(okp("noncanonical", &y_plus_p(y))).expect_err("non-canonical");
        assert!(reason.contains("not canonically encoded"), "{reason}");
        // Its canonical encoding is a fine key.
        assert!(verdict(okp("canonical", p.compress().as_bytes())).is_ok());
    }

    #[test]
    fn ed25519_keys_off_the_curve_are_skipped() {
        let mut off = [0u8; 32];
        off[0] = (2..=255u8)
            .find(|&y| {
                CompressedEdwardsY([
                    y, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ])
                .decompress()
                .is_none()
            })
            .expect("some small y is off the curve");
        let reason = verdict(okp("off", &off)).expect_err("off the curve");
        assert!(reason.contains("not a point on the curve"), "{reason}");
        let reason = verdict(okp("short", &[1u8; 31])).expect_err("31 bytes");
        assert!(reason.contains("32 bytes"), "{reason}");
    }

    fn rsa(e: &[u8], n: &[u8]) -> Value {
        serde_json::json!({"kty": "RSA", "kid": "r", "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)})
    }

    /// Whether aws-lc itself takes (n, e), asked directly: the reference the
    /// filter must agree with.
    fn backend_takes(n: &[u8], e: &[u8]) -> bool {
        RsaPublicKeyComponents { n, e }
            .as_der()
            .is_ok_and(|der| ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, der.as_ref()).is_ok())
    }

    fn be(v: u64) -> Vec<u8> {
        let b = v.to_be_bytes();
        b[b.iter().position(|&x| x != 0).unwrap_or(7)..].to_vec()
    }

    #[test]
    fn rsa_keys_the_backend_refuses_are_skipped() {
        let n = URL_SAFE_NO_PAD.decode(RFC7638_N).unwrap();
        let cases: Vec<(&str, Vec<u8>, Vec<u8>, &str)> = vec![
            ("e = 65536 (even)", n.clone(), be(65536), "even"),
            ("e = 2 (even)", n.clone(), be(2), "minimum 3"),
            ("e = 1", n.clone(), be(1), "minimum 3"),
            ("e = 2^33 + 1", n.clone(), be((1 << 33) + 1), "larger than"),
            ("e = 2^40 + 1", n.clone(), be((1 << 40) + 1), "larger than"),
            ("e = 0", n.clone(), vec![0], "leading zero"),
            ("e with a leading zero", n.clone(), vec![0, 1, 0, 1], "leading zero"),
            (
                "n with a leading zero",
                [&[0u8][..], &n].concat(),
                be(65537),
                "leading zero",
            ),
            (
                "n even",
                [&n[..n.len() - 1], &[n[n.len() - 1] & !1]].concat(),
                be(65537),
                "modulus is even",
            ),
        ];
        for (what, n, e, why) in cases {
            let reason = verdict(rsa(&e, &n)).expect_err(what);
            assert!(reason.contains(why), "{what}: {reason}");
            assert!(!backend_takes(&n, &e), "{what}: the filter is stricter than aws-lc");
        }
    }

    #[test]
    fn rsa_exponents_within_the_backend_limits_are_taken() {
        let n = URL_SAFE_NO_PAD.decode(RFC7638_N).unwrap();
        for e in [3, 65537, MAX_RSA_EXPONENT] {
            assert!(backend_takes(&n, &be(e)), "aws-lc takes e = {e}");
            let key = verdict(rsa(&be(e), &n)).unwrap_or_else(|r| panic!("e = {e}: {r}"));
            assert_eq!(key.bits, 2048);
        }
        // Just past the limit, aws-lc refuses: the limit is really 2^33 - 1.
        assert!(!backend_takes(&n, &be(MAX_RSA_EXPONENT + 2)));
    }

    fn ec(crv: &str, point: &[u8]) -> Value {
        let len = (point.len() - 1) / 2;
        serde_json::json!({"kty": "EC", "kid": "ec", "crv": crv,
            "x": URL_SAFE_NO_PAD.encode(&point[1..1 + len]), "y": URL_SAFE_NO_PAD.encode(&point[1 + len..])})
    }

    #[test]
    fn ec_points_off_the_curve_are_skipped() {
        use aws_lc_rs::signature::{
            EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
        };
        let algs = [Alg::ES256, Alg::ES384];
        for (crv, signing) in [
            ("P-256", &ECDSA_P256_SHA256_FIXED_SIGNING),
            ("P-384", &ECDSA_P384_SHA384_FIXED_SIGNING),
        ] {
            let pair = EcdsaKeyPair::generate(signing).unwrap();
            let point = pair.public_key().as_ref().to_vec();
            let body = serde_json::json!({"keys": [ec(crv, &point)]}).to_string();
            let (keys, _) = parse_jwks(body.as_bytes(), &algs).unwrap();
            assert_eq!(keys.len(), 1, "a real {crv} point is taken");
            let mut off = point.clone();
            *off.last_mut().unwrap() ^= 1;
            let body = serde_json::json!({"keys": [ec(crv, &off)]}).to_string();
            let (keys, skipped) = parse_jwks(body.as_bytes(), &algs).unwrap();
            assert!(keys.is_empty(), "{crv} point off the curve is skipped");
            assert!(skipped[0].reason.contains(&format!("not on {crv}")), "{skipped:?}");
        }
    }

    #[test]
    fn skipped_list_is_bounded_and_counts_the_rest() {
        let junk: Vec<Value> = (0..250)
            .map(|i| serde_json::json!({"kty": "junk", "kid": format!("j{i}")}))
            .collect();
        let body = serde_json::json!({ "keys": junk }).to_string();
        let (keys, skipped) = parse_jwks(body.as_bytes(), ALL).unwrap();
        assert!(keys.is_empty());
        assert_eq!(skipped.len(), MAX_SKIPPED_LISTED + 1);
        assert_eq!(skipped[MAX_SKIPPED_LISTED - 1].kid.as_deref(), Some("j99"));
        let last = skipped.last().unwrap();
        assert_eq!(last.kid, None);
        assert!(last.reason.starts_with("150 more keys skipped"), "{last:?}");

        let junk: Vec<Value> = (0..MAX_SKIPPED_LISTED)
            .map(|i| serde_json::json!({"kty": "junk", "kid": format!("j{i}")}))
            .collect();
        let body = serde_json::json!({ "keys": junk }).to_string();
        let (_, skipped) = parse_jwks(body.as_bytes(), ALL).unwrap();
        assert_eq!(skipped.len(), MAX_SKIPPED_LISTED, "no count entry when all are listed");
        assert!(skipped.iter().all(|s| s.kid.is_some()));
    }

    fn fake_key(kid: String, thumbprint: String) -> Arc<Key> {
        Arc::new(Key {
            kid: Some(kid.into()),
            kty: "OKP",
            family: KeyFamily::Ed25519,
            alg: None,
            bits: 256,
            thumbprint,
            first_seen_ms: 0,
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
