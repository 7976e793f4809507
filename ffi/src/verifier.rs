//! `jwtwarden_verifier`: the verifier handle and everything called on it.

use std::ffi::{c_char, CString};

use jwtwarden_core::{Config, Error, ErrorKind, Health, IssuerEntry, Verifier, VerifyOptions};

use crate::error::{c_string_lossy, jwtwarden_error, jwtwarden_result};
use crate::ffi::{
    arg_bytes, arg_out, arg_ref, arg_str, opt_str, to_boxed_mut_ptr, try_box_from_ptr, write_out, Castable,
    OwnershipBox,
};
use crate::panic::{fallible, ffi_panic_boundary};
use crate::verified::{jwtwarden_verified, new_handle};

/// A verifier for the configured issuers. Thread-safe: any number of threads
/// may call any function taking a `const jwtwarden_verifier *` at the same
/// time. Keys are kept fresh by one background thread per verifier, which
/// `jwtwarden_verifier_free` stops; after `fork()` the child restarts it on
/// first use.
pub struct jwtwarden_verifier {
    _private: [u8; 0],
}

impl Castable for jwtwarden_verifier {
    type Ownership = OwnershipBox;
    type RustType = Verifier;
}

/// Health of one issuer's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum jwtwarden_health {
    /// Keys within their TTL (or a static keyset).
    Fresh = 1,
    /// Past the TTL with refreshes failing: serving the last known good keys.
    Stale = 2,
    /// Past `max_stale`, or never loaded: every token of the issuer is rejected.
    FailedClosed = 3,
}

/// Create a verifier from a JSON configuration (the format shared by every
/// front end; see the configuration reference). Fetches each remote issuer's
/// keys before returning, each bounded by `http.timeout_ms`; an unreachable
/// issuer does not fail creation, its tokens are rejected with
/// `JWTWARDEN_RESULT_KEYS_UNAVAILABLE` until a fetch succeeds.
///
/// `config_json` is `config_len` bytes of UTF-8 (no NUL needed). On success
/// `*verifier_out` receives a verifier to release with
/// `jwtwarden_verifier_free`. An invalid configuration returns
/// `JWTWARDEN_RESULT_INVALID_CONFIG` with a message naming the field.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verifier_new(
    config_json: *const c_char,
    config_len: usize,
    verifier_out: *mut *mut jwtwarden_verifier,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY: per the API contract, config_json holds config_len bytes.
        let bytes = unsafe { arg_bytes(config_json, config_len, "config_json") }?;
        let out = arg_out(verifier_out, "verifier_out")?;
        let json = crate::ffi::json_text(bytes, "configuration")?;
        let verifier = Verifier::new(Config::from_json(json)?)?;
        // SAFETY: checked non-NULL by arg_out; writable per the API contract.
        unsafe { write_out(out, to_boxed_mut_ptr(verifier)) };
        Ok(())
    })
}

/// Free a verifier and stop its background threads, waiting for them to
/// finish (at most a second each: one blocked in a fetch is left to end on
/// its own), so that the process may exit right after. NULL is accepted and
/// ignored. No other thread may still be using the verifier. Results
/// (`jwtwarden_verified`) stay valid after their verifier is freed.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verifier_free(verifier: *mut jwtwarden_verifier) {
    ffi_panic_boundary! {
        // SAFETY: NULL or a verifier from this library not yet freed, per the API contract.
        drop(unsafe { try_box_from_ptr(verifier) });
    }
}

/// Verify a token, choosing the issuer by its (unverified) `iss` claim.
/// Same as `jwtwarden_verifier_verify_with(verifier, token, token_len, NULL,
/// false, verified_out, error)`.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verifier_verify(
    verifier: *const jwtwarden_verifier,
    token: *const c_char,
    token_len: usize,
    verified_out: *mut *mut jwtwarden_verified,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    // SAFETY: forwarded unchanged; the contract is the same.
    unsafe { jwtwarden_verifier_verify_with(verifier, token, token_len, std::ptr::null(), false, verified_out, error) }
}

