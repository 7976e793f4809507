//! The `jwtwarden` command: verify tokens, inspect them, look at an
//! issuer's keys, and run the demo that exercises the whole library.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Args, Parser, Subcommand};

mod decode;
mod demo;
mod inspect;
mod jwks;
mod logging;
mod revoke;
mod safe;
mod serve;
mod status_list;
mod timefmt;
mod verify;

/// How the process exits. The numbers are part of the command's interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: everything verified / every guarantee held.
    Ok,
    /// 1: a token was rejected, a demo guarantee did not hold, or a JWKS has
    /// no usable key.
    Failed,
    /// 2: usage or configuration error (bad flags, unreadable or invalid config).
    Usage,
    /// 3: could not decide or could not run: an issuer's keys are
    /// unavailable (so a token was neither accepted nor rejected), a JWKS
    /// fetch failed, the demo could not start.
    Unavailable,
}

impl Exit {
    /// Report a usage/configuration error on stderr and return [`Exit::Usage`].
    pub fn usage(msg: impl AsRef<str>) -> Exit {
        logging::eprint_line(&format!("jwtwarden: error: {}", msg.as_ref()));
        Exit::Usage
    }

    fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Unavailable => 3,
        }
    }
}

const EXIT_CODES: &str = "\
Exit status (every command):
  0  success (all tokens verified; every demo guarantee held; usable keys found)
  1  a token was rejected / a demo guarantee did not hold / no usable key
  2  usage or configuration error
  3  could not decide or could not run: keys unavailable (an outage, not a
     bad token), a JWKS fetch failed, the demo could not start";

const EXAMPLES: &str = "\
Examples:
  jwtwarden demo                                  # the whole story in ~10 s, no network
  jwtwarden verify --config jwtwarden.toml \"$TOKEN\"
  jwtwarden inspect \"$TOKEN\"                      # decode WITHOUT verifying
  jwtwarden jwks https://idp.example.com/.well-known/jwks.json
  jwtwarden status-list https://idp.example.com/statuslists/1
  jwtwarden serve --config jwtwarden.toml          # forward auth for nginx, Envoy, Traefik, Caddy
  jwtwarden revoke --config jwtwarden.toml --issuer https://idp.example.com --jti \"$JTI\"";

/// Verify JWTs against issuers' JWKS, inspect tokens, and see the cache and
/// key refresh at work.
#[derive(Parser)]
#[command(name = "jwtwarden", version, after_help = format!("{EXAMPLES}\n\n{EXIT_CODES}"))]
struct Cli {
    /// More log output on stderr (-v info, -vv debug). Tokens are never
    /// logged, only their fingerprints.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Verify(VerifyArgs),
    Inspect(InspectArgs),
    Jwks(JwksArgs),
    Demo(DemoArgs),
    Serve(ServeArgs),
    Revoke(RevokeArgs),
    Revocations(RevocationsArgs),
    StatusList(StatusListArgs),
}

/// Revoke a token (by jti), a subject's older tokens, or a key, for one
/// issuer (or `*` for every issuer): in force in every verifier of the
/// configuration's fleet (`revocation.redis`) and kept in its journal
/// (`state_dir`). Fetches no keys.
///
/// Prints one JSON line with how far the revocation reached: `fleet`
/// (written to Redis and published), `local` (no feed configured: the
/// journal only; running processes sharing the `state_dir` apply it within
/// about a second), or `pending` (Redis unreachable: NOT YET fleet-wide;
/// exit 3); `reaches` says which running processes it reaches, and when.
/// A configuration with neither `state_dir` nor a feed is refused (exit 2):
/// the revocation would reach no other process.
#[derive(Args)]
#[command(
    group(clap::ArgGroup::new("what").required(true).args(["jti", "sub", "kid"])),
    after_help = "\
Examples:
  jwtwarden revoke --config jwtwarden.toml --issuer https://idp.example.com --jti 5f1c... --exp 1767225600
  jwtwarden revoke --config jwtwarden.toml --issuer '*' --sub alice --before now
  jwtwarden revoke --config jwtwarden.toml --issuer https://idp.example.com --kid 2024-10-key

