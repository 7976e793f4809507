//! Inherited trust configured, not assembled: an edge is an issuer of kind
//! `assertion` in the engine config, the verifier holds it, and
//! `Verifier::verify_assertion` checks its assertions. An assertion is never
//! a user token (`verify` refuses it, the HTTP decision too) and a user
//! token is never an assertion; a config that loosens the assertion policy
//! is refused naming the field; edges cannot change at runtime; with the
//! Redis feed configured, the `jti` window is the fleet's (two verifiers on
//! one real `redis-server`), and a Redis that cannot answer refuses.

mod common;

use std::sync::Arc;

use aws_lc_rs::signature::Ed25519KeyPair;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jwtwarden::assertion::{Inherited, Minter, MinterConfig, Request, SigningKeyConfig};
use jwtwarden::{Config, ErrorKind, ManualClock, Verifier, VerifyOptions};
use jwtwarden_testissuer::redis::RedisServer;
use serde_json::{json, Value};

use common::{setup, with_payload, Setup};

const EDGE: &str = "edge-1";
const SERVICE: &str = "orders";

fn minter(clock: &ManualClock) -> Minter {
    let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).expect("keygen");
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(doc.as_ref())
    );
    let cfg = MinterConfig {
        name: EDGE.into(),
        current: SigningKeyConfig {
            kid: "k1".into(),
            pem: Some(pem),
            pem_file: None,
        },
        previous: None,
        lifetime_secs: 30,
        hs256: Default::default(),
    };
    Minter::new(&cfg, Arc::new(clock.clone())).expect("minter")
}

/// The edge (a verifier of user tokens and a minter) and the service
/// behind it, configured from JSON: the user issuer as usual, the edge as
/// `kind = "assertion"`.
struct World {
    edge: Setup,
    minter: Minter,
    service: Verifier,
}

fn service_config(edge: &Setup, minter: &Minter, adjust: impl FnOnce(&mut Value)) -> Value {
    let mut cfg = json!({
        "issuers": [
            {"issuer": edge.issuer.url(), "jwks_uri": edge.issuer.jwks_uri(), "audiences": ["api"]},
            {"kind": "assertion", "issuer": EDGE, "jwks": minter.jwks(), "audiences": [SERVICE],
             "fresh_within_secs": 5},
        ],
        "http": {"allow_http": true, "timeout_ms": 1500, "connect_timeout_ms": 500},
        "background_refresh": false,
    });
    adjust(&mut cfg);
    cfg
}

fn service(edge: &Setup, minter: &Minter, adjust: impl FnOnce(&mut Value)) -> Verifier {
    let config = Config::from_value(service_config(edge, minter, adjust)).expect("valid service config");
    Verifier::with_clock(config, Arc::new(edge.clock.clone())).expect("service verifier")
}

fn world() -> World {
    let edge = setup();
    let minter = minter(&edge.clock);
    let service = service(&edge, &minter, |_| {});
    World { edge, minter, service }
}

impl World {
    fn user_token(&self) -> String {
        self.edge.token(&self.edge.issuer.first_kid())
    }

    fn mint(&self, method: &str, path: &str) -> String {
        let token = self.user_token();
        let v = self.edge.verifier.verify(&token).expect("original verifies");
        self.minter
            .mint(&v, token.as_bytes(), SERVICE, &Request { method, path }, false)
            .expect("mint")
    }
}

fn inherit(v: &Verifier, a: &str, method: &str, path: &str, fresh: bool) -> Result<Inherited, ErrorKind> {
    v.verify_assertion(a, &Request { method, path }, fresh)
        .map_err(|e| e.kind())
}

#[test]
fn an_edge_configured_as_kind_assertion_hands_on_trust() {
    let w = world();
    let a = w.mint("POST", "/orders/7?x=1");
    let got = inherit(&w.service, &a, "POST", "/orders/7", false).expect("inherited");
    assert!(got.inherited());
    assert_eq!(got.edge, EDGE);
    assert_eq!(got.original["sub"], "svc-a");
    assert_eq!(got.original["iss"], json!(w.edge.issuer.url()));
    assert_eq!(got.verified_at, w.edge.clock.now_secs());
    assert!(!got.cached);
    // The edge is not one of the service's ordinary issuers.
    assert_eq!(w.service.issuers(), vec![w.edge.issuer.url()]);
}

