//! The signed verification assertion through a real nginx and `serve`
//! (issue 28): the assertion reaches the upstream and verifies there as
//! inherited trust with keys fetched from serve's admin JWKS; a copy the
//! client sets is never what the upstream sees; a replay elsewhere is
//! refused.
//!
//! Skipped (with a message) only when nginx is not installed and
//! JWTWARDEN_REQUIRE_NGINX is unset.

mod common;

use std::sync::Arc;

use common::serve::{auth_request_location, echoed, nginx_binary, Nginx, Serve, Upstream};
use common::{now, Env};
use jwtwarden::assertion::{edge_issuer, Inheritance, ReplayGuard, Request};
use jwtwarden::{Config, ErrorKind, SystemClock, Verifier};
use jwtwarden_testissuer::{Alg, TestIssuer};
use serde_json::Value;

struct Stack {
    env: Env,
    _edge_keys: TestIssuer,
    kids: Vec<String>,
    serve_file: std::path::PathBuf,
    upstream: Upstream,
    serve: Serve,
    nginx: Nginx,
}

fn stack() -> Option<Stack> {
    let Some(binary) = nginx_binary() else {
        if std::env::var_os("JWTWARDEN_REQUIRE_NGINX").is_some() {
            panic!("JWTWARDEN_REQUIRE_NGINX is set but nginx is not installed");
        }
        eprintln!("SKIPPED: nginx not found");
        return None;
    };
    let env = Env::with_issuer(TestIssuer::start());
    // Two Ed25519 key pairs for the edge, from the test issuer's key maker.
    let edge_keys = TestIssuer::start_empty();
    let mut kids = Vec::new();
    for _ in 0..2 {
        let kid = edge_keys.add_key(Alg::EdDSA);
        std::fs::write(
            env.dir.path().join(format!("{kid}.pem")),
            edge_keys.private_key_pem(&kid),
        )
        .unwrap();
        kids.push(kid);
    }
    let serve_file = env.dir.path().join("serve.toml");
    write_serve(&env, &serve_file, &kids[0], None);
    let serve = Serve::start(&env.json_config, Some(&serve_file));
    let upstream = Upstream::start();
    let block = format!(
        r#"{auth}
    location / {{
      auth_request /_auth;
      auth_request_set $assertion $upstream_http_x_jwtwarden_assertion;
      proxy_set_header X-Jwtwarden-Assertion $assertion;
      proxy_pass http://127.0.0.1:{up};
    }}"#,
        auth = auth_request_location(&format!("http://{}/auth", serve.addr)),
        up = upstream.port
    );
    let nginx = Nginx::start(&binary, &block);
    Some(Stack {
        env,
        _edge_keys: edge_keys,
        kids,
        serve_file,
        upstream,
        serve,
        nginx,
    })
}

/// serve.toml with `current` signing and `previous` published.
fn write_serve(env: &Env, file: &std::path::Path, current: &str, previous: Option<&str>) {
    let key = |kid: &str| {
        format!(
            "{{ kid = \"{kid}\", pem_file = \"{}\" }}",
            env.dir.path().join(format!("{kid}.pem")).display()
        )
    };
    let previous = previous.map(|k| format!("previous = {}\n", key(k))).unwrap_or_default();
    std::fs::write(
        file,
        format!(
            r#"
[[routes]]
prefix = "/api"

[[routes]]
prefix = "/plain"

[admin]
listen = "127.0.0.1:0"
token_env = "JWTWARDEN_TEST_ADMIN_SECRET"

[assertion]
name = "edge-1"
audiences = {{ "/api" = "orders" }}
current = {current}
{previous}"#,
            current = key(current),
        ),
    )
    .unwrap();
}

/// The service behind: the edge as an issuer, keys from serve's admin JWKS.
fn service(s: &Stack) -> (Verifier, Inheritance) {
    let mut issuer = edge_issuer("edge-1", "orders");
    issuer.jwks_uri = Some(format!(
        "http://{}/.well-known/jwks.json",
        s.serve.admin.as_ref().unwrap()
    ));
    let mut config = Config::new(vec![issuer]);
    config.http.allow_http = true;
    let verifier = Verifier::new(config).unwrap();
    let inh = Inheritance::new(
        [("edge-1".to_string(), None)],
        Arc::new(ReplayGuard::new(1000)),
        Arc::new(SystemClock),
    );
    (verifier, inh)
}

fn assertions(h: &[(String, String)]) -> Vec<String> {
    h.iter()
        .filter(|(n, _)| n == "x-jwtwarden-assertion")
        .map(|(_, v)| v.clone())
        .collect()
}

