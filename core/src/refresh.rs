//! The refresh machine: one set of rules for keeping a fetched document
//! fresh, shared by JWKS sets, OIDC discovery documents and status lists.
//!
//! * **Lifetime** from the response's `Cache-Control: max-age` or `Expires`
//!   (or the document's own `ttl`), else a default, clamped to the
//!   configured `[min, max]` and at least one second ([`Policy::ttl_ms`]).
//! * **Schedule**: the next refresh at 75 %–90 % of the lifetime by default
//!   (`0.9 − jitter·U`), so a fleet does not refresh in lockstep.
//! * **Conditional GET**: the validators (`ETag` / `Last-Modified`) of the
//!   document in use; a `304` keeps them and extends the document's life.
//! * **Failures** keep the document in use and back off exponentially with
//!   ±20 % jitter ([`Policy::backoff_ms`]); a server's `Retry-After` is a
//!   lower bound on the delay, clamped to the largest backoff.
//! * **`Retry-After` holds every fetch**, not only scheduled ones: until it
//!   has passed, an on-demand fetch (an unknown `kid`) is refused as if by
//!   its cooldown. A manual refresh (an operator's) is not held.
//! * **Staleness**: a document is served until `max_stale` past its
//!   lifetime, then its owner fails closed ([`health`]).
//!
//! A [`Machine`] holds one document's schedule; the document itself, and
//! what "applying" it means, stay with its owner (the issuer's key store,
//! a status-list slot). Fetches still go through the owner's single-flight
//! gate ([`Flight`]), which [`Machine::run`] takes.

use std::time::Instant;

use parking_lot::Mutex;

use crate::config::{RefreshConfig, StatusListConfig};
use crate::fetch::{FetchError, Validators};
use crate::flight::{Flight, Join, Need};
use crate::metrics::Health;

/// The numbers one kind of document is refreshed by (all from config).
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    default_ttl_secs: u64,
    min_ttl_secs: u64,
    max_ttl_secs: u64,
    max_stale_secs: u64,
    backoff_initial_secs: u64,
    backoff_max_secs: u64,
    jitter: f64,
}

impl Policy {
    /// JWKS sets and discovery documents: the issuer's `refresh` settings.
    pub(crate) fn for_keys(r: &RefreshConfig) -> Policy {
        Policy {
            default_ttl_secs: r.default_ttl_secs,
            min_ttl_secs: r.min_ttl_secs,
            max_ttl_secs: r.max_ttl_secs,
            max_stale_secs: r.max_stale_secs,
            backoff_initial_secs: r.backoff_initial_secs,
            backoff_max_secs: r.backoff_max_secs,
            jitter: r.jitter,
        }
    }

    /// Status lists: lifetimes and staleness from `status_list`, backoff
    /// and jitter from the issuer's `refresh`.
    pub(crate) fn for_status_lists(s: &StatusListConfig, r: &RefreshConfig) -> Policy {
        Policy {
            default_ttl_secs: s.default_ttl_secs,
            min_ttl_secs: s.min_ttl_secs,
            max_ttl_secs: s.max_ttl_secs,
            max_stale_secs: s.max_stale_secs,
            ..Policy::for_keys(r)
        }
    }

    /// A document's lifetime (ms) from the lifetime its response or its
    /// claims gave (`None`: the default), clamped, at least one second.
    pub(crate) fn ttl_ms(&self, secs: Option<u64>) -> u64 {
        secs.unwrap_or(self.default_ttl_secs)
            .clamp(self.min_ttl_secs, self.max_ttl_secs)
            .max(1)
            .saturating_mul(1000)
    }

    /// Until when (ms) a document whose lifetime ends at `expires_at` may
    /// still be served while refreshes fail.
    pub(crate) fn stale_until(&self, expires_at: u64) -> u64 {
        expires_at.saturating_add(self.max_stale_secs.saturating_mul(1000))
    }

    /// When (ms) to refresh a document fetched at `now` whose lifetime
    /// ends at `expires_at`: at `0.9 − jitter·U` of it, ahead of expiry.
    pub(crate) fn refresh_at(&self, now: u64, expires_at: u64) -> u64 {
        let fraction = 0.9 - self.jitter * fastrand::f64();
        now + (expires_at.saturating_sub(now) as f64 * fraction) as u64
    }

