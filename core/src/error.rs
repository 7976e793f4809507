//! Stable error kinds and codes.
//!
//! Every rejection jwtwarden makes has an [`ErrorKind`] with a numeric code
//! that never changes meaning and is never reused. The same numbers are used
//! by the C ABI, the Python package and the Go package, so a log line or a
//! metric from any front end means the same thing.
//!
//! Codes are grouped in ranges so a caller can tell the broad reason apart
//! without knowing every kind ([`Category`]):
//!
//! | range | category | meaning |
//! |-------|----------|---------|
//! | 1xx | [`Category::Malformed`] | the input is not a well-formed token we accept |
//! | 2xx | [`Category::Verification`] | the signature could not be verified |
//! | 3xx | [`Category::Policy`] | a valid signature, but the token is not acceptable |
//! | 4xx | [`Category::KeysUnavailable`] | the issuer's keys (or a token's status list) cannot be trusted right now |
//! | 5xx | [`Category::Usage`] | configuration or API misuse |
//! | 9xx | [`Category::Internal`] | a bug or an FFI-boundary failure |

use std::fmt;

/// Broad reason a verification failed; derived from the kind's code range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Category {
    /// The token is not well formed (1xx).
    Malformed = 1,
    /// The signature could not be verified: bad signature or unknown key (2xx).
    Verification = 2,
    /// The token is authentic but denied by policy: expired, audience, revoked… (3xx).
    Policy = 3,
    /// The issuer's keys, or the status list a token references, are
    /// unavailable or too stale to trust (4xx).
    KeysUnavailable = 4,
    /// The caller or its configuration is at fault (5xx).
    Usage = 5,
    /// An internal failure (9xx).
    Internal = 9,
}

impl Category {
    /// Stable lower-case name, as used in metrics labels and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Malformed => "malformed",
            Category::Verification => "verification",
            Category::Policy => "policy",
            Category::KeysUnavailable => "keys_unavailable",
            Category::Usage => "usage",
            Category::Internal => "internal",
        }
    }
}

macro_rules! error_kinds {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $str:literal; )*) => {
        /// A stable error kind. The discriminant is the public numeric code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $( $(#[$doc])* $name = $code, )*
        }

        impl ErrorKind {
            /// Every kind, in code order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$name),*];

            /// Stable snake_case name, as used in metrics labels, JSON and logs.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorKind::$name => $str,)* }
            }

            /// The kind for a numeric code, if it is one.
            pub fn from_code(code: u32) -> Option<ErrorKind> {
                match code { $($code => Some(ErrorKind::$name),)* _ => None }
            }
        }
    };
}

