//! Issue 23, from the attacker's side: ways a revocation reported "in
//! force" was not. Each test is what an adversary (or an unlucky operator)
//! does; time runs on the manual clock, and the only real waits are for
//! messages crossing loopback to a real `redis-server`, bounded by polling.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::verifier_for;
use jwtwarden::{Clock, Config, ErrorKind, FeedState, ManualClock, Propagation, RevocationKind, Revoker, Verifier};
use jwtwarden_testissuer::redis::RedisServer;
use jwtwarden_testissuer::TestIssuer;
use serde_json::{json, Value};

const DAY: u64 = 86_400;

/// Poll `f` until it holds; fail after 20 s (a bound for a broken feed, not
/// a timing assertion: loopback delivery takes milliseconds).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    assert!(poll(Duration::from_secs(20), &mut f), "timed out waiting until {what}");
}

/// Poll `f` for at most `limit`; whether it came to hold.
fn poll(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !f() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

fn kind(v: &Verifier, token: &str) -> Option<ErrorKind> {
    v.verify(token).err().map(|e| e.kind())
}

fn token(issuer: &TestIssuer, now_secs: u64, extra: Value) -> String {
    let mut claims = issuer.default_claims("svc", now_secs);
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    issuer.mint(&issuer.first_kid(), &claims)
}

// ---------------------------------------------------------------------------
// Item 1: a record outlives every instant its token can still be accepted.
// ---------------------------------------------------------------------------

/// A verifier on `state_dir` whose issuer has `leeway_secs` and an optional
/// token lifetime cap.
fn journaled(issuer: &TestIssuer, clock: &ManualClock, dir: &str, leeway: u64, lifetime: Option<u64>) -> Verifier {
    verifier_for(issuer, clock, |c| {
        c["state_dir"] = json!(dir);
        c["issuers"][0]["leeway_secs"] = json!(leeway);
        if let Some(l) = lifetime {
            c["issuers"][0]["max_token_lifetime_secs"] = json!(l);
        }
    })
}

#[test]
fn a_jti_revocation_outlives_a_leeway_above_a_minute() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    let v = journaled(&issuer, &clock, dir, 300, None);
    let now = clock.now_secs();
    let exp = now + 600;
    let scoped = token(&issuer, now, json!({"jti": "j-leeway", "exp": exp}));
    let any = token(&issuer, now, json!({"jti": "j-leeway-any", "exp": exp}));
    v.revoke_jti(&issuer.url(), "j-leeway", Some(exp)).unwrap();
    v.revoke_jti("*", "j-leeway-any", Some(exp)).unwrap();
    // Past exp + 61 s, before exp + leeway: the token is still acceptable.
    clock.set_ms((exp + 200) * 1000);
    assert_eq!(
        v.revocations().len(),
        2,
        "both records still reported held: {:?}",
        v.revocations()
    );
    // A process started now (the journal replayed and compacted) must still
    // reject both.
    let restarted = journaled(&issuer, &clock, dir, 300, None);
    assert_eq!(kind(&restarted, &scoped), Some(ErrorKind::Revoked), "issuer-scoped");
    assert_eq!(
        kind(&restarted, &any),
        Some(ErrorKind::Revoked),
        "\"*\": the largest leeway"
    );
    // Past exp + leeway the claims check rejects it anyway.
    clock.set_ms((exp + 300) * 1000);
    assert_eq!(kind(&restarted, &scoped), Some(ErrorKind::Expired));
}

