//! `jwtwarden_verified`: what a successful verification returns.
//!
//! Accessors return values, or `const char *` strings borrowed from the
//! result: NUL-terminated UTF-8, valid until `jwtwarden_verified_free`.
//!
//! The strings are built on first access, so a caller that only checks the
//! code pays nothing for them. Building them (serialising the claims) costs
//! several times a cache hit, so they are also shared: every cache hit of a
//! token returns the same core `VerifiedToken` (one `Arc`), which memoizes
//! its claims JSON (NUL-terminated) and this crate's other C strings
//! (`VerifiedToken::memo_ref`), so the next hit borrows them instead of
//! rebuilding them. The handle is that `Arc` itself (see the `Castable`
//! impl), so a hit costs C what it costs Rust: no allocation, no copy.

use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};
use std::sync::OnceLock;

use jwtwarden_core::{Verified, VerifiedToken};

use crate::error::c_string_lossy;
use crate::ffi::{to_tagged_arc_ptr, try_tagged_arc_from_ptr, try_tagged_arc_ref, Castable, OwnershipTaggedArc};
use crate::panic::ffi_panic_boundary;

/// A successful verification: claims, issuer, kid, whether it came from the
/// cache and when the signature was checked. Created by
/// `jwtwarden_verifier_verify`; release it with `jwtwarden_verified_free`.
/// Accessors may be called from several threads at once.
pub struct jwtwarden_verified {
    _private: [u8; 0],
}

impl Castable for jwtwarden_verified {
    // The handle is the shared result itself (one count of the Arc every
    // cache hit of the token returns) with the per-call `cached` flag in its
    // lowest bit: a verification that hits the cache hands C a pointer and
    // allocates nothing, as the Rust API hands back the Arc.
    type Ownership = OwnershipTaggedArc;
    type RustType = VerifiedToken;
}

/// A new `jwtwarden_verified` for C.
// Inlined for the reason `Verifier::verify_with` is: the hit it takes
// apart is then read field by field, never copied whole.
#[inline]
pub(crate) fn new_handle(verified: Verified) -> *mut jwtwarden_verified {
    let (token, cached) = verified.into_parts();
    to_tagged_arc_ptr(token, cached)
}

/// This library's C strings of `t`, built on first use and shared by every
/// cache hit of it. `None` only if another front end linked into the same
/// program stored its own form on the result (the core has one slot).
fn strings(t: &VerifiedToken) -> Option<&Strings> {
    t.memo_ref(Strings::new)
}

/// The C strings of one verified token besides its claims JSON (which the
/// core keeps NUL-terminated). Immutable, like the token.
struct Strings {
    issuer: CString,
    kid: Option<CString>,
    alg: CString,
    /// Each claim's value as compact JSON, built on the first
    /// `jwtwarden_verified_claim_json` call for this result.
    claims: OnceLock<HashMap<String, CString>>,
}

impl Strings {
    fn new(t: &VerifiedToken) -> Strings {
        Strings {
            issuer: c_string_lossy(&t.issuer),
            kid: t.kid.as_deref().map(c_string_lossy),
            alg: c_string_lossy(t.alg.as_str()),
            claims: OnceLock::new(),
        }
    }

    fn claim(&self, t: &VerifiedToken, name: &[u8]) -> Option<&CString> {
        let claims = self.claims.get_or_init(|| {
            t.claims()
                .iter()
                .map(|(k, v)| {
                    let json = serde_json::to_vec(v).expect("a JSON value serializes");
                    // JSON text never holds a raw NUL: control characters are escaped.
                    (k.clone(), CString::new(json).expect("JSON has no NUL byte"))
                })
                .collect()
        });
        claims.get(std::str::from_utf8(name).ok()?)
    }
}

/// Run `f` on the result behind `verified` and its `cached` flag, or return
/// `if_null` for NULL.
fn with<T>(verified: *const jwtwarden_verified, if_null: T, f: impl FnOnce(&VerifiedToken, bool) -> T) -> T {
    // SAFETY: NULL or a live result, per the API contract.
    match unsafe { try_tagged_arc_ref(verified) } {
        Some((t, cached)) => f(t, cached),
        None => if_null,
    }
}

