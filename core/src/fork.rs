//! Fork detection for pre-fork servers (gunicorn, uWSGI, PHP-FPM, Apache
//! prefork).
//!
//! A forked child has only the thread that called `fork()`: the refresher
//! thread is gone, and a fetch that was "in flight" in the parent will never
//! complete in the child. A `pthread_atfork` child handler bumps a process-wide
//! generation; the verifier compares it (one relaxed atomic load, cheap enough
//! for the cache-hit path) and respawns what the child lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();

extern "C" fn in_child() {
    // Async-signal-safe: a single atomic add, no allocation, no locks.
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// Install the `pthread_atfork` handler once per process.
pub(crate) fn install() {
    REGISTER.call_once(|| {
        // SAFETY: registering a handler that only does an atomic add is sound;
        // pthread_atfork has no other preconditions.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        if rc != 0 {
            log::warn!("pthread_atfork failed ({rc}): a forked child will not respawn the refresher");
        }
    });
}

/// How many times this process's ancestry has forked since start (0 in the
/// original process). Changes exactly in a child after `fork()`.
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}
