//! `jwtwarden serve` alone, spoken to as a proxy would, against an
//! in-process test issuer: the refusal contract, routes, health, metrics,
//! the admin API, reload and shutdown.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::serve::{request, Serve};
use common::{now, Env};
use jwtwarden::ErrorKind;
use serde_json::json;

fn serve_file(env: &Env, name: &str, toml: &str) -> PathBuf {
    let p = env.dir.path().join(name);
    std::fs::write(&p, toml).unwrap();
    p
}

/// `serve` on the environment's issuers with `serve_toml` as its serve file.
fn start(env: &Env, serve_toml: &str) -> Serve {
    Serve::start(&env.json_config, Some(&serve_file(env, "serve.toml", serve_toml)))
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// The contract every refusal keeps: status, no-store, JSON body with kind,
/// code, category and message, and never the token.
fn assert_refusal(r: &common::serve::Resp, status: u16, kind: &str, token: Option<&str>) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let b = r.json();
    assert_eq!(b["error"], kind, "{r:?}");
    // An engine kind has its code; a refusal made outside the engine
    // (no token, malformed request, scopes) has none: docs/http.md.
    let outside_engine = matches!(kind, "missing_token" | "invalid_request" | "insufficient_scope");
    assert!(
        (b["code"].is_u64() || (outside_engine && b["code"].is_null()))
            && b["category"].is_string()
            && b["message"].is_string(),
        "{r:?}"
    );
    if let Some(t) = token {
        let sig = t.rsplit('.').next().unwrap();
        assert!(!r.body.contains(sig), "the body repeats the token: {r:?}");
    }
}

#[test]
fn answers_follow_the_refusal_contract() {
    let env = Env::new();
    let s = start(
        &env,
        "realm = \"api\"\n[claim_headers]\nsub = \"X-Auth-Subject\"\naud = \"X-Auth-Audience\"\n",
    );
    let good = env.good("alice");
    let r = s.get("/auth", &[("Authorization", &bearer(&good))]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-auth-subject"), Some("alice"));
    assert_eq!(r.header("x-auth-audience"), Some("api"));

    let r = s.get("/auth", &[]);
    assert_refusal(&r, 401, "missing_token", None);
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="api""#));
    let r = s.get("/auth", &[("Authorization", "Basic dXNlcjpwYXNz")]);
    assert_refusal(&r, 401, "missing_token", None);

    let r = s.get("/auth", &[("Authorization", "Bearer two words")]);
    assert_refusal(&r, 400, "invalid_request", None);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains(r#"error="invalid_request""#));

    let expired = env.with_claims(|c| c["exp"] = json!(now() - 3600), "alice");
    let r = s.get("/auth", &[("Authorization", &bearer(&expired))]);
    assert_refusal(&r, 401, "expired", Some(&expired));
    assert_eq!(r.json()["code"], ErrorKind::Expired.code());
    assert_eq!(r.json()["category"], "policy");
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="api", error="invalid_token", error_description="expired""#)
    );
    let r = s.get("/nope", &[]);
    assert_eq!(r.status, 404);
}

#[test]
fn keys_unavailable_is_503_with_retry_after_and_unhealthy() {
    let env = Env::new();
    let token = env.good("alice");
    let dead = env.dir.path().join("dead.json");
    std::fs::write(
        &dead,
        json!({"issuers": [{"issuer": env.issuer.url(), "jwks_uri": "http://127.0.0.1:9/jwks.json", "audiences": ["api"]}],
               "http": {"allow_http": true, "timeout_ms": 500}})
        .to_string(),
    )
    .unwrap();
    let s = Serve::start(&dead, Some(&serve_file(&env, "serve.toml", "retry_after_secs = 7\n")));
    let r = s.get("/auth", &[("Authorization", &bearer(&token))]);
    assert_refusal(&r, 503, "keys_unavailable", Some(&token));
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.header("www-authenticate"), None);
    let h = s.get("/healthz", &[]);
    assert_eq!(h.status, 503, "{h:?}");
    assert_eq!(h.json()["issuers"][env.issuer.url()], "failed_closed");

    let live = Serve::start(&env.json_config, None);
    let h = live.get("/healthz", &[]);
    assert_eq!(h.status, 200, "{h:?}");
    assert_eq!(h.json()["issuers"][env.issuer.url()], "fresh");
}

