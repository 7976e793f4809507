//! Calls for hosts that embed the engine in a server of their own (the
//! nginx and Apache modules): `jwtwarden_config_check` validates a
//! configuration without building a verifier, for a process that must not
//! hold one (nginx's master and `nginx -t`, Apache's `check_config` hook);
//! `jwtwarden_http_decision_claim_value` gives any claim of an allowed
//! request as its claim header would carry it (nginx's
//! `$jwtwarden_claim_NAME`).

use std::ffi::{c_char, CString};

use jwtwarden_core::http::header_value;
use jwtwarden_core::{describe_issuer_keys, Config, Error, ErrorKind, IssuerConfig};

use crate::error::{jwtwarden_error, jwtwarden_result, FfiError};
use crate::ffi::{arg_bytes, arg_out, arg_ref, write_out};
use crate::http::{jwtwarden_http_decision, jwtwarden_http_policy};
use crate::panic::fallible;

/// Check a JSON configuration (the format of `jwtwarden_verifier_new`) as
/// building a verifier from it would, without building one: no thread is
/// started, nothing is fetched, locked or written, and `state_dir` is not
/// opened. For a host's configuration test (`nginx -t`, `apachectl
/// configtest`) in a process that must not hold a verifier.
///
/// Checked: the JSON itself, every field's type and value and the rules
/// between fields (what `jwtwarden_verifier_new` refuses before it starts),
/// and each issuer's static keys (`jwks` or `jwks_file`, read and parsed as
/// the verifier loads them: at least one usable key). Only building a
/// verifier checks the rest, as `jwtwarden_verifier_new` reports it: the
/// `state_dir` journal (opened and replayed), `http.ca_bundle` (read)
/// unless an issuer has static keys, a SPIFFE `bundle_file`, and the Redis
/// URL beyond its scheme.
///
/// `config_json` is `config_len` bytes of UTF-8 (no NUL needed). Returns
/// `JWTWARDEN_RESULT_OK` for a configuration `jwtwarden_verifier_new`
/// would accept (but for the checks above), else
/// `JWTWARDEN_RESULT_INVALID_CONFIG` with a message naming the field
/// (`issuers[0].jwks_uri: invalid type: ...`).
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_config_check(
    config_json: *const c_char,
    config_len: usize,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY: per the API contract, config_json holds config_len bytes.
        let bytes = unsafe { arg_bytes(config_json, config_len, "config_json") }?;
        let json = crate::ffi::json_text(bytes, "configuration")?;
        let config = Config::from_json(json)?;
        for (i, issuer) in config.issuers.iter().enumerate() {
            check_static_keys(&config, i, issuer)?;
        }
        Ok(())
    })
}

/// An issuer's static keyset, loaded as the verifier loads it at start
/// (which refuses an unusable one with the same message). Remote sources
/// are left alone: checking them would fetch.
fn check_static_keys(config: &Config, index: usize, issuer: &IssuerConfig) -> Result<(), Error> {
    let remote = issuer.jwks_uri.is_some() || issuer.discovery;
    if remote || (issuer.jwks.is_none() && issuer.jwks_file.is_none()) {
        return Ok(());
    }
    match describe_issuer_keys(&config.http, issuer)?.problem {
        None => Ok(()),
        Some(problem) => Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("issuers[{index}]: static JWKS unusable: {problem}"),
        )),
    }
}

/// Claim `name` (`name_len` bytes of UTF-8, no NUL needed) of an allowed
/// request's token, as `policy`'s claim headers carry a claim (whether or
/// not `policy` maps this one to a header): a string as it is, an array
/// joined by commas (each element a string or its JSON), a number, boolean
/// or object as JSON; control characters (CR, LF, NUL, C1, U+2028/9)
/// replaced by spaces, trimmed, cut to `max_claim_header_bytes` at a
/// character boundary. `policy` should be the one `decision` was made with.
///
/// On success `*value_out` receives a new NUL-terminated string to release
/// with `jwtwarden_string_free`, or NULL when there is no value: the token
/// has no such claim (or it is empty after sanitising), or nothing was
/// verified (a refusal, an open route or method, "would fetch"), so the
/// claims of a token that was not allowed are never given out.
/// `JWTWARDEN_RESULT_INVALID_ARGUMENT` if `name` is not UTF-8.
#[no_mangle]
pub unsafe extern "C" fn jwtwarden_http_decision_claim_value(
    decision: *const jwtwarden_http_decision,
    policy: *const jwtwarden_http_policy,
    name: *const c_char,
    name_len: usize,
    value_out: *mut *mut c_char,
    error: *mut *mut jwtwarden_error,
) -> jwtwarden_result {
    fallible(error, || {
        // SAFETY: NULL or live handles from this library, per the API contract.
        let decision = unsafe { arg_ref(decision, "decision") }?;
        // SAFETY: as above.
        let policy = unsafe { arg_ref(policy, "policy") }?;
        // SAFETY: per the API contract, name holds name_len bytes.
        let name = unsafe { arg_bytes(name, name_len, "name") }?;
        let out = arg_out(value_out, "value_out")?;
        let name = std::str::from_utf8(name)
            .map_err(|_| FfiError::new(jwtwarden_result::InvalidArgument, "name is not valid UTF-8"))?;
        let value = decision
            .verified()
            .and_then(|v| header_value(v.claims().get(name)?, policy.max_claim_header_bytes()))
            .map(|v| CString::new(v).expect("a sanitised value has no NUL").into_raw());
        // SAFETY: checked non-NULL by arg_out; writable per the API contract.
        unsafe { write_out(out, value.unwrap_or(std::ptr::null_mut())) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::jwtwarden_error_free;

    fn check(json: &str) -> (jwtwarden_result, String) {
        let mut err = std::ptr::null_mut();
        // SAFETY: json is a live buffer of json.len() bytes; err is writable.
        let rc = unsafe { jwtwarden_config_check(json.as_ptr().cast(), json.len(), &mut err) };
        let msg = if err.is_null() {
            String::new()
        } else {
            // SAFETY: err came from this library.
            let text = unsafe { std::ffi::CStr::from_ptr(crate::error::jwtwarden_error_message(err)) };
            let text = text.to_string_lossy().into_owned();
            // SAFETY: err came from this library and is freed once.
            unsafe { jwtwarden_error_free(err) };
            text
        };
        (rc, msg)
    }

    #[test]
    fn a_static_keyset_without_a_usable_key_is_refused_naming_the_issuer() {
        let (rc, msg) = check(r#"{"issuers":[{"issuer":"https://a.example","audiences":["api"],"jwks":{"keys":[]}}]}"#);
        assert_eq!(rc, jwtwarden_result::InvalidConfig, "{msg}");
        assert!(msg.contains("issuers[0]") && msg.contains("static JWKS"), "{msg}");
    }

    #[test]
    fn a_remote_issuer_is_not_fetched() {
        // Port 9 on loopback: a fetch would fail; the check never tries.
        let (rc, msg) = check(
            r#"{"issuers":[{"issuer":"http://127.0.0.1:9","audiences":["api"],"jwks_uri":"http://127.0.0.1:9/jwks"}],
                "http":{"allow_http":true},"state_dir":"/nonexistent/state"}"#,
        );
        assert_eq!(rc, jwtwarden_result::Ok, "{msg}");
    }
}
