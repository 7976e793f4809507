//! Signed verification assertions: minted at the edge from a verified
//! token, verified behind as inherited trust. Every refusal an attacker
//! would try: replay to another path, method or service, after the
//! lifetime, twice; forged, re-signed, `alg` swapped, `typ` removed; and
//! edge key rotation with zero failures. The format is checked by an
//! independent JWS library (golang-jwt).

mod common;

use std::sync::Arc;

use aws_lc_rs::signature::Ed25519KeyPair;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jwtwarden::assertion::{edge_issuer, Inheritance, Minter, MinterConfig, ReplayGuard, Request, SigningKeyConfig};
use jwtwarden::{Config, ErrorKind, ManualClock, Verifier};
use serde_json::{json, Value};

use common::{payload, setup, with_header, with_payload, Setup};

const EDGE: &str = "edge-1";
const SERVICE: &str = "orders";

fn pem() -> String {
    let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).expect("keygen");
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(doc.as_ref())
    )
}

fn key(kid: &str, pem: &str) -> SigningKeyConfig {
    SigningKeyConfig {
        kid: kid.into(),
        pem: Some(pem.into()),
        pem_file: None,
    }
}

fn minter(clock: &ManualClock, current: SigningKeyConfig, previous: Option<SigningKeyConfig>) -> Minter {
    let cfg = MinterConfig {
        name: EDGE.into(),
        current,
        previous,
        lifetime_secs: 30,
        hs256: Default::default(),
    };
    Minter::new(&cfg, Arc::new(clock.clone())).expect("minter")
}

/// The service behind: the edge as an issuer with `jwks` inline.
struct Behind {
    verifier: Verifier,
    inheritance: Inheritance,
}

fn behind(clock: &ManualClock, jwks: Value, fresh_within_secs: Option<u64>) -> Behind {
    let mut issuer = edge_issuer(EDGE, SERVICE);
    issuer.jwks = Some(jwks);
    let mut config = Config::new(vec![issuer]);
    config.background_refresh = false;
    let verifier = Verifier::with_clock(config, Arc::new(clock.clone())).expect("service verifier");
    let inheritance = Inheritance::new(
        [(EDGE.to_string(), fresh_within_secs)],
        Arc::new(ReplayGuard::new(10_000)),
        Arc::new(clock.clone()),
    );
    Behind { verifier, inheritance }
}

impl Behind {
    fn check(&self, a: &str, method: &str, path: &str) -> Result<jwtwarden::assertion::Inherited, ErrorKind> {
        self.inheritance
            .verify(&self.verifier, a, &Request { method, path }, false)
            .map_err(|e| e.kind())
    }
}

struct World {
    edge: Setup,
    minter: Minter,
    behind: Behind,
}

fn world() -> World {
    let edge = setup();
    let minter = minter(&edge.clock, key("k1", &pem()), None);
    let behind = behind(&edge.clock, minter.jwks(), None);
    World { edge, minter, behind }
}

impl World {
    fn mint(&self, method: &str, path: &str) -> String {
        let token = self.edge.token(&self.edge.issuer.first_kid());
        let v = self.edge.verifier.verify(&token).expect("original verifies");
        self.minter
            .mint(&v, token.as_bytes(), SERVICE, &Request { method, path }, false)
            .expect("mint")
    }
}

#[test]
fn minted_assertion_verifies_as_inherited_trust_with_the_original_claims() {
    let w = world();
    let a = w.mint("GET", "/orders/7?x=1");
    let got = w.behind.check(&a, "GET", "/orders/./7").expect("inherited");
    assert!(got.inherited());
    assert_eq!(got.edge, EDGE);
    assert_eq!(got.original["sub"], "svc-a");
    assert_eq!(got.original["iss"], json!(w.edge.issuer.url()));
    assert!(got.original.contains_key("jti"));
    assert_eq!(got.verified_at, w.edge.clock.now_secs());
    assert!(!got.cached);
    let claims = payload(&a);
    assert_eq!(claims["htu"], "/orders/7");
    assert_eq!(claims["htm"], "GET");
    assert_eq!(claims["aud"], SERVICE);
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 30);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(a.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(
        header,
        json!({"alg": "EdDSA", "typ": "jwtwarden-assertion+jwt", "kid": "k1"})
    );
}

