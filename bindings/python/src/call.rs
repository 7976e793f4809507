//! How every engine call is made: with the GIL released (or, for the calls
//! that never wait, held), panics caught, and log records emitted during
//! the call handed to `logging` afterwards.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pyo3::prelude::*;

use crate::errors::{CallError, CoreError};
use crate::logbridge;

/// Set by the `atexit` hook: the interpreter is shutting down.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Engine calls made with the GIL released, since the module was loaded.
static DETACHED: AtomicU64 = AtomicU64::new(0);

/// How many engine calls this process made with the GIL released (for the
/// tests that check which calls keep it).
#[pyfunction]
pub(crate) fn _detached_calls() -> u64 {
    DETACHED.load(Ordering::Relaxed)
}

/// Called from the `atexit` hook, before the interpreter starts to finalize.
pub(crate) fn interpreter_exiting() {
    EXITING.store(true, Ordering::SeqCst);
}

/// Run `f` with the GIL released (other Python threads keep running while
/// the engine verifies or fetches), turning a panic into a `PanicError`.
/// Log records produced meanwhile by this thread are emitted once the GIL is
/// held again, in order, on this thread.
///
/// A call that ends after the interpreter began to exit never takes the GIL
/// back: its thread (a daemon thread still verifying at exit) parks until
/// the process ends. Taking it back would make CPython (before 3.14) end the
/// thread with `pthread_exit`, whose forced unwind runs PyO3's clean-up code
/// against a finalized interpreter: a crash at exit, seen about once in 50
/// exits of `test_interpreter_exit_does_not_hang`.
pub(crate) fn detached<T, F>(py: Python<'_>, f: F) -> Result<T, CallError>
where
    F: FnOnce() -> jwtwarden::Result<T> + Send,
    T: Send,
{
    DETACHED.fetch_add(1, Ordering::Relaxed);
    let result = py.detach(|| {
        let result = {
            let _scope = logbridge::CallScope::enter();
            guard(f)
        };
        if EXITING.load(Ordering::SeqCst) {
            loop {
                std::thread::park();
            }
        }
        result
    });
    logbridge::flush_local(py);
    result
}

/// Run `f` with the GIL held, for engine calls that never wait (the
/// answers of `verify_without_waiting`: microseconds, no fetch, no lock held
/// across one). Releasing the GIL for them would cost more than the call:
/// taking it back waits for the thread holding it to give it up, up to the
/// interpreter's switch interval (5 ms), a convoy when another thread is
/// busy in Python. Panics and log records are handled as in [`detached`].
#[inline(always)]
pub(crate) fn attached<T>(py: Python<'_>, f: impl FnOnce() -> T) -> Result<T, CallError> {
    let result = {
        let _scope = logbridge::CallScope::enter();
        catch(f)
    };
    logbridge::flush_local(py);
    result
}

/// Run `f`, turning a panic into [`CallError::Panic`] (code 901, this
/// boundary's own: the engine has no kind for it).
#[inline(always)]
pub(crate) fn guard<T>(f: impl FnOnce() -> jwtwarden::Result<T>) -> Result<T, CallError> {
    catch(f)?.map_err(|e| CallError::Engine(CoreError(e)))
}

/// Run `f`, turning a panic into [`CallError::Panic`]; for work that cannot
/// fail otherwise.
#[inline(always)]
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, CallError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panicked(&*payload))
}

/// The error for a caught panic, with its message.
#[cold]
fn panicked(payload: &(dyn std::any::Any + Send)) -> CallError {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    CallError::Panic(format!("internal panic: {what}"))
}
