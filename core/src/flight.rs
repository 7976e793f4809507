//! Single flight for one issuer's fetches: at most one fetch in flight, and
//! every caller told the outcome of a fetch that can answer its question.
//!
//! * The first caller gets a [`Leader`] and fetches; callers arriving while
//!   it runs wait for it (up to their deadline) and share its outcome.
//! * A caller that must see a fetch *started after its call* (a manual
//!   refresh: "the IdP just removed a key, drop it now") does not accept the
//!   outcome of a fetch already in flight; it waits for that one to end and
//!   then leads (or joins) a newer one.
//! * Fetches on demand (an unknown `kid`) are limited to one per cooldown;
//!   the cooldown is only consulted when a new fetch would start, so joining
//!   a fetch in flight is never refused.
//! * The leader's outcome is published when its guard is finished or dropped,
//!   so a panicking fetch still releases every waiter.
//! * A fetch in flight in a parent process does not exist in a forked child:
//!   the child never waits for it (see `fork`).

use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// How a fetch ended: `Err` carries the reason it failed.
pub(crate) type Outcome = std::result::Result<(), String>;

/// Which fetches answer a caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// Any fetch, including one already in flight (scheduled refresh, unknown kid).
    Any,
    /// Only a fetch that starts after this call (manual refresh).
    StartedAfterCall,
}

/// What [`Flight::join`] decided.
pub(crate) enum Join<'a> {
    /// Fetch now and report through the guard.
    Lead(Leader<'a>),
    /// Another caller's fetch answered: its outcome.
    Joined(Outcome),
    /// The deadline passed while another caller's fetch was still running.
    TimedOut,
    /// An on-demand fetch is refused by the cooldown until this time (ms).
    RateLimited(u64),
}

#[derive(Default)]
struct State {
    /// The fetch in flight: its sequence number and the fork generation of
    /// the thread running it.
    in_flight: Option<(u64, u64)>,
    /// Sequence number of the last fetch started (they start at 1).
    started: u64,
    /// The last fetch that ended: its sequence number and outcome.
    last: Option<(u64, Outcome)>,
    /// When the last on-demand fetch started (ms), for the cooldown.
    last_on_demand_ms: Option<u64>,
    /// Callers waiting for a fetch to end, so a test can tell when its
    /// waiter is in place.
    #[cfg(test)]
    waiting: usize,
}

/// The fetch gate of one issuer.
#[derive(Default)]
pub(crate) struct Flight {
    state: Mutex<State>,
    ended: Condvar,
}

impl Flight {
    /// Join a fetch that answers `need`, or lead a new one. `cooldown_ms`
    /// (on-demand fetches only) refuses to start a fetch within that long
    /// of the last on-demand one, at time `now_ms`. Waiting for another
    /// caller's fetch ends at `deadline`.
    pub(crate) fn join(&self, need: Need, now_ms: u64, cooldown_ms: Option<u64>, deadline: Instant) -> Join<'_> {
        let fork = crate::fork::generation();
        let mut st = self.state.lock();
        // Fetches numbered up to this one started before the call.
        let before_call = st.started;
        while let Some((seq, owner_fork)) = st.in_flight {
            if owner_fork != fork {
                // Left behind by a thread of the parent process: it never ends here.
                break;
            }
            while st.last.as_ref().is_none_or(|(done, _)| *done < seq) {
                #[cfg(test)]
                {
                    st.waiting += 1;
                }
                let timed_out = self.ended.wait_until(&mut st, deadline).timed_out();
                #[cfg(test)]
                {
                    st.waiting -= 1;
                }
                if timed_out {
                    return Join::TimedOut;
                }
            }
            let (done, outcome) = st.last.as_ref().expect("a fetch ended");
            if need == Need::Any || *done > before_call {
                return Join::Joined(outcome.clone());
            }
            // That fetch started before the call; a newer one may be
            // in flight already (another manual refresh), else lead one.
        }
        if let Some(cooldown) = cooldown_ms {
            if let Some(last) = st.last_on_demand_ms {
                let until = last.saturating_add(cooldown);
                if now_ms < until {
                    return Join::RateLimited(until);
                }
            }
            st.last_on_demand_ms = Some(now_ms);
        }
        st.started += 1;
        let seq = st.started;
        st.in_flight = Some((seq, fork));
        Join::Lead(Leader {
            flight: self,
            seq,
            finished: false,
        })
    }

    /// Whether [`join`](Flight::join) for an on-demand fetch with this
    /// cooldown would answer [`Join::RateLimited`] right now, without
    /// waiting: no fetch in flight (in this process) and the last
    /// on-demand fetch started less than `cooldown_ms` before `now_ms`.
    /// `Some(until)` as `join` would; `None` when `join` would lead, or
    /// join (and wait for) a fetch in flight. Changes nothing.
    pub(crate) fn rate_limited(&self, now_ms: u64, cooldown_ms: u64) -> Option<u64> {
        let st = self.state.lock();
        if st
            .in_flight
            .is_some_and(|(_, owner_fork)| owner_fork == crate::fork::generation())
        {
            return None;
        }
        let until = st.last_on_demand_ms?.saturating_add(cooldown_ms);
        (now_ms < until).then_some(until)
    }
}

