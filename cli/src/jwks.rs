//! `jwtwarden jwks`: fetch a JWKS the way the verifier would and list the
//! usable keys, the skipped ones (with why), and the cache lifetime.
//!
//! Uses the core's own description of an issuer's keys
//! ([`jwtwarden::describe_issuer_keys`]): the same key source, fetcher, key
//! filter and TTL rules, so what it shows is what a verifier with the same
//! configuration gets.

use std::path::PathBuf;

use jwtwarden::{
    describe_issuer_keys, describe_jwks_url, HttpConfig, IssuerConfig, Key, KeyFamily, KeyReport, Problem,
    RefreshConfig,
};
use serde_json::{json, Value};

use crate::Exit;

/// Options of `jwtwarden jwks`.
pub struct JwksOptions {
    /// Configuration file; then `target` is an issuer name (or all issuers).
    pub config: Option<PathBuf>,
    /// A JWKS URL (without `--config`) or an issuer (with it).
    pub target: Option<String>,
    /// Allow `http://` (URL mode).
    pub allow_http: bool,
    /// Machine-readable output.
    pub json: bool,
}

/// What to describe: one JWKS URL, or configured issuers.
enum Plan {
    Url(HttpConfig, String),
    Issuers(HttpConfig, Vec<IssuerConfig>),
}

/// One issuer's (or URL's) report, with the refresh settings its TTL came from.
struct Report {
    keys: KeyReport,
    refresh: RefreshConfig,
}

/// Run `jwks`.
pub fn run(opts: JwksOptions) -> Exit {
    let reports = match plan(&opts).and_then(describe) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if opts.json {
        let out: Vec<Value> = reports.iter().map(report_json).collect();
        let out = if out.len() == 1 {
            out[0].clone()
        } else {
            Value::Array(out)
        };
        println!(
            "{}",
            crate::safe::json(serde_json::to_string_pretty(&out).expect("JSON serializes"))
        );
    } else {
        for (i, r) in reports.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print_human(r);
        }
    }
    let problems: Vec<_> = reports.iter().filter_map(|r| r.keys.problem.as_ref()).collect();
    if problems.iter().any(|p| matches!(p, Problem::FetchFailed(_))) {
        Exit::Unavailable
    } else if reports.iter().any(|r| r.keys.keys.is_empty()) {
        Exit::Failed
    } else {
        Exit::Ok
    }
}

fn describe(plan: Plan) -> Result<Vec<Report>, Exit> {
    let usage = |e: jwtwarden::Error| Exit::usage(e.message());
    match plan {
        Plan::Url(http, url) => {
            let keys = describe_jwks_url(&http, &url).map_err(|e| {
                let hint = if url.starts_with("http://") && !http.allow_http {
                    " (add --allow-http for a plain-HTTP test endpoint)"
                } else {
                    ""
                };
                Exit::usage(format!("{}{hint}", e.message()))
            })?;
            // Defaults of a newly configured issuer: the same TTL rules.
            let refresh = IssuerConfig::new(url.clone(), url).refresh;
            Ok(vec![Report { keys, refresh }])
        }
        Plan::Issuers(http, issuers) => issuers
            .into_iter()
            .map(|i| {
                let keys = describe_issuer_keys(&http, &i).map_err(usage)?;
                Ok(Report {
                    keys,
                    refresh: i.refresh,
                })
            })
            .collect(),
    }
}

fn plan(opts: &JwksOptions) -> Result<Plan, Exit> {
    let Some(path) = &opts.config else {
        let Some(url) = &opts.target else {
            return Err(Exit::usage("give a JWKS URL, or --config FILE [ISSUER]"));
        };
        let http = HttpConfig {
            allow_http: opts.allow_http,
            ..HttpConfig::default()
        };
        return Ok(Plan::Url(http, url.clone()));
    };
    let mut config = jwtwarden::Config::from_path(path).map_err(|e| Exit::usage(e.message()))?;
    if opts.allow_http {
        config.http.allow_http = true;
    }
    let selected: Vec<IssuerConfig> = match &opts.target {
        None => config.issuers.clone(),
        Some(name) => {
            let found: Vec<_> = config.issuers.iter().filter(|i| &i.issuer == name).cloned().collect();
            if found.is_empty() {
                let names: Vec<_> = config.issuers.iter().map(|i| i.issuer.as_str()).collect();
                return Err(Exit::usage(format!(
                    "issuer {name:?} is not in {} (configured: {})",
                    path.display(),
                    names.join(", ")
                )));
            }
            found
        }
    };
    Ok(Plan::Issuers(config.http, selected))
}

