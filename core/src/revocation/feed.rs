//! The fleet feed: revocations shared by every process through Redis.
//!
//! Redis holds two things under `revocation.redis.key_prefix`:
//!
//! * `{prefix}revocations`, a sorted set of every unexpired record (member:
//!   the record's JSON; score: when it may be forgotten, `+inf` for kid
//!   records written by older versions). It is the fleet's memory: a
//!   process reads all of it when it starts and after every reconnect, so
//!   nothing published while it was away is missed. Entries are trimmed
//!   on every write once they are `revocation.retention_margin_secs` past
//!   their score (by the writer's clock), so one process whose clock runs
//!   ahead cannot erase records the others still need.
//! * `{prefix}revocations:events`, a pub/sub channel on which each new
//!   record is announced as `{"rev": record, "at_ms": when}`.
//!
//! A `revoke_*` call writes the record and publishes it in one atomic
//! pipeline before it returns. When Redis cannot be reached the record
//! stays applied locally (and journaled) and the call reports
//! [`Propagation::Pending`](super::Propagation::Pending).
//!
//! Each verifier keeps one subscription on a background thread. After
//! subscribing (first, so nothing falls between the two) it reads the whole
//! set, then re-seeds it: every live record this process holds that the set
//! lacks is added *and published*. That one step covers revocations made
//! while Redis was unreachable, a Redis that restarted without persistence,
//! and a journal holding what the fleet never saw.
//!
//! The set is audited: on every ping the subscriber compares how many live
//! records the set holds with how many this process holds, and re-syncs
//! (re-seeding the set) when the set holds fewer, so a set deleted or
//! trimmed by hand is rebuilt within about a second by any process that
//! holds its records; and every [`AUDIT_EVERY`] (jittered) it re-syncs
//! regardless, which also catches a set whose lost members were replaced.
//!
//! A record from the feed can only add a revocation, never remove one; a
//! malformed or oversized event, or one for an issuer that is not
//! configured, is dropped and counted, never fatal. A record that cannot be
//! held because the lists are full makes the verifier fail closed
//! (`revocation_list_full`) until a re-sync holds the whole set; it is
//! tried on every ping at which the set's or this process's count of live
//! records changed since the last failed try. A publisher learns when the set holds more live records than
//! `revocation.max_entries` (the fleet shares one configuration): its
//! `revoke_*` returns `revocation_list_full` instead of "fleet". While
//! the subscription is down the process keeps serving for
//! `max_stale_secs` after it last heard from Redis, then fails closed
//! (`revocations_stale`) unless `serve_when_stale` is set; it reconnects by
//! itself. Time for staleness is the verifier's clock, so tests drive it.
//!
//! The thread is fork-safe in the way the refresher is: its stop signal is
//! `std::sync`, and a child process starts its own subscription on first use
//! (the verifier checks the fork generation on every call); the publishing
//! connection, a socket the parent also holds, is never reused in a child.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Revocation, RevocationKind, Source};
use crate::clock::Clock;
use crate::config::RedisFeedConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::fork::PerProcess;
use crate::stop::{StopOnDrop, StopSignal};

/// Largest event accepted from the channel, in bytes.
pub const MAX_EVENT_BYTES: usize = 8 * 1024;
/// How long the subscriber blocks reading before it checks its stop flag.
const POLL: Duration = Duration::from_millis(200);
/// How often an idle subscription is pinged, which is also how often
/// "last heard from Redis" advances while nothing is revoked.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Records per pipeline when re-seeding.
const SEED_CHUNK: usize = 1000;
/// How often a connected subscriber re-syncs with the fleet's set whatever
/// the counts say (jittered by ±20 %): it reads the whole set, so this is
/// the cost of catching a set whose lost members were replaced by others.
pub(crate) const AUDIT_EVERY: Duration = Duration::from_secs(300);

/// An announcement on the channel.
#[derive(Serialize, Deserialize)]
struct Event {
    rev: Revocation,
    /// When the revoking process applied it (its clock, Unix ms): the start
    /// of the propagation lag.
    at_ms: u64,
}

pub use crate::metrics::{FeedState, FeedStats};

