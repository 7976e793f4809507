//! Shared setup for the end-to-end tests: a real test issuer on 127.0.0.1,
//! a verifier pointed at it, and a manual clock that only moves when told.

#![allow(dead_code)]

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwtwarden::{Config, ErrorKind, ManualClock, Verifier};
use jwtwarden_testissuer::TestIssuer;
use serde_json::{json, Value};

#[allow(unused_imports)] // each test binary uses a different subset
pub use jwtwarden_testissuer::{Alg as IssuerAlg, Fault};

/// A verifier, its clock, and the issuer it trusts.
pub struct Setup {
    pub issuer: TestIssuer,
    pub clock: ManualClock,
    pub verifier: Verifier,
}

/// The JSON config for one loopback issuer, scheduled refresh driven by the
/// test (`run_due_refreshes`), short HTTP timeouts.
pub fn config_json(issuer: &TestIssuer) -> Value {
    json!({
        "issuers": [{
            "issuer": issuer.url(),
            "jwks_uri": issuer.jwks_uri(),
            "audiences": ["api"],
        }],
        "http": { "allow_http": true, "timeout_ms": 1500, "connect_timeout_ms": 500 },
        "background_refresh": false,
    })
}

/// Build a verifier for `issuer`, letting the test adjust the config JSON.
pub fn verifier_for(issuer: &TestIssuer, clock: &ManualClock, adjust: impl FnOnce(&mut Value)) -> Verifier {
    let mut cfg = config_json(issuer);
    adjust(&mut cfg);
    let config = Config::from_value(cfg).expect("valid test config");
    Verifier::with_clock(config, Arc::new(clock.clone())).expect("verifier starts")
}

pub fn setup() -> Setup {
    setup_with(|_| {})
}

pub fn setup_with(adjust: impl FnOnce(&mut Value)) -> Setup {
    let issuer = TestIssuer::start();
    let clock = ManualClock::starting_now();
    let verifier = verifier_for(&issuer, &clock, adjust);
    Setup {
        issuer,
        clock,
        verifier,
    }
}

/// A setup around an issuer prepared before the verifier's startup fetch
/// (cache headers, ETag).
pub fn setup_for(issuer: TestIssuer) -> Setup {
    let clock = ManualClock::starting_now();
    let verifier = verifier_for(&issuer, &clock, |_| {});
    Setup {
        issuer,
        clock,
        verifier,
    }
}

/// A verifier on the real clock with its background refresher, for an
/// issuer whose JWKS expires every second (`max-age=1`): for the tests whose
/// point is the real thread.
pub fn background_verifier(issuer: &TestIssuer) -> Verifier {
    issuer.set_cache_control(Some("max-age=1"));
    let config = Config::from_value(json!({
        "issuers": [{
            "issuer": issuer.url(), "jwks_uri": issuer.jwks_uri(), "audiences": ["api"],
            "refresh": {"min_ttl_secs": 1, "jitter": 0.0},
        }],
        "http": {"allow_http": true},
    }))
    .expect("valid test config");
    Verifier::new(config).expect("verifier starts")
}

impl Setup {
    /// A valid token signed by `kid`, issued at the manual clock's now.
    pub fn token(&self, kid: &str) -> String {
        self.issuer
            .mint(kid, &self.issuer.default_claims("svc-a", self.clock.now_secs()))
    }

    /// A valid token with extra/overridden claims.
    pub fn token_with(&self, kid: &str, extra: Value) -> String {
        let mut claims = self.issuer.default_claims("svc-a", self.clock.now_secs());
        for (k, v) in extra.as_object().expect("object") {
            claims[k] = v.clone();
        }
        self.issuer.mint(kid, &claims)
    }

    pub fn kind(&self, token: &str) -> ErrorKind {
        self.verifier.verify(token).expect_err("token must be rejected").kind()
    }
}

/// `token` with its header replaced (signature kept): cheap storm tokens and
/// header-injection tokens.
pub fn with_header(token: &str, header: &Value) -> String {
    let mut parts = token.splitn(2, '.');
    parts.next();
    let rest = parts.next().expect("a JWT");
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

/// `token` with its payload replaced (original signature kept).
pub fn with_payload(token: &str, claims: &Value) -> String {
    let p: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", p[0], URL_SAFE_NO_PAD.encode(claims.to_string()), p[2])
}

/// Decoded payload of a token.
pub fn payload(token: &str) -> Value {
    let p: Vec<&str> = token.split('.').collect();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p[1]).unwrap()).unwrap()
}

/// A `log` logger that keeps each record as `"LEVEL message"` for tests to
/// assert on. The logger is global to a test binary: install one per binary.
pub struct LogCapture {
    lines: std::sync::Mutex<Vec<String>>,
    /// Keep only jwtwarden's own records, not the HTTP client's or server's.
    only_jwtwarden: bool,
}

impl LogCapture {
    pub const fn new(only_jwtwarden: bool) -> LogCapture {
        LogCapture {
            lines: std::sync::Mutex::new(Vec::new()),
            only_jwtwarden,
        }
    }

    /// Become the process's logger, at every level.
    pub fn install(&'static self) {
        log::set_logger(self).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    }

    /// The lines captured since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

impl log::Log for LogCapture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.only_jwtwarden && !record.target().starts_with("jwtwarden") {
            return;
        }
        self.lines
            .lock()
            .unwrap()
            .push(format!("{} {}", record.level(), record.args()));
    }
    fn flush(&self) {}
}

/// Run `child` in a forked child process and return its exit code, or
/// `None` if it has not exited within `limit` (it is then killed). The
/// child leaves with `_exit`; a panic in it exits with 99.
pub fn in_forked_child(limit: std::time::Duration, child: impl FnOnce() -> i32) -> Option<i32> {
    // SAFETY: the child runs only `child` and leaves with _exit, skipping
    // the parent's atexit handlers and the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(99);
        // SAFETY: _exit is always safe to call.
        unsafe { libc::_exit(code) };
    }
    let deadline = std::time::Instant::now() + limit;
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let waited = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if waited == pid {
            return libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        }
        if std::time::Instant::now() > deadline {
            // SAFETY: our own child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