fn size(k: &Key) -> String {
    match k.family {
        KeyFamily::Rsa => format!("{} bits", k.bits),
        KeyFamily::EcP256 => "P-256".into(),
        KeyFamily::EcP384 => "P-384".into(),
        KeyFamily::Ed25519 => "Ed25519".into(),
        KeyFamily::Hmac => format!("{} bits", k.bits),
    }
}

fn ttl_rule(r: &Report) -> String {
    let rf = &r.refresh;
    let Some(cache) = &r.keys.cache else {
        return String::new();
    };
    let ttl = cache.ttl_secs;
    let from = match cache.max_age_secs {
        Some(m) if m == ttl => format!("from the response ({m} s)"),
        Some(m) => format!(
            "response says {m} s, clamped to [{}, {}] s (refresh.min_ttl_secs / max_ttl_secs)",
            rf.min_ttl_secs, rf.max_ttl_secs
        ),
        None => format!(
            "no max-age/Expires: refresh.default_ttl_secs {} s within [{}, {}] s",
            rf.default_ttl_secs, rf.min_ttl_secs, rf.max_ttl_secs
        ),
    };
    let early = ((0.9 - rf.jitter) * 100.0).round() as u64;
    format!("{ttl} s, {from}; refreshed at {early}-90 % of it")
}

fn report_json(r: &Report) -> Value {
    let k = &r.keys;
    let cache = k.cache.clone().unwrap_or_default();
    json!({
        "issuer": k.issuer,
        "url": k.url,
        "keys": k.keys.iter().map(|k| json!({
            "kid": k.kid.as_deref(),
            "kty": k.kty,
            "alg": k.alg.map(|a| a.as_str()),
            "size": size(k),
            "bits": k.bits,
            "thumbprint": k.thumbprint,
        })).collect::<Vec<_>>(),
        "skipped": k.skipped.iter().map(|s| json!({"kid": s.kid, "reason": s.reason})).collect::<Vec<_>>(),
        "cache": {
            "cache_control": cache.cache_control,
            "max_age_secs": cache.max_age_secs,
            "etag": cache.etag,
            "last_modified": cache.last_modified,
            "ttl_secs": k.cache.as_ref().map(|c| c.ttl_secs),
            "min_ttl_secs": r.refresh.min_ttl_secs,
            "max_ttl_secs": r.refresh.max_ttl_secs,
            "default_ttl_secs": r.refresh.default_ttl_secs,
        },
        "error": k.problem.as_ref().map(|p| p.to_string()),
    })
}

/// Headers, kids and reasons came from the JWKS server: escaped (`crate::safe`).
fn print_human(r: &Report) {
    use crate::safe::text;
    let k = &r.keys;
    match (&k.issuer, &k.url) {
        (Some(i), Some(u)) => println!("issuer {}\nJWKS   {}", text(i), text(u)),
        (Some(i), None) => println!("issuer {} (static keys)", text(i)),
        (None, Some(u)) => println!("JWKS   {}", text(u)),
        (None, None) => {}
    }
    if let Some(cache) = &k.cache {
        println!(
            "cache  Cache-Control: {}",
            text(cache.cache_control.as_deref().unwrap_or("(none)"))
        );
        if let Some(e) = &cache.etag {
            println!("       ETag: {}", text(e));
        }
        if let Some(lm) = &cache.last_modified {
            println!("       Last-Modified: {}", text(lm));
        }
        println!("TTL    {}", ttl_rule(r));
    }
    // A failed fetch has no keys to list: saying "0 usable keys" would read
    // as an empty JWKS.
    if !matches!(k.problem, Some(Problem::FetchFailed(_))) {
        println!("\nusable keys ({})", k.keys.len());
    }
    if !k.keys.is_empty() {
        let kid_w = k
            .keys
            .iter()
            .map(|k| text(k.kid.as_deref().unwrap_or("-")).len())
            .max()
            .unwrap_or(3)
            .max(3);
        println!(
            "  {:<kid_w$}  {:<4}  {:<6}  {:<9}  THUMBPRINT (RFC 7638, SHA-256)",
            "KID", "KTY", "ALG", "SIZE"
        );
        for key in &k.keys {
            println!(
                "  {:<kid_w$}  {:<4}  {:<6}  {:<9}  {}",
                text(key.kid.as_deref().unwrap_or("-")),
                key.kty,
                key.alg.map_or("-", |a| a.as_str()),
                size(key),
                key.thumbprint
            );
        }
    }
    if !k.skipped.is_empty() {
        println!("\nskipped keys ({})", k.skipped.len());
        for s in &k.skipped {
            println!(
                "  {:<12}  {}",
                text(s.kid.as_deref().unwrap_or("(no kid)")),
                text(&s.reason)
            );
        }
    }
    if let Some(e) = &k.problem {
        println!("\nerror  {}", text(&e.to_string()));
    }
}