/// What the feed needs of the trust state it feeds. Implemented by
/// [`Trust`](crate::trust::Trust), which sits above the feed: the feed calls
/// back through this trait instead of naming it.
pub(crate) trait Sink: Send + Sync + 'static {
    /// Apply a record through the door (`Trust::apply`).
    fn apply(&self, r: &Revocation, source: Source) -> Result<bool>;
    /// How many live records are held at `now_ms`.
    fn live_len(&self, now_ms: u64) -> usize;
    /// The live records held at `now_ms` (`Trust::live_revocations`).
    fn live_revocations(&self, now_ms: u64) -> Vec<Revocation>;
    /// See `Trust::feed_refusal_epoch`.
    fn feed_refusal_epoch(&self) -> u64;
    /// See `Trust::feed_synced`.
    fn feed_synced(&self, epoch: u64, held_all: bool);
    /// See `Trust::feed_short`.
    fn feed_short(&self) -> bool;
}

/// One verifier's (or revoker's) connection to the fleet feed.
pub(crate) struct Feed {
    client: redis::Client,
    /// Where Redis is, without credentials, for logs and errors.
    pub display: String,
    set: String,
    channel: String,
    timeout: Duration,
    max_stale_ms: u64,
    serve_when_stale: bool,
    /// `revocation.max_entries`: what each subscriber can hold.
    max_entries: usize,
    /// `revocation.retention_margin_secs`, in ms: how long past its end a
    /// record is kept in the set.
    retention_ms: u64,
    clock: Arc<dyn Clock>,
    /// The publishing connection, kept between revocations; this process's
    /// own (a forked child never writes on its parent's stream, nor waits
    /// on a lock a parent thread held at the fork).
    publisher: PerProcess<Mutex<Option<redis::Connection>>>,
    /// Local records whose write to Redis failed; re-seeding clears it.
    pending: Mutex<Vec<Revocation>>,
    connected: AtomicBool,
    /// Whether this feed heard from Redis itself: the contact it starts
    /// with is assumed, not heard (see [`Feed::inherit_contact`]).
    heard: AtomicBool,
    last_contact_ms: AtomicU64,
    fail_closed_at_ms: AtomicU64,
    last_event_ms: AtomicU64,
    events: AtomicU64,
    dropped: AtomicU64,
    reconnects: AtomicU64,
    lag_sum: AtomicU64,
    lag_max: AtomicU64,
}

