//! The admin API (in-process) and the `jwtwarden-testissuer` binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{get, raw_request, request};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{decode, DecodingKey, EncodingKey, Validation};
use jwtwarden_testissuer::{Alg, IssuerOptions, TestIssuer};
use serde_json::{json, Value};

fn admin(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let r = request(port, method, path, &[], body.as_deref());
    (r.status, r.json())
}

fn ok(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, v) = admin(port, method, path, body);
    assert_eq!(status, 200, "{method} {path}: {v}");
    v
}

fn verify_with(jwks: &Value, token: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("kid published");
    let jwk: Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let mut v = Validation::new(header.alg);
    v.set_audience(&["api"]);
    decode::<Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &v)
        .unwrap()
        .claims
}

/// Drives the whole admin API against `port` (in-process or the binary).
fn exercise_admin(port: u16, first_kid: &str) {
    let published = ok(port, "GET", "/admin/keys", None);
    assert_eq!(published, json!({"published": [first_kid]}));

    let kid = ok(port, "POST", "/admin/keys", Some(json!({"alg": "ES256"})))["kid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        ok(port, "GET", "/admin/keys", None)["published"],
        json!([first_kid, kid])
    );

    let private = ok(port, "GET", &format!("/admin/keys/{kid}/private"), None);
    assert_eq!(private["alg"], "ES256");
    EncodingKey::from_ec_pem(private["pem"].as_str().unwrap().as_bytes()).unwrap();
    let public = ok(port, "GET", &format!("/admin/keys/{kid}/public"), None);
    assert_eq!(public["jwk"]["kid"], kid.as_str());

    // Mint with explicit claims, with defaults, and with a custom header.
    let claims = json!({"iss": "x", "aud": "api", "sub": "dave", "exp": jsonwebtoken::get_current_timestamp() + 60});
    let token = ok(port, "POST", "/admin/mint", Some(json!({"kid": kid, "claims": claims})))["token"]
        .as_str()
        .unwrap()
        .to_string();
    let jwks = get(port, "/jwks.json").json();
    assert_eq!(verify_with(&jwks, &token), claims);
    let token = ok(port, "POST", "/admin/mint", Some(json!({"kid": first_kid})))["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(verify_with(&jwks, &token)["sub"], "user");
    let token = ok(
        port,
        "POST",
        "/admin/mint",
        Some(json!({"kid": kid, "claims": {"sub": "e"}, "header": {"alg": "ES256", "kid": kid, "jku": "http://127.0.0.1:9/x"}})),
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().jku.as_deref(),
        Some("http://127.0.0.1:9/x")
    );

    // Faults.
    ok(
        port,
        "POST",
        "/admin/fault",
        Some(json!({"kind": "status", "status": 503})),
    );
    assert_eq!(get(port, "/jwks.json").status, 503);
    ok(port, "POST", "/admin/fault", Some(json!({"kind": "drop"})));
    let raw = raw_request(port, "GET", "/jwks.json", &[], None);
    assert!(raw.as_ref().map_or(true, Vec::is_empty));
    ok(
        port,
        "POST",
        "/admin/fault",
        Some(json!({"kind": "oversized", "bytes": 50_000})),
    );
    assert_eq!(get(port, "/jwks.json").body.len(), 50_000);
    ok(port, "POST", "/admin/fault", Some(json!({"kind": "invalid_json"})));
    assert!(serde_json::from_slice::<Value>(&get(port, "/jwks.json").body).is_err());
    ok(
        port,
        "POST",
        "/admin/fault",
        Some(json!({"kind": "redirect", "location": "http://127.0.0.1:9/k"})),
    );
    assert_eq!(get(port, "/jwks.json").header("location"), Some("http://127.0.0.1:9/k"));
    ok(
        port,
        "POST",
        "/admin/fault",
        Some(json!({"kind": "delay", "delay_ms": 300})),
    );
    let t = Instant::now();
    assert_eq!(get(port, "/jwks.json").status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    ok(port, "POST", "/admin/fault", Some(json!({"kind": "none"})));
    assert_eq!(
        admin(port, "POST", "/admin/fault", Some(json!({"kind": "nope"}))).0,
        400
    );
    assert_eq!(
        admin(port, "POST", "/admin/fault", Some(json!({"kind": "redirect"}))).0,
        400
    );

    // Headers.
    ok(
        port,
        "POST",
        "/admin/headers",
        Some(json!({"cache_control": "max-age=60", "etag": true})),
    );
    let r = get(port, "/jwks.json");
    assert_eq!(r.header("cache-control"), Some("max-age=60"));
    let etag = r.header("etag").unwrap().to_string();
    let r = request(port, "GET", "/jwks.json", &[("If-None-Match", &etag)], None);
    assert_eq!(r.status, 304);
    ok(port, "POST", "/admin/headers", Some(json!({"cache_control": null})));
    let r = get(port, "/jwks.json");
    assert_eq!(r.header("cache-control"), None);
    assert!(r.header("etag").is_some(), "etag untouched when absent from the body");
    ok(port, "POST", "/admin/headers", Some(json!({"etag": false})));

    // Retire.
    ok(port, "DELETE", &format!("/admin/keys/{kid}"), None);
    assert_eq!(ok(port, "GET", "/admin/keys", None)["published"], json!([first_kid]));
    assert_eq!(admin(port, "DELETE", "/admin/keys/k-nope", None).0, 404);
    assert_eq!(
        admin(port, "POST", "/admin/mint", Some(json!({"kid": "k-nope"}))).0,
        404
    );
    assert_eq!(admin(port, "POST", "/admin/keys", Some(json!({"alg": "HS256"}))).0, 400);
    assert_eq!(admin(port, "GET", "/admin/unknown", None).0, 404);
    assert_eq!(request(port, "POST", "/admin/keys", &[], Some("{not json")).status, 400);

    // Stats: 10 JWKS fetches above plus one discovery and one unknown path; admin is never counted.
    get(port, "/.well-known/openid-configuration");
    get(port, "/unknown");
    let stats = ok(port, "GET", "/admin/stats", None);
    assert_eq!(stats["jwks_requests"], 10, "{stats}");
    assert_eq!(stats["discovery_requests"], 1);
    assert_eq!(stats["total_requests"], 12);
    assert_eq!(stats["paths"]["/unknown"], 1);
    ok(port, "POST", "/admin/reset", None);
    let stats = ok(port, "GET", "/admin/stats", None);
    assert_eq!(
        (
            &stats["jwks_requests"],
            &stats["discovery_requests"],
            &stats["total_requests"]
        ),
        (&json!(0), &json!(0), &json!(0))
    );
}

#[test]
fn admin_api_timeout_and_cache_faults_and_jwks_path() {
    let issuer = TestIssuer::start_with(&IssuerOptions {
        algs: vec![Alg::ES256],
        admin: true,
        ..IssuerOptions::default()
    })
    .unwrap();
    let port = issuer.port();
    let fault = |body: Value| ok(port, "POST", "/admin/fault", Some(body));

    fault(json!({"kind": "status", "status": 429, "retry_after": 30}));
    let r = get(port, "/jwks.json");
    assert_eq!((r.status, r.header("retry-after")), (429, Some("30")));
    fault(json!({"kind": "status", "status": 503, "retry_after": "Wed, 21 Oct 2099 07:28:00 GMT"}));
    let r = get(port, "/jwks.json");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("Wed, 21 Oct 2099 07:28:00 GMT"));
    let bad_retry = json!({"kind": "status", "status": 429, "retry_after": -1});
    assert_eq!(admin(port, "POST", "/admin/fault", Some(bad_retry)).0, 400);

    fault(json!({"kind": "not_modified"}));
    assert_eq!(get(port, "/jwks.json").status, 304);
    fault(json!({"kind": "slow_redirects", "hops": 1, "delay_ms": 50}));
    let r = get(port, "/jwks.json");
    assert_eq!(r.status, 302);
    assert_eq!(get(port, "/slow-redirect/1/jwks.json").status, 200);
    fault(json!({"kind": "hang"}));
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /jwks.json HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        assert!(s.read(&mut [0u8; 16]).is_err(), "a hanging issuer does not answer");
    }
    fault(json!({"kind": "none"}));

    let moved = ok(port, "POST", "/admin/jwks_path", Some(json!({"path": "/keys/v2"})));
    assert_eq!(moved["jwks_path"], "/keys/v2");
    assert_eq!(get(port, "/jwks.json").status, 404);
    assert_eq!(get(port, "/keys/v2").status, 200);
    let doc = get(port, "/.well-known/openid-configuration").json();
    assert_eq!(doc["jwks_uri"], format!("{}/keys/v2", issuer.url()));
    let taken = json!({"path": "/admin/x"});
    assert_eq!(admin(port, "POST", "/admin/jwks_path", Some(taken)).0, 400);
    ok(port, "POST", "/admin/jwks_path", Some(json!({"path": null})));
    assert_eq!(get(port, "/jwks.json").status, 200);

    let h = ok(
        port,
        "POST",
        "/admin/headers",
        Some(json!({"discovery_cache_control": "max-age=5"})),
    );
    assert_eq!(h["discovery_cache_control"], "max-age=5");
    let r = get(port, "/.well-known/openid-configuration");
    assert_eq!(r.header("cache-control"), Some("max-age=5"));
}

