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
        self.post_accepting(authorization, content_type, body, None)
    }

    /// Introspect `token` as `authorization`, sending `accept` if given.
    fn ask_accepting(&self, authorization: Option<&str>, token: &str, accept: Option<&str>) -> Resp {
        let body = format!("token={}", form_encode(token));
        self.post_accepting(authorization, "application/x-www-form-urlencoded", &body, accept)
    }

    fn post_accepting(
        &self,
        authorization: Option<&str>,
        content_type: &str,
        body: &str,
        accept: Option<&str>,
    ) -> Resp {
        let mut h = vec![("Content-Type", content_type)];
        if let Some(a) = authorization {
            h.push(("Authorization", a));
        }
        if let Some(a) = accept {
            h.push(("Accept", a));
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

/// The `jwtwarden_serve_introspection_*` lines of `/metrics`.
fn introspection_metrics(s: &Serve) -> Vec<String> {
    request(&s.addr, "GET", "/metrics", &[], "")
        .body
        .lines()
        .filter(|l| l.starts_with("jwtwarden_serve_introspection_"))
        .map(str::to_string)
        .collect()
}

/// Issue 28, metrics: each configured client has its own counters
/// (authenticated requests, active and inactive answers, 429s), labelled
/// with its id and never its secret; 401s are counted apart, under no
/// client (a caller without credentials names nobody, and a name it sends
/// is not trusted: a Basic user name with a wrong secret counts nowhere
/// but there).
#[test]
fn metrics_count_each_client_and_unauthenticated_refusals() {
    let env = Env::new();
    let s = Serve::start(&env, &env.json_config, "rate_per_sec = 0.001\nburst = 3\n");
    // Before any request: nothing (a scrape registers no client).
    assert!(introspection_metrics(&s).is_empty(), "{:?}", introspection_metrics(&s));
    let good = env.good("alice");
    assert_eq!(s.ask(&good).json()["active"], true);
    assert_inactive(&s.ask("garbage"), "garbage");
    assert_eq!(s.ask(&good).json()["active"], true);
    assert_eq!(s.ask(&good).status, 429, "over the burst");
    assert_eq!(s.ask(&good).status, 429, "still over");
    let billing = basic("billing", BILLING_SECRET);
    assert_inactive(&s.ask_as(Some(&billing), "a.b.c"), "billing, garbage");
    // Unauthenticated: none, a wrong secret under billing's name, and
    // orders' secret as a Basic password for billing.
    assert_eq!(s.ask_as(None, &good).status, 401);
    assert_eq!(
        s.ask_as(Some(&basic("billing", "billing-introspection-secret-9999")), &good)
            .status,
        401
    );
    assert_eq!(s.ask_as(Some(&basic("billing", ORDERS_SECRET)), &good).status, 401);
    let m = introspection_metrics(&s);
    let want = [
        "jwtwarden_serve_introspection_requests_total{client=\"orders\"} 5",
        "jwtwarden_serve_introspection_requests_total{client=\"billing\"} 1",
        "jwtwarden_serve_introspection_answers_total{client=\"orders\",active=\"true\"} 2",
        "jwtwarden_serve_introspection_answers_total{client=\"orders\",active=\"false\"} 1",
        "jwtwarden_serve_introspection_answers_total{client=\"billing\",active=\"true\"} 0",
        "jwtwarden_serve_introspection_answers_total{client=\"billing\",active=\"false\"} 1",
        "jwtwarden_serve_introspection_rate_limited_total{client=\"orders\"} 2",
        "jwtwarden_serve_introspection_rate_limited_total{client=\"billing\"} 0",
        "jwtwarden_serve_introspection_unauthenticated_total 3",
    ];
    for w in want {
        assert!(m.iter().any(|l| l == w), "missing {w:?} in {m:#?}");
    }
    assert_eq!(m.len(), want.len(), "{m:#?}");
    let all = request(&s.addr, "GET", "/metrics", &[], "").body;
    for secret in [ORDERS_SECRET, BILLING_SECRET] {
        assert!(!all.contains(secret), "a client secret in /metrics");
    }
    assert!(!all.contains(&good), "a token in /metrics");
    assert!(all.ends_with("# EOF\n"), "still one exposition");
    // The same counts as JSON, on the admin listener, behind its secret.
    let stats = request(&s.admin, "GET", "/stats", &[], "");
    assert_eq!(stats.status, 401, "{stats:?}");
    let stats = request(
        &s.admin,
        "GET",
        "/stats",
        &[("Authorization", &format!("Bearer {ADMIN_SECRET}"))],
        "",
    );
    assert_eq!(stats.status, 200, "{stats:?}");
    assert_eq!(
        stats.json()["introspection"],
        json!({
            "unauthenticated": 3,
            "clients": {
                "orders": {"requests": 5, "active": 2, "inactive": 1, "rate_limited": 2},
                "billing": {"requests": 1, "active": 0, "inactive": 1, "rate_limited": 0},
            }
        })
    );
    assert!(!stats.body.contains(ORDERS_SECRET) && !stats.body.contains(BILLING_SECRET));
    // Forward auth's own counters are not introspection's.
    assert!(
        all.lines()
            .filter(|l| l.starts_with("jwtwarden_serve_requests_total"))
            .all(|l| l.ends_with(" 0")),
        "{all}"
    );
    // A reload keeps each client's counts (registered by id).
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(s.child.id() as i32, libc::SIGHUP) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !request(&s.addr, "GET", "/metrics", &[], "")
        .body
        .contains("jwtwarden_serve_reloads_total{result=\"ok\"} 1")
    {
        assert!(std::time::Instant::now() < deadline, "no reload seen");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.ask(&good).json()["active"], true, "a reload starts the buckets full");
    let m = introspection_metrics(&s);
    assert!(
        m.iter()
            .any(|l| l == "jwtwarden_serve_introspection_requests_total{client=\"orders\"} 6"),
        "{m:#?}"
    );
    assert!(
        m.iter()
            .any(|l| l == "jwtwarden_serve_introspection_answers_total{client=\"orders\",active=\"true\"} 3"),
        "{m:#?}"
    );
}

const JWT_TYPE: &str = "application/token-introspection+jwt";

/// Ed25519 keys for signed answers, written as PEM files in `env`'s
/// directory: (kid, path) each.
fn signing_keys(env: &Env, n: usize) -> (TestIssuer, Vec<(String, std::path::PathBuf)>) {
    let maker = TestIssuer::start_empty();
    let keys = (0..n)
        .map(|_| {
            let kid = maker.add_key(jwtwarden_testissuer::Alg::EdDSA);
            let path = env.dir.path().join(format!("{kid}.pem"));
            std::fs::write(&path, maker.private_key_pem(&kid)).unwrap();
            (kid, path)
        })
        .collect();
    (maker, keys)
}

/// Verify a signed answer the way an RFC 9701 client does, with an
/// independent library (the `jsonwebtoken` crate) and the keys serve
/// publishes on its admin listener: `typ`, `alg` EdDSA, `kid` found in
/// the JWKS, signature, `iss`, `aud`. Returns (header kid, claims).
fn verify_signed(s: &Serve, jws: &str, iss: &str, aud: &str) -> Result<(String, Value), String> {
    let jwks = request(&s.admin, "GET", "/.well-known/jwks.json", &[], "");
    assert_eq!(jwks.status, 200, "{jwks:?}");
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&jwks.body).map_err(|e| e.to_string())?;
    let header = jsonwebtoken::decode_header(jws).map_err(|e| e.to_string())?;
    if header.typ.as_deref() != Some("token-introspection+jwt") {
        return Err(format!("typ {:?}", header.typ));
    }
    if header.alg != jsonwebtoken::Algorithm::EdDSA {
        return Err(format!("alg {:?}", header.alg));
    }
    let kid = header.kid.ok_or("no kid")?;
    let jwk = set.find(&kid).ok_or_else(|| format!("kid {kid} not in the JWKS"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.set_issuer(&[iss]);
    v.set_audience(&[aud]);
    v.validate_exp = false;
    v.set_required_spec_claims(&["iss", "aud"]);
    let data = jsonwebtoken::decode::<Value>(jws, &key, &v).map_err(|e| e.to_string())?;
    Ok((kid, data.claims))
}

/// Issue 28, RFC 9701: a client that asks with `Accept:
/// application/token-introspection+jwt` gets its answer, active or
/// inactive, as a JWS that an independent library verifies with the keys
/// of serve's admin JWKS, bound to that client (`aud`); a client that does
/// not ask gets the plain JSON answer, unchanged; a caller without
/// credentials never gets anything signed; a tampered answer does not
/// verify; the key being rotated out is published, not used.
#[test]
fn signed_answers_verify_with_the_published_keys() {
    let env = Env::new();
    let (_maker, keys) = signing_keys(&env, 2);
    let (old_kid, old_pem) = &keys[0];
    let (kid, pem) = &keys[1];
    let iss = "https://edge.example";
    let extra = format!(
        "jwt_response = true\nissuer = \"{iss}\"\n\
         [introspection.signing_key]\nkid = \"{kid}\"\npem_file = \"{}\"\n\
         [introspection.previous_signing_key]\nkid = \"{old_kid}\"\npem_file = \"{}\"\n",
        pem.display(),
        old_pem.display()
    );
    let s = Serve::start(&env, &env.json_config, &extra);
    let jwks = request(&s.admin, "GET", "/.well-known/jwks.json", &[], "").json();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [kid.as_str(), old_kid.as_str()], "current, then previous");
    assert!(
        jwks["keys"].as_array().unwrap().iter().all(|k| k.get("d").is_none()),
        "never a private part: {jwks}"
    );

    let good = env.with_claims(|c| c["scope"] = json!(["read", "write"]), "alice");
    let plain = s.ask(&good);
    let orders = format!("Bearer {ORDERS_SECRET}");
    let r = s.ask_accepting(Some(&orders), &good, Some(JWT_TYPE));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some(JWT_TYPE), "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let (used, claims) = verify_signed(&s, &r.body, iss, "orders").unwrap_or_else(|e| panic!("{e}: {r:?}"));
    assert_eq!(&used, kid, "signed with the current key");
    let answer = &claims["token_introspection"];
    assert_eq!(answer["active"], true, "{claims}");
    assert_eq!(answer["sub"], "alice");
    assert_eq!(answer["scope"], "read write");
    assert_eq!(answer["token_type"], "Bearer");
    let mut same = answer.clone();
    // Both answers come from the cache now: the same object, signed or not.
    assert_eq!(plain.json(), same.take(), "the signed object is the JSON answer");
    let iat = claims["iat"].as_u64().expect("iat");
    assert!(iat.abs_diff(now()) <= 60, "{claims}");
    let top: Vec<&String> = claims.as_object().unwrap().keys().collect();
    assert_eq!(
        top,
        ["aud", "iat", "iss", "token_introspection"],
        "nothing else at the top (no sub, no exp)"
    );

    // The other client: bound to it, not to orders.
    let billing = basic("billing", BILLING_SECRET);
    let r = s.ask_accepting(
        Some(&billing),
        &good,
        Some(&format!("application/json;q=0.5, {JWT_TYPE}")),
    );
    assert_eq!(r.header("content-type"), Some(JWT_TYPE), "{r:?}");
    assert!(
        verify_signed(&s, &r.body, iss, "orders").is_err(),
        "billing's answer is not for orders"
    );
    let (_, claims) = verify_signed(&s, &r.body, iss, "billing").unwrap();
    assert_eq!(claims["token_introspection"]["active"], true);

    // Inactive answers are signed too, and say nothing more.
    let expired = env.with_claims(|c| c["exp"] = json!(now() - 3600), "alice");
    for (what, token) in [("expired", expired.as_str()), ("garbage", "garbage"), ("empty", "")] {
        let r = s.ask_accepting(Some(&orders), token, Some(JWT_TYPE));
        assert_eq!(r.header("content-type"), Some(JWT_TYPE), "{what}: {r:?}");
        let (_, claims) = verify_signed(&s, &r.body, iss, "orders").unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(claims["token_introspection"], json!({"active": false}), "{what}");
    }

    // Tampering: another answer under the same signature does not verify.
    let r = s.ask_accepting(Some(&orders), "garbage", Some(JWT_TYPE));
    let parts: Vec<&str> = r.body.split('.').collect();
    assert_eq!(parts.len(), 3, "{r:?}");
    let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        json!({"iss": iss, "aud": "orders", "iat": now(), "token_introspection": {"active": true, "sub": "root"}})
            .to_string(),
    );
    let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert!(
        verify_signed(&s, &forged, iss, "orders").is_err(),
        "a forged answer verified"
    );

    // Not asked for (no Accept, JSON, */*, or the JWT type refused with
    // q=0 or outranked by JSON): the plain answer, unchanged.
    for accept in [
        None,
        Some("application/json"),
        Some("*/*"),
        Some("application/token-introspection+jwt;q=0"),
        Some("application/token-introspection+jwt;q=0.2, application/json"),
    ] {
        let r = s.ask_accepting(Some(&orders), &good, accept);
        assert_eq!(r.header("content-type"), Some("application/json"), "{accept:?}: {r:?}");
        assert_eq!(r.json(), plain.json(), "{accept:?}");
        let r = s.ask_accepting(Some(&orders), "garbage", accept);
        assert_eq!(r.json(), json!({"active": false}), "{accept:?}");
    }

    // No credentials, or wrong ones: 401 in JSON, nothing signed.
    for auth in [None, Some(basic("orders", BILLING_SECRET))] {
        let r = s.ask_accepting(auth.as_deref(), &good, Some(JWT_TYPE));
        assert_eq!(r.status, 401, "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
        assert_eq!(r.json(), json!({"error": "invalid_client"}));
    }
    // Refusals after authentication stay JSON too.
    let r = s.post_accepting(Some(&orders), "application/json", "{}", Some(JWT_TYPE));
    assert_eq!(r.status, 415, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    assert!(!s.log().contains(&good), "the token in serve's log");
}

/// Without `jwt_response` a client asking for a signed answer gets the
/// plain one, labelled `application/json` (RFC 9701 leaves it to the
/// client to refuse it); and the configuration refuses signing set up
/// halfway: no key, no place to publish it, a key without the switch, or
/// a `kid` the assertion keys use for another key.
#[test]
fn signed_answers_are_off_by_default_and_half_configurations_are_refused() {
    let env = Env::new();
    let s = Serve::start(&env, &env.json_config, "");
    let token = env.good("alice");
    let r = s.ask_accepting(Some(&format!("Bearer {ORDERS_SECRET}")), &token, Some(JWT_TYPE));
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    assert_eq!(r.json()["active"], true);
    let r = request(&s.admin, "GET", "/.well-known/jwks.json", &[], "");
    assert_eq!(r.status, 404, "nothing to publish: {r:?}");
    drop(s);

    let (_maker, keys) = signing_keys(&env, 2);
    let key = |k: usize| format!("kid = \"{}\"\npem_file = \"{}\"\n", keys[k].0, keys[k].1.display());
    let client = "[[introspection.clients]]\nid = \"a\"\nsecret_env = \"JWTWARDEN_TEST_INTROSPECT_ORDERS\"\n";
    let admin = "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"JWTWARDEN_TEST_ADMIN_SECRET\"\n";
    let cases = [
        (
            "no key",
            format!("{admin}[introspection]\nlisten = \"127.0.0.1:0\"\njwt_response = true\nissuer = \"e\"\n{client}"),
            "introspection.signing_key",
        ),
        (
            "no issuer and no assertion name",
            format!(
                "{admin}[introspection]\nlisten = \"127.0.0.1:0\"\njwt_response = true\n[introspection.signing_key]\n{}{client}",
                key(0)
            ),
            "introspection.issuer",
        ),
        (
            "no admin listener to publish the keys",
            format!(
                "[introspection]\nlisten = \"127.0.0.1:0\"\njwt_response = true\nissuer = \"e\"\n[introspection.signing_key]\n{}{client}",
                key(0)
            ),
            "configure [admin]",
        ),
        (
            "a key without jwt_response",
            format!(
                "{admin}[introspection]\nlisten = \"127.0.0.1:0\"\n[introspection.signing_key]\n{}{client}",
                key(0)
            ),
            "only with jwt_response = true",
        ),
        (
            "a kid the assertion uses for another key",
            format!(
                "{admin}[[routes]]\nprefix = \"/api\"\n\
                 [assertion]\nname = \"edge\"\n[assertion.current]\n{}[assertion.audiences]\n\"/api\" = \"svc\"\n\
                 [introspection]\nlisten = \"127.0.0.1:0\"\njwt_response = true\n[introspection.signing_key]\nkid = \"{}\"\npem_file = \"{}\"\n{client}",
                key(0),
                keys[0].0,
                keys[1].1.display()
            ),
            "is an assertion key's",
        ),
    ];
    for (what, file, want) in cases {
        let path = env.dir.path().join("half.toml");
        std::fs::write(&path, &file).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_jwtwarden"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&env.json_config)
            .arg("--serve-config")
            .arg(&path)
            .env("JWTWARDEN_TEST_ADMIN_SECRET", ADMIN_SECRET)
            .env("JWTWARDEN_TEST_INTROSPECT_ORDERS", ORDERS_SECRET)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{what}: started: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(err.contains(want), "{what}: {err}");
    }
}

/// With `[assertion]`, the signed answers may share its key (same file,
/// same `kid`): its name is the default `iss`, and the JWKS lists the key
/// once.
#[test]
fn signed_answers_may_share_the_assertion_key() {
    let env = Env::new();
    let (_maker, keys) = signing_keys(&env, 1);
    let (kid, pem) = &keys[0];
    let dir = env.dir.path();
    std::fs::write(dir.join("billing-secret"), format!("{BILLING_SECRET}\n")).unwrap();
    let file = dir.join("shared-key.toml");
    std::fs::write(
        &file,
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"JWTWARDEN_TEST_ADMIN_SECRET\"\n\
             [[routes]]\nprefix = \"/api\"\n\
             [assertion]\nname = \"https://edge.example\"\n[assertion.current]\nkid = \"{kid}\"\npem_file = \"{p}\"\n\
             [assertion.audiences]\n\"/api\" = \"svc\"\n\
             [introspection]\nlisten = \"127.0.0.1:0\"\njwt_response = true\n\
             [introspection.signing_key]\nkid = \"{kid}\"\npem_file = \"{p}\"\n\
             [[introspection.clients]]\nid = \"orders\"\nsecret_env = \"JWTWARDEN_TEST_INTROSPECT_ORDERS\"\n",
            p = pem.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_jwtwarden"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&env.json_config)
        .arg("--serve-config")
        .arg(&file)
        .env("JWTWARDEN_TEST_ADMIN_SECRET", ADMIN_SECRET)
        .env("JWTWARDEN_TEST_INTROSPECT_ORDERS", ORDERS_SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let s = Serve {
        addr: v["listen"].as_str().unwrap().to_string(),
        admin: v["admin"].as_str().unwrap().to_string(),
        introspect: v["introspection"].as_str().unwrap().to_string(),
        child,
        log: dir.join("none.log"),
    };
    let jwks = request(&s.admin, "GET", "/.well-known/jwks.json", &[], "").json();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1, "listed once: {jwks}");
    let r = s.ask_accepting(
        Some(&format!("Bearer {ORDERS_SECRET}")),
        &env.good("alice"),
        Some(JWT_TYPE),
    );
    let (used, claims) =
        verify_signed(&s, &r.body, "https://edge.example", "orders").unwrap_or_else(|e| panic!("{e}: {r:?}"));
    assert_eq!(&used, kid);
    assert_eq!(claims["token_introspection"]["active"], true);
}
