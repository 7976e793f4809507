//! A SPIFFE bundle endpoint on `127.0.0.1` for one trust domain: serves the
//! trust domain's JWT bundle at `/bundle` (`{"keys": [...], "spiffe_sequence":
//! n, "spiffe_refresh_hint": s}`, each key with `use: "jwt-svid"`) and mints
//! JWT-SVIDs with its keys.
//!
//! Every change ([`SpiffeBundleServer::rotate`], [`SpiffeBundleServer::retire`],
//! [`SpiffeBundleServer::publish_empty`], [`SpiffeBundleServer::set_refresh_hint`])
//! publishes a new bundle with the next sequence number; [`SpiffeBundleServer::rollback_to`]
//! serves an earlier bundle again, as a replaying attacker or a restored
//! backup would. Requests are counted ([`SpiffeBundleServer::requests`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tiny_http::Server;

use crate::keys::{self, KeyEntry};
use crate::server::{json_response, respond};
use crate::Alg;

struct State {
    /// Every key ever made, by kid (retired ones still sign).
    keys: HashMap<String, Arc<KeyEntry>>,
    /// The kids published, in order.
    published: Vec<String>,
    sequence: u64,
    refresh_hint: Option<u64>,
    /// Every bundle published, by sequence.
    history: HashMap<u64, Value>,
    /// The bundle served instead of the current one (a rollback).
    served: Option<Value>,
    /// Other documents served, by path ([`SpiffeBundleServer::serve`]).
    documents: HashMap<String, String>,
}

struct Inner {
    url: String,
    trust_domain: String,
    state: Mutex<State>,
    requests: AtomicU64,
    stopping: AtomicBool,
}

/// A running SPIFFE bundle endpoint; dropping it stops the server.
pub struct SpiffeBundleServer {
    inner: Arc<Inner>,
    server: Arc<Server>,
}

impl std::fmt::Debug for SpiffeBundleServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpiffeBundleServer")
            .field("url", &self.inner.url)
            .field("trust_domain", &self.inner.trust_domain)
            .finish()
    }
}

impl SpiffeBundleServer {
    /// Binds `127.0.0.1:0` and serves the bundle of `trust_domain`: one
    /// ES256 key, `spiffe_sequence` 1, `spiffe_refresh_hint` 300.
    ///
    /// # Panics
    /// If the server cannot be started.
    pub fn start(trust_domain: &str) -> SpiffeBundleServer {
        let server = Arc::new(Server::http("127.0.0.1:0").expect("testissuer: cannot bind"));
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let inner = Arc::new(Inner {
            url: format!("http://127.0.0.1:{port}"),
            trust_domain: trust_domain.to_string(),
            state: Mutex::new(State {
                keys: HashMap::new(),
                published: Vec::new(),
                sequence: 0,
                refresh_hint: Some(300),
                history: HashMap::new(),
                served: None,
                documents: HashMap::new(),
            }),
            requests: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        });
        let (s, i) = (server.clone(), inner.clone());
        std::thread::Builder::new()
            .name("testissuer-spiffe".into())
            .spawn(move || {
                while let Ok(rq) = s.recv() {
                    if i.stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    handle(&i, rq);
                }
            })
            .expect("testissuer: cannot spawn");
        let bundles = SpiffeBundleServer { inner, server };
        bundles.rotate();
        bundles
    }

    /// The bundle endpoint: `http://127.0.0.1:<port>/bundle`.
    pub fn bundle_url(&self) -> String {
        format!("{}/bundle", self.inner.url)
    }

    /// The trust domain served.
    pub fn trust_domain(&self) -> &str {
        &self.inner.trust_domain
    }

    /// `spiffe://<trust domain>/<path>`.
    pub fn spiffe_id(&self, path: &str) -> String {
        format!("spiffe://{}/{path}", self.inner.trust_domain)
    }

    /// Publish a new ES256 key (the others stay); returns its kid.
    pub fn rotate(&self) -> String {
        let m = keys::material_for(Alg::ES256, &HashSet::new(), true);
        let kid = keys::random_kid();
        let mut st = self.inner.state.lock();
        st.keys
            .insert(kid.clone(), Arc::new(KeyEntry::new(Alg::ES256, m, kid.clone())));
        st.published.push(kid.clone());
        publish(&mut st);
        kid
    }

    /// Stop publishing `kid` (it can still sign).
    pub fn retire(&self, kid: &str) {
        let mut st = self.inner.state.lock();
        st.published.retain(|k| k != kid);
        publish(&mut st);
    }

    /// Publish a bundle with no keys at all.
    pub fn publish_empty(&self) {
        let mut st = self.inner.state.lock();
        st.published.clear();
        publish(&mut st);
    }