/// Verify a token.
///
/// `token` is `token_len` bytes (no NUL needed). `issuer`, if not NULL, is a
/// configured issuer name to verify for instead of choosing by `iss`.
/// `fresh` skips the cache and checks the signature now (for high-risk
/// paths). On success `*verified_out` receives a result to release with
/// `jwtwarden_verified_free`; on failure the code says why (see the
/// `jwtwarden_result_is_*` predicates).
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verifier_verify_with(
    verifier: *const jwtwarden_verifier,
    token: *const c_char,
    token_len: usize,
    issuer: *const c_char,
    fresh: bool,
    verified_out: *mut *mut jwtwarden_verified,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY (all three): live handle / readable buffer / NUL-terminated
        // string or NULL, per the API contract.
        let v = unsafe { arg_ref(verifier, "verifier") }?;
        let token = unsafe { arg_bytes(token, token_len, "token") }?;
        let issuer = unsafe { opt_str(issuer, "issuer") }?;
        let out = arg_out(verified_out, "verified_out")?;
        let verified = v.verify_with(token, &VerifyOptions { issuer, fresh })?;
        let handle = new_handle(verified);
        // SAFETY: checked non-NULL by arg_out; writable per the API contract.
        unsafe { write_out(out, handle) };
        Ok(())
    })
}

/// How far a revocation has reached when the call returns. In every case it
/// is already in force in this process (and journaled, with `state_dir`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum jwtwarden_propagation {
    /// No fleet feed is configured: this process only.
    Local = 0,
    /// Written to the fleet's Redis and published to every process.
    Fleet = 1,
    /// A fleet feed is configured but Redis was unreachable: NOT YET
    /// FLEET-WIDE. It is published in the background once Redis is back.
    Pending = 2,
}

impl From<jwtwarden_core::Propagation> for jwtwarden_propagation {
    fn from(p: jwtwarden_core::Propagation) -> Self {
        match p {
            jwtwarden_core::Propagation::Local => jwtwarden_propagation::Local,
            jwtwarden_core::Propagation::Fleet => jwtwarden_propagation::Fleet,
            jwtwarden_core::Propagation::Pending => jwtwarden_propagation::Pending,
        }
    }
}

/// Store how far a revocation reached in `out`, if the caller asked.
fn report(out: *mut jwtwarden_propagation, p: jwtwarden_core::Propagation) {
    if !out.is_null() {
        // SAFETY: non-NULL, and writable per the API contract.
        unsafe { write_out(out, p.into()) };
    }
}

/// Revoke every token of the configured issuer `issuer` (or `"*"` for every
/// issuer) with this `jti`, effective for all threads when the call returns.
/// `expires_at_secs` is the token's `exp` if known (the entry is dropped
/// after it), or 0 to keep it for `revocation.max_token_lifetime_secs`.
/// `*propagation_out` (may be NULL) receives how far it reached:
/// `JWTWARDEN_PROPAGATION_PENDING` means not yet fleet-wide.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verifier_revoke_jti(
    verifier: *const jwtwarden_verifier,
    issuer: *const c_char,
    jti: *const c_char,
    expires_at_secs: u64,
    propagation_out: *mut jwtwarden_propagation,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY: live handle and NUL-terminated strings, per the API contract.
        let v = unsafe { arg_ref(verifier, "verifier") }?;
        let issuer = unsafe { arg_str(issuer, "issuer") }?;
        let jti = unsafe { arg_str(jti, "jti") }?;
        let p = v.revoke_jti(issuer, jti, (expires_at_secs != 0).then_some(expires_at_secs))?;
        report(propagation_out, p);
        Ok(())
    })
}

/// Revoke the tokens of `issuer` (or `"*"`) for subject `subject` issued
/// before `issued_before_secs` (Unix seconds; tokens without `iat`
/// included), effective for all threads when the call returns.
/// `*propagation_out` (may be NULL) as for `jwtwarden_verifier_revoke_jti`.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verifier_revoke_subject(
    verifier: *const jwtwarden_verifier,
    issuer: *const c_char,
    subject: *const c_char,
    issued_before_secs: u64,
    propagation_out: *mut jwtwarden_propagation,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY: live handle and NUL-terminated strings, per the API contract.
        let v = unsafe { arg_ref(verifier, "verifier") }?;
        let issuer = unsafe { arg_str(issuer, "issuer") }?;
        let subject = unsafe { arg_str(subject, "subject") }?;
        let p = v.revoke_subject(issuer, subject, issued_before_secs)?;
        report(propagation_out, p);
        Ok(())
    })
}