#[test]
fn an_assertion_presented_as_a_bearer_token_is_refused() {
    let w = world();
    let a = w.mint("GET", "/orders");
    assert_eq!(w.service.verify(&a).unwrap_err().kind(), ErrorKind::UnknownIssuer);
    let pinned = VerifyOptions {
        issuer: Some(EDGE),
        fresh: false,
    };
    assert_eq!(
        w.service.verify_with(&a, &pinned).unwrap_err().kind(),
        ErrorKind::UnknownIssuer
    );
    // Through the HTTP decision, as a route of the service would see it.
    use jwtwarden::http::{DecideMode, HttpPolicy, HttpRequest};
    let policy = HttpPolicy::from_json(&json!({"realm": "orders"}).to_string()).unwrap();
    let auth = format!("Bearer {a}");
    let headers: &[(&[u8], &[u8])] = &[(b"authorization", auth.as_bytes())];
    let req = HttpRequest {
        method: "GET",
        target: Some("/orders"),
        headers,
    };
    let d = policy.decide(&w.service, &req, DecideMode::Verify);
    assert_eq!(d.status(), 401);
    // The assertion itself is untouched: it still verifies where it belongs.
    inherit(&w.service, &a, "GET", "/orders", false).expect("still an assertion");
}

#[test]
fn verify_assertion_never_accepts_an_ordinary_token() {
    let w = world();
    let token = w.user_token();
    w.service.verify(&token).expect("an ordinary token for the service");
    assert_eq!(
        inherit(&w.service, &token, "GET", "/orders", false).unwrap_err(),
        ErrorKind::UnknownIssuer
    );
    // An ordinary token claiming to come from the edge, in the assertion's
    // shape: the edge's keys and policy refuse it.
    let now = w.edge.clock.now_secs();
    let claims = json!({
        "iss": EDGE, "aud": SERVICE, "sub": "svc-a", "iat": now, "exp": now + 30, "jti": "x",
        "htm": "GET", "htu": "/orders", "verified_at": now, "orig": {"sub": "admin"},
    });
    let forged = w.edge.issuer.mint(&w.edge.issuer.first_kid(), &claims);
    let kind = inherit(&w.service, &forged, "GET", "/orders", false).unwrap_err();
    assert!(
        matches!(
            kind,
            ErrorKind::AlgorithmNotAllowed
                | ErrorKind::UnknownKid
                | ErrorKind::InvalidSignature
                | ErrorKind::InvalidType
        ),
        "{kind:?}"
    );
    // A real assertion with a claim changed (re-encoded, old signature).
    let a = w.mint("GET", "/orders");
    let mut body = common::payload(&a);
    body["orig"]["sub"] = json!("admin");
    assert_eq!(
        inherit(&w.service, &with_payload(&a, &body), "GET", "/orders", false).unwrap_err(),
        ErrorKind::InvalidSignature
    );
    // A service with no edge configured refuses every assertion.
    assert_eq!(
        inherit(&w.edge.verifier, &a, "GET", "/orders", false).unwrap_err(),
        ErrorKind::UnknownIssuer
    );
}

#[test]
fn replays_and_rebinding_are_refused() {
    let w = world();
    let a = w.mint("GET", "/orders/7");
    assert_eq!(
        inherit(&w.service, &a, "GET", "/orders/8", false).unwrap_err(),
        ErrorKind::InvalidAudience
    );
    assert_eq!(
        inherit(&w.service, &a, "DELETE", "/orders/7", false).unwrap_err(),
        ErrorKind::InvalidAudience
    );
    inherit(&w.service, &a, "GET", "/orders/7", false).expect("the first use, after refusals that burn nothing");
    assert_eq!(
        inherit(&w.service, &a, "GET", "/orders/7", false).unwrap_err(),
        ErrorKind::Revoked
    );
    let late = w.mint("GET", "/orders/7");
    w.edge.clock.advance_secs(30 + 5);
    assert_eq!(
        inherit(&w.service, &late, "GET", "/orders/7", false).unwrap_err(),
        ErrorKind::Expired
    );
}

