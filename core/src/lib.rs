//! # jwtwarden
//!
//! Verifies JWTs against issuers' JWKS endpoints, fast, without letting
//! cached trust outlive the truth.
//!
//! ```no_run
//! use jwtwarden::{Config, Verifier};
//!
//! let config = Config::from_json(r#"{
//!   "issuers": [{
//!     "issuer": "https://idp.example.com",
//!     "jwks_uri": "https://idp.example.com/.well-known/jwks.json",
//!     "audiences": ["orders-api"]
//!   }]
//! }"#)?;
//! let verifier = Verifier::new(config)?;
//! # let token = "";
//! match verifier.verify(token) {
//!     Ok(v) => println!("sub={} cached={}", v.claims()["sub"], v.cached()),
//!     Err(e) => println!("rejected: {} (code {}, {})", e.kind(), e.code(), e.category().as_str()),
//! }
//! # Ok::<(), jwtwarden::Error>(())
//! ```
//!
//! The behaviour contract (verification order, cache rules, refresh policy,
//! revocation) is in `docs/design.md`; the configuration reference is [`config`].

pub mod assertion;
mod cache;
mod claims;
pub mod clock;
pub mod config;
mod describe;
mod door;
mod entry;
pub mod error;
mod facts;
mod family;
mod fetch;
mod flight;
mod fork;
pub mod http;
mod issuer;
mod keys;
mod keystore;
pub mod metrics;
mod refresh;
mod refresher;
mod revocation;
mod revoker;
mod safefile;
mod shared_fetch;
mod source;
mod spiffe;
mod spiffe_id;
mod state;
pub mod status;
mod stop;
mod template;
mod token;
mod trust;
mod uri;
mod verified;
mod verifier;

pub use claims::MAX_NUMERIC_DATE_SECS;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    CacheConfig, Config, HttpConfig, IssuerConfig, IssuerKind, RedisFeedConfig, RefreshConfig, RevocationConfig,
    SpiffeConfig, StatusListConfig,
};
pub use describe::{describe_issuer_keys, describe_jwks_url, CacheInfo, KeyReport, Problem};
pub use error::{Category, Error, ErrorKind, Result};
pub use keys::{Key, SkippedKey, MAX_RSA_BITS, MAX_RSA_EXPONENT, MAX_SKIPPED_LISTED, MIN_RSA_BITS};
pub use metrics::{
    FeedState, FeedStats, FetchReason, Health, IssuerStats, MetricsSnapshot, RevocationStats, StatusListStats,
};
pub use revocation::{Propagation, Revocation, RevocationKind, ANY_ISSUER, MAX_REVOCATION_FIELD_BYTES};
pub use revoker::Revoker;
pub use template::TemplateStats;
pub use token::{fingerprint, Alg, KeyFamily};
pub use verified::{Verified, VerifiedToken};
pub use verifier::{IssuerEntry, Verifier, VerifyOptions};

/// The library version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
