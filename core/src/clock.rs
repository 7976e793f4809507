//! The injectable clock behind every time decision.
//!
//! Expiry, cache TTL, unknown-`kid` cooldown, JWKS TTL, backoff and staleness
//! all read time through [`Clock`], so tests move time with [`ManualClock`]
//! instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time, in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// A time no earlier than [`now_ms`](Clock::now_ms) would return now,
    /// if that is cheaper to read; else `now_ms()` itself (the default).
    ///
    /// A cache hit decides with it first: every check a hit makes is "now is
    /// before a deadline", so a result that may be served at a later time
    /// may be served now. Only a result near a deadline needs the exact time.
    fn now_ceiling_ms(&self) -> u64 {
        self.now_ms()
    }
}

/// What [`SystemClock::now_ceiling_ms`] adds to the coarse clock. The
/// coarse clock lags the real one by at most a scheduler tick (1 to 10 ms);
/// a whole second covers any tick with room to spare, and costs only that a
/// result in its last second before a deadline is decided with the exact
/// clock (two reads instead of one).
const COARSE_MARGIN_MS: u64 = 1000;

/// The system's real-time clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    /// Linux's `CLOCK_REALTIME_COARSE` (the time at the last tick, about a
    /// fifth of the cost of the exact clock) plus one second (the coarse clock
    /// lags by at most a tick; see `COARSE_MARGIN_MS`).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[inline]
    fn now_ceiling_ms(&self) -> u64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } != 0 || ts.tv_sec < 0 {
            return self.now_ms();
        }
        (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000 + COARSE_MARGIN_MS
    }
}

/// One call's time: the cheap ceiling, and the exact time read only if
/// something needs it (a miss, or a hit near a deadline), then kept.
pub(crate) struct Now<'c> {
    clock: &'c dyn Clock,
    ceiling: u64,
    exact: std::cell::Cell<Option<u64>>,
}

impl<'c> Now<'c> {
    #[inline]
    pub(crate) fn new(clock: &'c dyn Clock) -> Now<'c> {
        Now {
            clock,
            ceiling: clock.now_ceiling_ms(),
            exact: std::cell::Cell::new(None),
        }
    }

    /// A time no earlier than now (see [`Clock::now_ceiling_ms`]).
    #[inline]
    pub(crate) fn ceiling(&self) -> u64 {
        self.ceiling
    }

    /// The exact time, read once per call.
    #[inline]
    pub(crate) fn exact(&self) -> u64 {
        match self.exact.get() {
            Some(t) => t,
            None => {
                let t = self.clock.now_ms();
                self.exact.set(Some(t));
                t
            }
        }
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock set to `start_ms` milliseconds since the epoch.
    pub fn new(start_ms: u64) -> ManualClock {
        ManualClock {
            now: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// A clock set to the current system time (tokens minted "now" are valid).
    pub fn starting_now() -> ManualClock {
        ManualClock::new(SystemClock.now_ms())
    }

    /// Move the clock forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    /// Move the clock forward by `secs` seconds.
    pub fn advance_secs(&self, secs: u64) {
        self.advance_ms(secs * 1000);
    }

    /// Set the clock to `ms` milliseconds since the epoch.
    pub fn set_ms(&self, ms: u64) {
        self.now.store(ms, Ordering::SeqCst);
    }

    /// Current time in whole seconds (handy for minting claims).
    pub fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_ceiling_is_never_before_now_and_at_most_a_margin_after() {
        for _ in 0..10_000 {
            let before = SystemClock.now_ms();
            let ceiling = SystemClock.now_ceiling_ms();
            let after = SystemClock.now_ms();
            assert!(ceiling >= before, "ceiling {ceiling} before now {before}");
            assert!(
                ceiling <= after + COARSE_MARGIN_MS,
                "ceiling {ceiling} beyond {after} + margin"
            );
        }
    }

    #[test]
    fn now_reads_the_exact_clock_once_and_only_when_asked() {
        let clock = ManualClock::new(5_000);
        let now = Now::new(&clock);
        assert_eq!(now.ceiling(), 5_000, "a manual clock's ceiling is exact");
        clock.advance_ms(7);
        assert_eq!(now.exact(), 5_007, "read when first asked");
        clock.advance_ms(7);
        assert_eq!(now.exact(), 5_007, "then kept for the call");
    }
}