#[test]
fn admin_api_in_process() {
    let issuer = TestIssuer::start_with(&IssuerOptions {
        algs: vec![Alg::EdDSA],
        admin: true,
        ..IssuerOptions::default()
    })
    .unwrap();
    exercise_admin(issuer.port(), &issuer.first_kid());
    assert_eq!(issuer.total_requests(), 0);
    assert!(!issuer.shutdown_requested());
    ok(issuer.port(), "POST", "/admin/shutdown", None);
    assert!(issuer.shutdown_requested());
}

struct Child {
    child: std::process::Child,
    line: Value,
}

fn spawn_binary(args: &[&str]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jwtwarden-testissuer"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let line: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    Child { child, line }
}

fn port_of(line: &Value) -> u16 {
    let url = line["url"].as_str().unwrap();
    url.rsplit(':').next().unwrap().parse().unwrap()
}

fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if t.elapsed() > within {
            child.kill().ok();
            panic!("binary did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn binary_admin_api_and_stdin_eof() {
    let Child { mut child, line } = spawn_binary(&["--alg", "RS256", "--alg=ES384"]);
    let obj = line.as_object().unwrap();
    assert_eq!(obj.len(), 3, "{line}");
    let url = line["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"));
    assert_eq!(line["jwks_uri"], format!("{url}/jwks.json"));
    let port = port_of(&line);
    let first_kid = line["kid"].as_str().unwrap().to_string();
    let keys = ok(port, "GET", "/admin/keys", None)["published"].clone();
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert_eq!(keys[0], first_kid.as_str());
    ok(
        port,
        "DELETE",
        &format!("/admin/keys/{}", keys[1].as_str().unwrap()),
        None,
    );
    exercise_admin(port, &first_kid);

    drop(child.stdin.take()); // EOF on stdin stops the binary.
    assert!(wait_exit(&mut child, Duration::from_secs(3)).success());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn binary_admin_shutdown() {
    let Child { mut child, line } = spawn_binary(&[]);
    let port = port_of(&line);
    assert_eq!(get(port, "/jwks.json").json()["keys"][0]["alg"], "RS256");
    ok(port, "POST", "/admin/shutdown", None);
    assert!(wait_exit(&mut child, Duration::from_secs(3)).success());
}

#[cfg(unix)]
#[test]
fn binary_sigterm_and_fixed_port() {
    // Find a free port, then ask the binary to use it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Child { mut child, line } = spawn_binary(&["--port", &port.to_string(), "--alg", "EdDSA"]);
    assert_eq!(port_of(&line), port);
    assert_eq!(get(port, "/jwks.json").json()["keys"][0]["crv"], "Ed25519");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(wait_exit(&mut child, Duration::from_secs(3)).success());
}

#[test]
fn binary_rejects_bad_arguments() {
    for args in [&["--alg", "HS256"][..], &["--port", "x"], &["--bogus"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_jwtwarden-testissuer"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
    }
}
