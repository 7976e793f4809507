//! `jwtwarden_inherited`: inherited trust, verified behind the edge.
//!
//! A service configures the edge as an issuer of kind `"assertion"` and
//! passes the assertion the edge attached to the request, with the method
//! and path it received, to `jwtwarden_verifier_verify_assertion`. The
//! result says the trust was inherited, from which edge, and when and how
//! the edge verified the original token, next to the original claims.
//! Contract: `docs/trust-handoff.md`.

use std::ffi::{c_char, CString};

use jwtwarden_core::assertion::{Inherited, Request};

use crate::error::{c_string_lossy, jwtwarden_error, jwtwarden_result, FfiError};
use crate::ffi::{
    arg_bytes, arg_out, arg_ref, arg_str, to_boxed_mut_ptr, try_box_from_ptr, try_ref_from_ptr, write_out, Castable,
    OwnershipBox,
};
use crate::panic::{fallible, ffi_panic_boundary};
use crate::verifier::jwtwarden_verifier;

/// A verified assertion: trust inherited from an edge. Created by
/// `jwtwarden_verifier_verify_assertion`; release it with
/// `jwtwarden_inherited_free`. Strings are borrowed from it. Accessors may
/// be called from several threads at once.
pub struct jwtwarden_inherited {
    _private: [u8; 0],
}

/// What the handle holds: the result and its C strings, built once.
pub(crate) struct InheritedHandle {
    inherited: Inherited,
    edge: CString,
    original_json: CString,
    claims_json: CString,
}

impl Castable for jwtwarden_inherited {
    type Ownership = OwnershipBox;
    type RustType = InheritedHandle;
}

impl InheritedHandle {
    fn new(inherited: Inherited) -> InheritedHandle {
        let json = |m: &serde_json::Map<String, serde_json::Value>| {
            // JSON text never holds a raw NUL: control characters are escaped.
            CString::new(serde_json::to_vec(m).expect("a JSON object serializes")).expect("JSON has no NUL byte")
        };
        InheritedHandle {
            edge: c_string_lossy(&inherited.edge),
            original_json: json(&inherited.original),
            claims_json: json(&inherited.assertion),
            inherited,
        }
    }
}

/// Verify a verification assertion from one of the edges `verifier` is
/// configured with (`issuers` of kind `"assertion"`), for the request this
/// service received: `method` (exact, upper case: `"GET"`) and `path` (the
/// request target; the query is dropped and the path normalised as the
/// edge did). NUL-terminated UTF-8 both.
///
/// `assertion` is `assertion_len` bytes (no NUL needed). `fresh`: this
/// route demands a fresh verification; inherited trust is then accepted
/// only when the edge's `fresh_within_secs` covers when it verified the
/// original token. On success `*inherited_out` receives a result to
/// release with `jwtwarden_inherited_free`. The codes are the engine's:
/// `JWTWARDEN_RESULT_UNKNOWN_ISSUER` (not from a configured edge, an
/// ordinary token, or no edge configured), `JWTWARDEN_RESULT_INVALID_AUDIENCE`
/// (bound to another method, path or service), `JWTWARDEN_RESULT_EXPIRED`,
/// `JWTWARDEN_RESULT_INVALID_SIGNATURE`, `JWTWARDEN_RESULT_TOKEN_LIFETIME_EXCEEDED`
/// (a fresh route, inherited trust not fresh enough),
/// `JWTWARDEN_RESULT_REVOKED` (replayed: its `jti` was used, in this
/// process or, with `revocation.redis`, anywhere in the fleet),
/// `JWTWARDEN_RESULT_REVOCATIONS_STALE` (the fleet's replay window in
/// Redis could not answer: refused). An ordinary token is never accepted
/// here, nor an assertion by `jwtwarden_verifier_verify`.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verifier_verify_assertion(
    verifier: *const jwtwarden_verifier,
    assertion: *const c_char,
    assertion_len: usize,
    method: *const c_char,
    path: *const c_char,
    fresh: bool,
    inherited_out: *mut *mut jwtwarden_inherited,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY (all four): live handle / readable buffer / NUL-terminated
        // strings, per the API contract.
        let v = unsafe { arg_ref(verifier, "verifier") }?;
        let assertion = unsafe { arg_bytes(assertion, assertion_len, "assertion") }?;
        let method = unsafe { arg_str(method, "method") }?;
        let path = unsafe { arg_str(path, "path") }?;
        let out = arg_out(inherited_out, "inherited_out")?;
        let assertion = std::str::from_utf8(assertion)
            .map_err(|_| FfiError::new(jwtwarden_result::MalformedToken, "assertion is not UTF-8"))?;
        let inherited = v.verify_assertion(assertion, &Request { method, path }, fresh)?;
        let handle = to_boxed_mut_ptr::<jwtwarden_inherited>(InheritedHandle::new(inherited));
        // SAFETY: checked non-NULL by arg_out; writable per the API contract.
        unsafe { write_out(out, handle) };
        Ok(())
    })
}