#[test]
fn a_cached_result_is_reported_as_cached_and_each_assertion_has_its_own_jti() {
    let w = world();
    let token = w.edge.token(&w.edge.issuer.first_kid());
    w.edge.verifier.verify(&token).unwrap();
    w.edge.clock.advance_secs(3);
    let v = w.edge.verifier.verify(&token).unwrap();
    assert!(v.cached());
    let req = Request {
        method: "GET",
        path: "/a",
    };
    let a1 = w.minter.mint(&v, token.as_bytes(), SERVICE, &req, false).unwrap();
    let a2 = w.minter.mint(&v, token.as_bytes(), SERVICE, &req, false).unwrap();
    assert_ne!(payload(&a1)["jti"], payload(&a2)["jti"]);
    let got = w.behind.check(&a1, "GET", "/a").unwrap();
    assert!(got.cached);
    assert_eq!(got.verified_at + 3, w.edge.clock.now_secs());
    w.behind
        .check(&a2, "GET", "/a")
        .expect("a second request has its own assertion");
}

#[test]
fn a_token_without_jti_is_named_by_its_hash() {
    let w = world();
    let mut claims = w.edge.issuer.default_claims("svc-a", w.edge.clock.now_secs());
    claims.as_object_mut().unwrap().remove("jti");
    let token = w.edge.issuer.mint(&w.edge.issuer.first_kid(), &claims);
    let v = w.edge.verifier.verify(&token).unwrap();
    let a = w
        .minter
        .mint(
            &v,
            token.as_bytes(),
            SERVICE,
            &Request {
                method: "GET",
                path: "/",
            },
            false,
        )
        .unwrap();
    let got = w.behind.check(&a, "GET", "/").unwrap();
    assert!(!got.original.contains_key("jti"));
    assert_eq!(
        got.original["tjh"],
        jwtwarden::assertion::mint::token_hash(token.as_bytes())
    );
}

#[test]
fn replayed_to_another_path_method_or_service_is_refused() {
    let w = world();
    let a = w.mint("GET", "/orders/7");
    assert_eq!(
        w.behind.check(&a, "GET", "/orders/8").unwrap_err(),
        ErrorKind::InvalidAudience
    );
    assert_eq!(
        w.behind.check(&a, "GET", "/orders/7/").unwrap_err(),
        ErrorKind::InvalidAudience
    );
    assert_eq!(
        w.behind.check(&a, "DELETE", "/orders/7").unwrap_err(),
        ErrorKind::InvalidAudience
    );
    assert_eq!(
        w.behind.check(&a, "get", "/orders/7").unwrap_err(),
        ErrorKind::InvalidAudience
    );
    // Another service (another audience) holding the same edge keys.
    let mut issuer = edge_issuer(EDGE, "billing");
    issuer.jwks = Some(w.minter.jwks());
    let mut config = Config::new(vec![issuer]);
    config.background_refresh = false;
    let billing = Verifier::with_clock(config, Arc::new(w.edge.clock.clone())).unwrap();
    let err = w
        .behind
        .inheritance
        .verify(
            &billing,
            &a,
            &Request {
                method: "GET",
                path: "/orders/7",
            },
            false,
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidAudience);
    // Refusals did not burn the jti: the right request still passes, once.
    w.behind.check(&a, "GET", "/orders/7").expect("bound request");
}

#[test]
fn used_twice_is_refused() {
    let w = world();
    let a = w.mint("POST", "/pay");
    w.behind.check(&a, "POST", "/pay").expect("first use");
    assert_eq!(w.behind.check(&a, "POST", "/pay").unwrap_err(), ErrorKind::Revoked);
    w.edge.clock.advance_secs(20);
    assert_eq!(w.behind.check(&a, "POST", "/pay").unwrap_err(), ErrorKind::Revoked);
}

