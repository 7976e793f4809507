//! The verification assertion minted by the shared HTTP decision (issue 28):
//! the engine config's `assertion` keys, the policy's `assertion` section
//! (header, audience per route). What the web-server modules and any other
//! front end get from `decide_minting`: an assertion that verifies behind as
//! inherited trust for this method and path only, one per request (a repeat
//! of the same request is a new assertion the replay window accepts), none
//! for refused or open requests, and a 500 rather than a request without the
//! assertion it was configured to carry.

mod common;

use std::sync::Arc;

use aws_lc_rs::signature::Ed25519KeyPair;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jwtwarden::assertion::{edge_issuer, Inheritance, Minter, ReplayGuard, Request};
use jwtwarden::http::{DecideMode, Decision, HttpPolicy, HttpRequest};
use jwtwarden::{Config, ErrorKind, ManualClock, Verifier};
use serde_json::{json, Value};

use common::{payload, setup_with, Setup};

const EDGE: &str = "edge-1";

fn pem() -> String {
    let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).expect("keygen");
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(doc.as_ref())
    )
}

/// The edge: a verifier whose engine config carries `assertion`, and the
/// minter built from that same config.
struct Edge {
    s: Setup,
    minter: Minter,
}

fn edge() -> Edge {
    let pem = pem();
    let s = setup_with(|c| {
        c["assertion"] = json!({"name": EDGE, "current": {"kid": "e1", "pem": pem}});
    });
    let config = Config::from_value(edge_config_json(&s, &pem)).expect("the engine config parses");
    let minter = Minter::new(
        config.assertion.as_ref().expect("assertion section"),
        Arc::new(s.clock.clone()),
    )
    .expect("minter from the engine config");
    Edge { s, minter }
}

fn edge_config_json(s: &Setup, pem: &str) -> Value {
    let mut c = common::config_json(&s.issuer);
    c["assertion"] = json!({"name": EDGE, "current": {"kid": "e1", "pem": pem}, "lifetime_secs": 30});
    c
}

/// A service behind, for `audience`.
fn behind(e: &Edge, audience: &str) -> (Verifier, Inheritance) {
    let mut issuer = edge_issuer(EDGE, audience);
    issuer.jwks = Some(e.minter.jwks());
    let mut config = Config::new(vec![issuer]);
    config.background_refresh = false;
    let verifier = Verifier::with_clock(config, Arc::new(e.s.clock.clone())).expect("service verifier");
    let inheritance = Inheritance::new(
        [(EDGE.to_string(), None)],
        Arc::new(ReplayGuard::new(1000)),
        Arc::new(e.s.clock.clone()),
    );
    (verifier, inheritance)
}

fn policy(v: Value) -> HttpPolicy {
    HttpPolicy::from_json(&v.to_string()).expect("policy")
}

impl Edge {
    fn decide(&self, p: &HttpPolicy, method: &str, target: &str, auth: &str, mode: DecideMode) -> Decision {
        let h: &[(&[u8], &[u8])] = &[(b"Authorization", auth.as_bytes())];
        let req = HttpRequest {
            method,
            target: Some(target),
            headers: h,
        };
        p.decide_minting(&self.s.verifier, Some(&self.minter), &req, mode)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.s.token(&self.s.issuer.first_kid()))
    }
}

fn check(b: &(Verifier, Inheritance), a: &str, method: &str, path: &str) -> Result<(), ErrorKind> {
    b.1.verify(&b.0, a, &Request { method, path }, false)
        .map(|_| ())
        .map_err(|e| e.kind())
}

#[test]
fn an_allowed_request_carries_an_assertion_bound_to_its_method_and_path() {
    let e = edge();
    let p = policy(json!({"assertion": {"audience": "orders"}}));
    let auth = e.bearer();
    let d = e.decide(&p, "GET", "/api/orders/./7?x=1", &auth, DecideMode::Verify);
    assert!(d.allowed(), "{d:?}");
    let a = d.assertion().expect("an assertion");
    assert_eq!(a.header.as_str(), "x-jwtwarden-assertion");
    let claims = payload(&a.value);
    assert_eq!(claims["aud"], "orders");
    assert_eq!(claims["htm"], "GET");
    assert_eq!(claims["htu"], "/api/orders/7");
    assert_eq!(claims["cached"], false);
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 30);
    assert!(!format!("{d:?}").contains(&*a.value), "Debug shows a fingerprint only");

    let orders = behind(&e, "orders");
    // Replayed to another path or method: refused, and the refusal does
    // not burn the jti...
    assert_eq!(
        check(&orders, &a.value, "GET", "/api/orders/8"),
        Err(ErrorKind::InvalidAudience)
    );
    assert_eq!(
        check(&orders, &a.value, "DELETE", "/api/orders/7"),
        Err(ErrorKind::InvalidAudience)
    );
    // ...to another service: refused.
    let billing = behind(&e, "billing");
    assert!(check(&billing, &a.value, "GET", "/api/orders/7").is_err());
    // For its own request: inherited trust, once.
    check(&orders, &a.value, "GET", "/api/orders/7").expect("inherited");
    assert_eq!(
        check(&orders, &a.value, "GET", "/api/orders/7"),
        Err(ErrorKind::Revoked)
    );
}

