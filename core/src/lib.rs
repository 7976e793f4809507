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
//! revocation) is in DESIGN.md; the configuration reference is [`config`].

mod cache;
mod claims;
pub mod clock;
pub mod config;
pub mod error;
pub mod fetch;
mod fork;
mod issuer;
pub mod keys;
pub mod metrics;
mod refresher;
mod revocation;
mod state;
pub mod token;
mod verified;
mod verifier;

pub use claims::MAX_NUMERIC_DATE_SECS;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{CacheConfig, Config, HttpConfig, IssuerConfig, RefreshConfig, RevocationConfig};
pub use error::{Category, Error, ErrorKind, Result};
pub use metrics::{FetchReason, Health, IssuerStats, MetricsSnapshot};
pub use token::Alg;
pub use verified::{Verified, VerifiedToken};
pub use verifier::{Verifier, VerifyOptions};

/// The library version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
