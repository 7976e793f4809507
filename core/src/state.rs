//! The optional state directory: each issuer's last good JWKS, written
//! atomically (temporary file, fsync, rename) and read back at start when the
//! endpoint is unreachable.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

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
    let mut tmp = path.clone();
    tmp.set_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(&record).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)
}

/// The last good set for `issuer`, with when it was fetched.
pub(crate) fn load(dir: &Path, issuer: &str) -> Option<(u64, Vec<u8>)> {
    let bytes = fs::read(file_for(dir, issuer)).ok()?;
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
}
