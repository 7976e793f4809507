//! The one door for trust changes.
//!
//! Everything a cached "valid" depends on besides the token itself — the
//! issuers' keys, revoked kids, `jti` and subject revocations, the policy
//! version — changes only through [`Trust`], whether the change comes from a
//! refresh, a local `revoke_*` call, the journal at start or the fleet feed.
//! Each writer takes the door ([`Door::enter`]) and its writing methods
//! demand the proof of it ([`Inside`]), so two changes can never interleave:
//! a refresh computing its new key set and a `revoke_kid` are serialized,
//! and a refresh can never reinstall a key that was revoked while it was
//! fetching. Every change bumps the counter that cached results are stamped
//! with (the key epoch, the revocation generation, the policy version)
//! before the door is released.
//!
//! Slow work stays outside the door: fetching happens before an install, the
//! journal's fsync and the publication to Redis after a revocation is
//! applied (it is in force locally the moment the door is released).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::keystore::KeyStore;
use crate::revocation::feed::{Feed, FeedStats, Subscriber};
use crate::revocation::journal::Journal;
use crate::revocation::{Propagation, Revocation, RevocationKind, Revocations, Source, ANY_ISSUER};

/// The lock every trust change takes.
#[derive(Default)]
pub(crate) struct Door(Mutex<()>);

/// Proof that the caller holds the door; writers of trust state take one.
pub(crate) struct Inside<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