#[test]
fn a_fresh_route_takes_inherited_trust_only_within_fresh_within_secs() {
    let w = world();
    let a = w.mint("GET", "/pay");
    w.edge.clock.advance_secs(5);
    inherit(&w.service, &a, "GET", "/pay", true).expect("verified 5 s ago: fresh enough");
    let b = w.mint("GET", "/pay");
    w.edge.clock.advance_secs(6);
    assert_eq!(
        inherit(&w.service, &b, "GET", "/pay", true).unwrap_err(),
        ErrorKind::TokenLifetimeExceeded
    );
    inherit(&w.service, &b, "GET", "/pay", false).expect("a route that does not demand fresh takes it");
    // Without fresh_within_secs, a fresh route never inherits.
    let strict = service(&w.edge, &w.minter, |c| {
        c["issuers"][1].as_object_mut().unwrap().remove("fresh_within_secs");
    });
    let c = w.mint("GET", "/pay");
    assert_eq!(
        inherit(&strict, &c, "GET", "/pay", true).unwrap_err(),
        ErrorKind::TokenLifetimeExceeded
    );
}

#[test]
fn an_edge_that_loosens_the_assertion_policy_is_refused_naming_the_field() {
    let edge = setup();
    let minter = minter(&edge.clock);
    let cases = [
        (json!({"algorithms": ["RS256", "EdDSA"]}), "issuers[1].algorithms"),
        (json!({"typ": "at+jwt"}), "issuers[1].typ"),
        (json!({"leeway_secs": 60}), "issuers[1].leeway_secs"),
        (
            json!({"max_token_lifetime_secs": 3600}),
            "issuers[1].max_token_lifetime_secs",
        ),
        (json!({"allow_any_audience": true}), "issuers[1].allow_any_audience"),
        (
            json!({"hmac_keys": [{"kid": "h", "secret_base64": STANDARD.encode([7u8; 32])}], "algorithms": ["HS256"]}),
            "issuers[1].algorithms",
        ),
    ];
    for (loosen, field) in cases {
        let cfg = service_config(&edge, &minter, |c| {
            for (k, v) in loosen.as_object().unwrap() {
                c["issuers"][1][k] = v.clone();
            }
        });
        let err = Config::from_value(cfg).expect_err(field);
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.message().starts_with(field), "{field}: {}", err.message());
    }
    let cfg = service_config(&edge, &minter, |c| c["issuers"][0]["fresh_within_secs"] = json!(5));
    let err = Config::from_value(cfg).unwrap_err();
    assert!(
        err.message().starts_with("issuers[0].fresh_within_secs"),
        "{}",
        err.message()
    );
    // Tightening is fine, and the policy's own values may be spelt out.
    let cfg = service_config(&edge, &minter, |c| {
        c["issuers"][1]["algorithms"] = json!(["EdDSA"]);
        c["issuers"][1]["typ"] = json!("application/jwtwarden-assertion+jwt");
        c["issuers"][1]["leeway_secs"] = json!(2);
        c["issuers"][1]["max_token_lifetime_secs"] = json!(60);
    });
    // `typ` spelt with `application/` is another string: refused too, so
    // the contract has one spelling.
    assert!(Config::from_value(cfg.clone()).is_err());
    let mut cfg = cfg;
    cfg["issuers"][1]["typ"] = json!("jwtwarden-assertion+jwt");
    Config::from_value(cfg).expect("tightened");
}

#[test]
fn edges_cannot_change_at_runtime_and_a_service_may_hold_only_edges() {
    let w = world();
    let edge2 = json!({"kind": "assertion", "issuer": "edge-2", "jwks": w.minter.jwks(), "audiences": [SERVICE]});
    let err = w
        .service
        .add_issuer(jwtwarden::IssuerEntry::from_json(&edge2.to_string()).unwrap())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    let same = Config::from_value(service_config(&w.edge, &w.minter, |_| {})).unwrap();
    w.service.reload(same).expect("a reload that keeps the edges");
    let without = Config::from_value(service_config(&w.edge, &w.minter, |c| {
        c["issuers"].as_array_mut().unwrap().pop();
    }))
    .unwrap();
    assert_eq!(w.service.reload(without).unwrap_err().kind(), ErrorKind::InvalidConfig);
    let a = w.mint("GET", "/x");
    inherit(&w.service, &a, "GET", "/x", false).expect("edges unchanged by the refused reload");

    let only = service(&w.edge, &w.minter, |c| {
        c["issuers"].as_array_mut().unwrap().remove(0);
    });
    let b = w.mint("GET", "/x");
    inherit(&only, &b, "GET", "/x", false).expect("a service behind the edge only");
    assert_eq!(
        only.verify(w.user_token()).unwrap_err().kind(),
        ErrorKind::UnknownIssuer
    );
}

