//! The revocation journal: `state_dir/revocations.jsonl`, one record of JSON
//! per line, so a revocation outlives a restart.
//!
//! * A local `revoke_*` appends its record and fsyncs before the call
//!   returns: a process killed right after still rejects the token when it
//!   starts again. Records from the fleet feed are appended without an
//!   fsync each (the fleet's set holds them too).
//! * At start the journal is replayed, records whose tokens have all expired
//!   are dropped, and the file is rewritten compacted (temporary file,
//!   fsync, rename, fsync of the directory).
//! * A torn last line (a crash in the middle of a write) or any other line
//!   that does not parse as a valid record is skipped and logged, never
//!   fatal.
//!
//! Several processes may share a state directory (pre-fork workers, a CLI
//! next to a server). Writers take an exclusive `flock` on
//! `revocations.lock`, opened afresh each time so processes forked from one
//! parent exclude each other too, and an appender that finds the journal
//! replaced by another process's compaction reopens it before writing.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Revocation;
use crate::fork::PerProcess;

const FILE: &str = "revocations.jsonl";
const LOCK: &str = "revocations.lock";

/// The journal of one state directory.
pub(crate) struct Journal {
    dir: PathBuf,
    /// The append handle and the inode it was opened on; this process's
    /// own, so a forked child never waits on a lock a parent thread held
    /// (across a write and its fsync) at the fork.
    file: PerProcess<Mutex<Option<(File, u64)>>>,
}

/// An exclusive `flock`, released when dropped (with its file).
struct Locked(File);

impl Locked {
    fn take(dir: &Path) -> std::io::Result<Locked> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))?;
        // SAFETY: a valid open descriptor owned by `f` for the call.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Locked(f))
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release it anyway.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl Journal {
    /// Open (creating) the journal in `dir`, replay it, and compact it.
    /// Returns the live records at `now_ms`, in the order written.
    pub(crate) fn open(dir: &Path, now_ms: u64) -> std::io::Result<(Journal, Vec<Revocation>)> {
        fs::create_dir_all(dir)?;
        let _lock = Locked::take(dir)?;
        let path = dir.join(FILE);
        let (mut live, skipped) = match File::open(&path) {
            Ok(f) => read(f, now_ms)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 0),
            Err(e) => return Err(e),
        };
        if skipped > 0 {
            log::warn!(
                "revocation journal {}: skipped {skipped} unreadable lines (a torn write?)",
                path.display()
            );
        }
        // The same record written twice (a re-applied feed record) is kept once.
        let mut seen = std::collections::HashSet::new();
        live.retain(|r| seen.insert(r.clone()));
        compact(dir, &live)?;
        let journal = Journal {
            dir: dir.to_path_buf(),
            file: PerProcess::new(Mutex::new(None)),
        };
        Ok((journal, live))
    }

    /// Append `r`; with `durable`, fsync before returning.
    pub(crate) fn append(&self, r: &Revocation, durable: bool) -> std::io::Result<()> {
        let mut line = r.to_json();
        line.push('\n');
        let _lock = Locked::take(&self.dir)?;
        let path = self.dir.join(FILE);
        let file = self.file.get(|_| Mutex::new(None));
        let mut slot = file.lock().unwrap_or_else(|p| p.into_inner());
        let current = fs::metadata(&path).map(|m| m.ino()).ok();
        if slot.as_ref().map(|(_, ino)| Some(*ino)) != Some(current) || current.is_none() {
            let f = OpenOptions::new().create(true).append(true).open(&path)?;
            let ino = f.metadata()?.ino();
            *slot = Some((f, ino));
        }
        let (f, _) = slot.as_mut().expect("opened above");
        // One write call: O_APPEND places the whole line at the end.
        f.write_all(line.as_bytes())?;
        if durable {
            f.sync_data()?;
        }
        Ok(())
    }
}

/// The valid live records of a journal file, and how many lines were skipped.
fn read(f: File, now_ms: u64) -> std::io::Result<(Vec<Revocation>, usize)> {
    let mut live = Vec::new();
    let mut skipped = 0;
    for line in BufReader::new(f).split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Revocation>(&line)
            .ok()
            .filter(|r| r.validate().is_ok())
        {
            Some(r) if r.is_live(now_ms) => live.push(r),
            Some(_) => {}
            None => skipped += 1,
        }
    }
    Ok((live, skipped))
}

/// Replace the journal with `records`, atomically and durably.
fn compact(dir: &Path, records: &[Revocation]) -> std::io::Result<()> {
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp{}", std::process::id()));
    {
        let mut f = File::create(&tmp)?;
        let mut buf = String::new();
        for r in records {
            buf.push_str(&r.to_json());
            buf.push('\n');
        }
        f.write_all(buf.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    // The rename itself is durable only once the directory is synced.
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::RevocationKind;

    fn jti(v: &str, until_ms: u64) -> Revocation {
        Revocation {
            kind: RevocationKind::Jti,
            issuer: "https://a/".into(),
            value: v.into(),
            issued_before: None,
            until_ms: Some(until_ms),
        }
    }

    #[test]
    fn replays_live_records_and_compacts_away_expired_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (j, live) = Journal::open(dir.path(), 0).unwrap();
        assert!(live.is_empty());
        j.append(&jti("old", 100), true).unwrap();
        j.append(&jti("new", 10_000), true).unwrap();
        j.append(&jti("new", 10_000), false).unwrap();
        drop(j);
        let (_, live) = Journal::open(dir.path(), 5_000).unwrap();
        assert_eq!(live, vec![jti("new", 10_000)]);
        let text = fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(text.lines().count(), 1, "compacted: {text}");
    }

    #[test]
    fn a_torn_or_hostile_line_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let good = jti("a", 10_000).to_json();
        let bad_kind = r#"{"kind":"everything","iss":"*","value":"x"}"#;
        let empty_value = r#"{"kind":"jti","iss":"*","value":"","until_ms":99999}"#;
        fs::write(
            dir.path().join(FILE),
            format!("{good}\n{bad_kind}\n{empty_value}\n{{\"kind\":\"jti\",\"iss"),
        )
        .unwrap();
        let (_, live) = Journal::open(dir.path(), 0).unwrap();
        assert_eq!(live, vec![jti("a", 10_000)]);
    }

    #[test]
    fn an_appender_follows_a_compaction_by_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let (j1, _) = Journal::open(dir.path(), 0).unwrap();
        j1.append(&jti("a", 10_000), true).unwrap();
        // Another process starts and compacts: the file is replaced.
        let (_j2, live) = Journal::open(dir.path(), 0).unwrap();
        assert_eq!(live.len(), 1);
        j1.append(&jti("b", 10_000), true).unwrap();
        let (_, live) = Journal::open(dir.path(), 0).unwrap();
        assert_eq!(live.len(), 2, "the append after the compaction was not lost");
    }
}
