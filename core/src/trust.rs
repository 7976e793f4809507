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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::Clock;
use crate::config::Config;
use crate::door::{Door, Inside};
use crate::error::{Error, ErrorKind, Result};
use crate::keystore::KeyStore;
use crate::revocation::feed::{Feed, FeedStats, Sink, Subscriber};
use crate::revocation::journal::Journal;
use crate::revocation::{Propagation, Revocation, RevocationKind, Revocations, Source, ANY_ISSUER};

/// Revocations applied, by where they came from.
#[derive(Default)]
pub(crate) struct SourceCounts {
    pub local: AtomicU64,
    pub journal: AtomicU64,
    pub feed: AtomicU64,
}

/// How long records are kept past the last instant a covered token could
/// be accepted, for clocks that differ by a little between processes.
pub(crate) const RECORD_MARGIN_MS: u64 = 60_000;

/// One configured issuer's clock window, to size how long a record for its
/// tokens is kept.
struct Window {
    leeway_ms: u64,
    /// `issuers[].max_token_lifetime_secs`, in ms, if set.
    lifetime_ms: Option<u64>,
}

/// Records from the journal or the feed that could not be held because the
/// lists were full. While any may be missing, verification fails closed
/// (`revocation_list_full`): a revocation reported in force elsewhere is
/// never silently dropped here.
#[derive(Default)]
struct Shortfall {
    /// Something may be missing: the feed's or the journal's part below.
    incomplete: AtomicBool,
    /// A feed record was refused since the last sync that held the whole
    /// fleet's set.
    feed: AtomicBool,
    /// Bumped at each feed refusal, so a sync clears only what it saw.
    feed_epoch: AtomicU64,
    /// Journal records refused, retried until held or expired. Its lock
    /// also serializes every change of the flags above (taken before the
    /// door, never inside it), so a refusal and a recovery cannot
    /// interleave into "complete" with a record missing.
    unheld: Mutex<Vec<Revocation>>,
    /// When `unheld` was last retried (ms).
    retried_ms: AtomicU64,
    /// Records refused for want of room, in all.
    refused: AtomicU64,
}

/// A verifier's trust state (apart from the keys themselves, which each
/// issuer's [`KeyStore`] holds) and the door to all of it.
pub(crate) struct Trust {
    door: Door,
    pub revocations: Revocations,
    policy_version: AtomicU64,
    /// The configured issuers, their key stores, windows and templates:
    /// replaced when the verifier's issuers change at runtime.
    roster: parking_lot::RwLock<Roster>,
    journal: Option<Journal>,
    pub feed: Option<Arc<Feed>>,
    /// The feed's subscription and the fork generation it runs in.
    subscriber: Mutex<Option<(u64, Subscriber)>>,
    pub applied: SourceCounts,
    pub clock: Arc<dyn Clock>,
    /// `revocation.max_token_lifetime_secs`, in ms.
    default_lifetime_ms: u64,
    /// `revocation.kid_revocation_secs`, in ms.
    kid_ms: u64,
    /// Records refused for want of room.
    shortfall: Shortfall,
}

/// What the trust state knows of the configured issuers.
struct Roster {
    /// The configured issuers' names: a revocation names one, or `"*"`.
    issuers: Vec<Arc<str>>,
    /// Each issuer's key store, for kid revocations (none in a `Revoker`).
    keystores: Vec<(Arc<str>, Arc<KeyStore>)>,
    /// Each configured issuer's leeway and lifetime cap, as `issuers`.
    windows: Vec<Window>,
    /// Issuer templates: a revocation may name one of their tenants.
    templates: Vec<crate::template::Template>,
    /// Issuers removed at runtime (`Verifier::remove_issuer`, `reload`):
    /// revocations naming them are still held, from every source, until
    /// they expire, so that adding the issuer again honours them.
    retired: Vec<Arc<str>>,
    /// Templates removed at runtime, likewise (their tenants' revocations).
    retired_templates: Vec<crate::template::Template>,
}

impl Roster {
    fn new(config: &Config, keystores: Vec<(Arc<str>, Arc<KeyStore>)>) -> Roster {
        Roster {
            issuers: config.issuers.iter().map(|i| Arc::from(i.issuer.as_str())).collect(),
            keystores,
            windows: config
                .issuers
                .iter()
                .map(|i| Window {
                    leeway_ms: i.leeway_secs.saturating_mul(1000),
                    lifetime_ms: i.max_token_lifetime_secs.map(|l| l.saturating_mul(1000)),
                })
                .collect(),
            templates: config
                .issuer_templates
                .iter()
                .filter_map(|t| crate::template::Template::new(&t.spec(), config.http.allow_http).ok())
                .collect(),
            retired: Vec::new(),
            retired_templates: Vec::new(),
        }
    }