Exit status: 0 in force (fleet-wide with a feed; without one, in the processes sharing state_dir \
within about 1 s); 2 usage or configuration error (also: neither state_dir nor a feed); 3 not yet \
fleet-wide (Redis unreachable)."
)]
struct RevokeArgs {
    /// Configuration file (the one the verifiers of the fleet use).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// The configured issuer, exactly; `*` for every issuer. A jti or sub is
    /// unique only within its issuer.
    #[arg(long, value_name = "ISSUER")]
    issuer: String,
    /// Revoke the token with this jti.
    #[arg(long, value_name = "JTI")]
    jti: Option<String>,
    /// The revoked token's exp (Unix seconds), so the entry expires with it.
    #[arg(long, value_name = "SECS", requires = "jti")]
    exp: Option<u64>,
    /// Revoke this subject's tokens issued before --before.
    #[arg(long, value_name = "SUB", requires = "before")]
    sub: Option<String>,
    /// Cut-off for --sub: Unix seconds, or `now`.
    #[arg(long, value_name = "SECS|now", requires = "sub")]
    before: Option<String>,
    /// Revoke this key of the issuer, for revocation.kid_revocation_secs (default 30 days).
    #[arg(long, value_name = "KID")]
    kid: Option<String>,
}

/// List the live revocations the fleet holds (Redis), or without a feed the
/// journal's; one JSON line each.
#[derive(Args)]
struct RevocationsArgs {
    /// Configuration file.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
}

/// Fetch an IETF Token Status List and show its header, size and counts by
/// status (VALID, INVALID, SUSPENDED, application-specific).
///
/// The list's signature is NOT checked here: a verifier checks it with the
/// issuer's keys, and fetches a list only if its URL is under the issuer's
/// `status_list.allowed_uris` (docs/status-list.md).
#[derive(Args)]
#[command(after_help = "\
Examples:
  jwtwarden status-list https://idp.example.com/statuslists/1
  jwtwarden status-list --json https://idp.example.com/statuslists/1 | jq .counts

Exit status: 0 decoded, 1 not a status list, 3 fetch failed.")]
struct StatusListArgs {
    /// Allow plain http:// (loopback test issuers).
    #[arg(long)]
    allow_http: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// The list's URL (a token's `status.status_list.uri`).
    #[arg(value_name = "URL")]
    url: String,
}

/// Verify tokens; print one JSON line per token with the decision.
///
/// A verified token's line has `"ok": true`, its issuer, kid, alg, whether
/// the result came from the cache, when its signature was checked, and its
/// claims. A rejected token's line has `"ok": false`, the error kind, its
/// stable numeric code and category, a message, and the issuer and kid the
/// token claims (unverified). Tokens are read from the arguments, or one per
/// line from stdin when none is given (blank lines skipped; a leading
/// `Bearer ` is ignored).
#[derive(Args)]
#[command(after_help = "\
Examples:
  jwtwarden verify --config jwtwarden.json \"$TOKEN\"
  jwtwarden verify --config jwtwarden.toml < tokens.txt
  jwtwarden verify --config jwtwarden.toml --issuer https://idp.example.com \"$TOKEN\" | jq .ok

Exit status: 0 all verified; 1 at least one rejected; 2 usage or configuration error; 3 at least one \
could not be decided because an issuer's keys are unavailable (an outage, not a bad token: this wins \
over 1).")]
struct VerifyArgs {
    /// Configuration file, JSON or TOML (chosen by extension, else both are
    /// tried); the format is the one every jwtwarden front end reads.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Only accept tokens of this configured issuer (instead of choosing by
    /// the token's `iss`).
    #[arg(long, value_name = "ISSUER")]
    issuer: Option<String>,
    /// Check signatures even for tokens in the verification cache.
    #[arg(long)]
    fresh: bool,
    /// Tokens to verify; none = one per line on stdin.
    #[arg(value_name = "TOKEN")]
    tokens: Vec<String>,
}

/// Decode a token WITHOUT verifying it: header, claims, and exp/nbf/iat in
/// human time.
///
/// Works on tokens jwtwarden would reject (alg none, bad encoding, expired,
/// missing segments). The output is marked UNVERIFIED: nothing in it has
/// been checked.
#[derive(Args)]
#[command(after_help = "\
Examples:
  jwtwarden inspect eyJhbGciOiJSUzI1NiIs...
  echo \"$TOKEN\" | jwtwarden inspect
  jwtwarden inspect --json \"$TOKEN\" | jq .times.exp

