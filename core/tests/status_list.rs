//! IETF Token Status List (draft-ietf-oauth-status-list) end to end: tokens
//! referencing a list on the test issuer, the list's own verification, the
//! allowlist, caching and refresh, outages, and cache hits that re-read the
//! status.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Fault, Setup};
use jwtwarden::{ErrorKind, Health, VerifyOptions};
use jwtwarden_testissuer::{zlib_b64, TestIssuer};
use serde_json::{json, Value};

const LIST: &str = "/status/1";

/// A setup whose issuer publishes `LIST` (`bits`, 64 entries) and allows
/// `/status` lists; `adjust` edits the issuer's `status_list` config.
fn status_setup(bits: u8, adjust: impl FnOnce(&mut Value)) -> Setup {
    let issuer = TestIssuer::start();
    issuer.publish_status_list(LIST, bits, 64);
    let clock = jwtwarden::ManualClock::starting_now();
    let verifier = common::verifier_for(&issuer, &clock, |c| {
        c["issuers"][0]["status_list"] = json!({"allowed_uris": [format!("{}/status", issuer.url())]});
        adjust(&mut c["issuers"][0]["status_list"]);
    });
    Setup {
        issuer,
        clock,
        verifier,
    }
}

/// A token referencing entry `idx` of `path`.
fn referencing(s: &Setup, path: &str, idx: usize) -> String {
    s.token_with(
        &s.issuer.first_kid(),
        json!({"status": s.issuer.status_claim(path, idx)}),
    )
}

const FRESH: VerifyOptions<'static> = VerifyOptions {
    issuer: None,
    fresh: true,
};

/// Let the list's lifetime (default 300 s, refreshed at 75–90 %) run out
/// and run the refresh that is then due.
fn refresh_lists(s: &Setup) {
    s.clock.advance_secs(300);
    s.verifier.run_due_refreshes();
}

#[test]
fn statuses_at_every_width_are_read_as_the_issuer_set_them() {
    for bits in [1u8, 2, 4, 8] {
        let s = status_setup(bits, |c| c["valid_statuses"] = json!([5]));
        s.issuer.set_status(LIST, 1, 1);
        if bits >= 2 {
            s.issuer.set_status(LIST, 2, 2);
            s.issuer.set_status(LIST, 3, 3);
        }
        if bits >= 4 {
            s.issuer.set_status(LIST, 4, 5);
            s.issuer.set_status(LIST, 63, 15);
        }
        if bits == 8 {
            s.issuer.set_status(LIST, 5, 255);
        }
        let ok = |idx| s.verifier.verify(referencing(&s, LIST, idx));
        assert!(ok(0).is_ok(), "bits {bits}: VALID");
        assert!(ok(62).is_ok(), "bits {bits}: VALID at the end");
        assert_eq!(ok(1).unwrap_err().kind(), ErrorKind::Revoked, "bits {bits}: INVALID");
        if bits >= 2 {
            assert_eq!(ok(2).unwrap_err().kind(), ErrorKind::Suspended, "bits {bits}");
            assert_eq!(ok(3).unwrap_err().kind(), ErrorKind::StatusNotValid, "bits {bits}");
        }
        if bits >= 4 {
            assert!(ok(4).is_ok(), "bits {bits}: 5 is configured valid");
            assert_eq!(ok(63).unwrap_err().kind(), ErrorKind::StatusNotValid);
        }
        if bits == 8 {
            assert_eq!(ok(5).unwrap_err().kind(), ErrorKind::StatusNotValid);
        }
        assert_eq!(s.issuer.requests_to(LIST), 1, "bits {bits}: one fetch serves them all");
        let e = ok(0)
            .map(|_| ())
            .and(s.verifier.verify(referencing(&s, LIST, 1)).map(|_| ()));
        assert_eq!(e.unwrap_err().category(), jwtwarden::Category::Policy);
    }
}

#[test]
fn an_index_beyond_the_list_is_rejected() {
    let s = status_setup(1, |_| {});
    assert!(s.verifier.verify(referencing(&s, LIST, 63)).is_ok());
    let e = s.verifier.verify(referencing(&s, LIST, 64)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StatusIndexOutOfRange, "{e}");
    let huge = s.token_with(
        &s.issuer.first_kid(),
        json!({"status": {"status_list": {"idx": u64::MAX, "uri": s.issuer.status_list_uri(LIST)}}}),
    );
    assert_eq!(s.kind(&huge), ErrorKind::StatusIndexOutOfRange);
}

