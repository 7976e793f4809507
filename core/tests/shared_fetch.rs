//! Issues 25/26: the processes of one host (nginx workers, Apache prefork
//! children) share one JWKS fetch through `state_dir`. `flock` locks
//! conflict between separate open file descriptions, so several verifiers
//! in one test process stand for N processes; the tests that need a real
//! second process (a lock holder that dies, or hangs) fork one.
//!
//! What the issuer sees is counted by the test issuer; time is the manual
//! clock's.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{verifier_for, with_header, Fault};
use jwtwarden::{Clock, ErrorKind, Health, ManualClock, Verifier, VerifyOptions};
use jwtwarden_testissuer::TestIssuer;
use serde_json::{json, Value};

const N: usize = 4;

/// `n` verifiers on one `state_dir`, started at the same time.
fn start_together(
    issuer: &TestIssuer,
    clock: &ManualClock,
    dir: &Path,
    n: usize,
    adjust: impl Fn(&mut Value) + Sync,
) -> Vec<Verifier> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    verifier_for(issuer, clock, |c| {
                        c["state_dir"] = json!(dir);
                        adjust(c);
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn token(issuer: &TestIssuer, clock: &ManualClock, kid: &str) -> String {
    issuer.mint(kid, &issuer.default_claims("svc", clock.now_secs()))
}

/// A token naming a kid nobody published (signature of `kid`'s key).
fn random_kid_token(issuer: &TestIssuer, clock: &ManualClock, kid: &str, i: usize) -> String {
    let alg = issuer.key_alg(kid).as_str();
    with_header(
        &token(issuer, clock, kid),
        &json!({"alg": alg, "typ": "JWT", "kid": format!("storm-{i}-{}", fastrand::u64(..))}),
    )
}

/// Every verifier verifies `make(i)` for `per` tokens each, at once.
fn storm(verifiers: &[Verifier], per: usize, make: impl Fn(usize) -> String + Sync) -> Vec<ErrorKind> {
    std::thread::scope(|s| {
        let handles: Vec<_> = verifiers
            .iter()
            .enumerate()
            .map(|(v, verifier)| {
                let make = &make;
                s.spawn(move || {
                    (0..per)
                        .filter_map(|i| verifier.verify(make(v * per + i)).err().map(|e| e.kind()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// The one file in `dir` whose name holds `part` and ends with `suffix`.
fn only_file(dir: &Path, part: &str, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(part) && p.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "one {suffix} in {dir:?}: {found:?}");
    found.into_iter().next().unwrap()
}

#[test]
fn verifiers_starting_together_on_one_state_dir_fetch_once() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let dir = tempfile::tempdir().unwrap();
    let verifiers = start_together(&issuer, &clock, dir.path(), N, |_| {});
    assert_eq!(issuer.jwks_requests(), 1, "{N} verifiers started: one fetch");
    let t = token(&issuer, &clock, &issuer.first_kid());
    for v in &verifiers {
        v.verify(&t).expect("every verifier holds the keys");
        assert_eq!(v.issuer_health(&issuer.url()).unwrap(), Health::Fresh);
    }
    // A restart within the TTL (nginx -s reload) costs nothing either.
    clock.advance_secs(60);
    drop(verifiers);
    let again = start_together(&issuer, &clock, dir.path(), N, |_| {});
    assert_eq!(issuer.jwks_requests(), 1);
    again[0].verify(&t).unwrap();
    // Without state_dir each fetches for itself, as before.
    let before = issuer.jwks_requests();
    for _ in 0..N {
        verifier_for(&issuer, &clock, |_| {});
    }
    assert_eq!(issuer.jwks_requests() - before, N as u64);
}

#[test]
fn an_unknown_kid_storm_across_verifiers_costs_one_fetch_per_cooldown() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let dir = tempfile::tempdir().unwrap();
    let kid = issuer.first_kid();
    let verifiers = start_together(&issuer, &clock, dir.path(), N, |_| {});
    let mut fetches = vec![];
    let mut last = issuer.jwks_requests();
    // 0 s, 10 s, 20 s, 35 s, 45 s, 70 s after the storm began (cooldown 30 s).
    for step in [1, 10, 10, 15, 10, 25] {
        clock.advance_secs(step);
        let kinds = storm(&verifiers, 25, |i| random_kid_token(&issuer, &clock, &kid, i));
        assert_eq!(kinds.len(), N * 25, "every random kid refused");
        assert!(kinds.iter().all(|k| *k == ErrorKind::UnknownKid), "{kinds:?}");
        fetches.push(issuer.jwks_requests() - last);
        last = issuer.jwks_requests();
    }
    assert_eq!(fetches, [1, 0, 0, 1, 0, 1], "one fetch per cooldown for the whole host");
    // A real key is still found and verifies everywhere.
    let t = token(&issuer, &clock, &kid);
    for v in &verifiers {
        v.verify(&t).unwrap();
    }
}

#[test]
fn a_rotation_costs_one_fetch_across_verifiers() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let dir = tempfile::tempdir().unwrap();
    let verifiers = start_together(&issuer, &clock, dir.path(), N, |_| {});
    let before = issuer.jwks_requests();

    // The issuer signs with a new key: every verifier meets it at once.
    clock.advance_secs(5);
    let new = issuer.rotate(issuer.key_alg(&issuer.first_kid()));
    let t = token(&issuer, &clock, &new);
    let failed = storm(&verifiers, 5, |_| t.clone());
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(issuer.jwks_requests() - before, 1, "one fetch for the rotation");

    // A key published ahead of use, picked up by one verifier's scheduled
    // refresh, reaches the others from the state directory long after
    // the cooldown: no fetch.
    let ahead = issuer.add_key(issuer.key_alg(&new));
    clock.advance_secs(301);
    verifiers[0].run_due_refreshes();
    let before = issuer.jwks_requests();
    clock.advance_secs(40);
    let t = token(&issuer, &clock, &ahead);
    let failed = storm(&verifiers[1..], 3, |_| t.clone());
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(issuer.jwks_requests(), before, "adopted, not fetched");
}

#[test]
fn scheduled_refreshes_are_shared_and_a_304_is_passed_on() {
    let issuer = TestIssuer::start();
    issuer.set_etag(true);
    let clock = ManualClock::starting_now();
    let dir = tempfile::tempdir().unwrap();
    let verifiers = start_together(&issuer, &clock, dir.path(), N, |_| {});
    let t = token(&issuer, &clock, &issuer.first_kid());
    for round in 1..=3u64 {
        clock.advance_secs(301);
        for v in &verifiers {
            v.run_due_refreshes();
            v.verify(&t).unwrap();
            assert_eq!(v.issuer_health(&issuer.url()).unwrap(), Health::Fresh);
        }
        assert_eq!(issuer.jwks_requests(), 1 + round, "round {round}: one refresh for all");
    }
}

#[test]
fn a_kid_the_issuer_removed_is_not_resurrected_by_adoption() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let dir = tempfile::tempdir().unwrap();
    let first = issuer.first_kid();
    let second = issuer.add_key(issuer.key_alg(&first));
    let verifiers = start_together(&issuer, &clock, dir.path(), 3, |_| {});
    let t2 = token(&issuer, &clock, &second);
    for v in &verifiers {
        v.verify(&t2).unwrap(); // now cached everywhere
    }
    issuer.retire_key(&second);
    clock.advance_secs(301);
    verifiers[0].run_due_refreshes();
    let fetched = issuer.jwks_requests();
    verifiers[1].run_due_refreshes();
    assert_eq!(issuer.jwks_requests(), fetched, "adopted");
    // An older set never comes back: the third verifier, still holding the
    // removed key, refreshes (adopting) and drops it too; a new verifier
    // starts without it. Asking for the removed kid everywhere costs the
    // host one unknown-kid fetch.
    verifiers[2].run_due_refreshes();
    assert_eq!(issuer.jwks_requests(), fetched);
    let late = verifier_for(&issuer, &clock, |c| c["state_dir"] = json!(dir.path()));
    assert_eq!(issuer.jwks_requests(), fetched);
    for v in verifiers.iter().chain([&late]) {
        assert_eq!(
            v.verify(&t2).unwrap_err().kind(),
            ErrorKind::UnknownKid,
            "cached result refused"
        );
    }
    assert_eq!(issuer.jwks_requests(), fetched + 1);

    // A kid revoked in one verifier stays revoked when it adopts a set
    // that still publishes it (fetched by another).
    let t1 = token(&issuer, &clock, &first);
    issuer.add_key(issuer.key_alg(&first)); // so the set keeps a usable key
    verifiers[1].revoke_kid(&issuer.url(), &first).unwrap();
    clock.advance_secs(301);
    verifiers[0].run_due_refreshes();
    let fetched = issuer.jwks_requests();
    verifiers[1].run_due_refreshes();
    assert_eq!(issuer.jwks_requests(), fetched, "adopted");
    assert_eq!(verifiers[1].verify(&t1).unwrap_err().kind(), ErrorKind::KeyRevoked);
}

#[test]
fn a_stale_persisted_set_is_not_adopted_as_fresh() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let dir = tempfile::tempdir().unwrap();
    let with = |c: &mut Value| {
        c["state_dir"] = json!(dir.path());
        c["issuers"][0]["refresh"] = json!({"max_stale_secs": 600});
    };
    let t = token(&issuer, &clock, &issuer.first_kid());
    let _first = verifier_for(&issuer, &clock, with);
    assert_eq!(issuer.jwks_requests(), 1);

    // Adopted 100 s after the real fetch: its age and max_stale count
    // from the fetch, not from the adoption.
    clock.advance_secs(100);
    let adopted = verifier_for(&issuer, &clock, with);
    assert_eq!(issuer.jwks_requests(), 1);
    assert_eq!(adopted.metrics().issuers[0].keyset_age_secs, Some(100));

    // Past its TTL (300 s) the persisted set is not adopted: a new
    // verifier fetches.
    clock.advance_secs(201);
    let _late = verifier_for(&issuer, &clock, with);
    assert_eq!(issuer.jwks_requests(), 2);

    // The issuer goes down: the set adopted at 100 s fails closed at
    // 300 + 600 s after the fetch it came from, not after its adoption.
    issuer.set_fault(Fault::Status(500));
    adopted.verify(&t).unwrap();
    clock.advance_secs(900 - 301);
    assert_eq!(adopted.verify(&t).unwrap_err().kind(), ErrorKind::KeysStale);
}

#[test]
fn a_forged_or_foreign_persisted_set_is_not_adopted() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let dir = tempfile::tempdir().unwrap();
    let with = |c: &mut Value| c["state_dir"] = json!(dir.path());
    let _first = verifier_for(&issuer, &clock, with);
    let record = only_file(dir.path(), ".jwks", ".jwks.json");

    // "Fetched" an hour from now, holding an attacker's key.
    let attacker = TestIssuer::start();
    let mut forged: Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    forged["jwks"] = json!(json!({"keys": [attacker.public_jwk(&attacker.first_kid())]}).to_string());
    forged["fetched_at_ms"] = json!(clock.now_ms() + 3_600_000);
    std::fs::write(&record, forged.to_string()).unwrap();
    let forged_token = attacker.mint(
        &attacker.first_kid(),
        &json!({"iss": issuer.url(), "aud": "api", "sub": "x", "iat": clock.now_secs(), "exp": clock.now_secs() + 600}),
    );
    let v = verifier_for(&issuer, &clock, with);
    assert_eq!(issuer.jwks_requests(), 2, "not adopted: fetched");
    assert_eq!(v.verify(&forged_token).unwrap_err().kind(), ErrorKind::UnknownKid);

    // Written by another user: not adopted either, however fresh.
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        forged["fetched_at_ms"] = json!(clock.now_ms());
        std::fs::write(&record, forged.to_string()).unwrap();
        std::os::unix::fs::chown(&record, Some(65534), Some(65534)).unwrap();
        let before = issuer.jwks_requests();
        let v = verifier_for(&issuer, &clock, with);
        assert_eq!(issuer.jwks_requests(), before + 1, "another user's file: fetched");
        assert_eq!(v.verify(&forged_token).unwrap_err().kind(), ErrorKind::UnknownKid);
    }
}

/// Fork a process that takes the fetch lock (a plain `flock` on the file,
/// as another verifier would) and holds it until killed.
struct LockHolder {
    pid: libc::pid_t,
}

impl LockHolder {
    fn hold(lock: &Path) -> LockHolder {
        let path = std::ffi::CString::new(lock.to_str().unwrap()).unwrap();
        let mut pipe = [0; 2];
        // SAFETY: a valid array of two descriptors.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        // SAFETY: the child only makes async-signal-safe calls, then waits
        // for its signal in pause(); it never returns into the harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: as above.
            unsafe {
                let fd = libc::open(path.as_ptr(), libc::O_RDWR);
                let ok: u8 = u8::from(fd >= 0 && libc::flock(fd, libc::LOCK_EX) == 0);
                libc::write(pipe[1], (&ok as *const u8).cast(), 1);
                loop {
                    libc::pause();
                }
            }
        }
        let mut ok = 0u8;
        // SAFETY: reading one byte into a valid buffer.
        assert_eq!(unsafe { libc::read(pipe[0], (&mut ok as *mut u8).cast(), 1) }, 1);
        // SAFETY: our own descriptors.
        unsafe {
            libc::close(pipe[0]);
            libc::close(pipe[1]);
        }
        assert_eq!(ok, 1, "the child holds the lock");
        LockHolder { pid }
    }

    fn kill(&self) {
        let mut status = 0;
        // SAFETY: our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, &mut status, 0);
        }
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn a_lock_holder_that_hangs_costs_one_bounded_wait_and_one_that_dies_nothing() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let dir = tempfile::tempdir().unwrap();
    let with = |c: &mut Value| {
        c["state_dir"] = json!(dir.path());
        c["http"]["timeout_ms"] = json!(400);
    };
    let first = verifier_for(&issuer, &clock, with);
    let kid = issuer.first_kid();
    let holder = LockHolder::hold(&only_file(dir.path(), ".jwks.", ".lock"));

    // Stuck holder, scheduled refresh: waits the bound, then fetches itself.
    clock.advance_secs(301);
    let started = Instant::now();
    first.run_due_refreshes();
    assert!(started.elapsed() >= Duration::from_millis(400), "waited for the lock");
    assert_eq!(issuer.jwks_requests(), 2, "then fetched itself");
    assert_eq!(first.issuer_health(&issuer.url()).unwrap(), Health::Fresh);

    // Stuck holder, unknown kid: the verify waits no longer than
    // http.timeout_ms, and fails closed (no time is left to fetch): the kid
    // could not be checked, so `keys_unavailable` (503, retry), as after a
    // fetch that timed out.
    let new = issuer.rotate(issuer.key_alg(&kid));
    let t = token(&issuer, &clock, &new);
    let started = Instant::now();
    assert_eq!(first.verify(&t).unwrap_err().kind(), ErrorKind::KeysUnavailable);
    assert!(started.elapsed() < Duration::from_secs(10));

    // The holder dies: its lock goes with it, the next fetch is prompt.
    holder.kill();
    clock.advance_secs(31);
    first.verify(&t).expect("fetched once the holder is gone");
    assert_eq!(issuer.jwks_requests(), 3);
}

#[test]
fn a_hanging_issuer_fails_closed_in_every_verifier() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let dir = tempfile::tempdir().unwrap();
    let verifiers = start_together(&issuer, &clock, dir.path(), 3, |c| c["http"]["timeout_ms"] = json!(300));
    let kid = issuer.first_kid();
    let known = token(&issuer, &clock, &kid);
    let new = issuer.rotate(issuer.key_alg(&kid));
    issuer.set_fault(Fault::Hang);
    clock.advance_secs(1);
    let t = token(&issuer, &clock, &new);
    let before = issuer.jwks_requests();
    let kinds = storm(&verifiers, 1, |_| t.clone());
    assert_eq!(kinds.len(), 3, "every verifier refused the new kid");
    // The fetch that could have found the kid timed out: not checked, so
    // `keys_unavailable` (503, retry), never accepted.
    assert!(
        kinds.iter().all(|k| matches!(k, ErrorKind::KeysUnavailable)),
        "{kinds:?}"
    );
    assert!(issuer.jwks_requests() - before <= 3);
    // Known keys keep working meanwhile.
    for v in &verifiers {
        v.verify_with(
            &known,
            &VerifyOptions {
                issuer: None,
                fresh: true,
            },
        )
        .unwrap();
    }
}
