//! Minting assertions at the edge: EdDSA (Ed25519) by default, HS256 with
//! one secret per upstream audience where configured (`assertion.hs256`).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::assertion::{Request, ASSERTION_TYP};
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::http::path::normalise;
use crate::verified::{Verified, VerifiedToken};

/// How the edge mints (`assertion` in the engine configuration).
pub use crate::config::AssertionConfig as MinterConfig;
pub use crate::config::SigningKeyConfig;
pub use crate::config::{AudienceSecretsConfig, SecretKeyConfig};

/// Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the
/// hash output).
pub const MIN_SECRET_BYTES: usize = 32;

/// One audience's HS256 signing secret.
struct SecretKey {
    key: aws_lc_rs::hmac::Key,
    /// SHA-256 of the secret, only to refuse one secret for two audiences.
    digest: [u8; 32],
    /// `base64url({"alg":"HS256","typ":…,"kid":…}) + "."`, built once.
    header_b64: String,
}

impl SecretKey {
    /// Read and check the secret; the error names the file, never its
    /// content.
    fn load(audience: &str, cfg: &SecretKeyConfig) -> Result<SecretKey> {
        let bad = |m: String| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("assertion hs256 secret {:?} for audience {audience:?}: {m}", cfg.kid),
            )
        };
        if cfg.kid.is_empty() {
            return Err(bad("kid must not be empty".into()));
        }
        let text = std::fs::read_to_string(&cfg.secret_file)
            .map_err(|e| bad(format!("{}: {}", cfg.secret_file.display(), e.kind())))?;
        let secret = crate::token::decode_b64_lenient(text.trim())
            .ok_or_else(|| bad(format!("{}: not base64url", cfg.secret_file.display())))?;
        if secret.len() < MIN_SECRET_BYTES {
            return Err(bad(format!(
                "{}: a secret must be at least {MIN_SECRET_BYTES} bytes",
                cfg.secret_file.display()
            )));
        }
        let header = json!({"alg": "HS256", "typ": ASSERTION_TYP, "kid": cfg.kid});
        let mut header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        header_b64.push('.');
        let mut digest = [0u8; 32];
        digest.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &secret).as_ref());
        Ok(SecretKey {
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret),
            digest,
            header_b64,
        })
    }
}

struct SigningKey {
    kid: String,
    pair: Ed25519KeyPair,
    /// `base64url({"alg":"EdDSA","typ":…,"kid":…}) + "."`, built once.
    header_b64: String,
}

impl SigningKey {
    fn load(cfg: &SigningKeyConfig) -> Result<SigningKey> {
        let bad = |m: String| Error::new(ErrorKind::InvalidConfig, format!("assertion key {:?}: {m}", cfg.kid));
        let pem = match (&cfg.pem, &cfg.pem_file) {
            (Some(p), None) => p.clone(),
            (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| bad(format!("{}: {e}", f.display())))?,
            _ => return Err(bad("exactly one of pem, pem_file is required".into())),
        };
        let body: String = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(body).map_err(|_| bad("not PEM".into()))?;
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der))
            .map_err(|_| bad("not an Ed25519 PKCS#8 private key".into()))?;
        let header = json!({"alg": "EdDSA", "typ": ASSERTION_TYP, "kid": cfg.kid});
        let mut header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        header_b64.push('.');
        Ok(SigningKey {
            kid: cfg.kid.clone(),
            pair,
            header_b64,
        })
    }

    fn jwk(&self) -> Value {
        json!({
            "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref()),
        })
    }
}