Exit status: 0 header and claims decoded, 1 not decodable, 2 no token given.")]
struct InspectArgs {
    /// Machine-readable output (still marked `"verified": false`).
    #[arg(long)]
    json: bool,
    /// The token; none = read it from stdin.
    #[arg(value_name = "TOKEN")]
    token: Option<String>,
}

/// Fetch a JWKS as the verifier would, and list usable and skipped keys.
///
/// Shows each usable key (kid, kty, alg, size or curve, RFC 7638
/// thumbprint), each skipped key with the reason, the response's cache
/// headers and the TTL the verifier would use. With --config, the issuer's
/// own settings apply (allowed algorithms, HTTP limits, TTL clamps); without
/// it, the defaults.
#[derive(Args)]
#[command(after_help = "\
Examples:
  jwtwarden jwks https://idp.example.com/.well-known/jwks.json
  jwtwarden jwks --allow-http http://127.0.0.1:8080/jwks.json
  jwtwarden jwks --config jwtwarden.toml                     # every configured issuer
  jwtwarden jwks --config jwtwarden.toml https://idp.example.com --json

Exit status: 0 usable keys found, 1 a JWKS has no usable key, 2 usage or configuration error, \
3 fetch failed.")]
struct JwksArgs {
    /// Configuration file (JSON or TOML); TARGET then names an issuer.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Allow plain http:// (loopback test issuers).
    #[arg(long)]
    allow_http: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// A JWKS URL, or with --config a configured issuer (default: all).
    #[arg(value_name = "URL|ISSUER")]
    target: Option<String>,
}

/// Run the whole story in-process: a local issuer, service tokens, key
/// rotation, revocation, an unknown-kid storm and an issuer outage.
///
/// No network and no arguments needed. Several threads verify a pool of
/// service tokens (RS256, ES256, EdDSA) with skewed popularity while the
/// issuer rotates a key, a token is revoked, 10,000 tokens with random kids
/// arrive, the old key is retired and the issuer goes down. A live display
/// (stderr, only on a terminal) shows throughput, cache hit rate and
/// fetches; the summary checks every guarantee and the exit status says
/// whether all held.
#[derive(Args)]
#[command(after_help = "\
Examples:
  jwtwarden demo
  cargo run --release -p jwtwarden-cli -- demo
  jwtwarden demo --duration 5 --json | jq .guarantees

Exit status: 0 every guarantee held, 1 one did not, 2 usage error, 3 could not start.")]
struct DemoArgs {
    /// Target run time in seconds (the outage phase lasts at least 2.5 s so
    /// keys visibly go stale).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    duration: f64,
    /// Verifying threads.
    #[arg(long, default_value_t = 4, value_name = "N")]
    threads: usize,
    /// Service tokens in the pool.
    #[arg(long, default_value_t = 200, value_name = "N")]
    tokens: usize,
    /// Tokens with random kids in the unknown-kid storm.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    storm: usize,
    /// Print the machine-readable summary (JSON) instead of the table.
    #[arg(long)]
    json: bool,
}

/// Answer forward-auth requests over HTTP (nginx auth_request, Envoy
/// ext_authz, Traefik ForwardAuth, Caddy forward_auth) with the engine.
///
/// The forward-auth endpoint (default `/auth`) reads the bearer token,
/// verifies it and answers 200 with chosen claims as response headers, 401
/// (with `WWW-Authenticate`, RFC 6750) for a missing or rejected token, 400
/// for a malformed `Authorization` header, 403 for missing scopes, and 503
/// with `Retry-After` while an issuer's keys are unavailable. Also serves
/// `/healthz` and `/metrics`. SIGHUP reloads both configuration files
/// (keeping the running ones if they do not load); SIGTERM/SIGINT stop
/// accepting and let requests in flight finish. Prints one JSON line
/// `{"listen": ADDR, "admin": ADDR|null}` on stdout once listening.
/// Guide, proxy configurations and the serve file: docs/serve.md.
#[derive(Args)]
#[command(after_help = "\
Examples:
  jwtwarden serve --config jwtwarden.toml
  jwtwarden serve --config jwtwarden.toml --serve-config serve.toml --listen 127.0.0.1:8400
  kill -HUP $(pidof jwtwarden)          # reload both files