impl Door {
    /// Wait for the door and hold it until the returned proof is dropped.
    pub(crate) fn enter(&self) -> Inside<'_> {
        Inside(self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Revocations applied, by where they came from.
#[derive(Default)]
pub(crate) struct SourceCounts {
    pub local: AtomicU64,
    pub journal: AtomicU64,
    pub feed: AtomicU64,
}

/// A verifier's trust state (apart from the keys themselves, which each
/// issuer's [`KeyStore`] holds) and the door to all of it.
pub(crate) struct Trust {
    door: Door,
    pub revocations: Revocations,
    policy_version: AtomicU64,
    /// The configured issuers' names: a revocation names one, or `"*"`.
    issuers: Vec<Arc<str>>,
    /// Each issuer's key store, for kid revocations (none in a `Revoker`).
    keystores: Vec<(Arc<str>, Arc<KeyStore>)>,
    journal: Option<Journal>,
    pub feed: Option<Arc<Feed>>,
    /// The feed's subscription and the fork generation it runs in.
    subscriber: Mutex<Option<(u64, Subscriber)>>,
    pub applied: SourceCounts,
    pub clock: Arc<dyn Clock>,
    /// `revocation.max_token_lifetime_secs`, in ms.
    default_lifetime_ms: u64,
}

impl Trust {
    /// The trust state for `config`: the journal (with `state_dir`) replayed
    /// and compacted, and the fleet feed (with `revocation.redis`) set up but
    /// not yet connected.
    pub(crate) fn new(
        config: &Config,
        clock: Arc<dyn Clock>,
        keystores: Vec<(Arc<str>, Arc<KeyStore>)>,
    ) -> Result<Trust> {
        let feed = match &config.revocation.redis {
            Some(cfg) => Some(Arc::new(Feed::new(cfg, clock.clone())?)),
            None => None,
        };
        let now = clock.now_ms();
        let (journal, replay) = match &config.state_dir {
            Some(dir) => {
                let (j, live) = Journal::open(dir, now).map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidConfig,
                        format!("state_dir {}: cannot open the revocation journal: {e}", dir.display()),
                    )
                })?;
                (Some(j), live)
            }
            None => (None, Vec::new()),
        };
        let trust = Trust {
            door: Door::default(),
            revocations: Revocations::new(config.revocation.max_entries),
            policy_version: AtomicU64::new(0),
            issuers: config.issuers.iter().map(|i| Arc::from(i.issuer.as_str())).collect(),
            keystores,
            journal,
            feed,
            subscriber: Mutex::new(None),
            applied: SourceCounts::default(),
            clock,
            default_lifetime_ms: config.revocation.max_token_lifetime_secs.saturating_mul(1000),
        };
        for r in &replay {
            // A record that no longer fits (a smaller max_entries) is
            // refused loudly rather than silently forgotten.
            if let Err(e) = trust.apply(r, Source::Journal) {
                log::error!("revocation journal: record not restored: {e}");
            }
        }
        Ok(trust)
    }

    /// Enter the door (for the key stores' writers).
    pub(crate) fn enter(&self) -> Inside<'_> {
        self.door.enter()
    }

    /// Apply a validated record through the door. `Ok(true)` if it changed
    /// anything.
    pub(crate) fn apply(&self, r: &Revocation, source: Source) -> Result<bool> {
        r.validate()?;
        let now = self.clock.now_ms();
        let inside = self.door.enter();
        let changed = self.revocations.add(&inside, r, now)?;
        if changed && r.kind == RevocationKind::Kid {
            for (_, store) in self.keystores.iter().filter(|(name, _)| covers(&r.issuer, name)) {
                store.revoke(&inside, &r.value);
            }
        }
        drop(inside);
        if changed {
            let counter = match source {
                Source::Local => &self.applied.local,
                Source::Journal => &self.applied.journal,
                Source::Feed => &self.applied.feed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if r.kind == RevocationKind::Kid {
                log::warn!(
                    "kid {:?} of {} revoked ({source:?})",
                    crate::token::truncate(&r.value),
                    r.issuer
                );
            }
            // A feed record is journaled too, so a restart with Redis down
            // still knows it; without an fsync each (Redis holds it).
            if source == Source::Feed {
                self.journal_append(r, false);
            }
        }
        Ok(changed)
    }

    /// A revocation made here: applied now, journaled (fsynced) and
    /// published to the fleet before this returns. The issuer must be
    /// configured, or `"*"`.
    pub(crate) fn revoke(&self, r: Revocation) -> Result<Propagation> {
        if r.issuer != ANY_ISSUER && !self.issuers.iter().any(|name| **name == *r.issuer) {
            return Err(Error::new(
                ErrorKind::UnknownIssuer,
                format!(
                    "issuer {:?} is not configured (use \"*\" to revoke for every issuer)",
                    crate::token::truncate(&r.issuer)
                ),
            ));
        }
        self.apply(&r, Source::Local)?;
        if let Some(j) = &self.journal {
            j.append(&r, true).map_err(|e| {
                Error::new(
                    ErrorKind::RevocationNotPersisted,
                    format!("revocation in force in this process, but not written to the journal: {e}"),
                )
            })?;
        }
        Ok(match &self.feed {
            None => Propagation::Local,
            Some(feed) if feed.publish(&r) => Propagation::Fleet,
            Some(_) => Propagation::Pending,
        })
    }

    /// Apply what other processes sharing `state_dir` appended to the
    /// journal since the last call (a `jwtwarden revoke` beside a server),
    /// as journal records. Nothing without `state_dir`. For a background
    /// thread: it opens and reads a file.
    pub(crate) fn apply_journal_appends(&self) {
        let Some(j) = &self.journal else { return };
        for r in j.poll(self.clock.now_ms()) {
            if let Err(e) = self.apply(&r, Source::Journal) {
                log::error!("revocation journal: record not applied: {e}");
            }
        }
    }

    /// Whether revocations are journaled (`state_dir`).
    pub(crate) fn has_journal(&self) -> bool {
        self.journal.is_some()
    }

    fn journal_append(&self, r: &Revocation, durable: bool) {
        if let Some(j) = &self.journal {
            if let Err(e) = j.append(r, durable) {
                log::error!("revocation journal: cannot append: {e}");
            }
        }
    }

    /// A `jti` revocation record, kept until the token expires (plus a
    /// minute of slack for leeway) or, without an expiry, for
    /// `revocation.max_token_lifetime_secs`.
    pub(crate) fn jti_record(&self, issuer: &str, jti: &str, expires_at_secs: Option<u64>) -> Revocation {
        let until = match expires_at_secs {
            Some(exp) => exp.saturating_add(60).saturating_mul(1000),
            None => self.clock.now_ms().saturating_add(self.default_lifetime_ms),
        };
        Revocation {
            kind: RevocationKind::Jti,
            issuer: issuer.to_owned(),
            value: jti.to_owned(),
            issued_before: None,
            until_ms: Some(until),
        }
    }

    /// A subject revocation record, kept for
    /// `revocation.max_token_lifetime_secs` after its cut-off.
    pub(crate) fn subject_record(&self, issuer: &str, sub: &str, issued_before_secs: u64) -> Revocation {
        Revocation {
            kind: RevocationKind::Subject,
            issuer: issuer.to_owned(),
            value: sub.to_owned(),
            issued_before: Some(issued_before_secs),
            until_ms: Some(
                issued_before_secs
                    .saturating_mul(1000)
                    .saturating_add(self.default_lifetime_ms),
            ),
        }
    }

    /// A kid revocation record, kept for good.
    pub(crate) fn kid_record(issuer: &str, kid: &str) -> Revocation {
        Revocation {
            kind: RevocationKind::Kid,
            issuer: issuer.to_owned(),
            value: kid.to_owned(),
            issued_before: None,
            until_ms: None,
        }
    }

    /// Every live revocation held here.
    pub(crate) fn live_revocations(&self, now_ms: u64) -> Vec<Revocation> {
        self.revocations.live(now_ms)
    }

    /// Invalidate every cached result. Returns the new policy version.
    pub(crate) fn bump_policy_version(&self) -> u64 {
        let _inside = self.door.enter();
        self.policy_version.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The current policy version.
    #[inline]
    pub(crate) fn policy_version(&self) -> u64 {
        self.policy_version.load(Ordering::SeqCst)
    }

    /// From when verifications fail closed for want of the fleet feed (ms);
    /// `u64::MAX` without a feed.
    #[inline]
    pub(crate) fn feed_fail_closed_at_ms(&self) -> u64 {
        self.feed.as_ref().map_or(u64::MAX, |f| f.fail_closed_at_ms())
    }

    /// The feed's state, if there is a feed.
    pub(crate) fn feed_stats(&self) -> Option<FeedStats> {
        Some(self.feed.as_ref()?.stats(self.clock.now_ms()))
    }

    /// Bring this process and the fleet's set in line now (at start, so
    /// the first verification already knows the fleet's revocations). A
    /// failure is logged: the subscription keeps trying.
    pub(crate) fn sync_feed_now(&self) {
        if let Some(feed) = &self.feed {
            match feed.sync(self) {
                Ok(()) => feed.contact(self.clock.now_ms()),
                Err(e) => log::warn!("revocation feed {}: not reachable at start: {e}", feed.display),
            }
        }
    }

    /// Every live record in the fleet's set (Redis).
    pub(crate) fn fleet_revocations(&self) -> Result<Vec<Revocation>> {
        let feed = self
            .feed
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::InvalidConfig, "revocation.redis is not configured"))?;
        feed.read_all().map_err(|e| {
            Error::new(
                ErrorKind::RevocationsStale,
                format!("revocation feed {}: {e}", feed.display),
            )
        })
    }

    /// Start (or, in a forked child, restart) the feed's subscription.
    /// Cheap when it already runs in this process.
    pub(crate) fn ensure_subscribed(self: &Arc<Self>) {
        let Some(feed) = &self.feed else { return };
        let generation = crate::fork::generation();
        let mut slot = self.subscriber.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|(g, _)| *g == generation) {
            return;
        }
        // The parent's thread does not exist in a child: forget its handle
        // (see the refresher for why it is not dropped).
        if let Some(old) = slot.take() {
            std::mem::forget(old);
        }
        *slot = Subscriber::spawn(feed.clone(), Arc::downgrade(self)).map(|s| (generation, s));
    }

    /// A reload: carry `old`'s trust state into this one, through the door.
    /// Every live revocation `old` holds, whatever its source (local,
    /// journal, feed), kid revocations removing the key here too; the
    /// policy version raised to at least `old`'s; the feed's staleness
    /// clock and unpublished records. Nothing is journaled or published:
    /// `old` did that when it learned them. Returns how many records
    /// changed anything here; `revocation_list_full` if this one cannot
    /// hold them all (it then holds some: do not put it in service).
    pub(crate) fn inherit_from(&self, old: &Trust) -> Result<usize> {
        let now = self.clock.now_ms();
        let records = old.live_revocations(now);
        let mut changed = 0;
        let inside = self.door.enter();
        for r in &records {
            if self.revocations.add(&inside, r, now)? {
                changed += 1;
                if r.kind == RevocationKind::Kid {
                    for (_, store) in self.keystores.iter().filter(|(name, _)| covers(&r.issuer, name)) {
                        store.revoke(&inside, &r.value);
                    }
                }
            }
        }
        self.policy_version.fetch_max(old.policy_version(), Ordering::SeqCst);
        drop(inside);
        if let (Some(feed), Some(old_feed)) = (&self.feed, &old.feed) {
            feed.inherit_contact(old_feed);
        }
        Ok(changed)
    }
}

/// Whether a record scoped to `scope` covers the issuer `name`.
fn covers(scope: &str, name: &str) -> bool {
    scope == ANY_ISSUER || scope == name
}
