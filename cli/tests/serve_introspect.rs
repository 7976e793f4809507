//! Issue 28, first part: RFC 7662 introspection in `jwtwarden serve`, a real
//! serve process against the in-process test issuer. Each test is the one a
//! resource server at the edge, or an attacker without credentials, would
//! write: inactive for everything that is not valid now (and never why),
//! nothing verified for a caller without credentials, answers from the
//! cache, an outage that is not a revocation, bounded bodies, rate limits,
//! and tokens kept out of the log.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::serve::{parse_response, request, Resp, ADMIN_SECRET};
use common::{alg_none_token, foreign_key_token, now, Env};
use jwtwarden_testissuer::TestIssuer;
use serde_json::{json, Value};

const ORDERS_SECRET: &str = "orders-introspection-secret-0001";
const BILLING_SECRET: &str = "billing-introspection-secret-0002";

/// A serve process with introspection on, its stderr (at `-vv`) kept in a
/// file.
struct Serve {
    child: Child,
    addr: String,
    admin: String,
    introspect: String,
    log: std::path::PathBuf,
}

impl Serve {
    /// Start serve on `engine` with `extra` added to the `[introspection]`
    /// section, two clients (`orders` by env, `billing` by file) and an
    /// admin listener.
    fn start(env: &Env, engine: &Path, extra: &str) -> Serve {
        let dir = env.dir.path();
        std::fs::write(dir.join("billing-secret"), format!("{BILLING_SECRET}\n")).unwrap();
        let serve = dir.join("serve-introspect.toml");
        std::fs::write(
            &serve,
            format!(
                "cached_header = \"X-Auth-Cached\"\n\
                 [admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"JWTWARDEN_TEST_ADMIN_SECRET\"\n\
                 [introspection]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 4096\n{extra}\n\
                 [[introspection.clients]]\nid = \"orders\"\nsecret_env = \"JWTWARDEN_TEST_INTROSPECT_ORDERS\"\n\
                 [[introspection.clients]]\nid = \"billing\"\nsecret_file = \"{}\"\n",
                dir.join("billing-secret").display()
            ),
        )
        .unwrap();
        let log = dir.join("serve.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_jwtwarden"))
            .arg("-vv")
            .arg("serve")
            .arg("--config")
            .arg(engine)
            .arg("--serve-config")
            .arg(&serve)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env("JWTWARDEN_TEST_ADMIN_SECRET", ADMIN_SECRET)
            .env("JWTWARDEN_TEST_INTROSPECT_ORDERS", ORDERS_SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start jwtwarden serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "serve printed {line:?}: {e}; log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        Serve {
            addr: v["listen"].as_str().unwrap().to_string(),
            admin: v["admin"].as_str().unwrap().to_string(),
            introspect: v["introspection"].as_str().expect("introspection address").to_string(),
            child,
            log,
        }
    }

    /// Introspect `token` (form-encoded) with `authorization`; every answer
    /// is checked for `Cache-Control: no-store`.
    fn ask_as(&self, authorization: Option<&str>, token: &str) -> Resp {
        let body = format!("token={}&token_type_hint=access_token", form_encode(token));
        self.post(authorization, "application/x-www-form-urlencoded", &body)
    }

    /// Introspect as the `orders` client (bearer secret).
    fn ask(&self, token: &str) -> Resp {
        self.ask_as(Some(&format!("Bearer {ORDERS_SECRET}")), token)
    }

    fn post(&self, authorization: Option<&str>, content_type: &str, body: &str) -> Resp {
        let mut h = vec![("Content-Type", content_type)];
        if let Some(a) = authorization {
            h.push(("Authorization", a));
        }
        let r = request(&self.introspect, "POST", "/introspect", &h, body);
        assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");
        r
    }

    /// The `jwtwarden_verifications_total` lines of `/metrics`.
    fn verifications(&self) -> String {
        request(&self.addr, "GET", "/metrics", &[], "")
            .body
            .lines()
            .filter(|l| l.starts_with("jwtwarden_verifications_total"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

fn assert_inactive(r: &Resp, what: &str) {
    assert_eq!(r.status, 200, "{what}: {r:?}");
    assert_eq!(r.json(), json!({"active": false}), "{what}: nothing but active=false");
}

/// The parts of a token that would identify it in a log: the whole token
/// and its signature (none for a few bytes of garbage, which any log line
/// may contain by chance).
fn secrets_of(token: &str) -> Vec<String> {
    if token.len() < 20 {
        return Vec::new();
    }
    let mut v = vec![token.to_string()];
    if let Some(sig) = token.rsplit('.').next().filter(|s| s.len() >= 16) {
        v.push(sig.to_string());
    }
    v
}

#[test]
fn active_only_for_a_valid_token_and_never_why_not() {
    let env = Env::new();
    let s = Serve::start(&env, &env.json_config, "");
    let good = env.with_claims(
        |c| {
            c["scope"] = json!(["read", "write"]);
            c["client_id"] = json!("spa");
            // A token cannot speak for the server.
            c["active"] = json!(false);
            c["token_type"] = json!("DPoP");
        },
        "alice",
    );
    let r = s.ask(&good);
    assert_eq!(r.status, 200, "{r:?}");
    let b = r.json();
    assert_eq!(b["active"], true, "{b}");
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["iss"], env.issuer.url());
    assert_eq!(b["sub"], "alice");
    assert_eq!(b["aud"], "api");
    assert_eq!(b["scope"], "read write", "RFC 7662 §2.2: space-separated");
    assert_eq!(b["client_id"], "spa");
    assert!(b["exp"].is_u64() && b["iat"].is_u64() && b["jti"].is_string(), "{b}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    // HTTP Basic, the other client.
    let r = s.ask_as(Some(&basic("billing", BILLING_SECRET)), &env.good("bob"));
    assert_eq!(r.json()["active"], true, "{r:?}");
    assert_eq!(r.json()["sub"], "bob");

    let stranger = TestIssuer::start();
    let strangers = stranger.mint(&stranger.first_kid(), &stranger.default_claims("eve", now()));
    let revoked = env.good("carol");
    assert_eq!(s.ask(&revoked).json()["active"], true, "valid before the revocation");
    let jti = s.ask(&revoked).json()["jti"].as_str().unwrap().to_string();
    let r = request(
        &s.admin,
        "POST",
        "/revoke",
        &[("Authorization", &format!("Bearer {ADMIN_SECRET}"))],
        &json!({"issuer": env.issuer.url(), "jti": jti}).to_string(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let expired = env.with_claims(|c| c["exp"] = json!(now() - 3600), "alice");
    let not_yet = env.with_claims(|c| c["nbf"] = json!(now() + 3600), "alice");
    let wrong_aud = env.with_claims(|c| c["aud"] = json!("other"), "alice");
    let forged = foreign_key_token(&env.issuer, &env.issuer.first_kid());
    let none = alg_none_token(&env.issuer);
    let mut tampered = good.clone();
    tampered.insert(tampered.find('.').unwrap() + 2, 'x');
    let cases = [
        ("revoked (admin /revoke, after a cached success)", revoked.as_str()),
        ("expired", &expired),
        ("not yet valid", &not_yet),
        ("another audience", &wrong_aud),
        ("forged under a known kid", &forged),
        ("alg none", &none),
        ("unknown issuer", &strangers),
        ("tampered payload", &tampered),
        ("garbage", "garbage"),
        ("three dots of garbage", "a.b.c"),
        ("empty", ""),
    ];
    for (what, token) in cases {
        assert_inactive(&s.ask(token), what);
    }
    let log = s.log();
    for (what, token) in cases.iter().chain([("valid", good.as_str())].iter()) {
        for secret in secrets_of(token) {
            assert!(!log.contains(&secret), "{what}: the token is in serve's log");
        }
    }
    for secret in [ORDERS_SECRET, BILLING_SECRET] {
        assert!(!log.contains(secret), "a client secret is in serve's log");
    }
    assert!(log.contains("client orders: inactive (expired)"), "{log}");
    assert!(log.contains("client orders: inactive (revoked)"), "{log}");
    assert!(log.contains("client orders: inactive (unknown_issuer)"), "{log}");
}

#[test]
fn callers_without_credentials_get_401_and_nothing_is_verified() {
    let env = Env::new();
    let s = Serve::start(&env, &env.json_config, "");
    // A token whose verification would fetch (an unknown kid): if any of
    // these requests reached the engine, the issuer would see it.
    let unknown_kid = env.issuer.mint_with_header(
        &env.issuer.first_kid(),
        &json!({"alg": "RS256", "typ": "JWT", "kid": "never-published"}),
        &env.issuer.default_claims("alice", now()),
    );
    let good = env.good("alice");
    let fetches = env.issuer.jwks_requests();
    let verified = s.verifications();
    let attempts: Vec<(&str, Option<String>)> = vec![
        ("no credentials", None),
        (
            "a wrong bearer secret",
            Some("Bearer orders-introspection-secret-0000".into()),
        ),
        (
            "a prefix of the secret",
            Some(format!("Bearer {}", &ORDERS_SECRET[..20])),
        ),
        ("the secret and more", Some(format!("Bearer {ORDERS_SECRET}x"))),
        (
            "Basic, wrong secret",
            Some(basic("orders", "orders-introspection-secret-0000")),
        ),
        ("Basic, another client's secret", Some(basic("orders", BILLING_SECRET))),
        ("Basic, unknown client", Some(basic("mallory", ORDERS_SECRET))),
        ("Basic, secret as the id", Some(basic(ORDERS_SECRET, ""))),
        ("Basic, not base64", Some("Basic !!!!".into())),
        ("another scheme", Some(format!("Digest {ORDERS_SECRET}"))),
        ("the token itself as the secret", Some(format!("Bearer {good}"))),
    ];
    for (what, auth) in &attempts {
        for token in [&unknown_kid, &good] {
            let r = s.ask_as(auth.as_deref(), token);
            assert_eq!(r.status, 401, "{what}: {r:?}");
            let challenges: Vec<&str> = r
                .headers
                .iter()
                .filter(|(n, _)| n == "www-authenticate")
                .map(|(_, v)| v.as_str())
                .collect();
            assert!(
                challenges.iter().any(|c| c.starts_with("Basic realm="))
                    && challenges.iter().any(|c| c.starts_with("Bearer realm=")),
                "{what}: {r:?}"
            );
            assert!(!r.body.contains("active"), "{what}: {r:?}");
        }
    }
    // Two Authorization headers: ambiguous, refused even with one right.
    let r = request(
        &s.introspect,
        "POST",
        "/introspect",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Authorization", &format!("Bearer {ORDERS_SECRET}")),
            ("Authorization", "Bearer nope-nope-nope-nope"),
        ],
        &format!("token={good}"),
    );
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        env.issuer.jwks_requests(),
        fetches,
        "an unauthenticated request fetched keys"
    );
    assert_eq!(s.verifications(), verified, "an unauthenticated request was verified");
    // The same token with credentials is verified (and is inactive).
    assert_inactive(&s.ask(&unknown_kid), "unknown kid");
}

#[test]
fn answers_come_from_the_same_cache_as_forward_auth() {
    let env = Env::new();
    let s = Serve::start(&env, &env.json_config, "");
    let fetches = env.issuer.jwks_requests();
    assert!(fetches >= 1, "serve fetched the keys at start");
    let token = env.good("alice");
    let first = s.ask(&token);
    assert_eq!(first.json()["active"], true, "{first:?}");
    assert_eq!(first.header("x-auth-cached"), Some("false"), "{first:?}");
    let second = s.ask(&token);
    assert_eq!(second.json(), first.json());
    assert_eq!(second.header("x-auth-cached"), Some("true"), "{second:?}");
    // A token forward auth verified is answered from the cache here.
    let other = env.good("bob");
    let r = request(
        &s.addr,
        "GET",
        "/auth",
        &[("Authorization", &format!("Bearer {other}"))],
        "",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = s.ask(&other);
    assert_eq!(r.json()["active"], true);
    assert_eq!(r.header("x-auth-cached"), Some("true"), "{r:?}");
    assert_eq!(env.issuer.jwks_requests(), fetches, "a known key costs no JWKS fetch");
    // And the other way round: revoked here means refused there.
    let jti = r.json()["jti"].as_str().unwrap().to_string();
    let rv = request(
        &s.admin,
        "POST",
        "/revoke",
        &[("Authorization", &format!("Bearer {ADMIN_SECRET}"))],
        &json!({"issuer": env.issuer.url(), "jti": jti}).to_string(),
    );
    assert_eq!(rv.status, 200, "{rv:?}");
    assert_inactive(&s.ask(&other), "revoked while cached");
    let r = request(
        &s.addr,
        "GET",
        "/auth",
        &[("Authorization", &format!("Bearer {other}"))],
        "",
    );
    assert_eq!(r.status, 401, "{r:?}");
}

#[test]
fn an_outage_is_503_with_retry_after_not_inactive() {
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
    let s = Serve::start(&env, &dead, "");
    let r = s.ask(&token);
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.header("retry-after").is_some_and(|v| v.parse::<u64>().is_ok()),
        "{r:?}"
    );
    assert!(!r.body.contains("active"), "an outage is not an answer: {r:?}");
    // A token that is inactive whatever the keys say is still inactive.
    assert_inactive(&s.ask("garbage"), "garbage during an outage");
}

#[test]
fn requests_are_bounded_and_well_formed() {
    let env = Env::new();
    let s = Serve::start(&env, &env.json_config, "");
    let auth = format!("Bearer {ORDERS_SECRET}");
    let token = env.good("alice");
    // Over max_body_bytes (4096), declared.
    let big = format!("token={token}&pad={}", "x".repeat(5000));
    let r = s.post(Some(&auth), "application/x-www-form-urlencoded", &big);
    assert_eq!(r.status, 413, "{r:?}");
    // Over it, streamed in chunks with no declared length.
    let mut c = TcpStream::connect(&s.introspect).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST /introspect HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    c.write_all(head.as_bytes()).unwrap();
    let chunk = "y".repeat(1000);
    for _ in 0..8 {
        if c.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
            .is_err()
        {
            break;
        }
    }
    let _ = c.write_all(b"0\r\n\r\n");
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let r = parse_response(&raw);
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"));

    let form = "application/x-www-form-urlencoded";
    let r = s.post(Some(&auth), "application/json", &json!({"token": token}).to_string());
    assert_eq!(r.status, 415, "{r:?}");
    let r = s.post(Some(&auth), form, &format!("token={token}&token=garbage"));
    assert_eq!(r.status, 400, "a repeated token: {r:?}");
    let r = s.post(Some(&auth), form, "token_type_hint=access_token");
    assert_eq!(r.status, 400, "no token: {r:?}");
    // The hint is accepted and ignored, whatever it says.
    let r = s.post(
        Some(&auth),
        "Application/X-WWW-Form-Urlencoded; charset=utf-8",
        &format!("token_type_hint=refresh_token&token={token}"),
    );
    assert_eq!(r.json()["active"], true, "{r:?}");
    let r = request(
        &s.introspect,
        "GET",
        &format!("/introspect?token={token}"),
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.header("allow"), Some("POST"));
    let r = request(&s.introspect, "POST", "/other", &[("Authorization", &auth)], "");
    assert_eq!(r.status, 404, "{r:?}");
    // Not on the other listeners.
    let r = request(
        &s.addr,
        "POST",
        "/introspect",
        &[("Authorization", &auth), ("Content-Type", form)],
        &format!("token={token}"),
    );
    assert_eq!(r.status, 404, "{r:?}");
    assert!(!s.log().contains(&token));
}

#[test]
fn each_client_has_its_own_rate_limit() {
    let env = Env::new();
    // Two requests, then one per 1000 s: the third within the test is over.
    let s = Serve::start(&env, &env.json_config, "rate_per_sec = 0.001\nburst = 2\n");
    let token = env.good("alice");
    for _ in 0..2 {
        assert_eq!(s.ask(&token).json()["active"], true);
    }
    let verified = s.verifications();
    let r = s.ask(&token);
    assert_eq!(r.status, 429, "{r:?}");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=1000).contains(&wait), "{r:?}");
    assert!(!r.body.contains("active"), "{r:?}");
    assert_eq!(s.verifications(), verified, "a limited request is not verified");
    // The other client is not held back, nor are unauthenticated requests
    // counted against anyone.
    let billing = basic("billing", BILLING_SECRET);
    assert_eq!(s.ask_as(Some(&billing), &token).json()["active"], true);
    assert_eq!(s.ask_as(None, &token).status, 401);
    assert_eq!(s.ask_as(Some(&billing), &token).json()["active"], true);
    assert_eq!(s.ask_as(Some(&billing), &token).status, 429);
}

/// A revocation from the shell (`jwtwarden revoke`, through the journal of
/// `state_dir`) makes a token the cache holds inactive in the running
/// serve, and a restart replays it.
#[test]
fn a_journaled_revocation_makes_a_cached_token_inactive_and_survives_restart() {
    let env = Env::new();
    let engine = env.dir.path().join("journaled.json");
    std::fs::write(
        &engine,
        json!({
            "issuers": [{"issuer": env.issuer.url(), "jwks_uri": env.issuer.jwks_uri(), "audiences": ["api"]}],
            "http": {"allow_http": true},
            "state_dir": env.dir.path().join("state"),
        })
        .to_string(),
    )
    .unwrap();
    let s = Serve::start(&env, &engine, "");
    let token = env.with_claims(|c| c["jti"] = json!("j-journaled"), "alice");
    let bystander = env.good("bob");
    assert_eq!(s.ask(&token).json()["active"], true);
    assert_eq!(s.ask(&token).header("x-auth-cached"), Some("true"));
    let out = Command::new(env!("CARGO_BIN_EXE_jwtwarden"))
        .args(["revoke", "--config"])
        .arg(&engine)
        .args(["--issuer", &env.issuer.url(), "--jti", "j-journaled"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The running serve re-reads the journal in the background (about 1 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while s.ask(&token).json()["active"] == true {
        assert!(
            std::time::Instant::now() < deadline,
            "the journaled revocation never reached serve"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_inactive(&s.ask(&token), "revoked from the shell");
    assert_eq!(s.ask(&bystander).json()["active"], true, "only that jti");
    drop(s);
    let s = Serve::start(&env, &engine, "");
    assert_inactive(&s.ask(&token), "revoked, after a restart");
    assert_eq!(s.ask(&bystander).json()["active"], true);
}

/// SIGHUP rotates a client's secret: after the reload the old one is
/// refused and the new one accepted; neither reaches the log.
#[test]
fn a_reload_rotates_client_secrets() {
    let env = Env::new();
    let s = Serve::start(&env, &env.json_config, "");
    let token = env.good("alice");
    let old = basic("billing", BILLING_SECRET);
    assert_eq!(s.ask_as(Some(&old), &token).json()["active"], true);
    let rotated = "billing-introspection-secret-0003";
    std::fs::write(env.dir.path().join("billing-secret"), rotated).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(s.child.id() as i32, libc::SIGHUP) }, 0);
    let want = "jwtwarden_serve_reloads_total{result=\"ok\"} 1";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !request(&s.addr, "GET", "/metrics", &[], "").body.contains(want) {
        assert!(std::time::Instant::now() < deadline, "no reload seen");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        s.ask_as(Some(&old), &token).status,
        401,
        "the old secret after rotation"
    );
    let new = basic("billing", rotated);
    assert_eq!(s.ask_as(Some(&new), &token).json()["active"], true);
    assert!(!s.log().contains(rotated) && !s.log().contains(BILLING_SECRET));
}

#[test]
fn off_by_default_and_config_errors_are_refused() {
    let env = Env::new();
    let s = common::serve::Serve::start(&env.json_config, None);
    let r = request(&s.addr, "POST", "/introspect", &[], "token=x");
    assert_eq!(r.status, 404, "{r:?}");
    let bad = env.dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[introspection]\nlisten = \"127.0.0.1:0\"\n[[introspection.clients]]\nid = \"a\"\nsecret_env = \"JWTWARDEN_TEST_UNSET_VAR_XYZ\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jwtwarden"))
        .args(["serve", "--config"])
        .arg(&env.json_config)
        .arg("--serve-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("introspection.clients[0].secret_env"), "{err}");
}
