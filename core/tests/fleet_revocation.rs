//! Fleet revocation through a real `redis-server`: a revocation made by one
//! verifier reaches the others, survives Redis being down or losing its
//! data, and a verifier cut off from the fleet fails closed after
//! `max_stale_secs`. Staleness runs on the manual clock; the only real
//! waits are for messages to cross loopback, each bounded by `eventually`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::verifier_for;
use jwtwarden::{Config, ErrorKind, FeedState, ManualClock, Propagation, RevocationKind, Revoker, Verifier};
use jwtwarden_testissuer::redis::RedisServer;
use jwtwarden_testissuer::TestIssuer;
use serde_json::json;

/// Poll `f` until it holds; fail after 20 s (a bound for a broken feed, not
/// a timing assertion: loopback delivery takes milliseconds).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn state(v: &Verifier) -> FeedState {
    v.revocation_feed().expect("a feed is configured").state
}

fn kind(v: &Verifier, token: &str) -> Option<ErrorKind> {
    v.verify(token).err().map(|e| e.kind())
}

struct Fleet {
    redis: RedisServer,
    issuer: TestIssuer,
    clock: ManualClock,
}

fn fleet() -> Option<Fleet> {
    Some(Fleet {
        redis: RedisServer::start()?,
        issuer: TestIssuer::start(),
        clock: ManualClock::starting_now(),
    })
}

impl Fleet {
    /// A verifier on the fleet feed, once subscribed.
    fn verifier(&self) -> Verifier {
        self.verifier_with(json!({"timeout_ms": 2000, "max_stale_secs": 60}))
    }

    /// A verifier on the fleet feed with these `revocation.redis` settings
    /// (the URL added), once subscribed.
    fn verifier_with(&self, mut redis: serde_json::Value) -> Verifier {
        redis["url"] = json!(self.redis.url());
        let v = verifier_for(&self.issuer, &self.clock, |c| {
            c["revocation"] = json!({ "redis": redis });
        });
        eventually("the feed is connected", || state(&v) == FeedState::Connected);
        v
    }

    fn token(&self, jti: &str) -> String {
        let mut claims = self.issuer.default_claims("svc", self.clock.now_secs());
        claims["jti"] = json!(jti);
        claims["aud"] = json!("api");
        self.issuer.mint(&self.issuer.first_kid(), &claims)
    }
}