error_kinds! {
    /// The token is larger than `max_token_bytes`.
    TokenTooLarge = 100, "token_too_large";
    /// Not three dot-separated segments, or an empty/non-ASCII segment.
    MalformedToken = 101, "malformed_token";
    /// A segment is not valid unpadded base64url.
    InvalidBase64 = 102, "invalid_base64";
    /// The header is not a JSON object with a string `alg`.
    InvalidHeader = 103, "invalid_header";
    /// The payload is not a JSON object, or a registered claim has the wrong
    /// type or, for `exp`/`nbf`/`iat`, a value out of range (negative, not
    /// finite, or after 9999-12-31T23:59:59Z).
    InvalidPayload = 104, "invalid_payload";
    /// `alg` is `none`, unknown, or not allowed for the issuer.
    AlgorithmNotAllowed = 105, "algorithm_not_allowed";
    /// The header lists a `crit` extension we do not understand.
    UnsupportedCritical = 106, "unsupported_critical";

    /// The signature does not verify with the selected key.
    InvalidSignature = 200, "invalid_signature";
    /// No key with the token's `kid`, even after the allowed refresh (the
    /// issuer answered; when that refresh failed, `keys_unavailable`).
    UnknownKid = 201, "unknown_kid";
    /// The token has no `kid` and the issuer has no single key that fits its `alg`.
    MissingKid = 202, "missing_kid";
    /// A key with that `kid` exists but cannot be used with the token's `alg`.
    KeyAlgorithmMismatch = 203, "key_algorithm_mismatch";

    /// `exp` is in the past (beyond leeway). A missing `exp` is `missing_required_claim`.
    Expired = 300, "expired";
    /// `nbf` (or `iat`) is in the future beyond leeway.
    NotYetValid = 301, "not_yet_valid";
    /// The `iss` claim does not match the issuer the token was verified for.
    InvalidIssuer = 302, "invalid_issuer";
    /// No configured issuer matches the token (or the one the caller named).
    UnknownIssuer = 303, "unknown_issuer";
    /// The `aud` claim does not contain an accepted audience.
    InvalidAudience = 304, "invalid_audience";
    /// A claim the rules need is missing: `exp`, `iss`, `aud` (unless any
    /// audience is allowed) or a claim named in `required_claims`.
    MissingRequiredClaim = 305, "missing_required_claim";
    /// The header `typ` does not match the issuer's required type.
    InvalidType = 306, "invalid_type";
    /// The token (its `jti`, or its subject before a time) has been revoked.
    Revoked = 307, "revoked";
    /// The key that signed the token has been revoked with `revoke_kid`.
    KeyRevoked = 308, "key_revoked";
    /// The token's lifetime (`exp - iat`, or `exp - now` without `iat`) is
    /// longer than the issuer's `max_token_lifetime_secs`.
    TokenLifetimeExceeded = 309, "token_lifetime_exceeded";
    /// The token's entry in its issuer's Token Status List is SUSPENDED (2).
    /// (INVALID, 1, is `revoked`.)
    Suspended = 310, "suspended";
    /// The token's `status.status_list.uri` is not under one of its issuer's
    /// `status_list.allowed_uris`: its status cannot be checked, and nothing
    /// was fetched.
    StatusUriNotAllowed = 311, "status_uri_not_allowed";
    /// The token's `status.status_list.idx` is beyond the end of its list.
    StatusIndexOutOfRange = 312, "status_index_out_of_range";
    /// The token's status is an application-specific value its issuer's
    /// `status_list.valid_statuses` does not name.
    StatusNotValid = 313, "status_not_valid";
    /// The token has no `status` claim and its issuer's
    /// `status_list.require_status` is true.
    StatusMissing = 314, "status_missing";
    /// The token's `iss` fits an issuer template, but its tenant is not in
    /// the template's `tenants` allowlist. Nothing was fetched.
    TenantNotAllowed = 315, "tenant_not_allowed";

    /// The issuer has no usable keys: never fetched successfully, or fetch failed.
    /// Also a `kid` not among the keys held when the fetch that could have
    /// found it failed (it could not be checked).
    KeysUnavailable = 400, "keys_unavailable";
    /// The issuer's keys are older than `max_stale`: failing closed.
    KeysStale = 401, "keys_stale";
    /// The fleet revocation feed (`revocation.redis`) has been unreachable
    /// for longer than `max_stale_secs`: failing closed, since revocations
    /// made elsewhere may be missing here.
    RevocationsStale = 402, "revocations_stale";
    /// The Status List Token a token references could not be fetched or
    /// verified (never fetched successfully, invalid, too large, or over the
    /// issuer's `status_list.max_lists`).
    StatusListUnavailable = 403, "status_list_unavailable";
    /// The Status List Token is older than `status_list.max_stale_secs`
    /// past its `ttl`, or past its own `exp`: failing closed.
    StatusListStale = 404, "status_list_stale";
    /// The token names a new tenant of an issuer template, and the
    /// template's `new_tenant_fetches_per_minute` is spent: refused without
    /// a fetch; the tenant may be tried again when the budget refills.
    TenantBudgetExhausted = 405, "tenant_budget_exhausted";
    /// The token's tenant (of an issuer template) failed discovery or its
    /// first key fetch recently: refused without a fetch until the failure
    /// is forgotten (`docs/issuer-families.md`).
    TenantUnavailable = 406, "tenant_unavailable";

    /// The configuration is invalid; the message names the field.
    InvalidConfig = 500, "invalid_config";
    /// An argument passed to the API is invalid.
    InvalidArgument = 501, "invalid_argument";
    /// A revocation list is full (`revocation.max_entries`).
    RevocationListFull = 502, "revocation_list_full";
    /// A revocation is in force in this process but could not be written to
    /// the journal in `state_dir`, so it would not survive a restart.
    RevocationNotPersisted = 510, "revocation_not_persisted";
    // 503 (buffer_too_small) is retired: nothing returned it. 504
    // (null_parameter) belongs to the C ABI alone (`jwtwarden_result`).
    // Neither number is ever reused here: see `ErrorKind::RETIRED_CODES`
    // and `ErrorKind::BOUNDARY_CODES`.

    /// An unexpected internal error.
    Internal = 900, "internal";
    // 901 (panic) belongs to the front ends' boundaries (C ABI, Python),
    // where a panic is caught; never reused here (`BOUNDARY_CODES`).
}

