//! Keys in a fetched JWKS that can verify nothing, or that would let anyone
//! forge tokens, are skipped at fetch time, end to end against the test
//! issuer.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{setup, setup_for};
use jwtwarden::ErrorKind;
use jwtwarden_testissuer::TestIssuer;
use serde_json::{json, Value};

/// The identity point of edwards25519 (order 1), canonically encoded.
const IDENTITY: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 1;
    b
};

fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// A token for `kid` whose signature is R || S with R the identity and
/// S = 0. With the identity as public key A, Ed25519's check
/// [S]B = R + [k]A holds for every message: no private key involved.
fn forged_eddsa_token(kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
    let mut signature = IDENTITY.to_vec();
    signature.extend([0u8; 32]);
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[test]
fn token_forged_for_a_small_order_ed25519_key_is_rejected() {
    let issuer = TestIssuer::start();
    let good = issuer.first_kid();
    let small = json!({"kty": "OKP", "crv": "Ed25519", "kid": "small-order", "x": URL_SAFE_NO_PAD.encode(IDENTITY)});
    issuer.set_jwks_override(Some(jwks(&[issuer.public_jwk(&good), small])));
    let s = setup_for(issuer);

    let claims = s.issuer.default_claims("mallory", s.clock.now_secs());
    let forged = forged_eddsa_token("small-order", &claims);

    // The crypto backend alone accepts the forgery: only the key filter
    // stands between it and a verified token.
    let key = jsonwebtoken::DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(IDENTITY)).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(&forged, &key, &validation).expect("aws-lc verifies the forged signature");

    assert_eq!(s.kind(&forged), ErrorKind::UnknownKid);
    let (keys, skipped) = s.verifier.issuer_keys(&s.issuer.url()).unwrap();
    assert_eq!(keys.len(), 1, "only the real key is usable");
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].kid.as_deref(), Some("small-order"));
    assert!(skipped[0].reason.contains("small order"), "{skipped:?}");
    // The issuer's real key still works alongside.
    assert!(s.verifier.verify(s.token(&good)).is_ok());
}

#[test]
fn jwks_of_only_unusable_keys_does_not_replace_the_last_good_set() {
    let s = setup();
    let kid = s.issuer.first_kid();
    assert!(s.verifier.verify(s.token(&kid)).is_ok());

    let real = s.issuer.public_jwk(&kid);
    // The same kid and modulus with an even exponent: aws-lc refuses it.
    let mut even_e = real.clone();
    even_e["e"] = json!(URL_SAFE_NO_PAD.encode([1u8, 0, 0])); // 65536
    let mut leading_zero_n = real.clone();
    leading_zero_n["kid"] = json!("leading-zero-n");
    let n = URL_SAFE_NO_PAD.decode(real["n"].as_str().unwrap()).unwrap();
    leading_zero_n["n"] = json!(URL_SAFE_NO_PAD.encode([&[0u8][..], &n].concat()));
    // x = y = 1 is not on P-256.
    let mut one = [0u8; 32];
    one[31] = 1;
    let off_curve = json!({"kty": "EC", "crv": "P-256", "kid": "off-curve",
        "x": URL_SAFE_NO_PAD.encode(one), "y": URL_SAFE_NO_PAD.encode(one)});
    let small = json!({"kty": "OKP", "crv": "Ed25519", "kid": "small-order", "x": URL_SAFE_NO_PAD.encode([0u8; 32])});
    s.issuer
        .set_jwks_override(Some(jwks(&[even_e, leading_zero_n, off_curve, small])));

    let err = s.verifier.refresh_issuer(&s.issuer.url()).expect_err("nothing usable");
    assert!(err.to_string().contains("no usable key"), "{err}");
    // A token minted after the refresh (so not a cached result) verifies
    // with the last good key.
    let fresh = s.token_with(&kid, json!({"sub": "svc-b"}));
    assert!(s.verifier.verify(&fresh).is_ok());
    let (keys, skipped) = s.verifier.issuer_keys(&s.issuer.url()).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].kid.as_deref(), Some(kid.as_str()));
    assert!(
        skipped.is_empty(),
        "the refused fetch does not replace the diagnostics either"
    );
}
