//! A real nginx in front of an upstream, asking `jwtwarden serve` through
//! `auth_request`, with the test issuer as the identity provider.
//!
//! Skipped (with a message) only when nginx is not installed and
//! JWTWARDEN_REQUIRE_NGINX is unset; `scripts/test` installs nginx and sets it.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::serve::{
    assert_claims_not_injected, auth_request_location, echoed, nginx_binary, Nginx, Serve, Upstream, ADMIN_SECRET,
};
use common::{now, Env};
use jwtwarden_testissuer::{Alg, Fault, TestIssuer};
use serde_json::{json, Value};

/// nginx, serve and an upstream, wired as docs/serve.md shows.
struct Stack {
    env: Env,
    upstream: Upstream,
    serve: Serve,
    nginx: Nginx,
    serve_file: std::path::PathBuf,
}

const SERVE_TOML: &str = r#"
[claim_headers]
sub = "X-Auth-Subject"
name = "X-Auth-Name"
scope = "X-Auth-Scope"

[admin]
listen = "127.0.0.1:0"
token_env = "JWTWARDEN_TEST_ADMIN_SECRET"
"#;

fn stack() -> Option<Stack> {
    stack_on(false)
}

/// The stack, with nginx reaching serve over a Unix socket when `unix`.
fn stack_on(unix: bool) -> Option<Stack> {
    let Some(binary) = nginx_binary() else {
        if std::env::var_os("JWTWARDEN_REQUIRE_NGINX").is_some() {
            panic!("JWTWARDEN_REQUIRE_NGINX is set but nginx is not installed");
        }
        eprintln!("SKIPPED: nginx not found (apt-get install nginx, or set JWTWARDEN_REQUIRE_NGINX=1 to fail instead)");
        return None;
    };
    let issuer = TestIssuer::start();
    issuer.set_cache_control(Some("max-age=1"));
    let env = Env::with_issuer(issuer);
    // Short TTLs and backoff so refreshes and outages happen within a test.
    let engine = json!({
        "issuers": [{"issuer": env.issuer.url(), "jwks_uri": env.issuer.jwks_uri(), "audiences": ["api"],
                     "refresh": {"min_ttl_secs": 1, "unknown_kid_cooldown_secs": 2,
                                 "backoff_initial_secs": 1, "backoff_max_secs": 1}}],
        "http": {"allow_http": true, "timeout_ms": 3000}
    });
    std::fs::write(&env.json_config, engine.to_string()).unwrap();
    let serve_file = env.dir.path().join("serve.toml");
    std::fs::write(&serve_file, SERVE_TOML).unwrap();
    let serve = if unix {
        // nginx's workers run as another user (nobody, when started as
        // root): they need to reach the directory and write the socket.
        use std::os::unix::fs::PermissionsExt;
        let dir = env.dir.path().join("sock");
        std::fs::create_dir(&dir).unwrap();
        for d in [env.dir.path(), dir.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut toml = std::fs::read_to_string(&serve_file).unwrap();
        toml.insert_str(0, "socket_mode = \"0666\"\n");
        std::fs::write(&serve_file, toml).unwrap();
        let listen = format!("unix:{}", dir.join("serve.sock").display());
        Serve::start_on(&listen, &env.json_config, Some(&serve_file))
    } else {
        Serve::start(&env.json_config, Some(&serve_file))
    };
    // nginx names a socket as `http://unix:/path:/uri`.
    let auth_url = match serve.addr.strip_prefix("unix:") {
        Some(path) => format!("http://unix:{path}:/auth"),
        None => format!("http://{}/auth", serve.addr),
    };
    let upstream = Upstream::start();
    let block = format!(
        r#"{auth}
    location / {{
      auth_request /_auth;
      auth_request_set $auth_subject $upstream_http_x_auth_subject;
      auth_request_set $auth_name $upstream_http_x_auth_name;
      auth_request_set $auth_scope $upstream_http_x_auth_scope;
      proxy_set_header X-Auth-Subject $auth_subject;
      proxy_set_header X-Auth-Name $auth_name;
      proxy_set_header X-Auth-Scope $auth_scope;
      proxy_pass http://127.0.0.1:{up};
    }}"#,
        auth = auth_request_location(&auth_url),
        up = upstream.port
    );
    let nginx = Nginx::start(&binary, &block);
    Some(Stack {
        env,
        upstream,
        serve,
        nginx,
        serve_file,
    })
}

impl Stack {
    fn get(&self, token: &str) -> common::serve::Resp {
        let auth = format!("Bearer {token}");
        self.nginx.get("/api/orders", &[("Authorization", &auth)])
    }

    fn token(&self, kid: &str, sub: &str) -> String {
        self.env.issuer.mint(kid, &self.env.issuer.default_claims(sub, now()))
    }

    /// `token` is refused and the upstream never sees it.
    fn assert_refused(&self, token: &str, what: &str) {
        let before = self.upstream.hits();
        let r = self.get(token);
        assert_eq!(r.status, 401, "{what}: {r:?}\n{}", self.nginx.error_log());
        assert!(
            r.header("www-authenticate")
                .is_some_and(|c| c.contains("invalid_token")),
            "{what}: {r:?}"
        );
        assert_eq!(self.upstream.hits(), before, "{what} reached the upstream");
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    h.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
}

#[test]
fn valid_tokens_reach_the_upstream_and_bad_ones_never_do() {
    let Some(s) = stack() else { return };
    valid_and_bad_tokens(&s);
}

#[test]
fn over_a_unix_socket_valid_tokens_reach_the_upstream_and_bad_ones_never_do() {
    let Some(s) = stack_on(true) else { return };
    assert!(s.serve.addr.starts_with("unix:"), "{}", s.serve.addr);
    valid_and_bad_tokens(&s);
}

fn valid_and_bad_tokens(s: &Stack) {
    let kid = s.env.issuer.first_kid();
    let issuer = &s.env.issuer;

    let good = s.token(&kid, "alice");
    // The client's own X-Auth-Subject is replaced by nginx with serve's.
    let r = s.nginx.get(
        "/api/orders",
        &[
            ("Authorization", &format!("Bearer {good}")),
            ("X-Auth-Subject", "admin"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", s.nginx.error_log());
    let h = echoed(&r);
    assert_eq!(header(&h, "x-auth-subject"), ["alice"]);
    assert_eq!(s.upstream.hits(), 1);

    let r = s.nginx.get("/api/orders", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="jwtwarden""#));
    assert_eq!(s.upstream.hits(), 1);

    let mut claims = issuer.default_claims("alice", now());
    claims["exp"] = json!(now() - 3600);
    claims["iat"] = json!(now() - 7200);
    s.assert_refused(&issuer.mint(&kid, &claims), "expired");

    // Forged: the payload of a good token with another payload swapped in.
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    let other = s.token(&kid, "mallory");
    parts[1] = other.split('.').nth(1).unwrap().to_string();
    parts[2] = good.split('.').nth(2).unwrap().to_string();
    s.assert_refused(&parts.join("."), "forged (payload swapped)");
    // Forged: signed by another issuer's key, claiming this issuer and kid.
    s.assert_refused(&common::foreign_key_token(issuer, &kid), "forged (foreign key)");
    s.assert_refused(&common::alg_none_token(issuer), "alg none");
    let mut claims = issuer.default_claims("alice", now());
    claims["aud"] = json!("other-api");
    s.assert_refused(&issuer.mint(&kid, &claims), "wrong audience");

    // Revoked through serve's admin API: cached before, refused after.
    let mut claims = issuer.default_claims("bob", now());
    claims["jti"] = json!("jti-bob-1");
    let bobs = issuer.mint(&kid, &claims);
    assert_eq!(s.get(&bobs).status, 200);
    let r = s.serve.revoke(&json!({"issuer": issuer.url(), "jti": "jti-bob-1"}));
    assert_eq!(r.status, 200, "{r:?}");
    s.assert_refused(&bobs, "revoked");
    assert!(!ADMIN_SECRET.is_empty());
}

#[test]
fn claim_values_cannot_inject_headers() {
    let Some(s) = stack() else { return };
    let issuer = &s.env.issuer;
    let mut claims = issuer.default_claims("alice\r\nX-Injected: yes", now());
    claims["name"] = json!("Eve\nSet-Cookie: a=b\u{0}\u{7f}\u{85}");
    claims["scope"] = json!(["read", "write\r\nX-Injected: 2"]);
    let token = issuer.mint(&issuer.first_kid(), &claims);
    let r = s.get(&token);
    assert_eq!(r.status, 200, "{r:?}\n{}", s.nginx.error_log());
    assert_claims_not_injected(&echoed(&r));
    // And a value cannot be made unbounded.
    let long = issuer.mint(&issuer.first_kid(), &{
        let mut c = issuer.default_claims("x", now());
        c["name"] = json!("n".repeat(5000));
        c
    });
    let h = echoed(&s.get(&long));
    assert_eq!(header(&h, "x-auth-name")[0].len(), 1024);
}

#[test]
fn an_issuer_outage_keeps_known_keys_and_fails_closed_on_new_kids() {
    let Some(s) = stack() else { return };
    let issuer = &s.env.issuer;
    let kid = issuer.first_kid();
    assert_eq!(s.get(&s.token(&kid, "warm")).status, 200);

    issuer.set_fault(Fault::Drop);
    // Past the keys' 1 s TTL: refreshes fail, the last good keys stay.
    std::thread::sleep(Duration::from_millis(2500));
    let fresh = s.token(&kid, "alice-during-outage"); // never seen: a full verification
    let r = s.get(&fresh);
    assert_eq!(r.status, 200, "{r:?}");
    let health = s.serve.get("/healthz", &[]);
    assert_eq!(health.status, 200, "stale keys can still verify: {health:?}");
    assert_eq!(health.json()["issuers"][issuer.url()], "stale");

    // A key the issuer published after the outage began cannot be fetched:
    // its tokens fail closed and never reach the upstream.
    let new_kid = issuer.rotate(Alg::ES256);
    let before = s.upstream.hits();
    for i in 0..3 {
        let r = s.get(&s.token(&new_kid, &format!("new-{i}")));
        assert_ne!(r.status, 200, "{r:?}");
    }
    assert_eq!(s.upstream.hits(), before);

    issuer.set_fault(Fault::None);
}

/// Hammer nginx from a few threads until `stop`; count non-200 answers.
fn load(
    s: &Arc<Stack>,
    tokens: Arc<pool::Tokens>,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<(u64, u64, Vec<String>)>> {
    (0..4)
        .map(|t| {
            let s = s.clone();
            let tokens = tokens.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut ok, mut failed, mut why) = (0u64, 0u64, Vec::new());
                let mut i = t;
                while !stop.load(Ordering::SeqCst) {
                    let token = tokens.pick(i);
                    i += 1;
                    let r = s.get(&token);
                    if r.status == 200 {
                        ok += 1;
                    } else {
                        failed += 1;
                        if why.len() < 5 {
                            why.push(format!("{} {}", r.status, r.body));
                        }
                    }
                }
                (ok, failed, why)
            })
        })
        .collect()
}

/// A token pool the test can replace while the load runs.
mod pool {
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Tokens(Mutex<Vec<String>>);

    impl Tokens {
        pub fn set(&self, v: Vec<String>) {
            *self.0.lock().unwrap() = v;
        }
        pub fn pick(&self, i: usize) -> String {
            let v = self.0.lock().unwrap();
            v[i % v.len()].clone()
        }
    }
}

fn finish(handles: Vec<std::thread::JoinHandle<(u64, u64, Vec<String>)>>) -> (u64, u64, Vec<String>) {
    handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold((0, 0, Vec::new()), |mut a, b| {
            a.0 += b.0;
            a.1 += b.1;
            a.2.extend(b.2);
            a
        })
}

#[test]
fn a_key_rotation_passes_with_zero_failed_requests() {
    let Some(s) = stack() else { return };
    let s = Arc::new(s);
    let old = s.env.issuer.first_kid();
    let tokens = Arc::new(pool::Tokens::default());
    tokens.set((0..20).map(|i| s.token(&old, &format!("svc-{i}"))).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let handles = load(&s, tokens.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(500));

    // The issuer publishes a new key and signs with it at once: the first
    // new-kid token triggers the one unknown-kid refresh.
    let new = s.env.issuer.rotate(Alg::ES256);
    let mut mixed: Vec<String> = (0..10).map(|i| s.token(&old, &format!("svc-{i}"))).collect();
    mixed.extend((10..20).map(|i| s.token(&new, &format!("svc-{i}"))));
    tokens.set(mixed);
    std::thread::sleep(Duration::from_millis(1000));
    tokens.set((0..20).map(|i| s.token(&new, &format!("svc-{i}"))).collect());
    std::thread::sleep(Duration::from_millis(500));
    // The old key is retired; nobody uses it any more.
    s.env.issuer.retire_key(&old);
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    let (ok, failed, why) = finish(handles);
    assert_eq!(failed, 0, "{failed} failed of {}: {why:?}", ok + failed);
    assert!(ok > 50, "only {ok} requests");
    eprintln!("rotation: {ok} requests, 0 failed");
}

#[test]
fn sighup_reload_under_load_drops_nothing() {
    let Some(s) = stack() else { return };
    let s = Arc::new(s);
    let kid = s.env.issuer.first_kid();
    let tokens = Arc::new(pool::Tokens::default());
    tokens.set((0..20).map(|i| s.token(&kid, &format!("svc-{i}"))).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let handles = load(&s, tokens, stop.clone());
    let reloads = AtomicU64::new(0);
    let started = Instant::now();
    for i in 0..6 {
        std::thread::sleep(Duration::from_millis(300));
        // Alternate the claim header mapping so each reload changes something.
        let text = if i % 2 == 0 {
            SERVE_TOML.replace("X-Auth-Name", "X-Auth-Display-Name")
        } else {
            SERVE_TOML.to_string()
        };
        std::fs::write(&s.serve_file, text).unwrap();
        s.serve.signal(libc::SIGHUP);
        reloads.fetch_add(1, Ordering::SeqCst);
        // One reload at a time: a SIGHUP that arrives while a reload runs
        // is merged into it.
        s.serve.wait_for_reloads("ok", i + 1);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let (ok, failed, why) = finish(handles);
    assert_eq!(
        failed,
        0,
        "{failed} failed of {} across {} reloads: {why:?}",
        ok + failed,
        reloads.load(Ordering::SeqCst)
    );
    assert!(ok > 50, "only {ok} requests in {:?}", started.elapsed());
    let m = s.serve.get("/metrics", &[]).body;
    assert!(m.contains("jwtwarden_serve_reloads_total{result=\"ok\"} 6"), "{m}");
    let v: Value = json!({"ok": ok});
    eprintln!("reload under load: {v}, 0 failed");
}