/// Mints assertions. `Send + Sync`; one per edge process.
pub struct Minter {
    name: String,
    /// `name` as a JSON string, escaped once.
    iss_json: String,
    current: SigningKey,
    previous: Option<SigningKey>,
    /// Audience → its HS256 secret (`assertion.hs256`); audiences not here
    /// get EdDSA.
    hs256: HashMap<String, SecretKey>,
    lifetime_secs: u64,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("name", &self.name)
            .field("current", &self.current.kid)
            .field("previous", &self.previous.as_ref().map(|k| &k.kid))
            .field("hs256_audiences", &self.hs256.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Minter {
    /// Load the keys. A missing or malformed key is `invalid_config`.
    pub fn new(cfg: &MinterConfig, clock: Arc<dyn Clock>) -> Result<Minter> {
        if cfg.name.is_empty() {
            return Err(Error::new(ErrorKind::InvalidConfig, "assertion name must not be empty"));
        }
        if cfg.lifetime_secs == 0 {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "assertion lifetime_secs must be positive",
            ));
        }
        let current = SigningKey::load(&cfg.current)?;
        let previous = cfg.previous.as_ref().map(SigningKey::load).transpose()?;
        if previous.as_ref().is_some_and(|p| p.kid == current.kid) {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "assertion keys current and previous must have different kids",
            ));
        }
        let mut kids: Vec<&str> = std::iter::once(current.kid.as_str())
            .chain(previous.as_ref().map(|p| p.kid.as_str()))
            .collect();
        let mut hs256 = HashMap::new();
        // Audience → the digests of its secrets: a secret two audiences
        // share would let either service forge to the other.
        let mut digests: Vec<(&str, [u8; 32])> = Vec::new();
        for (audience, secrets) in &cfg.hs256 {
            for k in std::iter::once(&secrets.current).chain(secrets.previous.as_ref()) {
                if kids.contains(&k.kid.as_str()) {
                    return Err(Error::new(
                        ErrorKind::InvalidConfig,
                        format!(
                            "assertion hs256 kid {:?} (audience {audience:?}) is already used by another assertion key: each audience's kids are its own",
                            k.kid
                        ),
                    ));
                }
                kids.push(&k.kid);
            }
            let current = SecretKey::load(audience, &secrets.current)?;
            let previous = secrets
                .previous
                .as_ref()
                .map(|p| SecretKey::load(audience, p))
                .transpose()?;
            for digest in std::iter::once(current.digest).chain(previous.map(|p| p.digest)) {
                if let Some((other, _)) = digests.iter().find(|(a, d)| *a != audience && *d == digest) {
                    return Err(Error::new(
                        ErrorKind::InvalidConfig,
                        format!(
                            "assertion hs256: audiences {other:?} and {audience:?} hold the same secret: each service must hold its own"
                        ),
                    ));
                }
                digests.push((audience, digest));
            }
            hs256.insert(audience.clone(), current);
        }
        Ok(Minter {
            name: cfg.name.clone(),
            iss_json: Value::from(cfg.name.as_str()).to_string(),
            current,
            previous,
            hs256,
            lifetime_secs: cfg.lifetime_secs,
            clock,
        })
    }

    /// The public keys, as a JWKS (`current` first, then `previous`). HS256
    /// secrets are never published.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .map(SigningKey::jwk)
            .collect();
        json!({ "keys": keys })
    }

    /// The edge's name (the assertions' `iss`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Mint an assertion for `verified` (the result of verifying `token`
    /// just now), bound to the upstream `audience` and `request`;
    /// `fresh_demanded` says whether the route demanded a fresh
    /// verification. Each call has its own `jti` and signature.
    pub fn mint(
        &self,
        verified: &Verified,
        token: &[u8],
        audience: &str,
        request: &Request<'_>,
        fresh_demanded: bool,
    ) -> Result<String> {
        self.mint_for(
            verified.token(),
            verified.cached(),
            token,
            audience,
            request,
            fresh_demanded,
        )
    }

    /// [`mint`](Self::mint) for a verified result taken apart
    /// ([`Verified::into_parts`]), as the HTTP decision holds it.
    ///
    /// What depends only on the verified result (`sub`, `verified_at`,
    /// `key_kid`, `key_age`, `orig`) is written once per result and shared by its
    /// cache hits; each call adds the request's own part (`aud`, `iat`,
    /// `exp`, a fresh `jti`, `htm`, `htu`, `cached`, `fresh`) and signs.
    /// Nothing minted is reused: one assertion per request (the service
    /// behind refuses a `jti` it has seen).
    pub fn mint_for(
        &self,
        verified: &VerifiedToken,
        cached: bool,
        token: &[u8],
        audience: &str,
        request: &Request<'_>,
        fresh_demanded: bool,
    ) -> Result<String> {
        let htu = normalise(request.path)
            .map_err(|why| Error::new(ErrorKind::InvalidArgument, format!("assertion path: {why}")))?
            .path;
        let iat = self.clock.now_ms() / 1000;
        let jti = random_jti()?;
        let mut payload: Vec<u8> = Vec::with_capacity(512);
        payload.extend_from_slice(b"{\"iss\":");
        payload.extend_from_slice(self.iss_json.as_bytes());
        payload.extend_from_slice(b",\"aud\":");
        json_str(&mut payload, audience);
        write!(
            payload,
            ",\"iat\":{iat},\"exp\":{},\"checked_at\":{iat},\"jti\":\"",
            iat + self.lifetime_secs
        )
        .map_err(internal)?;
        let mut jti_b64 = [0u8; 22];
        URL_SAFE_NO_PAD.encode_slice(jti, &mut jti_b64).map_err(internal)?;
        payload.extend_from_slice(&jti_b64);
        payload.extend_from_slice(b"\",\"htm\":");
        json_str(&mut payload, request.method);
        payload.extend_from_slice(b",\"htu\":");
        json_str(&mut payload, &htu);
        payload.extend_from_slice(if cached {
            b",\"cached\":true"
        } else {
            b",\"cached\":false"
        });
        payload.extend_from_slice(if fresh_demanded {
            b",\"fresh\":true"
        } else {
            b",\"fresh\":false"
        });
        let original = verified.memo(|v| Original::new(v, token));
        payload.extend_from_slice(original.0.as_bytes());
        payload.push(b'}');

        if let Some(key) = self.hs256.get(audience) {
            let mut out = String::with_capacity(key.header_b64.len() + payload.len().div_ceil(3) * 4 + 46);
            out.push_str(&key.header_b64);
            URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
            let tag = aws_lc_rs::hmac::sign(&key.key, out.as_bytes());
            out.push('.');
            URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut out);
            return Ok(out);
        }
        let key = &self.current;
        let mut out = String::with_capacity(key.header_b64.len() + payload.len().div_ceil(3) * 4 + 90);
        out.push_str(&key.header_b64);
        URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
        let sig = key.pair.sign(out.as_bytes());
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut out);
        Ok(out)
    }
}

