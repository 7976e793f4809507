//! Verification assertions minted by the HTTP decision (issue 28,
//! docs/trust-handoff.md), for hosts written in C (the nginx and Apache
//! modules).
//!
//! A minter (`jwtwarden_minter`) holds the edge's signing keys, read from
//! the engine configuration's `assertion` section (the same JSON a verifier
//! is built from). `jwtwarden_http_decide_minting` is
//! `jwtwarden_http_decide` plus the minter: when the policy's `assertion`
//! covers the request's route, an allowed decision carries an assertion
//! (`jwtwarden_http_decision_assertion`) bound to the route's audience and
//! the request's method and normalised path. The host sets it in the header
//! `jwtwarden_http_policy_assertion_header` names, after removing every copy
//! of that header the client sent, on every request, allowed or not.

use std::borrow::Cow;
use std::ffi::c_char;
use std::sync::Arc;

use jwtwarden_core::assertion::Minter;
use jwtwarden_core::http::{DecideMode, Decision, HttpPolicy, HttpRequest, Reason};
use jwtwarden_core::{Config, Error, ErrorKind, SystemClock};

use crate::error::{jwtwarden_error, jwtwarden_result, FfiError};
use crate::ffi::{
    arg_bytes, arg_out, arg_ref, to_boxed_mut_ptr, try_box_from_ptr, try_ref_from_ptr, write_out, Castable,
    OwnershipBox,
};
use crate::http::{check_fields, jwtwarden_http_decision, jwtwarden_http_header, jwtwarden_http_policy, Fields};
use crate::panic::{fallible, ffi_panic_boundary};
use crate::verifier::jwtwarden_verifier;

/// The edge's assertion signer: its name, its Ed25519 keys (current and
/// previous), the assertion lifetime. Immutable: any number of threads may
/// use one at once. Release it with `jwtwarden_minter_free`.
pub struct jwtwarden_minter {
    _private: [u8; 0],
}

impl Castable for jwtwarden_minter {
    type Ownership = OwnershipBox;
    type RustType = Minter;
}

/// Create a minter from an engine configuration (`config_len` bytes of
/// UTF-8 JSON, no NUL needed: the text given to `jwtwarden_verifier_new`),
/// from its `assertion` section: `{"name", "current": {"kid", "pem" |
/// "pem_file"}, "previous", "lifetime_secs"}` (docs/config.md). A
/// configuration without that section, or with a key that does not load,
/// returns `JWTWARDEN_RESULT_INVALID_CONFIG` with a message naming it.
/// Nothing is fetched; a web server may call this at its configuration
/// test. Build one per process after `fork()` like the verifier (the keys
/// hold no thread, but one per process keeps the model simple).
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_minter_new(
    config_json: *const c_char,
    config_len: usize,
    minter_out: *mut *mut jwtwarden_minter,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY: per the API contract, config_json holds config_len bytes.
        let bytes = unsafe { arg_bytes(config_json, config_len, "config_json") }?;
        let out = arg_out(minter_out, "minter_out")?;
        let json = crate::ffi::json_text(bytes, "configuration")?;
        let config = Config::from_json(json)?;
        let section = config.assertion.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidConfig,
                "assertion: the engine configuration has no assertion section (name, current key)",
            )
        })?;
        let minter = Minter::new(section, Arc::new(SystemClock))?;
        // SAFETY: checked non-NULL by arg_out; writable per the API contract.
        unsafe { write_out(out, to_boxed_mut_ptr(minter)) };
        Ok(())
    })
}

/// Free a minter. NULL is accepted and ignored. Decisions it minted for
/// stay valid.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_minter_free(minter: *mut jwtwarden_minter) {
    ffi_panic_boundary! {
        // SAFETY: NULL or a minter from this library not yet freed, per the API contract.
        drop(unsafe { try_box_from_ptr(minter) });
    }
}

