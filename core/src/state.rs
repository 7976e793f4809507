//! The optional state directory: each issuer's last good JWKS, written
//! atomically (temporary file, fsync, rename) and read back at start when the
//! endpoint is unreachable. Neither write nor read follows a symbolic link or
//! blocks on a FIFO planted there (`crate::safefile`); the temporary file is
//! created new under an unpredictable name.

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
pub(crate) fn save(dir: &Path, issuer: &str, fetched_at_ms: u64, jwks: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let path = file_for(dir, issuer);
    let record = Persisted {
        issuer: issuer.to_owned(),
        fetched_at_ms,
        jwks: String::from_utf8_lossy(jwks).into_owned(),
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
    let mut bytes = Vec::new();
    f.take(MAX_PERSISTED_BYTES).read_to_end(&mut bytes).ok()?;
    let record: Persisted = serde_json::from_slice(&bytes).ok()?;
    (record.issuer == issuer).then(|| (record.fetched_at_ms, record.jwks.into_bytes()))
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
