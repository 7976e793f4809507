//! Fetching JWKS and discovery documents over HTTP(S), with the limits of
//! DESIGN "Fetch limits": HTTPS only unless allowed, connect and total
//! timeouts, a response size cap, same-host redirects only, an optional CA
//! bundle, conditional GET, and the response's cache lifetime.
//!
//! `http.timeout_ms` bounds a whole fetch, not one request: the caller takes
//! one deadline ([`HttpClient::deadline`]) when a refresh starts and every
//! request of it (discovery, the JWKS, each redirect hop) gets only the time
//! left until then.
//!
//! URLs come only from configuration or from the configured issuer's
//! discovery document, never from a token.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ureq::http::{StatusCode, Uri};
use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig, TlsProvider};
use ureq::Agent;

use crate::config::HttpConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::fork::PerProcess;

/// ETag / Last-Modified of the last good response, for conditional GET.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    /// The `ETag` header.
    pub etag: Option<String>,
    /// The `Last-Modified` header.
    pub last_modified: Option<String>,
}

/// What a successful fetch returned.
#[derive(Debug)]
pub enum Fetched {
    /// `304 Not Modified`: the last good document is still current.
    NotModified {
        /// Lifetime from the response's cache headers, in seconds.
        max_age_secs: Option<u64>,
    },
    /// A new document.
    Body {
        /// The body, at most `max_response_bytes`.
        body: Vec<u8>,
        /// Validators for the next conditional GET.
        validators: Validators,
        /// Lifetime from the response's cache headers, in seconds.
        max_age_secs: Option<u64>,
        /// The raw `Cache-Control` header, for diagnostics.
        cache_control: Option<String>,
    },
}

/// Why a fetch failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchError {
    /// Human-readable; names the URL.
    pub message: String,
    /// The `Retry-After` of a `429` or `503` answer, in seconds from when it
    /// was sent, if it had a valid one.
    pub retry_after_secs: Option<u64>,
}

impl From<String> for FetchError {
    fn from(message: String) -> FetchError {
        FetchError {
            message,
            retry_after_secs: None,
        }
    }
}

impl From<&str> for FetchError {
    fn from(message: &str) -> FetchError {
        FetchError::from(message.to_owned())
    }
}

