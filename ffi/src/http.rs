//! The HTTP decision (`jwtwarden::http` in the core) for hosts written in
//! C: web-server modules (nginx, Apache) and any middleware that wants the
//! exact refusals `jwtwarden serve` and the contract table give.
//!
//! A policy (`jwtwarden_http_policy`, from JSON) says where the token is,
//! the realm, the route rules and the claim headers. `jwtwarden_http_decide`
//! takes a request (method, raw target, header fields, all borrowed) and a
//! verifier and writes a decision to read with accessors: allowed (with
//! sanitised claim headers for the upstream), refused (status, headers,
//! JSON body: send them as they are), or, when asked not to wait, "would
//! fetch" (decide again off the event loop).
//!
//! Strings read from a decision are pointer and length, NOT NUL-terminated
//! (they map onto `ngx_str_t` and the like without a copy), borrowed until
//! the decision is freed. A decision of a cache hit allocates only the
//! decision itself: its claim headers are the verified result's, built once
//! and shared by every hit.

use std::ffi::c_char;

use jwtwarden_core::http::{Decision, HeaderFields, HttpPolicy};
use jwtwarden_core::{Error, ErrorKind};

use crate::error::{jwtwarden_error, jwtwarden_result, FfiError};
use crate::ffi::{
    arg_bytes, arg_out, to_boxed_mut_ptr, to_tagged_arc_ptr, try_box_from_ptr, try_ref_from_ptr, write_out, Castable,
    OwnershipBox,
};
use crate::panic::{fallible, ffi_panic_boundary};
use crate::verified::jwtwarden_verified;
use crate::verifier::jwtwarden_verifier;

/// An HTTP policy: realm, where the token is read, route rules, open
/// methods and claim headers (docs/http.md). Immutable: any number of
/// threads may use one at once. Release it with `jwtwarden_http_policy_free`.
pub struct jwtwarden_http_policy {
    _private: [u8; 0],
}

impl Castable for jwtwarden_http_policy {
    type Ownership = OwnershipBox;
    type RustType = HttpPolicy;
}

/// The answer to one request. Release it with
/// `jwtwarden_http_decision_free`.
pub struct jwtwarden_http_decision {
    _private: [u8; 0],
}

impl Castable for jwtwarden_http_decision {
    type Ownership = OwnershipBox;
    type RustType = Decision;
}

/// One request header field, borrowed: `name_len` bytes at `name` and
/// `value_len` bytes at `value` (no NUL needed; either pointer may be NULL
/// only when its length is 0). Repeated fields are passed as they came: a
/// repeated `Authorization` is refused as ambiguous.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct jwtwarden_http_header {
    /// The field name, in any case.
    pub name: *const c_char,
    /// Its length in bytes.
    pub name_len: usize,
    /// The field value as sent.
    pub value: *const c_char,
    /// Its length in bytes.
    pub value_len: usize,
}

/// Header fields whose pointers were checked ([`check_fields`]): read in
/// place, nothing copied.
pub(crate) struct Fields<'a>(pub(crate) &'a [jwtwarden_http_header]);

/// The bytes of a checked (pointer, length) pair.
fn bytes_of<'a>(ptr: *const c_char, len: usize) -> &'a [u8] {
    if len == 0 {
        return &[];
    }
    // SAFETY: checked non-NULL by check_fields; readable per the API contract.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }
}

impl HeaderFields for Fields<'_> {
    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.0
            .iter()
            .filter(move |h| bytes_of(h.name, h.name_len).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| bytes_of(h.value, h.value_len))
    }
}

/// Refuse a field with a NULL pointer and a non-zero length.
pub(crate) fn check_fields(fields: &[jwtwarden_http_header]) -> Result<(), FfiError> {
    for h in fields {
        if h.name.is_null() && h.name_len != 0 {
            return Err(crate::ffi::null("headers[].name"));
        }
        if h.value.is_null() && h.value_len != 0 {
            return Err(crate::ffi::null("headers[].value"));
        }
    }
    Ok(())
}