#[test]
fn a_subject_revocation_outlives_the_issuers_longer_token_lifetime() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    // The issuer allows two-day tokens; revocation.max_token_lifetime_secs
    // is its default, one day.
    let v = journaled(&issuer, &clock, dir, 300, Some(2 * DAY));
    let now = clock.now_secs();
    let old = token(
        &issuer,
        now,
        json!({"sub": "mallory", "iat": now - 10, "exp": now - 20 + 2 * DAY}),
    );
    v.revoke_subject(&issuer.url(), "mallory", now).unwrap();
    assert_eq!(kind(&v, &old), Some(ErrorKind::Revoked));
    clock.advance_secs(DAY + 120);
    let restarted = journaled(&issuer, &clock, dir, 300, Some(2 * DAY));
    assert_eq!(
        kind(&restarted, &old),
        Some(ErrorKind::Revoked),
        "a one-day record for a two-day token"
    );
    let r = &restarted.revocations()[0];
    assert_eq!(r.until_ms, Some((now + 2 * DAY + 300 + 60) * 1000), "{r:?}");
}

// ---------------------------------------------------------------------------
// Item 2 (b): kid records have an end of life.
// ---------------------------------------------------------------------------

#[test]
fn a_kid_revocation_has_an_end_of_life_and_old_records_still_parse() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    // A kid record from an older journal: no until_ms.
    std::fs::write(
        dir.path().join("revocations.jsonl"),
        format!("{}\n", json!({"kind": "kid", "iss": issuer.url(), "value": "old-kid"})),
    )
    .unwrap();
    let v = verifier_for(&issuer, &clock, |c| {
        c["state_dir"] = json!(path);
        c["revocation"] = json!({"kid_revocation_secs": 7 * DAY});
    });
    let now_ms = clock.now_ms();
    v.revoke_kid(&issuer.url(), "new-kid").unwrap();
    let mut held = v.revocations();
    held.sort_by(|a, b| a.value.cmp(&b.value));
    assert_eq!(held.len(), 2, "{held:?}");
    for r in &held {
        assert_eq!(r.kind, RevocationKind::Kid);
        assert_eq!(r.until_ms, Some(now_ms + 7 * DAY * 1000), "{r:?}");
    }
    clock.advance_secs(7 * DAY);
    assert!(v.revocations().is_empty(), "{:?}", v.revocations());
}

// ---------------------------------------------------------------------------
// Items 2, 4, 5: the fleet feed.
// ---------------------------------------------------------------------------

struct Fleet {
    redis: RedisServer,
    issuer: TestIssuer,
    clock: ManualClock,
}

fn fleet() -> Fleet {
    Fleet {
        redis: RedisServer::start().expect("redis-server is installed (these tests need it)"),
        issuer: TestIssuer::start(),
        clock: ManualClock::starting_now(),
    }
}

const SET: &str = "jwtwarden:revocations";
const CHANNEL: &str = "jwtwarden:revocations:events";

impl Fleet {
    fn config(&self, revocation: Value) -> Value {
        let mut revocation = revocation;
        revocation["redis"] = json!({"url": self.redis.url(), "timeout_ms": 2000, "max_stale_secs": 60});
        let mut cfg = common::config_json(&self.issuer);
        cfg["revocation"] = revocation;
        cfg
    }

    /// A subscribed verifier with these `revocation` settings.
    fn verifier(&self, revocation: Value) -> Verifier {
        let cfg = self.config(revocation);
        let v = Verifier::with_clock(Config::from_value(cfg).unwrap(), Arc::new(self.clock.clone())).unwrap();
        eventually("the feed is connected", || {
            v.revocation_feed().unwrap().state == FeedState::Connected
        });
        v
    }

    fn revoker(&self, revocation: Value, clock: &ManualClock) -> Revoker {
        Revoker::with_clock(
            Config::from_value(self.config(revocation)).unwrap(),
            Arc::new(clock.clone()),
        )
        .unwrap()
    }

    fn token(&self, jti: &str) -> String {
        token(&self.issuer, self.clock.now_secs(), json!({"jti": jti}))
    }

    fn raw(&self) -> redis::Connection {
        redis::Client::open(self.redis.url()).unwrap().get_connection().unwrap()
    }