#[test]
fn after_its_lifetime_it_is_refused() {
    let w = world();
    let a = w.mint("GET", "/late");
    // exp = iat + 30, leeway 5 s: invalid from exp + 5 on.
    w.edge.clock.advance_secs(35);
    assert_eq!(w.behind.check(&a, "GET", "/late").unwrap_err(), ErrorKind::Expired);
}

#[test]
fn forged_resigned_alg_swapped_or_untyped_assertions_are_refused() {
    let w = world();
    let a = w.mint("GET", "/x");
    let claims = payload(&a);
    // Payload changed, signature kept.
    let mut forged = claims.clone();
    forged["htu"] = json!("/admin");
    let f = with_payload(&a, &forged);
    assert_eq!(
        w.behind.check(&f, "GET", "/admin").unwrap_err(),
        ErrorKind::InvalidSignature
    );
    // Re-signed with another Ed25519 key under the same kid.
    let rogue = minter(&w.edge.clock, key("k1", &pem()), None);
    let token = w.edge.token(&w.edge.issuer.first_kid());
    let v = w.edge.verifier.verify(&token).unwrap();
    let r = rogue
        .mint(
            &v,
            token.as_bytes(),
            SERVICE,
            &Request {
                method: "GET",
                path: "/x",
            },
            false,
        )
        .unwrap();
    assert_eq!(
        w.behind.check(&r, "GET", "/x").unwrap_err(),
        ErrorKind::InvalidSignature
    );
    // Another kid: unknown, inline keys never refetched.
    let other = minter(&w.edge.clock, key("k9", &pem()), None);
    let o = other
        .mint(
            &v,
            token.as_bytes(),
            SERVICE,
            &Request {
                method: "GET",
                path: "/x",
            },
            false,
        )
        .unwrap();
    assert_eq!(w.behind.check(&o, "GET", "/x").unwrap_err(), ErrorKind::UnknownKid);
    // alg swapped: HS256 keyed with the public key, and none.
    for alg in ["HS256", "none", "ES256"] {
        let h = with_header(&a, &json!({"alg": alg, "typ": "jwtwarden-assertion+jwt", "kid": "k1"}));
        assert_eq!(
            w.behind.check(&h, "GET", "/x").unwrap_err(),
            ErrorKind::AlgorithmNotAllowed,
            "{alg}"
        );
    }
    // typ missing or an access-token typ: refused (checked before signature
    // or after, the kind is the same). Re-sign properly so only typ differs.
    for header in [
        json!({"alg": "EdDSA", "kid": "k1"}),
        json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"}),
    ] {
        let t = with_header(&a, &header);
        let kind = w.behind.check(&t, "GET", "/x").unwrap_err();
        assert!(
            matches!(kind, ErrorKind::InvalidType | ErrorKind::InvalidSignature),
            "{header}: {kind:?}"
        );
    }
    // Not JSON, not three parts, oversized: malformed, no panic.
    assert_eq!(
        w.behind.check("a.b", "GET", "/x").unwrap_err(),
        ErrorKind::MalformedToken
    );
    let big = format!("{}.{}.{}", "a".repeat(9000), "b".repeat(9000), "c");
    assert_eq!(w.behind.check(&big, "GET", "/x").unwrap_err(), ErrorKind::TokenTooLarge);
    // The genuine one still works once.
    w.behind.check(&a, "GET", "/x").expect("genuine");
}

/// `typ` refused on a correctly signed assertion: a token that is a valid
/// EdDSA JWS from the edge's key but typed as an access token.
#[test]
fn a_correctly_signed_token_without_the_assertion_typ_is_refused() {
    let clock = ManualClock::starting_now();
    let pem = pem();
    let m = minter(&clock, key("k1", &pem), None);
    let b = behind(&clock, m.jwks(), None);
    let enc = jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
    let now = clock.now_secs();
    let claims = json!({
        "iss": EDGE, "aud": SERVICE, "iat": now, "exp": now + 30, "jti": "j1", "htm": "GET",
        "htu": "/x", "verified_at": now, "orig": {"sub": "mallory"},
    });
    for typ in [None, Some("JWT"), Some("at+jwt")] {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.kid = Some("k1".into());
        h.typ = typ.map(str::to_string);
        let t = jsonwebtoken::encode(&h, &claims, &enc).unwrap();
        assert_eq!(b.check(&t, "GET", "/x").unwrap_err(), ErrorKind::InvalidType, "{typ:?}");
    }
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = Some("k1".into());
    h.typ = Some("application/jwtwarden-assertion+jwt".into());
    let t = jsonwebtoken::encode(&h, &claims, &enc).unwrap();
    b.check(&t, "GET", "/x").expect("same media type, long form");
}