/// Create a policy from JSON (`policy_len` bytes of UTF-8, no NUL needed):
/// `{"realm", "token_header", "token_cookie", "retry_after_secs",
/// "max_claim_header_bytes", "claim_headers": {claim: header}, "routes":
/// [{"prefix", "exact", "methods", "open", "issuer", "fresh", "scopes",
/// "audiences"}], "open_methods"}` (docs/http.md; every field optional,
/// unknown fields refused). An invalid policy returns
/// `JWTWARDEN_RESULT_INVALID_CONFIG` with a message naming the field.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_policy_new(
    policy_json: *const c_char,
    policy_len: usize,
    policy_out: *mut *mut jwtwarden_http_policy,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY: per the API contract, policy_json holds policy_len bytes.
        let bytes = unsafe { arg_bytes(policy_json, policy_len, "policy_json") }?;
        let out = arg_out(policy_out, "policy_out")?;
        let json = crate::ffi::json_text(bytes, "the HTTP policy")?;
        let policy = HttpPolicy::from_json(json)
            .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("HTTP policy: {e}")))?;
        // SAFETY: checked non-NULL by arg_out; writable per the API contract.
        unsafe { write_out(out, to_boxed_mut_ptr(policy)) };
        Ok(())
    })
}

/// Free a policy. NULL is accepted and ignored. Decisions made with it stay
/// valid.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_policy_free(policy: *mut jwtwarden_http_policy) {
    ffi_panic_boundary! {
        // SAFETY: NULL or a policy from this library not yet freed, per the API contract.
        drop(unsafe { try_box_from_ptr(policy) });
    }
}

/// Decide one request.
///
/// `method` (`method_len` bytes) is the original request's method, in any
/// case. `target` (`target_len` bytes) is its raw request target as sent
/// (path and query, e.g. nginx `$request_uri`); it may be NULL when unknown,
/// which only a policy without routes can decide. `headers` holds
/// `header_count` fields (NULL when 0). With `cached_only`, a token the
/// cache cannot answer is not verified: the decision says
/// `jwtwarden_http_decision_would_fetch` and nothing waited (an event loop
/// calls this inline, then again with `cached_only` false on a thread that
/// may wait up to the engine's `http.timeout_ms`).
///
/// A refusal is a decision, not an error: the call returns
/// `JWTWARDEN_RESULT_OK` and `*decision_out` says what to answer. Errors are
/// NULL arguments and a method that is not a token of letters.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn jwtwarden_http_decide(
    policy: *const jwtwarden_http_policy,
    verifier: *const jwtwarden_verifier,
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
    // The same decision with no minter (the core's `decide` is
    // `decide_minting` without one): one copy of the argument checks.
    // SAFETY: the caller's contract is the same, a NULL minter allowed.
    unsafe {
        crate::mint::jwtwarden_http_decide_minting(
            policy,
            verifier,
            std::ptr::null(),
            method,
            method_len,
            target,
            target_len,
            headers,
            header_count,
            cached_only,
            decision_out,
            error,
        )
    }
}

/// Free a decision. NULL is accepted and ignored.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_decision_free(decision: *mut jwtwarden_http_decision) {
    ffi_panic_boundary! {
        // SAFETY: NULL or a decision from this library not yet freed, per the API contract.
        drop(unsafe { try_box_from_ptr(decision) });
    }
}

/// Run `f` on the decision, or return `if_null` for NULL.
fn with<T>(decision: *const jwtwarden_http_decision, if_null: T, f: impl FnOnce(&Decision) -> T) -> T {
    // SAFETY: NULL or a live decision, per the API contract.
    match unsafe { try_ref_from_ptr(decision) } {
        Some(d) => f(d),
        None => if_null,
    }
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

/// A string of the decision (a header's name or value), as `out_str`:
/// NULL and length 0 for a NULL decision or where `f` finds none.
fn decision_str(
    decision: *const jwtwarden_http_decision,
    len_out: *mut usize,
    f: impl FnOnce(&Decision) -> Option<&str>,
) -> *const c_char {
    with(decision, out_str(None, len_out), |d| out_str(f(d), len_out))
}

/// The HTTP status to answer: 200 when allowed, the refusal's status (400,
/// 401, 403, 500, 503), or 0 when the decision
/// `jwtwarden_http_decision_would_fetch`. 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_decision_status(decision: *const jwtwarden_http_decision) -> u32 {
    ffi_panic_boundary! { with(decision, 0, |d| u32::from(d.status())) }
}

/// True when the request may go on to the upstream. False for NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_decision_allowed(decision: *const jwtwarden_http_decision) -> bool {
    ffi_panic_boundary! { with(decision, false, Decision::allowed) }
}

/// True when nothing was decided: the token needs a verification that may
/// fetch keys (`cached_only` only). Decide again where waiting is fine.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_decision_would_fetch(decision: *const jwtwarden_http_decision) -> bool {
    ffi_panic_boundary! { with(decision, false, Decision::would_fetch) }
}

