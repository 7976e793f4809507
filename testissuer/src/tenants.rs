//! A multi-tenant issuer on `127.0.0.1`: one issuer per tenant under one host,
//! as Entra ID, Keycloak realms and other multi-tenant providers publish them.
//!
//! | path | [`TenantMode::PerTenant`] | [`TenantMode::SharedKeys`] (Entra ID style) |
//! |---|---|---|
//! | `/<t>/v2.0/.well-known/openid-configuration` | `{"issuer": url/<t>/v2.0, "jwks_uri": url/<t>/keys}` | `{"issuer": url/<t>/v2.0, "jwks_uri": url/common/keys}` |
//! | `/<t>/keys` | tenant `<t>`'s own key (ES256) | `404` |
//! | `/common/keys` | `404` | the one key set every tenant signs with |
//! | `/common/v2.0/.well-known/openid-configuration` | as any tenant | `{"issuer": url/{tenantid}/v2.0, ...}`, the placeholder as Entra's `common` document has it |
//! | `/<t>/status/<name>` | tenant `<t>`'s Token Status List (`statuslist+jwt`, `iss` its issuer, signed with its key), once [`TenantIssuer::publish_status_list`] made it | the same, signed with the shared key |
//!
//! Every tenant exists (its key is made on first use) unless [`TenantIssuer::fail_tenant`]
//! made it answer `404`. Every request is counted per path; [`TenantIssuer::set_delay`]
//! holds each answer, so concurrent first tokens pile up on one fetch.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tiny_http::Server;

use crate::keys::{self, KeyEntry};
use crate::server::{json_response, respond};
use crate::Alg;

/// How a [`TenantIssuer`] publishes keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TenantMode {
    /// Each tenant has its own key, discovery document and JWKS.
    PerTenant,
    /// Every tenant signs with the keys of one JWKS at `/common/keys`.
    SharedKeys,
}

struct Inner {
    url: String,
    mode: TenantMode,
    keys: Mutex<HashMap<String, Arc<KeyEntry>>>,
    failing: Mutex<HashSet<String>>,
    counts: Mutex<HashMap<String, u64>>,
    /// Status lists by path: the tenant whose list it is, and its statuses.
    lists: Mutex<HashMap<String, (String, Vec<u8>)>>,
    delay_ms: AtomicU64,
    stopping: AtomicBool,
}

/// A running multi-tenant issuer; dropping it stops the server.
pub struct TenantIssuer {
    inner: Arc<Inner>,
    server: Arc<Server>,
}

impl std::fmt::Debug for TenantIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantIssuer").field("url", &self.inner.url).finish()
    }
}

const SHARED: &str = "common";