impl From<FetchError> for String {
    fn from(e: FetchError) -> String {
        e.message
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What OIDC discovery found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovered {
    /// The document's `jwks_uri`, checked against the scheme policy.
    pub jwks_uri: String,
    /// Lifetime of the discovery document from its cache headers, in seconds.
    pub max_age_secs: Option<u64>,
}

/// What one response in a fetch means.
enum Answer {
    /// Follow this redirect (same origin only).
    Redirect(Uri),
    /// The fetch's result.
    Done(Fetched),
}

/// A configured HTTP client. Cheap to share.
#[derive(Clone)]
pub struct HttpClient {
    /// Its pool of keep-alive connections is this process's own: a forked
    /// child never sends on a socket its parent goes on using (two
    /// processes' requests and responses would interleave on one stream).
    agent: Arc<PerProcess<Agent>>,
    cfg: Arc<HttpConfig>,
}

impl HttpClient {
    /// Build a client from the HTTP configuration.
    pub fn new(cfg: &HttpConfig) -> Result<HttpClient> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(provider);
        if let Some(path) = &cfg.ca_bundle {
            let pem = std::fs::read(path).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!("http.ca_bundle: cannot read {}: {e}", path.display()),
                )
            })?;
            let certs: Vec<_> = parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!("http.ca_bundle: no certificate in {}", path.display()),
                ));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        let agent: Agent = Agent::config_builder()
            .timeout_connect(Some(Duration::from_millis(cfg.connect_timeout_ms)))
            .timeout_global(Some(Duration::from_millis(cfg.timeout_ms)))
            // Redirects are followed by hand below, so another host is refused.
            .max_redirects(0)
            .http_status_as_error(false)
            .user_agent(concat!("jwtwarden/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build()
            .into();
        Ok(HttpClient {
            agent: Arc::new(PerProcess::new(agent)),
            cfg: Arc::new(cfg.clone()),
        })
    }

    /// Check that a URL may be fetched at all (scheme policy).
    pub fn check_url(&self, url: &str) -> std::result::Result<Uri, String> {
        let uri: Uri = url.parse().map_err(|_| format!("invalid URL {url:?}"))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if self.cfg.allow_http => {}
            _ => return Err(format!("refusing {url:?}: only https:// is allowed")),
        }
        if uri.host().is_none() {
            return Err(format!("URL {url:?} has no host"));
        }
        Ok(uri)
    }

    /// The deadline of a fetch that starts now: `http.timeout_ms` from now.
    /// Take it once per refresh and pass it to every request of that refresh.
    pub fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.cfg.timeout_ms)
    }

    /// GET `url`, following same-host redirects, all of it done by
    /// `deadline`. With `validators`, a conditional GET; with `no_cache`,
    /// asks intermediaries for a fresh copy. A `304` to a request that sent
    /// no validator is an error: it confirms nothing.
    pub fn get_until(
        &self,
        url: &str,
        validators: Option<&Validators>,
        no_cache: bool,
        deadline: Instant,
    ) -> std::result::Result<Fetched, FetchError> {
        let mut uri = self.check_url(url)?;
        let origin = origin_of(&uri);
        let sent_validator = validators.is_some_and(|v| v.etag.is_some() || v.last_modified.is_some());
        for _ in 0..=self.cfg.max_redirects {
            // ureq's own global timeout restarts with each request, so each
            // hop gets only what is left of the one budget for the fetch.
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timed_out(&uri));
            }
            let resp = self.send(&uri, validators, no_cache, left)?;
            match self.answer(&uri, resp, sent_validator)? {
                Answer::Done(fetched) => return Ok(fetched),
                Answer::Redirect(next) => {
                    if origin_of(&next) != origin {
                        return Err(format!(
                            "GET {uri}: redirect to another host or scheme ({}) refused",
                            origin_of(&next)
                        )
                        .into());
                    }
                    uri = next;
                }
            }
        }
        Err(format!("GET {url}: more than {} redirects", self.cfg.max_redirects).into())
    }

    /// One GET, with the validators and `no-cache` asked for, within `left`.
    fn send(
        &self,
        uri: &Uri,
        validators: Option<&Validators>,
        no_cache: bool,
        left: std::time::Duration,
    ) -> std::result::Result<ureq::http::Response<ureq::Body>, FetchError> {
        let agent = self
            .agent
            .get(|inherited| Agent::new_with_config(inherited.config().clone()));
        let mut req = agent
            .get(uri.clone())
            .config()
            .timeout_global(Some(left))
            .build()
            .header("Accept", "application/json");
        if no_cache {
            req = req.header("Cache-Control", "no-cache");
        }
        if let Some(v) = validators {
            if let Some(etag) = &v.etag {
                req = req.header("If-None-Match", etag);
            }
            if let Some(lm) = &v.last_modified {
                req = req.header("If-Modified-Since", lm);
            }
        }
        req.call().map_err(|e| match e {
            ureq::Error::Timeout(_) => self.timed_out(uri),
            e => FetchError::from(format!("GET {uri}: {e}")),
        })
    }

    /// What one response means: a redirect to follow, a 304, a body, or an
    /// error (with the server's `Retry-After` on 429 and 503).
    fn answer(
        &self,
        uri: &Uri,
        mut resp: ureq::http::Response<ureq::Body>,
        sent_validator: bool,
    ) -> std::result::Result<Answer, FetchError> {
        let status = resp.status();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
            let location = header("location").ok_or_else(|| format!("GET {uri}: {status} without Location"))?;
            return Ok(Answer::Redirect(resolve(uri, &location)?));
        }
        let max_age_secs = cache_lifetime(
            header("cache-control").as_deref(),
            header("expires").as_deref(),
            header("date").as_deref(),
        );
        if status == StatusCode::NOT_MODIFIED {
            if !sent_validator {
                return Err(format!("GET {uri}: 304 Not Modified to a request without validators").into());
            }
            return Ok(Answer::Done(Fetched::NotModified { max_age_secs }));
        }
        if status != StatusCode::OK {
            return Err(status_error(uri, status, header("retry-after"), header("date")));
        }
        let validators = Validators {
            etag: header("etag"),
            last_modified: header("last-modified"),
        };
        let cache_control = header("cache-control");
        let body = resp
            .body_mut()
            .with_config()
            .limit(self.cfg.max_response_bytes)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(limit) => FetchError::from(format!(
                    "GET {uri}: response larger than {limit} bytes (http.max_response_bytes)"
                )),
                ureq::Error::Timeout(_) => self.timed_out(uri),
                other => FetchError::from(format!("GET {uri}: reading body: {other}")),
            })?;
        Ok(Answer::Done(Fetched::Body {
            body,
            validators,
            max_age_secs,
            cache_control,
        }))
    }

    fn timed_out(&self, uri: &Uri) -> FetchError {
        FetchError::from(format!(
            "GET {uri}: timed out: http.timeout_ms ({} ms) bounds the whole fetch, redirects and discovery included",
            self.cfg.timeout_ms
        ))
    }
}

