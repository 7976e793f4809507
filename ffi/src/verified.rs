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
//! (`VerifiedToken::memo`), so the next hit borrows them instead of
//! rebuilding them.

use std::cell::Cell;
use std::ffi::{c_char, CString};
use std::mem::MaybeUninit;
use std::sync::{Arc, OnceLock};

use jwtwarden_core::{Verified, VerifiedToken};

use crate::error::c_string_lossy;
use crate::ffi::{to_boxed_mut_ptr, try_box_from_ptr, try_ref_from_ptr, Castable, OwnershipBox};
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
    strings: OnceLock<Arc<Strings>>,
}

impl VerifiedHandle {
    pub(crate) fn new(verified: Verified) -> VerifiedHandle {
        VerifiedHandle {
            verified,
            strings: OnceLock::new(),
        }
    }

    fn strings(&self) -> &Strings {
        self.strings.get_or_init(|| self.verified.token().memo(Strings::new))
    }
}

impl Castable for jwtwarden_verified {
    type Ownership = OwnershipBox;
    type RustType = VerifiedHandle;
}

thread_local! {
    /// One freed result allocation per thread, reused by the next result made
    /// on that thread, so a verify/free loop (a cache hit) allocates nothing.
    static SPARE: Cell<Option<Box<MaybeUninit<VerifiedHandle>>>> = const { Cell::new(None) };
}

/// A new `jwtwarden_verified` for C: a `Box<VerifiedHandle>`, in this
/// thread's spare allocation if there is one.
pub(crate) fn new_handle(verified: Verified) -> *mut jwtwarden_verified {
    let handle = VerifiedHandle::new(verified);
    match SPARE.try_with(Cell::take).ok().flatten() {
        Some(mut spare) => {
            spare.write(handle);
            // Box<MaybeUninit<T>>, now initialised, has Box<T>'s layout.
            Box::into_raw(spare).cast()
        }
        None => to_boxed_mut_ptr(handle),
    }
}

/// Free a `jwtwarden_verified`, keeping its allocation as this thread's spare.
///
/// # Safety
/// `ptr` is NULL or came from [`new_handle`] and was not freed.
unsafe fn free_handle(ptr: *mut jwtwarden_verified) {
    // SAFETY: forwarded from the caller.
    let Some(handle) = (unsafe { try_box_from_ptr(ptr) }) else {
        return;
    };
    let raw = Box::into_raw(handle);
    // SAFETY: raw is a live, initialised VerifiedHandle we own; after the
    // drop it is only reused as uninitialised memory of the same layout.
    let spare = unsafe {
        std::ptr::drop_in_place(raw);
        Box::from_raw(raw.cast::<MaybeUninit<VerifiedHandle>>())
    };
    // If this thread's storage is gone (thread exiting), the closure and the
    // spare it owns are dropped: the allocation is simply freed.
    let _ = SPARE.try_with(move |slot| slot.set(Some(spare)));
}

/// The C strings of one verified token besides its claims JSON (which the
/// core keeps NUL-terminated). Immutable, like the token.
struct Strings {
    issuer: CString,
    kid: Option<CString>,
    alg: CString,
}

impl Strings {
    fn new(t: &VerifiedToken) -> Strings {
        Strings {
            issuer: c_string_lossy(&t.issuer),
            kid: t.kid.as_deref().map(c_string_lossy),
            alg: c_string_lossy(t.alg.as_str()),
        }
    }
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
        with(verified, std::ptr::null(), |v| v.verified.token().claims_json_c().as_ptr())
    }
}

/// The configured issuer the token was verified for. Borrowed; NULL if
/// `verified` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_issuer(verified: *const jwtwarden_verified) -> *const c_char {
    ffi_panic_boundary! {
        with(verified, std::ptr::null(), |v| v.strings().issuer.as_ptr())
    }
}

/// The `kid` of the key that verified the token. Borrowed; NULL if the token
/// had no `kid` or `verified` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_kid(verified: *const jwtwarden_verified) -> *const c_char {
    ffi_panic_boundary! {
        with(verified, std::ptr::null(), |v| {
            v.strings().kid.as_ref().map_or(std::ptr::null(), |k| k.as_ptr())
        })
    }
}

/// The signature algorithm (`"RS256"`, `"ES256"`, …). Borrowed; NULL if
/// `verified` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_verified_alg(verified: *const jwtwarden_verified) -> *const c_char {
    ffi_panic_boundary! {
        with(verified, std::ptr::null(), |v| v.strings().alg.as_ptr())
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
        unsafe { free_handle(verified) };
    }
}
