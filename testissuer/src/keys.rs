//! Key generation, the process-wide RSA key pool, JWK publication and signing.
//!
//! EC and Ed25519 keys are cheap to generate and are always fresh. RSA-2048
//! generation takes tens to hundreds of milliseconds, so RSA key material comes
//! from a process-wide pool of [`RSA_POOL_SIZE`] keys, handed out round-robin.
//! A single issuer never receives the same material twice; two different
//! issuers can share material (under different kids). Use
//! [`crate::TestIssuer::add_fresh_key`] when a test needs a key that is
//! guaranteed to be unrelated to every other key in the process.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::EncodingKey;
use parking_lot::{const_mutex, Mutex};
use serde_json::Value;

use crate::Alg;

/// How many RSA keys the process-wide pool holds before it starts reusing them.
pub(crate) const RSA_POOL_SIZE: usize = 16;

static RSA_POOL: Mutex<Vec<Arc<Material>>> = const_mutex(Vec::new());
static RSA_CURSOR: AtomicUsize = AtomicUsize::new(0);
static NEXT_MATERIAL_ID: AtomicU64 = AtomicU64::new(1);

/// The kind of key material an algorithm needs. RSA material serves all RS*/PS* algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

fn kind_of(alg: Alg) -> KeyKind {
    match alg {
        Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => KeyKind::Rsa,
        Alg::ES256 => KeyKind::P256,
        Alg::ES384 => KeyKind::P384,
        Alg::EdDSA => KeyKind::Ed25519,
    }
}

/// A generated private key: its PKCS#8 PEM and the matching `jsonwebtoken` encoding key.
pub(crate) struct Material {
    id: u64,
    pem: String,
    encoding: EncodingKey,
}

fn generate(kind: KeyKind) -> Arc<Material> {
    const MSG: &str = "testissuer: key generation failed";
    let der: Vec<u8> = match kind {
        KeyKind::Rsa => RsaKeyPair::generate(KeySize::Rsa2048)
            .expect(MSG)
            .as_der()
            .expect(MSG)
            .as_ref()
            .to_vec(),
        KeyKind::P256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .expect(MSG)
            .to_pkcs8v1()
            .expect(MSG)
            .as_ref()
            .to_vec(),
        KeyKind::P384 => EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING)
            .expect(MSG)
            .to_pkcs8v1()
            .expect(MSG)
            .as_ref()
            .to_vec(),
        KeyKind::Ed25519 => Ed25519KeyPair::generate()
            .expect(MSG)
            .to_pkcs8v1()
            .expect(MSG)
            .as_ref()
            .to_vec(),
    };
    let pem = pkcs8_pem(&der);
    let encoding = match kind {
        KeyKind::Rsa => EncodingKey::from_rsa_pem(pem.as_bytes()),
        KeyKind::P256 | KeyKind::P384 => EncodingKey::from_ec_pem(pem.as_bytes()),
        KeyKind::Ed25519 => EncodingKey::from_ed_pem(pem.as_bytes()),
    }
    .expect("testissuer: generated PEM rejected by jsonwebtoken");
    Arc::new(Material {
        id: NEXT_MATERIAL_ID.fetch_add(1, Ordering::Relaxed),
        pem,
        encoding,
    })
}

/// Wraps PKCS#8 DER into a `PRIVATE KEY` PEM block with 64-column lines.
fn pkcs8_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

/// Key material for `alg`, never one whose id is in `exclude`.
/// `fresh` forces newly generated material that is not shared with the pool.
pub(crate) fn material_for(alg: Alg, exclude: &HashSet<u64>, fresh: bool) -> Arc<Material> {
    let kind = kind_of(alg);
    if kind != KeyKind::Rsa || fresh {
        return generate(kind);
    }
    let n = RSA_CURSOR.fetch_add(1, Ordering::Relaxed);
    {
        let pool = RSA_POOL.lock();
        if pool.len() >= RSA_POOL_SIZE {
            return (0..RSA_POOL_SIZE)
                .map(|i| &pool[(n + i) % RSA_POOL_SIZE])
                .find(|m| !exclude.contains(&m.id))
                .cloned()
                .unwrap_or_else(|| {
                    drop(pool);
                    generate(KeyKind::Rsa)
                });
        }
    }
    // Pool not full yet: generate outside the lock so parallel tests generate in parallel.
    let m = generate(KeyKind::Rsa);
    let mut pool = RSA_POOL.lock();
    if pool.len() < RSA_POOL_SIZE {
        pool.push(m.clone());
    }
    m
}

/// One key of one issuer: kid, algorithm, material, published JWK and whether it is published.
pub(crate) struct KeyEntry {
    pub(crate) kid: String,
    pub(crate) alg: Alg,
    pub(crate) published: bool,
    material: Arc<Material>,
    jwk: Value,
}

impl KeyEntry {
    /// Creates a published key entry; derives the public JWK from the material.
    pub(crate) fn new(alg: Alg, material: Arc<Material>, kid: String) -> KeyEntry {
        let mut jwk =
            Jwk::from_encoding_key(&material.encoding, alg.algorithm()).expect("testissuer: cannot derive public JWK");
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let jwk = serde_json::to_value(&jwk).expect("JWK serializes");
        KeyEntry {
            kid,
            alg,
            published: true,
            material,
            jwk,
        }
    }

    /// Identifies the key material (shared material has the same id).
    pub(crate) fn material_id(&self) -> u64 {
        self.material.id
    }

    /// The public JWK (`kty`, `kid`, `alg`, `use` and the key parameters).
    pub(crate) fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The PKCS#8 PEM of the private key.
    pub(crate) fn pem(&self) -> &str {
        &self.material.pem
    }

    /// The `jsonwebtoken` encoding key.
    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.material.encoding
    }

    /// Compact JWS of `header` and `claims`, signed with this key's algorithm
    /// whatever the header says.
    pub(crate) fn sign(&self, header: &Value, claims: &Value) -> String {
        let unsigned = unsigned_token(header, claims);
        let message = &unsigned[..unsigned.len() - 1]; // the signing input has no trailing dot
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &self.material.encoding, self.alg.algorithm())
            .expect("testissuer: signing failed");
        format!("{message}.{sig}")
    }
}

/// A random short kid such as `k-3fa9c2`.
pub(crate) fn random_kid() -> String {
    format!("k-{:06x}", fastrand::u32(..0x100_0000))
}

/// `base64url(header) "." base64url(claims) "."` — an unsigned token with its trailing dot.
pub(crate) fn unsigned_token(header: &Value, claims: &Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).expect("JSON serializes"));
    let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("JSON serializes"));
    format!("{h}.{c}.")
}