    /// Delay (ms) before the next attempt after `failures` consecutive
    /// failures. A server's `Retry-After` is honoured as a lower bound on it
    /// (retrying sooner is what it asked us not to do), clamped to
    /// `backoff_max_secs` so a server cannot push refreshes out until the
    /// document goes stale.
    pub(crate) fn backoff_ms(&self, failures: u32, retry_after_secs: Option<u64>) -> u64 {
        let exp = self
            .backoff_initial_secs
            .saturating_mul(1u64 << failures.saturating_sub(1).min(30));
        let base = exp.min(self.backoff_max_secs).saturating_mul(1000);
        // ±20 % jitter so a fleet does not retry in lockstep.
        let spread = base / 5;
        let backoff = base - spread + fastrand::u64(0..=spread * 2);
        match retry_after_secs {
            Some(secs) => backoff.max(self.retry_after_ms(secs)),
            None => backoff,
        }
    }

    fn retry_after_ms(&self, secs: u64) -> u64 {
        secs.min(self.backoff_max_secs).saturating_mul(1000)
    }
}

/// A document's health at `now`: `expires_at` is the end of the lifetime of
/// the document in use (`None`: none was ever loaded), `fail_closed_at`
/// when it stops being served.
pub(crate) fn health(now: u64, expires_at: Option<u64>, fail_closed_at: u64) -> Health {
    match expires_at {
        Some(_) if now >= fail_closed_at => Health::FailedClosed,
        Some(expires_at) if now > expires_at => Health::Stale,
        Some(_) => Health::Fresh,
        None => Health::FailedClosed,
    }
}

/// What a successful fetch means for the schedule.
pub(crate) enum Next {
    /// A document (or a `304` confirming it) whose lifetime ends then (ms):
    /// refresh ahead of it. `Some` validators replace those kept for the
    /// next conditional GET; `None` keeps them (a `304`).
    Expires(u64, Option<Validators>),
    /// Look again at this time (ms): a polled file, or never (`u64::MAX`).
    At(u64),
}

/// The outcome of asking for a refresh.
pub(crate) enum Refresh {
    /// A fetch succeeded: this caller's own, or one it joined.
    Ok {
        /// Whether it was another caller's fetch.
        joined: bool,
    },
    /// A fetch failed: this caller's own, or one it joined.
    Failed {
        /// Why it failed.
        error: String,
    },
    /// Refused until the given time (ms): by the on-demand cooldown, or by
    /// the `Retry-After` of the last failed fetch.
    RateLimited(u64),
    /// Another caller's fetch was still running at the deadline.
    TimedOut,
}

/// Who asks for a fetch, for the rules that hold it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Asker {
    /// The schedule (or a first use, at most once per backoff).
    Scheduled,
    /// A request on demand (an unknown `kid`): at most one per this
    /// cooldown (ms), and never inside a `Retry-After`.
    OnDemand(u64),
    /// An operator: neither cooldown nor `Retry-After` holds it.
    Manual,
}

#[derive(Default)]
struct State {
    next_ms: u64,
    failures: u32,
    validators: Validators,
    /// A failed fetch's `Retry-After`: no fetch but a manual one before (ms).
    retry_after_until_ms: u64,
    last_success_ms: Option<u64>,
    last_error: Option<String>,
}

/// One document's refresh schedule.
#[derive(Default)]
pub(crate) struct Machine {
    state: Mutex<State>,
}

impl Machine {
    /// Whether a scheduled refresh is due at `now`.
    pub(crate) fn due(&self, now: u64) -> bool {
        now >= self.state.lock().next_ms
    }

    /// When the next scheduled refresh is due (ms).
    pub(crate) fn next_ms(&self) -> u64 {
        self.state.lock().next_ms
    }

    /// Make the next scheduled refresh due at `at` (ms).
    pub(crate) fn schedule(&self, at: u64) {
        self.state.lock().next_ms = at;
    }

    /// Validators of the document in use, for a conditional GET.
    pub(crate) fn validators(&self) -> Validators {
        self.state.lock().validators.clone()
    }