impl HttpClient {
    /// Fetch `issuer`'s OIDC discovery document
    /// (`{issuer}/.well-known/openid-configuration`) by `deadline`. The
    /// document must name the same issuer, and its `jwks_uri` must pass the
    /// scheme policy.
    pub fn discover_until(&self, issuer: &str, deadline: Instant) -> std::result::Result<Discovered, FetchError> {
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let Fetched::Body { body, max_age_secs, .. } = self.get_until(&url, None, false, deadline)? else {
            return Err(format!("{url}: unexpected 304").into());
        };
        let doc: serde_json::Value = serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))?;
        let named = doc.get("issuer").and_then(|v| v.as_str());
        if named != Some(issuer) {
            return Err(format!(
                "{url}: discovery document names issuer {:?}, but the configured issuer is {issuer:?} \
                 (they must be equal, trailing slash included)",
                named.map_or_else(|| "(none)".to_string(), crate::token::truncate)
            )
            .into());
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("{url}: no jwks_uri"))?;
        self.check_url(jwks_uri)?;
        Ok(Discovered {
            jwks_uri: jwks_uri.to_owned(),
            max_age_secs,
        })
    }
}

/// The error for a non-200 answer, with the server's `Retry-After` on 429
/// and 503 (seconds or an HTTP-date, relative to its `Date`).
fn status_error(uri: &Uri, status: StatusCode, retry: Option<String>, date: Option<String>) -> FetchError {
    let retry_after_secs = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            retry.and_then(|v| retry_after(&v, date.as_deref()))
        }
        _ => None,
    };
    let hint = retry_after_secs
        .map(|s| format!(" (Retry-After {s} s)"))
        .unwrap_or_default();
    FetchError {
        message: format!("GET {uri}: HTTP {}{hint}", status.as_u16()),
        retry_after_secs,
    }
}

fn origin_of(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("");
    let host = uri.host().unwrap_or("").to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
    format!("{scheme}://{host}:{port}")
}

fn resolve(base: &Uri, location: &str) -> std::result::Result<Uri, String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location
            .parse()
            .map_err(|_| format!("bad redirect Location {location:?}"));
    }
    if !location.starts_with('/') || location.starts_with("//") {
        return Err(format!("unsupported redirect Location {location:?}"));
    }
    let authority = base.authority().map(|a| a.as_str()).unwrap_or("");
    let scheme = base.scheme_str().unwrap_or("https");
    format!("{scheme}://{authority}{location}")
        .parse()
        .map_err(|_| format!("bad redirect Location {location:?}"))
}

/// Lifetime in seconds from `Cache-Control` or `Expires` (RFC 9111), or
/// `None` when neither says anything (the caller's default applies).
///
/// * `no-store` or `no-cache` anywhere in `Cache-Control` give 0, whatever
///   else it says and in whatever order: the server asked not to reuse it.
/// * Else `max-age`.
/// * Else `Expires`, relative to `Date` (else to now). An `Expires` that is
///   not a valid date (`0` is the common case) means already expired: 0.
///
/// The caller clamps the result up to its minimum TTL.
pub fn cache_lifetime(cache_control: Option<&str>, expires: Option<&str>, date: Option<&str>) -> Option<u64> {
    let directives: Vec<String> = cache_control
        .map(|cc| cc.split(',').map(|d| d.trim().to_ascii_lowercase()).collect())
        .unwrap_or_default();
    if directives
        .iter()
        .any(|d| d == "no-store" || d == "no-cache" || d.starts_with("no-cache="))
    {
        return Some(0);
    }
    let max_age = directives.iter().find_map(|d| {
        let v = d.strip_prefix("max-age")?.trim_start().strip_prefix('=')?;
        v.trim().trim_matches('"').parse::<u64>().ok()
    });
    if max_age.is_some() {
        return max_age;
    }
    let Ok(expires) = httpdate::parse_http_date(expires?.trim()) else {
        return Some(0);
    };
    Some(seconds_after_date(expires, date))
}