/// The right and duty to fetch: report the outcome with [`Leader::finish`].
/// Dropped unfinished (a panic), it reports a failure so no caller waits
/// for a fetch that will never end.
pub(crate) struct Leader<'a> {
    flight: &'a Flight,
    seq: u64,
    finished: bool,
}

impl Leader<'_> {
    /// Publish the fetch's outcome and wake every waiter.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.publish(outcome);
    }

    fn publish(&mut self, outcome: Outcome) {
        self.finished = true;
        let mut st = self.flight.state.lock();
        if st.in_flight.is_some_and(|(seq, _)| seq == self.seq) {
            st.in_flight = None;
        }
        if st.last.as_ref().is_none_or(|(done, _)| *done < self.seq) {
            st.last = Some((self.seq, outcome));
        }
        drop(st);
        self.flight.ended.notify_all();
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.publish(Err("the fetch panicked".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    /// Until `n` callers wait for the fetch in flight.
    fn until_waiting(flight: &Flight, n: usize) {
        let deadline = far();
        while flight.state.lock().waiting < n {
            assert!(Instant::now() < deadline, "no waiter arrived");
            std::thread::yield_now();
        }
    }

    #[test]
    fn callers_during_a_fetch_share_its_outcome() {
        let flight = Flight::default();
        let Join::Lead(leader) = flight.join(Need::Any, 0, None, far()) else {
            panic!("first caller leads")
        };
        std::thread::scope(|s| {
            let waiter = s.spawn(|| matches!(flight.join(Need::Any, 0, None, far()), Join::Joined(Err(_))));
            until_waiting(&flight, 1);
            leader.finish(Err("boom".into()));
            assert!(waiter.join().unwrap(), "the waiter got the leader's failure");
        });
    }

    #[test]
    fn a_manual_refresh_never_accepts_a_fetch_that_started_before_it() {
        let flight = Flight::default();
        let Join::Lead(old) = flight.join(Need::Any, 0, None, far()) else {
            panic!("first caller leads")
        };
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|s| {
            let flight = &flight;
            s.spawn(move || {
                let Join::Lead(new) = flight.join(Need::StartedAfterCall, 0, None, far()) else {
                    panic!("the manual refresh must lead its own fetch")
                };
                tx.send(()).unwrap();
                new.finish(Ok(()));
            });
            until_waiting(flight, 1);
            assert!(rx.try_recv().is_err(), "it waits for the old fetch first");
            old.finish(Ok(()));
            rx.recv_timeout(Duration::from_secs(10)).expect("then it leads");
        });
    }

    #[test]
    fn a_waiter_gives_up_at_its_deadline() {
        let flight = Flight::default();
        let Join::Lead(_leader) = flight.join(Need::Any, 0, None, far()) else {
            panic!("first caller leads")
        };
        let soon = Instant::now() + Duration::from_millis(30);
        assert!(matches!(flight.join(Need::Any, 0, None, soon), Join::TimedOut));
    }

    #[test]
    fn on_demand_fetches_respect_the_cooldown() {
        let flight = Flight::default();
        let Join::Lead(l) = flight.join(Need::Any, 1_000, Some(500), far()) else {
            panic!("leads")
        };
        l.finish(Ok(()));
        assert!(matches!(
            flight.join(Need::Any, 1_499, Some(500), far()),
            Join::RateLimited(1_500)
        ));
        assert!(matches!(flight.join(Need::Any, 1_500, Some(500), far()), Join::Lead(_)));
    }

    #[test]
    fn a_panicking_leader_releases_its_waiters() {
        let flight = Flight::default();
        std::thread::scope(|s| {
            let leader = s.spawn(|| {
                let Join::Lead(_l) = flight.join(Need::Any, 0, None, far()) else {
                    return;
                };
                std::thread::sleep(Duration::from_millis(30));
                panic!("fetch panicked");
            });
            std::thread::sleep(Duration::from_millis(10));
            let got = flight.join(Need::Any, 0, None, far());
            assert!(matches!(got, Join::Joined(Err(_)) | Join::Lead(_)));
            assert!(leader.join().is_err());
        });
    }
}
