//! Minting assertions at the edge (EdDSA / Ed25519).

use std::path::PathBuf;
use std::sync::Arc;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::assertion::{Request, ASSERTION_TYP, DEFAULT_LIFETIME_SECS};
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::http::path::normalise;
use crate::verified::Verified;

/// One Ed25519 signing key: PKCS#8 PEM, inline or in a file, and its `kid`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyConfig {
    /// The key id published in the JWKS and set in each assertion's header.
    pub kid: String,
    /// The private key, PKCS#8 PEM (`openssl genpkey -algorithm ed25519`).
    #[serde(default)]
    pub pem: Option<String>,
    /// The same, read from a file.
    #[serde(default)]
    pub pem_file: Option<PathBuf>,
}

/// How the edge mints assertions.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MinterConfig {
    /// The edge's name: the assertion's `iss`, the issuer name services
    /// configure for it.
    pub name: String,
    /// The key that signs.
    pub current: SigningKeyConfig,
    /// The key being rotated out: not used to sign, still published in the
    /// JWKS so that services holding assertions it signed (or a cached
    /// JWKS without `current` yet) keep verifying. Rotation: publish the
    /// new key as `previous`, wait a JWKS refresh interval, swap.
    #[serde(default)]
    pub previous: Option<SigningKeyConfig>,
    /// Assertion lifetime in seconds (`exp - iat`). Default 30.
    #[serde(default = "default_lifetime")]
    pub lifetime_secs: u64,
}

fn default_lifetime() -> u64 {
    DEFAULT_LIFETIME_SECS
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
    current: SigningKey,
    previous: Option<SigningKey>,
    lifetime_secs: u64,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("name", &self.name)
            .field("current", &self.current.kid)
            .field("previous", &self.previous.as_ref().map(|k| &k.kid))
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
        Ok(Minter {
            name: cfg.name.clone(),
            current,
            previous,
            lifetime_secs: cfg.lifetime_secs,
            clock,
        })
    }

    /// The public keys, as a JWKS (`current` first, then `previous`).
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
        let htu = normalise(request.path)
            .map_err(|why| Error::new(ErrorKind::InvalidArgument, format!("assertion path: {why}")))?
            .path;
        let now_ms = self.clock.now_ms();
        let iat = now_ms / 1000;
        let claims = verified.claims();
        let mut orig = Map::new();
        for name in ["iss", "sub", "aud", "scope"] {
            if let Some(v) = claims.get(name) {
                orig.insert(name.into(), v.clone());
            }
        }
        match claims.get("jti") {
            Some(jti) => orig.insert("jti".into(), jti.clone()),
            None => orig.insert("tjh".into(), token_hash(token).into()),
        };
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| Error::new(ErrorKind::Internal, "no randomness"))?;
        let mut payload = json!({
            "iss": self.name,
            "aud": audience,
            "iat": iat,
            "exp": iat + self.lifetime_secs,
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "htm": request.method,
            "htu": htu,
            "verified_at": verified.verified_at_ms() / 1000,
            "cached": verified.cached(),
            "fresh": fresh_demanded,
            "checked_at": iat,
            "orig": orig,
        });
        if let Some(sub) = claims.get("sub") {
            payload["sub"] = sub.clone();
        }
        if let Some(kid) = verified.kid() {
            payload["key_kid"] = kid.into();
        }
        let mut out = String::with_capacity(512);
        out.push_str(&self.current.header_b64);
        URL_SAFE_NO_PAD.encode_string(payload.to_string(), &mut out);
        let sig = self.current.pair.sign(out.as_bytes());
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut out);
        Ok(out)
    }
}

/// `tjh`: base64url SHA-256 of the original token, for tokens without `jti`.
pub fn token_hash(token: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token))
}
