//! A forked child (pre-fork servers: gunicorn --preload, uWSGI, PHP-FPM)
//! keeps verifying, fetches keys that appear after the fork, and gets its own
//! background refresher.

use std::time::{Duration, Instant};

mod common;

use jwtwarden::Verifier;
use jwtwarden_testissuer::{Alg, TestIssuer};

#[test]
fn forked_child_verifies_new_kids_and_respawns_the_refresher() {
    let issuer = TestIssuer::start();
    let verifier = common::background_verifier(&issuer);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let old = issuer.mint(&issuer.first_kid(), &issuer.default_claims("svc", now));
    verifier.verify(&old).unwrap();

    let mut fds = [0i32; 2];
    // SAFETY: fds has room for the two descriptors pipe() writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only runs this test's code and exits with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: the child writes nothing; closing its copy of the write end
        // lets it see end-of-file once the parent is done.
        unsafe { libc::close(fds[1]) };
        // SAFETY: fds[0] is the read end of our pipe; File takes ownership.
        let read = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };
        let code =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child(read, &verifier, &old))).map_or(99, |c| c);
        // SAFETY: _exit is always safe to call; it skips the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: the parent reads nothing from the pipe.
    unsafe { libc::close(fds[0]) };
    // The issuer's server threads live here in the parent: publish a key the
    // child's verifier has never seen, and hand the child a token signed by it.
    let kid = issuer.rotate(Alg::ES256);
    let new = issuer.mint(&kid, &issuer.default_claims("svc", now));
    {
        // SAFETY: fds[1] is the write end of our pipe; File takes ownership.
        let mut write = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
        std::io::Write::write_all(&mut write, new.as_bytes()).unwrap();
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(libc::WIFEXITED(status), "child crashed: status {status}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "child check failed (see code in child())");
    assert!(verifier.verify(&old).is_ok(), "parent unaffected");
}

/// Returns 0 on success, a distinct code per failed check.
fn child(mut from_parent: std::fs::File, verifier: &Verifier, old: &str) -> i32 {
    if verifier.verify(old).is_err() {
        return 1;
    }
    // A kid published only after the fork: found through an unknown-kid fetch.
    let mut new = String::new();
    if std::io::Read::read_to_string(&mut from_parent, &mut new).is_err() || new.is_empty() {
        return 4;
    }
    if verifier.verify(&new).is_err() {
        return 2;
    }
    // The child's own refresher runs scheduled refreshes (max-age=1).
    let scheduled = || verifier.metrics().issuers[0].fetches["scheduled"];
    let before = scheduled();
    let deadline = Instant::now() + Duration::from_secs(10);
    while scheduled() <= before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if scheduled() <= before {
        return 3;
    }
    0
}

/// A child never sends on a keep-alive connection it inherited: the parent
/// goes on using it, and the two processes' requests and responses would
/// interleave on one stream (a child could read the parent's response).
#[test]
fn a_forked_child_fetches_on_its_own_connection_and_the_parent_keeps_its_own() {
    let s = common::setup();
    let url = s.issuer.url();
    s.verifier.refresh_issuer(&url).unwrap();
    s.verifier.refresh_issuer(&url).unwrap();
    let before = s.issuer.jwks_peers();
    let parents = *before.last().expect("the parent fetched");
    assert_eq!(
        before[before.len() - 2],
        parents,
        "the parent's fetches share a keep-alive connection (else this test shows nothing)"
    );

    let status = common::in_forked_child(Duration::from_secs(60), || {
        i32::from(s.verifier.refresh_issuer(&url).is_err())
    });
    assert_eq!(status, Some(0), "the child's refresh failed");
    s.verifier.refresh_issuer(&url).unwrap();

    let after = s.issuer.jwks_peers();
    assert_eq!(after.len(), before.len() + 2, "{after:?}");
    let (childs, parents_next) = (after[before.len()], after[before.len() + 1]);
    assert_ne!(childs, parents, "the child sent on the parent's connection");
    assert_eq!(parents_next, parents, "the parent's connection is still its own");
}