    /// What an attacker with Redis write access does: write records to the
    /// set and announce them, as a publisher would.
    fn inject(&self, records: &[Value]) {
        let mut con = self.raw();
        for chunk in records.chunks(1000) {
            let mut pipe = redis::pipe();
            for r in chunk {
                let score = r["until_ms"].as_u64().map_or("+inf".to_string(), |u| u.to_string());
                pipe.cmd("ZADD").arg(SET).arg(score).arg(r.to_string()).ignore();
                let event = json!({"rev": r, "at_ms": 1}).to_string();
                pipe.cmd("PUBLISH").arg(CHANNEL).arg(event).ignore();
            }
            pipe.query::<()>(&mut con).unwrap();
        }
    }

    fn set_count(&self) -> u64 {
        redis::cmd("ZCARD").arg(SET).query(&mut self.raw()).unwrap()
    }
}

fn seen(v: &Verifier) -> u64 {
    let s = v.revocation_feed().unwrap();
    s.events + s.dropped_events
}

#[test]
fn a_flood_for_an_unconfigured_issuer_takes_no_room_and_a_real_revocation_still_holds() {
    let f = fleet();
    let limits = json!({"max_entries": 1000});
    let v = f.verifier(limits.clone());
    let far = f.clock.now_ms() + 3_600_000;
    let flood: Vec<Value> = (0..10_000)
        .map(|i| json!({"kind": "jti", "iss": "https://evil.example", "value": format!("e-{i}"), "until_ms": far}))
        .collect();
    f.inject(&flood);
    eventually("every flood event reached the verifier", || seen(&v) >= 10_000);
    let held = v.revocations();
    assert!(
        held.iter().all(|r| r.issuer != "https://evil.example"),
        "{} records of an unconfigured issuer held",
        held.len()
    );
    assert_eq!(v.revocation_feed().unwrap().dropped_events, 10_000);
    // A process started now reads the flooded set: it holds none of it.
    let newcomer = f.verifier(limits.clone());
    assert!(newcomer.revocations().is_empty(), "{}", newcomer.revocations().len());
    // A real revocation, made elsewhere, holds everywhere.
    let t = f.token("j-real");
    v.verify(&t).unwrap();
    let publisher = f.revoker(limits, &f.clock);
    assert_eq!(
        publisher.revoke_jti(&f.issuer.url(), "j-real", None).unwrap(),
        Propagation::Fleet,
        "the junk in the set is not counted against the fleet's lists"
    );
    for w in [&v, &newcomer] {
        eventually("the real revocation is in force", || {
            kind(w, &t) == Some(ErrorKind::Revoked)
        });
    }
}

#[test]
fn full_lists_fail_closed_loudly_tell_the_publisher_and_recover_when_room_frees() {
    let f = fleet();
    let limits = json!({"max_entries": 5});
    let v = f.verifier(limits.clone());
    let innocent = f.token("j-innocent");
    v.verify(&innocent).unwrap();
    let soon = f.clock.now_ms() + 60_000;
    let filler: Vec<Value> = (0..5)
        .map(|i| json!({"kind": "jti", "iss": f.issuer.url(), "value": format!("fill-{i}"), "until_ms": soon}))
        .collect();
    f.inject(&filler);
    eventually("the filler is held", || v.revocations().len() == 5);
    assert!(v.verify(&innocent).is_ok(), "full is not yet over the limit");
    // The real revocation: in force in the publisher and in Redis, but the
    // subscribers cannot hold it, and the publisher must be told.
    let target = f.token("j-target");
    let publisher = f.revoker(limits, &f.clock);
    let err = publisher
        .revoke_jti(&f.issuer.url(), "j-target", None)
        .expect_err("the publisher learns the fleet cannot hold it");
    assert_eq!(err.kind(), ErrorKind::RevocationListFull, "{err}");
    assert!(err.message().contains("Redis"), "{err}");
    // The subscriber fails closed, loudly, for every token.
    eventually("the subscriber fails closed", || {
        kind(&v, &innocent) == Some(ErrorKind::RevocationListFull)
    });
    assert_eq!(kind(&v, &target), Some(ErrorKind::RevocationListFull));
    assert!(v.verify_cached(&innocent, &Default::default()).is_none());
    let stats = v.revocation_feed().unwrap();
    assert_eq!(stats.state, FeedState::FailedClosed, "{stats:?}");
    assert!(stats.revocations_incomplete, "{stats:?}");
    assert!(v.metrics().revocations.incomplete);
    let text = v.prometheus();
    assert!(text.contains("jwtwarden_revocations_incomplete 1"), "{text}");
    // Once the filler's tokens expired, the subscriber's next re-sync holds
    // every live record of the set and verification reopens.
    f.clock.advance_secs(61);
    eventually("the subscriber recovers", || v.verify(&innocent).is_ok());
    assert_eq!(kind(&v, &target), Some(ErrorKind::Revoked));
    let stats = v.revocation_feed().unwrap();
    assert!(!stats.revocations_incomplete, "{stats:?}");
    assert_eq!(stats.state, FeedState::Connected, "{stats:?}");
}

