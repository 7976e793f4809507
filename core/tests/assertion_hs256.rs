//! Opt-in HS256 assertions, one secret per upstream audience
//! (`assertion.hs256` at the edge, `hmac_keys` with `algorithms =
//! ["HS256"]` on the service's edge issuer): a round trip per audience; an
//! audience's secret cannot mint for another; `alg` confusion in every
//! direction refused; rotation with `previous`; replay still refused; a
//! config that mixes EdDSA and HS256 for one edge, or holds a short secret,
//! refused; `jti`s unique across a fork; the format checked by independent
//! libraries (golang-jwt, and `jsonwebtoken` with its own claim validation).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use aws_lc_rs::signature::Ed25519KeyPair;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jwtwarden::assertion::{
    AudienceSecretsConfig, Inherited, Minter, MinterConfig, Request, SecretKeyConfig, SigningKeyConfig,
};
use jwtwarden::{Config, ErrorKind, ManualClock, Verifier};
use serde_json::{json, Value};

use common::{payload, setup, with_header, with_payload, Setup};

const EDGE: &str = "edge-1";
const ORDERS: &str = "orders";
const BILLING: &str = "billing";

/// A secret: its bytes as base64url, written to a file the edge reads.
struct Secret {
    b64: String,
    file: PathBuf,
}

fn secret(dir: &tempfile::TempDir, name: &str) -> Secret {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    let b64 = URL_SAFE_NO_PAD.encode(bytes);
    let file = dir.path().join(name);
    std::fs::write(&file, format!("{b64}\n")).unwrap();
    Secret { b64, file }
}

fn pem() -> String {
    let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).expect("keygen");
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(doc.as_ref())
    )
}

fn secret_cfg(kid: &str, s: &Secret) -> SecretKeyConfig {
    SecretKeyConfig {
        kid: kid.into(),
        secret_file: s.file.clone(),
    }
}

fn minter_cfg(hs256: BTreeMap<String, AudienceSecretsConfig>) -> MinterConfig {
    MinterConfig {
        name: EDGE.into(),
        current: SigningKeyConfig {
            kid: "ed-1".into(),
            pem: Some(pem()),
            pem_file: None,
        },
        previous: None,
        lifetime_secs: 30,
        hs256,
    }
}

fn audience(current: SecretKeyConfig, previous: Option<SecretKeyConfig>) -> AudienceSecretsConfig {
    AudienceSecretsConfig { current, previous }
}

/// A service behind the edge, holding only its own secrets.
fn service(edge: &Setup, aud: &str, keys: &[(&str, &Secret)]) -> Verifier {
    let hmac: Vec<Value> = keys
        .iter()
        .map(|(kid, s)| json!({"kid": kid, "secret_base64": s.b64}))
        .collect();
    let cfg = json!({
        "issuers": [{"kind": "assertion", "issuer": EDGE, "audiences": [aud],
                     "algorithms": ["HS256"], "hmac_keys": hmac}],
        "background_refresh": false,
    });
    let config = Config::from_value(cfg).expect("valid HS256 service config");
    Verifier::with_clock(config, Arc::new(edge.clock.clone())).expect("service")
}

/// A service behind an EdDSA edge (its JWKS inline).
fn eddsa_service(edge: &Setup, aud: &str, jwks: Value) -> Verifier {
    let cfg = json!({
        "issuers": [{"kind": "assertion", "issuer": EDGE, "audiences": [aud], "jwks": jwks}],
        "background_refresh": false,
    });
    Verifier::with_clock(Config::from_value(cfg).unwrap(), Arc::new(edge.clock.clone())).unwrap()
}

fn mint(edge: &Setup, m: &Minter, aud: &str, path: &str) -> String {
    let token = edge.token(&edge.issuer.first_kid());
    let v = edge.verifier.verify(&token).expect("original verifies");
    m.mint(&v, token.as_bytes(), aud, &Request { method: "GET", path }, false)
        .expect("mint")
}

fn inherit(v: &Verifier, a: &str, path: &str) -> Result<Inherited, ErrorKind> {
    v.verify_assertion(a, &Request { method: "GET", path }, false)
        .map_err(|e| e.kind())
}

fn header(a: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(a.split('.').next().unwrap()).unwrap()).unwrap()
}

/// HMAC-SHA256 over `header.payload` with `key`, as a forger holding it would.
fn sign_hs256(header: &Value, claims: &Value, key: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
        input.as_bytes(),
    );
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

struct Two {
    edge: Setup,
    minter: Minter,
    orders_secret: Secret,
    orders: Verifier,
    billing: Verifier,
    _dir: tempfile::TempDir,
}

