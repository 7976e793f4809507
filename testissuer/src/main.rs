//! `jwtwarden-testissuer`: runs a [`TestIssuer`] with the admin API for C/Go/Python tests.
//!
//! Prints one JSON line `{"url": ..., "jwks_uri": ..., "kid": ...}` to stdout once the
//! server is listening, then serves until stdin reaches EOF (unless `--ignore-stdin`),
//! SIGTERM/SIGINT, or `POST /admin/shutdown`.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jwtwarden_testissuer::{Alg, IssuerOptions, TestIssuer};

const USAGE: &str = "usage: jwtwarden-testissuer [--port N] [--alg ALG]... [--ignore-stdin]

  --port N         port on 127.0.0.1 (default 0: any free port)
  --alg ALG        initial key algorithm, repeatable (default RS256);
                   RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA
  --ignore-stdin   do not exit when stdin reaches EOF

Prints {\"url\", \"jwks_uri\", \"kid\"} as one JSON line, then serves until stdin EOF,
SIGTERM/SIGINT or POST /admin/shutdown. Admin API: see the crate documentation.";

static SIGNALLED: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

#[cfg(unix)]
fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, handler as libc::sighandler_t) };
    }
}

#[cfg(not(unix))]
fn install_signal_handlers() {}

struct Args {
    opts: IssuerOptions,
    ignore_stdin: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut opts = IssuerOptions {
        admin: true,
        ..IssuerOptions::default()
    };
    let mut ignore_stdin = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "--port" => {
                let v = value()?;
                opts.port = v.parse().map_err(|_| format!("bad --port {v:?}"))?;
            }
            "--alg" => opts.algs.push(value()?.parse::<Alg>().map_err(|e| e.to_string())?),
            "--ignore-stdin" => ignore_stdin = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if opts.algs.is_empty() {
        opts.algs.push(Alg::RS256);
    }
    Ok(Args { opts, ignore_stdin })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("jwtwarden-testissuer: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    install_signal_handlers();
    let issuer = match TestIssuer::start_with(&args.opts) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("jwtwarden-testissuer: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let line = serde_json::json!({
        "url": issuer.url(),
        "jwks_uri": issuer.jwks_uri(),
        "kid": issuer.first_kid(),
    });
    {
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return ExitCode::FAILURE;
        }
    }

    let stdin_closed = Arc::new(AtomicBool::new(false));
    if !args.ignore_stdin {
        let flag = stdin_closed.clone();
        std::thread::spawn(move || {
            let mut sink = [0u8; 4096];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            flag.store(true, Ordering::SeqCst);
        });
    }
    while !(SIGNALLED.load(Ordering::SeqCst) || stdin_closed.load(Ordering::SeqCst) || issuer.shutdown_requested()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Give the admin shutdown request a moment to receive its answer.
    std::thread::sleep(Duration::from_millis(50));
    drop(issuer);
    ExitCode::SUCCESS
}