#[test]
fn routes_pick_rules_from_the_forwarded_uri() {
    let env = Env::new();
    let cfg = format!(
        r#"
[[routes]]
prefix = "/admin/"
scopes = ["admin"]
fresh = true
[[routes]]
prefix = "/public/"
open = true
[[routes]]
prefix = "/orders"
audiences = ["orders"]
issuer = "{}"
"#,
        env.issuer.url()
    );
    let s = start(&env, &cfg);
    let plain = env.good("alice");
    let admin = env.with_claims(|c| c["scope"] = json!("read admin"), "root");
    let orders = env.with_claims(|c| c["aud"] = json!(["api", "orders"]), "bob");
    let at = |uri: &str, token: Option<&str>| {
        let auth = token.map(bearer);
        let mut h = vec![("X-Original-URI", uri)];
        if let Some(a) = &auth {
            h.push(("Authorization", a));
        }
        s.get("/auth", &h)
    };
    assert_eq!(at("/public/logo.png", None).status, 200);
    assert_refusal(&at("/public/../admin/users", None), 401, "missing_token", None);
    let r = at("/admin/users", Some(&plain));
    assert_refusal(&r, 403, "insufficient_scope", Some(&plain));
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains(r#"error="insufficient_scope""#));
    assert_eq!(at("/admin/users?x=1", Some(&admin)).status, 200);
    assert_refusal(&at("/orders/7", Some(&plain)), 401, "invalid_audience", Some(&plain));
    assert_eq!(at("/orders/7", Some(&orders)).status, 200);
    assert_eq!(
        at("/other", Some(&plain)).status,
        200,
        "unmatched paths get the engine's rules"
    );
    // With routes configured, a request without the original URI cannot be
    // matched: refused rather than guessed.
    assert_refusal(
        &s.get("/auth", &[("Authorization", &bearer(&plain))]),
        400,
        "invalid_request",
        None,
    );
}

#[test]
fn envoy_sends_the_original_path_under_the_auth_path() {
    let env = Env::new();
    let cfg = "forwarded = \"envoy\"\n[[routes]]\nprefix = \"/admin\"\nscopes = [\"admin\"]\n";
    let s = start(&env, cfg);
    let plain = bearer(&env.good("alice"));
    assert_eq!(s.get("/auth/api/x?y=1", &[("Authorization", &plain)]).status, 200);
    assert_eq!(s.get("/auth/admin/x", &[("Authorization", &plain)]).status, 403);
    // A forwarded header is not trusted when the proxy is Envoy.
    let r = s.get("/auth/admin", &[("Authorization", &plain), ("X-Original-URI", "/api")]);
    assert_eq!(r.status, 403);
}

#[test]
fn metrics_has_engine_and_serve_counters() {
    let env = Env::new();
    let s = Serve::start(&env.json_config, None);
    let t = bearer(&env.good("alice"));
    for _ in 0..3 {
        assert_eq!(s.get("/auth", &[("Authorization", &t)]).status, 200);
    }
    assert_eq!(s.get("/auth", &[]).status, 401);
    let m = s.get("/metrics", &[]);
    assert_eq!(m.status, 200);
    assert!(
        m.body.contains("jwtwarden_serve_requests_total{status=\"200\"} 3"),
        "{}",
        m.body
    );
    assert!(
        m.body.contains("jwtwarden_serve_requests_total{status=\"401\"} 1"),
        "{}",
        m.body
    );
    assert!(
        m.body.contains("jwtwarden_serve_request_duration_seconds_count 4"),
        "{}",
        m.body
    );
    assert!(
        m.body.contains("jwtwarden_cache_events_total{event=\"hit\"} 2"),
        "{}",
        m.body
    );
    assert!(m.body.ends_with("# EOF\n"));
    assert_eq!(m.body.matches("# EOF").count(), 1);
}

#[test]
fn metrics_count_each_templates_tenants_under_a_template_label() {
    use jwtwarden_testissuer::{TenantIssuer, TenantMode};
    let idp = TenantIssuer::start(TenantMode::SharedKeys);
    let env = Env::new();
    let template = format!("{}/{{tenant}}/v2.0", idp.url());
    let config = env.dir.path().join("templates.json");
    let cfg = json!({
        "http": {"allow_http": true},
        "issuer_templates": [{
            "issuer": template,
            "tenant_pattern": "[a-z]+",
            "jwks_uri": format!("{}/common/keys", idp.url()),
            "tenant_claim": "tid",
            "audiences": ["api://orders"],
            "tenants": ["alpha", "beta"],
            "max_tenants": 1,
        }],
    });
    std::fs::write(&config, cfg.to_string()).unwrap();
    let s = Serve::start(&config, None);
    let now = now();
    let ok = |tenant: &str| s.get("/auth", &[("Authorization", &bearer(&idp.mint(tenant, "u", now)))]);
    assert_eq!(ok("alpha").status, 200);
    assert_eq!(ok("beta").status, 200, "beta evicts alpha (max_tenants 1)");
    assert_eq!(ok("gamma").status, 401, "not in the allowlist");
    let mut bad = idp.claims("alpha", "u", now);
    bad["iss"] = json!(format!("{}/Alpha1/v2.0", idp.url()));
    let r = s.get("/auth", &[("Authorization", &bearer(&idp.mint_as("alpha", &bad)))]);
    assert_eq!(r.status, 401, "tenant outside the pattern");
    let m = s.get("/metrics", &[]).body;
    let label = format!("template=\"{template}\"");
    for line in [
        format!("jwtwarden_template_tenants_held{{{label}}} 1"),
        format!("jwtwarden_template_tenants_materialised_total{{{label}}} 2"),
        format!("jwtwarden_template_tenants_evicted_total{{{label}}} 1"),
        format!("jwtwarden_template_tenants_refused_total{{{label},reason=\"allowlist\"}} 1"),
        format!("jwtwarden_template_tenants_refused_total{{{label},reason=\"pattern\"}} 1"),
        format!("jwtwarden_template_tenants_refused_total{{{label},reason=\"budget\"}} 0"),
        format!("jwtwarden_template_tenants_refused_total{{{label},reason=\"unavailable\"}} 0"),
    ] {
        assert!(m.lines().any(|l| l == line), "{line} not in:\n{m}");
    }
}

#[test]
fn admin_revocations_need_the_secret_and_survive_a_reload() {
    let env = Env::new();
    let cfg = "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"JWTWARDEN_TEST_ADMIN_SECRET\"\n";
    // Port 0 for the admin listener too: ask the kernel for any port.
    let s = start(&env, cfg);
    let admin = s.admin.clone().expect("admin listener");
    let token = env.with_claims(|c| c["jti"] = json!("j-1"), "alice");
    assert_eq!(s.get("/auth", &[("Authorization", &bearer(&token))]).status, 200);

    let r = request(
        &admin,
        "POST",
        "/revoke",
        &[("Authorization", "Bearer wrong-secret-0123456789")],
        r#"{"jti":"j-1"}"#,
    );
    assert_eq!(r.status, 401);
    assert_eq!(s.get("/auth", &[("Authorization", &bearer(&token))]).status, 200);
    // A jti is unique only within its issuer: one must be named.
    let r = s.revoke(&json!({"jti": "j-1"}));
    assert_eq!(r.status, 400, "{r:?}");
    let r = s.revoke(&json!({"issuer": env.issuer.url(), "jti": "j-1"}));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("\"propagation\":\"local\""), "{r:?}");
    let r = s.get("/auth", &[("Authorization", &bearer(&token))]);
    assert_refusal(&r, 401, "revoked", Some(&token));

    // A reload builds a new verifier; the revocation is replayed onto it.
    s.signal(libc::SIGHUP);
    s.wait_for_reloads("ok", 1);
    assert_refusal(
        &s.get("/auth", &[("Authorization", &bearer(&token))]),
        401,
        "revoked",
        Some(&token),
    );
    assert_eq!(s.revoke(&json!({"kid": "x"})).status, 400);
}