#[test]
fn an_assertion_replayed_to_another_process_of_the_fleet_is_refused() {
    let Some(redis) = RedisServer::start() else { return };
    let edge = setup();
    let minter = minter(&edge.clock);
    let on_redis = |c: &mut Value| c["revocation"] = json!({"redis": {"url": redis.url(), "timeout_ms": 2000}});
    let (a, b) = (service(&edge, &minter, on_redis), service(&edge, &minter, on_redis));
    let w = World {
        edge,
        minter,
        service: a,
    };
    let first = w.mint("GET", "/orders/1");
    inherit(&w.service, &first, "GET", "/orders/1", false).expect("first use, on one process");
    assert_eq!(
        inherit(&b, &first, "GET", "/orders/1", false).unwrap_err(),
        ErrorKind::Revoked,
        "replayed to another process of the fleet"
    );
    let second = w.mint("GET", "/orders/1");
    inherit(&b, &second, "GET", "/orders/1", false).expect("another assertion, on the other process");
    assert_eq!(
        inherit(&w.service, &second, "GET", "/orders/1", false).unwrap_err(),
        ErrorKind::Revoked
    );
    // The window is in Redis, namespaced by edge and jti, expiring with the
    // assertion.
    let jti = common::payload(&first)["jti"].as_str().unwrap().to_string();
    let key = format!("jwtwarden:assertion-jti:{}:{EDGE}:{jti}", EDGE.len());
    let ttl: i64 = redis
        .command(&["PTTL", &key])
        .expect("PTTL")
        .trim()
        .trim_start_matches(':')
        .parse()
        .unwrap();
    assert!(ttl > 0 && ttl <= 35_000, "{ttl}");
}

#[test]
fn a_fleet_replay_window_redis_cannot_answer_fails_closed() {
    let Some(mut redis) = RedisServer::start() else { return };
    let edge = setup();
    let minter = minter(&edge.clock);
    let service =
        service(
            &edge,
            &minter,
            |c| c["revocation"] = json!({"redis": {"url": redis.url(), "timeout_ms": 300, "max_stale_secs": 600}}),
        );
    let w = World { edge, minter, service };
    let a = w.mint("GET", "/x");
    inherit(&w.service, &a, "GET", "/x", false).expect("Redis up");
    redis.stop();
    let b = w.mint("GET", "/x");
    assert_eq!(
        inherit(&w.service, &b, "GET", "/x", false).unwrap_err(),
        ErrorKind::RevocationsStale,
        "a replay window that cannot answer refuses"
    );
    redis.resume();
    // Once Redis answers again the assertion is accepted: the refusal
    // burnt nothing.
    inherit(&w.service, &b, "GET", "/x", false).expect("Redis back");
}

#[test]
fn the_fleet_window_holds_across_a_fork_as_pre_fork_workers_share_it() {
    let Some(redis) = RedisServer::start() else { return };
    let edge = setup();
    let minter = minter(&edge.clock);
    let service = service(&edge, &minter, |c| {
        c["revocation"] = json!({"redis": {"url": redis.url(), "timeout_ms": 2000}})
    });
    let w = World { edge, minter, service };
    let first = w.mint("GET", "/orders/1");
    let second = w.mint("GET", "/orders/1");
    inherit(&w.service, &first, "GET", "/orders/1", false).expect("first use, in the parent");
    // A worker forked after the verifier was built (its own connection).
    let status = common::in_forked_child(std::time::Duration::from_secs(30), || {
        match (
            inherit(&w.service, &first, "GET", "/orders/1", false),
            inherit(&w.service, &second, "GET", "/orders/1", false),
        ) {
            (Err(ErrorKind::Revoked), Ok(_)) => 0,
            (Ok(_), _) => 1,
            (_, Err(_)) => 2,
            _ => 3,
        }
    });
    assert_eq!(status, Some(0), "the child refused the parent's jti and took its own");
    assert_eq!(
        inherit(&w.service, &second, "GET", "/orders/1", false).unwrap_err(),
        ErrorKind::Revoked,
        "the child's first use is seen by the parent"
    );
}
