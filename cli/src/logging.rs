//! The `log` bridge: core log records go to stderr, one line each, through
//! the progress display when one is drawn so lines do not tear it.
//!
//! Core never logs a whole token (it logs `token::fingerprint`), and neither
//! does this crate.

use std::sync::Mutex;

use indicatif::ProgressBar;
use log::{Level, LevelFilter, Log, Metadata, Record};

static PROGRESS: Mutex<Option<ProgressBar>> = Mutex::new(None);

struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        // Our own crates at the chosen level; dependencies (HTTP, TLS) only
        // for warnings and errors, so `-vv` stays readable.
        m.level() <= log::max_level() && (m.level() <= Level::Warn || m.target().starts_with("jwtwarden"))
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let level = record.level().as_str().to_ascii_lowercase();
            eprint_line(&format!("jwtwarden: {level}: {}", record.args()));
        }
    }

    fn flush(&self) {}
}

/// Install the logger (once per process) at a level from `-q` / `-v` counts:
/// quiet = errors only, 0 = warnings, 1 = info, 2+ = debug.
pub fn init(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => LevelFilter::Error,
        (false, 0) => LevelFilter::Warn,
        (false, 1) => LevelFilter::Info,
        (false, _) => LevelFilter::Debug,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// Route stderr lines through `bar` while it is drawn (`None` to stop).
pub fn set_progress(bar: Option<ProgressBar>) {
    *PROGRESS.lock().unwrap_or_else(|e| e.into_inner()) = bar;
}

/// Print one line to stderr without tearing a progress display. Control
/// characters in it (from a server's answer quoted in an error, say) are
/// shown escaped (`crate::safe`).
pub fn eprint_line(line: &str) {
    let line = &*crate::safe::text(line);
    let bar = PROGRESS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match bar {
        Some(bar) if !bar.is_hidden() => bar.suspend(|| eprintln!("{line}")),
        _ => eprintln!("{line}"),
    }
}
