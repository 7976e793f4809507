//! The background refresher: one thread per verifier that runs each issuer's
//! scheduled refresh before its keys expire, so no request waits for one.
//!
//! The thread holds only a weak reference to the verifier's state: dropping
//! the [`Verifier`](crate::Verifier) wakes it, and it exits at once (or, if a
//! fetch is under way, as soon as that fetch ends).
//!
//! Its stop signal is a [`StopSignal`] (`std::sync`, fork-safe; see there).

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::stop::{StopOnDrop, StopSignal};

/// Longest sleep between checks, so a manual clock or a changed JWKS file is
/// noticed without an exact deadline.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Shortest sleep, so a refresh that is due but coalesced cannot spin.
const MIN_SLEEP: Duration = Duration::from_millis(50);

/// What the refresher runs: implemented by the verifier's shared state,
/// which sits above the refresher, so the refresher names no verifier type.
pub(crate) trait Refreshable: Send + Sync + 'static {
    /// Whether anything is ever refreshed in the background.
    fn has_refreshable_issuers(&self) -> bool;
    /// Run every scheduled refresh that is due; when the next is due (ms).
    fn run_due(&self) -> u64;
    /// The verifier's clock, now (ms).
    fn now_ms(&self) -> u64;
}

/// Handle to the refresher thread; dropping it stops the thread.
pub(crate) struct Refresher {
    _stop: StopOnDrop,
}

impl Refresher {
    pub(crate) fn spawn_if_needed<S: Refreshable>(shared: &Arc<S>) -> Option<Refresher> {
        if !shared.has_refreshable_issuers() {
            return None;
        }
        let weak = Arc::downgrade(shared);
        match crate::stop::spawn("jwtwarden-refresh", move |stop| run(weak, stop)) {
            Ok(handle) => Some(Refresher { _stop: handle }),
            Err(e) => {
                log::error!("cannot start the refresher thread: {e}; keys refresh only on unknown kid");
                None
            }
        }
    }
}

fn run<S: Refreshable>(shared: Weak<S>, stop: StopSignal) {
    loop {
        let sleep = {
            let Some(s) = shared.upgrade() else { return };
            let next = s.run_due();
            let now = s.now_ms();
            Duration::from_millis(next.saturating_sub(now)).clamp(MIN_SLEEP, MAX_SLEEP)
        };
        if stop.pause(sleep) {
            return;
        }
    }
}
