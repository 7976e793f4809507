//! `jwtwarden jwks`: fetch a JWKS the way the verifier would and list the
//! usable keys, the skipped ones (with why), and the cache lifetime.
//!
//! Uses the core's own fetcher and key filter (`fetch::HttpClient`,
//! `keys::parse_jwks`, `RefreshConfig::ttl_secs`), so what it shows is what
//! a verifier with the same configuration gets.

use std::path::PathBuf;

use jwtwarden::fetch::{Fetched, HttpClient};
use jwtwarden::keys::{parse_jwks, Key, SkippedKey};
use jwtwarden::token::{Alg, KeyFamily};
use jwtwarden::{HttpConfig, IssuerConfig, RefreshConfig};
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

/// Where one issuer's keys come from.
enum Source {
    Url(String),
    Discovery(String),
    Inline(Value),
    File(PathBuf),
    None,
}

struct Target {
    issuer: Option<String>,
    source: Source,
    algorithms: Vec<Alg>,
    refresh: RefreshConfig,
}

/// One issuer's (or URL's) report.
struct Report {
    issuer: Option<String>,
    url: Option<String>,
    keys: Vec<Key>,
    skipped: Vec<SkippedKey>,
    cache_control: Option<String>,
    max_age_secs: Option<u64>,
    etag: Option<String>,
    last_modified: Option<String>,
    ttl_secs: Option<u64>,
    refresh: RefreshConfig,
    error: Option<String>,
    /// The error is a failed fetch (network, status, discovery), not the document.
    fetch_failed: bool,
}

/// Run `jwks`.
pub fn run(opts: JwksOptions) -> Exit {
    let (http, targets) = match plan(&opts) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let client = match HttpClient::new(&http) {
        Ok(c) => c,
        Err(e) => return Exit::usage(e.message()),
    };
    let reports: Vec<Report> = targets.into_iter().map(|t| fetch(&client, t)).collect();
    if opts.json {
        let out: Vec<Value> = reports.iter().map(report_json).collect();
        let out = if out.len() == 1 {
            out[0].clone()
        } else {
            Value::Array(out)
        };
        println!("{}", serde_json::to_string_pretty(&out).expect("JSON serializes"));
    } else {
        for (i, r) in reports.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print_human(r);
        }
    }
    if reports.iter().any(|r| r.fetch_failed) {
        Exit::Unavailable
    } else if reports.iter().any(|r| r.keys.is_empty()) {
        Exit::Failed
    } else {
        Exit::Ok
    }
}

fn plan(opts: &JwksOptions) -> Result<(HttpConfig, Vec<Target>), Exit> {
    let Some(path) = &opts.config else {
        let Some(url) = &opts.target else {
            return Err(Exit::usage("give a JWKS URL, or --config FILE [ISSUER]"));
        };
        let http = HttpConfig {
            allow_http: opts.allow_http,
            ..HttpConfig::default()
        };
        let client = HttpClient::new(&http).map_err(|e| Exit::usage(e.message()))?;
        if let Err(e) = client.check_url(url) {
            let hint = if url.starts_with("http://") && !opts.allow_http {
                " (add --allow-http for a plain-HTTP test endpoint)"
            } else {
                ""
            };
            return Err(Exit::usage(format!("{e}{hint}")));
        }
        // Defaults of a newly configured issuer: the same algorithms and TTL rules.
        let defaults = IssuerConfig::new(url.clone(), url.clone());
        return Ok((
            http,
            vec![Target {
                issuer: None,
                source: Source::Url(url.clone()),
                algorithms: defaults.algorithms,
                refresh: defaults.refresh,
            }],
        ));
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
    let targets = selected
        .into_iter()
        .map(|i| Target {
            source: if let Some(u) = &i.jwks_uri {
                Source::Url(u.clone())
            } else if i.discovery {
                Source::Discovery(i.issuer.clone())
            } else if let Some(j) = &i.jwks {
                Source::Inline(j.clone())
            } else if let Some(f) = &i.jwks_file {
                Source::File(f.clone())
            } else {
                Source::None
            },
            issuer: Some(i.issuer),
            algorithms: i.algorithms,
            refresh: i.refresh,
        })
        .collect();
    Ok((config.http, targets))
}

fn fetch(client: &HttpClient, t: Target) -> Report {
    let mut r = Report {
        issuer: t.issuer.clone(),
        url: None,
        keys: Vec::new(),
        skipped: Vec::new(),
        cache_control: None,
        max_age_secs: None,
        etag: None,
        last_modified: None,
        ttl_secs: None,
        refresh: t.refresh.clone(),
        error: None,
        fetch_failed: false,
    };
    let body = match &t.source {
        Source::Url(u) => fetch_url(client, u, &mut r).inspect_err(|_| r.fetch_failed = true),
        Source::Discovery(issuer) => client
            .discover_jwks_uri(issuer)
            .and_then(|u| fetch_url(client, &u, &mut r))
            .inspect_err(|_| r.fetch_failed = true),
        Source::Inline(v) => Ok(serde_json::to_vec(v).expect("JSON serializes")),
        Source::File(p) => std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display())),
        Source::None => Err("no JWKS source: this issuer uses only local hmac_keys".into()),
    };
    match body.and_then(|b| parse_jwks(&b, &t.algorithms)) {
        Ok((keys, skipped)) => {
            r.keys = keys;
            r.skipped = skipped;
            if r.keys.is_empty() {
                r.error = Some("no usable key: a verifier would refuse this set and keep its previous keys".into());
            }
        }
        Err(e) => r.error = Some(e),
    }
    r
}