#[test]
fn edge_key_rotation_has_zero_failures() {
    let edge = setup();
    let (p1, p2) = (pem(), pem());
    let before = minter(&edge.clock, key("k1", &p1), None);
    // Step 1: the new key is published as previous while k1 still signs.
    let publishing = minter(&edge.clock, key("k1", &p1), Some(key("k2", &p2)));
    // Step 2: swap: k2 signs, k1 still published.
    let after = minter(&edge.clock, key("k2", &p2), Some(key("k1", &p1)));
    assert_eq!(publishing.jwks()["keys"].as_array().unwrap().len(), 2);
    // A service that fetched the JWKS at step 1 or step 2 accepts all three
    // edge generations' assertions.
    for jwks in [publishing.jwks(), after.jwks()] {
        let b = behind(&edge.clock, jwks, None);
        let token = edge.token(&edge.issuer.first_kid());
        let v = edge.verifier.verify(&token).unwrap();
        let mut failures = 0;
        for i in 0..300 {
            let m = [&before, &publishing, &after][i % 3];
            let path = format!("/r/{i}");
            let a = m
                .mint(
                    &v,
                    token.as_bytes(),
                    SERVICE,
                    &Request {
                        method: "GET",
                        path: &path,
                    },
                    false,
                )
                .unwrap();
            if b.check(&a, "GET", &path).is_err() {
                failures += 1;
            }
        }
        assert_eq!(failures, 0);
    }
}

#[test]
fn a_fresh_call_refuses_inherited_trust_unless_the_edge_counts_as_fresh() {
    let edge = setup();
    let m = minter(&edge.clock, key("k1", &pem()), None);
    let token = edge.token(&edge.issuer.first_kid());
    edge.verifier.verify(&token).unwrap();
    edge.clock.advance_secs(4);
    let v = edge.verifier.verify(&token).unwrap();
    assert!(v.cached());
    let req = Request {
        method: "GET",
        path: "/wire",
    };
    let strict = behind(&edge.clock, m.jwks(), None);
    let a = m.mint(&v, token.as_bytes(), SERVICE, &req, false).unwrap();
    let err = strict.inheritance.verify(&strict.verifier, &a, &req, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenLifetimeExceeded);
    // Within 5 s counts as fresh; verified 4 s ago: accepted.
    let lenient = behind(&edge.clock, m.jwks(), Some(5));
    let a = m.mint(&v, token.as_bytes(), SERVICE, &req, false).unwrap();
    lenient
        .inheritance
        .verify(&lenient.verifier, &a, &req, true)
        .expect("fresh enough");
    // Verified 6 s ago: not.
    edge.clock.advance_secs(2);
    let v = edge.verifier.verify(&token).unwrap();
    let a = m.mint(&v, token.as_bytes(), SERVICE, &req, false).unwrap();
    let err = lenient
        .inheritance
        .verify(&lenient.verifier, &a, &req, true)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenLifetimeExceeded);
    // The same assertion without fresh is fine (and refusal did not burn it).
    lenient
        .inheritance
        .verify(&lenient.verifier, &a, &req, false)
        .expect("not fresh");
}

#[test]
fn an_unconfigured_edge_is_refused() {
    let w = world();
    let inh = Inheritance::new(
        [("edge-2".to_string(), None)],
        Arc::new(ReplayGuard::new(10)),
        Arc::new(w.edge.clock.clone()),
    );
    let a = w.mint("GET", "/");
    let err = inh
        .verify(
            &w.behind.verifier,
            &a,
            &Request {
                method: "GET",
                path: "/",
            },
            false,
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownIssuer);
}

