//! Claim rules end to end, through the test issuer and the manual clock:
//! expiry to the millisecond (fresh and from the cache), NumericDate range,
//! maximum token lifetime, and `typ` with or without `application/`.

mod common;

use common::setup_with;
use jwtwarden::{ErrorKind, VerifyOptions, MAX_NUMERIC_DATE_SECS};
use serde_json::json;

const FRESH: VerifyOptions<'static> = VerifyOptions {
    issuer: None,
    fresh: true,
};

#[test]
fn token_is_rejected_at_exp_not_a_second_later_fresh_and_from_the_cache() {
    let s = setup_with(|c| c["issuers"][0]["leeway_secs"] = json!(0));
    let kid = s.issuer.first_kid();
    let exp = s.clock.now_secs() + 60;
    let cached = s.token_with(&kid, json!({"exp": exp}));
    let unseen = s.token_with(&kid, json!({"exp": exp}));
    assert!(!s.verifier.verify(&cached).unwrap().cached());

    // The last millisecond before exp: accepted, from the cache and fresh.
    s.clock.set_ms(exp * 1000 - 1);
    assert!(s.verifier.verify(&cached).unwrap().cached());
    assert!(!s.verifier.verify_with(&cached, &FRESH).unwrap().cached());

    // At exp (leeway 0): rejected, whether the token was cached or never seen.
    s.clock.set_ms(exp * 1000);
    assert_eq!(s.kind(&cached), ErrorKind::Expired, "cached result served at exp");
    assert_eq!(
        s.kind(&unseen),
        ErrorKind::Expired,
        "fresh verification accepted at exp"
    );
    assert_eq!(
        s.verifier.verify_with(&cached, &FRESH).unwrap_err().kind(),
        ErrorKind::Expired
    );
    s.clock.set_ms(exp * 1000 + 999);
    assert_eq!(s.kind(&cached), ErrorKind::Expired);
    assert_eq!(s.verifier.metrics().verifications.ok_cached, 1);
}

#[test]
fn leeway_ends_exactly_at_exp_plus_leeway_for_cached_results() {
    let s = setup_with(|c| c["issuers"][0]["leeway_secs"] = json!(5));
    let kid = s.issuer.first_kid();
    let exp = s.clock.now_secs() + 60;
    let token = s.token_with(&kid, json!({"exp": exp}));
    s.verifier.verify(&token).unwrap();
    s.clock.set_ms((exp + 5) * 1000 - 1);
    assert!(s.verifier.verify(&token).unwrap().cached());
    s.clock.set_ms((exp + 5) * 1000);
    assert_eq!(s.kind(&token), ErrorKind::Expired);
}

#[test]
fn exp_beyond_the_numeric_date_range_is_invalid_payload_not_a_token_that_never_expires() {
    let s = common::setup();
    let kid = s.issuer.first_kid();
    for (claim, value) in [
        ("exp", json!(1e30)),
        ("exp", json!(MAX_NUMERIC_DATE_SECS + 1)),
        ("exp", json!(u64::MAX)),
        ("exp", json!(-1)),
        ("nbf", json!(-1.5)),
        ("iat", json!(1e300)),
    ] {
        let token = s.token_with(&kid, json!({ claim: value }));
        assert_eq!(s.kind(&token), ErrorKind::InvalidPayload, "{claim}: {value}");
    }
    // A fractional exp is a valid NumericDate, counted to the millisecond.
    let exp = s.clock.now_secs() + 60;
    let token = s.token_with(&kid, json!({"exp": exp as f64 + 0.25}));
    assert!(s.verifier.verify(&token).is_ok());
    s.clock.set_ms((exp + 30) * 1000 + 249); // default leeway 30 s
    assert!(s.verifier.verify(&token).unwrap().cached());
    s.clock.set_ms((exp + 30) * 1000 + 250);
    assert_eq!(s.kind(&token), ErrorKind::Expired);
}

#[test]
fn token_living_longer_than_max_token_lifetime_is_rejected() {
    let s = setup_with(|c| c["issuers"][0]["max_token_lifetime_secs"] = json!(3600));
    let kid = s.issuer.first_kid();
    let now = s.clock.now_secs();
    // The test issuer's default token lives exactly 3600 s.
    assert!(s.verifier.verify(s.token(&kid)).is_ok());
    let long = s.token_with(&kid, json!({"iat": now, "exp": now + 3601}));
    assert_eq!(s.kind(&long), ErrorKind::TokenLifetimeExceeded);
    assert_eq!(
        s.verifier.verify(&long).unwrap_err().category(),
        jwtwarden::Category::Policy
    );
    // Without iat, the lifetime left is measured from now (plus leeway).
    let mut claims = s.issuer.default_claims("svc-a", now);
    claims.as_object_mut().unwrap().remove("iat");
    claims["exp"] = json!(now + 3600 + 30);
    assert!(s.verifier.verify(s.issuer.mint(&kid, &claims)).is_ok());
    claims["exp"] = json!(now + 3600 + 31);
    assert_eq!(
        s.verifier.verify(s.issuer.mint(&kid, &claims)).unwrap_err().kind(),
        ErrorKind::TokenLifetimeExceeded
    );
    let m = s.verifier.metrics();
    assert_eq!(m.verifications.rejected["token_lifetime_exceeded"], 3);
}

#[test]
fn typ_matches_with_or_without_the_application_prefix() {
    let s = setup_with(|c| c["issuers"][0]["typ"] = json!("at+jwt"));
    let kid = s.issuer.first_kid();
    let claims = s.issuer.default_claims("svc-a", s.clock.now_secs());
    let with_typ = |typ: &str| {
        let header = json!({"alg": "RS256", "kid": kid, "typ": typ});
        s.issuer.mint_with_header(&kid, &header, &claims)
    };
    for ok in ["at+jwt", "AT+JWT", "application/at+jwt", "application/AT+JWT"] {
        assert!(s.verifier.verify(with_typ(ok)).is_ok(), "{ok}");
    }
    for bad in ["JWT", "application/jwt", "text/at+jwt"] {
        assert_eq!(s.kind(&with_typ(bad)), ErrorKind::InvalidType, "{bad}");
    }
}
