//! `jwtwarden verify`: one JSON line per token.

use std::io::BufRead;
use std::path::PathBuf;

use jwtwarden::{Verifier, VerifyOptions};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{decode, timefmt, Exit};

/// Options of `jwtwarden verify`.
pub struct VerifyOptionsCli {
    /// The configuration file.
    pub config: PathBuf,
    /// Tokens; empty means one per line on stdin.
    pub tokens: Vec<String>,
    /// Verify for this configured issuer only.
    pub issuer: Option<String>,
    /// Skip the verification cache.
    pub fresh: bool,
}

/// Run `verify`. Prints one line per token to stdout.
pub fn run(opts: VerifyOptionsCli) -> Exit {
    let config = match jwtwarden::Config::from_path(&opts.config) {
        Ok(c) => c,
        Err(e) => return Exit::usage(e.message()),
    };
    let verifier = match Verifier::new(config) {
        Ok(v) => v,
        Err(e) => return Exit::usage(format!("cannot build the verifier: {e}")),
    };
    if let Some(iss) = &opts.issuer {
        if !verifier.issuers().contains(iss) {
            return Exit::usage(format!(
                "--issuer {iss:?} is not in the configuration (configured: {})",
                verifier.issuers().join(", ")
            ));
        }
    }
    let options = VerifyOptions {
        issuer: opts.issuer.as_deref(),
        fresh: opts.fresh,
    };

    let mut seen = 0usize;
    let mut rejected = 0usize;
    let mut undecided = 0usize;
    let mut check = |token: &str| {
        let token = decode::clean(token);
        if token.is_empty() {
            return;
        }
        let (decision, line) = verify_one(&verifier, token, &options);
        match decision {
            Decision::Verified => {}
            Decision::Rejected => rejected += 1,
            Decision::Undecided => undecided += 1,
        }
        seen += 1;
        println!("{}", crate::safe::json(line));
    };
    if opts.tokens.is_empty() {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line {
                Ok(l) => check(&l),
                Err(e) => return Exit::usage(format!("reading tokens from stdin: {e}")),
            }
        }
    } else {
        opts.tokens.iter().for_each(|t| check(t));
    }
    if seen == 0 {
        return Exit::usage("no token given (pass tokens as arguments or one per line on stdin)");
    }
    if undecided > 0 {
        log::warn!("{undecided} of {seen} token(s) could not be decided: keys unavailable");
        Exit::Unavailable
    } else if rejected > 0 {
        log::info!("{rejected} of {seen} token(s) rejected");
        Exit::Failed
    } else {
        Exit::Ok
    }
}

/// A verified token's line.
#[derive(Serialize)]
struct Accepted<'a> {
    ok: bool,
    fingerprint: String,
    issuer: &'a str,
    kid: Option<&'a str>,
    alg: &'static str,
    cached: bool,
    verified_at: String,
    verified_at_ms: u64,
    expires_at: u64,
    sub: Option<&'a Value>,
    claims: &'a Map<String, Value>,
}

/// A rejected token's line. `claimed_*` are read from the token without
/// verification, to help find the cause.
#[derive(Serialize)]
struct Rejected<'a> {
    ok: bool,
    fingerprint: String,
    kind: &'static str,
    code: u32,
    category: &'static str,
    message: &'a str,
    claimed_issuer: Option<&'a str>,
    claimed_kid: Option<&'a str>,
}

/// What became of one token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It verified.
    Verified,
    /// It was rejected: malformed, not authentic, or denied by policy.
    Rejected,
    /// Neither: the issuer's keys are unavailable (an outage, not a bad token).
    Undecided,
}

/// The decision for one token, and its JSON line.
pub fn verify_one(verifier: &Verifier, token: &str, options: &VerifyOptions<'_>) -> (Decision, String) {
    let fingerprint = jwtwarden::fingerprint(token.as_bytes());
    let line = match verifier.verify_with(token, options) {
        Ok(v) => serde_json::to_string(&Accepted {
            ok: true,
            fingerprint,
            issuer: v.issuer(),
            kid: v.kid(),
            alg: v.alg().as_str(),
            cached: v.cached(),
            verified_at: timefmt::iso_utc_ms(v.verified_at_ms()),
            verified_at_ms: v.verified_at_ms(),
            expires_at: v.expires_at(),
            sub: v.claims().get("sub"),
            claims: v.claims(),
        }),
        Err(e) => {
            log::debug!("token {fingerprint} rejected: {e}");
            let d = decode::decode(token);
            let line = serde_json::to_string(&Rejected {
                ok: false,
                fingerprint,
                kind: e.kind().as_str(),
                code: e.code(),
                category: e.category().as_str(),
                message: e.message(),
                claimed_issuer: d.claim_str("iss"),
                claimed_kid: d.header_str("kid"),
            });
            let decision = if e.category() == jwtwarden::Category::KeysUnavailable {
                Decision::Undecided
            } else {
                Decision::Rejected
            };
            return (decision, line.expect("a rejection serializes"));
        }
    };
    (Decision::Verified, line.expect("a decision serializes"))
}