impl ErrorKind {
    /// The codes the front ends' boundaries add to the engine's kinds, as
    /// `(code, name)`: `null_parameter` (504, the C ABI and Go) and `panic`
    /// (901, the C ABI, Go and Python). No kind ever takes these numbers;
    /// the bindings' copies of the list are checked against this one and
    /// [`ErrorKind::ALL`] (`core/tests/error_list.rs`).
    pub const BOUNDARY_CODES: &'static [(u32, &'static str)] = &[(504, "null_parameter"), (901, "panic")];

    /// Retired codes, as `(code, name)`: never returned, never reused.
    pub const RETIRED_CODES: &'static [(u32, &'static str)] = &[(503, "buffer_too_small")];

    /// The stable numeric code.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The broad category, derived from the code range.
    pub fn category(self) -> Category {
        match self.code() {
            100..=199 => Category::Malformed,
            200..=299 => Category::Verification,
            300..=399 => Category::Policy,
            400..=499 => Category::KeysUnavailable,
            500..=599 => Category::Usage,
            _ => Category::Internal,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error: a stable [`ErrorKind`] plus a human-readable message.
///
/// The message is for people and may change between versions; match on
/// [`Error::kind`]. Messages never contain a whole token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// A new error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// The stable kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable numeric code (same as `kind().code()`).
    pub fn code(&self) -> u32 {
        self.kind.code()
    }

    /// The broad category.
    pub fn category(&self) -> Category {
        self.kind.category()
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.kind, self.kind.code(), self.message)
    }
}

impl std::error::Error for Error {}

/// Shorthand for results with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for &k in ErrorKind::ALL {
            assert!(seen.insert(k.code()), "duplicate code {}", k.code());
            assert_eq!(ErrorKind::from_code(k.code()), Some(k));
        }
        assert_eq!(ErrorKind::from_code(0), None);
        for &(code, name) in ErrorKind::BOUNDARY_CODES.iter().chain(ErrorKind::RETIRED_CODES) {
            assert_eq!(
                ErrorKind::from_code(code),
                None,
                "{name} ({code}) is reserved, not a kind"
            );
            assert!(seen.insert(code), "reserved code {code} listed twice");
            assert!(
                ErrorKind::ALL.iter().all(|k| k.as_str() != name),
                "{name} is a kind's name"
            );
        }
    }

    #[test]
    fn categories_follow_ranges() {
        assert_eq!(ErrorKind::InvalidBase64.category(), Category::Malformed);
        assert_eq!(ErrorKind::UnknownKid.category(), Category::Verification);
        assert_eq!(ErrorKind::Revoked.category(), Category::Policy);
        assert_eq!(ErrorKind::KeysStale.category(), Category::KeysUnavailable);
        assert_eq!(ErrorKind::InvalidConfig.category(), Category::Usage);
        assert_eq!(ErrorKind::Internal.category(), Category::Internal);
    }
}
