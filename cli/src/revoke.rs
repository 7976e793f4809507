//! `jwtwarden revoke` and `jwtwarden revocations`: operator revocation from
//! a shell, through the same journal and fleet feed as every verifier of
//! the configuration (`jwtwarden::Revoker`). Nothing here fetches keys.

use std::path::PathBuf;

use jwtwarden::{Propagation, Revocation, Revoker};
use serde_json::json;

use crate::Exit;

/// What to revoke.
pub enum Target {
    /// One token by `jti`, kept until `exp` if given.
    Jti { jti: String, exp: Option<u64> },
    /// A subject's tokens issued before a time (seconds).
    Subject { sub: String, before: u64 },
    /// A key, for `revocation.kid_revocation_secs`.
    Kid { kid: String },
}

/// `jwtwarden revoke`.
pub struct RevokeOptions {
    /// The configuration file.
    pub config: PathBuf,
    /// The configured issuer, or `*`.
    pub issuer: String,
    /// What to revoke.
    pub target: Target,
}

fn revoker(config: &PathBuf) -> Result<Revoker, Exit> {
    let config = jwtwarden::Config::from_path(config).map_err(|e| Exit::usage(e.message()))?;
    Revoker::new(config).map_err(|e| Exit::usage(e.message()))
}

/// What a revocation made here reaches, and when, for the message.
fn reaches(state_dir: Option<&std::path::Path>, p: Propagation) -> String {
    let local = state_dir.map(|d| {
        format!(
            "running processes sharing state_dir {} within about 1 s (those with background_refresh on), \
             and every process started on it later",
            d.display()
        )
    });
    match (p, local) {
        (Propagation::Fleet, Some(l)) => format!("every process on the fleet feed now; {l}"),
        (Propagation::Fleet, None) => "every process on the fleet feed now".into(),
        (Propagation::Pending, Some(l)) => format!("NOT the fleet yet (Redis unreachable); {l}"),
        (Propagation::Pending, None) => "NOT the fleet yet (Redis unreachable)".into(),
        (Propagation::Local, Some(l)) => format!("{l}; no fleet feed: nothing beyond this state_dir"),
        (Propagation::Local, None) => "nothing".into(),
    }
}

/// Revoke; print one JSON line saying what, how far it reached
/// (`propagation`) and which running processes it reaches when (`reaches`).
/// Exit 0 when in force (fleet-wide when a feed is configured; without one,
/// in the processes sharing `state_dir`, which apply the journal's new
/// records within about a second), 3 when not yet fleet-wide ("pending":
/// Redis unreachable; the journal keeps it), 2 on a usage error, including
/// a configuration with neither `state_dir` nor a feed (the revocation
/// would reach nobody).
pub fn run_revoke(opts: RevokeOptions) -> Exit {
    let state_dir = match jwtwarden::Config::from_path(&opts.config) {
        Ok(c) if c.state_dir.is_none() && c.revocation.redis.is_none() => {
            return Exit::usage(
                "the configuration has neither state_dir nor revocation.redis: a revocation made here \
                 would reach no other process and end with this command",
            )
        }
        Ok(c) => c.state_dir,
        Err(e) => return Exit::usage(e.message()),
    };
    let r = match revoker(&opts.config) {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    let iss = opts.issuer.as_str();
    let (kind, value, result) = match &opts.target {
        Target::Jti { jti, exp } => ("jti", jti, r.revoke_jti(iss, jti, *exp)),
        Target::Subject { sub, before } => ("subject", sub, r.revoke_subject(iss, sub, *before)),
        Target::Kid { kid } => ("kid", kid, r.revoke_kid(iss, kid)),
    };
    match result {
        Ok(p) => {
            println!(
                "{}",
                crate::safe::json_value(
                    &json!({"ok": true, "kind": kind, "issuer": iss, "value": value, "propagation": p.as_str(),
                       "reaches": reaches(state_dir.as_deref(), p)})
                )
            );
            if p == Propagation::Pending {
                crate::logging::eprint_line(
                    "jwtwarden: warning: Redis unreachable: the revocation is NOT YET FLEET-WIDE \
                     (kept in the state_dir journal; the next process started on it publishes it)",
                );
                return Exit::Unavailable;
            }
            Exit::Ok
        }
        Err(e) => {
            println!(
                "{}",
                crate::safe::json_value(
                    &json!({"ok": false, "error": e.kind().as_str(), "code": e.code(), "message": e.message()})
                )
            );
            Exit::Usage
        }
    }
}

/// `jwtwarden revocations`: every live revocation the fleet holds (Redis),
/// or, without a feed, the journal's; one JSON line each.
pub fn run_list(config: PathBuf) -> Exit {
    let r = match revoker(&config) {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    let (source, list) = if r.has_feed() {
        match r.fleet_revocations() {
            Ok(list) => ("fleet", list),
            Err(e) => {
                crate::logging::eprint_line(&format!("jwtwarden: error: {}", e.message()));
                return Exit::Unavailable;
            }
        }
    } else {
        ("journal", r.local_revocations())
    };
    let mut list: Vec<Revocation> = list;
    list.sort_by(|a, b| (&a.issuer, a.kind.as_str(), &a.value).cmp(&(&b.issuer, b.kind.as_str(), &b.value)));
    list.dedup_by(|a, b| a.issuer == b.issuer && a.kind == b.kind && a.value == b.value);
    for rev in &list {
        println!(
            "{}",
            crate::safe::json_value(&json!({
                "source": source, "kind": rev.kind.as_str(), "issuer": rev.issuer, "value": rev.value,
                "issued_before": rev.issued_before, "until_ms": rev.until_ms,
            }))
        );
    }
    Exit::Ok
}
