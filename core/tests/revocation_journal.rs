//! Revocations outlive the process: with `state_dir`, a revocation is in the
//! journal (fsynced) when `revoke_*` returns, so a process killed with
//! SIGKILL right after still rejects the token when it starts again.
//!
//! The killed process is this test binary itself, re-run in "child" mode.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use jwtwarden::{Clock, Config, ErrorKind, ManualClock, Propagation, Verifier};
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
    let v = Verifier::with_clock(Config::from_value(cfg.clone()).unwrap(), Arc::new(clock.clone())).unwrap();
    let held = v.revocations();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].value, issuer.first_kid());
    let token = issuer.mint(&issuer.first_kid(), &issuer.default_claims("svc", clock.now_secs()));
    assert_eq!(
        v.verify(&token).unwrap_err().kind(),
        ErrorKind::KeyRevoked,
        "the kid stays revoked"
    );
    drop(v);
    // Compaction keeps an expired record for a day (a clock ahead at one
    // start must not erase it), then drops it.
    let journal = std::fs::read_to_string(dir.path().join("revocations.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 2, "kept within the margin: {journal}");
    clock.advance_secs(86_400);
    let v = Verifier::with_clock(Config::from_value(cfg).unwrap(), Arc::new(clock.clone())).unwrap();
    assert_eq!(v.revocations().len(), 1);
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

/// Issue 23, item 5: one start with a clock two hours ahead compacted a
/// record still live for an hour out of the journal for good.
#[test]
fn a_start_with_a_clock_ahead_does_not_erase_a_live_revocation() {
    let issuer = TestIssuer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&issuer.url(), &issuer.jwks_uri(), dir.path().to_str().unwrap());
    let clock = ManualClock::starting_now();
    let mut claims = issuer.default_claims("svc", clock.now_secs());
    claims["jti"] = json!("j-skew");
    claims["exp"] = json!(clock.now_secs() + 3600 - 60);
    let token = issuer.mint(&issuer.first_kid(), &claims);
    let v = Verifier::with_clock(Config::from_value(cfg.clone()).unwrap(), Arc::new(clock.clone())).unwrap();
    let exp = claims["exp"].as_u64();
    v.revoke_jti(&issuer.url(), "j-skew", exp).unwrap();
    assert_eq!(v.verify(&token).unwrap_err().kind(), ErrorKind::Revoked);
    drop(v);
    // One start with a clock two hours ahead: the record is not live by
    // that clock, and compaction runs.
    let ahead = ManualClock::new(clock.now_ms() + 2 * 3600 * 1000);
    let skewed = Verifier::with_clock(Config::from_value(cfg.clone()).unwrap(), Arc::new(ahead)).unwrap();
    assert!(skewed.revocations().is_empty(), "not live by the skewed clock");
    drop(skewed);
    // Back on the true clock, the token is still refused.
    let v = Verifier::with_clock(Config::from_value(cfg).unwrap(), Arc::new(clock.clone())).unwrap();
    assert_eq!(
        v.verify(&token).unwrap_err().kind(),
        ErrorKind::Revoked,
        "the record survived the skewed start"
    );
}

/// Issue 23, item 9a: a symbolic link planted as the journal is neither
/// read nor written through, at start or on append.
#[test]
fn a_symlink_planted_as_the_journal_is_refused_not_followed() {
    let issuer = TestIssuer::start();
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    std::fs::write(&target, "precious\n").unwrap();
    let journal = dir.path().join("revocations.jsonl");
    std::os::unix::fs::symlink(&target, &journal).unwrap();
    let cfg = config(&issuer.url(), &issuer.jwks_uri(), dir.path().to_str().unwrap());
    let err = Verifier::new(Config::from_value(cfg.clone()).unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert!(err.message().contains("revocations.jsonl"), "names the path: {err}");
    assert!(std::fs::symlink_metadata(&journal).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");

    // Planted while a verifier runs: the revocation is in force here but
    // reported not persisted, and nothing is written through the link.
    std::fs::remove_file(&journal).unwrap();
    let v = Verifier::new(Config::from_value(cfg).unwrap()).unwrap();
    std::fs::remove_file(&journal).unwrap();
    std::os::unix::fs::symlink(&target, &journal).unwrap();
    let err = v.revoke_jti(&issuer.url(), "j-link", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RevocationNotPersisted, "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    // The lock file and the compaction's temporary file get the same care.
    let lock = dir.path().join("revocations.lock");
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    assert_eq!(
        v.revoke_jti(&issuer.url(), "j-lock", None).unwrap_err().kind(),
        ErrorKind::RevocationNotPersisted
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
}

fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Issue 23, item 9a: a FIFO planted as the journal (or its lock) made the
/// verifier's start wait for ever for a writer.
#[test]
fn a_fifo_planted_as_the_journal_fails_the_start_promptly() {
    for name in ["revocations.jsonl", "revocations.lock"] {
        let issuer = TestIssuer::start();
        let dir = tempfile::tempdir().unwrap();
        mkfifo(&dir.path().join(name));
        let cfg = config(&issuer.url(), &issuer.jwks_uri(), dir.path().to_str().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(Verifier::new(Config::from_value(cfg).unwrap()).map(|_| ()));
        });
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{name}: the start blocked on the FIFO"));
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{name}: {err}");
        assert!(err.message().contains(name), "{name}: names the path: {err}");
    }
}

/// Issue 23, item 9b: a revocation made by another process on the same
/// `state_dir` (`jwtwarden revoke` beside `jwtwarden serve`, no fleet
/// feed) reaches a running verifier, even one with no refreshable issuer.
#[test]
fn a_revocation_by_another_process_on_the_state_dir_reaches_a_running_verifier() {
    let issuer = jwtwarden_testissuer::TestIssuer::start();
    let kid = issuer.first_kid();
    let dir = tempfile::tempdir().unwrap();
    let iss = "https://static.example";
    let cfg = json!({
        "issuers": [{"issuer": iss, "jwks": {"keys": [issuer.public_jwk(&kid)]}, "audiences": ["api"]}],
        "state_dir": dir.path(),
    });
    let v = Verifier::new(Config::from_value(cfg.clone()).unwrap()).unwrap();
    let now = jwtwarden::SystemClock.now_ms() / 1000;
    let mut claims = issuer.default_claims("svc", now);
    claims["iss"] = json!(iss);
    claims["jti"] = json!("j-other-process");
    let token = issuer.mint(&kid, &claims);
    assert!(!v.verify(&token).unwrap().cached());
    assert!(v.verify(&token).unwrap().cached());
    // Another process: a Revoker of its own on the same directory.
    let revoker = jwtwarden::Revoker::new(Config::from_value(cfg).unwrap()).unwrap();
    assert_eq!(
        revoker
            .revoke_jti(iss, "j-other-process", claims["exp"].as_u64())
            .unwrap(),
        Propagation::Local
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match v.verify(&token) {
            Err(e) if e.kind() == ErrorKind::Revoked => break,
            other => assert!(
                std::time::Instant::now() < deadline,
                "still accepted 10 s after the other process revoked: {other:?}"
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(v.metrics().revocations.journal, 1);
}