fn two_audiences() -> Two {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (secret(&dir, "orders"), secret(&dir, "billing"));
    let edge = setup();
    let mut hs = BTreeMap::new();
    hs.insert(ORDERS.to_string(), audience(secret_cfg("orders-1", &a), None));
    hs.insert(BILLING.to_string(), audience(secret_cfg("billing-1", &b), None));
    let minter = Minter::new(&minter_cfg(hs), Arc::new(edge.clock.clone())).expect("minter");
    let orders = service(&edge, ORDERS, &[("orders-1", &a)]);
    let billing = service(&edge, BILLING, &[("billing-1", &b)]);
    Two {
        edge,
        minter,
        orders_secret: a,
        orders,
        billing,
        _dir: dir,
    }
}

#[test]
fn hs256_assertions_round_trip_per_audience_and_other_audiences_keep_eddsa() {
    let t = two_audiences();
    let a = mint(&t.edge, &t.minter, ORDERS, "/orders/7");
    assert_eq!(
        header(&a),
        json!({"alg": "HS256", "typ": "jwtwarden-assertion+jwt", "kid": "orders-1"})
    );
    let got = inherit(&t.orders, &a, "/orders/7").expect("orders inherits");
    assert_eq!(got.edge, EDGE);
    assert_eq!(got.original["sub"], "svc-a");
    let b = mint(&t.edge, &t.minter, BILLING, "/pay");
    assert_eq!(header(&b)["kid"], "billing-1");
    inherit(&t.billing, &b, "/pay").expect("billing inherits");
    // Each service refuses the other's assertion.
    assert!(inherit(&t.billing, &mint(&t.edge, &t.minter, ORDERS, "/pay"), "/pay").is_err());
    assert!(inherit(&t.orders, &mint(&t.edge, &t.minter, BILLING, "/orders/7"), "/orders/7").is_err());
    // An audience not listed is signed with Ed25519, and the JWKS never
    // holds a secret.
    let c = mint(&t.edge, &t.minter, "catalog", "/c");
    assert_eq!(header(&c)["alg"], "EdDSA");
    let jwks = t.minter.jwks().to_string();
    assert!(!jwks.contains("oct") && !jwks.contains(&t.orders_secret.b64), "{jwks}");
}

#[test]
fn a_compromised_upstream_can_forge_only_to_itself() {
    let t = two_audiences();
    let secret = URL_SAFE_NO_PAD.decode(&t.orders_secret.b64).unwrap();
    let genuine = mint(&t.edge, &t.minter, BILLING, "/pay");
    let mut claims = payload(&genuine);
    claims["orig"]["sub"] = json!("root");
    claims["jti"] = json!("forged-1");
    // Orders signs a billing assertion with its own secret, under either kid.
    for kid in ["orders-1", "billing-1"] {
        let h = json!({"alg": "HS256", "typ": "jwtwarden-assertion+jwt", "kid": kid});
        let forged = sign_hs256(&h, &claims, &secret);
        let err = inherit(&t.billing, &forged, "/pay").unwrap_err();
        assert!(
            matches!(err, ErrorKind::InvalidSignature | ErrorKind::UnknownKid),
            "{kid}: {err:?}"
        );
    }
    // The same forgery aimed at itself verifies: it could act anyway.
    claims["aud"] = json!(ORDERS);
    claims["htu"] = json!("/orders/1");
    let h = json!({"alg": "HS256", "typ": "jwtwarden-assertion+jwt", "kid": "orders-1"});
    assert!(inherit(&t.orders, &sign_hs256(&h, &claims, &secret), "/orders/1").is_ok());
}