/// Emergency key removal: stop trusting key `kid` of the configured issuer
/// `issuer` (or `"*"`) now, and ignore it in later fetches. Effective for
/// all threads when the call returns. `*propagation_out` (may be NULL) as
/// for `jwtwarden_verifier_revoke_jti`.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verifier_revoke_kid(
    verifier: *const jwtwarden_verifier,
    issuer: *const c_char,
    kid: *const c_char,
    propagation_out: *mut jwtwarden_propagation,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY: live handle and NUL-terminated strings, per the API contract.
        let v = unsafe { arg_ref(verifier, "verifier") }?;
        let issuer = unsafe { arg_str(issuer, "issuer") }?;
        let kid = unsafe { arg_str(kid, "kid") }?;
        let p = v.revoke_kid(issuer, kid)?;
        report(propagation_out, p);
        Ok(())
    })
}

/// Invalidate every cached result (for example after a policy change).
/// `*version_out` receives the new policy version.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verifier_bump_policy_version(
    verifier: *const jwtwarden_verifier,
    version_out: *mut u64,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY: live handle, per the API contract.
        let v = unsafe { arg_ref(verifier, "verifier") }?;
        let out = arg_out(version_out, "version_out")?;
        let version = v.bump_policy_version();
        // SAFETY: checked non-NULL by arg_out; writable per the API contract.
        unsafe { write_out(out, version) };
        Ok(())
    })
}

/// Fetch the keys of the configured issuer `issuer` now (coalesced with a
/// fetch already in flight). `JWTWARDEN_RESULT_KEYS_UNAVAILABLE` if the fetch
/// failed (the last good keys stay in use).
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verifier_refresh_issuer(
    verifier: *const jwtwarden_verifier,
    issuer: *const c_char,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY: live handle and NUL-terminated string, per the API contract.
        let v = unsafe { arg_ref(verifier, "verifier") }?;
        let issuer = unsafe { arg_str(issuer, "issuer") }?;
        v.refresh_issuer(issuer).map_err(Into::into)
    })
}

/// Add an issuer or an issuer template at runtime. `entry_json` is
/// `entry_len` bytes of UTF-8 (no NUL needed): one JSON object, exactly as
/// one entry of the configuration's `issuers` (or, when it has
/// `tenant_pattern`, of `issuer_templates`). Validated as at
/// `jwtwarden_verifier_new` (`JWTWARDEN_RESULT_INVALID_CONFIG` naming the
/// field; a duplicate `issuer` is refused). A remote issuer's keys are
/// fetched before this returns. The other issuers keep their keys, cached
/// results and revocations; revocations held for this issuer string (one
/// removed earlier) are honoured. Safe to call while other threads verify.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verifier_add_issuer(
    verifier: *const jwtwarden_verifier,
    entry_json: *const c_char,
    entry_len: usize,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY: live handle and entry_len readable bytes, per the API contract.
        let v = unsafe { arg_ref(verifier, "verifier") }?;
        let bytes = unsafe { arg_bytes(entry_json, entry_len, "entry_json") }?;
        let json = crate::ffi::json_text(bytes, "issuer entry")?;
        v.add_issuer(IssuerEntry::from_json(json)?).map_err(Into::into)
    })
}

/// Remove the issuer or issuer template whose `issuer` string is `issuer`
/// (NUL-terminated, as configured). When this returns, no verification
/// accepts its tokens, cached results included (it waits for the
/// verifications already in progress). Its revocations stay held until
/// they expire. `JWTWARDEN_RESULT_UNKNOWN_ISSUER` if it is not configured;
/// `JWTWARDEN_RESULT_INVALID_CONFIG` for the last one.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verifier_remove_issuer(
    verifier: *const jwtwarden_verifier,
    issuer: *const c_char,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY: live handle and NUL-terminated string, per the API contract.
        let v = unsafe { arg_ref(verifier, "verifier") }?;
        let issuer = unsafe { arg_str(issuer, "issuer") }?;
        v.remove_issuer(issuer).map_err(Into::into)
    })
}

/// Replace the issuers and issuer templates with those of a whole JSON
/// configuration (`config_len` bytes of UTF-8, the format of
/// `jwtwarden_verifier_new`). Unchanged issuers keep their keys, cached
/// results and revocations; changed ones are rebuilt; removed ones are
/// removed as by `jwtwarden_verifier_remove_issuer`. Every other field must
/// equal the verifier's (`JWTWARDEN_RESULT_INVALID_CONFIG` naming the first
/// that differs: build a new verifier for those). On an error nothing
/// changes.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verifier_reload(
    verifier: *const jwtwarden_verifier,
    config_json: *const c_char,
    config_len: usize,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY: live handle and config_len readable bytes, per the API contract.
        let v = unsafe { arg_ref(verifier, "verifier") }?;
        let bytes = unsafe { arg_bytes(config_json, config_len, "config_json") }?;
        let json = crate::ffi::json_text(bytes, "configuration")?;
        v.reload(Config::from_json(json)?).map_err(Into::into)
    })
}