impl TenantIssuer {
    /// Binds `127.0.0.1:0` and serves tenants in `mode`.
    ///
    /// # Panics
    /// If the server cannot be started.
    pub fn start(mode: TenantMode) -> TenantIssuer {
        let server = Arc::new(Server::http("127.0.0.1:0").expect("testissuer: cannot bind"));
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let inner = Arc::new(Inner {
            url: format!("http://127.0.0.1:{port}"),
            mode,
            keys: Mutex::new(HashMap::new()),
            failing: Mutex::new(HashSet::new()),
            counts: Mutex::new(HashMap::new()),
            lists: Mutex::new(HashMap::new()),
            delay_ms: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        });
        let (s, i) = (server.clone(), inner.clone());
        std::thread::Builder::new()
            .name("testissuer-tenants".into())
            .spawn(move || {
                while let Ok(rq) = s.recv() {
                    if i.stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let i = i.clone();
                    let _ = std::thread::Builder::new()
                        .name("testissuer-tenant-request".into())
                        .spawn(move || handle(&i, rq));
                }
            })
            .expect("testissuer: cannot spawn");
        TenantIssuer { inner, server }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Tenant `t`'s issuer: `url/<t>/v2.0`.
    pub fn issuer(&self, tenant: &str) -> String {
        format!("{}/{tenant}/v2.0", self.inner.url)
    }

    /// The key `tenant` signs with (the shared one in [`TenantMode::SharedKeys`]).
    fn key(&self, tenant: &str) -> Arc<KeyEntry> {
        self.inner.key(tenant)
    }

    /// Rotate `tenant`'s key (the shared one in
    /// [`TenantMode::SharedKeys`]): a fresh key replaces it in the JWKS
    /// and signs from now on; the old one is no longer published. Returns
    /// the new kid.
    pub fn rotate(&self, tenant: &str) -> String {
        self.inner.rotate(tenant)
    }

    /// Claims for `tenant`: `iss` its issuer, `aud` `api://orders`, `tid` the
    /// tenant, `sub`, `iat` `now`, `exp` an hour later, a random `jti`.
    pub fn claims(&self, tenant: &str, sub: &str, now: u64) -> Value {
        json!({
            "iss": self.issuer(tenant),
            "aud": "api://orders",
            "tid": tenant,
            "sub": sub,
            "iat": now,
            "exp": now + 3600,
            "jti": format!("jti-{:016x}", fastrand::u64(..)),
        })
    }

    /// `claims` signed with the key of `signer` (normally the tenant the
    /// claims name; another one for attacks).
    pub fn mint_as(&self, signer: &str, claims: &Value) -> String {
        let k = self.key(signer);
        k.sign(&json!({"alg": k.alg.as_str(), "typ": "JWT", "kid": k.kid}), claims)
    }

    /// A token of `tenant` for `sub` at `now`, signed with its key.
    pub fn mint(&self, tenant: &str, sub: &str, now: u64) -> String {
        self.mint_as(tenant, &self.claims(tenant, sub, now))
    }

    /// `claims` signed with the key of `signer`, with no `kid` in the header
    /// (the key is then found as the only one of its algorithm).
    pub fn mint_without_kid(&self, signer: &str, claims: &Value) -> String {
        let k = self.key(signer);
        k.sign(&json!({"alg": k.alg.as_str(), "typ": "JWT"}), claims)
    }

    /// Publish a Token Status List of `len` entries (2 bits each, all VALID)
    /// for `tenant` at `/<tenant>/status/<name>`; returns its URI. Served
    /// as a `statuslist+jwt` with `iss` the tenant's issuer, `sub` the URI,
    /// `iat` the time it is served and `ttl` 300, signed with the tenant's
    /// key (the shared one in [`TenantMode::SharedKeys`]).
    pub fn publish_status_list(&self, tenant: &str, name: &str, len: usize) -> String {
        let path = format!("/{tenant}/status/{name}");
        self.inner
            .lists
            .lock()
            .insert(path.clone(), (tenant.to_string(), vec![0; len]));
        format!("{}{path}", self.inner.url)
    }

    /// Set entry `idx` of `tenant`'s list `name` to `status` (0 VALID, 1
    /// INVALID, 2 SUSPENDED).
    ///
    /// # Panics
    /// If there is no such list or `idx` is beyond it.
    pub fn set_status(&self, tenant: &str, name: &str, idx: usize, status: u8) {
        let mut lists = self.inner.lists.lock();
        let (_, statuses) = lists
            .get_mut(&format!("/{tenant}/status/{name}"))
            .expect("testissuer: no such status list");
        statuses[idx] = status;
    }

    /// The `status` claim for entry `idx` of the list at `uri`.
    pub fn status_claim(uri: &str, idx: usize) -> Value {
        json!({"status_list": {"idx": idx, "uri": uri}})
    }

    /// Make `tenant`'s documents answer `404` (its discovery fails).
    pub fn fail_tenant(&self, tenant: &str) {
        self.inner.failing.lock().insert(tenant.to_string());
    }

    /// Hold every answer this long.
    pub fn set_delay(&self, delay: Duration) {
        self.inner.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Requests to `path` so far.
    pub fn requests(&self, path: &str) -> u64 {
        self.inner.counts.lock().get(path).copied().unwrap_or(0)
    }

    /// Every request so far.
    pub fn total_requests(&self) -> u64 {
        self.inner.counts.lock().values().sum()
    }

    /// Discovery requests so far, all tenants.
    pub fn discovery_requests(&self) -> u64 {
        self.count_where(|p| p.ends_with("/.well-known/openid-configuration"))
    }

    /// JWKS requests so far, all tenants.
    pub fn jwks_requests(&self) -> u64 {
        self.count_where(|p| p.ends_with("/keys"))
    }

    fn count_where(&self, f: impl Fn(&str) -> bool) -> u64 {
        self.inner
            .counts
            .lock()
            .iter()
            .filter(|(p, _)| f(p))
            .map(|(_, n)| n)
            .sum()
    }
}

impl Drop for TenantIssuer {
    fn drop(&mut self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.server.unblock();
    }
}

impl Inner {
    fn key(&self, tenant: &str) -> Arc<KeyEntry> {
        let owner = match self.mode {
            TenantMode::PerTenant => tenant,
            TenantMode::SharedKeys => SHARED,
        };
        self.keys
            .lock()
            .entry(owner.to_string())
            .or_insert_with(|| {
                let m = keys::material_for(Alg::ES256, &HashSet::new(), true);
                Arc::new(KeyEntry::new(Alg::ES256, m, keys::random_kid()))
            })
            .clone()
    }

    fn rotate(&self, tenant: &str) -> String {
        let owner = match self.mode {
            TenantMode::PerTenant => tenant,
            TenantMode::SharedKeys => SHARED,
        };
        let m = keys::material_for(Alg::ES256, &HashSet::new(), true);
        let entry = Arc::new(KeyEntry::new(Alg::ES256, m, keys::random_kid()));
        let kid = entry.kid.clone();
        self.keys.lock().insert(owner.to_string(), entry);
        kid
    }

    /// The Status List Token at `path`, signed now.
    fn status_list(&self, path: &str) -> Option<String> {
        let (tenant, statuses) = self.lists.lock().get(path).cloned()?;
        let k = self.key(&tenant);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let claims = json!({
            "iss": format!("{}/{tenant}/v2.0", self.url),
            "sub": format!("{}{path}", self.url),
            "iat": now,
            "ttl": 300,
            "status_list": { "bits": 2, "lst": crate::status::encode_lst(2, &statuses) },
        });
        Some(k.sign(
            &json!({"alg": k.alg.as_str(), "typ": "statuslist+jwt", "kid": k.kid}),
            &claims,
        ))
    }

    fn answer(&self, path: &str) -> Option<Value> {
        let rest = path.strip_prefix('/')?;
        let (tenant, tail) = rest.split_once('/')?;
        if tenant.is_empty() || self.failing.lock().contains(tenant) {
            return None;
        }
        let jwks = |k: Arc<KeyEntry>| json!({ "keys": [k.jwk().clone()] });
        match (self.mode, tail) {
            (_, "v2.0/.well-known/openid-configuration") => {
                let (issuer, jwks_uri) = match self.mode {
                    TenantMode::PerTenant => (tenant.to_string(), format!("{}/{tenant}/keys", self.url)),
                    _ if tenant == SHARED => ("{tenantid}".to_string(), format!("{}/{SHARED}/keys", self.url)),
                    _ => (tenant.to_string(), format!("{}/{SHARED}/keys", self.url)),
                };
                Some(json!({ "issuer": format!("{}/{issuer}/v2.0", self.url), "jwks_uri": jwks_uri }))
            }
            (TenantMode::PerTenant, "keys") => Some(jwks(self.key(tenant))),
            (TenantMode::SharedKeys, "keys") if tenant == SHARED => Some(jwks(self.key(SHARED))),
            _ => None,
        }
    }
}

fn handle(inner: &Inner, rq: tiny_http::Request) {
    let path = rq.url().split(['?', '#']).next().unwrap_or_default().to_string();
    *inner.counts.lock().entry(path.clone()).or_default() += 1;
    let delay = inner.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        std::thread::sleep(Duration::from_millis(delay));
    }
    if let Some(list) = inner.status_list(&path) {
        return respond(rq, json_response(200, list));
    }
    match inner.answer(&path) {
        Some(body) => respond(
            rq,
            json_response(200, serde_json::to_vec(&body).expect("JSON serializes")),
        ),
        None => respond(rq, json_response(404, r#"{"error":"not found"}"#)),
    }
}
