//! Handle plumbing: ties each opaque C type to the Rust type behind it and to
//! how the C side owns it, so a handle freed the wrong way does not compile.
//!
//! Every pointer crosses the boundary through the helpers here; nothing else
//! in the crate dereferences a raw pointer it received from C.

use std::ffi::{c_char, CStr};
use std::sync::Arc;

use crate::error::{jwtwarden_result, FfiError, FfiResult};

/// A C handle type and the Rust value it stands for.
pub(crate) trait Castable {
    /// How the C side owns the value ([`OwnershipBox`] or [`OwnershipTaggedArc`]).
    type Ownership;
    /// The Rust value behind the handle.
    type RustType;
}

/// The C side owns a `Box<RustType>`, created by a `_new`-like call and
/// released by the matching `_free`.
pub(crate) struct OwnershipBox;

/// The C side owns one strong count of an `Arc<RustType>`, with one bit of
/// per-handle state in the pointer's lowest bit (free: `RustType` is aligned
/// to at least 2), so handing a shared value to C allocates nothing.
pub(crate) struct OwnershipTaggedArc;

/// Hand one count of `value` to C as an opaque pointer carrying `tag`.
pub(crate) fn to_tagged_arc_ptr<C>(value: Arc<C::RustType>, tag: bool) -> *mut C
where
    C: Castable<Ownership = OwnershipTaggedArc>,
{
    const { assert!(std::mem::align_of::<C::RustType>() >= 2) };
    Arc::into_raw(value)
        .cast::<C>()
        .cast_mut()
        .map_addr(|a| a | usize::from(tag))
}

/// Borrow the value behind a handle from [`to_tagged_arc_ptr`], with its
/// tag. `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or a live handle from `to_tagged_arc_ptr::<C>`, not freed
/// while the borrow lives.
pub(crate) unsafe fn try_tagged_arc_ref<'a, C>(ptr: *const C) -> Option<(&'a C::RustType, bool)>
where
    C: Castable<Ownership = OwnershipTaggedArc>,
{
    let tag = ptr.addr() & 1 == 1;
    // SAFETY: the caller promises a live handle; without its tag it is the
    // pointer Arc::into_raw returned.
    let value = unsafe { ptr.map_addr(|a| a & !1).cast::<C::RustType>().as_ref() }?;
    Some((value, tag))
}

/// Take back the count of a handle from [`to_tagged_arc_ptr`]. `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or came from `to_tagged_arc_ptr::<C>` and was not freed.
pub(crate) unsafe fn try_tagged_arc_from_ptr<C>(ptr: *mut C) -> Option<Arc<C::RustType>>
where
    C: Castable<Ownership = OwnershipTaggedArc>,
{
    let raw = ptr.map_addr(|a| a & !1).cast::<C::RustType>().cast_const();
    // SAFETY: the caller promises ptr is NULL or a count from Arc::into_raw.
    (!raw.is_null()).then(|| unsafe { Arc::from_raw(raw) })
}

/// Move `value` to the heap and hand it to C as an opaque pointer.
pub(crate) fn to_boxed_mut_ptr<C>(value: C::RustType) -> *mut C
where
    C: Castable<Ownership = OwnershipBox>,
{
    Box::into_raw(Box::new(value)).cast()
}

/// Take back ownership of a handle created by [`to_boxed_mut_ptr`].
/// `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or came from `to_boxed_mut_ptr::<C>` and was not freed.
pub(crate) unsafe fn try_box_from_ptr<C>(ptr: *mut C) -> Option<Box<C::RustType>>
where
    C: Castable<Ownership = OwnershipBox>,
{
    // SAFETY: the caller promises ptr is NULL or a live Box<C::RustType>.
    (!ptr.is_null()).then(|| unsafe { Box::from_raw(ptr.cast::<C::RustType>()) })
}

/// Borrow the value behind a handle. `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or a live handle of type `C`, not freed while the borrow lives.
pub(crate) unsafe fn try_ref_from_ptr<'a, C>(ptr: *const C) -> Option<&'a C::RustType>
where
    C: Castable<Ownership = OwnershipBox>,
{
    // SAFETY: the caller promises ptr is NULL or points at a live C::RustType.
    unsafe { ptr.cast::<C::RustType>().as_ref() }
}

/// The error for a NULL pointer argument.
pub(crate) fn null(what: &str) -> FfiError {
    FfiError::new(jwtwarden_result::NullParameter, format!("{what} must not be NULL"))
}

/// Borrow the value behind a required handle argument.
///
/// # Safety
/// As [`try_ref_from_ptr`].
pub(crate) unsafe fn arg_ref<'a, C: Castable<Ownership = OwnershipBox>>(
    ptr: *const C,
    what: &str,
) -> FfiResult<&'a C::RustType> {
    // SAFETY: forwarded from the caller.
    unsafe { try_ref_from_ptr(ptr) }.ok_or_else(|| null(what))
}

/// A required NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` is NULL or points at a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn arg_str<'a>(ptr: *const c_char, what: &str) -> FfiResult<&'a str> {
    // SAFETY: forwarded from the caller.
    unsafe { opt_str(ptr, what) }?.ok_or_else(|| null(what))
}

/// An optional NUL-terminated UTF-8 string argument: NULL is `None`.
///
/// # Safety
/// As [`arg_str`].
pub(crate) unsafe fn opt_str<'a>(ptr: *const c_char, what: &str) -> FfiResult<Option<&'a str>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str()
        .map(Some)
        .map_err(|_| FfiError::new(jwtwarden_result::InvalidArgument, format!("{what} is not valid UTF-8")))
}

/// A required buffer argument (`ptr`, `len`). NULL is an error even when
/// `len` is 0, so a missing argument is never mistaken for an empty one.
///
/// # Safety
/// `ptr` is NULL or points at `len` readable bytes that outlive `'a`.
pub(crate) unsafe fn arg_bytes<'a>(ptr: *const c_char, len: usize, what: &str) -> FfiResult<&'a [u8]> {
    if ptr.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-NULL, and the caller promises `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}

/// JSON text handed over as bytes (a configuration, an issuer entry, an
/// HTTP policy): bytes that are not UTF-8 are `INVALID_CONFIG`, "`what` is
/// not valid UTF-8", as every JSON argument of the API answers them.
pub(crate) fn json_text<'a>(bytes: &'a [u8], what: &str) -> FfiResult<&'a str> {
    std::str::from_utf8(bytes).map_err(|_| {
        jwtwarden_core::Error::new(
            jwtwarden_core::ErrorKind::InvalidConfig,
            format!("{what} is not valid UTF-8"),
        )
        .into()
    })
}

/// A required out-parameter. Checked before any work is done; written only
/// on success, by [`write_out`].
pub(crate) fn arg_out<T>(ptr: *mut T, what: &str) -> FfiResult<*mut T> {
    if ptr.is_null() {
        Err(null(what))
    } else {
        Ok(ptr)
    }
}

/// Write a result to an out-parameter checked by [`arg_out`].
///
/// # Safety
/// `ptr` is non-NULL, aligned and writable.
pub(crate) unsafe fn write_out<T>(ptr: *mut T, value: T) {
    // SAFETY: forwarded from the caller; `ptr` may be uninitialised memory,
    // so write without dropping the old value.
    unsafe { ptr.write(value) }
}
