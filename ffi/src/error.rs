//! Result codes, categories and the error object.
//!
//! [`jwtwarden_result`] mirrors the core's [`ErrorKind`] number for number
//! (plus `OK = 0`), and adds the codes only the C boundary has:
//! `NULL_PARAMETER` (504) and `PANIC` (901). A test fails if a kind is added
//! to the core without being added here, or if a number differs. Errors at
//! the boundary are [`FfiError`]s: an engine error, or a boundary code.

use std::ffi::{c_char, CStr, CString};
use std::sync::OnceLock;

use jwtwarden_core::{Category, Error, ErrorKind};

use crate::ffi::{try_box_from_ptr, try_ref_from_ptr, Castable, OwnershipBox};
use crate::panic::ffi_panic_boundary;

/// The result of every fallible call: `JWTWARDEN_RESULT_OK` (0) or the stable
/// code of what went wrong. The numbers are the same in Rust, C, Python and
/// Go, grouped in ranges: 1xx malformed token, 2xx verification failure, 3xx
/// policy denial, 4xx keys unavailable, 5xx usage error, 9xx internal.
/// Numbers are never reused; new codes may be added within a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum jwtwarden_result {
    /// Success.
    Ok = 0,
    /// The token is larger than `max_token_bytes`.
    TokenTooLarge = 100,
    /// Not three dot-separated segments, or an empty/non-ASCII segment.
    MalformedToken = 101,
    /// A segment is not valid unpadded base64url.
    InvalidBase64 = 102,
    /// The header is not a JSON object with a string `alg`.
    InvalidHeader = 103,
    /// The payload is not a JSON object, or a registered claim has the wrong
    /// type or, for `exp`/`nbf`/`iat`, a value out of range (negative, not
    /// finite, or after 9999-12-31T23:59:59Z).
    InvalidPayload = 104,
    /// `alg` is `none`, unknown, or not allowed for the issuer.
    AlgorithmNotAllowed = 105,
    /// The header lists a `crit` extension jwtwarden does not understand.
    UnsupportedCritical = 106,
    /// The signature does not verify with the selected key.
    InvalidSignature = 200,
    /// No key with the token's `kid`, even after the allowed refresh.
    UnknownKid = 201,
    /// The token has no `kid` and the issuer has no single key that fits its `alg`.
    MissingKid = 202,
    /// A key with that `kid` exists but cannot be used with the token's `alg`.
    KeyAlgorithmMismatch = 203,
    /// `exp` is in the past (beyond leeway). A missing `exp` is `missing_required_claim`.
    Expired = 300,
    /// `nbf` (or `iat`) is in the future beyond leeway.
    NotYetValid = 301,
    /// The `iss` claim does not match the issuer the token was verified for.
    InvalidIssuer = 302,
    /// No configured issuer matches the token (or the one the caller named).
    UnknownIssuer = 303,
    /// The `aud` claim does not contain an accepted audience.
    InvalidAudience = 304,
    /// A claim the rules need is missing: `exp`, `iss`, `aud` (unless any
    /// audience is allowed) or a claim named in `required_claims`.
    MissingRequiredClaim = 305,
    /// The header `typ` does not match the issuer's required type.
    InvalidType = 306,
    /// The token (its `jti`, or its subject before a time) has been revoked.
    Revoked = 307,
    /// The key that signed the token has been revoked with `revoke_kid`.
    KeyRevoked = 308,
    /// The token's lifetime (`exp - iat`, or `exp - now` without `iat`) is
    /// longer than the issuer's `max_token_lifetime_secs`.
    TokenLifetimeExceeded = 309,
    /// The token's entry in its issuer's Token Status List is SUSPENDED (2).
    Suspended = 310,
    /// The token's `status.status_list.uri` is not under its issuer's
    /// `status_list.allowed_uris`: its status cannot be checked (nothing fetched).
    StatusUriNotAllowed = 311,
    /// The token's `status.status_list.idx` is beyond the end of its list.
    StatusIndexOutOfRange = 312,
    /// The token's status is an application-specific value not configured valid.
    StatusNotValid = 313,
    /// The token has no `status` claim and its issuer requires one.
    StatusMissing = 314,
    /// The token's tenant (of an issuer template) is not in its allowlist.
    TenantNotAllowed = 315,
    /// The issuer has no usable keys: never fetched successfully, or fetch failed.
    KeysUnavailable = 400,
    /// The issuer's keys are older than `max_stale`: failing closed.
    KeysStale = 401,
    /// The fleet revocation feed has been unreachable for longer than
    /// `revocation.redis.max_stale_secs`: failing closed.
    RevocationsStale = 402,
    /// The Status List Token a token references could not be fetched or verified.
    StatusListUnavailable = 403,
    /// The Status List Token is past `max_stale_secs` or its `exp`: failing closed.
    StatusListStale = 404,
    /// A new tenant of an issuer template, past its fetch budget.
    TenantBudgetExhausted = 405,
    /// A tenant of an issuer template whose first fetch failed recently.
    TenantUnavailable = 406,
    /// The configuration is invalid; the message names the field.
    InvalidConfig = 500,
    /// An argument is invalid (for example a string that is not UTF-8).
    InvalidArgument = 501,
    /// A revocation list is full (`revocation.max_entries`).
    RevocationListFull = 502,
    /// A revocation is in force in this process but could not be written
    /// to the journal in `state_dir`.
    RevocationNotPersisted = 510,
    // 503 is retired (buffer_too_small: nothing returned it); never reused.
    /// A required pointer argument was NULL (the C ABI's own code).
    NullParameter = 504,
    /// An unexpected internal error.
    Internal = 900,
    /// A panic was caught at the boundary (a bug: please report it). The C
    /// ABI's own code.
    Panic = 901,
}