#[test]
fn a_revocation_made_in_one_verifier_is_rejected_by_the_others() {
    let Some(f) = fleet() else { return };
    let (a, b, c) = (f.verifier(), f.verifier(), f.verifier());
    let token = f.token("j-1");
    for v in [&a, &b, &c] {
        v.verify(&token).unwrap();
        assert!(v.verify(&token).unwrap().cached());
    }
    assert_eq!(a.revoke_jti(&f.issuer.url(), "j-1", None).unwrap(), Propagation::Fleet);
    assert_eq!(kind(&a, &token), Some(ErrorKind::Revoked), "in force locally on return");
    for v in [&b, &c] {
        eventually("the cached token is rejected elsewhere", || {
            kind(v, &token) == Some(ErrorKind::Revoked)
        });
    }
    // Issuer-scoped: the record names its issuer, and what the fleet holds
    // is what every process holds.
    let held = b.revocations();
    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].kind, held[0].issuer.as_str()),
        (RevocationKind::Jti, f.issuer.url().as_str())
    );
    let stats = b.revocation_feed().unwrap();
    assert_eq!(stats.events, 1);
    assert_eq!(stats.dropped_events, 0);
    let m = b.metrics().revocations;
    assert_eq!((m.local, m.journal, m.feed), (0, 0, 1));
    assert_eq!(a.metrics().revocations.local, 1);
    let text = b.prometheus();
    for line in [
        "jwtwarden_revocations_applied_total{source=\"feed\"} 1",
        "jwtwarden_revocation_feed_state{state=\"connected\"} 1",
        "jwtwarden_revocation_feed_state{state=\"failed_closed\"} 0",
        "jwtwarden_revocation_feed_events_total 1",
        "jwtwarden_revocation_entries 1",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[test]
fn revoking_while_redis_is_down_is_pending_and_published_when_it_is_back() {
    let Some(mut f) = fleet() else { return };
    let (a, b) = (f.verifier(), f.verifier());
    let token = f.token("j-down");
    b.verify(&token).unwrap();
    f.redis.stop();
    eventually("a notices the outage", || state(&a) != FeedState::Connected);
    let p = a.revoke_jti(&f.issuer.url(), "j-down", None).unwrap();
    assert_eq!(p, Propagation::Pending, "the caller is told it is not yet fleet-wide");
    assert_eq!(kind(&a, &token), Some(ErrorKind::Revoked), "but it is in force here");
    assert_eq!(a.revocation_feed().unwrap().pending, 1);
    assert!(b.verify(&token).is_ok(), "b cannot know yet");
    f.redis.resume();
    eventually("b rejects once Redis is back", || {
        kind(&b, &token) == Some(ErrorKind::Revoked)
    });
    eventually("nothing is pending", || a.revocation_feed().unwrap().pending == 0);
}

#[test]
fn a_verifier_cut_off_from_the_feed_fails_closed_after_max_stale_and_recovers() {
    let Some(mut f) = fleet() else { return };
    let v = f.verifier();
    let token = f.token("j-stale");
    v.verify(&token).unwrap();
    assert!(v.verify(&token).unwrap().cached());
    f.redis.stop();
    eventually("the outage is noticed", || state(&v) == FeedState::Lagging);
    f.clock.advance_secs(59);
    assert!(
        v.verify(&token).unwrap().cached(),
        "within max_stale_secs: still serving"
    );
    f.clock.advance_secs(2);
    assert_eq!(state(&v), FeedState::FailedClosed);
    // Cached or not, nothing is vouched for while revocations may be missing.
    assert_eq!(kind(&v, &token), Some(ErrorKind::RevocationsStale));
    assert_eq!(kind(&v, &f.token("j-other")), Some(ErrorKind::RevocationsStale));
    assert!(v.verify_cached(&token, &Default::default()).is_none());
    f.redis.resume();
    eventually("it recovers by itself", || v.verify(&token).is_ok());
    // The subscriber marks itself connected just after it re-opens
    // verification: poll, do not assert at once.
    eventually("the state reads connected", || state(&v) == FeedState::Connected);
    assert!(v.revocation_feed().unwrap().reconnects >= 1);
}

#[test]
fn serve_when_stale_keeps_serving_past_max_stale() {
    let Some(mut f) = fleet() else { return };
    // Connected first (verifier_with waits for it): a feed that has not
    // subscribed yet also reads as lagging, and a subscription completing
    // just before the kill would otherwise flip the state back to
    // connected after the wait below.
    let v = f.verifier_with(json!({"timeout_ms": 500, "serve_when_stale": true}));
    let token = f.token("j-avail");
    v.verify(&token).unwrap();
    f.redis.stop();
    eventually("the outage is noticed", || state(&v) == FeedState::Lagging);
    f.clock.advance_secs(3600);
    assert!(v.verify(&token).is_ok());
    assert_eq!(state(&v), FeedState::Lagging);
}

#[test]
fn a_redis_that_pauses_for_less_than_the_timeout_keeps_the_subscription() {
    let Some(f) = fleet() else { return };
    let v = f.verifier_with(json!({"timeout_ms": 5000}));
    // Long enough that the subscriber's once-a-second ping waits on the
    // frozen server; shorter than timeout_ms.
    f.redis.freeze();
    std::thread::sleep(Duration::from_millis(1500));
    f.redis.unfreeze();
    // Whatever the subscriber was waiting for is answered now: a revocation
    // still arrives as an event on the same subscription.
    let a = f.verifier();
    let token = f.token("j-pause");
    v.verify(&token).unwrap();
    a.revoke_jti(&f.issuer.url(), "j-pause", None).unwrap();
    eventually("the paused-over subscription delivers", || {
        kind(&v, &token) == Some(ErrorKind::Revoked)
    });
    let stats = v.revocation_feed().unwrap();
    assert_eq!((stats.reconnects, stats.events), (0, 1), "{stats:?}");
}

/// A fork while another thread publishes a revocation to a Redis that does
/// not answer: that thread holds the publishing connection, and its lock,
/// until its timeout. The child's own revocation must not wait on a thread
/// that does not exist in it, nor write on the parent's stream.
#[test]
fn a_child_forked_while_a_revocation_is_being_published_revokes_without_waiting_for_it() {
    let Some(f) = fleet() else { return };
    let v = f.verifier_with(json!({"timeout_ms": 2000}));
    let iss = f.issuer.url();
    // The publishing connection is made, and kept.
    assert_eq!(v.revoke_jti(&iss, "j-warm", None).unwrap(), Propagation::Fleet);
    let token = f.token("j-parent");
    f.redis.freeze();
    std::thread::scope(|s| {
        let publishing = s.spawn(|| v.revoke_jti(&iss, "j-parent", None));
        // Applied locally first; then the thread writes to the frozen server
        // and waits for its answer with the connection locked (twice
        // timeout_ms, with the retry on a fresh connection).
        eventually("the revocation is in force here", || {
            kind(&v, &token) == Some(ErrorKind::Revoked)
        });
        std::thread::sleep(Duration::from_millis(300));
        let status = common::in_forked_child(Duration::from_secs(30), || match v.revoke_jti(&iss, "j-child", None) {
            Ok(Propagation::Pending) => 0,
            Ok(_) => 2,
            Err(_) => 3,
        });
        f.redis.unfreeze();
        assert!(publishing.join().unwrap().is_ok());
        assert_eq!(
            status,
            Some(0),
            "the child's revoke: 0 pending as Redis does not answer, None: still waiting after 30 s"
        );
    });
}

#[test]
fn a_redis_that_lost_its_data_is_reseeded_and_new_processes_still_reject() {
    let Some(mut f) = fleet() else { return };
    let a = f.verifier();
    let token = f.token("j-reseed");
    assert_eq!(
        a.revoke_jti(&f.issuer.url(), "j-reseed", None).unwrap(),
        Propagation::Fleet
    );
    assert_eq!(
        a.revoke_kid(&f.issuer.url(), "no-such-kid").unwrap(),
        Propagation::Fleet
    );
    f.redis.restart(); // no persistence: every key is gone
    let config = Config::from_value(json!({
        "issuers": [{"issuer": f.issuer.url(), "jwks_uri": f.issuer.jwks_uri(), "audiences": ["api"]}],
        "http": {"allow_http": true},
        "revocation": {"redis": {"url": f.redis.url(), "timeout_ms": 500}},
    }))
    .unwrap();
    let revoker = Revoker::with_clock(config, Arc::new(f.clock.clone())).unwrap();
    eventually("a re-seeds the fleet's set", || {
        revoker.fleet_revocations().is_ok_and(|r| r.len() == 2)
    });
    let newcomer = f.verifier();
    assert_eq!(kind(&newcomer, &token), Some(ErrorKind::Revoked));
    // a's publishing connection died with the old server: the next
    // revocation still reaches the fleet (a fresh connection, not "pending").
    let later = f.token("j-after-restart");
    newcomer.verify(&later).unwrap();
    assert_eq!(
        a.revoke_jti(&f.issuer.url(), "j-after-restart", None).unwrap(),
        Propagation::Fleet
    );
    eventually("the newcomer rejects it", || {
        kind(&newcomer, &later) == Some(ErrorKind::Revoked)
    });
}

#[test]
fn hostile_feed_events_are_dropped_counted_and_never_remove_a_revocation() {
    let Some(f) = fleet() else { return };
    let a = f.verifier();
    let iss = f.issuer.url();
    a.revoke_jti(&iss, "j-keep", None).unwrap();
    let channel = "jwtwarden:revocations:events";
    let past = json!({"rev": {"kind": "jti", "iss": iss, "value": "j-keep", "until_ms": 1}, "at_ms": 1});
    let unknown_kind = json!({"rev": {"kind": "unrevoke", "iss": iss, "value": "j-keep"}, "at_ms": 1});
    let extra_field = json!({"rev": {"kind": "jti", "iss": iss, "value": "j-keep", "remove": true}, "at_ms": 1});
    let empty = json!({"rev": {"kind": "jti", "iss": iss, "value": "", "until_ms": 9e15}, "at_ms": 1});
    let subject_without_cutoff = json!({"rev": {"kind": "subject", "iss": iss, "value": "svc"}, "at_ms": 1});
    let huge = json!({"rev": {"kind": "jti", "iss": iss, "value": "x".repeat(9000)}, "at_ms": 1});
    for event in [
        "not json".to_string(),
        unknown_kind.to_string(),
        extra_field.to_string(),
        empty.to_string(),
        subject_without_cutoff.to_string(),
        huge.to_string(),
        past.to_string(),
    ] {
        f.redis.command(&["PUBLISH", channel, &event]).expect("published");
    }
    // Then a genuine event from "another process": the subscriber survived.
    let later =
        json!({"rev": {"kind": "jti", "iss": iss, "value": "j-later", "until_ms": 9_000_000_000_000u64}, "at_ms": 1});
    f.redis.command(&["PUBLISH", channel, &later.to_string()]).unwrap();
    eventually("the genuine event is applied", || {
        kind(&a, &f.token("j-later")) == Some(ErrorKind::Revoked)
    });
    assert_eq!(
        kind(&a, &f.token("j-keep")),
        Some(ErrorKind::Revoked),
        "nothing removed it"
    );
    let stats = a.revocation_feed().unwrap();
    assert_eq!(stats.dropped_events, 6, "{stats:?}");
    assert_eq!(state(&a), FeedState::Connected);
}

const REVOKER_CHILD_ENV: &str = "JWTWARDEN_FLEET_REVOKER_CHILD";

/// Child mode for the streaming test: another process that revokes each
/// `jti` read from stdin (one per line) through the fleet, and says so.
#[test]
fn child_revokes_what_stdin_names() {
    use std::io::BufRead;
    let Ok(cfg) = std::env::var(REVOKER_CHILD_ENV) else {
        return;
    };
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    let iss = cfg["issuers"][0]["issuer"].as_str().unwrap().to_owned();
    let revoker = Revoker::new(Config::from_value(cfg).unwrap()).unwrap();
    for line in std::io::stdin().lock().lines() {
        let jti = line.unwrap();
        assert_eq!(revoker.revoke_jti(&iss, &jti, None).unwrap(), Propagation::Fleet);
        println!("revoked {jti}");
    }
}

#[test]
fn eight_threads_never_succeed_after_a_revocation_streamed_from_another_process_was_applied() {
    use std::io::{BufRead, BufReader, Write};
    let Some(f) = fleet() else { return };
    let serving = f.verifier();
    let iss = f.issuer.url();
    let cfg = json!({
        "issuers": [{"issuer": iss, "jwks_uri": f.issuer.jwks_uri(), "audiences": ["api"]}],
        "http": {"allow_http": true},
        "revocation": {"redis": {"url": f.redis.url()}},
    });
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_revokes_what_stdin_names",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(REVOKER_CHILD_ENV, cfg.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = BufReader::new(child.stdout.take().unwrap()).lines();
    let tokens: Vec<(String, String)> = (0..40)
        .map(|i| {
            let jti = format!("j-stream-{i}");
            (f.token(&jti), jti)
        })
        .collect();
    for (t, _) in &tokens {
        serving.verify(t).unwrap();
    }
    // applied[i]: set once `serving` is seen to hold revocation i (it was
    // applied there before that). A verify that starts after that and
    // succeeds is a violation.
    let applied: Vec<AtomicBool> = tokens.iter().map(|_| AtomicBool::new(false)).collect();
    let done = AtomicBool::new(false);
    let violations = AtomicU64::new(0);
    let checks = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..8 {
            let (tokens, applied, done, violations, checks, serving) =
                (&tokens, &applied, &done, &violations, &checks, &serving);
            s.spawn(move || {
                let mut i = t;
                while !done.load(Ordering::SeqCst) {
                    i = (i + 7) % tokens.len();
                    let before = applied[i].load(Ordering::SeqCst);
                    let ok = serving.verify(&tokens[i].0).is_ok();
                    checks.fetch_add(1, Ordering::Relaxed);
                    if before && ok {
                        violations.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
        for (i, (_, jti)) in tokens.iter().enumerate() {
            writeln!(to_child, "{jti}").unwrap();
            // The child's first line shares its line with libtest's
            // "test ... " prefix: match the end.
            let answer = format!("revoked {jti}");
            assert!(
                from_child.any(|l| l.is_ok_and(|l| l.ends_with(&answer))),
                "the child revoked {jti}"
            );
            eventually("the revocation reaches the serving verifier", || {
                serving.revocations().iter().any(|r| r.value == *jti)
            });
            applied[i].store(true, Ordering::SeqCst);
        }
        done.store(true, Ordering::SeqCst);
    });
    drop(to_child);
    child.wait().unwrap();
    assert_eq!(violations.load(Ordering::SeqCst), 0);
    assert!(checks.load(Ordering::Relaxed) > 1000);
    for (t, _) in &tokens {
        assert_eq!(kind(&serving, t), Some(ErrorKind::Revoked));
    }
}