impl Feed {
    /// A feed for `cfg`; connects nothing yet. Starts "in contact", so a
    /// process that cannot reach Redis at start serves on what it holds
    /// (journal included) for `max_stale_secs`, like a disconnect.
    pub(crate) fn new(cfg: &RedisFeedConfig, clock: Arc<dyn Clock>) -> Result<Feed> {
        let client = redis::Client::open(cfg.url.as_str()).map_err(|e| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("revocation.redis.url: {}", e.category()),
            )
        })?;
        let display = client.get_connection_info().addr().to_string();
        let now = clock.now_ms();
        let feed = Feed {
            client,
            display,
            set: format!("{}revocations", cfg.key_prefix),
            channel: format!("{}revocations:events", cfg.key_prefix),
            timeout: Duration::from_millis(cfg.timeout_ms),
            max_stale_ms: cfg.max_stale_secs.saturating_mul(1000),
            serve_when_stale: cfg.serve_when_stale,
            max_entries: usize::MAX,
            retention_ms: 0,
            clock,
            publisher: PerProcess::new(Mutex::new(None)),
            pending: Mutex::new(Vec::new()),
            connected: AtomicBool::new(false),
            heard: AtomicBool::new(false),
            last_contact_ms: AtomicU64::new(now),
            fail_closed_at_ms: AtomicU64::new(0),
            last_event_ms: AtomicU64::new(0),
            events: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            lag_sum: AtomicU64::new(0),
            lag_max: AtomicU64::new(0),
        };
        feed.contact(now);
        // Assumed, not heard: a reload's new feed takes the old one's clock.
        feed.heard.store(false, Ordering::SeqCst);
        Ok(feed)
    }

    /// The feed with the fleet's bounds: `max_entries` each process can
    /// hold, and `retention_ms` a record is kept in the set past its end.
    pub(crate) fn with_limits(mut self, max_entries: usize, retention_ms: u64) -> Feed {
        self.max_entries = max_entries;
        self.retention_ms = retention_ms;
        self
    }

    /// From when verifications fail closed for want of the feed (ms);
    /// `u64::MAX` with `serve_when_stale`.
    #[inline]
    pub(crate) fn fail_closed_at_ms(&self) -> u64 {
        self.fail_closed_at_ms.load(Ordering::Relaxed)
    }

    /// Whether this feed has heard from Redis itself (not only the contact
    /// time a reload's predecessor handed on).
    pub(crate) fn has_heard(&self) -> bool {
        self.heard.load(Ordering::SeqCst)
    }

    /// The subscription heard from Redis at `now`.
    pub(crate) fn contact(&self, now: u64) {
        self.heard.store(true, Ordering::SeqCst);
        self.last_contact_ms.fetch_max(now, Ordering::Relaxed);
        let at = if self.serve_when_stale {
            u64::MAX
        } else {
            self.last_contact_ms
                .load(Ordering::Relaxed)
                .saturating_add(self.max_stale_ms)
        };
        self.fail_closed_at_ms.store(at, Ordering::Relaxed);
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let con = self.client.get_connection_with_timeout(self.timeout)?;
        con.set_read_timeout(Some(self.timeout))?;
        con.set_write_timeout(Some(self.timeout))?;
        Ok(con)
    }

    /// Write `r` to the fleet's set and announce it. `Ok(false)` if Redis
    /// could not be reached: the record is kept, and the subscriber
    /// publishes it once Redis answers again.
    ///
    /// `revocation_list_full` if the set now holds more live records than
    /// each process can hold (`revocation.max_entries`): the record is in
    /// Redis (and in force here), but subscribers cannot all hold it. The
    /// set's count includes records of issuers not configured here and
    /// duplicates; only when it is over the limit is the set read, and the
    /// records `counts` accepts counted once per revocation.
    pub(crate) fn publish(&self, r: &Revocation, counts: impl Fn(&Revocation) -> bool) -> Result<bool> {
        match self.publish_all(std::slice::from_ref(r)) {
            Ok(live) if live > self.max_entries as u64 => {
                let held = self.read_all().map(|all| {
                    let keys: std::collections::HashSet<_> = all
                        .iter()
                        .filter(|r| counts(r))
                        .map(|r| (r.kind, r.issuer.as_str(), r.value.as_str()))
                        .collect();
                    keys.len()
                });
                match held {
                    Ok(n) if n <= self.max_entries => Ok(true),
                    Ok(n) => Err(Error::new(
                        ErrorKind::RevocationListFull,
                        format!(
                            "revocation in force in this process and written to Redis ({}), but the fleet's set \
                             holds {n} live revocations and subscribers can hold {} (revocation.max_entries): \
                             they cannot hold it and fail closed",
                            self.display, self.max_entries
                        ),
                    )),
                    Err(e) => Err(Error::new(
                        ErrorKind::RevocationListFull,
                        format!(
                            "revocation in force in this process and written to Redis ({}), but the fleet's set \
                             holds more than revocation.max_entries ({}) records and could not be read back \
                             ({e}): subscribers may not hold it",
                            self.display, self.max_entries
                        ),
                    )),
                }
            }
            Ok(_) => Ok(true),
            Err(e) => {
                log::warn!(
                    "revocation feed {}: cannot publish ({}); applied locally, not yet fleet-wide",
                    self.display,
                    e.category()
                );
                self.pending.lock().unwrap_or_else(|p| p.into_inner()).push(r.clone());
                Ok(false)
            }
        }
    }

    /// Write and announce `records` on the publishing connection. A kept
    /// connection may have died since its last use (Redis restarted, an idle
    /// timeout): one failure on it is retried once on a fresh connection.
    /// Returns how many live records the set holds afterwards.
    fn publish_all(&self, records: &[Revocation]) -> redis::RedisResult<u64> {
        let publisher = self.publisher.get(|_| Mutex::new(None));
        let mut slot = publisher.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now_ms();
        if let Some(con) = slot.as_mut() {
            if let Ok(live) = self.write_and_announce(con, records, now) {
                return Ok(live);
            }
            *slot = None;
        }
        let mut con = self.connect()?;
        let result = self.write_and_announce(&mut con, records, now);
        if result.is_ok() {
            *slot = Some(con);
        }
        result
    }

    /// Publish what earlier `publish` calls could not, now that Redis
    /// answers. Called by the subscriber while it is connected.
    fn flush_pending(&self) {
        let records = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if records.is_empty() {
            return;
        }
        match self.publish_all(&records) {
            Ok(_) => log::info!(
                "revocation feed {}: published {} pending revocations",
                self.display,
                records.len()
            ),
            Err(_) => self.pending.lock().unwrap_or_else(|p| p.into_inner()).extend(records),
        }
    }

    /// Write and announce `records`, trim what ended more than the
    /// retention margin ago, and count the set's live records (by `now`).
    fn write_and_announce(
        &self,
        con: &mut redis::Connection,
        records: &[Revocation],
        now: u64,
    ) -> redis::RedisResult<u64> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for r in records {
            pipe.cmd("ZADD").arg(&self.set).arg(score(r)).arg(r.to_json()).ignore();
            let event = Event {
                rev: r.clone(),
                at_ms: now,
            };
            let event = serde_json::to_string(&event).expect("an event always serializes");
            pipe.cmd("PUBLISH").arg(&self.channel).arg(event).ignore();
        }
        // Trimmed only on a margin: a writer whose clock runs ahead must not
        // erase a record that is live for the rest of the fleet.
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&self.set)
            .arg("-inf")
            .arg(format!("({}", now.saturating_sub(self.retention_ms)))
            .ignore();
        pipe.cmd("ZCOUNT").arg(&self.set).arg(format!("({now}")).arg("+inf");
        let (live,): (u64,) = pipe.query(con)?;
        Ok(live)
    }

    /// How many live records the fleet's set holds, and how many `trust`
    /// holds. Fewer in the set: it was deleted or trimmed by hand, or lost
    /// its data, and a sync re-seeds it.
    fn counts(&self, con: &mut redis::Connection, trust: &impl Sink) -> redis::RedisResult<(u64, u64)> {
        let now = self.clock.now_ms();
        let in_set: u64 = redis::cmd("ZCOUNT")
            .arg(&self.set)
            .arg(format!("({now}"))
            .arg("+inf")
            .query(con)?;
        Ok((in_set, trust.live_len(now) as u64))
    }

    /// Every live record the fleet's set holds; malformed members are
    /// skipped and counted.
    pub(crate) fn read_all(&self) -> std::result::Result<Vec<Revocation>, String> {
        let mut con = self.connect().map_err(|e| e.to_string())?;
        self.read_all_on(&mut con).map_err(|e| e.to_string())
    }

    fn read_all_on(&self, con: &mut redis::Connection) -> redis::RedisResult<Vec<Revocation>> {
        let now = self.clock.now_ms();
        let members: Vec<Vec<u8>> = redis::cmd("ZRANGEBYSCORE")
            .arg(&self.set)
            .arg(format!("({now}"))
            .arg("+inf")
            .query(con)?;
        Ok(members
            .iter()
            .filter_map(|m| match parse_record(m) {
                Some(r) => Some(r),
                None => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    None
                }
            })
            .collect())
    }

    /// Bring this process and the fleet's set in line: apply what the set
    /// holds, then add (and announce) what this process holds that the set
    /// lacks. Clears the pending list.
    ///
    /// Only the records missing from the set are written, so after a Redis
    /// restart the first process to reconnect re-seeds the set and the rest
    /// of the fleet, reading it back, finds nothing to add.
    ///
    /// When every live record of the set is held here, a shortfall from
    /// full lists (see `Trust::revocations_incomplete`) is cleared.
    pub(crate) fn sync(&self, trust: &impl Sink) -> redis::RedisResult<()> {
        let mut con = self.connect()?;
        let epoch = trust.feed_refusal_epoch();
        let fleet: std::collections::HashSet<Revocation> = self.read_all_on(&mut con)?.into_iter().collect();
        let (mut unknown, mut held_all) = (0u64, true);
        // Kid records of older versions, without an end (score +inf): once
        // held here (given `kid_revocation_secs` from now) they are
        // re-seeded with that end and the endless member removed, so they
        // do not live for ever by being re-read.
        let mut endless = Vec::new();
        for r in &fleet {
            let applied = trust.apply(r, Source::Feed);
            if applied.is_ok() && r.kind == RevocationKind::Kid && r.until_ms.is_none() {
                endless.push(r.to_json());
            }
            if let Err(e) = applied {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                match e.kind() {
                    ErrorKind::UnknownIssuer => unknown += 1,
                    ErrorKind::RevocationListFull => held_all = false,
                    _ => log::warn!("revocation feed {}: record refused: {e}", self.display),
                }
            }
        }
        if unknown > 0 {
            log::warn!(
                "revocation feed {}: {unknown} records in the fleet's set name issuers not configured here; ignored",
                self.display
            );
        }
        trust.feed_synced(epoch, held_all);
        let now = self.clock.now_ms();
        let missing: Vec<Revocation> = trust
            .live_revocations(now)
            .into_iter()
            .filter(|r| !fleet.contains(r))
            .collect();
        let mut announced = 0;
        for chunk in missing.chunks(SEED_CHUNK) {
            let mut pipe = redis::pipe();
            for r in chunk {
                pipe.cmd("ZADD").arg(&self.set).arg("NX").arg(score(r)).arg(r.to_json());
            }
            let added: Vec<u64> = pipe.query(&mut con)?;
            // Another process may have added some meanwhile: announce only
            // what this one added.
            let added: Vec<Revocation> = chunk
                .iter()
                .zip(added)
                .filter(|(_, n)| *n > 0)
                .map(|(r, _)| r.clone())
                .collect();
            if !added.is_empty() {
                announced += added.len();
                self.write_and_announce(&mut con, &added, now)?;
            }
        }
        if !endless.is_empty() {
            let mut pipe = redis::pipe();
            for member in &endless {
                pipe.cmd("ZREM").arg(&self.set).arg(member).ignore();
            }
            pipe.query::<()>(&mut con)?;
            log::info!(
                "revocation feed {}: {} kid revocations without an end replaced by ones that end",
                self.display,
                endless.len()
            );
        }
        if announced > 0 {
            log::info!(
                "revocation feed {}: re-seeded {announced} revocations the fleet's set lacked",
                self.display
            );
        }
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }

    /// Apply one event from the channel.
    fn on_event(&self, trust: &impl Sink, payload: &[u8]) {
        let now = self.clock.now_ms();
        let event = (payload.len() <= MAX_EVENT_BYTES)
            .then(|| serde_json::from_slice::<Event>(payload).ok())
            .flatten();
        let Some(event) = event else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "revocation feed {}: dropped a malformed event ({} bytes)",
                self.display,
                payload.len()
            );
            return;
        };
        match trust.apply(&event.rev, Source::Feed) {
            Ok(_) => {
                self.events.fetch_add(1, Ordering::Relaxed);
                self.last_event_ms.store(now, Ordering::Relaxed);
                let lag = now.saturating_sub(event.at_ms);
                self.lag_sum.fetch_add(lag, Ordering::Relaxed);
                self.lag_max.fetch_max(lag, Ordering::Relaxed);
            }
            Err(e) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // A flood for issuers not configured here is one attack, not
                // ten thousand incidents: log the 1st, 2nd, 4th, 8th, ...
                if e.kind() != ErrorKind::UnknownIssuer || n.is_power_of_two() {
                    log::warn!(
                        "revocation feed {}: event refused ({n} dropped so far): {e}",
                        self.display
                    );
                }
            }
        }
    }

    /// State and counters at `now`.
    pub(crate) fn stats(&self, now: u64) -> FeedStats {
        let state = if self.connected.load(Ordering::Relaxed) {
            FeedState::Connected
        } else if now < self.fail_closed_at_ms() {
            FeedState::Lagging
        } else {
            FeedState::FailedClosed
        };
        let last_event = self.last_event_ms.load(Ordering::Relaxed);
        let events = self.events.load(Ordering::Relaxed);
        FeedStats {
            state,
            last_contact_age_ms: now.saturating_sub(self.last_contact_ms.load(Ordering::Relaxed)),
            last_event_age_ms: (events > 0).then(|| now.saturating_sub(last_event)),
            events,
            dropped_events: self.dropped.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            pending: self.pending.lock().unwrap_or_else(|p| p.into_inner()).len() as u64,
            lag_ms_sum: self.lag_sum.load(Ordering::Relaxed),
            lag_ms_max: self.lag_max.load(Ordering::Relaxed),
            // Filled in by the trust state, which knows them.
            revocations_incomplete: false,
            refused_for_room: 0,
        }
    }

    /// A reload: take over `old`'s staleness clock and its unpublished
    /// records, so a new verifier built while Redis is unreachable fails
    /// closed when the old one would have (a reload must not grant another
    /// `max_stale_secs` without the feed), and reports what is still
    /// pending.
    ///
    /// A feed that has heard from Redis itself since it was built keeps its
    /// own, real contact. A contact racing this call can leave the deadline
    /// at the old one's until the subscription's next ping (a second):
    /// early, never late.
    pub(crate) fn inherit_contact(&self, old: &Feed) {
        let pending = old.pending.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if !pending.is_empty() {
            let mut mine = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for r in pending {
                if !mine.contains(&r) {
                    mine.push(r);
                }
            }
        }
        if self.heard.load(Ordering::SeqCst) {
            return;
        }
        let old_last = old.last_contact_ms.load(Ordering::SeqCst);
        self.last_contact_ms.fetch_min(old_last, Ordering::SeqCst);
        let at = if self.serve_when_stale {
            u64::MAX
        } else {
            self.last_contact_ms
                .load(Ordering::SeqCst)
                .saturating_add(self.max_stale_ms)
        };
        self.fail_closed_at_ms.store(at, Ordering::Relaxed);
        if self.heard.load(Ordering::SeqCst) {
            // Heard meanwhile: that contact is real, and current.
            self.contact(self.clock.now_ms());
        }
    }
}

