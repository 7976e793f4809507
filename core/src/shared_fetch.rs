//! One JWKS fetch for all the processes of a host that share `state_dir`
//! (nginx workers, Apache prefork children, a CLI beside a server).
//!
//! Each process has its own verifier and its own single flight
//! (`crate::flight`), so without this module N processes fetch N times: at
//! start, per rotation, per unknown-kid storm. With `state_dir` set, a
//! process about to fetch an issuer's JWKS first
//!
//! 1. takes an advisory lock ([`lock`]: `flock` on a lock file per issuer
//!    and per user in `state_dir`, opened by the `crate::safefile` rules,
//!    mode 0600), waiting at most until its deadline, never longer than one
//!    fetch timeout; a process that dies holding it releases it with its
//!    descriptors. Per user, so that no other user can hold it (nor a file
//!    root created at a configuration check keep the workers out of it);
//! 2. reads the persisted set (`crate::state`), written atomically, so it
//!    is read whether or not the lock was had;
//! 3. asks [`judge`] whether that set answers its need, and adopts it
//!    without a network request, or fetches (and persists) itself, then
//!    releases the lock.
//!
//! What a set must be to be adopted ([`judge`]): written by a process of
//! this user or by root (the file's owner is our effective uid, or 0: an
//! Apache parent checks its configuration as root), fetched no later than
//! now, within its TTL (the response's `max-age` under this process's own
//! clamps), and newer than the set this process holds. For a scheduled or
//! start-up refresh that is all. For an unknown kid, it must also hold the
//! kid, or have been fetched for an unknown kid within the cooldown: the
//! host then answers the kid as one process would (one on-demand fetch per
//! cooldown). An adopted set is installed with its real `fetched_at`, so
//! staleness, `max_stale` and rotation grace count from the real fetch.
//! Everything else (revoked kids, key filtering, a set with no usable key
//! refused) is the same as after a fetch, because adoption installs through
//! the same path.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::state::Record;

/// Longest pause between two tries for a lock held by another process.
const MAX_POLL: Duration = Duration::from_millis(20);

/// The host-wide lock on one issuer's fetch; released when dropped.
pub(crate) struct HostLock {
    file: File,
}

