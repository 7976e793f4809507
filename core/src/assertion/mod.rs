//! Signed verification assertions: trust handed on explicitly.
//!
//! The edge (`jwtwarden serve`, a web-server module) verifies the client's
//! token and [`mint::Minter`] mints a short-lived compact JWS for the
//! upstream saying what was verified, how (fresh or from the cache, when,
//! under which key, against which revocation state) and for which request
//! (the upstream's audience, the method and the normalised path). A service
//! behind configures the edge as an issuer (see [`verify::edge_issuer`]) and
//! checks assertions with [`verify::Inheritance`], which adds the request
//! binding, a `jti` replay window and the `fresh` rule to the ordinary
//! verify path. The contract is in `docs/trust-handoff.md`.

pub mod mint;
pub mod verify;

/// The JOSE header `typ` of an assertion (RFC 7515 §4.1.9, RFC 8725 §3.11
/// explicit typing): a service that also accepts ordinary access tokens
/// from some issuer can never take an assertion for one, nor the reverse,
/// because each side requires its own `typ`.
pub const ASSERTION_TYP: &str = "jwtwarden-assertion+jwt";

/// Default assertion lifetime, in seconds.
pub const DEFAULT_LIFETIME_SECS: u64 = 30;

/// The request an assertion is bound to.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The HTTP method, compared exactly (`GET`, `POST`, …).
    pub method: &'a str,
    /// The request target as received (query and fragment are dropped, the
    /// path normalised as the HTTP decision normalises it).
    pub path: &'a str,
}

pub use mint::{AudienceSecretsConfig, Minter, MinterConfig, SecretKeyConfig, SigningKeyConfig};
pub use verify::{edge_issuer, Inheritance, Inherited, ReplayGuard};