#[test]
fn a_full_replay_window_refuses_rather_than_forgets() {
    let edge = setup();
    let m = minter(&edge.clock, key("k1", &pem()), None);
    let mut b = behind(&edge.clock, m.jwks(), None);
    b.inheritance = Inheritance::new(
        [(EDGE.to_string(), None)],
        Arc::new(ReplayGuard::new(2)),
        Arc::new(edge.clock.clone()),
    );
    let token = edge.token(&edge.issuer.first_kid());
    let v = edge.verifier.verify(&token).unwrap();
    let req = Request {
        method: "GET",
        path: "/",
    };
    for _ in 0..2 {
        let a = m.mint(&v, token.as_bytes(), SERVICE, &req, false).unwrap();
        b.check(&a, "GET", "/").unwrap();
    }
    let a = m.mint(&v, token.as_bytes(), SERVICE, &req, false).unwrap();
    assert_eq!(b.check(&a, "GET", "/").unwrap_err(), ErrorKind::RevocationListFull);
    // Once the first two expire, room again.
    edge.clock.advance_secs(36);
    let v = edge.verifier.verify(&token).unwrap();
    let a = m.mint(&v, token.as_bytes(), SERVICE, &req, false).unwrap();
    b.check(&a, "GET", "/").expect("expired entries are dropped");
}

/// `key_age`: how long the edge had trusted the key that verified the
/// original token, by the edge's manual clock. Carried across a refresh
/// while the key stays in the set; a key new to the set starts at 0; a
/// cache hit reports the age at the original verification.
#[test]
fn the_key_age_is_carried_across_refreshes_and_restarts_for_a_new_key() {
    let w = world();
    let k1 = w.edge.issuer.first_kid();
    let req = Request {
        method: "GET",
        path: "/a",
    };
    let mut n = 0;
    let mut mint_with = |kid: &str| {
        n += 1;
        let token = w.edge.token_with(kid, json!({"jti": format!("key-age-{n}")}));
        let v = w.edge.verifier.verify(&token).expect("original verifies");
        let a = w.minter.mint(&v, token.as_bytes(), SERVICE, &req, false).unwrap();
        (token, a)
    };
    let (first, a) = mint_with(&k1);
    assert_eq!(payload(&a)["key_age"], 0, "the key was seen at the startup fetch");
    assert_eq!(payload(&a)["key_kid"], k1.as_str());
    let got = w.behind.check(&a, "GET", "/a").unwrap();
    assert_eq!(got.key_age, Some(0));
    assert_eq!(got.assertion["key_age"], 0);

    w.edge.clock.advance_secs(100);
    // A new key: its unknown kid makes the edge refresh; the set now holds
    // both, and only the new one starts from zero.
    let k2 = w.edge.issuer.rotate(common::IssuerAlg::EdDSA);
    let (_, a2) = mint_with(&k2);
    assert_eq!(payload(&a2)["key_age"], 0, "a new key starts at 0");
    assert_eq!(payload(&a2)["key_kid"], k2.as_str());
    let (_, a1) = mint_with(&k1);
    assert_eq!(payload(&a1)["key_age"], 100, "carried across the refresh");
    assert_eq!(w.behind.check(&a1, "GET", "/a").unwrap().key_age, Some(100));

    // A cache hit reports the age at its original verification.
    w.edge.clock.advance_secs(7);
    let v = w.edge.verifier.verify(&first).unwrap();
    assert!(v.cached());
    let hit = w.minter.mint(&v, first.as_bytes(), SERVICE, &req, false).unwrap();
    assert_eq!(payload(&hit)["key_age"], 0);

    // The old key leaves the set, a later key joins: k2 keeps its
    // first-seen time through both refreshes, the later key starts at 0.
    w.edge.issuer.retire_key(&k1);
    w.edge.verifier.refresh_issuer(&w.edge.issuer.url()).unwrap();
    w.edge.clock.advance_secs(40);
    let k3 = w.edge.issuer.rotate(common::IssuerAlg::EdDSA);
    w.edge.verifier.refresh_issuer(&w.edge.issuer.url()).unwrap();
    let (_, a2b) = mint_with(&k2);
    assert_eq!(payload(&a2b)["key_age"], 47, "k2 kept its first-seen time");
    let (_, a3) = mint_with(&k3);
    assert_eq!(payload(&a3)["key_age"], 0);
}