#[test]
fn a_deleted_set_is_reseeded_and_a_process_started_afterwards_rejects() {
    let f = fleet();
    let holder = f.verifier(json!({}));
    let t = f.token("j-del");
    assert_eq!(
        holder.revoke_jti(&f.issuer.url(), "j-del", None).unwrap(),
        Propagation::Fleet
    );
    assert_eq!(f.set_count(), 1);
    let _: () = redis::cmd("DEL").arg(SET).query(&mut f.raw()).unwrap();
    // Give the holder a bounded while to notice (its ping runs every second).
    let reseeded = poll(Duration::from_secs(20), || f.set_count() >= 1);
    let newcomer = f.verifier(json!({}));
    assert_eq!(
        kind(&newcomer, &t),
        Some(ErrorKind::Revoked),
        "a process started after the DEL accepts a revoked token (set re-seeded: {reseeded})"
    );
    // Trimmed instead of deleted: the same.
    assert_eq!(
        holder.revoke_jti(&f.issuer.url(), "j-trim", None).unwrap(),
        Propagation::Fleet
    );
    let _: () = redis::cmd("ZREMRANGEBYSCORE")
        .arg(SET)
        .arg("-inf")
        .arg("+inf")
        .query(&mut f.raw())
        .unwrap();
    eventually("the trimmed set is re-seeded", || f.set_count() >= 2);
}

#[test]
fn a_member_with_a_fast_clock_does_not_trim_records_live_for_the_others() {
    let f = fleet();
    let on_time = f.revoker(json!({}), &f.clock);
    let now = f.clock.now_secs();
    // Live for the fleet for about an hour.
    on_time.revoke_jti(&f.issuer.url(), "j-hour", Some(now + 3000)).unwrap();
    let fast_clock = ManualClock::new(f.clock.now_ms() + 2 * 3_600_000);
    let fast = f.revoker(json!({}), &fast_clock);
    assert_eq!(
        fast.revoke_jti(&f.issuer.url(), "j-fast", None).unwrap(),
        Propagation::Fleet
    );
    let held = on_time.fleet_revocations().unwrap();
    assert!(
        held.iter().any(|r| r.value == "j-hour"),
        "the fast member's write trimmed a live record: {held:?}"
    );
    // A process on time started now still rejects it.
    let newcomer = f.verifier(json!({}));
    let t = token(&f.issuer, now, json!({"jti": "j-hour", "exp": now + 3000}));
    assert_eq!(kind(&newcomer, &t), Some(ErrorKind::Revoked));
}

// ---------------------------------------------------------------------------
// Beside item 2: a journal that no longer fits is not dropped silently.
// ---------------------------------------------------------------------------