/// A borrowed C string, or NULL.
fn ptr_of(s: Option<&CString>) -> *const c_char {
    s.map_or(std::ptr::null(), |s| s.as_ptr())
}

/// The verified claims (the payload) as a JSON object. Borrowed; NULL if
/// `verified` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_claims_json(verified: *const jwtwarden_verified) -> *const c_char {
    ffi_panic_boundary! {
        with(verified, std::ptr::null(), |t, _| t.claims_json_c().as_ptr())
    }
}

/// The length in bytes of `jwtwarden_verified_claims_json` (without the
/// NUL), so a caller can copy it without scanning for the NUL. 0 if
/// `verified` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_claims_json_len(verified: *const jwtwarden_verified) -> usize {
    ffi_panic_boundary! {
        with(verified, 0, |t, _| t.claims_json_len())
    }
}

/// One claim's value as compact JSON text (`"alice"`, `["api","web"]`,
/// `1700000000`), or NULL if the token has no claim `name` (or an argument
/// is NULL). `name` is NUL-terminated UTF-8. Borrowed. The claims are
/// serialized one by one on the first call for a result and shared by every
/// cache hit of it, so later calls (and hits) only look the name up.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_claim_json(
    verified: *const jwtwarden_verified,
    name: *const c_char,
) -> *const c_char {
    ffi_panic_boundary! {
        if name.is_null() {
            return std::ptr::null();
        }
        // SAFETY: non-NULL, and NUL-terminated per the API contract.
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        with(verified, std::ptr::null(), |t, _| ptr_of(strings(t).and_then(|s| s.claim(t, name))))
    }
}

/// The configured issuer the token was verified for. Borrowed; NULL if
/// `verified` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_issuer(verified: *const jwtwarden_verified) -> *const c_char {
    ffi_panic_boundary! {
        with(verified, std::ptr::null(), |t, _| ptr_of(strings(t).map(|s| &s.issuer)))
    }
}

/// The `kid` of the key that verified the token. Borrowed; NULL if the token
/// had no `kid` or `verified` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_kid(verified: *const jwtwarden_verified) -> *const c_char {
    ffi_panic_boundary! {
        with(verified, std::ptr::null(), |t, _| ptr_of(strings(t).and_then(|s| s.kid.as_ref())))
    }
}

/// The signature algorithm (`"RS256"`, `"ES256"`, …). Borrowed; NULL if
/// `verified` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_alg(verified: *const jwtwarden_verified) -> *const c_char {
    ffi_panic_boundary! {
        with(verified, std::ptr::null(), |t, _| ptr_of(strings(t).map(|s| &s.alg)))
    }
}

/// True if the result was served from the cache (trust reused), false if
/// the signature was checked during this call (trust fresh). False if
/// `verified` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_cached(verified: *const jwtwarden_verified) -> bool {
    ffi_panic_boundary! { with(verified, false, |_, cached| cached) }
}

/// When the signature was checked, in milliseconds since the Unix epoch (for
/// a cache hit: the original check). 0 if `verified` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_verified_at_ms(verified: *const jwtwarden_verified) -> u64 {
    ffi_panic_boundary! { with(verified, 0, |t, _| t.verified_at_ms) }
}

/// The token's `exp`, in seconds since the Unix epoch. 0 if `verified` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_expires_at(verified: *const jwtwarden_verified) -> u64 {
    ffi_panic_boundary! { with(verified, 0, |t, _| t.expires_at) }
}

/// Free a result and every string borrowed from it. NULL is accepted and ignored.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_free(verified: *mut jwtwarden_verified) {
    ffi_panic_boundary! {
        // SAFETY: NULL or a result from this library not yet freed, per the API contract.
        drop(unsafe { try_tagged_arc_from_ptr(verified) });
    }
}