impl jwtwarden_result {
    /// Every code, in order (`Ok` first).
    ///
    /// cbindgen:ignore
    pub const ALL: &'static [jwtwarden_result] = &[
        jwtwarden_result::Ok,
        jwtwarden_result::TokenTooLarge,
        jwtwarden_result::MalformedToken,
        jwtwarden_result::InvalidBase64,
        jwtwarden_result::InvalidHeader,
        jwtwarden_result::InvalidPayload,
        jwtwarden_result::AlgorithmNotAllowed,
        jwtwarden_result::UnsupportedCritical,
        jwtwarden_result::InvalidSignature,
        jwtwarden_result::UnknownKid,
        jwtwarden_result::MissingKid,
        jwtwarden_result::KeyAlgorithmMismatch,
        jwtwarden_result::Expired,
        jwtwarden_result::NotYetValid,
        jwtwarden_result::InvalidIssuer,
        jwtwarden_result::UnknownIssuer,
        jwtwarden_result::InvalidAudience,
        jwtwarden_result::MissingRequiredClaim,
        jwtwarden_result::InvalidType,
        jwtwarden_result::Revoked,
        jwtwarden_result::KeyRevoked,
        jwtwarden_result::TokenLifetimeExceeded,
        jwtwarden_result::Suspended,
        jwtwarden_result::StatusUriNotAllowed,
        jwtwarden_result::StatusIndexOutOfRange,
        jwtwarden_result::StatusNotValid,
        jwtwarden_result::StatusMissing,
        jwtwarden_result::TenantNotAllowed,
        jwtwarden_result::KeysUnavailable,
        jwtwarden_result::KeysStale,
        jwtwarden_result::RevocationsStale,
        jwtwarden_result::StatusListUnavailable,
        jwtwarden_result::StatusListStale,
        jwtwarden_result::TenantBudgetExhausted,
        jwtwarden_result::TenantUnavailable,
        jwtwarden_result::InvalidConfig,
        jwtwarden_result::InvalidArgument,
        jwtwarden_result::RevocationListFull,
        jwtwarden_result::RevocationNotPersisted,
        jwtwarden_result::NullParameter,
        jwtwarden_result::Internal,
        jwtwarden_result::Panic,
    ];

    /// The codes only the C boundary has (no core kind).
    ///
    /// cbindgen:ignore
    pub const BOUNDARY_ONLY: &'static [jwtwarden_result] = &[jwtwarden_result::NullParameter, jwtwarden_result::Panic];

    /// The stable name of a boundary-only code, from the core's list
    /// (`ErrorKind::BOUNDARY_CODES`; the core names the others too).
    fn boundary_name(self) -> &'static str {
        ErrorKind::BOUNDARY_CODES
            .iter()
            .find(|(code, _)| *code == self as u32)
            .map_or("unknown", |(_, name)| name)
    }

    /// The C code for a core error kind (same number).
    pub fn from_kind(kind: ErrorKind) -> jwtwarden_result {
        jwtwarden_result::from_code(kind.code()).unwrap_or(jwtwarden_result::Internal)
    }

    /// The C code for a number, if it is one.
    pub fn from_code(code: u32) -> Option<jwtwarden_result> {
        jwtwarden_result::ALL.iter().copied().find(|r| *r as u32 == code)
    }
}