/// `jwtwarden_http_decide` with a minter: the same arguments and answers,
/// and when the policy has an `assertion` section covering the request's
/// route, an allowed decision carries an assertion
/// (`jwtwarden_http_decision_assertion`), one per call (its own `jti` and
/// signature, cache hits included). `minter` may be NULL: then a request
/// whose route should carry an assertion is refused with 500 (never sent
/// on without it). A cache hit that mints costs an Ed25519 signature
/// (docs/trust-handoff.md gives the figures).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn jwtwarden_http_decide_minting(
    policy: *const jwtwarden_http_policy,
    verifier: *const jwtwarden_verifier,
    minter: *const jwtwarden_minter,
    method: *const c_char,
    method_len: usize,
    target: *const c_char,
    target_len: usize,
    headers: *const jwtwarden_http_header,
    header_count: usize,
    cached_only: bool,
    decision_out: *mut *mut jwtwarden_http_decision,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY (all): live handles and readable buffers, per the API contract.
        let policy = unsafe { arg_ref(policy, "policy") }?;
        let verifier = unsafe { arg_ref(verifier, "verifier") }?;
        let minter = unsafe { try_ref_from_ptr(minter) };
        let method = unsafe { arg_bytes(method, method_len, "method") }?;
        let out = arg_out(decision_out, "decision_out")?;
        let fields: &[jwtwarden_http_header] = if header_count == 0 {
            &[]
        } else if headers.is_null() {
            return Err(crate::ffi::null("headers"));
        } else {
            // SAFETY: non-NULL, header_count readable entries per the API contract.
            unsafe { std::slice::from_raw_parts(headers, header_count) }
        };
        check_fields(fields)?;
        let checked = Fields(fields);
        if method.is_empty() || !method.iter().all(u8::is_ascii_alphabetic) {
            return Err(FfiError::new(
                jwtwarden_result::InvalidArgument,
                "method is not an HTTP method",
            ));
        }
        // Checked ASCII above.
        let method = std::str::from_utf8(method).unwrap_or_default();
        let method = if method.bytes().any(|b| b.is_ascii_lowercase()) {
            Cow::Owned(method.to_ascii_uppercase())
        } else {
            Cow::Borrowed(method)
        };
        let mode = if cached_only {
            DecideMode::CachedOnly
        } else {
            DecideMode::Verify
        };
        let decide = |target: Option<&str>| {
            let req = HttpRequest {
                method: &method,
                target,
                headers: &checked,
            };
            policy.decide_minting(verifier, minter.map(|m| m as _), &req, mode)
        };
        let decision = if target.is_null() {
            decide(None)
        } else {
            // SAFETY: non-NULL, target_len readable bytes per the API contract.
            let raw = unsafe { std::slice::from_raw_parts(target.cast::<u8>(), target_len) };
            match std::str::from_utf8(raw) {
                Ok(t) => decide(Some(t)),
                Err(_) => Decision::from_refusal(
                    policy.refuse(&Reason::UnsafePath("the original URI has a non-ASCII character")),
                ),
            }
        };
        // SAFETY: checked non-NULL by arg_out; writable per the API contract.
        unsafe { write_out(out, to_boxed_mut_ptr(decision)) };
        Ok(())
    })
}

/// A borrowed string as pointer and length; NULL (and length 0) for none.
fn out_str(s: Option<&str>, len_out: *mut usize) -> *const c_char {
    let (ptr, len) = s.map_or((std::ptr::null(), 0), |s| (s.as_ptr().cast(), s.len()));
    if !len_out.is_null() {
        // SAFETY: non-NULL and writable per the API contract.
        unsafe { write_out(len_out, len) };
    }
    ptr
}

/// The header (lower case) the policy's assertions go in; its length goes
/// to `*len_out` (may be NULL). Not NUL-terminated, borrowed until the
/// policy is freed. NULL (length 0) when the policy mints none, or for
/// NULL. A host removes every client copy of this header on every request
/// of a location whose policy mints.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_policy_assertion_header(
    policy: *const jwtwarden_http_policy,
    len_out: *mut usize,
) -> *const c_char {
    ffi_panic_boundary! {
        // SAFETY: NULL or a live policy, per the API contract.
        let p: Option<&HttpPolicy> = unsafe { try_ref_from_ptr(policy) };
        out_str(p.and_then(HttpPolicy::assertion).map(|a| a.header().as_str()), len_out)
    }
}

/// The assertion (a compact JWS) an allowed decision carries for the
/// upstream; its length goes to `*len_out` (may be NULL). Not
/// NUL-terminated, borrowed until the decision is freed. NULL (length 0)
/// when the route carries none, the request was not allowed, or for NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_decision_assertion(
    decision: *const jwtwarden_http_decision,
    len_out: *mut usize,
) -> *const c_char {
    ffi_panic_boundary! {
        // SAFETY: NULL or a live decision, per the API contract.
        let d: Option<&Decision> = unsafe { try_ref_from_ptr(decision) };
        out_str(d.and_then(Decision::assertion).map(|a| &*a.value), len_out)
    }
}