    /// Publish the same keys with `spiffe_refresh_hint` set to `hint` seconds
    /// (`None`: no hint).
    pub fn set_refresh_hint(&self, hint: Option<u64>) {
        let mut st = self.inner.state.lock();
        st.refresh_hint = hint;
        publish(&mut st);
    }

    /// Serve the bundle published with `sequence` again, until the next change.
    ///
    /// # Panics
    /// If no bundle had that sequence.
    pub fn rollback_to(&self, sequence: u64) {
        let mut st = self.inner.state.lock();
        let old = st.history.get(&sequence).cloned().expect("a bundle of that sequence");
        st.served = Some(old);
    }

    /// The sequence of the latest bundle published.
    pub fn sequence(&self) -> u64 {
        self.inner.state.lock().sequence
    }

    /// The bundle served now.
    pub fn bundle(&self) -> Value {
        let st = self.inner.state.lock();
        st.served.clone().unwrap_or_else(|| current(&st))
    }

    /// The kids published now.
    pub fn published_kids(&self) -> Vec<String> {
        self.inner.state.lock().published.clone()
    }

    /// The PKCS#8 PEM of `kid`'s private key (to sign with another library).
    pub fn private_pem(&self, kid: &str) -> String {
        self.inner.state.lock().keys[kid].pem().to_string()
    }

    /// JWT-SVID claims: `sub` [`spiffe_id`](Self::spiffe_id)`(path)`, `aud`
    /// `[aud]`, `iat` `now`, `exp` five minutes later.
    pub fn claims(&self, path: &str, aud: &str, now: u64) -> Value {
        json!({
            "sub": self.spiffe_id(path),
            "aud": [aud],
            "iat": now,
            "exp": now + 300,
        })
    }

    /// `claims` signed with `kid` (header `{alg: ES256, typ: JWT, kid}`).
    ///
    /// # Panics
    /// If `kid` was never made here.
    pub fn mint(&self, kid: &str, claims: &Value) -> String {
        let k = self.inner.state.lock().keys[kid].clone();
        k.sign(&json!({"alg": k.alg.as_str(), "typ": "JWT", "kid": k.kid}), claims)
    }

    /// `claims` signed with `kid` under `header` (its `alg` and `kid` set
    /// here), e.g. a Status List Token (`typ: statuslist+jwt`).
    ///
    /// # Panics
    /// If `kid` was never made here.
    pub fn mint_with_header(&self, kid: &str, header: &Value, claims: &Value) -> String {
        let k = self.inner.state.lock().keys[kid].clone();
        let mut h = header.clone();
        h["alg"] = json!(k.alg.as_str());
        h["kid"] = json!(k.kid);
        k.sign(&h, claims)
    }

    /// Serve `body` at `path` (not `/bundle`) from now on; returns its URL.
    /// Requests to it are not counted in [`requests`](Self::requests).
    pub fn serve(&self, path: &str, body: String) -> String {
        self.inner.state.lock().documents.insert(path.to_string(), body);
        format!("{}{path}", self.inner.url)
    }

    /// Bundle requests so far.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::SeqCst)
    }
}

impl Drop for SpiffeBundleServer {
    fn drop(&mut self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.server.unblock();
    }
}

/// The bundle of the published keys, sequence and hint.
fn current(st: &State) -> Value {
    let keys: Vec<Value> = st
        .published
        .iter()
        .map(|kid| {
            let mut jwk = st.keys[kid].jwk().clone();
            jwk["use"] = json!("jwt-svid");
            jwk
        })
        .collect();
    let mut doc = json!({ "keys": keys, "spiffe_sequence": st.sequence });
    if let Some(hint) = st.refresh_hint {
        doc["spiffe_refresh_hint"] = json!(hint);
    }
    doc
}

fn publish(st: &mut State) {
    st.sequence += 1;
    st.served = None;
    let doc = current(st);
    st.history.insert(st.sequence, doc);
}

fn handle(inner: &Inner, rq: tiny_http::Request) {
    let path = rq.url().split(['?', '#']).next().unwrap_or_default().to_string();
    if path != "/bundle" {
        let doc = inner.state.lock().documents.get(&path).cloned();
        match doc {
            Some(body) => respond(rq, json_response(200, body)),
            None => respond(rq, json_response(404, r#"{"error":"not found"}"#)),
        }
        return;
    }
    inner.requests.fetch_add(1, Ordering::SeqCst);
    let body = {
        let st = inner.state.lock();
        st.served.clone().unwrap_or_else(|| current(&st))
    };
    respond(
        rq,
        json_response(200, serde_json::to_vec(&body).expect("JSON serializes")),
    );
}