impl Drop for HostLock {
    fn drop(&mut self) {
        // Unlock explicitly: a child forked while we held it shares this
        // open file description, and closing our descriptor alone would
        // leave the lock held by the child's copy.
        // SAFETY: a valid descriptor owned by `self.file`.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// What [`lock`] got.
pub(crate) enum Locked {
    /// The lock is ours until the guard drops.
    Held(HostLock),
    /// Another process held it until the deadline.
    TimedOut,
    /// The lock file could not be used (planted by another user, not a
    /// regular file, no room): the process goes on as without sharing.
    Unusable(String),
}

/// Take the lock on `issuer`'s fetch in `dir`, waiting until `deadline` at
/// most (by polling: `flock` has no timeout of its own).
pub(crate) fn lock(dir: &Path, issuer: &str, deadline: Instant) -> Locked {
    let file = match open_lock_file(dir, issuer) {
        Ok(f) => f,
        Err(e) => return Locked::Unusable(e),
    };
    let mut pause = Duration::from_millis(1);
    loop {
        // SAFETY: a valid descriptor owned by `file`.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Locked::Held(HostLock { file });
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => {}
            _ => return Locked::Unusable(format!("flock: {err}")),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Locked::TimedOut;
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(MAX_POLL);
    }
}

fn open_lock_file(dir: &Path, issuer: &str) -> std::result::Result<File, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let path = crate::state::lock_file_for(dir, issuer, me);
    let file = crate::safefile::open(&path, OpenOptions::new().write(true).create(true).mode(0o600))
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.uid() != me {
        // Another user could hold it for ever: not ours to wait on.
        return Err(format!(
            "{} belongs to uid {}, not to this process's uid {me}: refused",
            path.display(),
            meta.uid()
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        // Whoever can open it can hold it: keep it to this user.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(file)
}

/// What the process about to fetch needs from a set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    /// Keys within their TTL (start-up, scheduled refresh).
    Keys,
    /// An answer for an unknown kid; on-demand fetches are limited to one
    /// per `cooldown_ms`.
    Kid {
        /// `refresh.unknown_kid_cooldown_secs`, in ms.
        cooldown_ms: u64,
    },
}

/// What [`judge`] decided about the persisted set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Install it instead of fetching.
    Adopt,
    /// Install it if it holds the kid asked for; else fetch.
    AdoptIfItHoldsTheKid,
    /// The set in use is the host's on-demand fetch of less than a cooldown
    /// ago: answer the unknown kid from it, as after a fetch.
    Answered,
    /// Fetch.
    Fetch,
}

/// Whether `record` (owned by `owner`) answers `want` at `now_ms`, for a
/// process holding a set fetched at `held_ms` (`None`: none loaded), whose
/// TTL for a response's `max-age` is `ttl_ms`.
pub(crate) fn judge(
    record: &Record,
    owner: u32,
    want: Want,
    held_ms: Option<u64>,
    now_ms: u64,
    ttl_ms: impl Fn(Option<u64>) -> u64,
) -> Verdict {
    let fetched = record.fetched_at_ms;
    // A set "from the future" (a clock set back, a forged file) is not
    // taken as fresh; neither is one past its TTL.
    let fresh = fetched <= now_ms && now_ms < fetched.saturating_add(ttl_ms(record.max_age_secs));
    if !trusted(owner) || !fresh {
        return Verdict::Fetch;
    }
    let newer = held_ms.is_none_or(|held| fetched > held);
    match want {
        Want::Keys if newer => Verdict::Adopt,
        Want::Keys => Verdict::Fetch,
        Want::Kid { cooldown_ms } => {
            let within_cooldown = record.on_demand && now_ms < fetched.saturating_add(cooldown_ms);
            match (within_cooldown, newer) {
                (true, true) => Verdict::Adopt,
                (true, false) => Verdict::Answered,
                (false, true) => Verdict::AdoptIfItHoldsTheKid,
                (false, false) => Verdict::Fetch,
            }
        }
    }
}

/// Whether a persisted file owned by `owner` may be adopted: this
/// process's own user's, or root's.
fn trusted(owner: u32) -> bool {
    // SAFETY: geteuid has no preconditions.
    owner == 0 || owner == unsafe { libc::geteuid() }
}

/// Persist a set this process fetched, unless the file already holds one
/// fetched later (and not "in the future"): without the lock (timed out),
/// two fetches may end in either order.
pub(crate) fn persist(dir: &Path, issuer: &str, record: &Record, now_ms: u64) -> std::io::Result<()> {
    if let Some(current) = crate::state::load_record(dir, issuer) {
        let at = current.record.fetched_at_ms;
        if at > record.fetched_at_ms && at <= now_ms {
            return Ok(());
        }
    }
    crate::state::save_record(dir, issuer, record)
}

/// A `304 Not Modified` at `now_ms` confirmed the set named by
/// `validators`: if the persisted set is that one, stamp it as fetched now
/// (with the 304's `max-age`), so the other processes can adopt it.
pub(crate) fn confirm(
    dir: &Path,
    issuer: &str,
    validators: &crate::fetch::Validators,
    max_age_secs: Option<u64>,
    on_demand: bool,
    now_ms: u64,
) -> std::io::Result<()> {
    let Some(current) = crate::state::load_record(dir, issuer) else {
        return Ok(());
    };
    let ours = trusted(current.owner);
    let named = validators.etag.is_some() || validators.last_modified.is_some();
    let mut record = current.record;
    if !ours || !named || record.validators != *validators || record.fetched_at_ms >= now_ms {
        return Ok(());
    }
    record.fetched_at_ms = now_ms;
    record.max_age_secs = max_age_secs;
    record.on_demand = on_demand;
    crate::state::save_record(dir, issuer, &record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fetched_at_ms: u64, on_demand: bool) -> Record {
        Record {
            fetched_at_ms,
            jwks: b"{}".to_vec(),
            max_age_secs: None,
            validators: Default::default(),
            on_demand,
        }
    }

    fn me() -> u32 {
        // SAFETY: no preconditions.
        unsafe { libc::geteuid() }
    }

    const TTL: fn(Option<u64>) -> u64 = |_| 300_000;
    const KID: Want = Want::Kid { cooldown_ms: 30_000 };

    #[test]
    fn only_a_fresh_newer_set_of_this_user_is_adopted() {
        let r = record(100_000, false);
        assert_eq!(judge(&r, me(), Want::Keys, None, 100_000, TTL), Verdict::Adopt);
        assert_eq!(judge(&r, me(), Want::Keys, Some(99_999), 150_000, TTL), Verdict::Adopt);
        assert_eq!(
            judge(&r, me(), Want::Keys, Some(100_000), 150_000, TTL),
            Verdict::Fetch,
            "not newer"
        );
        assert_eq!(
            judge(&r, me(), Want::Keys, None, 400_000, TTL),
            Verdict::Fetch,
            "past its TTL"
        );
        assert_eq!(
            judge(&r, me(), Want::Keys, None, 99_999, TTL),
            Verdict::Fetch,
            "from the future"
        );
        assert_eq!(
            judge(&r, me() + 1, Want::Keys, None, 100_000, TTL),
            Verdict::Fetch,
            "another user's"
        );
    }

    #[test]
    fn an_unknown_kid_is_answered_by_the_hosts_on_demand_fetch_within_the_cooldown() {
        let on_demand = record(100_000, true);
        assert_eq!(judge(&on_demand, me(), KID, Some(1), 129_999, TTL), Verdict::Adopt);
        assert_eq!(
            judge(&on_demand, me(), KID, Some(100_000), 129_999, TTL),
            Verdict::Answered
        );
        assert_eq!(
            judge(&on_demand, me(), KID, Some(100_000), 130_000, TTL),
            Verdict::Fetch
        );
        assert_eq!(
            judge(&on_demand, me(), KID, Some(1), 130_000, TTL),
            Verdict::AdoptIfItHoldsTheKid
        );
        let scheduled = record(100_000, false);
        assert_eq!(
            judge(&scheduled, me(), KID, Some(1), 100_001, TTL),
            Verdict::AdoptIfItHoldsTheKid,
            "a scheduled fetch does not answer a kid published after it"
        );
        assert_eq!(
            judge(&scheduled, me(), KID, Some(100_000), 100_001, TTL),
            Verdict::Fetch
        );
    }

    #[test]
    fn a_lock_file_planted_as_a_link_or_fifo_is_unusable_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::state::lock_file_for(dir.path(), "https://a/", me());
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &path).unwrap();
        let far = Instant::now() + Duration::from_secs(30);
        assert!(matches!(lock(dir.path(), "https://a/", far), Locked::Unusable(_)));
        assert!(!dir.path().join("elsewhere").exists(), "the link was not followed");
        std::fs::remove_file(&path).unwrap();
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(lock(dir.path(), "https://a/", far), Locked::Unusable(_)));
    }

    #[test]
    fn the_lock_conflicts_between_descriptors_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let far = Instant::now() + Duration::from_secs(30);
        let Locked::Held(held) = lock(dir.path(), "https://a/", far) else {
            panic!("free lock")
        };
        let path = crate::state::lock_file_for(dir.path(), "https://a/", me());
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let soon = Instant::now() + Duration::from_millis(30);
        assert!(matches!(lock(dir.path(), "https://a/", soon), Locked::TimedOut));
        drop(held);
        assert!(matches!(lock(dir.path(), "https://a/", soon), Locked::Held(_)));
    }

    #[test]
    fn an_older_fetch_never_overwrites_a_newer_record_nor_a_304_another_set() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut newer = record(200, false);
        newer.validators.etag = Some("\"b\"".into());
        persist(d, "https://a/", &newer, 300).unwrap();
        persist(d, "https://a/", &record(100, false), 300).unwrap();
        assert_eq!(crate::state::load_record(d, "https://a/").unwrap().record, newer);
        // A record "from the future" (a clock set back) is replaced.
        persist(d, "https://a/", &record(150, false), 160).unwrap();
        assert_eq!(
            crate::state::load_record(d, "https://a/").unwrap().record.fetched_at_ms,
            150
        );
        persist(d, "https://a/", &newer, 300).unwrap();
        let other = crate::fetch::Validators {
            etag: Some("\"a\"".into()),
            last_modified: None,
        };
        confirm(d, "https://a/", &other, Some(60), false, 400).unwrap();
        assert_eq!(crate::state::load_record(d, "https://a/").unwrap().record, newer);
        confirm(d, "https://a/", &newer.validators, Some(60), true, 400).unwrap();
        let got = crate::state::load_record(d, "https://a/").unwrap().record;
        assert_eq!(
            (got.fetched_at_ms, got.max_age_secs, got.on_demand),
            (400, Some(60), true)
        );
        assert_eq!(got.jwks, newer.jwks);
    }
}
