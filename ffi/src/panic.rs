//! The panic boundary. Every `extern "C"` body runs inside
//! [`ffi_panic_boundary!`] (infallible calls) or [`fallible`] (calls that
//! return a [`jwtwarden_result`]), so no panic unwinds into C.

use std::any::Any;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{jwtwarden_error, jwtwarden_result, ErrorHandle, FfiError, FfiResult};
use crate::ffi::to_boxed_mut_ptr;

/// What an infallible function returns when its body panicked: NULL, false,
/// 0, or `JWTWARDEN_RESULT_PANIC`.
pub(crate) trait PanicOrDefault {
    fn value() -> Self;
}

impl PanicOrDefault for jwtwarden_result {
    fn value() -> Self {
        jwtwarden_result::Panic
    }
}

impl PanicOrDefault for () {
    fn value() -> Self {}
}

impl PanicOrDefault for bool {
    fn value() -> Self {
        false
    }
}

impl PanicOrDefault for u32 {
    fn value() -> Self {
        0
    }
}

impl PanicOrDefault for u64 {
    fn value() -> Self {
        0
    }
}

impl PanicOrDefault for usize {
    fn value() -> Self {
        0
    }
}

impl PanicOrDefault for *const c_char {
    fn value() -> Self {
        std::ptr::null()
    }
}

/// Run an infallible body; a panic becomes [`PanicOrDefault::value`].
macro_rules! ffi_panic_boundary {
    ( $($body:tt)* ) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| { $($body)* })) {
            Ok(ret) => ret,
            Err(_) => $crate::panic::PanicOrDefault::value(),
        }
    };
}
pub(crate) use ffi_panic_boundary;

/// Run a fallible body at the boundary.
///
/// `Ok` returns `JWTWARDEN_RESULT_OK` (the body has written its outputs).
/// An error or a caught panic returns its code and, if `error_out` is not
/// NULL, stores a new `jwtwarden_error` there for the caller to free.
pub(crate) fn fallible(error_out: *mut *mut jwtwarden_error, body: impl FnOnce() -> FfiResult<()>) -> jwtwarden_result {
    let err = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return jwtwarden_result::Ok,
        Ok(Err(e)) => e,
        Err(payload) => FfiError::new(jwtwarden_result::Panic, format!("panic: {}", panic_message(&*payload))),
    };
    let code = err.code;
    if !error_out.is_null() {
        // Building the error allocates; keep even that inside the boundary.
        let stored = catch_unwind(AssertUnwindSafe(|| {
            let handle = to_boxed_mut_ptr::<jwtwarden_error>(ErrorHandle::new(&err));
            // SAFETY: error_out is non-NULL and, by the API contract, writable.
            unsafe { error_out.write(handle) };
        }));
        if stored.is_err() {
            return jwtwarden_result::Panic;
        }
    }
    code
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "unknown payload"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{jwtwarden_error_code, jwtwarden_error_free, jwtwarden_error_message};

    #[test]
    fn a_panic_becomes_the_panic_code_and_an_error() {
        let mut err: *mut jwtwarden_error = std::ptr::null_mut();
        let code = fallible(&mut err, || panic!("boom"));
        assert_eq!(code, jwtwarden_result::Panic);
        assert!(!err.is_null());
        // SAFETY: err was just created by fallible and is freed once below.
        unsafe {
            assert_eq!(jwtwarden_error_code(err), jwtwarden_result::Panic);
            let msg = std::ffi::CStr::from_ptr(jwtwarden_error_message(err));
            assert_eq!(msg.to_str().unwrap(), "panic: boom");
            jwtwarden_error_free(err);
        }
        // Without an error out-parameter, only the code.
        assert_eq!(
            fallible(std::ptr::null_mut(), || panic!("boom")),
            jwtwarden_result::Panic
        );
    }

    #[test]
    fn infallible_calls_return_their_default_on_panic() {
        fn pointer() -> *const c_char {
            ffi_panic_boundary! { panic!("boom") }
        }
        fn flag() -> bool {
            ffi_panic_boundary! { panic!("boom") }
        }
        assert!(pointer().is_null());
        assert!(!flag());
    }

    #[test]
    fn success_leaves_the_error_untouched() {
        let sentinel = std::ptr::dangling_mut::<jwtwarden_error>();
        let mut err = sentinel;
        assert_eq!(fallible(&mut err, || Ok(())), jwtwarden_result::Ok);
        assert_eq!(err, sentinel);
    }
}