/// Seconds from the response's `Date` (else now) until `at`, 0 if past.
fn seconds_after_date(at: SystemTime, date: Option<&str>) -> u64 {
    let base = date
        .and_then(|d| httpdate::parse_http_date(d.trim()).ok())
        .unwrap_or_else(SystemTime::now);
    at.duration_since(base).map(|d| d.as_secs()).unwrap_or(0)
}

/// Seconds to wait from a `Retry-After` value: delta-seconds or an
/// HTTP-date (relative to `Date`, else now). `None` when it is neither.
pub fn retry_after(value: &str, date: Option<&str>) -> Option<u64> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // An absurdly long delta saturates; the caller clamps it anyway.
        return Some(value.parse::<u64>().unwrap_or(u64::MAX));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(seconds_after_date(at, date))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_wins_over_expires() {
        assert_eq!(cache_lifetime(Some("public, max-age=120"), None, None), Some(120));
        assert_eq!(cache_lifetime(Some("no-store"), None, None), Some(0));
        assert_eq!(
            cache_lifetime(
                None,
                Some("Sun, 06 Nov 1994 08:49:37 GMT"),
                Some("Sun, 06 Nov 1994 08:48:37 GMT")
            ),
            Some(60)
        );
        assert_eq!(cache_lifetime(Some("public"), None, None), None);
        assert_eq!(cache_lifetime(None, None, None), None);
    }

    #[test]
    fn no_store_and_no_cache_win_over_max_age_in_any_order() {
        for cc in [
            "max-age=600, no-store",
            "no-store, max-age=600",
            "public, max-age=600, no-cache",
            "No-Cache, max-age=600",
            "max-age=600, no-cache=\"set-cookie\"",
        ] {
            assert_eq!(cache_lifetime(Some(cc), None, None), Some(0), "{cc}");
        }
    }

    #[test]
    fn invalid_or_zero_expires_means_already_expired() {
        // RFC 9111 §5.3: an invalid date, especially "0", is in the past.
        assert_eq!(cache_lifetime(None, Some("0"), None), Some(0));
        assert_eq!(cache_lifetime(None, Some("garbage"), None), Some(0));
        assert_eq!(cache_lifetime(Some("public"), Some("-1"), None), Some(0));
        // max-age still wins over Expires.
        assert_eq!(cache_lifetime(Some("max-age=90"), Some("0"), None), Some(90));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(retry_after("120", None), Some(120));
        assert_eq!(retry_after(" 0 ", None), Some(0));
        assert_eq!(retry_after("99999999999999999999999", None), Some(u64::MAX));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:50:37 GMT", Some("Sun, 06 Nov 1994 08:48:37 GMT")),
            Some(120)
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:40:37 GMT", Some("Sun, 06 Nov 1994 08:48:37 GMT")),
            Some(0),
            "a date in the past: retry now"
        );
        assert_eq!(retry_after("-5", None), None);
        assert_eq!(retry_after("soon", None), None);
        assert_eq!(retry_after("", None), None);
    }

    #[test]
    fn redirects_resolve_and_origins_compare() {
        let base: Uri = "http://127.0.0.1:8080/a".parse().unwrap();
        let same = resolve(&base, "/jwks.json").unwrap();
        assert_eq!(origin_of(&same), origin_of(&base));
        let other = resolve(&base, "http://localhost:8080/jwks.json").unwrap();
        assert_ne!(origin_of(&other), origin_of(&base));
        assert!(resolve(&base, "//evil/x").is_err());
    }

    #[test]
    fn ca_bundle_must_exist_and_hold_a_certificate() {
        let missing = HttpConfig {
            ca_bundle: Some("/nonexistent/ca.pem".into()),
            ..HttpConfig::default()
        };
        let err = HttpClient::new(&missing).err().expect("missing bundle is an error");
        assert!(err.message().contains("http.ca_bundle"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here").unwrap();
        let err = HttpClient::new(&HttpConfig {
            ca_bundle: Some(empty),
            ..HttpConfig::default()
        })
        .err()
        .expect("a bundle without certificates is an error");
        assert!(err.message().contains("no certificate"), "{err}");
    }

    #[test]
    fn scheme_policy() {
        let strict = HttpClient::new(&HttpConfig::default()).unwrap();
        assert!(strict.check_url("http://127.0.0.1/jwks").is_err());
        assert!(strict.check_url("https://idp.example/jwks").is_ok());
        assert!(strict.check_url("file:///etc/passwd").is_err());
    }
}
