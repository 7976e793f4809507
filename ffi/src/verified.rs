//! `jwtwarden_verified`: what a successful verification returns.
//!
//! Accessors return values, or `const char *` strings borrowed from the
//! result: NUL-terminated UTF-8, valid until `jwtwarden_verified_free`.
//! Strings are built on first access, so a caller that only checks the code
//! pays nothing for them.

use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use jwtwarden::Verified;

use crate::error::c_string_lossy;
use crate::ffi::{try_box_from_ptr, try_ref_from_ptr, Castable, OwnershipBox};
use crate::panic::ffi_panic_boundary;

/// A successful verification: claims, issuer, kid, whether it came from the
/// cache and when the signature was checked. Created by
/// `jwtwarden_verifier_verify`; release it with `jwtwarden_verified_free`.
/// Accessors may be called from several threads at once.
pub struct jwtwarden_verified {
    _private: [u8; 0],
}

/// What a `jwtwarden_verified` holds.
pub(crate) struct VerifiedHandle {
    verified: Verified,
    claims_json: OnceLock<CString>,
    issuer: OnceLock<CString>,
    kid: OnceLock<Option<CString>>,
    alg: OnceLock<CString>,
}

impl VerifiedHandle {
    pub(crate) fn new(verified: Verified) -> VerifiedHandle {
        VerifiedHandle {
            verified,
            claims_json: OnceLock::new(),
            issuer: OnceLock::new(),
            kid: OnceLock::new(),
            alg: OnceLock::new(),
        }
    }
}

impl Castable for jwtwarden_verified {
    type Ownership = OwnershipBox;
    type RustType = VerifiedHandle;
}

/// Run `f` on the result behind `verified`, or return `if_null` for NULL.
fn with<T>(verified: *const jwtwarden_verified, if_null: T, f: impl FnOnce(&VerifiedHandle) -> T) -> T {
    // SAFETY: NULL or a live result, per the API contract.
    match unsafe { try_ref_from_ptr(verified) } {
        Some(v) => f(v),
        None => if_null,
    }
}

/// The verified claims (the payload) as a JSON object. Borrowed; NULL if
/// `verified` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_claims_json(verified: *const jwtwarden_verified) -> *const c_char {
    ffi_panic_boundary! {
        with(verified, std::ptr::null(), |v| v.claims_json.get_or_init(|| c_string_lossy(&v.verified.claims_json())).as_ptr())
    }
}

/// The configured issuer the token was verified for. Borrowed; NULL if
/// `verified` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_issuer(verified: *const jwtwarden_verified) -> *const c_char {
    ffi_panic_boundary! {
        with(verified, std::ptr::null(), |v| v.issuer.get_or_init(|| c_string_lossy(v.verified.issuer())).as_ptr())
    }
}

/// The `kid` of the key that verified the token. Borrowed; NULL if the token
/// had no `kid` or `verified` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_kid(verified: *const jwtwarden_verified) -> *const c_char {
    ffi_panic_boundary! {
        with(verified, std::ptr::null(), |v| {
            v.kid
                .get_or_init(|| v.verified.kid().map(c_string_lossy))
                .as_ref()
                .map_or(std::ptr::null(), |k| k.as_ptr())
        })
    }
}

/// The signature algorithm (`"RS256"`, `"ES256"`, …). Borrowed; NULL if
/// `verified` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_alg(verified: *const jwtwarden_verified) -> *const c_char {
    ffi_panic_boundary! {
        with(verified, std::ptr::null(), |v| v.alg.get_or_init(|| c_string_lossy(v.verified.alg().as_str())).as_ptr())
    }
}

/// True if the result was served from the cache (trust reused), false if
/// the signature was checked during this call (trust fresh). False if
/// `verified` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_cached(verified: *const jwtwarden_verified) -> bool {
    ffi_panic_boundary! { with(verified, false, |v| v.verified.cached()) }
}

/// When the signature was checked, in milliseconds since the Unix epoch (for
/// a cache hit: the original check). 0 if `verified` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_verified_at_ms(verified: *const jwtwarden_verified) -> u64 {
    ffi_panic_boundary! { with(verified, 0, |v| v.verified.verified_at_ms()) }
}

/// The token's `exp`, in seconds since the Unix epoch. 0 if `verified` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_expires_at(verified: *const jwtwarden_verified) -> u64 {
    ffi_panic_boundary! { with(verified, 0, |v| v.verified.expires_at()) }
}

/// Free a result and every string borrowed from it. NULL is accepted and ignored.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_free(verified: *mut jwtwarden_verified) {
    ffi_panic_boundary! {
        // SAFETY: NULL or a result from this library not yet freed, per the API contract.
        drop(unsafe { try_box_from_ptr(verified) });
    }
}
