//! C ABI over the jwtwarden engine.
//!
//! The header `include/jwtwarden.h` is generated from this crate by cbindgen
//! (`ffi/cbindgen.toml`); a test regenerates it and fails on any difference.
//! The conventions every function follows are written once, at the top of
//! that header and in `docs/c.md`:
//!
//! - fallible calls return a [`jwtwarden_result`] (`0` = OK, otherwise the
//!   core's stable `ErrorKind` code);
//! - outputs are trailing out-parameters, written only on success; the last
//!   parameter, `jwtwarden_error **error`, may be NULL and is written only on
//!   failure;
//! - every required pointer is checked: NULL returns
//!   `JWTWARDEN_RESULT_NULL_PARAMETER` (infallible accessors return NULL,
//!   false or 0);
//! - no panic crosses the boundary: it becomes `JWTWARDEN_RESULT_PANIC`;
//! - everything handed out has a `_free` that accepts NULL; strings returned
//!   by accessors are borrowed from their object until it is freed.

// Every `extern "C"` function here is `unsafe`: the C caller must pass valid
// pointers. The rules are the same for all of them and are written once in
// the header's top comment and docs/c.md, rather than in a `# Safety`
// section per function (which cbindgen would copy into the header 30 times).
#![allow(clippy::missing_safety_doc)]
// C type names (`jwtwarden_verifier`), as they appear in the header.
#![allow(non_camel_case_types)]

mod assertion;
mod error;
mod ffi;
#[cfg(test)]
mod header_tests;
mod host;
mod http;
mod logging;
mod mint;
mod panic;
mod verified;
mod verifier;

pub use crate::assertion::{
    jwtwarden_inherited, jwtwarden_inherited_cached, jwtwarden_inherited_claims_json, jwtwarden_inherited_edge,
    jwtwarden_inherited_free, jwtwarden_inherited_fresh, jwtwarden_inherited_inherited,
    jwtwarden_inherited_original_json, jwtwarden_inherited_verified_at, jwtwarden_verifier_verify_assertion,
};
pub use crate::error::{
    jwtwarden_category, jwtwarden_category_name, jwtwarden_error, jwtwarden_error_category, jwtwarden_error_code,
    jwtwarden_error_free, jwtwarden_error_message, jwtwarden_result, jwtwarden_result_category,
    jwtwarden_result_is_keys_unavailable, jwtwarden_result_is_malformed, jwtwarden_result_is_policy_denial,
    jwtwarden_result_is_verification_failure, jwtwarden_result_name,
};
pub use crate::http::{
    jwtwarden_http_decide, jwtwarden_http_decision, jwtwarden_http_decision_allowed, jwtwarden_http_decision_body,
    jwtwarden_http_decision_cached, jwtwarden_http_decision_claim_header_count,
    jwtwarden_http_decision_claim_header_name, jwtwarden_http_decision_claim_header_value,
    jwtwarden_http_decision_error_code, jwtwarden_http_decision_free, jwtwarden_http_decision_header_count,
    jwtwarden_http_decision_header_name, jwtwarden_http_decision_header_value, jwtwarden_http_decision_status,
    jwtwarden_http_decision_verified, jwtwarden_http_decision_would_fetch, jwtwarden_http_header,
    jwtwarden_http_policy, jwtwarden_http_policy_free, jwtwarden_http_policy_new,
};
pub use crate::logging::{jwtwarden_log_callback, jwtwarden_log_level, jwtwarden_set_log_callback};
pub use crate::mint::{
    jwtwarden_http_decide_minting, jwtwarden_http_decision_assertion, jwtwarden_http_policy_assertion_header,
    jwtwarden_minter, jwtwarden_minter_free, jwtwarden_minter_new,
};
pub use crate::verified::{
    jwtwarden_verified, jwtwarden_verified_alg, jwtwarden_verified_cached, jwtwarden_verified_claim_json,
    jwtwarden_verified_claims_json, jwtwarden_verified_claims_json_len, jwtwarden_verified_expires_at,
    jwtwarden_verified_free, jwtwarden_verified_issuer, jwtwarden_verified_kid, jwtwarden_verified_verified_at_ms,
};
pub use crate::verifier::{
    jwtwarden_health, jwtwarden_string_free, jwtwarden_verifier, jwtwarden_verifier_bump_policy_version,
    jwtwarden_verifier_free, jwtwarden_verifier_issuer_health, jwtwarden_verifier_metrics_json, jwtwarden_verifier_new,
    jwtwarden_verifier_prometheus, jwtwarden_verifier_refresh_issuer, jwtwarden_verifier_revoke_jti,
    jwtwarden_verifier_revoke_kid, jwtwarden_verifier_revoke_subject, jwtwarden_verifier_verify,
    jwtwarden_verifier_verify_with,
};

/// The version of the linked library, `"MAJOR.MINOR.PATCH"`. Static: never
/// free it.
#[no_mangle]
pub extern "C" fn jwtwarden_version() -> *const std::ffi::c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linked_version_is_cargo_toml_and_core() {
        let cargo = env!("CARGO_PKG_VERSION");
        assert_eq!(jwtwarden_core::VERSION, cargo);
        // SAFETY: jwtwarden_version returns a static C string.
        let linked = unsafe { std::ffi::CStr::from_ptr(jwtwarden_version()) };
        assert_eq!(linked.to_str().unwrap(), cargo);
    }
}