    /// Why the last fetch failed, unless one succeeded since.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.state.lock().last_error.clone()
    }

    /// When the last fetch succeeded (ms).
    pub(crate) fn last_success_ms(&self) -> Option<u64> {
        self.state.lock().last_success_ms
    }

    /// Until when (ms) a `Retry-After` holds fetches back, if it does at `now`.
    pub(crate) fn held_until(&self, now: u64) -> Option<u64> {
        let until = self.state.lock().retry_after_until_ms;
        (now < until).then_some(until)
    }

    /// Record a successful fetch at `now`.
    pub(crate) fn succeeded(&self, policy: &Policy, now: u64, next: Next) {
        let mut s = self.state.lock();
        s.failures = 0;
        s.retry_after_until_ms = 0;
        s.last_success_ms = Some(now);
        s.last_error = None;
        match next {
            Next::Expires(expires_at, validators) => {
                s.next_ms = policy.refresh_at(now, expires_at);
                if let Some(v) = validators {
                    s.validators = v;
                }
            }
            Next::At(at) => s.next_ms = at,
        }
    }

    /// Record a failed fetch at `now`: back off. Returns the number of
    /// consecutive failures.
    pub(crate) fn failed(&self, policy: &Policy, now: u64, e: &FetchError) -> u32 {
        let mut s = self.state.lock();
        s.failures = s.failures.saturating_add(1);
        s.next_ms = now + policy.backoff_ms(s.failures, e.retry_after_secs);
        s.retry_after_until_ms = e
            .retry_after_secs
            .map_or(0, |secs| now.saturating_add(policy.retry_after_ms(secs)));
        s.last_error = Some(e.message.clone());
        s.failures
    }

    /// Fetch through `flight` (or join the fetch in flight that answers
    /// `need`), unless `asker` is held back, and record the outcome.
    /// `fetch` fetches and applies the document (ending by `deadline`); on
    /// failure, `failed` is told the error and the attempt number (to log
    /// it, count it). Waiting for another caller's fetch ends at `deadline`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(
        &self,
        policy: &Policy,
        flight: &Flight,
        asker: Asker,
        need: Need,
        now: u64,
        deadline: Instant,
        fetch: impl FnOnce() -> Result<Next, FetchError>,
        failed: impl FnOnce(&FetchError, u32),
    ) -> Refresh {
        let cooldown = match asker {
            Asker::OnDemand(cooldown) => Some(cooldown),
            Asker::Scheduled | Asker::Manual => None,
        };
        if let (Some(_), Some(until)) = (cooldown, self.held_until(now)) {
            return Refresh::RateLimited(until);
        }
        let leader = match flight.join(need, now, cooldown, deadline) {
            Join::Lead(leader) => leader,
            Join::Joined(Ok(())) => return Refresh::Ok { joined: true },
            Join::Joined(Err(error)) => return Refresh::Failed { error },
            Join::TimedOut => return Refresh::TimedOut,
            Join::RateLimited(until) => return Refresh::RateLimited(until),
        };
        let outcome = match fetch() {
            Ok(next) => {
                self.succeeded(policy, now, next);
                Ok(())
            }
            Err(e) => {
                let attempt = self.failed(policy, now, &e);
                failed(&e, attempt);
                Err(e.message)
            }
        };
        leader.finish(outcome.clone());
        match outcome {
            Ok(()) => Refresh::Ok { joined: false },
            Err(error) => Refresh::Failed { error },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::for_keys(&RefreshConfig {
            backoff_initial_secs: 1,
            backoff_max_secs: 120,
            ..RefreshConfig::default()
        })
    }

    #[test]
    fn retry_after_is_a_clamped_lower_bound_and_holds_until_a_success() {
        let (p, m) = (policy(), Machine::default());
        let e = FetchError {
            message: "HTTP 503".into(),
            retry_after_secs: Some(100_000),
        };
        assert_eq!(m.failed(&p, 1_000, &e), 1);
        assert_eq!(m.next_ms(), 121_000, "clamped to backoff_max_secs");
        assert_eq!(m.held_until(120_999), Some(121_000));
        assert_eq!(m.held_until(121_000), None);
        m.succeeded(&p, 2_000, Next::At(9_000));
        assert_eq!(m.held_until(2_000), None, "a success ends it");
        let failures = m.state.lock().failures;
        assert_eq!((failures, m.next_ms()), (0, 9_000));
    }

    #[test]
    fn a_refresh_is_scheduled_ahead_of_expiry_and_a_304_keeps_the_validators() {
        let (p, m) = (policy(), Machine::default());
        let v = Validators {
            etag: Some("\"1\"".into()),
            last_modified: None,
        };
        m.succeeded(&p, 0, Next::Expires(100_000, Some(v.clone())));
        assert!((75_000..=90_000).contains(&m.next_ms()), "{}", m.next_ms());
        m.succeeded(&p, 0, Next::Expires(100_000, None));
        assert_eq!(m.validators(), v);
    }

    #[test]
    fn health_goes_fresh_stale_failed_closed() {
        assert_eq!(health(10, None, u64::MAX), Health::FailedClosed);
        assert_eq!(health(10, Some(10), 20), Health::Fresh);
        assert_eq!(health(11, Some(10), 20), Health::Stale);
        assert_eq!(health(20, Some(10), 20), Health::FailedClosed);
    }
}