Exit status: 0 stopped by SIGTERM/SIGINT, 2 usage or configuration error, 3 could not start.")]
struct ServeArgs {
    /// Engine configuration file, JSON or TOML: the same file every
    /// jwtwarden front end reads.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Serve configuration file, JSON or TOML (listen address, paths,
    /// claim headers, routes, admin listener); all defaults without it.
    #[arg(long, value_name = "FILE")]
    serve_config: Option<PathBuf>,
    /// Listen address, IP:port or unix:/absolute/path (default 127.0.0.1:8400,
    /// or `listen` of the serve file).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
}

/// What `revoke` was asked to revoke (clap has checked that exactly one of
/// --jti, --sub, --kid is given).
fn revoke_target(a: &RevokeArgs) -> Result<revoke::Target, Exit> {
    if let Some(jti) = &a.jti {
        return Ok(revoke::Target::Jti {
            jti: jti.clone(),
            exp: a.exp,
        });
    }
    if let Some(kid) = &a.kid {
        return Ok(revoke::Target::Kid { kid: kid.clone() });
    }
    let sub = a.sub.clone().unwrap_or_default();
    let before = match a.before.as_deref() {
        Some("now") => timefmt::now_secs() as u64 + 1,
        Some(secs) => secs
            .parse()
            .map_err(|_| Exit::usage("--before must be Unix seconds or `now`"))?,
        None => return Err(Exit::usage("--sub needs --before")),
    };
    Ok(revoke::Target::Subject { sub, before })
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    logging::init(cli.verbose, cli.quiet);
    let exit = match cli.command {
        Command::Verify(a) => verify::run(verify::VerifyOptionsCli {
            config: a.config,
            tokens: a.tokens,
            issuer: a.issuer,
            fresh: a.fresh,
        }),
        Command::Inspect(a) => match a.token.map(Ok).unwrap_or_else(read_stdin) {
            Ok(t) => inspect::run(&t, a.json),
            Err(e) => Exit::usage(e),
        },
        Command::Jwks(a) => jwks::run(jwks::JwksOptions {
            config: a.config,
            target: a.target,
            allow_http: a.allow_http,
            json: a.json,
        }),
        Command::Revoke(a) => match revoke_target(&a) {
            Ok(target) => revoke::run_revoke(revoke::RevokeOptions {
                config: a.config,
                issuer: a.issuer,
                target,
            }),
            Err(exit) => exit,
        },
        Command::Revocations(a) => revoke::run_list(a.config),
        Command::StatusList(a) => status_list::run(status_list::StatusListOptions {
            url: a.url,
            allow_http: a.allow_http,
            json: a.json,
        }),
        Command::Serve(a) => serve::run(serve::ServeOptions {
            config: a.config,
            serve_config: a.serve_config,
            listen: a.listen,
        }),
        Command::Demo(a) => {
            if !(2.0..=120.0).contains(&a.duration) {
                Exit::usage("--duration must be between 2 and 120 seconds")
            } else if a.threads == 0 || a.threads > 64 {
                Exit::usage("--threads must be between 1 and 64")
            } else if !(20..=100_000).contains(&a.tokens) {
                Exit::usage("--tokens must be between 20 and 100000")
            } else if a.storm > 1_000_000 {
                Exit::usage("--storm must be at most 1000000")
            } else {
                demo::run(&demo::DemoOptions {
                    duration: std::time::Duration::from_secs_f64(a.duration),
                    threads: a.threads,
                    tokens: a.tokens,
                    storm: a.storm,
                    json: a.json,
                    quiet: cli.quiet,
                    verbose: cli.verbose,
                })
            }
        }
    };
    ExitCode::from(exit.code())
}

/// Rust ignores SIGPIPE, so writing to a closed pipe (`jwtwarden verify ...
/// | head -1`) makes `println!` panic. Like other Unix tools, let the signal
/// end the process quietly instead.
fn restore_sigpipe() {
    // SAFETY: called first thing in main, before any other thread exists;
    // SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn read_stdin() -> Result<String, String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| format!("reading the token from stdin: {e}"))?;
    // The first non-blank line is the token.
    Ok(s.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().to_string())
}
