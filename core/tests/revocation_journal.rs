//! Revocations outlive the process: with `state_dir`, a revocation is in the
//! journal (fsynced) when `revoke_*` returns, so a process killed with
//! SIGKILL right after still rejects the token when it starts again.
//!
//! The killed process is this test binary itself, re-run in "child" mode.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use jwtwarden::{Config, ErrorKind, ManualClock, Propagation, Verifier};
use jwtwarden_testissuer::TestIssuer;
use serde_json::{json, Value};

const CHILD_ENV: &str = "JWTWARDEN_JOURNAL_CHILD";

fn config(issuer_url: &str, jwks_uri: &str, state_dir: &str) -> Value {
    json!({
        "issuers": [{"issuer": issuer_url, "jwks_uri": jwks_uri, "audiences": ["api"]}],
        "http": {"allow_http": true, "timeout_ms": 1500},
        "background_refresh": false,
        "state_dir": state_dir,
    })
}

/// Child mode: revoke, say so, then wait to be killed.
#[test]
fn child_revokes_then_waits_to_be_killed() {
    let Ok(args) = std::env::var(CHILD_ENV) else { return };
    let args: Value = serde_json::from_str(&args).unwrap();
    let verifier = Verifier::new(Config::from_value(args["config"].clone()).unwrap()).unwrap();
    let iss = args["config"]["issuers"][0]["issuer"].as_str().unwrap();
    verifier.revoke_jti(iss, args["jti"].as_str().unwrap(), None).unwrap();
    verifier
        .revoke_subject(iss, "mallory", args["before"].as_u64().unwrap())
        .unwrap();
    println!("REVOKED");
    std::thread::sleep(std::time::Duration::from_secs(120));
    panic!("not killed");
}

#[test]
fn a_process_killed_right_after_revoke_returned_still_rejects_when_it_starts_again() {
    let issuer = TestIssuer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&issuer.url(), &issuer.jwks_uri(), dir.path().to_str().unwrap());
    let clock = ManualClock::starting_now();
    let mut claims = issuer.default_claims("svc", clock.now_secs());
    claims["jti"] = json!("j-killed");
    let token = issuer.mint(&issuer.first_kid(), &claims);
    let mut mallory = issuer.default_claims("mallory", clock.now_secs());
    mallory["jti"] = json!("j-m");
    let mallory = issuer.mint(&issuer.first_kid(), &mallory);

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_revokes_then_waits_to_be_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            CHILD_ENV,
            json!({"config": cfg, "jti": "j-killed", "before": clock.now_secs() + 1}).to_string(),
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("REVOKED"))),
        "the child revoked"
    );
    // SIGKILL: no destructor, no flush, nothing after the call returned.
    child.kill().unwrap();
    child.wait().unwrap();

    let restarted = Verifier::with_clock(Config::from_value(cfg).unwrap(), Arc::new(clock.clone())).unwrap();
    assert_eq!(restarted.verify(&token).unwrap_err().kind(), ErrorKind::Revoked);
    assert_eq!(restarted.verify(&mallory).unwrap_err().kind(), ErrorKind::Revoked);
    assert_eq!(restarted.revocations().len(), 2);
    assert_eq!(restarted.metrics().revocation_entries, 2);
}

#[test]
fn the_journal_drops_what_has_expired_and_keeps_kids() {
    let issuer = TestIssuer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&issuer.url(), &issuer.jwks_uri(), dir.path().to_str().unwrap());
    let clock = ManualClock::starting_now();
    let v = Verifier::with_clock(Config::from_value(cfg.clone()).unwrap(), Arc::new(clock.clone())).unwrap();
    let iss = issuer.url();
    let exp = clock.now_secs() + 100;
    assert_eq!(v.revoke_jti(&iss, "short", Some(exp)).unwrap(), Propagation::Local);
    v.revoke_kid(&iss, &issuer.first_kid()).unwrap();
    drop(v);
    // Past the token's exp plus the leeway (default 30 s) and the minute of
    // slack: the jti is no longer needed.
    clock.advance_secs(100 + 30 + 61);
    let v = Verifier::with_clock(Config::from_value(cfg).unwrap(), Arc::new(clock.clone())).unwrap();
    let held = v.revocations();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].value, issuer.first_kid());
    let token = issuer.mint(&issuer.first_kid(), &issuer.default_claims("svc", clock.now_secs()));
    assert_eq!(
        v.verify(&token).unwrap_err().kind(),
        ErrorKind::KeyRevoked,
        "the kid stays revoked"
    );
    let journal = std::fs::read_to_string(dir.path().join("revocations.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 1, "compacted at start: {journal}");
}

#[test]
fn revoking_for_an_unconfigured_issuer_is_refused_and_star_covers_all() {
    let s = common::setup();
    let err = s.verifier.revoke_jti("https://elsewhere/", "j", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownIssuer);
    let near = format!("{}/", s.issuer.url());
    let err = s.verifier.revoke_jti(&near, "j", None).unwrap_err();
    assert!(err.message().contains("trailing slash"), "{err}");
    let mut claims = s.issuer.default_claims("svc", s.clock.now_secs());
    claims["jti"] = json!("j-star");
    let token = s.issuer.mint(&s.issuer.first_kid(), &claims);
    s.verifier.verify(&token).unwrap();
    s.verifier.revoke_jti(jwtwarden::ANY_ISSUER, "j-star", None).unwrap();
    assert_eq!(s.verifier.verify(&token).unwrap_err().kind(), ErrorKind::Revoked);
}
