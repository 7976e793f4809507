//! A stop signal for the library's background threads (the refresher, the
//! fleet feed's subscriber): the owner's handle raises it when dropped, the
//! thread sleeps on it between rounds and wakes at once.
//!
//! It is `std::sync`, not `parking_lot`: these threads spend their life
//! parked on it, and `parking_lot` parks threads in one process-wide table
//! whose bucket locks a sleeping or waking thread takes. A `fork()` that
//! lands while one is held leaves that bucket locked forever in the child,
//! where any other lock or condition variable hashing to it then spins or
//! hangs (seen: a child freeing its verifier spun in `notify_all`). std's
//! futex primitives keep their state in the object itself.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A background thread's handle: dropping it raises the thread's stop
/// signal.
pub(crate) struct StopOnDrop(StopSignal);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Start `body` on a thread named `name`, handing it the stop signal that
/// the returned handle raises when dropped.
pub(crate) fn spawn(name: &str, body: impl FnOnce(StopSignal) + Send + 'static) -> std::io::Result<StopOnDrop> {
    let stop = StopSignal::default();
    let thread_stop = stop.clone();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || body(thread_stop))?;
    Ok(StopOnDrop(stop))
}

/// A shared stop flag; clones see the same flag.
#[derive(Clone, Default)]
pub(crate) struct StopSignal(Arc<(Mutex<bool>, Condvar)>);

impl StopSignal {
    /// Raise the flag and wake the sleeper.
    pub(crate) fn stop(&self) {
        let (flag, cv) = &*self.0;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
    }

    /// Whether the flag is raised.
    pub(crate) fn stopped(&self) -> bool {
        *self.0 .0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleep for `d` unless the flag is raised first; `true` if it was.
    pub(crate) fn pause(&self, d: Duration) -> bool {
        let (flag, cv) = &*self.0;
        let guard = flag.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = cv
            .wait_timeout_while(guard, d, |stopped| !*stopped)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}