#[test]
fn the_assertion_reaches_the_upstream_verifies_there_and_a_client_copy_never_does() {
    let Some(s) = stack() else { return };
    let token = s
        .env
        .issuer
        .mint(&s.env.issuer.first_kid(), &s.env.issuer.default_claims("alice", now()));
    let auth = format!("Bearer {token}");
    let (verifier, inh) = service(&s);

    // The client sends its own assertion: replaced by the edge's.
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.";
    let r = s.nginx.get(
        "/api/orders/7?page=2",
        &[("Authorization", &auth), ("X-Jwtwarden-Assertion", forged)],
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", s.nginx.error_log());
    let got = assertions(&echoed(&r));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_ne!(got[0], forged);
    let a = &got[0];
    let inherited = inh
        .verify(
            &verifier,
            a,
            &Request {
                method: "GET",
                path: "/api/orders/7",
            },
            false,
        )
        .expect("the upstream accepts it");
    assert_eq!(inherited.edge, "edge-1");
    assert_eq!(inherited.original["sub"], "alice");
    // Twice, or to another path or method: refused.
    let again = inh.verify(
        &verifier,
        a,
        &Request {
            method: "GET",
            path: "/api/orders/7",
        },
        false,
    );
    assert_eq!(again.unwrap_err().kind(), ErrorKind::Revoked);
    let other = inh.verify(
        &verifier,
        a,
        &Request {
            method: "GET",
            path: "/api/orders/8",
        },
        false,
    );
    assert_eq!(other.unwrap_err().kind(), ErrorKind::InvalidAudience);
    let other = inh.verify(
        &verifier,
        a,
        &Request {
            method: "POST",
            path: "/api/orders/7",
        },
        false,
    );
    assert_eq!(other.unwrap_err().kind(), ErrorKind::InvalidAudience);

    // A route without an assertion: the client's copy is still removed.
    let r = s.nginx.get(
        "/plain/x",
        &[("Authorization", &auth), ("X-Jwtwarden-Assertion", forged)],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(assertions(&echoed(&r)).is_empty(), "{r:?}");

    // Without a token nothing reaches the upstream, whatever the client sets.
    let hits = s.upstream.hits();
    let r = s.nginx.get("/api/orders/7", &[("X-Jwtwarden-Assertion", forged)]);
    assert_eq!(r.status, 401);
    assert_eq!(s.upstream.hits(), hits);
}

#[test]
fn serve_publishes_the_assertion_keys_without_the_admin_secret() {
    let Some(s) = stack() else { return };
    let admin = s.serve.admin.clone().unwrap();
    let r = common::serve::request(&admin, "GET", "/.well-known/jwks.json", &[], "");
    assert_eq!(r.status, 200, "{r:?}");
    let jwks = r.json();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert!(keys[0].get("d").is_none(), "private part published: {jwks}");
    // Other admin requests still need the secret.
    let r = common::serve::request(&admin, "POST", "/revoke", &[], "{}");
    assert_eq!(r.status, 401);
}

/// Rotation as docs/trust-handoff.md says: publish the new key as
/// `previous` (reload), the service refreshes, swap (reload). A client
/// sends requests throughout; every assertion verifies behind.
#[test]
fn edge_key_rotation_under_load_has_zero_failures() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let Some(s) = stack() else { return };
    let s = Arc::new(s);
    let (verifier, inh) = service(&s);
    let (verifier, inh) = (Arc::new(verifier), Arc::new(inh));
    let token = s
        .env
        .issuer
        .mint(&s.env.issuer.first_kid(), &s.env.issuer.default_claims("alice", now()));
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let seen_kids = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let load = {
        let (s, verifier, inh, stop, ok, failed, seen) = (
            s.clone(),
            verifier.clone(),
            inh.clone(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
            seen_kids.clone(),
        );
        std::thread::spawn(move || {
            let auth = format!("Bearer {token}");
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) || i < 20 {
                i += 1;
                let path = format!("/api/o/{i}");
                let r = s.nginx.get(&path, &[("Authorization", &auth)]);
                let a = assertions(&echoed(&r));
                let verdict = a.first().map(|a| {
                    inh.verify(
                        &verifier,
                        a,
                        &Request {
                            method: "GET",
                            path: &path,
                        },
                        false,
                    )
                });
                match verdict {
                    Some(Ok(_)) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                        let header = a[0].split('.').next().unwrap().to_string();
                        seen.lock().unwrap().insert(header);
                    }
                    other => {
                        eprintln!("failure: {r:?} {other:?}");
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        })
    };
    let (k1, k2) = (s.kids[0].clone(), s.kids[1].clone());
    std::thread::sleep(std::time::Duration::from_millis(200));
    write_serve(&s.env, &s.serve_file, &k1, Some(&k2));
    s.serve.signal(libc::SIGHUP);
    s.serve.wait_for_reloads("ok", 1);
    // The service's scheduled refresh picks up the new key.
    verifier.refresh_issuer("edge-1").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // A request in flight across the swap: its assertion, signed by the
    // old key, is checked after the service refreshed to the new JWKS.
    let held_auth = format!(
        "Bearer {}",
        s.env
            .issuer
            .mint(&s.env.issuer.first_kid(), &s.env.issuer.default_claims("bob", now()))
    );
    let held = assertions(&echoed(&s.nginx.get("/api/held", &[("Authorization", &held_auth)])));
    write_serve(&s.env, &s.serve_file, &k2, Some(&k1));
    s.serve.signal(libc::SIGHUP);
    s.serve.wait_for_reloads("ok", 2);
    let refreshed = verifier.refresh_issuer("edge-1");
    let held = inh.verify(
        &verifier,
        &held[0],
        &Request {
            method: "GET",
            path: "/api/held",
        },
        false,
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap();
    refreshed.unwrap();
    held.expect("an assertion signed before the swap verifies after it");
    assert_eq!(failed.load(Ordering::SeqCst), 0);
    assert!(ok.load(Ordering::SeqCst) >= 20);
    // Both keys signed during the run.
    assert_eq!(seen_kids.lock().unwrap().len(), 2, "{:?}", seen_kids.lock().unwrap());
}

/// `[assertion.hs256.<audience>]` in serve's own config (as the engine
/// config's `assertion.hs256`): that audience's assertions are HS256 with
/// its own secret and `kid`, checked here by the independent `jsonwebtoken`
/// crate with that secret, bound to the forwarded method and path; no
/// nginx needed (the forwarded headers are sent to `/auth` directly).
#[test]
fn serve_mints_hs256_for_an_audience_with_its_own_secret() {
    use base64::Engine;
    let env = Env::with_issuer(TestIssuer::start());
    let edge_keys = TestIssuer::start_empty();
    let kid = edge_keys.add_key(Alg::EdDSA);
    let pem = env.dir.path().join("edge.pem");
    std::fs::write(&pem, edge_keys.private_key_pem(&kid)).unwrap();
    let secret = [7u8; 32];
    let secret_file = env.dir.path().join("orders.secret");
    std::fs::write(
        &secret_file,
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
    )
    .unwrap();
    let serve_file = env.dir.path().join("serve.toml");
    std::fs::write(
        &serve_file,
        format!(
            r#"
[[routes]]
prefix = "/api"

[assertion]
name = "edge-1"
audiences = {{ "/api" = "orders" }}
current = {{ kid = "{kid}", pem_file = "{pem}" }}

[assertion.hs256.orders]
current = {{ kid = "orders-1", secret_file = "{secret}" }}
"#,
            pem = pem.display(),
            secret = secret_file.display(),
        ),
    )
    .unwrap();
    let serve = Serve::start(&env.json_config, Some(&serve_file));
    let token = env
        .issuer
        .mint(&env.issuer.first_kid(), &env.issuer.default_claims("alice", now()));
    let auth = format!("Bearer {token}");
    let r = serve.get(
        "/auth",
        &[
            ("Authorization", &auth),
            ("X-Original-URI", "/api/orders/7?page=2"),
            ("X-Original-Method", "GET"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let a = r.header("x-jwtwarden-assertion").expect("an assertion").to_string();
    let header = jsonwebtoken::decode_header(&a).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::HS256);
    assert_eq!(header.kid.as_deref(), Some("orders-1"));
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["orders"]);
    validation.set_issuer(&["edge-1"]);
    let claims = jsonwebtoken::decode::<Value>(&a, &jsonwebtoken::DecodingKey::from_secret(&secret), &validation)
        .expect("jsonwebtoken verifies it with the audience's secret")
        .claims;
    assert_eq!(claims["htm"], "GET");
    assert_eq!(claims["htu"], "/api/orders/7");
    assert_eq!(claims["sub"], "alice");
    // Another secret does not verify it.
    let other = jsonwebtoken::decode::<Value>(&a, &jsonwebtoken::DecodingKey::from_secret(&[8u8; 32]), &validation);
    assert!(other.is_err());
}