/// Run `f` on the result behind `inherited`, or return `if_null` for NULL.
fn with<T>(inherited: *const jwtwarden_inherited, if_null: T, f: impl FnOnce(&InheritedHandle) -> T) -> T {
    // SAFETY: NULL or a live result, per the API contract.
    match unsafe { try_ref_from_ptr(inherited) } {
        Some(h) => f(h),
        None => if_null,
    }
}

/// True: this trust was inherited from an edge, not established here (so a
/// policy engine handed only a result can tell). False if `inherited` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_inherited_inherited(inherited: *const jwtwarden_inherited) -> bool {
    ffi_panic_boundary! { with(inherited, false, |h| h.inherited.inherited()) }
}

/// The edge that minted the assertion (its `iss`, a configured edge).
/// Borrowed; NULL if `inherited` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_inherited_edge(inherited: *const jwtwarden_inherited) -> *const c_char {
    ffi_panic_boundary! { with(inherited, std::ptr::null(), |h| h.edge.as_ptr()) }
}

/// When the edge verified the original token, in seconds since the Unix
/// epoch. 0 if `inherited` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_inherited_verified_at(inherited: *const jwtwarden_inherited) -> u64 {
    ffi_panic_boundary! { with(inherited, 0, |h| h.inherited.verified_at) }
}

/// Whether the edge's result came from its cache. False if `inherited` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_inherited_cached(inherited: *const jwtwarden_inherited) -> bool {
    ffi_panic_boundary! { with(inherited, false, |h| h.inherited.cached) }
}

/// Whether the edge's route demanded a fresh verification. False if
/// `inherited` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_inherited_fresh(inherited: *const jwtwarden_inherited) -> bool {
    ffi_panic_boundary! { with(inherited, false, |h| h.inherited.fresh) }
}

/// The original token's claims as the edge saw them (`iss`, `sub`, `aud`,
/// `scope`, and `jti`, or `tjh` a hash of the token), a JSON object.
/// Borrowed; NULL if `inherited` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_inherited_original_json(inherited: *const jwtwarden_inherited) -> *const c_char {
    ffi_panic_boundary! { with(inherited, std::ptr::null(), |h| h.original_json.as_ptr()) }
}

/// All claims of the assertion itself, a JSON object. Borrowed; NULL if
/// `inherited` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_inherited_claims_json(inherited: *const jwtwarden_inherited) -> *const c_char {
    ffi_panic_boundary! { with(inherited, std::ptr::null(), |h| h.claims_json.as_ptr()) }
}

/// Free a result and every string borrowed from it. NULL is accepted and ignored.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_inherited_free(inherited: *mut jwtwarden_inherited) {
    ffi_panic_boundary! {
        // SAFETY: NULL or a result from this library not yet freed, per the API contract.
        drop(unsafe { try_box_from_ptr(inherited) });
    }
}
