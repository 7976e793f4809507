//! The revocation journal: `state_dir/revocations.jsonl`, one record of JSON
//! per line, so a revocation outlives a restart.
//!
//! * A local `revoke_*` appends its record and fsyncs before the call
//!   returns: a process killed right after still rejects the token when it
//!   starts again. Records from the fleet feed are appended without an
//!   fsync each (the fleet's set holds them too).
//! * At start the journal is replayed (records live at the current time are
//!   applied) and the file is rewritten compacted (temporary file, fsync,
//!   rename, fsync of the directory). Compaction drops a record only
//!   `revocation.retention_margin_secs` (default a day) after it expired:
//!   one start with a clock ahead must not erase revocations that the true
//!   clock still needs.
//! * Every file here is opened without following a symbolic link and
//!   without blocking on a FIFO, and must be a regular file
//!   (`crate::safefile`); the compaction's temporary file is created new
//!   under an unpredictable name.
//! * Records appended by other processes sharing the directory (a
//!   `jwtwarden revoke` next to a server) are picked up by
//!   [`Journal::read_new`], which the verifier's background thread calls
//!   about once a second.
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
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Revocation;
use crate::fork::PerProcess;
use crate::safefile;

const FILE: &str = "revocations.jsonl";
const LOCK: &str = "revocations.lock";

/// Most bytes [`Journal::read_new`] reads in one call; the rest next time.
const MAX_READ_BYTES: u64 = 16 << 20;

/// Where this process has read the journal up to: the file (device and
/// inode) and the offset just past the last whole line. The file is held
/// open, so its inode cannot be freed and reused by a later compaction's
/// new file while we still compare against it (two compactions within one
/// poll would otherwise look like the same file, read from a stale offset).
#[derive(Debug, Default)]
struct ReadPos {
    file: Option<(u64, u64)>,
    offset: u64,
    _held: Option<File>,
}

/// The journal of one state directory.
pub(crate) struct Journal {
    dir: PathBuf,
    /// The append handle and the inode it was opened on; this process's
    /// own, so a forked child never waits on a lock a parent thread held
    /// (across a write and its fsync) at the fork.
    file: PerProcess<Mutex<Option<(File, u64)>>>,
    /// How far [`read_new`](Journal::read_new) has read; a forked child
    /// starts again from the beginning (never taking the parent's lock).
    read: PerProcess<Mutex<ReadPos>>,
    /// The last error of [`poll`](Journal::poll), logged once, not each second.
    read_error: Mutex<Option<String>>,
}

/// An exclusive `flock`, released when dropped (with its file).
struct Locked(File);

