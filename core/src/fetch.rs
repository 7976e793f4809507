//! Fetching JWKS and discovery documents over HTTP(S), with the limits of
//! DESIGN "Fetch limits": HTTPS only unless allowed, connect and total
//! timeouts, a response size cap, same-host redirects only, an optional CA
//! bundle, conditional GET, and the response's cache lifetime.
//!
//! URLs come only from configuration or from the configured issuer's
//! discovery document, never from a token.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ureq::http::{StatusCode, Uri};
use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig, TlsProvider};
use ureq::Agent;

use crate::config::HttpConfig;
use crate::error::{Error, ErrorKind, Result};

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

/// A configured HTTP client. Cheap to share.
#[derive(Clone)]
pub struct HttpClient {
    agent: Agent,
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
            agent,
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

    /// GET `url`. With `validators`, a conditional GET; with `no_cache`,
    /// asks intermediaries for a fresh copy. Errors are human-readable.
    pub fn get(
        &self,
        url: &str,
        validators: Option<&Validators>,
        no_cache: bool,
    ) -> std::result::Result<Fetched, String> {
        let mut uri = self.check_url(url)?;
        let origin = origin_of(&uri);
        for _ in 0..=self.cfg.max_redirects {
            let mut req = self.agent.get(uri.clone()).header("Accept", "application/json");
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
            let mut resp = req.call().map_err(|e| format!("GET {uri}: {e}"))?;
            let status = resp.status();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let location = header("location").ok_or_else(|| format!("GET {uri}: {status} without Location"))?;
                let next = resolve(&uri, &location)?;
                if origin_of(&next) != origin {
                    return Err(format!(
                        "GET {uri}: redirect to another host or scheme ({}) refused",
                        origin_of(&next)
                    ));
                }
                uri = next;
                continue;
            }
            let max_age_secs = cache_lifetime(
                header("cache-control").as_deref(),
                header("expires").as_deref(),
                header("date").as_deref(),
            );
            if status == StatusCode::NOT_MODIFIED {
                return Ok(Fetched::NotModified { max_age_secs });
            }
            if status != StatusCode::OK {
                return Err(format!("GET {uri}: HTTP {}", status.as_u16()));
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
                    ureq::Error::BodyExceedsLimit(limit) => {
                        format!("GET {uri}: response larger than {limit} bytes (http.max_response_bytes)")
                    }
                    other => format!("GET {uri}: reading body: {other}"),
                })?;
            return Ok(Fetched::Body {
                body,
                validators,
                max_age_secs,
                cache_control,
            });
        }
        Err(format!("GET {url}: more than {} redirects", self.cfg.max_redirects))
    }
}

impl HttpClient {
    /// The `jwks_uri` from `issuer`'s OIDC discovery document
    /// (`{issuer}/.well-known/openid-configuration`). The document must name
    /// the same issuer, and its `jwks_uri` must pass the scheme policy.
    pub fn discover_jwks_uri(&self, issuer: &str) -> std::result::Result<String, String> {
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let Fetched::Body { body, .. } = self.get(&url, None, false)? else {
            return Err(format!("{url}: unexpected 304"));
        };
        let doc: serde_json::Value = serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))?;
        if doc.get("issuer").and_then(|v| v.as_str()) != Some(issuer) {
            return Err(format!("{url}: discovery document is for another issuer"));
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("{url}: no jwks_uri"))?;
        self.check_url(jwks_uri)?;
        Ok(jwks_uri.to_owned())
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

/// Lifetime in seconds from `Cache-Control: max-age` (preferred) or
/// `Expires` (relative to `Date`, else to now). `no-store`/`no-cache` give 0,
/// which the caller clamps up to its minimum.
pub fn cache_lifetime(cache_control: Option<&str>, expires: Option<&str>, date: Option<&str>) -> Option<u64> {
    if let Some(cc) = cache_control {
        for directive in cc.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                return Some(0);
            }
            if let Some(v) = lower.strip_prefix("max-age=") {
                if let Ok(secs) = v.trim_matches('"').parse::<u64>() {
                    return Some(secs);
                }
            }
        }
    }
    let expires = httpdate::parse_http_date(expires?).ok()?;
    let base = date
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .unwrap_or_else(SystemTime::now);
    Some(expires.duration_since(base).map(|d| d.as_secs()).unwrap_or(0))
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
        assert_eq!(cache_lifetime(None, Some("garbage"), None), None);
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
