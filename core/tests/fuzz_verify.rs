//! Property tests over the whole verify path: arbitrary bytes and
//! near-valid structures never panic, never fetch, and never verify.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwtwarden::{Config, ManualClock, Verifier};
use jwtwarden_testissuer::TestIssuer;
use proptest::prelude::*;
use serde_json::json;
use std::sync::{Arc, OnceLock};

struct Fixture {
    issuer: TestIssuer,
    verifier: Verifier,
    good: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let issuer = TestIssuer::start();
        let clock = ManualClock::starting_now();
        let config = Config::from_value(json!({
            "issuers": [{"issuer": issuer.url(), "jwks_uri": issuer.jwks_uri(), "audiences": ["api"]}],
            "http": {"allow_http": true},
            "background_refresh": false,
        }))
        .unwrap();
        let verifier = Verifier::with_clock(config, Arc::new(clock.clone())).unwrap();
        let good = issuer.mint(&issuer.first_kid(), &issuer.default_claims("svc", clock.now_secs()));
        Fixture { issuer, verifier, good }
    })
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_or_verify(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let f = fixture();
        prop_assert!(f.verifier.verify(&bytes).is_err());
    }

    #[test]
    fn arbitrary_segments_never_panic_or_verify(
        h in proptest::collection::vec(any::<u8>(), 0..200),
        p in proptest::collection::vec(any::<u8>(), 0..400),
        s in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let f = fixture();
        let token = format!("{}.{}.{}", b64(&h), b64(&p), b64(&s));
        prop_assert!(f.verifier.verify(&token).is_err());
    }

    #[test]
    fn json_shaped_headers_and_claims_never_panic_or_verify(
        alg in prop_oneof![
            Just("RS256".to_string()),
            Just("ES256".to_string()),
            Just("EdDSA".to_string()),
            Just("HS256".to_string()),
            Just("none".to_string()),
            "[A-Za-z0-9]{0,6}",
        ],
        kid in proptest::option::of("[ -~]{0,40}"),
        crit in any::<bool>(),
        exp in any::<i64>(),
        aud in prop_oneof![Just(json!("api")), Just(json!(["api", 3])), Just(json!(null)), Just(json!({"a": 1}))],
        sig in proptest::collection::vec(any::<u8>(), 1..300),
    ) {
        let f = fixture();
        let mut header = json!({"alg": alg});
        if let Some(kid) = kid { header["kid"] = json!(kid); }
        if crit { header["crit"] = json!(["b64"]); }
        let claims = json!({"iss": f.issuer.url(), "aud": aud, "exp": exp, "sub": "x"});
        let token = format!("{}.{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()), b64(&sig));
        prop_assert!(f.verifier.verify(&token).is_err());
    }

    #[test]
    fn any_single_byte_change_to_a_valid_token_never_verifies(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let f = fixture();
        let mut t = f.good.clone().into_bytes();
        let i = pos.index(t.len());
        prop_assume!(t[i] != byte);
        t[i] = byte;
        // Flipping a base64 character's unused low bits is rejected too:
        // the decoder is strict about canonical encodings.
        prop_assert!(f.verifier.verify(&t).is_err());
    }
}

#[test]
fn fuzzing_made_at_most_one_fetch_per_cooldown() {
    let f = fixture();
    assert!(f.verifier.verify(&f.good).is_ok());
    // Startup plus at most one unknown-kid refresh (the clock never moves).
    assert!(f.issuer.jwks_requests() <= 2, "{}", f.issuer.jwks_requests());
}