    /// Whether a revocation may name `issuer` (besides `"*"`).
    fn names(&self, issuer: &str) -> bool {
        let tenant = |t: &crate::template::Template| matches!(t.tenant_of(issuer), Some(Ok(_)));
        self.issuers.iter().chain(&self.retired).any(|name| **name == *issuer)
            || self.templates.iter().chain(&self.retired_templates).any(tenant)
    }
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
            Some(cfg) => Some(Arc::new(Feed::new(cfg, clock.clone())?.with_limits(
                config.revocation.max_entries,
                config.revocation.retention_margin_secs.saturating_mul(1000),
            ))),
            None => None,
        };
        let now = clock.now_ms();
        let (journal, replay) = match &config.state_dir {
            Some(dir) => {
                let margin_ms = config.revocation.retention_margin_secs.saturating_mul(1000);
                let (j, live) = Journal::open(dir, now, margin_ms).map_err(|e| {
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
            roster: parking_lot::RwLock::new(Roster::new(config, keystores)),
            journal,
            feed,
            subscriber: Mutex::new(None),
            applied: SourceCounts::default(),
            clock,
            default_lifetime_ms: config.revocation.max_token_lifetime_secs.saturating_mul(1000),
            kid_ms: config.revocation.kid_revocation_secs.saturating_mul(1000),
            shortfall: Shortfall::default(),
        };
        for r in &replay {
            // A record that no longer fits (a smaller max_entries) is
            // refused loudly rather than silently forgotten: verification
            // fails closed until it is held (see `Shortfall`).
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

    /// Whether a revocation may name `issuer`: a configured one, or `"*"`.
    pub(crate) fn names_known_issuer(&self, issuer: &str) -> bool {
        issuer == ANY_ISSUER || self.roster.read().names(issuer)
    }

    /// The configured issuers changed at runtime (`Verifier::reload`):
    /// take `config`'s issuers and templates, and these key stores. Every
    /// revocation held stays held (those of an issuer no longer configured
    /// until they expire, so that adding it again honours them); the live
    /// kid revocations are applied to the key stores not seen before.
    pub(crate) fn set_roster(&self, config: &Config, keystores: Vec<(Arc<str>, Arc<KeyStore>)>) {
        // Inside the door: no kid revocation lands between reading them and
        // the new key stores taking them.
        let inside = self.door.enter();
        let now = self.clock.now_ms();
        let kids: Vec<Revocation> = self
            .live_revocations(now)
            .into_iter()
            .filter(|r| r.kind == RevocationKind::Kid)
            .collect();
        let mut roster = self.roster.write();
        let new_stores: Vec<(Arc<str>, Arc<KeyStore>)> = keystores
            .iter()
            .filter(|(_, store)| !roster.keystores.iter().any(|(_, old)| Arc::ptr_eq(old, store)))
            .cloned()
            .collect();
        let old = std::mem::replace(&mut *roster, Roster::new(config, keystores));
        let mut retired: Vec<Arc<str>> = old
            .retired
            .into_iter()
            .chain(old.issuers)
            .filter(|name| !roster.issuers.contains(name))
            .collect();
        retired.sort();
        retired.dedup();
        let mut retired_templates: Vec<crate::template::Template> = Vec::new();
        for t in old.retired_templates.into_iter().chain(old.templates) {
            let name = t.name();
            let held = roster
                .templates
                .iter()
                .chain(&retired_templates)
                .any(|n| n.name() == name);
            if !held {
                retired_templates.push(t);
            }
        }
        roster.retired = retired;
        roster.retired_templates = retired_templates;
        drop(roster);
        for r in &kids {
            for (_, store) in new_stores.iter().filter(|(name, _)| covers(&r.issuer, name)) {
                store.revoke(&inside, &r.value);
            }
        }
    }

    /// Apply a validated record through the door. `Ok(true)` if it changed
    /// anything.
    ///
    /// A record from the journal or the feed for an issuer that is neither
    /// configured nor `"*"` is refused (`unknown_issuer`) before it takes
    /// any room: nobody here could be holding such a token. A record that
    /// cannot be held because the lists are full is refused
    /// (`revocation_list_full`) and, from the journal or the feed, turns
    /// verification off until it is held (see [`Trust::revocations_incomplete`]).
    pub(crate) fn apply(&self, r: &Revocation, source: Source) -> Result<bool> {
        r.validate()?;
        if source != Source::Local && !self.names_known_issuer(&r.issuer) {
            return Err(Error::new(
                ErrorKind::UnknownIssuer,
                format!(
                    "revocation for issuer {:?}, which is not configured here",
                    crate::token::truncate(&r.issuer)
                ),
            ));
        }
        let now = self.clock.now_ms();
        let normalized;
        let r = if r.kind == RevocationKind::Kid && r.until_ms.is_none() {
            // A kid record of an older version, which had no end.
            normalized = Revocation {
                until_ms: Some(now.saturating_add(self.kid_ms)),
                ..r.clone()
            };
            &normalized
        } else {
            r
        };
        let inside = self.door.enter();
        let changed = match self.revocations.add(&inside, r, now) {
            Ok(changed) => changed,
            Err(e) => {
                drop(inside);
                if e.kind() == ErrorKind::RevocationListFull && source != Source::Local {
                    self.refused_for_room(r, source, &e);
                }
                return Err(e);
            }
        };
        if changed && r.kind == RevocationKind::Kid {
            for (_, store) in self
                .roster
                .read()
                .keystores
                .iter()
                .filter(|(name, _)| covers(&r.issuer, name))
            {
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
        if !self.names_known_issuer(&r.issuer) {
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
            Some(feed) if feed.publish(&r, |r| self.names_known_issuer(&r.issuer))? => Propagation::Fleet,
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

    /// A journal or feed record could not be held: fail closed until it is.
    fn refused_for_room(&self, r: &Revocation, source: Source, e: &Error) {
        let s = &self.shortfall;
        s.refused.fetch_add(1, Ordering::Relaxed);
        let mut unheld = s.unheld.lock().unwrap_or_else(|p| p.into_inner());
        match source {
            Source::Feed => {
                s.feed_epoch.fetch_add(1, Ordering::SeqCst);
                s.feed.store(true, Ordering::SeqCst);
            }
            _ => unheld.push(r.clone()),
        }
        if !s.incomplete.swap(true, Ordering::SeqCst) {
            log::error!(
                "revocations incomplete: a {} revocation ({source:?}) cannot be held: {e}; \
                 every verification fails (revocation_list_full) until it is",
                r.kind.as_str()
            );
        }
    }

    /// Whether a revocation this process should hold may be missing because
    /// the lists were full: then every verification, cached or not, fails
    /// with `revocation_list_full`. Cleared once a sync of the fleet's set
    /// held all of it (the subscriber retries on its ping cadence) and the
    /// journal's refused records are held; those are retried here at most
    /// once a second.
    pub(crate) fn revocations_incomplete(&self, now_ms: u64) -> bool {
        let s = &self.shortfall;
        if !s.incomplete.load(Ordering::SeqCst) {
            return false;
        }
        if now_ms >= s.retried_ms.load(Ordering::Relaxed).saturating_add(1000) {
            s.retried_ms.store(now_ms, Ordering::Relaxed);
            self.retry_unheld();
        }
        s.incomplete.load(Ordering::SeqCst)
    }

    /// Try the refused journal records again; recompute the state.
    fn retry_unheld(&self) {
        let s = &self.shortfall;
        let mut unheld = s.unheld.lock().unwrap_or_else(|p| p.into_inner());
        self.retry_unheld_locked(&mut unheld);
    }

    fn retry_unheld_locked(&self, unheld: &mut Vec<Revocation>) {
        let now = self.clock.now_ms();
        let records = std::mem::take(unheld);
        let mut still = Vec::new();
        for r in records.into_iter().filter(|r| r.is_live(now)) {
            let inside = self.door.enter();
            match self.revocations.add(&inside, &r, now) {
                Ok(_) => {
                    if r.kind == RevocationKind::Kid {
                        for (_, store) in self
                            .roster
                            .read()
                            .keystores
                            .iter()
                            .filter(|(name, _)| covers(&r.issuer, name))
                        {
                            store.revoke(&inside, &r.value);
                        }
                    }
                }
                Err(_) => still.push(r),
            }
        }
        unheld.extend(still);
        self.recompute_shortfall(unheld.is_empty());
    }

    /// With the `unheld` lock held.
    fn recompute_shortfall(&self, journal_held: bool) {
        let s = &self.shortfall;
        let incomplete = s.feed.load(Ordering::SeqCst) || !journal_held;
        if s.incomplete.swap(incomplete, Ordering::SeqCst) && !incomplete {
            log::warn!("revocations complete again: verification resumes");
        }
    }

    /// The feed's refusal count, read when a sync starts.
    pub(crate) fn feed_refusal_epoch(&self) -> u64 {
        self.shortfall.feed_epoch.load(Ordering::SeqCst)
    }

    /// A sync that started at `epoch` ended; `held_all`: every live record
    /// of the fleet's set is held. Clears the feed's shortfall only if no
    /// refusal happened since the sync started.
    pub(crate) fn feed_synced(&self, epoch: u64, held_all: bool) {
        let s = &self.shortfall;
        let mut unheld = s.unheld.lock().unwrap_or_else(|p| p.into_inner());
        if held_all && s.feed_epoch.load(Ordering::SeqCst) == epoch {
            s.feed.store(false, Ordering::SeqCst);
        }
        self.retry_unheld_locked(&mut unheld);
    }

    /// Whether the feed's part of the shortfall is set (the subscriber
    /// re-syncs while it is, whenever the counts of live records change).
    pub(crate) fn feed_short(&self) -> bool {
        self.shortfall.feed.load(Ordering::SeqCst)
    }

    /// Records refused for want of room so far.
    pub(crate) fn refused_for_room_count(&self) -> u64 {
        self.shortfall.refused.load(Ordering::Relaxed)
    }

    fn journal_append(&self, r: &Revocation, durable: bool) {
        if let Some(j) = &self.journal {
            if let Err(e) = j.append(r, durable) {
                log::error!("revocation journal: cannot append: {e}");
            }
        }
    }

    /// The widest clock window over the issuers `scope` covers (every
    /// issuer for `"*"`): the largest leeway, and the largest
    /// `max(revocation.max_token_lifetime_secs, the issuer's
    /// max_token_lifetime_secs) + leeway`, in ms.
    fn window(&self, scope: &str) -> (u64, u64) {
        let roster = self.roster.read();
        let covered = || {
            roster
                .issuers
                .iter()
                .zip(&roster.windows)
                .filter(|(name, _)| covers(scope, name))
                .map(|(_, w)| w)
        };
        let windows: Vec<&Window> = if covered().next().is_some() {
            covered().collect()
        } else {
            roster.windows.iter().collect()
        };
        let leeway = windows.iter().map(|w| w.leeway_ms).max().unwrap_or(0);
        let life = windows
            .iter()
            .map(|w| {
                self.default_lifetime_ms
                    .max(w.lifetime_ms.unwrap_or(0))
                    .saturating_add(w.leeway_ms)
            })
            .max()
            .unwrap_or(self.default_lifetime_ms);
        (leeway, life)
    }

    /// A `jti` revocation record. With the token's `exp`, it is kept until
    /// `exp + leeway` (the issuer's `leeway_secs`; for `"*"` the largest of
    /// all issuers), the last instant the token can be accepted, plus a
    /// minute ([`RECORD_MARGIN_MS`]). Without it, for the longest a token
    /// issued now may live: `max(revocation.max_token_lifetime_secs, the
    /// issuer's max_token_lifetime_secs) + leeway`, plus the minute.
    ///
    /// Not bounded: a wrong (too early) `exp` given by the caller, and,
    /// without `exp`, a token that lives longer than that lifetime (an
    /// issuer without `max_token_lifetime_secs` may issue one).
    pub(crate) fn jti_record(&self, issuer: &str, jti: &str, expires_at_secs: Option<u64>) -> Revocation {
        let (leeway, life) = self.window(issuer);
        let until = match expires_at_secs {
            Some(exp) => exp.saturating_mul(1000).saturating_add(leeway),
            None => self.clock.now_ms().saturating_add(life),
        };
        Revocation {
            kind: RevocationKind::Jti,
            issuer: issuer.to_owned(),
            value: jti.to_owned(),
            issued_before: None,
            until_ms: Some(until.saturating_add(RECORD_MARGIN_MS)),
        }
    }

    /// A subject revocation record, kept until `issued_before +
    /// max(revocation.max_token_lifetime_secs, the issuer's
    /// max_token_lifetime_secs) + leeway` plus a minute (for `"*"`, the
    /// widest over all issuers): past it, no token issued before the
    /// cut-off can be accepted, *if* its lifetime (`exp - iat`) is within
    /// that lifetime.
    ///
    /// Not bounded: a token of the subject whose `exp - iat` exceeds the
    /// lifetime used (possible only for an issuer without
    /// `max_token_lifetime_secs`, when it issues tokens longer than
    /// `revocation.max_token_lifetime_secs`), and a token without `iat`
    /// (revoked while the record lives, but its issue time is unknown, so
    /// no record length covers it): revoke those by `jti`, or rotate the
    /// key.
    pub(crate) fn subject_record(&self, issuer: &str, sub: &str, issued_before_secs: u64) -> Revocation {
        let (_, life) = self.window(issuer);
        Revocation {
            kind: RevocationKind::Subject,
            issuer: issuer.to_owned(),
            value: sub.to_owned(),
            issued_before: Some(issued_before_secs),
            until_ms: Some(
                issued_before_secs
                    .saturating_mul(1000)
                    .saturating_add(life)
                    .saturating_add(RECORD_MARGIN_MS),
            ),
        }
    }

    /// A kid revocation record, kept for `revocation.kid_revocation_secs`.
    pub(crate) fn kid_record(&self, issuer: &str, kid: &str) -> Revocation {
        Revocation {
            kind: RevocationKind::Kid,
            issuer: issuer.to_owned(),
            value: kid.to_owned(),
            issued_before: None,
            until_ms: Some(self.clock.now_ms().saturating_add(self.kid_ms)),
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
    /// `u64::MAX` without a feed. 0 (now) while revocations are incomplete
    /// ([`Trust::revocations_incomplete`]), so no cached result is served.
    #[inline]
    pub(crate) fn feed_fail_closed_at_ms(&self) -> u64 {
        if self.shortfall.incomplete.load(Ordering::Relaxed) {
            return 0;
        }
        self.feed.as_ref().map_or(u64::MAX, |f| f.fail_closed_at_ms())
    }

    /// The feed's state, if there is a feed; failed closed while
    /// revocations are incomplete.
    pub(crate) fn feed_stats(&self) -> Option<FeedStats> {
        let now = self.clock.now_ms();
        let mut stats = self.feed.as_ref()?.stats(now);
        if self.revocations_incomplete(now) {
            stats.revocations_incomplete = true;
            stats.state = crate::revocation::feed::FeedState::FailedClosed;
        }
        stats.refused_for_room = self.refused_for_room_count();
        Some(stats)
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
                    for (_, store) in self
                        .roster
                        .read()
                        .keystores
                        .iter()
                        .filter(|(name, _)| covers(&r.issuer, name))
                    {
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
        self.inherit_shortfall(old);
        Ok(changed)
    }

    /// What `old` knew it could not hold, this one lacks too: its refused
    /// journal records are retried here, and a fleet record it refused
    /// keeps this one failed closed until this one's own sync of the
    /// fleet's set holds everything (unless it already read the set
    /// itself). Without this, a reload while the lists were full and Redis
    /// was down would turn "fail closed" into "accept" for the records the
    /// old verifier never held.
    fn inherit_shortfall(&self, old: &Trust) {
        let old_unheld = old.shortfall.unheld.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let feed_short = old.feed_short() && !self.feed.as_ref().is_some_and(|f| f.has_heard());
        if old_unheld.is_empty() && !feed_short {
            return;
        }
        let s = &self.shortfall;
        let mut unheld = s.unheld.lock().unwrap_or_else(|p| p.into_inner());
        for r in old_unheld {
            if !unheld.contains(&r) {
                unheld.push(r);
            }
        }
        if feed_short {
            s.feed_epoch.fetch_add(1, Ordering::SeqCst);
            s.feed.store(true, Ordering::SeqCst);
        }
        if !s.incomplete.swap(true, Ordering::SeqCst) {
            log::error!("revocations incomplete: inherited from the verifier this one replaces");
        }
        self.retry_unheld_locked(&mut unheld);
    }
}

/// Whether a record scoped to `scope` covers the issuer `name`.
fn covers(scope: &str, name: &str) -> bool {
    scope == ANY_ISSUER || scope == name
}

/// The feed applies what it reads through the door.
impl Sink for Trust {
    fn apply(&self, r: &Revocation, source: Source) -> Result<bool> {
        Trust::apply(self, r, source)
    }
    fn live_len(&self, now_ms: u64) -> usize {
        self.revocations.live_len(now_ms)
    }
    fn live_revocations(&self, now_ms: u64) -> Vec<Revocation> {
        Trust::live_revocations(self, now_ms)
    }
    fn feed_refusal_epoch(&self) -> u64 {
        Trust::feed_refusal_epoch(self)
    }
    fn feed_synced(&self, epoch: u64, held_all: bool) {
        Trust::feed_synced(self, epoch, held_all)
    }
    fn feed_short(&self) -> bool {
        Trust::feed_short(self)
    }
}
