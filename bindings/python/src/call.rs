//! How every engine call is made: with the GIL released, panics caught, and
//! log records emitted during the call handed to `logging` afterwards.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::prelude::*;

use crate::errors::{CallError, CoreError};
use crate::logbridge;

/// Run `f` with the GIL released (other Python threads keep running while
/// the engine verifies or fetches), turning a panic into a `PanicError`.
/// Log records produced meanwhile by this thread are emitted once the GIL is
/// held again, in order, on this thread.
pub(crate) fn detached<T, F>(py: Python<'_>, f: F) -> Result<T, CallError>
where
    F: FnOnce() -> jwtwarden::Result<T> + Send,
    T: Send,
{
    let result = py.detach(|| {
        let _scope = logbridge::CallScope::enter();
        guard(f)
    });
    logbridge::flush_local(py);
    result
}

/// Run `f`, turning a panic into [`CallError::Panic`] (code 901, this
/// boundary's own: the engine has no kind for it).
pub(crate) fn guard<T>(f: impl FnOnce() -> jwtwarden::Result<T>) -> Result<T, CallError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(|e| CallError::Engine(CoreError(e))),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(CallError::Panic(format!("internal panic: {what}")))
        }
    }
}