impl Locked {
    fn take(dir: &Path) -> std::io::Result<Locked> {
        let f = safefile::open(
            &dir.join(LOCK),
            OpenOptions::new().create(true).truncate(false).write(true),
        )?;
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
    /// Open (creating) the journal in `dir`, replay it, and compact it,
    /// keeping records until `margin_ms` past their end
    /// (`revocation.retention_margin_secs`). Returns the live records at
    /// `now_ms`, in the order written.
    pub(crate) fn open(dir: &Path, now_ms: u64, margin_ms: u64) -> std::io::Result<(Journal, Vec<Revocation>)> {
        fs::create_dir_all(dir)?;
        let _lock = Locked::take(dir)?;
        let path = dir.join(FILE);
        let (kept, skipped) = match safefile::open(&path, OpenOptions::new().read(true)) {
            Ok(f) => read(f, now_ms.saturating_sub(margin_ms))?,
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
        let mut kept = kept;
        kept.retain(|r| seen.insert(r.clone()));
        // Compaction keeps what the margin keeps; replay applies what is
        // live now.
        let pos = compact(dir, &kept)?;
        let live = kept.into_iter().filter(|r| r.is_live(now_ms)).collect();
        let journal = Journal {
            dir: dir.to_path_buf(),
            file: PerProcess::new(Mutex::new(None)),
            read: PerProcess::new(Mutex::new(pos)),
            read_error: Mutex::new(None),
        };
        Ok((journal, live))
    }

    /// As [`read_new`](Journal::read_new), logging a failure once (when
    /// it starts, and when it ends) instead of returning it.
    pub(crate) fn poll(&self, now_ms: u64) -> Vec<Revocation> {
        let result = self.read_new(now_ms);
        let mut last = self.read_error.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(records) => {
                if last.take().is_some() {
                    log::warn!("revocation journal in {}: readable again", self.dir.display());
                }
                records
            }
            Err(e) => {
                let e = e.to_string();
                if last.as_deref() != Some(e.as_str()) {
                    log::error!(
                        "revocation journal in {}: cannot read other processes' revocations: {e}",
                        self.dir.display()
                    );
                    *last = Some(e);
                }
                Vec::new()
            }
        }
    }

    /// The records appended since the last call (by any process sharing
    /// the directory, this one included), live at `now_ms`. Reads only
    /// whole lines; after another process's compaction replaced the file
    /// it reads the new one from its start (records already applied are
    /// applied again harmlessly). Takes no lock: appends are single writes
    /// and a partial last line waits for the next call.
    pub(crate) fn read_new(&self, now_ms: u64) -> std::io::Result<Vec<Revocation>> {
        // A forked child reads the journal again from its start (no lock of
        // the parent's is taken; re-applied records change nothing).
        let state = self.read.get(|_| Mutex::new(ReadPos::default()));
        let mut pos = state.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.dir.join(FILE);
        let mut f = match safefile::open(&path, OpenOptions::new().read(true)) {
            Ok(f) => f,
            // Not there (yet): nothing new.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let meta = f.metadata()?;
        let id = (meta.dev(), meta.ino());
        if pos.file != Some(id) || meta.len() < pos.offset {
            *pos = ReadPos {
                file: Some(id),
                offset: 0,
                _held: Some(f.try_clone()?),
            };
        }
        if meta.len() == pos.offset {
            return Ok(Vec::new());
        }
        f.seek(SeekFrom::Start(pos.offset))?;
        let mut buf = Vec::new();
        f.take(MAX_READ_BYTES).read_to_end(&mut buf)?;
        let Some(end) = buf.iter().rposition(|b| *b == b'\n').map(|i| i + 1) else {
            if buf.len() as u64 >= MAX_READ_BYTES {
                // One line longer than the bound: no record is that long.
                pos.offset += buf.len() as u64;
            }
            return Ok(Vec::new());
        };
        pos.offset += end as u64;
        let (live, skipped) = read(&buf[..end], now_ms)?;
        if skipped > 0 {
            log::warn!(
                "revocation journal {}: skipped {skipped} unreadable lines",
                path.display()
            );
        }
        Ok(live)
    }

    /// Append `r`; with `durable`, fsync before returning.
    pub(crate) fn append(&self, r: &Revocation, durable: bool) -> std::io::Result<()> {
        let mut line = r.to_json();
        line.push('\n');
        let _lock = Locked::take(&self.dir)?;
        let path = self.dir.join(FILE);
        let file = self.file.get(|_| Mutex::new(None));
        let mut slot = file.lock().unwrap_or_else(|p| p.into_inner());
        let current = fs::symlink_metadata(&path).map(|m| m.ino()).ok();
        if slot.as_ref().map(|(_, ino)| Some(*ino)) != Some(current) || current.is_none() {
            *slot = None;
            let f = safefile::open(&path, OpenOptions::new().create(true).append(true))?;
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

/// The valid records of a journal file live at `now_ms`, and how many
/// lines were skipped.
fn read(f: impl Read, now_ms: u64) -> std::io::Result<(Vec<Revocation>, usize)> {
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

/// Replace the journal with `records`, atomically and durably. Returns
/// the new file's read position (its end: everything in it is replayed).
fn compact(dir: &Path, records: &[Revocation]) -> std::io::Result<ReadPos> {
    let path = dir.join(FILE);
    let (mut f, tmp) = safefile::create_temp(dir, FILE)?;
    let mut buf = String::new();
    for r in records {
        buf.push_str(&r.to_json());
        buf.push('\n');
    }
    let written = f.write_all(buf.as_bytes()).and_then(|()| f.sync_all());
    let meta = written.and_then(|()| f.metadata());
    let held = f;
    let renamed = meta.and_then(|m| fs::rename(&tmp, &path).map(|()| m));
    let meta = match renamed {
        Ok(m) => m,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // The rename itself is durable only once the directory is synced.
    File::open(dir)?.sync_all()?;
    Ok(ReadPos {
        file: Some((meta.dev(), meta.ino())),
        offset: meta.len(),
        _held: Some(held),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default `revocation.retention_margin_secs`, in ms.
    const MARGIN_MS: u64 = 86_400_000;
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
        let (j, live) = Journal::open(dir.path(), 0, MARGIN_MS).unwrap();
        assert!(live.is_empty());
        j.append(&jti("old", 100), true).unwrap();
        j.append(&jti("new", 10_000), true).unwrap();
        j.append(&jti("new", 10_000), false).unwrap();
        drop(j);
        let (_, live) = Journal::open(dir.path(), 5_000, MARGIN_MS).unwrap();
        assert_eq!(live, vec![jti("new", 10_000)]);
        let text = fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(text.lines().count(), 2, "expired, but within the margin: {text}");
        // "old" is past its margin, "new" expired but within its own.
        let (_, live) = Journal::open(dir.path(), 100 + MARGIN_MS, MARGIN_MS).unwrap();
        assert!(live.is_empty(), "{live:?}");
        let text = fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(text.lines().count(), 1, "compacted: {text}");
    }

    #[test]
    fn read_new_sees_other_processes_appends_whole_lines_only_and_follows_a_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let (reader, _) = Journal::open(dir.path(), 0, MARGIN_MS).unwrap();
        assert!(reader.read_new(0).unwrap().is_empty());
        let (other, _) = Journal::open(dir.path(), 0, MARGIN_MS).unwrap();
        // `other` compacted: the reader's file was replaced, read from 0.
        other.append(&jti("a", 10_000), true).unwrap();
        assert_eq!(reader.read_new(0).unwrap(), vec![jti("a", 10_000)]);
        assert!(reader.read_new(0).unwrap().is_empty(), "read once");
        // A torn line waits for its end.
        let line = jti("b", 10_000).to_json();
        let (head, tail) = line.split_at(10);
        let mut f = OpenOptions::new().append(true).open(dir.path().join(FILE)).unwrap();
        f.write_all(head.as_bytes()).unwrap();
        assert!(reader.read_new(0).unwrap().is_empty());
        f.write_all(format!("{tail}\n").as_bytes()).unwrap();
        assert_eq!(reader.read_new(0).unwrap(), vec![jti("b", 10_000)]);
        // Expired records are not returned.
        other.append(&jti("old", 100), true).unwrap();
        assert!(reader.read_new(5_000).unwrap().is_empty());
        // Another compaction: everything live again, from the new file.
        let (_third, _) = Journal::open(dir.path(), 0, MARGIN_MS).unwrap();
        assert_eq!(reader.read_new(0).unwrap().len(), 3);
    }

    #[test]
    fn two_compactions_between_reads_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (reader, _) = Journal::open(dir.path(), 0, MARGIN_MS).unwrap();
        for round in 0..20 {
            // Two processes start (each compacts) and revoke between two
            // polls: a freed inode may be reused by the second new file.
            let (a, _) = Journal::open(dir.path(), 0, MARGIN_MS).unwrap();
            a.append(&jti(&format!("a{round}"), 10_000), true).unwrap();
            drop(a);
            let (b, _) = Journal::open(dir.path(), 0, MARGIN_MS).unwrap();
            b.append(&jti(&format!("b{round}"), 10_000), true).unwrap();
            let got = reader.read_new(0).unwrap();
            for v in [format!("a{round}"), format!("b{round}")] {
                assert!(
                    got.contains(&jti(&v, 10_000)),
                    "round {round}: {v} missing from {got:?}"
                );
            }
        }
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
        let (_, live) = Journal::open(dir.path(), 0, MARGIN_MS).unwrap();
        assert_eq!(live, vec![jti("a", 10_000)]);
    }

    #[test]
    fn an_appender_follows_a_compaction_by_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let (j1, _) = Journal::open(dir.path(), 0, MARGIN_MS).unwrap();
        j1.append(&jti("a", 10_000), true).unwrap();
        // Another process starts and compacts: the file is replaced.
        let (_j2, live) = Journal::open(dir.path(), 0, MARGIN_MS).unwrap();
        assert_eq!(live.len(), 1);
        j1.append(&jti("b", 10_000), true).unwrap();
        let (_, live) = Journal::open(dir.path(), 0, MARGIN_MS).unwrap();
        assert_eq!(live.len(), 2, "the append after the compaction was not lost");
    }
}
