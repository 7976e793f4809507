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

/// State of which each process has its own: a forked child never uses the
/// value it inherited, but makes its own on first use.
///
/// What it is for: a connection pool, a kept connection, an open file behind
/// a lock. At the instant of a fork another thread of the parent may be
/// using the inherited value, or holding its lock while it waits on the
/// network or the disk. That thread does not exist in the child, so the
/// child's copy of the lock would stay locked for ever, and its copy of a
/// socket is one the parent goes on using. The inherited value is dropped
/// when replaced: that closes the child's copies of descriptors and leaves
/// the parent's open (none of the values this holds writes anything when
/// dropped).
pub(crate) struct PerProcess<T> {
    current: arc_swap::ArcSwap<Owned<T>>,
}

/// A [`PerProcess`] value and the fork generation it was made in.
pub(crate) struct Owned<T> {
    generation: u64,
    value: T,
}

impl<T> std::ops::Deref for Owned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> PerProcess<T> {
    /// `value` belongs to this process.
    pub(crate) fn new(value: T) -> PerProcess<T> {
        install();
        PerProcess {
            current: arc_swap::ArcSwap::from_pointee(Owned {
                generation: generation(),
                value,
            }),
        }
    }

    /// This process's value. In a forked child's first call, `renew` makes
    /// it from the inherited one, which it may only read plain data from
    /// (configuration; no lock, no I/O). One atomic load otherwise.
    pub(crate) fn get(&self, renew: impl FnOnce(&T) -> T) -> std::sync::Arc<Owned<T>> {
        let now = generation();
        let current = self.current.load_full();
        if current.generation == now {
            return current;
        }
        let fresh = std::sync::Arc::new(Owned {
            generation: now,
            value: renew(&current.value),
        });
        drop(current);
        self.current.store(std::sync::Arc::clone(&fresh));
        fresh
    }
}