/// A member of the set, checked like any record.
fn parse_record(bytes: &[u8]) -> Option<Revocation> {
    if bytes.len() > MAX_EVENT_BYTES {
        return None;
    }
    serde_json::from_slice::<Revocation>(bytes)
        .ok()
        .filter(|r| r.validate().is_ok())
}

fn score(r: &Revocation) -> String {
    r.until_ms.map_or_else(|| "+inf".to_string(), |u| u.to_string())
}

/// Handle to the subscriber thread; dropping it stops the thread (within
/// one poll interval).
pub(crate) struct Subscriber {
    _stop: StopOnDrop,
}

impl Subscriber {
    /// Start the subscription of `trust`'s feed on a background thread.
    pub(crate) fn spawn<T: Sink>(feed: Arc<Feed>, trust: Weak<T>) -> Option<Subscriber> {
        match crate::stop::spawn("jwtwarden-revocations", move |stop| run(&feed, &trust, &stop)) {
            Ok(handle) => Some(Subscriber { _stop: handle }),
            Err(e) => {
                log::error!("cannot start the revocation feed thread: {e}");
                None
            }
        }
    }
}

fn run<T: Sink>(feed: &Feed, trust: &Weak<T>, stop: &StopSignal) {
    let mut backoff = BACKOFF_MIN;
    let mut sessions = 0u64;
    while !stop.stopped() {
        let started = Instant::now();
        let result = session(feed, trust, stop, &mut sessions);
        feed.connected.store(false, Ordering::Relaxed);
        match result {
            Ok(()) => return,
            Err(e) => log::warn!("revocation feed {}: subscription lost: {e}", feed.display),
        }
        // A session that lived a while starts the backoff afresh.
        if started.elapsed() > BACKOFF_MAX * 4 {
            backoff = BACKOFF_MIN;
        }
        // Jittered, so a fleet cut off together does not reconnect (and
        // read the whole set) in lockstep.
        if stop.pause(backoff.mul_f64(0.5 + fastrand::f64())) {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One subscription, from connecting to losing it. `Ok` when stopped (or
/// the verifier is gone).
fn session<T: Sink>(
    feed: &Feed,
    trust: &Weak<T>,
    stop: &StopSignal,
    sessions: &mut u64,
) -> std::result::Result<(), String> {
    let mut con = feed.connect().map_err(|e| e.to_string())?;
    con.set_read_timeout(Some(POLL)).map_err(|e| e.to_string())?;
    let mut sub = con.as_pubsub();
    sub.subscribe(&feed.channel).map_err(|e| e.to_string())?;
    {
        let Some(t) = trust.upgrade() else { return Ok(()) };
        feed.sync(&*t).map_err(|e| e.to_string())?;
    }
    feed.contact(feed.clock.now_ms());
    feed.connected.store(true, Ordering::Relaxed);
    if *sessions > 0 {
        feed.reconnects.fetch_add(1, Ordering::Relaxed);
        log::info!("revocation feed {}: reconnected and in sync", feed.display);
    }
    *sessions += 1;
    let mut pinged = Instant::now();
    // A second connection for the audit: the subscription's is in pub/sub
    // mode and cannot count the set.
    let mut audit: Option<redis::Connection> = None;
    let mut audit_at = Instant::now() + AUDIT_EVERY.mul_f64(0.8 + 0.4 * fastrand::f64());
    // The counts after a sync that could not hold the whole set: while
    // neither changes (nothing added, nothing expired), another sync would
    // fail the same way, and is not worth reading the whole set for.
    let mut failed_at: Option<(u64, u64)> = None;
    loop {
        if stop.stopped() {
            return Ok(());
        }
        match sub.get_message() {
            Ok(msg) => {
                let Some(t) = trust.upgrade() else { return Ok(()) };
                feed.on_event(&*t, msg.get_payload_bytes());
                feed.contact(feed.clock.now_ms());
            }
            Err(e) if e.is_timeout() => {
                feed.flush_pending();
                if pinged.elapsed() >= PING_EVERY {
                    // The answer gets the configured timeout, not the poll
                    // interval: a Redis that pauses a few hundred ms (a
                    // fork for a snapshot, a slow command) is not lost.
                    sub.set_read_timeout(Some(feed.timeout)).map_err(|e| e.to_string())?;
                    sub.ping::<redis::Value>().map_err(|e| e.to_string())?;
                    sub.set_read_timeout(Some(POLL)).map_err(|e| e.to_string())?;
                    pinged = Instant::now();
                    feed.contact(feed.clock.now_ms());
                    let Some(t) = trust.upgrade() else { return Ok(()) };
                    let con = match audit.as_mut() {
                        Some(con) => con,
                        None => audit.insert(feed.connect().map_err(|e| e.to_string())?),
                    };
                    // Lists full: retry until the whole set is held. A set
                    // holding fewer live records than this process: it was
                    // deleted or trimmed, re-seed it. And now and then
                    // whatever the counts say.
                    let due = Instant::now() >= audit_at;
                    let (in_set, held) = feed.counts(con, &*t).map_err(|e| e.to_string())?;
                    let retry = t.feed_short() && failed_at != Some((in_set, held));
                    if in_set < held && !retry && !due {
                        log::warn!(
                            "revocation feed {}: the fleet's set holds {in_set} live revocations, this process \
                             {held}: it lost some; re-seeding it",
                            feed.display
                        );
                    }
                    if retry || due || in_set < held {
                        feed.sync(&*t).map_err(|e| e.to_string())?;
                        audit_at = Instant::now() + AUDIT_EVERY.mul_f64(0.8 + 0.4 * fastrand::f64());
                        failed_at = match t.feed_short() {
                            true => Some(feed.counts(con, &*t).map_err(|e| e.to_string())?),
                            false => None,
                        };
                    }
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}
