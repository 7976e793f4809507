//! Files in `state_dir` opened so that whatever was planted there cannot
//! redirect or stall us: a symbolic link is never followed (`O_NOFOLLOW`),
//! a FIFO or device never blocks the open (`O_NONBLOCK`, cleared again once
//! the file is known to be regular), and anything but a regular file is
//! refused with an error naming the path. Temporary files are created new
//! (`O_EXCL`) under an unpredictable name. Permissions are left to the
//! umask, as before (a CLI and a server under different users may share
//! the directory).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Open `path` with `opts` (read, append, create…), refusing symbolic
/// links and anything but a regular file, without ever blocking on a FIFO.
pub(crate) fn open(path: &Path, opts: &mut OpenOptions) -> io::Result<File> {
    opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
    let f = opts.open(path).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => io::Error::other(format!(
            "{} is a symbolic link: refused (state files are never followed)",
            path.display()
        )),
        // A FIFO opened for writing without a reader, or a device.
        Some(libc::ENXIO) | Some(libc::ENODEV) => not_regular(path),
        _ => io::Error::new(e.kind(), format!("{}: {e}", path.display())),
    })?;
    if !f.metadata()?.file_type().is_file() {
        return Err(not_regular(path));
    }
    // Regular: back to blocking I/O (O_NONBLOCK only served the open).
    // SAFETY: a valid open descriptor owned by `f` for both calls.
    unsafe {
        let flags = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    Ok(f)
}

fn not_regular(path: &Path) -> io::Error {
    io::Error::other(format!("{} is not a regular file: refused", path.display()))
}

/// Create a new temporary file in `dir` for `name` (`.NAME.PID.RANDOM.tmp`),
/// never reusing or following an existing entry. Returns it and its path.
pub(crate) fn create_temp(dir: &Path, name: &str) -> io::Result<(File, PathBuf)> {
    let mut last = None;
    for _ in 0..8 {
        let tmp = dir.join(format!(".{name}.{}.{:016x}.tmp", std::process::id(), fastrand::u64(..)));
        match open(&tmp, OpenOptions::new().write(true).create_new(true)) {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no temporary name free")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_fifos_are_refused_promptly() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "secret").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let e = open(&link, OpenOptions::new().append(true).create(true)).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for opts in [
            OpenOptions::new().read(true).clone(),
            OpenOptions::new().append(true).clone(),
        ] {
            let e = open(&fifo, &mut opts.clone()).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "secret");
        let (_, tmp) = create_temp(dir.path(), "x").unwrap();
        assert!(tmp.file_name().unwrap().to_str().unwrap().starts_with(".x."));
    }
}
