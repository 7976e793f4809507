//! The optional state directory: each issuer's last good JWKS, written
//! atomically (temporary file, fsync, rename) and read back at start when the
//! endpoint is unreachable. Neither write nor read follows a symbolic link or
//! blocks on a FIFO planted there (`crate::safefile`); the temporary file is
//! created new under an unpredictable name.
//!
//! Processes sharing the directory also adopt each other's sets
//! (`crate::shared_fetch`): a record carries what that needs besides the
//! body (the response's `max-age`, its validators, whether it was fetched for
//! an unknown kid), each field optional so older files still read.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::safefile;

/// Largest persisted file read back (a JWKS response is capped far lower).
const MAX_PERSISTED_BYTES: u64 = 16 << 20;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Persisted {
    issuer: String,
    fetched_at_ms: u64,
    jwks: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_age_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    on_demand: bool,
}

/// One issuer's persisted set and what is known of its fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// When it was fetched (or confirmed by a 304), by the fetching
    /// process's clock (ms).
    pub fetched_at_ms: u64,
    /// The JWKS document as served.
    pub jwks: Vec<u8>,
    /// The response's cache lifetime, if it named one.
    pub max_age_secs: Option<u64>,
    /// Its validators, for the next conditional GET.
    pub validators: crate::fetch::Validators,
    /// Whether it was fetched for an unknown kid (or a manual refresh).
    pub on_demand: bool,
}

/// A record read back, and the user that owns its file.
pub(crate) struct Loaded {
    /// What the file holds.
    pub record: Record,
    /// The file's owner (uid).
    pub owner: u32,
}

fn file_for(dir: &Path, issuer: &str) -> PathBuf {
    // A readable prefix plus a digest, so distinct issuers never collide.
    let readable: String = issuer
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(48)
        .collect();
    let digest = crate::token::fingerprint(issuer.as_bytes());
    dir.join(format!("{readable}-{digest}.jwks.json"))
}

/// Persist `jwks` as the last good set for `issuer`.
#[cfg(test)]
pub(crate) fn save(dir: &Path, issuer: &str, fetched_at_ms: u64, jwks: &[u8]) -> std::io::Result<()> {
    save_record(
        dir,
        issuer,
        &Record {
            fetched_at_ms,
            jwks: jwks.to_vec(),
            max_age_secs: None,
            validators: Default::default(),
            on_demand: false,
        },
    )
}

/// Persist `record` as the last good set for `issuer` (atomically).
pub(crate) fn save_record(dir: &Path, issuer: &str, record: &Record) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let path = file_for(dir, issuer);
    let record = Persisted {
        issuer: issuer.to_owned(),
        fetched_at_ms: record.fetched_at_ms,
        jwks: String::from_utf8_lossy(&record.jwks).into_owned(),
        max_age_secs: record.max_age_secs,
        etag: record.validators.etag.clone(),
        last_modified: record.validators.last_modified.clone(),
        on_demand: record.on_demand,
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("jwks.json");
    let (mut f, tmp) = safefile::create_temp(dir, name)?;
    let written = serde_json::to_vec(&record)
        .map_err(std::io::Error::other)
        .and_then(|bytes| f.write_all(&bytes))
        .and_then(|()| f.sync_all())
        .and_then(|()| fs::rename(&tmp, &path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// The last good set for `issuer`, with when it was fetched.
pub(crate) fn load(dir: &Path, issuer: &str) -> Option<(u64, Vec<u8>)> {
    load_record(dir, issuer).map(|l| (l.record.fetched_at_ms, l.record.jwks))
}

/// The last good set for `issuer`, all that is known of it, and its
/// file's owner.
pub(crate) fn load_record(dir: &Path, issuer: &str) -> Option<Loaded> {
    use std::os::unix::fs::MetadataExt;
    let path = file_for(dir, issuer);
    let f = match safefile::open(&path, fs::OpenOptions::new().read(true)) {
        Ok(f) => f,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("issuer {issuer}: persisted JWKS not read: {e}");
            }
            return None;
        }
    };
    let owner = f.metadata().ok()?.uid();
    let mut bytes = Vec::new();
    f.take(MAX_PERSISTED_BYTES).read_to_end(&mut bytes).ok()?;
    let p: Persisted = serde_json::from_slice(&bytes).ok()?;
    (p.issuer == issuer).then(|| Loaded {
        owner,
        record: Record {
            fetched_at_ms: p.fetched_at_ms,
            jwks: p.jwks.into_bytes(),
            max_age_secs: p.max_age_secs,
            validators: crate::fetch::Validators {
                etag: p.etag,
                last_modified: p.last_modified,
            },
            on_demand: p.on_demand,
        },
    })
}

/// The lock file that the processes of user `uid` sharing `dir` take
/// before fetching `issuer`'s JWKS (`crate::shared_fetch`).
pub(crate) fn lock_file_for(dir: &Path, issuer: &str, uid: u32) -> PathBuf {
    file_for(dir, issuer).with_extension(format!("{uid}.lock"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        super::save(dir.path(), "https://a/", 42, b"{\"keys\":[]}").unwrap();
        assert_eq!(
            super::load(dir.path(), "https://a/"),
            Some((42, b"{\"keys\":[]}".to_vec()))
        );
        assert_eq!(super::load(dir.path(), "https://b/"), None);
    }

    /// Issue 23, item 9a beside the journal: a FIFO planted as the persisted
    /// file blocked the start; a symbolic link was read through.
    #[test]
    fn a_planted_fifo_or_link_is_not_read_and_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = super::file_for(dir.path(), "https://a/");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let d = dir.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(super::load(&d, "https://a/")).unwrap());
        let got = rx.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(got, Ok(None), "refused promptly");
        std::fs::remove_file(&path).unwrap();
        let other = tempfile::tempdir().unwrap();
        super::save(other.path(), "https://a/", 7, b"{}").unwrap();
        std::os::unix::fs::symlink(super::file_for(other.path(), "https://a/"), &path).unwrap();
        assert_eq!(super::load(dir.path(), "https://a/"), None, "not followed");
        // Saving replaces the link itself (rename), never writes through it.
        super::save(dir.path(), "https://a/", 8, b"{}").unwrap();
        assert_eq!(super::load(other.path(), "https://a/"), Some((7, b"{}".to_vec())));
        assert_eq!(super::load(dir.path(), "https://a/"), Some((8, b"{}".to_vec())));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