#[test]
fn alg_confusion_is_refused_in_every_direction() {
    let t = two_audiences();
    let secret = URL_SAFE_NO_PAD.decode(&t.orders_secret.b64).unwrap();
    let a = mint(&t.edge, &t.minter, ORDERS, "/orders/7");
    let mut claims = payload(&a);
    let mut fresh_jti = 0;
    let mut next = |c: &mut Value| {
        fresh_jti += 1;
        c["jti"] = json!(format!("confused-{fresh_jti}"));
        c.clone()
    };
    // MAC-signed, but the header says EdDSA or none (or omits alg).
    for alg in [json!("EdDSA"), json!("none"), json!("HS512"), Value::Null] {
        let mut h = json!({"typ": "jwtwarden-assertion+jwt", "kid": "orders-1"});
        if !alg.is_null() {
            h["alg"] = alg.clone();
        }
        let c = next(&mut claims);
        let forged = sign_hs256(&h, &c, &secret);
        assert!(inherit(&t.orders, &forged, "/orders/7").is_err(), "alg {alg}");
        // And with the signature part empty.
        let (head, _) = forged.rsplit_once('.').unwrap();
        assert!(
            inherit(&t.orders, &format!("{head}."), "/orders/7").is_err(),
            "alg {alg} unsigned"
        );
    }
    // The header of a genuine HS256 assertion rewritten to EdDSA.
    let swapped = with_header(
        &a,
        &json!({"alg": "EdDSA", "typ": "jwtwarden-assertion+jwt", "kid": "orders-1"}),
    );
    assert!(inherit(&t.orders, &swapped, "/orders/7").is_err());
    // An EdDSA assertion (an edge minting without hs256) for an HS256 service.
    let ed = Minter::new(&minter_cfg(BTreeMap::new()), Arc::new(t.edge.clock.clone())).unwrap();
    let e = mint(&t.edge, &ed, ORDERS, "/orders/7");
    assert_eq!(header(&e)["alg"], "EdDSA");
    assert_eq!(
        inherit(&t.orders, &e, "/orders/7").unwrap_err(),
        ErrorKind::AlgorithmNotAllowed
    );
    // An EdDSA service: an HS256 assertion from the edge, and one MAC-signed
    // with the edge's public key bytes (the classic confusion), refused.
    let ed_service = eddsa_service(&t.edge, ORDERS, ed.jwks());
    inherit(&ed_service, &mint(&t.edge, &ed, ORDERS, "/orders/7"), "/orders/7").expect("EdDSA round trip");
    assert_eq!(
        inherit(&ed_service, &mint(&t.edge, &t.minter, ORDERS, "/orders/7"), "/orders/7").unwrap_err(),
        ErrorKind::AlgorithmNotAllowed
    );
    let x = URL_SAFE_NO_PAD
        .decode(ed.jwks()["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let h = json!({"alg": "HS256", "typ": "jwtwarden-assertion+jwt", "kid": "ed-1"});
    let c = next(&mut claims);
    assert!(inherit(&ed_service, &sign_hs256(&h, &c, &x), "/orders/7").is_err());
    // A genuine HS256 assertion whose payload was changed.
    let mut c = payload(&a);
    c["orig"]["sub"] = json!("root");
    assert_eq!(
        inherit(&t.orders, &with_payload(&a, &c), "/orders/7").unwrap_err(),
        ErrorKind::InvalidSignature
    );
}

#[test]
fn rotation_with_previous_has_zero_failures() {
    let dir = tempfile::tempdir().unwrap();
    let (s1, s2) = (secret(&dir, "s1"), secret(&dir, "s2"));
    let edge = setup();
    let clock = Arc::new(edge.clock.clone());
    let hs = |cur: SecretKeyConfig, prev: Option<SecretKeyConfig>| {
        let mut m = BTreeMap::new();
        m.insert(ORDERS.to_string(), audience(cur, prev));
        m
    };
    let before = Minter::new(&minter_cfg(hs(secret_cfg("o-1", &s1), None)), clock.clone()).unwrap();
    let old = mint(&edge, &before, ORDERS, "/a");
    // Step 1: the service takes the new secret next to the old one.
    let both = service(&edge, ORDERS, &[("o-1", &s1), ("o-2", &s2)]);
    // Step 2: the edge signs with the new one, holding the old as previous.
    let after = Minter::new(
        &minter_cfg(hs(secret_cfg("o-2", &s2), Some(secret_cfg("o-1", &s1)))),
        clock.clone(),
    )
    .unwrap();
    let new = mint(&edge, &after, ORDERS, "/a");
    assert_eq!(header(&new)["kid"], "o-2");
    inherit(&both, &old, "/a").expect("an assertion signed before the swap");
    inherit(&both, &new, "/a").expect("an assertion signed after the swap");
    // Step 3: the service drops the old secret.
    let only_new = service(&edge, ORDERS, &[("o-2", &s2)]);
    inherit(&only_new, &mint(&edge, &after, ORDERS, "/a"), "/a").expect("new secret");
    assert!(inherit(&only_new, &mint(&edge, &before, ORDERS, "/a"), "/a").is_err());
    // current and previous with one kid: refused.
    let err = Minter::new(
        &minter_cfg(hs(secret_cfg("o-1", &s2), Some(secret_cfg("o-1", &s1)))),
        clock,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
}

#[test]
fn a_replayed_hs256_assertion_is_refused() {
    let t = two_audiences();
    let a = mint(&t.edge, &t.minter, ORDERS, "/orders/7");
    inherit(&t.orders, &a, "/orders/7").expect("first use");
    assert_eq!(inherit(&t.orders, &a, "/orders/7").unwrap_err(), ErrorKind::Revoked);
    // Another path, another method: refused as for EdDSA.
    let b = mint(&t.edge, &t.minter, ORDERS, "/orders/7");
    assert_eq!(
        inherit(&t.orders, &b, "/orders/8").unwrap_err(),
        ErrorKind::InvalidAudience
    );
}

#[test]
fn a_short_missing_or_shared_secret_is_refused_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    let short_b64 = URL_SAFE_NO_PAD.encode([9u8; 31]);
    std::fs::write(&short, &short_b64).unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let one = |cfg: SecretKeyConfig| {
        let mut m = BTreeMap::new();
        m.insert(ORDERS.to_string(), audience(cfg, None));
        Minter::new(&minter_cfg(m), clock.clone())
    };
    let err = one(SecretKeyConfig {
        kid: "o".into(),
        secret_file: short,
    })
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.message().contains("32 bytes"), "{err}");
    assert!(!err.message().contains(&short_b64), "{err}");
    let err = one(SecretKeyConfig {
        kid: "o".into(),
        secret_file: dir.path().join("missing"),
    })
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    // One kid for two audiences, or the Ed25519 key's kid: refused.
    let (a, b) = (secret(&dir, "a"), secret(&dir, "b"));
    let mut m = BTreeMap::new();
    m.insert(ORDERS.to_string(), audience(secret_cfg("same", &a), None));
    m.insert(BILLING.to_string(), audience(secret_cfg("same", &b), None));
    assert_eq!(
        Minter::new(&minter_cfg(m), clock.clone()).unwrap_err().kind(),
        ErrorKind::InvalidConfig
    );
    // One secret (the same file, or a copy) under two audiences' kids:
    // either service could forge to the other. Refused.
    let mut m = BTreeMap::new();
    m.insert(ORDERS.to_string(), audience(secret_cfg("o", &a), None));
    m.insert(BILLING.to_string(), audience(secret_cfg("b", &a), None));
    let err = Minter::new(&minter_cfg(m), clock.clone()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.message().contains("same secret"), "{err}");
    let copy = dir.path().join("copy");
    std::fs::write(&copy, format!("  {}=\n", a.b64)).unwrap();
    let mut m = BTreeMap::new();
    m.insert(ORDERS.to_string(), audience(secret_cfg("o", &a), None));
    m.insert(
        BILLING.to_string(),
        audience(
            secret_cfg("b", &b),
            Some(SecretKeyConfig {
                kid: "b0".into(),
                secret_file: copy,
            }),
        ),
    );
    assert!(
        Minter::new(&minter_cfg(m), clock.clone()).is_err(),
        "a copy as previous"
    );
    let ok = {
        let mut m = BTreeMap::new();
        m.insert(ORDERS.to_string(), audience(secret_cfg("ed-1", &a), None));
        assert!(Minter::new(&minter_cfg(m), clock.clone()).is_err());
        let mut m = BTreeMap::new();
        m.insert(ORDERS.to_string(), audience(secret_cfg("o", &a), None));
        Minter::new(&minter_cfg(m), clock.clone()).unwrap()
    };
    let shown = format!("{ok:?}");
    assert!(!shown.contains(&a.b64) && shown.contains(ORDERS), "{shown}");
}

#[test]
fn a_service_config_that_mixes_eddsa_and_hs256_for_one_edge_is_refused() {
    let base = |extra: Value| {
        let mut issuer = json!({"kind": "assertion", "issuer": EDGE, "audiences": [ORDERS]});
        for (k, v) in extra.as_object().unwrap() {
            issuer[k] = v.clone();
        }
        Config::from_value(json!({"issuers": [issuer], "background_refresh": false}))
    };
    let hmac = json!([{"kid": "o", "secret_base64": URL_SAFE_NO_PAD.encode([7u8; 32])}]);
    let jwks = json!({"keys": []});
    let cases = [
        (
            json!({"algorithms": ["HS256"], "hmac_keys": hmac, "jwks": jwks}),
            "issuers[0].algorithms",
        ),
        (
            json!({"algorithms": ["EdDSA", "HS256"], "hmac_keys": hmac}),
            "issuers[0].algorithms",
        ),
        (json!({"hmac_keys": hmac}), "issuers[0].hmac_keys"),
        (
            json!({"algorithms": ["EdDSA"], "hmac_keys": hmac}),
            "issuers[0].hmac_keys",
        ),
        // No key at all: the key source check names what is missing.
        (json!({"algorithms": ["HS256"]}), "issuers[0].jwks_uri"),
        (
            json!({"algorithms": ["HS384"], "hmac_keys": hmac}),
            "issuers[0].algorithms",
        ),
        (
            json!({"algorithms": ["HS256"], "hmac_keys": [{"kid": "o", "secret_base64": URL_SAFE_NO_PAD.encode([7u8; 31])}]}),
            "issuers[0].hmac_keys[0].secret_base64",
        ),
    ];
    for (extra, field) in cases {
        let err = base(extra.clone()).expect_err(field);
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.message().starts_with(field), "{extra}: {}", err.message());
    }
    base(json!({"algorithms": ["HS256"], "hmac_keys": hmac})).expect("HS256 alone");
}