/// The health of the configured issuer `issuer`'s keys, in `*health_out`.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verifier_issuer_health(
    verifier: *const jwtwarden_verifier,
    issuer: *const c_char,
    health_out: *mut jwtwarden_health,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY: live handle and NUL-terminated string, per the API contract.
        let v = unsafe { arg_ref(verifier, "verifier") }?;
        let issuer = unsafe { arg_str(issuer, "issuer") }?;
        let out = arg_out(health_out, "health_out")?;
        let health = match v.issuer_health(issuer)? {
            Health::Fresh => jwtwarden_health::Fresh,
            Health::Stale => jwtwarden_health::Stale,
            Health::FailedClosed => jwtwarden_health::FailedClosed,
        };
        // SAFETY: checked non-NULL by arg_out; writable per the API contract.
        unsafe { write_out(out, health) };
        Ok(())
    })
}

/// State of the fleet revocation feed (`revocation.redis`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum jwtwarden_feed_state {
    /// No fleet feed is configured.
    None = 0,
    /// Subscribed and in sync.
    Connected = 1,
    /// Cut off from Redis, still serving (within `max_stale_secs`, or with
    /// `serve_when_stale`).
    Lagging = 2,
    /// Cut off for longer than `max_stale_secs`: every verification fails
    /// with `JWTWARDEN_RESULT_REVOCATIONS_STALE`.
    FailedClosed = 3,
}

/// The state of the fleet revocation feed, in `*state_out`
/// (`JWTWARDEN_FEED_STATE_NONE` without `revocation.redis`). Counters are in
/// `jwtwarden_verifier_metrics_json` (`revocations.fleet`).
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verifier_revocation_feed_state(
    verifier: *const jwtwarden_verifier,
    state_out: *mut jwtwarden_feed_state,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY: live handle, per the API contract.
        let v = unsafe { arg_ref(verifier, "verifier") }?;
        let out = arg_out(state_out, "state_out")?;
        let state = match v.revocation_feed().map(|f| f.state) {
            None => jwtwarden_feed_state::None,
            Some(jwtwarden_core::FeedState::Connected) => jwtwarden_feed_state::Connected,
            Some(jwtwarden_core::FeedState::Lagging) => jwtwarden_feed_state::Lagging,
            Some(jwtwarden_core::FeedState::FailedClosed) => jwtwarden_feed_state::FailedClosed,
        };
        // SAFETY: checked non-NULL by arg_out; writable per the API contract.
        unsafe { write_out(out, state) };
        Ok(())
    })
}

/// A snapshot of every metric as a JSON object, in `*json_out`: a new
/// NUL-terminated string to release with `jwtwarden_string_free`.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verifier_metrics_json(
    verifier: *const jwtwarden_verifier,
    json_out: *mut *mut c_char,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY: live handle, per the API contract.
        let v = unsafe { arg_ref(verifier, "verifier") }?;
        let out = arg_out(json_out, "json_out")?;
        let json = serde_json::to_string(&v.metrics())
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot encode metrics: {e}")))?;
        // SAFETY: checked non-NULL by arg_out; writable per the API contract.
        unsafe { write_out(out, c_string_lossy(&json).into_raw()) };
        Ok(())
    })
}

/// Every metric in the Prometheus text exposition format, in `*text_out`: a
/// new NUL-terminated string to release with `jwtwarden_string_free`.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verifier_prometheus(
    verifier: *const jwtwarden_verifier,
    text_out: *mut *mut c_char,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY: live handle, per the API contract.
        let v = unsafe { arg_ref(verifier, "verifier") }?;
        let out = arg_out(text_out, "text_out")?;
        let text = v.prometheus();
        // SAFETY: checked non-NULL by arg_out; writable per the API contract.
        unsafe { write_out(out, c_string_lossy(&text).into_raw()) };
        Ok(())
    })
}

/// Free a string this library handed out (metrics, Prometheus text). NULL
/// is accepted and ignored.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_string_free(string: *mut c_char) {
    ffi_panic_boundary! {
        if !string.is_null() {
            // SAFETY: a string from CString::into_raw in this library, not yet
            // freed, per the API contract.
            drop(unsafe { CString::from_raw(string) });
        }
    }
}
