//! The service behind a web-server module that mints assertions (issue 28):
//! an edge key, the engine config section that holds it, and a service
//! that checks what its upstream request carried, with the library
//! (`Inheritance`, its replay window) and with golang-jwt.

use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwtwarden::assertion::{edge_issuer, Inheritance, Minter, MinterConfig, ReplayGuard, Request, SigningKeyConfig};
use jwtwarden::{Config, ErrorKind, SystemClock, Verifier};
use serde_json::{json, Value};

/// The edge's name in every test.
pub const EDGE: &str = "edge-1";

/// A fresh Ed25519 key, PKCS#8 PEM (`openssl genpkey`, as the docs say).
pub fn edge_pem() -> String {
    let out = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519"])
        .output()
        .expect("openssl");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// The engine config's `assertion` section for `pem`.
pub fn engine_section(pem: &str) -> Value {
    json!({"name": EDGE, "current": {"kid": "edge-k1", "pem": pem}})
}

/// The edge's JWKS (what a service behind configures), made from the PEM
/// by the `openssl` recipe docs/trust-handoff.md gives for nginx and
/// Apache edges; checked against the minter's own JWKS.
pub fn edge_jwks(pem: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("edge.pem"), pem).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("openssl pkey -in edge.pem -pubout -outform DER | tail -c 32 | basenc --base64url | tr -d '=\\n'")
        .current_dir(dir.path())
        .output()
        .expect("sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let x = String::from_utf8(out.stdout).unwrap();
    let cfg = MinterConfig {
        name: EDGE.into(),
        current: SigningKeyConfig {
            kid: "edge-k1".into(),
            pem: Some(pem.into()),
            pem_file: None,
        },
        previous: None,
        lifetime_secs: 30,
        hs256: Default::default(),
    };
    let minted = Minter::new(&cfg, Arc::new(SystemClock)).expect("minter").jwks();
    assert_eq!(
        minted["keys"][0]["x"],
        x.as_str(),
        "the documented recipe gives the minter's key"
    );
    json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": "edge-k1", "x": x}]})
}

/// A service behind the edge, for one audience.
pub struct Behind {
    verifier: Verifier,
    inheritance: Inheritance,
    jwks: Value,
    audience: String,
}

impl Behind {
    /// The service `audience`, trusting the edge's keys (`edge_jwks`).
    pub fn new(jwks: &Value, audience: &str) -> Behind {
        let mut issuer = edge_issuer(EDGE, audience);
        issuer.jwks = Some(jwks.clone());
        let mut config = Config::new(vec![issuer]);
        config.background_refresh = false;
        Behind {
            verifier: Verifier::new(config).expect("service verifier"),
            inheritance: Inheritance::new(
                [(EDGE.to_string(), None)],
                Arc::new(ReplayGuard::new(10_000)),
                Arc::new(SystemClock),
            ),
            jwks: jwks.clone(),
            audience: audience.into(),
        }
    }

    /// Check `assertion` for the request `method` `path` (as received).
    pub fn check(&self, assertion: &str, method: &str, path: &str) -> Result<Value, ErrorKind> {
        self.inheritance
            .verify(&self.verifier, assertion, &Request { method, path }, false)
            .map(|got| Value::Object(got.original.clone()))
            .map_err(|e| e.kind())
    }

    /// golang-jwt's reading of `assertion` (the claims), or `None` when Go
    /// is not installed; panics when it refuses.
    pub fn golang_jwt(&self, assertion: &str) -> Option<Value> {
        let x = self.jwks["keys"][0]["x"].as_str().unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/assertion_interop");
        let out = match std::process::Command::new("go")
            .args(["run", ".", assertion, x, &self.audience])
            .current_dir(&dir)
            .env("GOFLAGS", "-mod=mod")
            .output()
        {
            Ok(o) => o,
            Err(e) => {
                eprintln!("golang-jwt check skipped: no go ({e})");
                return None;
            }
        };
        assert!(
            out.status.success(),
            "golang-jwt refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(serde_json::from_slice(&out.stdout).unwrap())
    }
}

/// An assertion's claims, unverified (to compare `jti`s).
pub fn claims(assertion: &str) -> Value {
    let p = assertion.split('.').nth(1).expect("a JWS");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}