#[test]
fn a_uri_outside_the_allowlist_is_never_fetched() {
    let s = status_setup(1, |_| {});
    let elsewhere = TestIssuer::start();
    elsewhere.publish_status_list(LIST, 1, 64);
    s.issuer.publish_status_list("/other/1", 1, 64);
    s.issuer.publish_status_list("/statusX", 1, 64);
    let kid = s.issuer.first_kid();
    for uri in [
        elsewhere.status_list_uri(LIST),
        s.issuer.status_list_uri("/other/1"),
        s.issuer.status_list_uri("/statusX"),
        format!("{}/status/../other/1", s.issuer.url()),
        format!("{}/status/%2e%2e/other/1", s.issuer.url()),
        format!("http://user@127.0.0.1:{}/status/1", s.issuer.port()),
        "file:///etc/passwd".to_string(),
    ] {
        let t = s.token_with(&kid, json!({"status": {"status_list": {"idx": 0, "uri": uri}}}));
        let e = s.verifier.verify(&t).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::StatusUriNotAllowed, "{uri}: {e}");
    }
    assert_eq!(elsewhere.total_requests(), 0, "nothing fetched from another host");
    assert_eq!(s.issuer.requests_to("/other/1"), 0);
    assert_eq!(s.issuer.requests_to("/statusX"), 0);
    assert_eq!(s.issuer.requests_to(LIST), 0);
}

#[test]
fn no_list_is_fetched_for_a_token_that_failed_its_own_checks() {
    let s = status_setup(1, |_| {});
    let kid = s.issuer.first_kid();
    let good = referencing(&s, LIST, 0);
    let forged = common::with_payload(
        &good,
        &json!({"iss": s.issuer.url(), "aud": "api", "exp": s.clock.now_secs() + 60,
                "status": s.issuer.status_claim(LIST, 1)}),
    );
    assert_eq!(s.kind(&forged), ErrorKind::InvalidSignature);
    let expired = s.token_with(
        &kid,
        json!({"exp": s.clock.now_secs() - 3600, "status": s.issuer.status_claim(LIST, 0)}),
    );
    assert_eq!(s.kind(&expired), ErrorKind::Expired);
    let wrong_aud = s.token_with(&kid, json!({"aud": "other", "status": s.issuer.status_claim(LIST, 0)}));
    assert_eq!(s.kind(&wrong_aud), ErrorKind::InvalidAudience);
    assert_eq!(
        s.issuer.requests_to(LIST),
        0,
        "the list is fetched only for verified tokens"
    );
    assert!(s.verifier.verify(&good).is_ok());
    assert_eq!(s.issuer.requests_to(LIST), 1);
}

