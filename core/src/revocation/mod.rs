//! Operator revocation: what a revocation is, where revocations are held,
//! and how they outlive a restart and reach every process of a fleet.
//!
//! * [`Revocation`] is one record: a `jti`, a subject before a time, or a
//!   key id, always named with its issuer (`"*"` for every issuer). The same
//!   record, as one line of JSON, is what the journal stores, what Redis
//!   holds and what the feed publishes.
//! * `lists` holds the records in memory, issuer-scoped, and answers "is
//!   this token revoked?".
//! * `journal` is the durable copy in `state_dir`, fsynced before a
//!   `revoke_*` call returns, replayed and compacted at start.
//! * `feed` is the fleet copy in Redis: a sorted set of every unexpired
//!   record and a channel that announces each new one.
//!
//! Every record, whatever its source, enters through the verifier's one
//! door for trust changes (`crate::trust`). A record can only add or extend a
//! revocation: nothing here ever removes one before it expires.

pub(crate) mod feed;
pub(crate) mod journal;
mod lists;
pub mod replay;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

pub(crate) use lists::Revocations;

/// The issuer scope that covers every issuer.
pub const ANY_ISSUER: &str = "*";

/// Longest issuer, `jti`, subject or kid a revocation may name, in bytes.
pub const MAX_REVOCATION_FIELD_BYTES: usize = 1024;

/// What a [`Revocation`] covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    /// Every token of the issuer with this `jti`.
    Jti,
    /// The issuer's tokens for this `sub` issued before a time.
    Subject,
    /// The issuer's key with this `kid`, for `revocation.kid_revocation_secs`.
    Kid,
}

impl RevocationKind {
    /// Stable lower-case name: `jti`, `subject` or `kid`.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Jti => "jti",
            RevocationKind::Subject => "subject",
            RevocationKind::Kid => "kid",
        }
    }
}

/// One revocation, as held in memory, in the journal and in Redis.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// What it covers.
    pub kind: RevocationKind,
    /// The issuer it applies to, exactly as configured; `"*"` for every
    /// issuer. A `jti` or `sub` is unique only within its issuer (RFC 7519
    /// §4.1.2, §4.1.7), so a revocation always names one.
    #[serde(rename = "iss")]
    pub issuer: String,
    /// The `jti`, subject or kid.
    pub value: String,
    /// Subject revocations: tokens issued before this time (Unix seconds)
    /// are revoked, tokens without a valid `iat` too.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "before")]
    pub issued_before: Option<u64>,
    /// When the record may be forgotten (Unix ms): once every token it
    /// covers can no longer be accepted (leeway included), or for a kid
    /// `revocation.kid_revocation_secs` after it was made. `None` only in
    /// kid records written by older versions, which had no end: they are
    /// given `kid_revocation_secs` from when they are read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
}

impl Revocation {
    /// Whether the record is still needed at `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.until_ms.is_none_or(|until| now_ms < until)
    }

    /// Checks what any record must satisfy, wherever it came from: non-empty
    /// bounded fields, and a cut-off time for (and only for) subjects.
    pub(crate) fn validate(&self) -> Result<()> {
        let invalid = |m: String| Err(Error::new(ErrorKind::InvalidArgument, m));
        for (name, v) in [("issuer", &self.issuer), (self.kind.as_str(), &self.value)] {
            if v.is_empty() {
                return invalid(format!("{name} must not be empty"));
            }
            if v.len() > MAX_REVOCATION_FIELD_BYTES {
                return invalid(format!(
                    "{name} is {} bytes, limit {MAX_REVOCATION_FIELD_BYTES}",
                    v.len()
                ));
            }
        }
        if (self.kind == RevocationKind::Subject) != self.issued_before.is_some() {
            return invalid("issued_before is required for, and only for, subject revocations".into());
        }
        Ok(())
    }

    /// The record as one line of JSON (no newline inside: serde_json escapes
    /// control characters).
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a revocation always serializes")
    }
}

/// Where a revocation came from, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// A `revoke_*` call in this process.
    Local,
    /// Replayed from the journal at start.
    Journal,
    /// Received from the fleet feed (Redis), made by another process or
    /// read back from the fleet's set.
    Feed,
}

/// How far a revocation has reached when `revoke_*` returns. In every case
/// it is already in force in this process (and in its journal, with
/// `state_dir`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Propagation {
    /// No fleet feed is configured: this process only.
    Local = 0,
    /// Written to the fleet's Redis and published to every subscriber.
    Fleet = 1,
    /// A fleet feed is configured but Redis could not be reached: **not yet
    /// fleet-wide**. It is published in the background once Redis is back.
    Pending = 2,
}

impl Propagation {
    /// Stable lower-case name: `local`, `fleet` or `pending`.
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Local => "local",
            Propagation::Fleet => "fleet",
            Propagation::Pending => "pending",
        }
    }
}

impl std::fmt::Display for Propagation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
