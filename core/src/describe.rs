//! Fetch and describe an issuer's keys exactly as a verifier would take them:
//! the same key source, fetcher (limits, one deadline for discovery and the
//! JWKS), key filter and TTL rules. For diagnostics such as the CLI's
//! `jwtwarden jwks`; a verifier's own keys are [`crate::Verifier::issuer_keys`].

use std::time::Instant;

use crate::config::{HttpConfig, IssuerConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::{Fetched, HttpClient};
use crate::keys::{parse_jwks, Key, SkippedKey};
use crate::source::KeySource;

/// What fetching one issuer's (or one URL's) JWKS found.
#[derive(Debug)]
pub struct KeyReport {
    /// The issuer, when described from a configuration.
    pub issuer: Option<String>,
    /// The JWKS URL fetched (for discovery, the one discovery named).
    pub url: Option<String>,
    /// Keys a verifier would use.
    pub keys: Vec<Key>,
    /// Keys a verifier would skip, with the reason.
    pub skipped: Vec<SkippedKey>,
    /// The response's cache headers and the TTL a verifier would use
    /// (fetched sources only).
    pub cache: Option<CacheInfo>,
    /// Why the report is incomplete, if it is.
    pub problem: Option<Problem>,
}

/// Cache headers of a JWKS response and the TTL they give.
#[derive(Clone, Debug, Default)]
pub struct CacheInfo {
    /// The raw `Cache-Control` header.
    pub cache_control: Option<String>,
    /// The lifetime the headers give, in seconds, before clamping.
    pub max_age_secs: Option<u64>,
    /// The `ETag` header.
    pub etag: Option<String>,
    /// The `Last-Modified` header.
    pub last_modified: Option<String>,
    /// The TTL a verifier would use: `max_age_secs` (or the default)
    /// clamped by the issuer's refresh settings.
    pub ttl_secs: u64,
}

/// Why a report has no (or no usable) keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The JWKS (or discovery document) could not be fetched.
    FetchFailed(String),
    /// The document is not a JWKS (not JSON, no `keys` array, unreadable file).
    BadDocument(String),
    /// The document holds no usable key: a verifier would refuse it and keep
    /// its previous keys.
    NoUsableKey,
    /// The issuer has no JWKS source, only local HMAC keys.
    NoSource,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::FetchFailed(e) | Problem::BadDocument(e) => f.write_str(e),
            Problem::NoUsableKey => {
                f.write_str("no usable key: a verifier would refuse this set and keep its previous keys")
            }
            Problem::NoSource => f.write_str("no JWKS source: this issuer uses only local hmac_keys"),
        }
    }
}

/// Describe the keys of a configured issuer. Errors only when `http` is
/// unusable (for example an unreadable CA bundle); every fetch or document
/// failure is reported in [`KeyReport::problem`].
pub fn describe_issuer_keys(http: &HttpConfig, issuer: &IssuerConfig) -> Result<KeyReport> {
    let client = HttpClient::new(http)?;
    let mut report = KeyReport::new(Some(issuer.issuer.clone()));
    let deadline = client.deadline();
    let body = match KeySource::from_config(issuer) {
        KeySource::Url(url) => report.fetch(&client, issuer, &url, deadline),
        KeySource::Discovery => match client.discover_until(&issuer.issuer, deadline) {
            Ok(found) => report.fetch(&client, issuer, &found.jwks_uri, deadline),
            Err(e) => Err(Problem::FetchFailed(e.message)),
        },
        KeySource::Inline(body) => Ok(body),
        KeySource::File(path) => {
            std::fs::read(&path).map_err(|e| Problem::BadDocument(format!("reading {}: {e}", path.display())))
        }
        KeySource::LocalOnly => Err(Problem::NoSource),
    };
    match body {
        Ok(body) => report.parse(&body, issuer),
        Err(problem) => report.problem = Some(problem),
    }
    Ok(report)
}

/// Describe the JWKS at `url` as a newly configured issuer (every default)
/// would take it. Errors when the URL is refused by the scheme policy
/// (`http://` without `http.allow_http`) or `http` is unusable.
pub fn describe_jwks_url(http: &HttpConfig, url: &str) -> Result<KeyReport> {
    let client = HttpClient::new(http)?;
    client
        .check_url(url)
        .map_err(|e| Error::new(ErrorKind::InvalidArgument, e))?;
    let mut issuer = IssuerConfig::new(url, url);
    issuer.allow_any_audience = true;
    let mut report = KeyReport::new(None);
    match report.fetch(&client, &issuer, url, client.deadline()) {
        Ok(body) => report.parse(&body, &issuer),
        Err(problem) => report.problem = Some(problem),
    }
    Ok(report)
}

impl KeyReport {
    fn new(issuer: Option<String>) -> KeyReport {
        KeyReport {
            issuer,
            url: None,
            keys: Vec::new(),
            skipped: Vec::new(),
            cache: None,
            problem: None,
        }
    }

    fn fetch(
        &mut self,
        client: &HttpClient,
        issuer: &IssuerConfig,
        url: &str,
        deadline: Instant,
    ) -> std::result::Result<Vec<u8>, Problem> {
        self.url = Some(url.to_string());
        match client.get_until(url, None, false, deadline) {
            Ok(Fetched::Body {
                body,
                validators,
                max_age_secs,
                cache_control,
            }) => {
                self.cache = Some(CacheInfo {
                    cache_control,
                    max_age_secs,
                    etag: validators.etag,
                    last_modified: validators.last_modified,
                    ttl_secs: issuer.refresh.ttl_secs(max_age_secs),
                });
                Ok(body)
            }
            Ok(Fetched::NotModified { .. }) => Err(Problem::FetchFailed(format!(
                "GET {url}: unexpected 304 to an unconditional request"
            ))),
            Err(e) => Err(Problem::FetchFailed(e.message)),
        }
    }

    fn parse(&mut self, body: &[u8], issuer: &IssuerConfig) {
        match parse_jwks(body, &issuer.algorithms) {
            Ok((keys, skipped)) => {
                self.keys = keys;
                self.skipped = skipped;
                if self.keys.is_empty() {
                    self.problem = Some(Problem::NoUsableKey);
                }
            }
            Err(e) => self.problem = Some(Problem::BadDocument(e)),
        }
    }
}