/// `jsonwebtoken` (its own decode and claim validation, not jwtwarden's
/// pipeline) verifies the HS256 assertion with the service's secret, and
/// refuses it with another audience's.
#[test]
fn jsonwebtoken_verifies_the_hs256_assertion() {
    let t = two_audiences();
    let a = mint(&t.edge, &t.minter, ORDERS, "/interop");
    let secret = URL_SAFE_NO_PAD.decode(&t.orders_secret.b64).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_audience(&[ORDERS]);
    v.set_issuer(&[EDGE]);
    v.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    // The manual clock is the real time at setup; jsonwebtoken reads the
    // system clock.
    v.leeway = 60;
    let got = jsonwebtoken::decode::<Value>(&a, &jsonwebtoken::DecodingKey::from_secret(&secret), &v)
        .expect("jsonwebtoken accepts the HS256 assertion");
    assert_eq!(got.header.alg, jsonwebtoken::Algorithm::HS256);
    assert_eq!(got.header.kid.as_deref(), Some("orders-1"));
    assert_eq!(got.claims["htu"], "/interop");
    assert!(jsonwebtoken::decode::<Value>(&a, &jsonwebtoken::DecodingKey::from_secret(&[0u8; 32]), &v).is_err());
}

/// The `jti` comes from a per-thread pool of random bytes: a forked child
/// (a pre-fork web server's worker) must never hand out the bytes its
/// parent hands out next, nor may one process repeat itself.
#[test]
fn jtis_are_unique_within_a_process_and_across_a_fork() {
    let t = two_audiences();
    let jti = |a: &str| payload(a)["jti"].as_str().unwrap().to_string();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        // 200 × 16 bytes: the 1 KiB pool is refilled three times.
        assert!(seen.insert(jti(&mint(&t.edge, &t.minter, ORDERS, "/a"))));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("child-jti");
    let code = common::in_forked_child(std::time::Duration::from_secs(20), || {
        let a = mint(&t.edge, &t.minter, ORDERS, "/a");
        std::fs::write(&out, jti(&a)).map(|_| 0).unwrap_or(1)
    });
    assert_eq!(code, Some(0), "the child minted");
    let parent = jti(&mint(&t.edge, &t.minter, ORDERS, "/a"));
    let child = std::fs::read_to_string(&out).unwrap();
    assert_ne!(parent, child, "parent and child drew the same jti");
    assert!(!seen.contains(&child));
}

/// golang-jwt (Go, not Rust) verifies the HS256 assertion with the
/// service's secret only, and refuses it under another audience's secret
/// or when it was edited. Skipped (with a note) when Go is missing.
#[test]
fn golang_jwt_verifies_the_hs256_assertion() {
    let t = two_audiences();
    let a = mint(&t.edge, &t.minter, ORDERS, "/interop");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/assertion_interop");
    let go = |token: &str, secret: &str| {
        std::process::Command::new("go")
            .args(["run", ".", token, secret, ORDERS, "HS256"])
            .current_dir(&dir)
            .env("GOFLAGS", "-mod=mod")
            .output()
    };
    let out = match go(&a, &t.orders_secret.b64) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: no go ({e})");
            return;
        }
    };
    assert!(
        out.status.success(),
        "golang-jwt refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["htu"], "/interop");
    assert_eq!(claims["iss"], EDGE);
    let other = URL_SAFE_NO_PAD.encode([1u8; 32]);
    assert!(!go(&a, &other).unwrap().status.success());
    let mut c = payload(&a);
    c["sub"] = json!("root");
    assert!(!go(&with_payload(&a, &c), &t.orders_secret.b64)
        .unwrap()
        .status
        .success());
}