fn fetch_url(client: &HttpClient, url: &str, r: &mut Report) -> Result<Vec<u8>, String> {
    r.url = Some(url.to_string());
    match client.get(url, None, false)? {
        Fetched::Body {
            body,
            validators,
            max_age_secs,
            cache_control,
        } => {
            r.cache_control = cache_control;
            r.max_age_secs = max_age_secs;
            r.etag = validators.etag;
            r.last_modified = validators.last_modified;
            r.ttl_secs = Some(r.refresh.ttl_secs(max_age_secs));
            Ok(body)
        }
        Fetched::NotModified { .. } => Err(format!("GET {url}: unexpected 304 to an unconditional request")),
    }
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
    let Some(ttl) = r.ttl_secs else {
        return String::new();
    };
    let from = match r.max_age_secs {
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
    json!({
        "issuer": r.issuer,
        "url": r.url,
        "keys": r.keys.iter().map(|k| json!({
            "kid": k.kid,
            "kty": k.kty,
            "alg": k.alg.map(|a| a.as_str()),
            "size": size(k),
            "bits": k.bits,
            "thumbprint": k.thumbprint,
        })).collect::<Vec<_>>(),
        "skipped": r.skipped.iter().map(|s| json!({"kid": s.kid, "reason": s.reason})).collect::<Vec<_>>(),
        "cache": {
            "cache_control": r.cache_control,
            "max_age_secs": r.max_age_secs,
            "etag": r.etag,
            "last_modified": r.last_modified,
            "ttl_secs": r.ttl_secs,
            "min_ttl_secs": r.refresh.min_ttl_secs,
            "max_ttl_secs": r.refresh.max_ttl_secs,
            "default_ttl_secs": r.refresh.default_ttl_secs,
        },
        "error": r.error,
    })
}

fn print_human(r: &Report) {
    match (&r.issuer, &r.url) {
        (Some(i), Some(u)) => println!("issuer {i}\nJWKS   {u}"),
        (Some(i), None) => println!("issuer {i} (static keys)"),
        (None, Some(u)) => println!("JWKS   {u}"),
        (None, None) => {}
    }
    if r.url.is_some() && (r.ttl_secs.is_some() || r.error.is_none()) {
        println!(
            "cache  Cache-Control: {}",
            r.cache_control.as_deref().unwrap_or("(none)")
        );
        if let Some(e) = &r.etag {
            println!("       ETag: {e}");
        }
        if let Some(lm) = &r.last_modified {
            println!("       Last-Modified: {lm}");
        }
        if r.ttl_secs.is_some() {
            println!("TTL    {}", ttl_rule(r));
        }
    }
    // A failed fetch has no keys to list: saying "0 usable keys" would read
    // as an empty JWKS.
    if !r.fetch_failed {
        println!("\nusable keys ({})", r.keys.len());
    }
    if !r.keys.is_empty() {
        let kid_w = r
            .keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("-").len())
            .max()
            .unwrap_or(3)
            .max(3);
        println!(
            "  {:<kid_w$}  {:<4}  {:<6}  {:<9}  THUMBPRINT (RFC 7638, SHA-256)",
            "KID", "KTY", "ALG", "SIZE"
        );
        for k in &r.keys {
            println!(
                "  {:<kid_w$}  {:<4}  {:<6}  {:<9}  {}",
                k.kid.as_deref().unwrap_or("-"),
                k.kty,
                k.alg.map_or("-", |a| a.as_str()),
                size(k),
                k.thumbprint
            );
        }
    }
    if !r.skipped.is_empty() {
        println!("\nskipped keys ({})", r.skipped.len());
        for s in &r.skipped {
            println!("  {:<12}  {}", s.kid.as_deref().unwrap_or("(no kid)"), s.reason);
        }
    }
    if let Some(e) = &r.error {
        println!("\nerror  {e}");
    }
}