/// The part of an assertion's claims that depends only on the verified
/// result: `,"sub":…,"verified_at":…,"key_kid":…,"key_age":…,"orig":{…}` (a JSON
/// fragment), written once per result.
struct Original(String);

impl Original {
    fn new(v: &VerifiedToken, token: &[u8]) -> Original {
        let claims = v.claims();
        let mut orig = Map::new();
        for name in ["iss", "sub", "aud", "scope"] {
            if let Some(value) = claims.get(name) {
                orig.insert(name.into(), value.clone());
            }
        }
        match claims.get("jti") {
            Some(jti) => orig.insert("jti".into(), jti.clone()),
            None => orig.insert("tjh".into(), token_hash(token).into()),
        };
        let mut s = String::with_capacity(256);
        if let Some(sub) = claims.get("sub") {
            s.push_str(",\"sub\":");
            s.push_str(&sub.to_string());
        }
        s.push_str(&format!(",\"verified_at\":{}", v.verified_at_ms / 1000));
        if let Some(kid) = v.kid.as_deref() {
            s.push_str(",\"key_kid\":");
            s.push_str(&Value::from(kid).to_string());
        }
        // The key's age when it verified the token: how long this edge had
        // trusted it (seconds since it was first seen in its issuer's set).
        if let Some(first_seen) = v.key_first_seen_ms {
            s.push_str(&format!(
                ",\"key_age\":{}",
                v.verified_at_ms.saturating_sub(first_seen) / 1000
            ));
        }
        s.push_str(",\"orig\":");
        s.push_str(&Value::Object(orig).to_string());
        Original(s)
    }
}

/// 16 random bytes for a `jti`. Taken from a per-thread pool of 1 KiB
/// filled from the system generator (aws-lc) at once: one call per 64
/// assertions instead of one per assertion (about 0.5 µs each, a quarter
/// of an HS256 mint). A forked child (its pid differs from the pool's)
/// refills before it takes anything, so parent and child never hand out
/// the same bytes.
fn random_jti() -> Result<[u8; 16]> {
    use std::cell::RefCell;
    const POOL: usize = 1024;
    struct Pool {
        pid: u32,
        used: usize,
        bytes: [u8; POOL],
    }
    thread_local! {
        static JTI_POOL: RefCell<Pool> = const { RefCell::new(Pool { pid: 0, used: POOL, bytes: [0; POOL] }) };
    }
    JTI_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let pid = std::process::id();
        if pool.used + 16 > POOL || pool.pid != pid {
            aws_lc_rs::rand::fill(&mut pool.bytes).map_err(|_| Error::new(ErrorKind::Internal, "no randomness"))?;
            pool.pid = pid;
            pool.used = 0;
        }
        let mut jti = [0u8; 16];
        let at = pool.used;
        jti.copy_from_slice(&pool.bytes[at..at + 16]);
        // Not handed out twice, and not left readable in the pool.
        pool.bytes[at..at + 16].fill(0);
        pool.used += 16;
        Ok(jti)
    })
}

/// Append `s` as a JSON string.
fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing JSON into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Internal, format!("assertion: {e}"))
}

/// `tjh`: base64url SHA-256 of the original token, for tokens without `jti`.
pub fn token_hash(token: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token))
}

impl crate::http::mint::Mint for Minter {
    fn mint_assertion(
        &self,
        verified: &VerifiedToken,
        cached: bool,
        token: &[u8],
        audience: &str,
        method: &str,
        path: &str,
        fresh: bool,
    ) -> Result<String> {
        self.mint_for(verified, cached, token, audience, &Request { method, path }, fresh)
    }
}
