//! Issuer-published status: the IETF OAuth Token Status List
//! (draft-ietf-oauth-status-list).
//!
//! A token carrying `status: {status_list: {idx, uri}}` is checked, after
//! its own signature and claims passed, against the Status List Token at
//! `uri`:
//!
//! * `uri` is fetched only if it is under one of the issuer's
//!   `status_list.allowed_uris` (same scheme, host and port; path under the
//!   prefix's path). Otherwise nothing is fetched and the token is rejected
//!   (`status_uri_not_allowed`): a token whose status cannot be checked is
//!   not valid.
//! * The list must be signed by the same issuer's keys (`token.rs`), and is
//!   refreshed and failed closed like keys (`store.rs`).
//! * Status 0 (VALID) passes; 1 (INVALID) is `revoked`; 2 (SUSPENDED)
//!   `suspended`; others `status_not_valid` unless configured valid.
//! * A cached result keeps its `StatusRef`; every hit re-reads the
//!   status, so a token suspended at the issuer stops being served from the
//!   moment the list is refreshed.

pub mod list;
pub(crate) mod store;
pub(crate) mod token;

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::{Config, IssuerConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::issuer::{Env, Issuer};
pub(crate) use store::Store;

pub use crate::uri::{allowed, UriPrefix};
pub use list::StatusList;
pub use token::TYP as STATUS_LIST_TYP;

/// Where a cached result's status is read: list `list` (a slot of its
/// issuer's store) at index `idx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StatusRef {
    pub list: u32,
    pub idx: u32,
}

impl StatusRef {
    /// Both halves in one `u64` (the cache keeps it so).
    pub(crate) fn pack(self) -> u64 {
        (u64::from(self.list) << 32) | u64::from(self.idx)
    }

    /// The reference [`pack`](Self::pack) made `packed` from.
    pub(crate) fn unpack(packed: u64) -> StatusRef {
        StatusRef {
            list: (packed >> 32) as u32,
            idx: packed as u32,
        }
    }
}

/// A token's `status.status_list` reference, if it has one: `(uri, idx)`.
/// A `status` claim that is not an object, or a `status_list` without a
/// non-negative integer `idx` and a string `uri`, is `invalid_payload`.
/// A `status` with other mechanisms only is no reference.
pub fn reference(claims: &Map<String, Value>) -> Result<Option<(&str, u64)>> {
    let bad = |why: &str| Err(Error::new(ErrorKind::InvalidPayload, format!("status {why}")));
    let status = match claims.get("status") {
        None => return Ok(None),
        Some(Value::Object(s)) => s,
        Some(_) => return bad("must be an object"),
    };
    let sl = match status.get("status_list") {
        None => return Ok(None),
        Some(Value::Object(sl)) => sl,
        Some(_) => return bad("status_list must be an object"),
    };
    let Some(idx) = sl.get("idx").and_then(Value::as_u64) else {
        return bad("status_list.idx must be a non-negative integer");
    };
    let Some(uri) = sl.get("uri").and_then(Value::as_str) else {
        return bad("status_list.uri must be a string");
    };
    Ok(Some((uri, idx)))
}

/// Every issuer's status lists, by issuer index.
pub(crate) struct Lists {
    stores: Vec<Arc<Store>>,
}

impl Lists {
    /// The lists of one issuer, for a verifier whose issuers change at
    /// runtime (each issuer's lists move with it).
    pub(crate) fn store_for(issuer: &IssuerConfig, config: &Config) -> Result<Arc<Store>> {
        Store::new(&issuer.status_list, &issuer.refresh, &config.http).map(Arc::new)
    }

    /// As [`store_for`](Lists::store_for), for lists that must name `iss`
    /// as their issuer when it is given (a SPIFFE trust domain's
    /// `issuer`): not the name the verifying keys are held under.
    pub(crate) fn store_naming(issuer: &IssuerConfig, config: &Config, iss: Option<&str>) -> Result<Arc<Store>> {
        let store = Store::new(&issuer.status_list, &issuer.refresh, &config.http)?;
        Ok(Arc::new(match iss {
            Some(iss) => store.with_iss(iss),
            None => store,
        }))
    }

    /// Issuer `index`'s lists.
    pub(crate) fn store(&self, index: usize) -> Arc<Store> {
        self.stores[index].clone()
    }

    /// Lists from each issuer's, by issuer index.
    pub(crate) fn from_stores(stores: Vec<Arc<Store>>) -> Lists {
        Lists { stores }
    }