/// One assertion per request, cache hits included: the same client
/// repeating the same request (a retry, a poll) gets a new assertion each
/// time, and the service's replay window accepts every one. An assertion
/// cache per (token, route, path) would hand the second request the first
/// one's `jti`, which the replay window refuses: this is why nothing
/// minted is reused.
#[test]
fn a_repeated_request_gets_a_new_assertion_that_the_replay_window_accepts() {
    let e = edge();
    let p = policy(json!({"assertion": {"audience": "orders"}}));
    let auth = e.bearer();
    let orders = behind(&e, "orders");
    let mut jtis = std::collections::HashSet::new();
    for i in 0..5 {
        let mode = if i == 0 {
            DecideMode::Verify
        } else {
            DecideMode::CachedOnly
        };
        let d = e.decide(&p, "GET", "/api/orders/7", &auth, mode);
        assert_eq!(d.cached(), Some(i > 0));
        let a = d.assertion().expect("an assertion").value.clone();
        assert_eq!(payload(&a)["cached"], i > 0);
        assert!(jtis.insert(payload(&a)["jti"].as_str().unwrap().to_string()));
        check(&orders, &a, "GET", "/api/orders/7").unwrap_or_else(|k| panic!("request {i}: {k:?}"));
    }
}

#[test]
fn audiences_per_route_and_no_assertion_where_none_is_configured_or_nothing_was_allowed() {
    let e = edge();
    let p = policy(json!({
        "routes": [{"prefix": "/orders"}, {"prefix": "/billing"}, {"prefix": "/other"},
                   {"prefix": "/public/", "open": true}],
        "assertion": {"header": "X-Edge-Assertion", "audiences": {"/orders": "orders", "/billing": "billing"}}
    }));
    let auth = e.bearer();
    for (path, aud) in [
        ("/orders/1", Some("orders")),
        ("/billing", Some("billing")),
        ("/other", None),
    ] {
        let d = e.decide(&p, "POST", path, &auth, DecideMode::Verify);
        assert!(d.allowed(), "{path}");
        let got = d.assertion().map(|a| {
            assert_eq!(a.header.as_str(), "x-edge-assertion");
            payload(&a.value)["aud"].as_str().unwrap().to_string()
        });
        assert_eq!(got.as_deref(), aud, "{path}");
    }
    let d = e.decide(&p, "GET", "/public/x", "", DecideMode::Verify);
    assert!(
        d.allowed() && d.assertion().is_none(),
        "an open route: no token, no assertion"
    );
    let d = e.decide(&p, "GET", "/orders/1", "Bearer x.y.z", DecideMode::Verify);
    assert!(!d.allowed() && d.assertion().is_none());
    let d = e.decide(&p, "GET", "/orders/1", &e.bearer(), DecideMode::CachedOnly);
    assert!(d.would_fetch() && d.assertion().is_none());
}

/// A policy that mints, decided without a minter (the plain `decide`, a
/// host that forgot the engine's keys): 500, never an allowed request
/// without its assertion.
#[test]
fn a_policy_that_mints_without_a_minter_refuses() {
    let e = edge();
    let p = policy(json!({"assertion": {"audience": "orders"}}));
    let auth = e.bearer();
    let h: &[(&[u8], &[u8])] = &[(b"Authorization", auth.as_bytes())];
    let req = HttpRequest {
        method: "GET",
        target: Some("/a"),
        headers: h,
    };
    let d = p.decide(&e.s.verifier, &req, DecideMode::Verify);
    assert_eq!(d.status(), 500, "{d:?}");
    assert!(d.assertion().is_none());
    // No target to bind to: 500 as well.
    let req = HttpRequest {
        method: "GET",
        target: None,
        headers: h,
    };
    let d = p.decide_minting(&e.s.verifier, Some(&e.minter), &req, DecideMode::Verify);
    assert_eq!(d.status(), 500, "{d:?}");
}