#[test]
fn an_invalid_reload_keeps_the_running_configuration() {
    let env = Env::new();
    let file = serve_file(&env, "serve.toml", "[claim_headers]\nsub = \"X-Auth-Subject\"\n");
    let s = Serve::start(&env.json_config, Some(&file));
    let t = bearer(&env.good("alice"));
    std::fs::write(&file, "[claim_headers]\nsub = \"X-User\"\n").unwrap();
    s.signal(libc::SIGHUP);
    s.wait_for_reloads("ok", 1);
    assert_eq!(s.get("/auth", &[("Authorization", &t)]).header("x-user"), Some("alice"));
    std::fs::write(&file, "[claim_headers]\nsub = \"Content-Length\"\n").unwrap();
    s.signal(libc::SIGHUP);
    s.wait_for_reloads("failed", 1);
    let r = s.get("/auth", &[("Authorization", &t)]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-user"), Some("alice"), "the last good configuration stays");
}

#[test]
fn header_count_and_size_limits_answer_431_and_verify_nothing() {
    let env = Env::new();
    let s = start(&env, "max_request_header_bytes = 8192\n");
    let t = bearer(&env.good("alice"));
    let pads: Vec<(String, String)> = (0..99).map(|i| (format!("X-Pad-{i}"), "x".into())).collect();
    let with = |n: usize| -> Vec<(&str, &str)> {
        let mut h = vec![("Authorization", t.as_str())];
        h.extend(pads[..n].iter().map(|(k, v)| (k.as_str(), v.as_str())));
        h
    };
    // Host + Authorization + 98 more: 100 headers, the most allowed.
    assert_eq!(
        common::serve::request(&s.addr, "GET", "/auth", &with(98), "").status,
        200
    );
    // One more is refused before anything is verified.
    let before = common::serve::request(&s.addr, "GET", "/metrics", &[], "").body;
    assert_eq!(
        common::serve::request(&s.addr, "GET", "/auth", &with(99), "").status,
        431
    );
    // So is a header block over max_request_header_bytes.
    let big = "x".repeat(9000);
    let r = common::serve::request(&s.addr, "GET", "/auth", &[("Authorization", &t), ("X-Big", &big)], "");
    assert_eq!(r.status, 431);
    let verified = |m: &str| {
        m.lines()
            .filter(|l| l.starts_with("jwtwarden_verifications_total"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let after = common::serve::request(&s.addr, "GET", "/metrics", &[], "").body;
    assert_eq!(
        verified(&before),
        verified(&after),
        "a refused request verified nothing"
    );
    // And the server still answers.
    assert_eq!(
        common::serve::request(&s.addr, "GET", "/auth", &with(0), "").status,
        200
    );
}

#[test]
fn keep_alive_slow_clients_and_graceful_shutdown() {
    let env = Env::new();
    let s = start(&env, "header_read_timeout_ms = 300\n");
    let t = env.good("alice");

    // Two requests on one connection.
    let mut c = TcpStream::connect(&s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!("GET /auth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\n\r\n");
    for _ in 0..2 {
        c.write_all(req.as_bytes()).unwrap();
        let mut buf = [0u8; 1024];
        let n = c.read(&mut buf).unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }

    // A client that never finishes its header is cut off.
    let mut slow = TcpStream::connect(&s.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    slow.write_all(b"GET /auth HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "slow client held for {:?}",
        started.elapsed()
    );

    // SIGTERM: exits 0.
    let mut s = s;
    s.signal(libc::SIGTERM);
    let status = s.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_unix_socket_listener_answers_takes_over_a_stale_socket_and_refuses_a_live_one() {
    let env = Env::new();
    let path = env.dir.path().join("serve.sock");
    let listen = format!("unix:{}", path.display());
    let config = serve_file(&env, "serve.toml", "[claim_headers]\nsub = \"X-Auth-Subject\"\n");

    // A socket file left behind by a server that did not stop cleanly.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let s = Serve::start_on(&listen, &env.json_config, Some(&config));
    assert_eq!(s.addr, listen);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "socket_mode's default: the server's user and group");

    let t = env.good("alice");
    let r = request(&s.addr, "GET", "/auth", &[("Authorization", &bearer(&t))], "");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-auth-subject"), Some("alice"));
    // One signature character changed, well inside the signature.
    let mut forged = t.clone().into_bytes();
    let i = t.len() - 20;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let r = request(&s.addr, "GET", "/auth", &[("Authorization", &bearer(&forged))], "");
    assert_refusal(&r, 401, "invalid_signature", Some(&forged));

    // A second server on the same path is refused: the first is alive.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_jwtwarden"))
        .args(["serve", "--listen", &listen, "--config"])
        .arg(&env.json_config)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2), "{second:?}");
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already listening"),
        "{second:?}"
    );
    let r = request(&s.addr, "GET", "/auth", &[("Authorization", &bearer(&t))], "");
    assert_eq!(r.status, 200, "the running server keeps its socket");

    // A path that is not a socket is never removed.
    let file = env.dir.path().join("not-a-socket");
    std::fs::write(&file, "data").unwrap();
    let third = std::process::Command::new(env!("CARGO_BIN_EXE_jwtwarden"))
        .args(["serve", "--listen", &format!("unix:{}", file.display()), "--config"])
        .arg(&env.json_config)
        .output()
        .unwrap();
    assert_eq!(third.status.code(), Some(2), "{third:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");

    // SIGTERM: the socket file goes with the server.
    let mut s = s;
    s.signal(libc::SIGTERM);
    assert!(s.child.wait().unwrap().success());
    assert!(!path.exists(), "the socket file is removed at shutdown");
}

/// The environment's engine configuration with `extra` merged in at the top
/// level (`state_dir`, `revocation`, `http`...).
fn engine_with(env: &Env, name: &str, extra: serde_json::Value) -> PathBuf {
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&env.json_config).unwrap()).unwrap();
    for (k, v) in extra.as_object().unwrap() {
        match (cfg.get_mut(k), v) {
            (Some(serde_json::Value::Object(into)), serde_json::Value::Object(from)) => {
                into.extend(from.clone());
            }
            _ => cfg[k] = v.clone(),
        }
    }
    let p = env.dir.path().join(name);
    std::fs::write(&p, cfg.to_string()).unwrap();
    p
}

/// Poll until `f` holds; fail after 20 s (a bound for something broken,
/// not a timing assertion).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `jwtwarden_serve_reloads_total` counter for `result` now.
fn reloads(s: &Serve, result: &str) -> u64 {
    let want = format!("jwtwarden_serve_reloads_total{{result=\"{result}\"}} ");
    let body = s.get("/metrics", &[]).body;
    body.lines()
        .find_map(|l| l.strip_prefix(&want))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no reload counter in {body}"))
}

/// Calls of one command Redis has answered, from `INFO commandstats`.
fn redis_calls(redis: &jwtwarden_testissuer::redis::RedisServer, command: &str) -> u64 {
    let info = redis.command(&["INFO", "commandstats"]).expect("redis answers");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// Issue 23, item 3: without `state_dir`, what the fleet feed taught serve
/// lives in memory only; a SIGHUP while Redis is down must not forget it.
#[test]
fn a_reload_during_a_redis_outage_keeps_the_fleets_revocations() {
    let Some(mut redis) = jwtwarden_testissuer::redis::RedisServer::start() else {
        return;
    };
    let env = Env::new();
    let engine = engine_with(
        &env,
        "fleet.json",
        json!({"revocation": {"redis": {"url": redis.url(), "timeout_ms": 1000, "max_stale_secs": 3600}}}),
    );
    let s = Serve::start(&engine, None);
    let token = env.with_claims(|c| c["jti"] = json!("j-fleet"), "alice");
    let auth = bearer(&token);
    assert_eq!(s.get("/auth", &[("Authorization", &auth)]).status, 200);
    // Another process of the fleet revokes.
    let revoker = jwtwarden::Revoker::new(jwtwarden::Config::from_path(&engine).unwrap()).unwrap();
    assert_eq!(
        revoker.revoke_jti(&env.issuer.url(), "j-fleet", None).unwrap(),
        jwtwarden::Propagation::Fleet
    );
    eventually("serve learns the revocation from the feed", || {
        s.get("/auth", &[("Authorization", &auth)]).status == 401
    });
    redis.stop();
    s.signal(libc::SIGHUP);
    s.wait_for_reloads("ok", 1);
    assert_refusal(
        &s.get("/auth", &[("Authorization", &auth)]),
        401,
        "revoked",
        Some(&token),
    );
}

/// Issue 23, item 6: a reload fetches every issuer's keys; while it waits,
/// serve keeps answering on the running state. The issuer holds the
/// reload's JWKS request unanswered (up to http.timeout_ms, 60 s, so the
/// reload counter cannot move before the answers) until the test stops it.
#[test]
fn a_reload_waiting_for_keys_blocks_no_answer_and_merges_signals() {
    let env = Env::new();
    let engine = engine_with(&env, "slow.json", json!({"http": {"timeout_ms": 60_000}}));
    let s = Serve::start(&engine, None);
    let auth = bearer(&env.good("alice"));
    assert_eq!(s.get("/auth", &[("Authorization", &auth)]).status, 200);
    let fetched = env.issuer.jwks_requests();
    env.issuer.set_fault(jwtwarden_testissuer::Fault::Hang);
    // The reload changes the issuer (one more audience), so it is rebuilt
    // and its keys fetched again: a reload is in place since issue 27, and
    // an unchanged issuer would keep its keys without a fetch.
    changed_issuer(&env, "slow.json", json!({"http": {"timeout_ms": 60_000}}));
    s.signal(libc::SIGHUP);
    eventually("the reload's key fetch reaches the issuer", || {
        env.issuer.jwks_requests() > fetched
    });
    // New connections, a cached token, the metrics: all answered now, on
    // the running verifier.
    for _ in 0..3 {
        let r = s.get("/auth", &[("Authorization", &auth)]);
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert_eq!(
        (reloads(&s, "ok"), reloads(&s, "failed")),
        (0, 0),
        "answered only once the reload ended"
    );
    // More signals during the reload are merged into one more reload.
    for _ in 0..3 {
        s.signal(libc::SIGHUP);
    }
    // Release the held request: the issuer goes away. Its keys cannot be
    // fetched, so each reload from now on is refused (the running verifier
    // keeps its last good keys): count reloads that ended, either way.
    let Env { issuer, .. } = env;
    drop(issuer);
    let ended = |s: &Serve| reloads(s, "ok") + reloads(s, "failed");
    eventually("the merged reload ends", || ended(&s) >= 2);
    // A last, separate reload: had the merged signals queued one reload
    // each, this one would end as the fifth, not the third.
    s.signal(libc::SIGHUP);
    eventually("the last reload ends", || ended(&s) >= 3);
    assert_eq!(ended(&s), 3);
    assert_eq!(s.get("/auth", &[("Authorization", &auth)]).status, 200);
}

/// Issue 23, item 9c: serve kept its own log of admin revocations and
/// replayed it on every reload, each time re-journaling (fsynced) and
/// re-publishing every record. With trust carried across, a reload writes
/// and publishes nothing, and the revocation still holds.
#[test]
fn reloads_neither_journal_nor_publish_admin_revocations_again() {
    let Some(redis) = jwtwarden_testissuer::redis::RedisServer::start() else {
        return;
    };
    let env = Env::new();
    let state_dir = env.dir.path().join("state");
    let engine = engine_with(
        &env,
        "durable.json",
        json!({"state_dir": state_dir, "revocation": {"redis": {"url": redis.url(), "timeout_ms": 1000}}}),
    );
    let serve_cfg = serve_file(
        &env,
        "admin.toml",
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"JWTWARDEN_TEST_ADMIN_SECRET\"\n",
    );
    let s = Serve::start(&engine, Some(&serve_cfg));
    let token = env.with_claims(|c| c["jti"] = json!("j-admin"), "alice");
    let auth = bearer(&token);
    assert_eq!(s.get("/auth", &[("Authorization", &auth)]).status, 200);
    let r = s.revoke(&json!({"issuer": env.issuer.url(), "jti": "j-admin"}));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("\"propagation\":\"fleet\""), "{r:?}");
    let journal = state_dir.join("revocations.jsonl");
    let lines = || std::fs::read_to_string(&journal).unwrap().lines().count();
    let (lines_before, published_before) = (lines(), redis_calls(&redis, "publish"));
    assert_eq!((lines_before, published_before), (1, 1));
    for n in 1..=3 {
        s.signal(libc::SIGHUP);
        s.wait_for_reloads("ok", n);
    }
    assert_refusal(
        &s.get("/auth", &[("Authorization", &auth)]),
        401,
        "revoked",
        Some(&token),
    );
    assert_eq!(lines(), lines_before, "a reload journaled the revocation again");
    assert_eq!(
        redis_calls(&redis, "publish"),
        published_before,
        "a reload published the revocation again"
    );
}

/// Beside issue 23's items: keys are trust state too. Without `state_dir`,
/// a reload while an issuer is down built a verifier without that issuer's
/// keys and swapped it in: every token of the issuer was refused (503)
/// though the running verifier held its last good keys. Since issue 27 the
/// reload is in place: an unchanged issuer keeps its keys (nothing is
/// fetched, the reload succeeds); a changed one whose keys cannot be
/// fetched does not replace the running one (the reload fails).
#[test]
fn a_reload_during_an_issuer_outage_keeps_its_last_good_keys() {
    let env = Env::new();
    let engine = engine_with(&env, "outage.json", json!({}));
    let s = Serve::start(&engine, None);
    let before = bearer(&env.good("alice"));
    assert_eq!(s.get("/auth", &[("Authorization", &before)]).status, 200);
    env.issuer.set_fault(jwtwarden_testissuer::Fault::Status(503));
    let fetched = env.issuer.jwks_requests();
    s.signal(libc::SIGHUP);
    s.wait_for_reloads("ok", 1);
    assert_eq!(
        env.issuer.jwks_requests(),
        fetched,
        "an unchanged issuer's keys were fetched again"
    );
    assert_eq!(s.get("/auth", &[("Authorization", &before)]).status, 200);
    // The issuer changed during the outage: refused, the running keys stay.
    changed_issuer(&env, "outage.json", json!({}));
    s.signal(libc::SIGHUP);
    s.wait_for_reloads("failed", 1);
    // Cached or verified afresh on the running verifier's keys.
    assert_eq!(s.get("/auth", &[("Authorization", &before)]).status, 200);
    let r = s.get("/auth", &[("Authorization", &bearer(&env.good("bob")))]);
    assert_eq!(r.status, 200, "{r:?}");
    // Once the issuer answers, the reload goes through.
    env.issuer.set_fault(jwtwarden_testissuer::Fault::None);
    s.signal(libc::SIGHUP);
    s.wait_for_reloads("ok", 2);
    assert_eq!(s.get("/auth", &[("Authorization", &before)]).status, 200);
}

/// Rewrite the engine configuration `name` with `env`'s issuer changed (one
/// more audience) and `extra` merged in.
fn changed_issuer(env: &Env, name: &str, mut extra: serde_json::Value) -> PathBuf {
    extra["issuers"] = json!([{
        "issuer": env.issuer.url(), "jwks_uri": env.issuer.jwks_uri(), "audiences": ["api", "other"],
    }]);
    engine_with(env, name, extra)
}

/// The verifier's cache events of `event` (`hit`, `miss`) in `/metrics`.
fn cache_events(s: &Serve, event: &str) -> u64 {
    let want = format!("jwtwarden_cache_events_total{{event=\"{event}\"}} ");
    let body = s.get("/metrics", &[]).body;
    body.lines()
        .find_map(|l| l.strip_prefix(&want))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no cache {event} counter in {body}"))
}

/// Issue 27: SIGHUP reloads in place. A cached token of an issuer whose
/// configuration did not change stays cached (no JWKS fetch); a removed
/// issuer's token, cached until then, is refused after the reload.
#[test]
fn a_reload_keeps_unchanged_issuers_cached_and_refuses_removed_ones() {
    let env = Env::new();
    let other = jwtwarden_testissuer::TestIssuer::start();
    let entry = |i: &jwtwarden_testissuer::TestIssuer| json!({"issuer": i.url(), "jwks_uri": i.jwks_uri(), "audiences": ["api"]});
    let engine = engine_with(
        &env,
        "two.json",
        json!({"issuers": [entry(&env.issuer), entry(&other)]}),
    );
    let s = Serve::start(&engine, None);
    let kept = bearer(&env.good("alice"));
    let removed_token = other.mint(&other.first_kid(), &other.default_claims("bob", now()));
    let removed = bearer(&removed_token);
    for _ in 0..2 {
        assert_eq!(s.get("/auth", &[("Authorization", &kept)]).status, 200);
        assert_eq!(s.get("/auth", &[("Authorization", &removed)]).status, 200);
    }
    let (fetched, hits, misses) = (
        env.issuer.jwks_requests(),
        cache_events(&s, "hit"),
        cache_events(&s, "miss"),
    );
    engine_with(&env, "two.json", json!({"issuers": [entry(&env.issuer)]}));
    s.signal(libc::SIGHUP);
    s.wait_for_reloads("ok", 1);
    assert_eq!(s.get("/auth", &[("Authorization", &kept)]).status, 200);
    assert_eq!(
        cache_events(&s, "hit"),
        hits + 1,
        "the unchanged issuer's token is still a cache hit"
    );
    assert_eq!(cache_events(&s, "miss"), misses);
    assert_eq!(
        env.issuer.jwks_requests(),
        fetched,
        "the unchanged issuer's keys were fetched again"
    );
    let r = s.get("/auth", &[("Authorization", &removed)]);
    assert_refusal(&r, 401, "unknown_issuer", Some(&removed_token));
}

/// Admin revocations made while reloads carry trust state and swap: each
/// lands in the running verifier before the carry or in the new one after
/// the swap, never in one that is then dropped.
#[test]
fn admin_revocations_racing_reloads_all_hold() {
    let env = Env::new();
    let s = start(
        &env,
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"JWTWARDEN_TEST_ADMIN_SECRET\"\n",
    );
    let tokens: Vec<String> = (0..16)
        .map(|i| env.with_claims(|c| c["jti"] = json!(format!("j-race-{i}")), "alice"))
        .collect();
    for t in &tokens {
        assert_eq!(s.get("/auth", &[("Authorization", &bearer(t))]).status, 200);
    }
    std::thread::scope(|sc| {
        sc.spawn(|| {
            for n in 1..=6 {
                s.signal(libc::SIGHUP);
                s.wait_for_reloads("ok", n);
            }
        });
        for i in 0..tokens.len() {
            let r = s.revoke(&json!({"issuer": env.issuer.url(), "jti": format!("j-race-{i}")}));
            assert_eq!(r.status, 200, "{r:?}");
        }
    });
    for t in &tokens {
        assert_refusal(
            &s.get("/auth", &[("Authorization", &bearer(t))]),
            401,
            "revoked",
            Some(t),
        );
    }
}

/// Issue 23: a journal holding more live revocations than
/// `revocation.max_entries` makes every verification fail closed
/// (`revocation_list_full`). Without a fleet feed that state showed only in
/// the metrics: `/healthz` said 200 while every request was refused.
#[test]
fn a_journal_that_no_longer_fits_turns_healthz() {
    let env = Env::new();
    let state = env.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let until = (now() + 3600) * 1000;
    let lines: String = (0..3)
        .map(|i| {
            json!({"kind": "jti", "iss": env.issuer.url(), "value": format!("j-{i}"), "until_ms": until}).to_string()
                + "\n"
        })
        .collect();
    std::fs::write(state.join("revocations.jsonl"), lines).unwrap();
    let cfg = env.dir.path().join("small.json");
    std::fs::write(
        &cfg,
        json!({"issuers": [{"issuer": env.issuer.url(), "jwks_uri": env.issuer.jwks_uri(), "audiences": ["api"]}],
               "http": {"allow_http": true},
               "state_dir": state,
               "revocation": {"max_entries": 2}})
        .to_string(),
    )
    .unwrap();
    let s = Serve::start(&cfg, None);
    let token = env.good("alice");
    let r = s.get("/auth", &[("Authorization", &bearer(&token))]);
    assert_eq!(r.json()["error"], "revocation_list_full", "{r:?}");
    let h = s.get("/healthz", &[]);
    assert_eq!(h.status, 503, "{h:?}");
    assert_eq!(h.json()["revocations"], "incomplete", "{h:?}");
}

/// Issue 24, one revocation record: the admin body is read into the core's
/// `Revocation`. A body that names two things (a `jti` and a `kid`) is
/// refused with 400, not read as one of them and answered 200 while the
/// other stays trusted.
#[test]
fn admin_refuses_a_revocation_that_names_two_things() {
    let env = Env::new();
    let cfg = "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"JWTWARDEN_TEST_ADMIN_SECRET\"\n";
    let s = start(&env, cfg);
    let token = env.with_claims(|c| c["jti"] = json!("j-2"), "alice");
    let kid = env.issuer.first_kid();
    let r = s.revoke(&json!({"issuer": env.issuer.url(), "jti": "j-2", "kid": kid}));
    assert_eq!(r.status, 400, "{r:?}");
    let r = s.revoke(&json!({"issuer": env.issuer.url(), "kid": kid, "exp": 5}));
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(s.get("/auth", &[("Authorization", &bearer(&token))]).status, 200);
    // The subject shape with its default cut-off still reads.
    let r = s.revoke(&json!({"issuer": env.issuer.url(), "sub": "alice"}));
    assert_eq!(r.status, 200, "{r:?}");
    let r = s.get("/auth", &[("Authorization", &bearer(&token))]);
    assert_refusal(&r, 401, "revoked", Some(&token));
}
