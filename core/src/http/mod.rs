//! The HTTP decision every front end shares (docs/http.md): which route
//! rules a request gets, where its token is, how a refusal looks on the
//! wire, and which claim headers an accepted token maps to.
//!
//! Layer: front ends. It uses verification ([`Verifier`](crate::Verifier)),
//! trust and primitives; nothing in the core uses it (only the C ABI and
//! `jwtwarden serve`, which are adapters over it).
//!
//! One responsibility per module:
//!
//! * [`path`]: the request path as route rules see it (percent-decoding,
//!   dot segments, `;` parameters, refusals for spellings no reading is
//!   safe for);
//! * [`route`]: per-route rules chosen from the normalised path and the
//!   method;
//! * [`credentials`]: the bearer token of a request (header or cookie),
//!   RFC 6750 §2;
//! * [`refusal`](mod@refusal): the refusal contract (status, `WWW-Authenticate`,
//!   `Retry-After`, `Cache-Control: no-store`, the JSON body);
//! * [`claim_headers`]: verified claims to sanitised header values;
//! * [`mint`]: the verification assertion an allowed request carries
//!   (its header, its audience per route, the signer behind [`Mint`]);
//! * [`decision`]: the policy that ties them together, step by step for an
//!   asynchronous host (serve) or in one call (the C ABI).

pub mod claim_headers;
pub mod credentials;
pub mod decision;
pub mod mint;
pub mod path;
pub mod refusal;
pub mod route;

pub use claim_headers::{header_value, ClaimHeaders, HeaderName};
pub use credentials::TokenSource;
pub use decision::{
    DecideMode, Decision, HeaderFields, HttpPolicy, HttpPolicyConfig, HttpRequest, DEFAULT_RETRY_AFTER_SECS,
};
pub use mint::{Assertion, AssertionPolicyConfig, AssertionRule, Mint, DEFAULT_ASSERTION_HEADER};
pub use path::{normalise, Normalised};
pub use refusal::{refusal, Reason, Refusal};
pub use route::{has_audience, has_scopes, Route, RouteConfig, Routes};
