//! Key revocation against everything else that writes key state: a refresh
//! installing a fetched set, local HMAC keys, and manual refreshes that must
//! not be satisfied by a fetch that started before them.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{setup, setup_with, Fault, IssuerAlg};
use jwtwarden::{Config, ErrorKind, ManualClock, Verifier};
use serde_json::json;

/// `revoke_kid` racing a refresh that is between fetching a set (which still
/// holds the key) and installing it: whatever the interleaving, once
/// `revoke_kid` has returned the key verifies nothing — neither a token
/// naming it nor a token without `kid` for which it would be the only key
/// fitting the algorithm. (Before key state had one writer, a revocation
/// landing between a refresh's filtering and its install was undone; that
/// window was a few microseconds wide, so this stress test rarely caught it:
/// `keystore`'s unit tests pin the property itself.)
#[test]
fn revoke_kid_racing_refreshes_never_reinstalls_the_key() {
    let s = setup();
    let iss = s.issuer.url();
    const ROUNDS: usize = 1000;
    for round in 0..ROUNDS {
        // A fresh EdDSA key, the only one of its family, installed.
        let kid = s.issuer.add_key(IssuerAlg::EdDSA);
        s.verifier.refresh_issuer(&iss).unwrap();
        let claims = s.issuer.default_claims("svc-a", s.clock.now_secs());
        let with_kid = s.issuer.mint(&kid, &claims);
        let without_kid = s
            .issuer
            .mint_with_header(&kid, &json!({"alg": "EdDSA", "typ": "JWT"}), &claims);
        s.verifier.verify(&with_kid).unwrap();
        s.verifier.verify(&without_kid).unwrap();

        // Refreshes in a loop (the IdP still publishes the key) while this
        // thread revokes it at a varying point.
        let revoked = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for _ in 0..3 {
                    s.verifier.refresh_issuer(&iss).unwrap();
                }
                while !revoked.load(Ordering::SeqCst) {
                    s.verifier.refresh_issuer(&iss).unwrap();
                }
                s.verifier.refresh_issuer(&iss).unwrap();
            });
            for _ in 0..(round % 50) * 20 {
                std::hint::spin_loop();
            }
            s.verifier.revoke_kid(&iss, &kid).unwrap();
            revoked.store(true, Ordering::SeqCst);
            for token in [&with_kid, &without_kid] {
                let err = s.verifier.verify(token).expect_err("revoked key verified a token");
                assert!(
                    matches!(err.kind(), ErrorKind::KeyRevoked | ErrorKind::MissingKid),
                    "round {round}: {err}"
                );
            }
        });
        // And after every refresh that raced it.
        for token in [&with_kid, &without_kid] {
            let err = s.verifier.verify(token).expect_err("revoked key came back");
            assert!(matches!(err.kind(), ErrorKind::KeyRevoked | ErrorKind::MissingKid));
        }
        s.issuer.retire_key(&kid);
    }
}

fn hmac_token(secret: &[u8], kid: Option<&str>, iss: &str, now: u64) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    let claims = json!({"iss": iss, "aud": "api", "sub": "svc", "iat": now, "exp": now + 600});
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap()
}

/// `revoke_kid` covers locally configured HMAC keys too: fresh tokens,
/// cached results and tokens without `kid` all stop verifying.
#[test]
fn revoke_kid_stops_a_local_hmac_key() {
    let secret = [42u8; 32];
    let iss = "https://hmac.example";
    let clock = ManualClock::starting_now();
    let config = Config::from_value(json!({
        "issuers": [{
            "issuer": iss,
            "audiences": ["api"],
            "algorithms": ["HS256"],
            "hmac_keys": [{"kid": "h1", "secret_base64": URL_SAFE_NO_PAD.encode(secret)}],
        }],
        "background_refresh": false,
    }))
    .unwrap();
    let verifier = Verifier::with_clock(config, std::sync::Arc::new(clock.clone())).unwrap();
    let cached = hmac_token(&secret, Some("h1"), iss, clock.now_secs());
    let no_kid = hmac_token(&secret, None, iss, clock.now_secs());
    verifier.verify(&cached).unwrap();
    assert!(verifier.verify(&cached).unwrap().cached());
    verifier.verify(&no_kid).unwrap();

    verifier.revoke_kid(iss, "h1").unwrap();

    assert_eq!(verifier.verify(&cached).unwrap_err().kind(), ErrorKind::KeyRevoked);
    clock.advance_secs(1);
    let fresh = hmac_token(&secret, Some("h1"), iss, clock.now_secs());
    assert_eq!(verifier.verify(&fresh).unwrap_err().kind(), ErrorKind::KeyRevoked);
    assert!(
        verifier.verify(&no_kid).is_err(),
        "a token without kid found the revoked secret"
    );
}

/// `refresh_issuer` while another fetch is in flight (here an unknown-kid
/// fetch the endpoint answers slowly) does not return on that older fetch's
/// outcome: it returns after a fetch that started after the call, so a key
/// the IdP has just removed is no longer trusted when it returns.
#[test]
fn manual_refresh_fetches_even_while_an_older_fetch_is_in_flight() {
    let s = setup_with(|c| c["http"]["timeout_ms"] = json!(5000));
    let iss = s.issuer.url();
    s.issuer.reset_counts();
    s.issuer.set_fault(Fault::Delay(Duration::from_millis(300)));
    let unknown = common::with_header(
        &s.token(&s.issuer.first_kid()),
        &json!({"alg": "RS256", "kid": "no-such-kid"}),
    );
    std::thread::scope(|scope| {
        scope.spawn(|| s.verifier.verify(&unknown));
        // Wait until the unknown-kid fetch has reached the endpoint.
        while s.issuer.jwks_requests() == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        s.verifier.refresh_issuer(&iss).unwrap();
        assert_eq!(
            s.issuer.jwks_requests(),
            2,
            "refresh_issuer returned on the fetch that was already in flight"
        );
    });
}