/// True when an allowed token's verification came from the cache (false
/// for a fresh verification, an open route, a refusal or NULL).
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_decision_cached(decision: *const jwtwarden_http_decision) -> bool {
    ffi_panic_boundary! { with(decision, false, |d| d.cached() == Some(true)) }
}

/// NULL when `jwtwarden_http_decision_verified` panicked.
impl crate::panic::PanicOrDefault for *mut jwtwarden_verified {
    fn value() -> Self {
        std::ptr::null_mut()
    }
}

/// The verified result of an allowed token, as `jwtwarden_verifier_verify`
/// returns it (claims, issuer, kid, `jwtwarden_verified_cached`): a new
/// handle the caller releases with `jwtwarden_verified_free`, valid after
/// the decision is freed. NULL when no token was verified (an open route or
/// method, a refusal, "would fetch") or for NULL. For a host that hands the
/// verified result to its application (the Go middleware) without
/// verifying the token a second time; no allocation (a reference count).
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_decision_verified(
    decision: *const jwtwarden_http_decision,
) -> *mut jwtwarden_verified {
    ffi_panic_boundary! {
        with(decision, std::ptr::null_mut(), |d| match d.verified() {
            Some(t) => to_tagged_arc_ptr(t.clone(), d.cached() == Some(true)),
            None => std::ptr::null_mut(),
        })
    }
}

/// The engine's result code of a refusal the engine made (expired, unknown
/// kid, keys unavailable...), for logs; 0 otherwise (allowed, or refused
/// before the engine: no token, an unsafe path, a scope).
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_decision_error_code(decision: *const jwtwarden_http_decision) -> u32 {
    ffi_panic_boundary! { with(decision, 0, |d| d.error_kind().map_or(0, ErrorKind::code)) }
}

/// How many response headers a refusal carries (`Cache-Control`,
/// `WWW-Authenticate`, `Retry-After`; `Content-Type: application/json` is
/// not listed). 0 when allowed or for NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_decision_header_count(decision: *const jwtwarden_http_decision) -> usize {
    ffi_panic_boundary! { with(decision, 0, |d| d.headers().len()) }
}

/// The name (lower case) of refusal header `index`; its length goes to
/// `*len_out` (may be NULL). Not NUL-terminated. NULL past the end.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_decision_header_name(
    decision: *const jwtwarden_http_decision,
    index: usize,
    len_out: *mut usize,
) -> *const c_char {
    ffi_panic_boundary! { decision_str(decision, len_out, |d| d.headers().get(index).map(|(n, _)| *n)) }
}

/// The value of refusal header `index`, as `jwtwarden_http_decision_header_name`.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_decision_header_value(
    decision: *const jwtwarden_http_decision,
    index: usize,
    len_out: *mut usize,
) -> *const c_char {
    ffi_panic_boundary! { decision_str(decision, len_out, |d| d.headers().get(index).map(|(_, v)| v.as_str())) }
}

/// A refusal's JSON body (`{"error", "code", "category", "message"}`,
/// never containing the token); its length goes to `*len_out` (may be
/// NULL). Not NUL-terminated. Length 0 when allowed.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_decision_body(
    decision: *const jwtwarden_http_decision,
    len_out: *mut usize,
) -> *const c_char {
    ffi_panic_boundary! { decision_str(decision, len_out, |d| Some(d.body())) }
}

/// How many claim headers an allowed token maps to (the policy's
/// `claim_headers`, absent claims left out). 0 otherwise.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_decision_claim_header_count(decision: *const jwtwarden_http_decision) -> usize {
    ffi_panic_boundary! { with(decision, 0, |d| d.claim_headers().len()) }
}

/// The name (lower case) of claim header `index`, as
/// `jwtwarden_http_decision_header_name`.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_decision_claim_header_name(
    decision: *const jwtwarden_http_decision,
    index: usize,
    len_out: *mut usize,
) -> *const c_char {
    ffi_panic_boundary! { decision_str(decision, len_out, |d| d.claim_headers().get(index).map(|(n, _)| n.as_str())) }
}

/// The value of claim header `index`: printable (no CR, LF or other
/// control character), trimmed, at most `max_claim_header_bytes`.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_decision_claim_header_value(
    decision: *const jwtwarden_http_decision,
    index: usize,
    len_out: *mut usize,
) -> *const c_char {
    ffi_panic_boundary! { decision_str(decision, len_out, |d| d.claim_headers().get(index).map(|(_, v)| v.as_str())) }
}