/// golang-jwt (not jsonwebtoken, not aws-lc) accepts the assertion: the
/// format is standard compact JWS with EdDSA. Skipped (with a note) when Go
/// or the module cache is missing.
#[test]
fn golang_jwt_verifies_the_assertion() {
    let w = world();
    let a = w.mint("GET", "/interop");
    let x = w.minter.jwks()["keys"][0]["x"].as_str().unwrap().to_string();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/assertion_interop");
    let out = match std::process::Command::new("go")
        .args(["run", ".", &a, &x, SERVICE])
        .current_dir(&dir)
        .env("GOFLAGS", "-mod=mod")
        .output()
    {
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
    // And refuses a forged one.
    let mut c = payload(&a);
    c["sub"] = json!("root");
    let f = with_payload(&a, &c);
    let out = std::process::Command::new("go")
        .args(["run", ".", &f, &x, SERVICE])
        .current_dir(&dir)
        .env("GOFLAGS", "-mod=mod")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Mint and verify cost. `cargo test --release -p jwtwarden --test assertion
/// -- --ignored --nocapture assertion_costs`
#[test]
#[ignore]
fn assertion_costs() {
    let w = world();
    let token = w.edge.token(&w.edge.issuer.first_kid());
    w.edge.verifier.verify(&token).unwrap();
    let req = Request {
        method: "GET",
        path: "/orders/7",
    };
    let n = 5_000u32;
    let t = std::time::Instant::now();
    for _ in 0..n {
        let v = w.edge.verifier.verify(&token).unwrap();
        std::hint::black_box(&v);
    }
    let hit = t.elapsed() / n;
    let t = std::time::Instant::now();
    for _ in 0..n {
        let v = w.edge.verifier.verify(&token).unwrap();
        let a = w.minter.mint(&v, token.as_bytes(), SERVICE, &req, false).unwrap();
        std::hint::black_box(a);
    }
    let hit_and_mint = t.elapsed() / n;
    let v = w.edge.verifier.verify(&token).unwrap();
    let assertions: Vec<String> = (0..n)
        .map(|_| w.minter.mint(&v, token.as_bytes(), SERVICE, &req, false).unwrap())
        .collect();
    let t = std::time::Instant::now();
    for a in &assertions {
        w.behind.check(a, "GET", "/orders/7").unwrap();
    }
    let verify = t.elapsed() / n;
    // The bare Ed25519 signature check (aws-lc) of the same assertions.
    let x = URL_SAFE_NO_PAD
        .decode(w.minter.jwks()["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let public = aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, x);
    let t = std::time::Instant::now();
    for a in &assertions {
        let (msg, sig) = a.rsplit_once('.').unwrap();
        public
            .verify(msg.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
            .unwrap();
    }
    let bare = t.elapsed() / n;
    // A cache miss of an ordinary token, for comparison.
    let tokens: Vec<String> = (0..2000).map(|_| w.edge.token(&w.edge.issuer.first_kid())).collect();
    let t = std::time::Instant::now();
    for tk in &tokens {
        w.edge.verifier.verify(tk).unwrap();
    }
    let miss = t.elapsed() / tokens.len() as u32;
    eprintln!(
        "hit {hit:?}; hit+mint {hit_and_mint:?} (mint adds {:?}); verify assertion {verify:?} (bare Ed25519 check {bare:?}); ordinary miss ({:?}) {miss:?}",
        hit_and_mint.saturating_sub(hit),
        w.edge.issuer.key_alg(&w.edge.issuer.first_kid()),
    );
}