/// The broad reason behind a result code (its range). Numbers match the
/// core's `Category`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum jwtwarden_category {
    /// `JWTWARDEN_RESULT_OK`: nothing went wrong.
    None = 0,
    /// 1xx: the token is not well formed.
    Malformed = 1,
    /// 2xx: the signature could not be verified (bad signature, unknown key).
    Verification = 2,
    /// 3xx: authentic, but denied by policy (expired, audience, issuer, revoked…).
    Policy = 3,
    /// 4xx: the issuer's keys are unavailable or too stale to trust.
    KeysUnavailable = 4,
    /// 5xx: the caller or its configuration is at fault.
    Usage = 5,
    /// 9xx (and unknown codes): an internal failure.
    Internal = 9,
}

impl jwtwarden_category {
    /// The category of any code, by range (unknown ranges are internal).
    pub fn of(code: u32) -> jwtwarden_category {
        match code {
            0 => jwtwarden_category::None,
            100..=199 => jwtwarden_category::Malformed,
            200..=299 => jwtwarden_category::Verification,
            300..=399 => jwtwarden_category::Policy,
            400..=499 => jwtwarden_category::KeysUnavailable,
            500..=599 => jwtwarden_category::Usage,
            _ => jwtwarden_category::Internal,
        }
    }

    /// The C category for a core category (same number).
    pub fn from_core(c: Category) -> jwtwarden_category {
        jwtwarden_category::of(match c {
            Category::Malformed => 100,
            Category::Verification => 200,
            Category::Policy => 300,
            Category::KeysUnavailable => 400,
            Category::Usage => 500,
            Category::Internal => 900,
        })
    }
}

/// An error: code, category and a human-readable message. Created by a
/// failing call when its `error` out-parameter is not NULL; release it with
/// `jwtwarden_error_free`.
pub struct jwtwarden_error {
    _private: [u8; 0],
}

/// An error at the C boundary: an engine error, or one only the boundary
/// has (a NULL argument, a caught panic).
#[derive(Debug)]
pub(crate) struct FfiError {
    pub(crate) code: jwtwarden_result,
    pub(crate) message: String,
}

impl FfiError {
    /// An error with a boundary code.
    pub(crate) fn new(code: jwtwarden_result, message: impl Into<String>) -> FfiError {
        FfiError {
            code,
            message: message.into(),
        }
    }
}

impl From<Error> for FfiError {
    fn from(e: Error) -> FfiError {
        FfiError {
            code: jwtwarden_result::from_kind(e.kind()),
            message: e.message().to_owned(),
        }
    }
}

/// Results at the C boundary.
pub(crate) type FfiResult<T> = std::result::Result<T, FfiError>;

/// What a `jwtwarden_error` holds.
pub(crate) struct ErrorHandle {
    code: jwtwarden_result,
    message: CString,
}

impl ErrorHandle {
    pub(crate) fn new(e: &FfiError) -> ErrorHandle {
        ErrorHandle {
            code: e.code,
            message: c_string_lossy(&e.message),
        }
    }
}

impl Castable for jwtwarden_error {
    type Ownership = OwnershipBox;
    type RustType = ErrorHandle;
}

/// A C string from text that may (in theory) hold NUL bytes: they become
/// U+FFFD, so the string is never silently cut short.
pub(crate) fn c_string_lossy(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| CString::new(s.replace('\0', "\u{FFFD}")).expect("NULs were replaced"))
}

/// The code of an error. `JWTWARDEN_RESULT_NULL_PARAMETER` if `error` is NULL.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_error_code(error: *const jwtwarden_error) -> jwtwarden_result {
    ffi_panic_boundary! {
        // SAFETY: NULL or a live error, per the API contract.
        match unsafe { try_ref_from_ptr(error) } {
            Some(e) => e.code,
            None => jwtwarden_result::NullParameter,
        }
    }
}

/// The category of an error (`JWTWARDEN_CATEGORY_USAGE` if `error` is NULL,
/// like any NULL-parameter error).
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_error_category(error: *const jwtwarden_error) -> jwtwarden_category {
    // SAFETY: forwarded; jwtwarden_error_code accepts NULL.
    jwtwarden_category::of(unsafe { jwtwarden_error_code(error) } as u32)
}

