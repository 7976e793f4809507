//! `jwtwarden status-list`: fetch a Token Status List
//! (draft-ietf-oauth-status-list) and show its header, size and how many
//! entries have each status. The signature is NOT checked: a verifier
//! checks it with the issuer's keys when a token references the list.

use jwtwarden::status::{describe_list_url, status_name, ListReport};
use jwtwarden::{HttpConfig, StatusListConfig};
use serde_json::json;

use crate::Exit;

/// Options of `jwtwarden status-list`.
pub struct StatusListOptions {
    /// The list's URL.
    pub url: String,
    /// Allow `http://`.
    pub allow_http: bool,
    /// Machine-readable output.
    pub json: bool,
}

/// Run `status-list`.
pub fn run(opts: StatusListOptions) -> Exit {
    if opts.url.starts_with("http://") && !opts.allow_http {
        return Exit::usage(format!("{}: plain http:// needs --allow-http", opts.url));
    }
    let http = HttpConfig {
        allow_http: opts.allow_http,
        ..HttpConfig::default()
    };
    let limits = StatusListConfig::default();
    let report = match describe_list_url(&http, &opts.url, limits.max_token_bytes, limits.max_inflated_bytes) {
        Ok(r) => r,
        Err(e) => {
            crate::logging::eprint_line(&format!("jwtwarden: {}: {e}", opts.url));
            return if e.kind() == jwtwarden::ErrorKind::TokenTooLarge {
                Exit::Failed
            } else {
                Exit::Unavailable
            };
        }
    };
    if opts.json {
        let out = json!({
            "url": opts.url,
            "verified": false,
            "header": report.header,
            "claims": report.claims,
            "bits": report.bits,
            "entries": report.entries,
            "token_bytes": report.token_bytes,
            "inflated_bytes": report.inflated_bytes,
            "counts": report.counts.iter().map(|(v, n)| json!({"status": v, "name": status_name(*v), "count": n})).collect::<Vec<_>>(),
            "cache_control": report.cache_control,
        });
        println!(
            "{}",
            crate::safe::json(serde_json::to_string_pretty(&out).expect("JSON serializes"))
        );
    } else {
        print_human(&opts.url, &report);
    }
    Exit::Ok
}

/// Everything shown came from the list's server: escaped (`crate::safe`).
fn print_human(url: &str, r: &ListReport) {
    use crate::safe::{json_value, text};
    println!("status list {}", text(url));
    println!("  (signature NOT checked: a verifier checks it with the issuer's keys)");
    println!(
        "header      alg {}  kid {}  typ {}",
        text(r.header["alg"].as_str().unwrap_or("?")),
        text(r.header["kid"].as_str().unwrap_or("-")),
        text(r.header["typ"].as_str().unwrap_or("-"))
    );
    for name in ["iss", "sub", "iat", "exp", "ttl"] {
        if let Some(v) = r.claims.get(name) {
            let shown = match (name, v.as_i64()) {
                ("iat" | "exp", Some(secs)) => format!(
                    "{secs} ({})",
                    crate::timefmt::iso_utc(secs).unwrap_or_else(|| "out of range".into())
                ),
                ("ttl", Some(_)) => format!("{v} s"),
                _ => json_value(v),
            };
            println!("{name:<11} {shown}");
        }
    }
    if let Some(cc) = &r.cache_control {
        println!("cache       {}", text(cc));
    }
    println!(
        "size        {} entries of {} bit(s); token {} bytes, inflated {} bytes",
        r.entries, r.bits, r.token_bytes, r.inflated_bytes
    );
    println!("statuses");
    for (v, n) in &r.counts {
        println!("  {v:#04x} {:<22} {n}", status_name(*v));
    }
}
