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
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long dropping a handle waits for its thread to finish.
const JOIN_WAIT: Duration = Duration::from_secs(1);

/// A background thread's handle: dropping it raises the thread's stop
/// signal and waits (at most [`JOIN_WAIT`]) for the thread to finish.
///
/// Why wait: a C host frees its verifier and may exit the process at once
/// (an Apache child frees it in its pool cleanup, then calls `exit`). A
/// thread still unwinding its state then runs library code while the
/// process tears itself down (its atexit handlers and its libraries'
/// destructors); an event-MPM child was seen to die of a segfault at that
/// moment. A thread parked on its stop signal (the usual case) finishes
/// within microseconds of being woken. One blocked in a fetch or a Redis
/// read is left to finish on its own after the wait, as before. Only the
/// process that started the thread waits for it (a forked child has no such
/// thread), and never the thread itself (it may hold the last reference to
/// what owns the handle).
pub(crate) struct StopOnDrop {
    stop: StopSignal,
    thread: Option<JoinHandle<()>>,
    pid: u32,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.stop.stop();
        let Some(thread) = self.thread.take() else { return };
        if std::process::id() != self.pid || thread.thread().id() == std::thread::current().id() {
            return;
        }
        let deadline = Instant::now() + JOIN_WAIT;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(100));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

/// Start `body` on a thread named `name`, handing it the stop signal that
/// the returned handle raises when dropped.
pub(crate) fn spawn(name: &str, body: impl FnOnce(StopSignal) + Send + 'static) -> std::io::Result<StopOnDrop> {
    let stop = StopSignal::default();
    let thread_stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || body(thread_stop))?;
    Ok(StopOnDrop {
        stop,
        thread: Some(thread),
        pid: std::process::id(),
    })
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