/// The error's message: NUL-terminated UTF-8, borrowed from `error` and valid
/// until `jwtwarden_error_free(error)`. NULL if `error` is NULL. The message is
/// for people and may change between versions; match on the code.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_error_message(error: *const jwtwarden_error) -> *const c_char {
    ffi_panic_boundary! {
        // SAFETY: NULL or a live error, per the API contract.
        match unsafe { try_ref_from_ptr(error) } {
            Some(e) => e.message.as_ptr(),
            None => std::ptr::null(),
        }
    }
}

/// Free an error. NULL is accepted and ignored.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_error_free(error: *mut jwtwarden_error) {
    ffi_panic_boundary! {
        // SAFETY: NULL or an error from this library not yet freed, per the API contract.
        drop(unsafe { try_box_from_ptr(error) });
    }
}

/// The stable snake_case name of a code (`"ok"`, `"expired"`, …, the same
/// names as metrics and the other front ends), or `"unknown"`. Static: never
/// free it.
#[no_mangle]
pub extern "C" fn jwtwarden_result_name(result: u32) -> *const c_char {
    ffi_panic_boundary! {
        static NAMES: OnceLock<Vec<(u32, CString)>> = OnceLock::new();
        let names = NAMES.get_or_init(|| {
            std::iter::once((0, c"ok".to_owned()))
                .chain(ErrorKind::ALL.iter().map(|k| (k.code(), c_string_lossy(k.as_str()))))
                .chain(jwtwarden_result::BOUNDARY_ONLY.iter().map(|&c| (c as u32, c_string_lossy(c.boundary_name()))))
                .collect()
        });
        names
            .iter()
            .find(|(code, _)| *code == result)
            .map_or(c"unknown".as_ptr(), |(_, name)| name.as_ptr())
    }
}

/// The category of a code, by range: `JWTWARDEN_CATEGORY_NONE` for
/// `JWTWARDEN_RESULT_OK`, internal for codes outside the known ranges.
#[no_mangle]
pub extern "C" fn jwtwarden_result_category(result: u32) -> jwtwarden_category {
    jwtwarden_category::of(result)
}

/// The stable name of a category (`"malformed"`, `"verification"`,
/// `"policy"`, `"keys_unavailable"`, `"usage"`, `"internal"`, or `"none"`
/// for `JWTWARDEN_CATEGORY_NONE`), `"unknown"` otherwise. Static: never free it.
#[no_mangle]
pub extern "C" fn jwtwarden_category_name(category: u32) -> *const c_char {
    let name: &'static CStr = match category {
        0 => c"none",
        1 => c"malformed",
        2 => c"verification",
        3 => c"policy",
        4 => c"keys_unavailable",
        5 => c"usage",
        9 => c"internal",
        _ => c"unknown",
    };
    name.as_ptr()
}

/// True for 1xx codes: the input is not a well-formed token jwtwarden accepts.
#[no_mangle]
pub extern "C" fn jwtwarden_result_is_malformed(result: u32) -> bool {
    jwtwarden_category::of(result) == jwtwarden_category::Malformed
}

/// True for 2xx codes: the signature could not be verified (bad signature,
/// unknown or mismatched key).
#[no_mangle]
pub extern "C" fn jwtwarden_result_is_verification_failure(result: u32) -> bool {
    jwtwarden_category::of(result) == jwtwarden_category::Verification
}

/// True for 3xx codes: an authentic token denied by policy (expired,
/// audience, issuer, revoked…).
#[no_mangle]
pub extern "C" fn jwtwarden_result_is_policy_denial(result: u32) -> bool {
    jwtwarden_category::of(result) == jwtwarden_category::Policy
}