#[test]
fn assertion_policies_are_validated_naming_the_field() {
    let bad = |v: Value| HttpPolicy::from_json(&v.to_string()).unwrap_err();
    assert!(bad(json!({"assertion": {}})).starts_with("assertion.audience"));
    assert!(bad(json!({"assertion": {"audience": ""}})).starts_with("assertion.audience"));
    assert!(bad(json!({"assertion": {"audience": "a", "header": "Bad Header"}})).starts_with("assertion.header"));
    assert!(bad(json!({"assertion": {"audience": "a", "header": "Authorization"}})).starts_with("assertion.header"));
    assert!(bad(json!({"assertion": {"audience": "a", "header": "Content-Length"}})).starts_with("assertion.header"));
    assert!(
        bad(json!({"claim_headers": {"sub": "X-A"}, "assertion": {"audience": "a", "header": "x-a"}}))
            .starts_with("assertion.header")
    );
    assert!(
        bad(json!({"routes": [{"prefix": "/a"}], "assertion": {"audiences": {"/b": "x"}}}))
            .starts_with("assertion.audiences")
    );
    assert!(bad(json!({"assertion": {"audience": "a", "extra": 1}})).contains("extra"));
}

/// The engine config's `assertion` section: refused at load when a key is
/// missing or not Ed25519, naming it.
#[test]
fn the_engine_configs_assertion_keys_are_checked_when_the_minter_is_built() {
    let clock = Arc::new(ManualClock::starting_now());
    let parse = |a: Value| {
        Config::from_value(
            json!({"issuers": [{"issuer": "https://i", "jwks": {"keys": []}, "audiences": ["x"]}],
                                  "assertion": a}),
        )
    };
    assert!(parse(json!({"name": EDGE, "current": {"kid": "k", "pem": pem()}, "extra": 1})).is_err());
    let key = pem();
    let c = parse(json!({"name": EDGE, "current": {"kid": "k", "pem": key}})).expect("parses");
    let body = key.lines().nth(1).unwrap();
    assert!(!format!("{c:?}").contains(body), "Debug never shows the private key");
    let c = parse(json!({"name": EDGE, "current": {"kid": "k"}})).expect("parses");
    let err = Minter::new(c.assertion.as_ref().unwrap(), clock.clone()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.message().contains("assertion key \"k\""), "{}", err.message());
    let c = parse(json!({"name": EDGE, "current": {"kid": "k", "pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}}))
        .expect("parses");
    assert!(Minter::new(c.assertion.as_ref().unwrap(), clock).is_err());
}

/// The opt-in HS256 mode through the engine config and the shared
/// decision (what nginx and Apache mint with): `assertion.hs256.orders`
/// makes the `orders` route's assertion HS256, verified by a service that
/// holds only that secret; the `billing` route keeps EdDSA; `key_age`
/// rides along.
#[test]
fn the_engine_config_hs256_section_mints_hs256_for_its_audience_only() {
    let pem = pem();
    let dir = tempfile::tempdir().unwrap();
    let secret_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([42u8; 32]);
    let file = dir.path().join("orders.secret");
    std::fs::write(&file, &secret_b64).unwrap();
    let s = setup_with(|_| {});
    let mut c = edge_config_json(&s, &pem);
    c["assertion"]["hs256"] = json!({"orders": {"current": {"kid": "orders-1", "secret_file": file}}});
    let config = Config::from_value(c).expect("the engine config parses");
    let minter = Minter::new(config.assertion.as_ref().unwrap(), Arc::new(s.clock.clone())).expect("minter");
    assert!(!minter.jwks().to_string().contains(&secret_b64));
    let e = Edge { s, minter };
    let auth = e.bearer();
    let d = e.decide(
        &policy(json!({"assertion": {"audience": "orders"}})),
        "GET",
        "/api/orders/7",
        &auth,
        DecideMode::Verify,
    );
    let a = d.assertion().expect("an assertion").value.clone();
    let head = a.split('.').next().unwrap();
    let header: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(head).unwrap()).unwrap();
    assert_eq!(header["alg"], "HS256");
    assert_eq!(payload(&a)["key_age"], 0);
    let service = Verifier::with_clock(
        Config::from_value(json!({
            "issuers": [{"kind": "assertion", "issuer": EDGE, "audiences": ["orders"],
                         "algorithms": ["HS256"], "hmac_keys": [{"kid": "orders-1", "secret_base64": secret_b64}]}],
            "background_refresh": false,
        }))
        .unwrap(),
        Arc::new(e.s.clock.clone()),
    )
    .unwrap();
    let got = service
        .verify_assertion(
            &a,
            &Request {
                method: "GET",
                path: "/api/orders/7",
            },
            false,
        )
        .expect("inherited over HS256");
    assert_eq!(got.key_age, Some(0));
    let d = e.decide(
        &policy(json!({"assertion": {"audience": "billing"}})),
        "GET",
        "/api/pay",
        &auth,
        DecideMode::Verify,
    );
    let b = d.assertion().expect("an assertion").value.clone();
    check(&behind(&e, "billing"), &b, "GET", "/api/pay").expect("billing stays EdDSA");
}
