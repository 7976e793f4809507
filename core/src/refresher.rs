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
use crate::verifier::Shared;

/// Longest sleep between checks, so a manual clock or a changed JWKS file is
/// noticed without an exact deadline.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Shortest sleep, so a refresh that is due but coalesced cannot spin.
const MIN_SLEEP: Duration = Duration::from_millis(50);

/// Handle to the refresher thread; dropping it stops the thread.
pub(crate) struct Refresher {
    _stop: StopOnDrop,
}

impl Refresher {
    pub(crate) fn spawn_if_needed(shared: &Arc<Shared>) -> Option<Refresher> {
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

fn run(shared: Weak<Shared>, stop: StopSignal) {
    loop {
        let sleep = {
            let Some(s) = shared.upgrade() else { return };
            let next = s.run_due();
            let now = s.env.clock.now_ms();
            Duration::from_millis(next.saturating_sub(now)).clamp(MIN_SLEEP, MAX_SLEEP)
        };
        if stop.pause(sleep) {
            return;
        }
    }
}