/// True for 4xx codes: the issuer's keys are unavailable or too stale.
#[no_mangle]
pub extern "C" fn jwtwarden_result_is_keys_unavailable(result: u32) -> bool {
    jwtwarden_category::of(result) == jwtwarden_category::KeysUnavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_kind_has_the_same_number_in_c() {
        for &kind in ErrorKind::ALL {
            let c = jwtwarden_result::from_code(kind.code())
                .unwrap_or_else(|| panic!("core kind {kind:?} ({}) is missing from jwtwarden_result", kind.code()));
            assert_eq!(c as u32, kind.code());
            assert_eq!(
                format!("{c:?}"),
                format!("{kind:?}"),
                "same name for code {}",
                kind.code()
            );
            assert_eq!(jwtwarden_result::from_kind(kind), c);
            assert_eq!(
                jwtwarden_category::of(c as u32),
                jwtwarden_category::from_core(kind.category()),
                "category of {kind:?}"
            );
        }
    }

    #[test]
    fn every_c_code_is_a_core_kind_or_the_boundarys_own() {
        for &c in jwtwarden_result::ALL {
            if c == jwtwarden_result::Ok {
                continue;
            }
            let core = ErrorKind::from_code(c as u32).is_some();
            let boundary = jwtwarden_result::BOUNDARY_ONLY.contains(&c);
            assert!(core != boundary, "{c:?}: a core kind xor a boundary code");
        }
        assert_eq!(
            jwtwarden_result::ALL.len(),
            ErrorKind::ALL.len() + 1 + jwtwarden_result::BOUNDARY_ONLY.len()
        );
        let ours: Vec<u32> = jwtwarden_result::BOUNDARY_ONLY.iter().map(|c| *c as u32).collect();
        let core: Vec<u32> = ErrorKind::BOUNDARY_CODES.iter().map(|(code, _)| *code).collect();
        assert_eq!(ours, core, "the boundary codes are the core's BOUNDARY_CODES");
        for &(code, name) in ErrorKind::RETIRED_CODES {
            assert_eq!(
                jwtwarden_result::from_code(code),
                None,
                "retired {name} ({code}) reused"
            );
        }
    }

    #[test]
    fn every_code_has_a_name() {
        for &c in jwtwarden_result::ALL {
            // SAFETY: the names are static NUL-terminated strings.
            let name = unsafe { CStr::from_ptr(jwtwarden_result_name(c as u32)) };
            assert_ne!(name.to_str().unwrap(), "unknown", "{c:?}");
        }
        // SAFETY: as above.
        let name = unsafe { CStr::from_ptr(jwtwarden_result_name(jwtwarden_result::NullParameter as u32)) };
        assert_eq!(name.to_str().unwrap(), "null_parameter");
    }

    #[test]
    fn categories_have_the_core_numbers() {
        for (core, c) in [
            (Category::Malformed, jwtwarden_category::Malformed),
            (Category::Verification, jwtwarden_category::Verification),
            (Category::Policy, jwtwarden_category::Policy),
            (Category::KeysUnavailable, jwtwarden_category::KeysUnavailable),
            (Category::Usage, jwtwarden_category::Usage),
            (Category::Internal, jwtwarden_category::Internal),
        ] {
            assert_eq!(core as u32, c as u32);
            assert_eq!(jwtwarden_category::from_core(core), c);
            // SAFETY: jwtwarden_category_name returns a static C string.
            let name = unsafe { CStr::from_ptr(jwtwarden_category_name(c as u32)) };
            assert_eq!(name.to_str().unwrap(), core.as_str());
        }
    }

    #[test]
    fn names_match_the_core() {
        for &kind in ErrorKind::ALL {
            // SAFETY: jwtwarden_result_name returns a static C string.
            let name = unsafe { CStr::from_ptr(jwtwarden_result_name(kind.code())) };
            assert_eq!(name.to_str().unwrap(), kind.as_str());
        }
        // SAFETY: as above.
        unsafe {
            assert_eq!(CStr::from_ptr(jwtwarden_result_name(0)).to_str().unwrap(), "ok");
            assert_eq!(CStr::from_ptr(jwtwarden_result_name(7)).to_str().unwrap(), "unknown");
        }
    }

    #[test]
    fn predicates_follow_ranges() {
        assert!(jwtwarden_result_is_malformed(jwtwarden_result::InvalidBase64 as u32));
        assert!(jwtwarden_result_is_verification_failure(
            jwtwarden_result::UnknownKid as u32
        ));
        assert!(jwtwarden_result_is_policy_denial(jwtwarden_result::Revoked as u32));
        assert!(jwtwarden_result_is_keys_unavailable(jwtwarden_result::KeysStale as u32));
        assert!(!jwtwarden_result_is_malformed(0));
        assert_eq!(jwtwarden_result_category(0), jwtwarden_category::None);
        assert_eq!(jwtwarden_result_category(1234), jwtwarden_category::Internal);
    }

    #[test]
    fn nul_bytes_in_messages_are_replaced() {
        assert_eq!(c_string_lossy("a\0b").to_str().unwrap(), "a\u{FFFD}b");
    }
}
