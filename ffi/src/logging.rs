//! Bridges the core's `log` facade to a C callback.
//!
//! The facade allows one logger per process, so the callback is process-wide:
//! the first `jwtwarden_set_log_callback` installs a bridge logger, later calls
//! swap the callback it forwards to.

use std::ffi::{c_char, c_void};
use std::sync::{OnceLock, RwLock};

use jwtwarden_core::{Error, ErrorKind};

use crate::error::{c_string_lossy, jwtwarden_error, jwtwarden_result};
use crate::panic::fallible;

/// Log levels, most severe first. The numbers match Rust's `log` crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum jwtwarden_log_level {
    /// No logging (only meaningful as a maximum level).
    Off = 0,
    /// Errors.
    Error = 1,
    /// Warnings: a fetch failed, a key was skipped, keys are stale.
    Warn = 2,
    /// Informational: keys fetched, refresher restarted after fork.
    Info = 3,
    /// Debugging: every rejection (with a token fingerprint, never the token).
    Debug = 4,
    /// Tracing.
    Trace = 5,
}

/// A log callback. `message` is NUL-terminated UTF-8, valid only during the
/// call; it never contains a whole token (a short fingerprint at most).
/// Called from any thread, including the verifier's background thread, so it
/// must be thread-safe; it must not call `jwtwarden_set_log_callback`.
pub type jwtwarden_log_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, level: jwtwarden_log_level, message: *const c_char)>;

#[derive(Clone, Copy)]
struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, jwtwarden_log_level, *const c_char),
    userdata: *mut c_void,
}

// SAFETY: the C caller promises the callback and its userdata may be used
// from any thread (documented on jwtwarden_set_log_callback).
unsafe impl Send for Sink {}
// SAFETY: as above.
unsafe impl Sync for Sink {}

/// The current callback.
///
/// cbindgen:ignore
static SINK: RwLock<Option<Sink>> = RwLock::new(None);
/// Whether the bridge logger is installed.
///
/// cbindgen:ignore
static INSTALLED: OnceLock<bool> = OnceLock::new();
/// The bridge logger.
///
/// cbindgen:ignore
static BRIDGE: Bridge = Bridge;

struct Bridge;

impl log::Log for Bridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Held for the whole call, so after jwtwarden_set_log_callback returns
        // no thread is still inside the previous callback.
        let guard = SINK.read().unwrap_or_else(|p| p.into_inner());
        let Some(sink) = *guard else { return };
        let level = match record.level() {
            log::Level::Error => jwtwarden_log_level::Error,
            log::Level::Warn => jwtwarden_log_level::Warn,
            log::Level::Info => jwtwarden_log_level::Info,
            log::Level::Debug => jwtwarden_log_level::Debug,
            log::Level::Trace => jwtwarden_log_level::Trace,
        };
        let message = c_string_lossy(&format!("{}: {}", record.target(), record.args()));
        // SAFETY: the callback and userdata were registered by the C caller
        // for exactly this use; message outlives the call.
        unsafe { (sink.callback)(sink.userdata, level, message.as_ptr()) };
    }

    fn flush(&self) {}
}

fn level_filter(level: u32) -> Option<log::LevelFilter> {
    Some(match level {
        0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        4 => log::LevelFilter::Debug,
        5 => log::LevelFilter::Trace,
        _ => return None,
    })
}

/// Send the library's log records up to `max_level` (a
/// `jwtwarden_log_level`) to `callback`, with `userdata` passed back
/// unchanged. Process-wide: it replaces any earlier callback, for every
/// verifier. A NULL `callback` (or `JWTWARDEN_LOG_LEVEL_OFF`) turns logging
/// off. When this returns, the previous callback is no longer running on any
/// thread and will not be called again, so its userdata may be freed.
///
/// `JWTWARDEN_RESULT_INVALID_ARGUMENT` for an unknown level;
/// `JWTWARDEN_RESULT_INTERNAL` if another library in the process already
/// installed a Rust `log` logger.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_set_log_callback(
    callback: jwtwarden_log_callback,
    userdata: *mut c_void,
    max_level: u32,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        let filter = level_filter(max_level)
            .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, format!("unknown log level {max_level}")))?;
        if !*INSTALLED.get_or_init(|| log::set_logger(&BRIDGE).is_ok()) {
            return Err(Error::new(
                ErrorKind::Internal,
                "another Rust logger is already installed in this process",
            )
            .into());
        }
        let mut sink = SINK.write().unwrap_or_else(|p| p.into_inner());
        *sink = callback.map(|callback| Sink { callback, userdata });
        log::set_max_level(if sink.is_some() { filter } else { log::LevelFilter::Off });
        Ok(())
    })
}
