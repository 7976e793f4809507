//! [`Revoker`]: revocation without a verifier, for operator tools.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::Result;
use crate::revocation::{Propagation, Revocation};
use crate::trust::Trust;

/// The revocation side of a configuration — its journal (`state_dir`) and
/// its fleet feed (`revocation.redis`) — without keys or verification: what
/// `jwtwarden revoke` uses, so an incident responder can revoke from a shell
/// without fetching anyone's keys.
///
/// It publishes but does not subscribe. A revocation it cannot publish
/// ([`Propagation::Pending`]) stays in the journal, and the next process
/// that starts on that `state_dir` with the feed reachable publishes it.
pub struct Revoker {
    trust: Arc<Trust>,
}

impl Revoker {
    /// Open the journal (replaying it) and set up the feed; connects to
    /// nothing until a revocation is made.
    pub fn new(config: Config) -> Result<Revoker> {
        Revoker::with_clock(config, Arc::new(SystemClock))
    }

    /// As [`new`](Revoker::new), reading time from `clock`.
    pub fn with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Revoker> {
        config.validate()?;
        Ok(Revoker {
            trust: Arc::new(Trust::new(&config, clock, Vec::new())?),
        })
    }

    /// As [`Verifier::revoke_jti`](crate::Verifier::revoke_jti).
    pub fn revoke_jti(&self, issuer: &str, jti: &str, expires_at_secs: Option<u64>) -> Result<Propagation> {
        self.trust.revoke(self.trust.jti_record(issuer, jti, expires_at_secs))
    }

    /// As [`Verifier::revoke_subject`](crate::Verifier::revoke_subject).
    pub fn revoke_subject(&self, issuer: &str, sub: &str, issued_before_secs: u64) -> Result<Propagation> {
        self.trust
            .revoke(self.trust.subject_record(issuer, sub, issued_before_secs))
    }

    /// As [`Verifier::revoke_kid`](crate::Verifier::revoke_kid).
    pub fn revoke_kid(&self, issuer: &str, kid: &str) -> Result<Propagation> {
        self.trust.revoke(self.trust.kid_record(issuer, kid))
    }

    /// The live revocations of the journal (and of this revoker's calls).
    pub fn local_revocations(&self) -> Vec<Revocation> {
        self.trust.live_revocations(self.trust.clock.now_ms())
    }

    /// The live revocations the fleet's Redis holds. `invalid_config`
    /// without `revocation.redis`; `revocations_stale` if Redis cannot be
    /// read.
    pub fn fleet_revocations(&self) -> Result<Vec<Revocation>> {
        self.trust.fleet_revocations()
    }

    /// Whether a fleet feed is configured.
    pub fn has_feed(&self) -> bool {
        self.trust.feed.is_some()
    }
}
