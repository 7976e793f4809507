//! Hostile tokens: malformed input, cross-issuer keys, tampering, algorithm
//! confusion and key-URL header injection. None is accepted, and none makes
//! a request anywhere it should not.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{payload, setup, with_header, with_payload};
use jwtwarden::{Config, ErrorKind, ManualClock, Verifier};
use jwtwarden_testissuer::{Alg as IssuerAlg, TestIssuer};
use serde_json::json;

#[test]
fn malformed_tokens_are_rejected_without_any_request() {
    let s = setup();
    let good = s.token(&s.issuer.first_kid());
    let (h, p, sig) = {
        let v: Vec<&str> = good.split('.').collect();
        (v[0].to_string(), v[1].to_string(), v[2].to_string())
    };
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let cases: Vec<(String, ErrorKind)> = vec![
        (format!("{h}.{p}"), ErrorKind::MalformedToken),
        (format!("{h}.{p}.{sig}.{sig}"), ErrorKind::MalformedToken),
        (format!("{h}.{p}."), ErrorKind::MalformedToken),
        (String::new(), ErrorKind::MalformedToken),
        (format!("{h}.{p}.{sig}=="), ErrorKind::InvalidBase64),
        (format!("{h}.%%%.{sig}"), ErrorKind::InvalidBase64),
        (format!("{}.{p}.{sig}", b64("not json")), ErrorKind::InvalidHeader),
        (format!("{}.{p}.{sig}", b64("[\"RS256\"]")), ErrorKind::InvalidHeader),
        (
            format!("{}.{p}.{sig}", b64(r#"{"alg":"none"}"#)),
            ErrorKind::AlgorithmNotAllowed,
        ),
        (format!("{}.{p}.", b64(r#"{"alg":"none"}"#)), ErrorKind::MalformedToken),
        (
            format!("{}.{p}.{sig}", b64(r#"{"alg":"RS1"}"#)),
            ErrorKind::AlgorithmNotAllowed,
        ),
        (
            format!("{}.{p}.{sig}", b64(r#"{"alg":"HS256"}"#)),
            ErrorKind::AlgorithmNotAllowed,
        ),
        (
            format!("{}.{p}.{sig}", b64(r#"{"alg":"RS256","crit":["exp"]}"#)),
            ErrorKind::UnsupportedCritical,
        ),
        (format!("{h}.{}.{sig}", b64("[]")), ErrorKind::InvalidPayload),
        (format!("{h}.{}.{sig}", b64(r#"{"sub":"x"}"#)), ErrorKind::UnknownIssuer),
        (
            format!("{h}.{}.{sig}", b64(r#"{"iss":"https://elsewhere"}"#)),
            ErrorKind::UnknownIssuer,
        ),
        (format!("{h}.{p}.{}", "A".repeat(20_000)), ErrorKind::TokenTooLarge),
    ];
    let requests = s.issuer.total_requests();
    for (token, kind) in &cases {
        let err = s.verifier.verify(token).expect_err(token);
        assert_eq!(err.kind(), *kind, "{token:.60}: {err}");
        assert_eq!(err.category() == jwtwarden::Category::Malformed, kind.code() < 200);
        assert!(
            !err.message().contains(token.as_str()) || token.is_empty(),
            "message must not echo the token"
        );
    }
    assert_eq!(
        s.issuer.total_requests(),
        requests,
        "a malformed token never causes a request"
    );
}

#[test]
fn cross_issuer_key_never_verifies_even_with_a_matching_kid() {
    let a = TestIssuer::start_empty();
    let a_kid = a.add_fresh_key(IssuerAlg::RS256);
    let b = TestIssuer::start_empty();
    let b_kid = b.add_fresh_key(IssuerAlg::RS256);
    // B publishes its own key under A's kid.
    let mut renamed = b.public_jwk(&b_kid);
    renamed["kid"] = json!(a_kid);
    b.set_jwks_override(Some(json!({"keys": [b.public_jwk(&b_kid), renamed]}).to_string()));

    let clock = ManualClock::starting_now();
    let config = Config::from_value(json!({
        "issuers": [
            {"issuer": a.url(), "jwks_uri": a.jwks_uri(), "audiences": ["api"]},
            {"issuer": b.url(), "jwks_uri": b.jwks_uri(), "audiences": ["api"]},
        ],
        "http": {"allow_http": true},
        "background_refresh": false,
    }))
    .unwrap();
    let v = Verifier::with_clock(config, std::sync::Arc::new(clock.clone())).unwrap();
    let now = clock.now_secs();

    // Signed by A's key, claiming to be from B, with A's kid (which B also publishes).
    let mut claims = a.default_claims("svc", now);
    claims["iss"] = json!(b.url());
    let forged = a.mint(&a_kid, &claims);
    assert_eq!(v.verify(&forged).unwrap_err().kind(), ErrorKind::InvalidSignature);
    // Pinning the issuer explicitly to A does not help either: iss says B.
    let pinned = jwtwarden::VerifyOptions {
        issuer: Some(&a.url()),
        fresh: false,
    };
    assert_eq!(
        v.verify_with(&forged, &pinned).unwrap_err().kind(),
        ErrorKind::InvalidIssuer
    );
    // The genuine tokens of each verify.
    assert!(v.verify(a.mint(&a_kid, &a.default_claims("svc", now))).is_ok());
    assert!(v.verify(b.mint(&b_kid, &b.default_claims("svc", now))).is_ok());
}

#[test]
fn tampered_payload_is_rejected_while_the_original_is_cached() {
    let s = setup();
    let token = s.token(&s.issuer.first_kid());
    s.verifier.verify(&token).unwrap();
    assert!(s.verifier.verify(&token).unwrap().cached());
    let mut claims = payload(&token);
    claims["sub"] = json!("admin");
    let tampered = with_payload(&token, &claims);
    assert_eq!(s.kind(&tampered), ErrorKind::InvalidSignature);
    // One flipped signature byte, too.
    let mut bytes = token.clone().into_bytes();
    let last = bytes.len() - 10;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(s.kind(&String::from_utf8(bytes).unwrap()), ErrorKind::InvalidSignature);
    assert!(
        s.verifier.verify(&token).unwrap().cached(),
        "the original is unaffected"
    );
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_rejected() {
    let s = setup();
    let kid = s.issuer.first_kid();
    let jwk = s.issuer.public_jwk(&kid);
    let claims = s.issuer.default_claims("svc", s.clock.now_secs());
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    for secret in [jwk.to_string().into_bytes(), n] {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(&secret)).unwrap();
        assert_eq!(s.kind(&token), ErrorKind::AlgorithmNotAllowed);
    }

    // Even where HS256 is allowed (with a local secret), a remote RSA key is
    // never used as an HMAC secret, and no fetch is made for it.
    let clock = ManualClock::starting_now();
    let v = common::verifier_for(&s.issuer, &clock, |c| {
        c["issuers"][0]["algorithms"] = json!(["RS256", "HS256"]);
        c["issuers"][0]["hmac_keys"] = json!([{"kid": "local", "secret_base64": URL_SAFE_NO_PAD.encode([7u8; 32])}]);
    });
    let before = s.issuer.jwks_requests();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.clone());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(jwk.to_string().as_bytes()),
    )
    .unwrap();
    assert_eq!(v.verify(&token).unwrap_err().kind(), ErrorKind::UnknownKid);
    assert_eq!(s.issuer.jwks_requests(), before);
    // The local secret itself works.
    header.kid = Some("local".into());
    let token = jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(&[7u8; 32])).unwrap();
    assert!(v.verify(&token).is_ok());
}

#[test]
fn jku_jwk_x5u_headers_are_never_used_and_never_fetched() {
    let s = setup();
    let evil = TestIssuer::start_empty();
    let evil_kid = evil.add_fresh_key(IssuerAlg::RS256);
    let claims = s.issuer.default_claims("svc", s.clock.now_secs());
    let victim_kid = s.issuer.first_kid();
    for kid in [evil_kid.clone(), victim_kid.clone()] {
        let header = json!({
            "alg": "RS256",
            "kid": kid,
            "jku": evil.jwks_uri(),
            "x5u": format!("{}/cert.pem", evil.url()),
            "jwk": evil.public_jwk(&evil_kid),
            "x5c": ["MIIB"],
        });
        let token = evil.mint_with_header(&evil_kid, &header, &claims);
        let kind = s.kind(&token);
        assert!(
            matches!(kind, ErrorKind::UnknownKid | ErrorKind::InvalidSignature),
            "{kind:?}"
        );
    }
    assert_eq!(evil.total_requests(), 0, "no request to a URL found in a token");
    // The victim's own endpoint was asked once, for the unknown kid.
    assert_eq!(s.issuer.jwks_requests(), 2);
    // A genuine token carrying the same headers still verifies: they are ignored.
    let genuine = with_header(
        &s.token(&victim_kid),
        &json!({"alg": "RS256", "kid": victim_kid, "jku": evil.jwks_uri()}),
    );
    assert_eq!(
        s.kind(&genuine),
        ErrorKind::InvalidSignature,
        "the header is signed: changing it breaks the signature"
    );
}