#[test]
fn a_journal_that_no_longer_fits_fails_closed_until_room_frees() {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let now_ms = clock.now_ms();
    // Written by a process that had room for them (a larger max_entries).
    let lines: String = [
        ("j-soon", now_ms + 10_000),
        ("j-a", now_ms + 3_600_000),
        ("j-b", now_ms + 3_600_000),
    ]
    .iter()
    .map(|(jti, until)| {
        format!(
            "{}\n",
            json!({"kind": "jti", "iss": issuer.url(), "value": jti, "until_ms": until})
        )
    })
    .collect();
    std::fs::write(dir.path().join("revocations.jsonl"), lines).unwrap();
    let v = verifier_for(&issuer, &clock, |c| {
        c["state_dir"] = json!(path);
        c["revocation"] = json!({"max_entries": 2});
    });
    let now = clock.now_secs();
    let revoked = [
        token(&issuer, now, json!({"jti": "j-a"})),
        token(&issuer, now, json!({"jti": "j-b"})),
    ];
    let innocent = token(&issuer, now, json!({"jti": "j-innocent"}));
    for t in &revoked {
        assert!(
            matches!(kind(&v, t), Some(ErrorKind::Revoked | ErrorKind::RevocationListFull)),
            "{:?}",
            kind(&v, t)
        );
    }
    assert_eq!(
        kind(&v, &innocent),
        Some(ErrorKind::RevocationListFull),
        "one of the journal's revocations is not held: nothing is vouched for"
    );
    assert!(v.metrics().revocations.incomplete);
    // Once j-soon's token expired there is room for all that is live.
    clock.advance_secs(11);
    assert!(v.verify(&innocent).is_ok());
    for t in &revoked {
        assert_eq!(kind(&v, t), Some(ErrorKind::Revoked));
    }
    assert!(!v.metrics().revocations.incomplete);
}

#[test]
fn a_kid_record_without_an_end_in_the_set_is_replaced_by_one_that_ends() {
    let f = fleet();
    // As older versions wrote it (the record's fields in order), score +inf.
    let legacy = format!(r#"{{"kind":"kid","iss":"{}","value":"old-kid"}}"#, f.issuer.url());
    let _: () = redis::cmd("ZADD")
        .arg(SET)
        .arg("+inf")
        .arg(&legacy)
        .query(&mut f.raw())
        .unwrap();
    let v = f.verifier(json!({"kid_revocation_secs": DAY}));
    let end = f.clock.now_ms() + DAY * 1000;
    assert_eq!(v.revocations()[0].until_ms, Some(end));
    let endless: u64 = redis::cmd("ZCOUNT")
        .arg(SET)
        .arg("+inf")
        .arg("+inf")
        .query(&mut f.raw())
        .unwrap();
    assert_eq!(endless, 0, "the endless member is gone");
    let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(SET)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut f.raw())
        .unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0].1, end as f64, "{members:?}");
}

/// A reload while the lists are full and Redis is down: the old verifier
/// fails closed because it could not hold a fleet record; the new one,
/// built without Redis, never saw that record, so alone it would accept.
/// Inheriting the old one's trust state must inherit "incomplete" too.
#[test]
fn a_reload_while_full_and_cut_off_stays_failed_closed() {
    let mut f = fleet();
    let limits = json!({"max_entries": 2});
    let old = f.verifier(limits.clone());
    let innocent = f.token("j-innocent");
    let soon = f.clock.now_ms() + 60_000;
    let filler: Vec<Value> = (0..3)
        .map(|i| json!({"kind": "jti", "iss": f.issuer.url(), "value": format!("fill-{i}"), "until_ms": soon}))
        .collect();
    f.inject(&filler);
    eventually("the old verifier fails closed", || {
        kind(&old, &innocent) == Some(ErrorKind::RevocationListFull)
    });
    f.redis.stop();
    let cfg = f.config(limits);
    let new = Verifier::with_clock(Config::from_value(cfg).unwrap(), Arc::new(f.clock.clone())).unwrap();
    assert!(new.verify(&innocent).is_ok(), "alone, the new verifier cannot know");
    new.inherit_trust_from(&old).unwrap();
    assert_eq!(
        kind(&new, &innocent),
        Some(ErrorKind::RevocationListFull),
        "the reload reopened what the old verifier kept closed"
    );
    assert!(new.revocation_feed().unwrap().revocations_incomplete);
}