#[test]
fn a_list_signed_by_another_issuers_key_is_refused() {
    let s = status_setup(1, |_| {});
    let other = TestIssuer::start();
    let uri = s.issuer.status_list_uri(LIST);
    let okid = other.first_kid();
    let forged = other.mint_with_header(
        &okid,
        &json!({"alg": "RS256", "typ": "statuslist+jwt", "kid": okid}),
        &json!({"iss": s.issuer.url(), "sub": uri, "iat": s.clock.now_secs(),
                "status_list": {"bits": 1, "lst": jwtwarden_testissuer::encode_lst(1, &[0; 64])}}),
    );
    s.issuer
        .configure_status_list(LIST, |o| o.body_override = Some(forged.clone()));
    let e = s.verifier.verify(referencing(&s, LIST, 0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StatusListUnavailable, "{e}");
    // The same list under the issuer's own kid, but signed by the other key.
    let kid = s.issuer.first_kid();
    let lying = other.mint_with_header(
        &okid,
        &json!({"alg": "RS256", "typ": "statuslist+jwt", "kid": kid}),
        &common::payload(&forged),
    );
    s.issuer.configure_status_list(LIST, |o| o.body_override = Some(lying));
    s.clock.advance_secs(2); // past the first failure's backoff
    let e = s.verifier.verify(referencing(&s, LIST, 0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StatusListUnavailable, "{e}");
    assert!(
        e.message().contains("signature") || e.message().contains("Signature"),
        "{e}"
    );
}

#[test]
fn a_list_whose_claims_do_not_fit_is_refused() {
    type Edit = fn(&mut jwtwarden_testissuer::StatusListOptions, &str);
    let cases: [(&str, Edit); 5] = [
        ("sub", |o, _| o.sub = Some("http://127.0.0.1:1/status/9".into())),
        ("iss", |o, _| o.iss = Some("https://someone-else".into())),
        ("typ", |o, _| o.typ = "JWT".into()),
        ("exp", |o, _| o.exp = Some(1_000_000)),
        ("lst", |o, _| o.lst_override = Some("bm90IHpsaWI".into())),
    ];
    for (what, edit) in cases {
        let s = status_setup(1, |_| {});
        let uri = s.issuer.status_list_uri(LIST);
        s.issuer.configure_status_list(LIST, |o| edit(o, &uri));
        let e = s.verifier.verify(referencing(&s, LIST, 0)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::StatusListUnavailable, "{what}: {e}");
        let m = s.verifier.metrics();
        assert_eq!(m.status_lists[0].fetch_failures, 1, "{what}");
        assert!(m.status_lists[0].last_error.is_some());
    }
}

#[test]
fn a_zlib_bomb_is_refused() {
    let s = status_setup(1, |c| c["max_inflated_bytes"] = json!(1 << 20));
    let bomb = zlib_b64(&vec![0u8; 8 << 20]);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    s.issuer.configure_status_list(LIST, |o| o.lst_override = Some(bomb));
    let e = s.verifier.verify(referencing(&s, LIST, 0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StatusListUnavailable);
    assert!(e.message().contains("inflates to more than"), "{e}");
}

#[test]
fn an_oversized_list_token_is_refused() {
    let s = status_setup(8, |c| c["max_token_bytes"] = json!(4096));
    let random: Vec<u8> = (0..8192).map(|_| fastrand::u8(..)).collect();
    s.issuer
        .configure_status_list(LIST, |o| o.lst_override = Some(zlib_b64(&random)));
    let e = s.verifier.verify(referencing(&s, LIST, 0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StatusListUnavailable, "{e}");
}

#[test]
fn a_cached_token_revoked_at_the_issuer_is_rejected_after_the_next_refresh() {
    let s = status_setup(2, |_| {});
    let t = referencing(&s, LIST, 7);
    assert!(!s.verifier.verify(&t).unwrap().cached());
    assert!(s.verifier.verify(&t).unwrap().cached());
    s.issuer.set_status(LIST, 7, 2);
    // The verifier has not seen the new list yet: the issuer's word takes
    // effect within the list's lifetime, not instantly.
    s.clock.advance_secs(10);
    s.verifier.run_due_refreshes();
    assert!(s.verifier.verify(&t).unwrap().cached());
    refresh_lists(&s);
    assert_eq!(s.issuer.requests_to(LIST), 2);
    let e = s.verifier.verify(&t).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Suspended, "a cache hit re-reads the status: {e}");
    assert!(s.verifier.verify_cached(&t, &VerifyOptions::default()).is_none());
    // Lifted: accepted again.
    s.issuer.set_status(LIST, 7, 0);
    refresh_lists(&s);
    assert!(s.verifier.verify(&t).is_ok());
    s.issuer.set_status(LIST, 7, 1);
    refresh_lists(&s);
    assert_eq!(s.kind(&t), ErrorKind::Revoked);
    let m = s.verifier.metrics();
    assert!(m.status_lists[0].rejected >= 2);
    assert_eq!(m.verifications.rejected.get("suspended"), Some(&1));
}

#[test]
fn the_lists_ttl_drives_its_refresh_and_etag_makes_it_cheap() {
    let s = status_setup(1, |c| c["min_ttl_secs"] = json!(10));
    s.issuer.configure_status_list(LIST, |o| {
        o.ttl = Some(60);
        o.etag = true;
    });
    let t = referencing(&s, LIST, 3);
    s.verifier.verify(&t).unwrap();
    s.clock.advance_secs(40); // before 75 % of 60 s
    s.verifier.run_due_refreshes();
    assert_eq!(s.issuer.requests_to(LIST), 1);
    s.clock.advance_secs(20);
    s.verifier.run_due_refreshes();
    assert_eq!(s.issuer.requests_to(LIST), 2);
    let m = s.verifier.metrics();
    assert_eq!(m.status_lists[0].not_modified, 1, "unchanged list: 304");
    assert_eq!(m.status_lists[0].health, Health::Fresh);
    assert!(s.verifier.verify(&t).unwrap().cached());
    s.issuer.set_status(LIST, 3, 1);
    s.clock.advance_secs(60);
    s.verifier.run_due_refreshes();
    assert_eq!(s.kind(&t), ErrorKind::Revoked, "a changed list has a new ETag");
}

#[test]
fn a_list_outage_serves_the_last_good_list_then_fails_closed() {
    let s = status_setup(1, |c| {
        c["max_stale_secs"] = json!(600);
        c["max_ttl_secs"] = json!(60);
    });
    let uri = s.issuer.status_list_uri(LIST);
    let iss = s.issuer.url();
    let t = referencing(&s, LIST, 0);
    s.verifier.verify(&t).unwrap();
    assert_eq!(s.verifier.status_list_health(&iss, &uri).unwrap(), Some(Health::Fresh));
    s.issuer.configure_status_list(LIST, |o| o.fault = Fault::Status(503));
    s.clock.advance_secs(61);
    s.verifier.run_due_refreshes();
    assert_eq!(s.verifier.status_list_health(&iss, &uri).unwrap(), Some(Health::Stale));
    assert!(s.verifier.verify_with(&t, &FRESH).is_ok(), "last known good list");
    assert!(s.verifier.verify(referencing(&s, LIST, 5)).is_ok());
    // Backoff, not a hot loop.
    let before = s.issuer.requests_to(LIST);
    for _ in 0..100 {
        s.verifier.run_due_refreshes();
    }
    assert_eq!(s.issuer.requests_to(LIST), before);
    for _ in 0..500 {
        s.clock.advance_secs(1);
        s.verifier.run_due_refreshes();
    }
    assert!(
        s.issuer.requests_to(LIST) - before <= 12,
        "{}",
        s.issuer.requests_to(LIST) - before
    );
    // Past max_stale: its tokens fail closed, cached ones included.
    s.clock.advance_secs(100);
    s.verifier.run_due_refreshes();
    assert_eq!(s.kind(&t), ErrorKind::StatusListStale);
    assert_eq!(
        s.verifier.status_list_health(&iss, &uri).unwrap(),
        Some(Health::FailedClosed)
    );
    assert_eq!(
        ErrorKind::StatusListStale.category(),
        jwtwarden::Category::KeysUnavailable
    );
    // Other tokens of the issuer are unaffected.
    assert!(s.verifier.verify(s.token(&s.issuer.first_kid())).is_ok());
    // Recovery on the next retry.
    s.issuer.configure_status_list(LIST, |o| o.fault = Fault::None);
    for _ in 0..400 {
        s.clock.advance_secs(1);
        s.verifier.run_due_refreshes();
    }
    assert!(s.verifier.verify(&t).is_ok());
}

#[test]
fn a_list_never_fetched_is_unavailable_and_not_refetched_per_token() {
    let s = status_setup(1, |_| {});
    s.issuer.configure_status_list(LIST, |o| o.fault = Fault::Status(500));
    for idx in 0..20 {
        let e = s.verifier.verify(referencing(&s, LIST, idx)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::StatusListUnavailable);
    }
    assert_eq!(s.issuer.requests_to(LIST), 1, "backoff holds on-demand fetches too");
}

#[test]
fn a_lists_exp_ends_its_use() {
    let s = status_setup(1, |_| {});
    let exp = s.clock.now_secs() + 120;
    s.issuer.configure_status_list(LIST, |o| {
        o.exp = Some(exp);
        o.ttl = Some(3600);
        o.fault = Fault::None;
    });
    let t = referencing(&s, LIST, 0);
    s.verifier.verify(&t).unwrap();
    s.issuer.configure_status_list(LIST, |o| o.fault = Fault::Status(503));
    s.clock.advance_secs(120 + 31);
    s.verifier.run_due_refreshes();
    assert_eq!(s.kind(&t), ErrorKind::StatusListStale, "never used past exp + leeway");
}

#[test]
fn tokens_without_status_are_accepted_unless_required() {
    let s = status_setup(1, |_| {});
    assert!(s.verifier.verify(s.token(&s.issuer.first_kid())).is_ok());
    let strict = status_setup(1, |c| c["require_status"] = json!(true));
    let kid = strict.issuer.first_kid();
    assert_eq!(strict.kind(&strict.token(&kid)), ErrorKind::StatusMissing);
    assert!(strict.verifier.verify(referencing(&strict, LIST, 0)).is_ok());
    let malformed = strict.token_with(&kid, json!({"status": {"status_list": {"idx": "0", "uri": 5}}}));
    assert_eq!(strict.kind(&malformed), ErrorKind::InvalidPayload);
}

#[test]
fn first_uses_coalesce_into_one_fetch() {
    let s = status_setup(1, |_| {});
    s.issuer
        .configure_status_list(LIST, |o| o.fault = Fault::Delay(Duration::from_millis(300)));
    let tokens: Vec<String> = (0..8).map(|i| referencing(&s, LIST, i)).collect();
    std::thread::scope(|scope| {
        for t in &tokens {
            let v = &s.verifier;
            scope.spawn(move || assert!(v.verify(t).is_ok()));
        }
    });
    assert_eq!(s.issuer.requests_to(LIST), 1);
}

#[test]
fn preloaded_lists_are_fetched_at_start() {
    let issuer = TestIssuer::start();
    let uri = issuer.publish_status_list(LIST, 1, 64);
    let s = {
        let clock = jwtwarden::ManualClock::starting_now();
        let verifier = common::verifier_for(&issuer, &clock, |c| {
            c["issuers"][0]["status_list"] = json!({"allowed_uris": [uri.clone()], "preload": [uri.clone()]});
        });
        Setup {
            issuer,
            clock,
            verifier,
        }
    };
    assert_eq!(s.issuer.requests_to(LIST), 1);
    assert!(s.verifier.verify(referencing(&s, LIST, 0)).is_ok());
    assert_eq!(s.issuer.requests_to(LIST), 1);
    let text = s.verifier.prometheus();
    assert!(text.contains("jwtwarden_status_list_fetches_total{issuer="), "{text}");
    assert!(text.contains("jwtwarden_status_list_entries{"), "{text}");
}

#[test]
fn the_allowlist_and_preload_are_validated() {
    let issuer = TestIssuer::start();
    let bad = |sl: Value| {
        let mut c = common::config_json(&issuer);
        c["issuers"][0]["status_list"] = sl;
        jwtwarden::Config::from_value(c).unwrap_err().message().to_string()
    };
    assert!(bad(json!({"allowed_uris": ["ftp://x/y"]})).contains("status_list.allowed_uris[0]"));
    assert!(bad(json!({"allowed_uris": ["https://x/a"], "preload": ["https://x/b"]})).contains("preload[0]"));
    assert!(bad(json!({"valid_statuses": [2]})).contains("valid_statuses"));
    assert!(bad(json!({"max_lists": 0})).contains("max_lists"));
}

#[test]
fn the_lists_per_issuer_are_capped() {
    let s = status_setup(1, |c| c["max_lists"] = json!(2));
    for i in 0..3 {
        s.issuer.publish_status_list(&format!("/status/{i}"), 1, 8);
    }
    assert!(s.verifier.verify(referencing(&s, "/status/0", 0)).is_ok());
    assert!(s.verifier.verify(referencing(&s, "/status/1", 0)).is_ok());
    let e = s.verifier.verify(referencing(&s, "/status/2", 0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StatusListUnavailable);
    assert!(e.message().contains("max_lists"), "{e}");
    assert_eq!(s.issuer.requests_to("/status/2"), 0);
}

#[test]
fn eight_threads_verify_while_the_list_flips() {
    let s = status_setup(1, |_| {});
    let kid = s.issuer.first_kid();
    // Tokens that outlive the 20 simulated list lifetimes.
    let tokens: Vec<String> = (0..8)
        .map(|i| {
            let exp = s.clock.now_secs() + 86_400;
            s.token_with(&kid, json!({"exp": exp, "status": s.issuer.status_claim(LIST, i)}))
        })
        .collect();
    for t in &tokens {
        s.verifier.verify(t).unwrap();
    }
    // The phase is odd while the list changes at the issuer and is being
    // refreshed; in even phase p the verifier holds a list in which all
    // eight are VALID (p / 2 even) or INVALID (p / 2 odd). A verify that
    // starts and ends in the same even phase must give that answer.
    let phase = Arc::new(AtomicU64::new(0));
    let stop = AtomicBool::new(false);
    let checked = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for t in &tokens {
            let (v, phase, stop, checked) = (&s.verifier, &phase, &stop, &checked);
            scope.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let before = phase.load(Ordering::SeqCst);
                    let r = v.verify(t);
                    if before % 2 == 0 && phase.load(Ordering::SeqCst) == before {
                        if (before / 2) % 2 == 1 {
                            assert_eq!(r.unwrap_err().kind(), ErrorKind::Revoked, "phase {before}");
                        } else {
                            assert!(r.is_ok(), "phase {before}: {:?}", r.err());
                        }
                        checked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        for flip in 1..=20u64 {
            phase.fetch_add(1, Ordering::SeqCst);
            for i in 0..8 {
                s.issuer.set_status(LIST, i, (flip % 2) as u8);
            }
            refresh_lists(&s);
            phase.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::SeqCst);
    });
    assert!(checked.load(Ordering::Relaxed) > 0);
}

/// Issue 23, item 9c: the endpoint (or anyone on its path) replays an
/// older, still unexpired list in which the token was not yet revoked.
#[test]
fn an_older_list_replayed_by_the_endpoint_does_not_unrevoke() {
    let s = status_setup(1, |_| {});
    let t1 = s.clock.now_secs() - 100;
    s.issuer.configure_status_list(LIST, |o| o.iat = Some(t1));
    let old = s.issuer.status_list_token(LIST);
    s.issuer.set_status(LIST, 7, 1);
    s.issuer.configure_status_list(LIST, |o| o.iat = Some(t1 + 50));
    let t = referencing(&s, LIST, 7);
    assert_eq!(s.kind(&t), ErrorKind::Revoked);
    s.issuer.configure_status_list(LIST, |o| o.body_override = Some(old));
    refresh_lists(&s);
    assert_eq!(s.issuer.requests_to(LIST), 2, "the replayed list was fetched");
    assert_eq!(
        s.kind(&t),
        ErrorKind::Revoked,
        "an older iat never replaces the list in use"
    );
    let m = s.verifier.metrics();
    let list = &m.status_lists[0];
    assert_eq!(list.fetch_failures, 1, "the replay is counted");
    assert!(
        list.last_error.as_deref().is_some_and(|e| e.contains("replayed")),
        "{list:?}"
    );
    assert_eq!(list.rejected, 2);
    assert_eq!(m.verifications.rejected.get("revoked"), Some(&2));
}

/// Issue 23, item 9d: encoded traversal that a server behind the allowed
/// prefix may decode or fold into a way out of it.
#[test]
fn encoded_traversal_out_of_the_allowlist_is_refused_in_every_spelling() {
    let s = status_setup(1, |_| {});
    let kid = s.issuer.first_kid();
    let base = s.issuer.url();
    let before = s.issuer.total_requests();
    for tail in [
        "/status/%252e%252e/other/1",
        "/status/..;/other/1",
        "/status/..%5cother/1",
        "/status/..%5Cother/1",
        "/status/..%ef%bc%8fother/1",
        "/status/..\u{ff0f}other/1",
        "/status/.%2E/other/1",
        "/status%2f..%2fother/1",
    ] {
        let uri = format!("{base}{tail}");
        let t = s.token_with(&kid, json!({"status": {"status_list": {"idx": 0, "uri": uri}}}));
        let e = s.verifier.verify(&t).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::StatusUriNotAllowed, "{uri}: {e}");
    }
    assert_eq!(s.issuer.total_requests(), before, "nothing fetched");
}