    /// Check a token whose signature and claims passed, for issuer `index`.
    /// `Ok(Some(r))`: valid by its list, keep `r` with the cached result;
    /// `Ok(None)`: no status to check.
    pub(crate) fn check(
        &self,
        index: usize,
        issuer: &Issuer,
        env: &Env,
        claims: &Map<String, Value>,
        now: u64,
    ) -> Result<Option<StatusRef>> {
        let Some((uri, idx)) = reference(claims)? else {
            if issuer.cfg.status_list.require_status {
                return Err(Error::new(
                    ErrorKind::StatusMissing,
                    format!("issuer {} requires a status claim", issuer.name),
                ));
            }
            return Ok(None);
        };
        self.stores[index].check(issuer, env, uri, idx, now).map(Some)
    }

    /// Whether a cached result of issuer `index` with reference `r` may be served.
    #[inline]
    pub(crate) fn status_ok(&self, index: usize, r: StatusRef, now: u64) -> bool {
        self.stores.get(index).is_some_and(|s| s.status_ok(r, now))
    }

    /// Fetch the configured `preload` lists of issuer `index`.
    pub(crate) fn preload(&self, index: usize, issuer: &Issuer, env: &Env) {
        self.stores[index].preload(issuer, env);
    }

    /// Run due refreshes of issuer `index`'s lists; when the next is due (ms).
    pub(crate) fn run_due(&self, index: usize, issuer: &Issuer, env: &Env) -> u64 {
        self.stores[index].run_due(issuer, env)
    }

    /// The health of a list of issuer `index`, if it was ever referenced.
    pub(crate) fn health(&self, index: usize, uri: &str, now: u64) -> Option<crate::metrics::Health> {
        self.stores[index].health(uri, now)
    }

    /// Metrics of every list.
    pub(crate) fn stats(&self, issuers: &[Arc<Issuer>], now: u64) -> Vec<crate::metrics::StatusListStats> {
        self.stores
            .iter()
            .zip(issuers)
            .flat_map(|(s, i)| s.stats(&i.name, now))
            .collect()
    }
}

/// What a Status List Token holds, decoded WITHOUT checking its signature
/// (for the CLI's `status-list` command and diagnostics).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ListReport {
    /// The JOSE header fields jwtwarden reads: `alg`, `kid`, `typ`.
    pub header: Value,
    /// The payload, with `status_list.lst` left out.
    pub claims: Map<String, Value>,
    /// Bits per status.
    pub bits: u8,
    /// Statuses in the list.
    pub entries: u64,
    /// Size of the token, bytes.
    pub token_bytes: usize,
    /// Size of the inflated status array, bytes.
    pub inflated_bytes: usize,
    /// How many entries have each status value (value, count), counts > 0 only.
    pub counts: Vec<(u8, u64)>,
    /// The response's `Cache-Control`, when fetched.
    pub cache_control: Option<String>,
}

/// The name the draft gives a status value.
pub fn status_name(status: u8) -> &'static str {
    match status {
        0 => "VALID",
        1 => "INVALID",
        2 => "SUSPENDED",
        3 | 0x0C..=0x0F => "application-specific",
        _ => "reserved",
    }
}

/// Decode a Status List Token WITHOUT checking its signature or claims:
/// header, claims and the counts of each status. `max_inflated` bounds the
/// inflated list, as `status_list.max_inflated_bytes` does.
pub fn describe_list_token(raw: &[u8], max_inflated: usize) -> Result<ListReport> {
    let unavailable = |m: String| Error::new(ErrorKind::StatusListUnavailable, m);
    let raw = raw.trim_ascii();
    let parsed = crate::token::parse(raw, usize::MAX)?;
    let mut claims = parsed.claims;
    let sl = claims
        .get_mut("status_list")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| unavailable("no status_list object".into()))?;
    let bits = sl
        .get("bits")
        .and_then(Value::as_u64)
        .and_then(|b| u8::try_from(b).ok())
        .ok_or_else(|| unavailable("status_list.bits must be 1, 2, 4 or 8".into()))?;
    let lst = match sl.remove("lst") {
        Some(Value::String(l)) => l,
        _ => return Err(unavailable("status_list.lst must be a string".into())),
    };
    let list = StatusList::decode(bits, &lst, max_inflated).map_err(unavailable)?;
    let counts = list
        .counts()
        .into_iter()
        .enumerate()
        .filter(|(_, n)| *n > 0)
        .map(|(v, n)| (v as u8, n))
        .collect();
    Ok(ListReport {
        header: serde_json::json!({
            "alg": parsed.header.alg.as_str(), "kid": parsed.header.kid, "typ": parsed.header.typ,
        }),
        claims,
        bits,
        entries: list.len(),
        token_bytes: raw.len(),
        inflated_bytes: list.bytes().len(),
        counts,
        cache_control: None,
    })
}

