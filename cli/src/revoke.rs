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

/// Revoke; print one JSON line saying what and how far it reached. Exit 0
/// when in force (fleet-wide when a feed is configured), 3 when only local
/// for now ("pending": Redis unreachable; the journal keeps it), 2 on a
/// usage error.
pub fn run_revoke(opts: RevokeOptions) -> Exit {
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
                json!({"ok": true, "kind": kind, "issuer": iss, "value": value, "propagation": p.as_str()})
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
                json!({"ok": false, "error": e.kind().as_str(), "code": e.code(), "message": e.message()})
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
            json!({
                "source": source, "kind": rev.kind.as_str(), "issuer": rev.issuer, "value": rev.value,
                "issued_before": rev.issued_before, "until_ms": rev.until_ms,
            })
        );
    }
    Exit::Ok
}