/// Fetch the Status List Token at `url` with the HTTP settings `http` (its
/// size cap raised to `max_token_bytes`) and describe it
/// ([`describe_list_token`]; the signature is NOT checked).
pub fn describe_list_url(
    http: &crate::config::HttpConfig,
    url: &str,
    max_token_bytes: usize,
    max_inflated: usize,
) -> Result<ListReport> {
    let mut cfg = http.clone();
    cfg.max_response_bytes = max_token_bytes as u64;
    let client = crate::fetch::HttpClient::new(&cfg)?;
    let fetched = client
        .get_until(url, None, true, client.deadline())
        .map_err(|e| Error::new(ErrorKind::StatusListUnavailable, e.message))?;
    match fetched {
        crate::fetch::Fetched::Body {
            body, cache_control, ..
        } => {
            let mut report = describe_list_token(&body, max_inflated)?;
            report.cache_control = cache_control;
            Ok(report)
        }
        crate::fetch::Fetched::NotModified { .. } => Err(Error::new(
            ErrorKind::StatusListUnavailable,
            "304 Not Modified to an unconditional request",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prefixes_match_scheme_host_port_and_path_segments() {
        let p = UriPrefix::parse("https://idp.example.com/status", false).unwrap();
        assert!(p.matches("https://idp.example.com/status"));
        assert!(p.matches("https://idp.example.com/status/1"));
        assert!(p.matches("https://IDP.example.com:443/status/1?v=2"));
        assert!(!p.matches("https://idp.example.com/statusX/1"), "segment boundary");
        assert!(!p.matches("http://idp.example.com/status/1"), "scheme");
        assert!(!p.matches("https://idp.example.com:8443/status/1"), "port");
        assert!(!p.matches("https://idp.example.com.evil/status/1"), "host");
        assert!(!p.matches("https://evil@idp.example.com/status/1"), "user info");
        assert!(!p.matches("https://idp.example.com/status/../admin"), "dot segments");
        assert!(!p.matches("https://idp.example.com/status/%2e%2e/admin"));
        assert!(!p.matches("https://idp.example.com/other"));
        // Issue 23, item 9d: every spelling of a way out of the prefix.
        for sneaky in [
            "https://idp.example.com/status/%252e%252e/admin",
            "https://idp.example.com/status/%252E%252E/admin",
            "https://idp.example.com/status/..;/admin",
            "https://idp.example.com/status/..;x=1/admin",
            "https://idp.example.com/status;/../admin",
            "https://idp.example.com/status/..%5cadmin",
            "https://idp.example.com/status/..%5Cadmin",
            "https://idp.example.com/status/..\\admin",
            "https://idp.example.com/status/%2E%2E/admin",
            "https://idp.example.com/status/.%2e/admin",
            "https://idp.example.com/status%2f..%2fadmin",
            "https://idp.example.com/status/..\u{ff0f}admin",
            "https://idp.example.com/status/..%ef%bc%8fadmin",
            "https://idp.example.com/status/%c0%ae%c0%ae/admin",
            "https://idp.example.com/status/./1",
            "https://idp.example.com/status/%zz",
        ] {
            assert!(!p.matches(sneaky), "{sneaky}");
            assert!(!allowed(&["https://idp.example.com/status".into()], sneaky), "{sneaky}");
        }
        // Harmless encodings still match.
        assert!(p.matches("https://idp.example.com/status/a%20b"));
        assert!(p.matches("https://idp.example.com/status/list-1.jwt"));
        let slash = UriPrefix::parse("https://idp.example.com/lists/", false).unwrap();
        assert!(slash.matches("https://idp.example.com/lists/7"));
        assert!(!slash.matches("https://idp.example.com/lists"));
        assert!(UriPrefix::parse("http://idp/status", false).is_err());
        assert!(UriPrefix::parse("http://idp/status", true).is_ok());
        assert!(UriPrefix::parse("ftp://idp/status", true).is_err());
    }

    #[test]
    fn references_are_read_strictly() {
        let c = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(reference(&c(json!({}))).unwrap(), None);
        let m = c(json!({"status": {"status_list": {"idx": 7, "uri": "https://x/s"}}}));
        assert_eq!(reference(&m).unwrap(), Some(("https://x/s", 7)));
        assert_eq!(reference(&c(json!({"status": {"other": {}}}))).unwrap(), None);
        for bad in [
            json!({"status": 1}),
            json!({"status": {"status_list": {"idx": -1, "uri": "https://x"}}}),
            json!({"status": {"status_list": {"idx": 1.5, "uri": "https://x"}}}),
            json!({"status": {"status_list": {"idx": 1}}}),
            json!({"status": {"status_list": "x"}}),
        ] {
            let e = reference(&c(bad.clone())).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidPayload, "{bad}");
        }
    }
}
