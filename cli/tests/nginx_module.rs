//! `ngx_http_jwtwarden_module` (bindings/nginx) in a real nginx, in front
//! of an upstream that echoes the headers it receives, with the test issuer
//! as the identity provider.
//!
//! The module is built by `scripts/build-nginx-module`; `scripts/test-nginx`
//! builds it and runs this file with JWTWARDEN_NGINX_MODULE set to its path.
//! Without that variable the tests are skipped (with a message) unless
//! JWTWARDEN_REQUIRE_NGINX_MODULE is set (scripts/test-nginx sets it).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::contract::{self, Seen};
use common::now;
use common::serve::{
    assert_claims_not_injected, echoed, free_port, nginx_binary, nginx_command, request, wait_listening, Resp, Upstream,
};
use jwtwarden_testissuer::{Fault, TestIssuer};
use serde_json::{json, Value};

/// nginx and the module, or None (skipped) when the module was not built.
fn module() -> Option<(PathBuf, PathBuf)> {
    // Its own variable: scripts/test sets JWTWARDEN_REQUIRE_NGINX for the
    // serve tests behind nginx before the module is built.
    let required = std::env::var_os("JWTWARDEN_REQUIRE_NGINX_MODULE").is_some();
    let found = nginx_binary().zip(std::env::var_os("JWTWARDEN_NGINX_MODULE").map(PathBuf::from));
    match found {
        Some((nginx, m)) if m.is_file() => Some((nginx, m)),
        _ if required => panic!("JWTWARDEN_REQUIRE_NGINX_MODULE is set but nginx or JWTWARDEN_NGINX_MODULE is missing"),
        _ => {
            eprintln!("SKIPPED: run scripts/test-nginx (needs nginx and JWTWARDEN_NGINX_MODULE)");
            None
        }
    }
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// nginx in the foreground with the module loaded, its own prefix, and
/// `http` as the body of its `http {}` (`{listen}` is replaced by the
/// address).
struct Nginx {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
    mode: Mode,
}

/// How nginx runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// In the foreground (`child` is the master).
    Foreground,
    /// Daemonized, as a binary upgrade needs (a master still the child of
    /// the process that started it ignores USR2, and only a daemon honours
    /// WINCH): `child` is the launcher, gone once nginx has forked; the
    /// master is found through its pid file.
    Daemon,
    /// In the foreground under valgrind's memcheck (master and workers):
    /// any error it reports fails the test, when nginx stops.
    Valgrind,
}

fn nginx_conf(module: &Path, workers: u32, d: &str, http: &str) -> String {
    // `env`: a binary upgrade execs the new master with only the variables
    // named here (the AddressSanitizer runtime must stay preloaded).
    format!(
        "load_module {m};\nenv LD_PRELOAD;\nenv ASAN_OPTIONS;\nworker_processes {workers};\nerror_log {d}/logs/error.log info;\npid {d}/nginx.pid;\n\
         thread_pool default threads=4;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{http}\n}}\n",
        m = module.display()
    )
}

impl Nginx {
    fn start(binary: &Path, module: &Path, workers: u32, http: &str) -> Nginx {
        Nginx::launch(binary, module, workers, http, Mode::Foreground)
    }

    fn launch(binary: &Path, module: &Path, workers: u32, http: &str, mode: Mode) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let conf = nginx_conf(module, workers, &d, &http.replace("{listen}", &addr));
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let mut cmd = nginx_command(binary, dir.path());
        if mode == Mode::Daemon {
            // The later `-g` wins over nginx_command's `daemon off`.
            cmd.arg("-g").arg("daemon on;");
        }
        if mode == Mode::Valgrind {
            let nginx = cmd;
            cmd = Command::new("valgrind");
            cmd.args(["--trace-children=yes", "--leak-check=no", "--error-exitcode=0"])
                .arg(format!("--log-file={d}/valgrind.%p"))
                .arg(nginx.get_program())
                .args(nginx.get_args())
                .stdin(std::process::Stdio::null());
        }
        // A module built with AddressSanitizer (scripts/test-nginx --asan)
        // needs its runtime preloaded into nginx; reports go to asan.PID
        // files, which Drop turns into a failure.
        if let Some(preload) = std::env::var_os("JWTWARDEN_NGINX_PRELOAD") {
            cmd.env("LD_PRELOAD", preload)
                .env("ASAN_OPTIONS", format!("detect_leaks=0:log_path={d}/asan"));
        }
        let mut child = cmd.spawn().expect("start nginx");
        if mode == Mode::Daemon {
            assert!(child.wait().unwrap().success(), "nginx did not daemonize");
        }
        match mode {
            // Slower to start: a longer wait (not a timing the test asserts).
            Mode::Valgrind => eventually("nginx listens under valgrind", || {
                std::net::TcpStream::connect(&addr).is_ok()
            }),
            _ => wait_listening(&addr),
        }
        Nginx { child, addr, dir, mode }
    }

    /// The pid in `name` (nginx.pid; nginx.pid.oldbin during an upgrade).
    fn pid_file(&self, name: &str) -> Option<i32> {
        let text = std::fs::read_to_string(self.dir.path().join(name)).ok()?;
        text.trim().parse().ok()
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        request(&self.addr, "GET", path, headers, "")
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/error.log")).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        let pid = match self.mode {
            Mode::Daemon => self.pid_file("nginx.pid").expect("nginx.pid"),
            _ => self.child.id() as i32,
        };
        kill(pid, sig);
    }
}

/// kill(2), asserted.
fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a pid this test started (directly, or as nginx's
    // daemon or its upgraded master).
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if self.mode == Mode::Daemon {
            // Every master this test left (an upgrade's old one too); each
            // removes its pid file as it exits.
            for name in ["nginx.pid.oldbin", "nginx.pid"] {
                if let Some(pid) = self.pid_file(name) {
                    // SAFETY: kill(2) on a master this test started.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while ["nginx.pid.oldbin", "nginx.pid"]
                .iter()
                .any(|n| self.dir.path().join(n).exists())
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            self.signal(libc::SIGTERM);
            let _ = self.child.wait();
        }
        let reports: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("asan."))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect();
        if !reports.is_empty() && !std::thread::panicking() {
            panic!("AddressSanitizer:\n{}", reports.join("\n"));
        }
        if self.mode == Mode::Valgrind && !std::thread::panicking() {
            let logs: Vec<String> = std::fs::read_dir(self.dir.path())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("valgrind."))
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect();
            // The master and its worker(s), each to its end.
            assert!(logs.len() >= 2, "valgrind logs: {logs:?}");
            for log in &logs {
                assert!(log.contains("ERROR SUMMARY: 0 errors"), "valgrind:\n{log}");
            }
        }
    }
}

/// `nginx -t` on a configuration: (success, output).
fn nginx_t(binary: &Path, module: &Path, http: &str) -> (bool, String) {
    let (code, out) = nginx_t_status(binary, module, http);
    (code == Some(0), out)
}

/// `nginx -t` on a configuration: (exit status, output).
fn nginx_t_status(binary: &Path, module: &Path, http: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let conf = nginx_conf(module, 1, &d, &http.replace("{listen}", "127.0.0.1:1"));
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let mut cmd = Command::new(binary);
    if let Some(preload) = std::env::var_os("JWTWARDEN_NGINX_PRELOAD") {
        cmd.env("LD_PRELOAD", preload).env("ASAN_OPTIONS", "detect_leaks=0");
    }
    let out = cmd
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), text)
}

/// The test issuer, an engine config file trusting it (with a shared
/// `state_dir`), an upstream and nginx with the module in front of it.
struct Stack {
    nginx: Nginx,
    upstream: Upstream,
    config: PathBuf,
    _dir: tempfile::TempDir,
    issuer: TestIssuer,
}

const LOCATIONS: &str = r#"
    jwtwarden on;
    jwtwarden_realm jwtwarden;
    jwtwarden_audience api;
    jwtwarden_claim_header sub X-Auth-Subject;
    jwtwarden_claim_header name X-Auth-Name;
    jwtwarden_claim_header scope X-Auth-Scope;
    location / {
      proxy_pass http://127.0.0.1:{up};
      proxy_set_header X-Jwtwarden-Cached $jwtwarden_cached;
      add_header X-Worker $pid always;
      proxy_set_header X-Var-Sub $jwtwarden_claim_sub;
      proxy_set_header X-Var-Unmapped $jwtwarden_claim_email;
      add_header X-Var-Error $jwtwarden_error always;
    }
    location = /healthz { jwtwarden off; return 200 "ok"; }
    location /admin/ {
      jwtwarden_fresh on;
      jwtwarden_scope admin;
      proxy_pass http://127.0.0.1:{up};
    }
    location /cookie/ {
      jwtwarden_token $cookie_session;
      proxy_pass http://127.0.0.1:{up};
    }
"#;

fn stack(workers: u32, engine_extra: Value) -> Option<Stack> {
    stack_with(workers, |engine| {
        for (k, v) in engine_extra.as_object().into_iter().flatten() {
            engine[k] = v.clone();
        }
    })
}

/// The stack, with the engine's configuration changed by `edit`.
fn stack_with(workers: u32, edit: impl FnOnce(&mut Value)) -> Option<Stack> {
    stack_opts(workers, Mode::Foreground, edit)
}

/// The stack, nginx run as `mode` says.
fn stack_opts(workers: u32, mode: Mode, edit: impl FnOnce(&mut Value)) -> Option<Stack> {
    stack_full(workers, mode, "", LOCATIONS, edit)
}

/// The stack with `locations` (`{up}`: the upstream's port) in its server.
fn stack_at(workers: u32, mode: Mode, locations: &str, edit: impl FnOnce(&mut Value)) -> Option<Stack> {
    stack_full(workers, mode, "", locations, edit)
}

/// The stack with `http` lines (before the server) and the server's
/// `locations` (`{up}` is the upstream's port).
fn stack_full(workers: u32, mode: Mode, http: &str, locations: &str, edit: impl FnOnce(&mut Value)) -> Option<Stack> {
    let (binary, module) = module()?;
    let issuer = TestIssuer::start();
    let dir = tempfile::tempdir().unwrap();
    // nginx's workers run as another user (nobody, when started as root):
    // they read and write the shared state_dir.
    use std::os::unix::fs::PermissionsExt;
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut engine = json!({
        "issuers": [{"issuer": issuer.url(), "jwks_uri": issuer.jwks_uri(), "audiences": ["api"],
                     "refresh": {"min_ttl_secs": 1, "unknown_kid_cooldown_secs": 1,
                                 "backoff_initial_secs": 1, "backoff_max_secs": 1}}],
        "http": {"allow_http": true, "timeout_ms": 3000},
        "state_dir": state,
    });
    edit(&mut engine);
    let config = dir.path().join("jwtwarden.json");
    std::fs::write(&config, engine.to_string()).unwrap();
    let upstream = Upstream::start();
    let http = format!(
        "  jwtwarden_config {};\n{http}\n  server {{\n    listen {{listen}};\n{}\n  }}",
        config.display(),
        locations.replace("{up}", &upstream.port.to_string())
    );
    let nginx = Nginx::launch(&binary, &module, workers, &http, mode);
    Some(Stack {
        nginx,
        upstream,
        config,
        _dir: dir,
        issuer,
    })
}

impl Stack {
    fn get(&self, path: &str, token: &str) -> Resp {
        let auth = format!("Bearer {token}");
        self.nginx.get(path, &[("Authorization", &auth)])
    }

    /// Wait until each of the `workers` has refused `token` once (which
    /// worker answers is the kernel's choice: `X-Worker` says which did).
    /// A revocation, once held, stays: after this every worker refuses it.
    fn until_every_worker_refuses(&self, token: &str, workers: usize) {
        let mut refused = std::collections::HashSet::new();
        eventually("every worker refuses the revoked token", || {
            let r = self.get("/api/orders", token);
            if r.status == 401 {
                refused.insert(r.header("x-worker").unwrap().to_string());
            }
            refused.len() == workers
        });
    }

    /// `jwtwarden revoke --jti` with the stack's configuration (journaled
    /// in its state_dir, published to its feed if it has one): its stdout.
    fn revoke_jti(&self, jti: &str) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_jwtwarden"))
            .args(["revoke", "--config"])
            .arg(&self.config)
            .args(["--issuer", &self.issuer.url(), "--jti", jti])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        stdout
    }

    fn token(&self, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = self.issuer.default_claims("alice", now());
        edit(&mut claims);
        self.issuer.mint(&self.issuer.first_kid(), &claims)
    }

    /// Refused with 401 `invalid_token`, and the upstream never saw it
    /// (asked several times, so that every worker answers).
    fn assert_refused(&self, token: &str, what: &str) {
        let before = self.upstream.hits();
        for _ in 0..8 {
            let r = self.get("/api/orders", token);
            assert_eq!(r.status, 401, "{what}: {r:?}\n{}", self.nginx.error_log());
            let challenge = r.header("www-authenticate").unwrap_or_default();
            assert!(challenge.contains("error=\"invalid_token\""), "{what}: {r:?}");
            assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
            assert!(!r.body.contains(token), "{what}: the body repeats the token");
            let kind = r.json()["error"].as_str().unwrap().to_string();
            assert_eq!(r.header("x-var-error"), Some(kind.as_str()), "{what}: $jwtwarden_error");
        }
        assert_eq!(self.upstream.hits(), before, "{what} reached the upstream");
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    h.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
}

#[test]
fn with_four_workers_valid_tokens_reach_the_upstream_and_bad_ones_never_do() {
    let Some(s) = stack(4, json!({})) else { return };
    let issuer = &s.issuer;
    let kid = issuer.first_kid();
    let good = s.token(|c| {
        c["name"] = json!("Alice");
        c["email"] = json!("alice@example.com");
    });

    // The client's own X-Auth-Subject is replaced by the verified one.
    let auth = format!("Bearer {good}");
    for i in 0..8 {
        let r = s.nginx.get(
            "/api/orders",
            &[
                ("Authorization", &auth),
                ("X-Auth-Subject", "admin"),
                ("x-auth-scope", "all"),
            ],
        );
        assert_eq!(r.status, 200, "{r:?}\n{}", s.nginx.error_log());
        let h = echoed(&r);
        assert_eq!(header(&h, "x-auth-subject"), ["alice"], "{h:?}");
        assert_eq!(header(&h, "x-auth-name"), ["Alice"], "{h:?}");
        assert!(
            header(&h, "x-auth-scope").is_empty(),
            "an absent claim's header is dropped: {h:?}"
        );
        if i == 0 {
            assert_eq!(header(&h, "x-jwtwarden-cached"), ["false"]);
        }
        // Variables: any claim's sanitised value, mapped to a header or not.
        assert_eq!(header(&h, "x-var-sub"), ["alice"], "{h:?}");
        assert_eq!(header(&h, "x-var-unmapped"), ["alice@example.com"], "{h:?}");
    }
    assert_eq!(s.upstream.hits(), 8);

    // No token: the bare challenge.
    let r = s.nginx.get("/api/orders", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="jwtwarden""#));
    assert_eq!(r.json()["error"], "missing_token");
    assert_eq!(r.header("x-var-error"), Some("missing_token"));
    // An open location needs nothing.
    assert_eq!(s.nginx.get("/healthz", &[]).status, 200);

    s.assert_refused(
        &s.token(|c| {
            c["exp"] = json!(now() - 3600);
            c["iat"] = json!(now() - 7200);
        }),
        "expired",
    );
    // Forged: another payload under a good signature.
    let mut parts: Vec<&str> = good.split('.').collect();
    let other = s.token(|c| c["sub"] = json!("mallory"));
    parts[1] = other.split('.').nth(1).unwrap();
    s.assert_refused(&parts.join("."), "forged (payload swapped)");
    s.assert_refused(&common::foreign_key_token(issuer, &kid), "forged (foreign key)");
    s.assert_refused(&common::alg_none_token(issuer), "alg none");
    s.assert_refused(&s.token(|c| c["aud"] = json!("other-api")), "wrong audience");

    // A scope the location requires; fresh re-verifies.
    let r = s.get("/admin/users", &good);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        r.header("www-authenticate").unwrap().contains("insufficient_scope"),
        "{r:?}"
    );
    let admin = s.token(|c| c["scope"] = json!("admin read"));
    let r = s.get("/admin/users", &admin);
    assert_eq!(r.status, 200, "{r:?}");

    // A token from a variable (a cookie) instead of Authorization.
    let r = s.nginx.get("/cookie/x", &[("Cookie", &format!("session={good}"))]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(s.nginx.get("/cookie/x", &[("Authorization", &auth)]).status, 401);

    // Revoked by `jwtwarden revoke` on the shared state_dir's journal:
    // cached in the workers before, refused by every worker after.
    let bobs = s.token(|c| {
        c["sub"] = json!("bob");
        c["jti"] = json!("jti-bob-1");
    });
    for _ in 0..8 {
        assert_eq!(s.get("/api/orders", &bobs).status, 200);
    }
    s.revoke_jti("jti-bob-1");
    s.until_every_worker_refuses(&bobs, 4);
    s.assert_refused(&bobs, "revoked");
}

#[test]
fn claim_values_cannot_inject_headers() {
    let Some(s) = stack(2, json!({})) else { return };
    let token = s.token(|c| {
        c["sub"] = json!("alice\r\nX-Injected: yes");
        c["name"] = json!("Eve\nSet-Cookie: a=b\u{0}\u{7f}\u{85}");
        c["scope"] = json!(["read", "write\r\nX-Injected: 2"]);
    });
    let r = s.get("/api/orders", &token);
    assert_eq!(r.status, 200, "{r:?}\n{}", s.nginx.error_log());
    assert_claims_not_injected(&echoed(&r));
    let long = s.token(|c| c["name"] = json!("n".repeat(5000)));
    let h = echoed(&s.get("/api/orders", &long));
    assert_eq!(header(&h, "x-auth-name")[0].len(), 1024);
}

#[test]
fn issuer_down_known_keys_pass_and_new_kids_fail_closed() {
    let Some(s) = stack(2, json!({})) else { return };
    let good = s.token(|_| {});
    assert_eq!(s.get("/api/orders", &good).status, 200);
    s.issuer.set_fault(Fault::Status(500));
    // Cached, and known-key tokens never seen before, keep passing.
    for i in 0..8 {
        assert_eq!(s.get("/api/orders", &good).status, 200);
        let fresh = s.token(|c| c["sub"] = json!(format!("user-{i}")));
        assert_eq!(s.get("/api/orders", &fresh).status, 200);
    }
    // A kid the issuer now publishes but no worker could fetch: refused
    // (fail closed), never at the upstream, with the contract's 503 and
    // Retry-After: the fetch that could have found the kid failed, so the
    // token may be good (docs/nginx.md, "Issuer down"). A random kid is
    // answered the same (nothing could tell them apart), by every worker.
    let new_kid = s.issuer.add_key(jwtwarden_testissuer::Alg::RS256);
    let t = s.issuer.mint(&new_kid, &s.issuer.default_claims("carol", now()));
    let random = s.issuer.mint_with_header(
        &s.issuer.first_kid(),
        &json!({"alg": "RS256", "typ": "JWT", "kid": "kid-nobody-publishes"}),
        &s.issuer.default_claims("mallory", now()),
    );
    let before = s.upstream.hits();
    let mut workers = std::collections::HashSet::new();
    for token in [&t, &random].into_iter().cycle().take(16) {
        let r = s.get("/api/orders", token);
        assert_eq!(r.status, 503, "{r:?}\n{}", s.nginx.error_log());
        assert_eq!(r.header("retry-after"), Some("5"), "{r:?}");
        assert_eq!(r.header("www-authenticate"), None, "{r:?}");
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.json()["error"], "keys_unavailable", "{r:?}");
        assert_eq!(r.header("x-var-error"), Some("keys_unavailable"));
        assert!(!r.body.contains(token.as_str()));
        workers.insert(r.header("x-worker").unwrap().to_string());
    }
    assert_eq!(s.upstream.hits(), before);
    eprintln!(
        "issuer down: 16 new-kid requests answered 503 by {} worker(s)",
        workers.len()
    );
    // Back up: the new kid verifies (on a worker's thread pool), and a kid
    // the issuer does not publish is "no such key" again: 401.
    s.issuer.set_fault(Fault::None);
    eventually("the new kid verifies", || s.get("/api/orders", &t).status == 200);
    eventually("an unpublished kid is unknown_kid again", || {
        let r = s.get("/api/orders", &random);
        assert!(r.status == 401 || r.status == 503, "{r:?}");
        r.status == 401 && r.header("www-authenticate").unwrap().contains("unknown_kid")
    });
    assert_eq!(s.upstream.hits(), before + 1);
}

#[test]
fn a_reload_under_load_drops_nothing() {
    let Some(s) = stack(2, json!({})) else { return };
    let good = s.token(|_| {});
    let load = Load::start(&s.nginx.addr, &good, 1);
    load.passes(20, "load runs");
    for _ in 0..2 {
        s.nginx.signal(libc::SIGHUP);
        load.passes(100, "requests after the reload");
    }
    let (_, failed) = load.stop();
    assert_eq!(failed, 0, "{}", s.nginx.error_log());
    assert!(s.nginx.error_log().contains("reconfiguring"), "{}", s.nginx.error_log());
}

/// Client threads sending `token` until stopped, counting answers by
/// status (a refused connection counts as failed) and the workers (`$pid`)
/// that answered.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    workers: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: &str, token: &str, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let workers = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let threads = (0..threads)
            .map(|_| {
                let (stop, ok, failed, workers) = (stop.clone(), ok.clone(), failed.clone(), workers.clone());
                let (addr, auth) = (addr.to_string(), format!("Bearer {token}"));
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let sent = std::panic::catch_unwind(|| {
                            request(&addr, "GET", "/api/orders", &[("Authorization", &auth)], "")
                        });
                        match sent {
                            Ok(r) if r.status == 200 => {
                                ok.fetch_add(1, Ordering::SeqCst);
                                let pid = r.header("x-worker").unwrap_or_default().to_string();
                                workers.lock().unwrap().insert(pid);
                            }
                            Ok(r) => {
                                eprintln!("failed under load: {r:?}");
                                failed.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(_) => {
                                failed.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            workers,
            threads,
        }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::SeqCst)
    }

    /// Wait until `n` more requests have passed.
    fn passes(&self, n: u64, what: &str) {
        let at = self.ok();
        eventually(what, || self.ok() >= at + n);
    }

    /// Stop the clients: (passed, failed).
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        (self.ok.load(Ordering::SeqCst), self.failed.load(Ordering::SeqCst))
    }
}

/// The binary upgrade nginx documents, under load from several client
/// threads: USR2 to the master starts a new master (the same binary,
/// re-executed, loading the module anew) whose workers build their own
/// verifiers; WINCH retires the old workers gracefully, QUIT the old
/// master. No request fails, and a revocation made before the upgrade
/// (journaled in the state_dir) holds in every new worker, which never saw
/// the token before and replayed the journal at start.
#[test]
fn a_binary_upgrade_under_load_fails_no_request_and_keeps_revocations() {
    let Some(s) = stack_opts(4, Mode::Daemon, |_| {}) else {
        return;
    };
    let good = s.token(|_| {});
    let revoked = s.token(|c| {
        c["sub"] = json!("bob");
        c["jti"] = json!("jti-upgrade-1");
    });
    for _ in 0..8 {
        assert_eq!(s.get("/api/orders", &revoked).status, 200);
    }
    s.revoke_jti("jti-upgrade-1");
    s.until_every_worker_refuses(&revoked, 4);
    let old_master = s.nginx.pid_file("nginx.pid").expect("nginx.pid");

    let load = Load::start(&s.nginx.addr, &good, 4);
    load.passes(50, "load runs before the upgrade");
    let old_workers = load.workers.lock().unwrap().clone();

    // USR2: the old master renames its pid file and execs the new binary.
    kill(old_master, libc::SIGUSR2);
    eventually("a new master writes nginx.pid", || {
        s.nginx.pid_file("nginx.pid.oldbin") == Some(old_master)
            && s.nginx.pid_file("nginx.pid").is_some_and(|p| p != old_master)
    });
    let new_master = s.nginx.pid_file("nginx.pid").unwrap();
    eventually("a new worker answers", || {
        load.workers.lock().unwrap().iter().any(|w| !old_workers.contains(w))
    });
    // WINCH: the old workers finish what they hold and exit; the new ones
    // take every connection.
    kill(old_master, libc::SIGWINCH);
    eventually("the old workers have exited", || {
        let log = s.nginx.error_log();
        old_workers
            .iter()
            .all(|w| log.contains(&format!("worker process {w} exited")))
    });
    load.passes(100, "load after the old workers left");
    // QUIT: the old master exits (and removes nginx.pid.oldbin).
    kill(old_master, libc::SIGQUIT);
    eventually("the old master has exited", || {
        s.nginx.pid_file("nginx.pid.oldbin").is_none()
    });
    load.passes(100, "load after the old master left");
    let (passed, failed) = load.stop();
    assert_eq!(failed, 0, "{passed} passed\n{}", s.nginx.error_log());
    assert_eq!(s.nginx.pid_file("nginx.pid"), Some(new_master));

    // The new workers: the revocation holds in each, the good token passes.
    let mut refused = std::collections::HashSet::new();
    eventually("every new worker refuses the revoked token", || {
        let r = s.get("/api/orders", &revoked);
        assert_eq!(r.status, 401, "{r:?}\n{}", s.nginx.error_log());
        assert_eq!(r.json()["error"], "revoked", "{r:?}");
        let w = r.header("x-worker").unwrap().to_string();
        assert!(!old_workers.contains(&w), "an old worker answered after the upgrade");
        refused.insert(w);
        refused.len() == 4
    });
    s.assert_refused(&revoked, "revoked before the upgrade");
    assert_eq!(s.get("/api/orders", &good).status, 200);
    eprintln!("binary upgrade under load (4 workers, 4 clients): {passed} requests passed, 0 failed");
}

/// The module's C side under valgrind's memcheck (the suite runs it under
/// AddressSanitizer too): one worker through each of its paths (inline
/// refusals and hits, the thread pool for misses and a new kid's fetch, a
/// `fresh` location, a scope refusal, a cookie token, claim headers and
/// variables, a revocation), then nginx stops (exit_process frees the
/// verifier); any error valgrind reports in the master or the worker fails
/// the test. Runs where valgrind is installed; scripts/test-nginx requires
/// it (JWTWARDEN_REQUIRE_VALGRIND) for the plain module.
#[test]
fn the_module_under_valgrind_reports_no_error() {
    if std::env::var_os("JWTWARDEN_NGINX_PRELOAD").is_some() {
        eprintln!("SKIPPED: valgrind and AddressSanitizer do not mix");
        return;
    }
    let installed = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        assert!(
            std::env::var_os("JWTWARDEN_REQUIRE_VALGRIND").is_none(),
            "valgrind is not installed"
        );
        eprintln!("SKIPPED: valgrind is not installed");
        return;
    }
    let Some(s) = stack_opts(1, Mode::Valgrind, |_| {}) else {
        return;
    };
    let good = s.token(|c| {
        c["jti"] = json!("jti-valgrind-1");
        c["email"] = json!("alice@example.com");
    });
    let (auth, cookie) = (format!("Bearer {good}"), format!("session={good}"));
    assert_eq!(s.nginx.get("/api/orders", &[]).status, 401);
    let first = s.get("/api/orders", &good);
    assert_eq!(first.status, 200, "{first:?}\n{}", s.nginx.error_log());
    let h = echoed(&s.get("/api/orders", &good));
    assert_eq!(header(&h, "x-jwtwarden-cached"), ["true"]);
    assert_eq!(header(&h, "x-var-sub"), ["alice"]);
    assert_eq!(header(&h, "x-var-unmapped"), ["alice@example.com"]);
    assert_eq!(s.get("/api/orders", "a.b.c").status, 401);
    assert_eq!(s.get("/api/orders", &common::alg_none_token(&s.issuer)).status, 401);
    let new_kid = s.issuer.rotate(jwtwarden_testissuer::Alg::RS256);
    let rotated = s.issuer.mint(&new_kid, &s.issuer.default_claims("rotated", now()));
    assert_eq!(s.get("/api/orders", &rotated).status, 200);
    assert_eq!(s.get("/admin/users", &good).status, 403);
    assert_eq!(s.nginx.get("/cookie/x", &[("Cookie", &cookie)]).status, 200);
    assert_eq!(s.nginx.get("/cookie/x", &[("Authorization", &auth)]).status, 401);
    let injected = s.token(|c| c["name"] = json!("Eve\r\nX-Injected: yes"));
    let h = echoed(&s.get("/api/orders", &injected));
    assert!(header(&h, "x-injected").is_empty(), "{h:?}");
    assert_eq!(header(&h, "x-auth-name"), ["Eve  X-Injected: yes"]);
    s.revoke_jti("jti-valgrind-1");
    s.until_every_worker_refuses(&good, 1);
    // Dropping the stack stops nginx and reads valgrind's reports.
}

/// No blocking, shown without timers: one worker; the issuer holds a JWKS
/// response open for a request that must fetch; a cached token's request
/// completes while that one is still waiting.
#[test]
fn a_pending_fetch_does_not_block_cached_tokens_on_the_same_worker() {
    // The held fetch gives up only when the issuer stops (not on a timer
    // the test could lose to a slow machine).
    let Some(s) = stack_with(1, |e| e["http"]["timeout_ms"] = json!(60_000)) else {
        return;
    };
    let good = s.token(|_| {});
    assert_eq!(s.get("/api/orders", &good).status, 200);
    let fetches = s.issuer.jwks_requests();
    s.issuer.set_fault(Fault::Hang);
    let unknown = s.issuer.mint_with_header(
        &s.issuer.first_kid(),
        &json!({"alg": "RS256", "typ": "JWT", "kid": "kid-nobody-has-seen"}),
        &s.issuer.default_claims("dave", now()),
    );
    let done = Arc::new(AtomicBool::new(false));
    let waiting = {
        let (addr, done) = (s.nginx.addr.clone(), done.clone());
        std::thread::spawn(move || {
            let auth = format!("Bearer {unknown}");
            let r = request(&addr, "GET", "/api/orders", &[("Authorization", &auth)], "");
            done.store(true, Ordering::SeqCst);
            r.status
        })
    };
    // The fetch is in flight: the issuer holds its response.
    eventually("the worker asks for the JWKS", || s.issuer.jwks_requests() > fetches);
    for _ in 0..5 {
        let r = s.get("/api/orders", &good);
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            !done.load(Ordering::SeqCst),
            "the fetching request finished first: nothing showed non-blocking"
        );
    }
    // Release it (the issuer drops held connections when it stops).
    let Stack { nginx, issuer, .. } = s;
    drop(issuer);
    // Its fetch failed: the kid could not be checked, 503 (not 401).
    let status = waiting.join().unwrap();
    assert_eq!(status, 503);
    drop(nginx);
}

#[test]
fn nginx_t_refuses_a_bad_configuration_and_names_the_field() {
    let Some((binary, module)) = module() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("engine.json");
    std::fs::write(&cfg, GOOD_ENGINE).unwrap();
    let base = |extra: &str| {
        format!(
            "  jwtwarden_config {};\n  server {{ listen {{listen}}; location / {{ jwtwarden on; {extra} return 200; }} }}",
            cfg.display()
        )
    };
    let (ok, out) = nginx_t(&binary, &module, &base(""));
    assert!(ok, "{out}");
    let (ok, out) = nginx_t(&binary, &module, &base("jwtwarden_claim_header sub \"Bad Header\";"));
    assert!(!ok, "{out}");
    assert!(out.contains("claim_headers.sub"), "{out}");
    let (ok, out) = nginx_t(&binary, &module, &base("jwtwarden_scope \"two words\";"));
    assert!(!ok && out.contains("scopes"), "{out}");
    let (ok, out) = nginx_t(&binary, &module, &base("jwtwarden_realm \"a\\\"b\";"));
    assert!(!ok && out.contains("realm"), "{out}");
    let missing = "  jwtwarden_config /nonexistent/jwtwarden.json;\n  server { listen {listen}; }";
    let (ok, out) = nginx_t(&binary, &module, missing);
    assert!(!ok && out.contains("/nonexistent/jwtwarden.json"), "{out}");
    let (ok, out) = nginx_t(
        &binary,
        &module,
        "  server { listen {listen}; location / { jwtwarden on; } }",
    );
    assert!(!ok && out.contains("jwtwarden_config"), "{out}");
}

// ---- tests/http_contract.json against the module --------------------------

/// The table's middleware options as nginx locations: an exact skip path
/// is `location = P { jwtwarden open; }`, a `P/*` one `location P/ {
/// jwtwarden open; }`, a fresh `P/*` one `location P/ { jwtwarden_fresh on;
/// }`. `open` (not `off`) keeps the core's path check: a spelling that
/// cannot be normalised safely is refused even there.
fn contract_http(table: &Value, config: &Path, up: u16) -> String {
    let mw = &table["middleware"];
    let pass = format!("proxy_pass http://127.0.0.1:{up}; proxy_set_header X-Contract-Cached $jwtwarden_cached;");
    let mut locations = format!("location / {{ {pass} }}\n");
    for p in mw["skip_paths"].as_array().unwrap() {
        let p = p.as_str().unwrap();
        match p.strip_suffix('*') {
            Some(prefix) => locations.push_str(&format!("location {prefix} {{ jwtwarden open; {pass} }}\n")),
            None => locations.push_str(&format!("location = {p} {{ jwtwarden open; {pass} }}\n")),
        }
    }
    for p in mw["fresh_paths"].as_array().unwrap() {
        let prefix = p.as_str().unwrap().strip_suffix('*').unwrap();
        locations.push_str(&format!("location {prefix} {{ jwtwarden_fresh on; {pass} }}\n"));
    }
    format!(
        "  jwtwarden_config {};\n  jwtwarden on;\n  jwtwarden_realm {};\n  jwtwarden_claim_header sub X-Contract-Sub;\n\
         server {{\n listen {{listen}};\n{locations}\n}}",
        config.display(),
        mw["realm"].as_str().unwrap(),
    )
}

/// Rows nginx answers itself before any module runs: it refuses a second
/// `Authorization` field while reading the request ("client sent duplicate
/// header line"), with the same status (400) but its own HTML page. Checked
/// for the status and for not repeating the token.
fn answered_by_nginx(case: &Value) -> bool {
    let headers = case["request"]["headers"].as_array().unwrap();
    headers
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("authorization"))
        .count()
        > 1
}

fn check(case: &Value, r: &Resp, sent: &[String]) -> Vec<String> {
    if answered_by_nginx(case) {
        let mut problems = contract::check_status(case, r);
        if sent.iter().any(|t| r.body.contains(t.as_str())) {
            problems.push("nginx's page repeats a token sent".into());
        }
        return problems;
    }
    // The application's answer: what the upstream received.
    let seen = |r: &Resp| {
        let h: HashMap<String, String> = echoed(r).into_iter().collect();
        Seen {
            sub: h.get("x-contract-sub").cloned(),
            cached: h.get("x-contract-cached").cloned(),
        }
    };
    contract::check(case, r, sent, seen, &[])
}

#[test]
fn every_contract_row_holds_against_the_module() {
    let Some((binary, module)) = module() else { return };
    let table = contract::table();
    let issuer = TestIssuer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("engine.json");
    std::fs::write(&config, contract::engine_config(&table, &issuer)).unwrap();
    let upstream = Upstream::start();
    // One worker: `repeat` rows expect the second answer from the cache.
    let nginx = Nginx::start(&binary, &module, 1, &contract_http(&table, &config, upstream.port));
    let tokens = contract::tokens(&table, &issuer);
    let replay = contract::replay(&table, &tokens, |row| {
        let all = row.fields();
        let r = row.send(|| request(&nginx.addr, row.method, row.path, &all, ""));
        let problems = check(row.case, &r, &row.sent);
        (r, problems)
    });
    assert!(
        replay.failures.is_empty(),
        "rows that differ:\n{}\n{}",
        replay.failures.join("\n"),
        nginx.error_log()
    );
    assert_eq!(replay.skipped, 1, "only the closed-verifier row is skipped");
    let cases = contract::cases(&table);
    assert_eq!(cases.iter().filter(|c| answered_by_nginx(c)).count(), 1);
    // No refusal reached the application.
    let allowed = cases.iter().filter(|c| c["expect"]["status"].as_u64() == Some(200));
    let expected_hits: u64 = allowed.map(|c| c["repeat"].as_u64().unwrap_or(1)).sum();
    assert_eq!(upstream.hits(), expected_hits);
}

/// A revocation published through the Redis feed (by another process's
/// verifier, `jwtwarden revoke` with the same configuration) is refused by
/// every worker, the token having been cached in them before.
#[test]
fn a_revocation_through_the_redis_feed_reaches_every_worker() {
    let Some(redis) = jwtwarden_testissuer::redis::RedisServer::start() else {
        panic!("redis-server is not installed");
    };
    let feed = json!({"redis": {"url": redis.url(), "timeout_ms": 1000}});
    let Some(s) = stack(4, json!({"revocation": feed, "state_dir": null})) else {
        return;
    };
    let token = s.token(|c| c["jti"] = json!("jti-feed-1"));
    for _ in 0..12 {
        assert_eq!(s.get("/api/orders", &token).status, 200);
    }
    let stdout = s.revoke_jti("jti-feed-1");
    assert!(stdout.contains("\"fleet\""), "published to the fleet: {stdout}");
    s.until_every_worker_refuses(&token, 4);
    s.assert_refused(&token, "revoked through the feed");
}

/// With N workers the identity provider sees at most one JWKS fetch per
/// worker for a storm of unknown kids (each worker's verifier rate-limits
/// its own; with the shared `state_dir` they share one fetch, which
/// `nginx_shared_fetch.rs` measures).
#[test]
fn an_unknown_kid_storm_costs_at_most_one_fetch_per_worker() {
    // No scheduled refresh during the storm (keysets live 60 s at least).
    let Some(s) = stack_with(4, |e| {
        e["issuers"][0]["refresh"]["unknown_kid_cooldown_secs"] = json!(60);
        e["issuers"][0]["refresh"]["min_ttl_secs"] = json!(60);
    }) else {
        return;
    };
    // Every worker has fetched its keys at start.
    let good = s.token(|_| {});
    for _ in 0..8 {
        assert_eq!(s.get("/api/orders", &good).status, 200);
    }
    // Start-up: one fetch shared through the state_dir (a worker that starts
    // late adopts the persisted set; the bound below allows one per worker).
    eventually("the start-up fetch", || s.issuer.jwks_requests() >= 1);
    let before = s.issuer.jwks_requests();
    let first = s.issuer.first_kid();
    for i in 0..40 {
        let t = s.issuer.mint_with_header(
            &first,
            &json!({"alg": "RS256", "typ": "JWT", "kid": format!("storm-{i}")}),
            &s.issuer.default_claims("storm", now()),
        );
        let r = s.get("/api/orders", &t);
        assert_eq!(r.status, 401, "{r:?}");
    }
    let fetches = s.issuer.jwks_requests() - before;
    assert!(
        (1..=4).contains(&fetches),
        "{fetches} JWKS fetches for one storm with 4 workers"
    );
    eprintln!("unknown-kid storm of 40 requests, 4 workers: {fetches} JWKS fetches");
}

/// What the identity provider sees with 4 workers (printed, bounds
/// asserted): at most one JWKS fetch per worker at start (none in the master, and
/// the shared state_dir does not replace a start-up fetch); per rotation
/// (tokens of a new kid arrive), at most one unknown-kid fetch per worker;
/// an unknown-kid storm right after, within the cooldown the rotation's
/// fetches opened, none. The workers do not share fetches (each verifier
/// rate-limits its own): N workers cost up to N fetches per event.
#[test]
fn with_four_workers_the_idp_sees_at_most_one_fetch_per_worker_at_start_and_per_rotation() {
    // No scheduled refresh during the test (keysets live 60 s at least).
    let Some(s) = stack_with(4, |e| {
        e["issuers"][0]["refresh"]["unknown_kid_cooldown_secs"] = json!(60);
        e["issuers"][0]["refresh"]["min_ttl_secs"] = json!(60);
    }) else {
        return;
    };
    let every_worker_passes = |token: &str, what: &str| {
        let mut seen = std::collections::HashSet::new();
        eventually(what, || {
            let r = s.get("/api/orders", token);
            assert_eq!(r.status, 200, "{what}: {r:?}\n{}", s.nginx.error_log());
            seen.insert(r.header("x-worker").unwrap().to_string());
            seen.len() == 4
        });
    };
    every_worker_passes(&s.token(|_| {}), "every worker answers");
    let at_start = s.issuer.jwks_requests();
    // At most one per worker (4 today; fewer once workers share fetches).
    assert!(
        (1..=4).contains(&at_start),
        "{at_start} start-up fetches: none in the master"
    );

    let new_kid = s.issuer.rotate(jwtwarden_testissuer::Alg::RS256);
    let rotated = s.issuer.mint(&new_kid, &s.issuer.default_claims("rotated", now()));
    every_worker_passes(&rotated, "every worker verifies the new kid");
    let per_rotation = s.issuer.jwks_requests() - at_start;
    assert!(
        (1..=4).contains(&per_rotation),
        "{per_rotation} JWKS fetches for one rotation with 4 workers"
    );

    let before = s.issuer.jwks_requests();
    for i in 0..40 {
        let t = s.issuer.mint_with_header(
            &new_kid,
            &json!({"alg": "RS256", "typ": "JWT", "kid": format!("storm-{i}")}),
            &s.issuer.default_claims("storm", now()),
        );
        let r = s.get("/api/orders", &t);
        assert_eq!(r.status, 401, "{r:?}");
        assert_eq!(r.json()["error"], "unknown_kid", "{r:?}");
    }
    let storm = s.issuer.jwks_requests() - before;
    assert_eq!(storm, 0, "a storm within every worker's cooldown fetched");
    eprintln!(
        "IdP with 4 workers: {at_start} JWKS fetches at start, {per_rotation} for a rotation, \
         {storm} for a 40-kid storm within the cooldown"
    );
}

/// A key rotation under load: the issuer publishes a new key beside the
/// old one and starts signing with it; with 4 workers, every request (old
/// and new tokens, from several client threads) passes: each worker's first
/// token of the new kid is verified on its thread pool.
#[test]
fn a_key_rotation_under_load_fails_no_request() {
    let Some(s) = stack(4, json!({})) else { return };
    let old = s.token(|_| {});
    let new_kid = s.issuer.rotate(jwtwarden_testissuer::Alg::RS256);
    let new = s.issuer.mint(&new_kid, &s.issuer.default_claims("rotated", now()));
    let failed = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (addr, failed) = (s.nginx.addr.clone(), failed.clone());
            let tokens = [old.clone(), new.clone()];
            std::thread::spawn(move || {
                for n in 0..60 {
                    let auth = format!("Bearer {}", tokens[(n + i) % 2]);
                    let r = request(&addr, "GET", "/api/orders", &[("Authorization", &auth)], "");
                    if r.status != 200 {
                        failed.fetch_add(1, Ordering::SeqCst);
                        eprintln!("{r:?}");
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(failed.load(Ordering::SeqCst), 0, "{}", s.nginx.error_log());
    assert_eq!(s.upstream.hits(), 240);
}

/// What only a verifier build checks (the `state_dir` journal: opening it
/// is the worker's business, never the master's or `nginx -t`'s) fails at
/// the worker: logged naming the field, and its locations answer 500
/// (fail closed), never the upstream.
#[test]
fn an_engine_configuration_only_a_build_refuses_fails_closed_and_is_logged_with_its_field() {
    let Some((binary, module)) = module() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("engine.json");
    // state_dir below a regular file: no journal can be opened there.
    let mut engine: Value = serde_json::from_str(GOOD_ENGINE).unwrap();
    engine["state_dir"] = json!(cfg.join("state"));
    std::fs::write(&cfg, engine.to_string()).unwrap();
    let upstream = Upstream::start();
    let http = format!(
        "  jwtwarden_config {};\n  server {{ listen {{listen}}; location / {{ jwtwarden on; proxy_pass http://127.0.0.1:{}; }} }}",
        cfg.display(),
        upstream.port
    );
    let (ok, out) = nginx_t(&binary, &module, &http);
    assert!(ok, "nginx -t opened the state_dir? {out}");
    let nginx = Nginx::start(&binary, &module, 2, &http);
    let r = nginx.get("/", &[("Authorization", "Bearer a.b.c")]);
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(upstream.hits(), 0);
    let log = nginx.error_log();
    assert!(log.contains("state_dir"), "{log}");
}

/// An engine file every check accepts (its issuer is never fetched by a
/// check: port 1 on loopback answers nothing).
const GOOD_ENGINE: &str = r#"{"issuers": [{"issuer": "https://idp.example", "jwks_uri": "http://127.0.0.1:1/jwks",
    "audiences": ["api"]}], "http": {"allow_http": true, "connect_timeout_ms": 200, "timeout_ms": 300}}"#;

/// `nginx -t` checks the engine's own file (jwtwarden_config_check) in the
/// master, without a verifier: a bad field, an unknown one, a wrong type,
/// invalid JSON, a static keyset with no usable key and a missing file all
/// fail with exit status 1 and a message naming the field (or the file);
/// a good file passes, and the test neither fetches the issuer's keys nor
/// creates the `state_dir`.
#[test]
fn nginx_t_checks_the_engine_file_and_names_the_field() {
    let Some((binary, module)) = module() else { return };
    let issuer = TestIssuer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("engine.json");
    let state = dir.path().join("state");
    let http = format!(
        "  jwtwarden_config {};\n  server {{ listen {{listen}}; location / {{ jwtwarden on; return 200; }} }}",
        cfg.display()
    );
    let good = json!({
        "issuers": [{"issuer": issuer.url(), "jwks_uri": issuer.jwks_uri(), "audiences": ["api"]}],
        "http": {"allow_http": true},
        "state_dir": state,
    });
    let test = |engine: &str| {
        std::fs::write(&cfg, engine).unwrap();
        nginx_t_status(&binary, &module, &http)
    };
    let (code, out) = test(&good.to_string());
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(issuer.jwks_requests(), 0, "nginx -t fetched keys");
    assert!(!state.exists(), "nginx -t created the state_dir");

    let edited = |f: &dyn Fn(&mut Value)| {
        let mut e = good.clone();
        f(&mut e);
        e.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        (
            edited(&|e| e["issuers"][0]["jwks_uri"] = json!(7)),
            "issuers[0].jwks_uri",
        ),
        (edited(&|e| e["issuers"][0]["audiencez"] = json!(["api"])), "audiencez"),
        (edited(&|e| e["cache"] = json!({"capacity": "lots"})), "cache.capacity"),
        (edited(&|e| e["http"]["allow_http"] = json!(false)), "jwks_uri"),
        (
            edited(&|e| {
                e["issuers"][0]["jwks_uri"] = Value::Null;
                e["issuers"][0]["jwks"] = json!({"keys": []});
            }),
            "issuers[0]: static JWKS unusable",
        ),
        (good.to_string()[..20].to_string(), "EOF"),
        ("{\"issuers\": [}".to_string(), "at line 1 column"),
    ];
    for (engine, field) in &cases {
        let (code, out) = test(engine);
        assert_eq!(code, Some(1), "{engine}: {out}");
        assert!(
            out.contains("[emerg]") && out.contains(field),
            "{engine}: {out} does not name {field}"
        );
        assert!(out.contains(&cfg.display().to_string()), "{out} does not name the file");
    }
    std::fs::remove_file(&cfg).unwrap();
    let (code, out) = nginx_t_status(&binary, &module, &http);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("cannot open") && out.contains(&cfg.display().to_string()),
        "{out}"
    );
    assert_eq!(issuer.jwks_requests(), 0, "nginx -t fetched keys");
    assert!(!state.exists(), "nginx -t created the state_dir");
}

/// `nginx -s reload` (SIGHUP) with an engine file that became bad: the
/// master refuses the new configuration naming the field, and the old
/// workers keep serving (nothing fails under load); once the file is
/// fixed, a reload brings new workers.
#[test]
fn a_reload_with_a_bad_engine_file_keeps_the_old_workers_serving() {
    let Some(s) = stack(2, json!({})) else { return };
    let good = s.token(|_| {});
    let load = Load::start(&s.nginx.addr, &good, 2);
    load.passes(20, "load runs");
    let old_workers = children(s.nginx.child.id());
    assert_eq!(old_workers.len(), 2, "{old_workers:?}");
    let text = std::fs::read_to_string(&s.config).unwrap();
    let mut bad: Value = serde_json::from_str(&text).unwrap();
    bad["issuers"][0]["leeway_secs"] = json!("soon");
    std::fs::write(&s.config, bad.to_string()).unwrap();
    s.nginx.signal(libc::SIGHUP);
    eventually("the master refuses the reload", || {
        s.nginx.error_log().contains("issuers[0].leeway_secs")
    });
    load.passes(50, "requests after the refused reload");
    let answered = load.workers.lock().unwrap().clone();
    assert!(
        answered.is_subset(&old_workers),
        "{answered:?}: new workers answered, the bad file was taken"
    );
    assert_eq!(children(s.nginx.child.id()), old_workers, "the workers changed");
    let log = s.nginx.error_log();
    assert!(
        log.contains("[emerg]") && log.contains(&s.config.display().to_string()),
        "{log}"
    );

    // Fixed: the next reload replaces the workers.
    std::fs::write(&s.config, text).unwrap();
    s.nginx.signal(libc::SIGHUP);
    eventually("new workers answer", || {
        let r = s.get("/api/orders", &good);
        assert_eq!(r.status, 200, "{r:?}");
        !old_workers.contains(r.header("x-worker").unwrap())
    });
    let (passed, failed) = load.stop();
    assert_eq!(failed, 0, "{}", s.nginx.error_log());
    eprintln!("reload with a bad engine file under load (2 workers, 2 clients): {passed} passed, 0 failed");
}

/// The pids (as `$pid` prints them) of the processes whose parent is `pid`.
fn children(pid: u32) -> std::collections::HashSet<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // "pid (comm) state ppid ...": comm may hold spaces, not ')'.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            (ppid == pid.to_string()).then(|| e.file_name().to_string_lossy().to_string())
        })
        .collect()
}

/// `$jwtwarden_claim_NAME` for any claim (not only those mapped to a
/// header), as `proxy_set_header`, `add_header` and `log_format` read it:
/// strings as they are, numbers, arrays joined by commas, objects as JSON;
/// sanitised like a claim header (a claim with CR LF cannot add a header);
/// no value for an absent claim (the client's own field of that name is
/// still dropped by proxy_set_header), nor for a refused token, nor in an
/// open location.
#[test]
fn claim_variables_give_any_claim_sanitised_and_never_for_a_refused_token() {
    const HTTP: &str = "  log_format claims 'tenant=$jwtwarden_claim_tenant level=$jwtwarden_claim_level \
        roles=$jwtwarden_claim_roles error=$jwtwarden_error';";
    const CLAIM_LOCATIONS: &str = r#"
    jwtwarden on;
    jwtwarden_audience api;
    access_log logs/claims.log claims;
    location / {
      proxy_pass http://127.0.0.1:{up};
      proxy_set_header X-Tenant $jwtwarden_claim_tenant;
      proxy_set_header X-Level $jwtwarden_claim_level;
      proxy_set_header X-Roles $jwtwarden_claim_roles;
      proxy_set_header X-Org $jwtwarden_claim_org;
      proxy_set_header X-Evil $jwtwarden_claim_evil;
      add_header X-Tenant-Out "[$jwtwarden_claim_tenant]" always;
    }
    location /open/ {
      jwtwarden open;
      proxy_pass http://127.0.0.1:{up};
      proxy_set_header X-Tenant $jwtwarden_claim_tenant;
      add_header X-Tenant-Out "[$jwtwarden_claim_tenant]" always;
    }
"#;
    let Some(s) = stack_full(2, Mode::Foreground, HTTP, CLAIM_LOCATIONS, |_| {}) else {
        return;
    };
    let token = s.token(|c| {
        c["tenant"] = json!("acme");
        c["level"] = json!(3);
        c["roles"] = json!(["admin", "ops"]);
        c["org"] = json!({"id": "o1"});
        c["evil"] = json!("x\r\nX-Injected: yes\r\n\r\nGET /smuggled HTTP/1.1");
    });
    let auth = format!("Bearer {token}");
    for _ in 0..4 {
        let r = s
            .nginx
            .get("/api", &[("Authorization", &auth), ("X-Tenant", "spoofed")]);
        assert_eq!(r.status, 200, "{r:?}\n{}", s.nginx.error_log());
        assert_eq!(r.header("x-tenant-out"), Some("[acme]"));
        let h = echoed(&r);
        assert_eq!(header(&h, "x-tenant"), ["acme"], "{h:?}");
        assert_eq!(header(&h, "x-level"), ["3"], "{h:?}");
        assert_eq!(header(&h, "x-roles"), ["admin,ops"], "{h:?}");
        assert_eq!(header(&h, "x-org"), [r#"{"id":"o1"}"#], "{h:?}");
        assert_eq!(
            header(&h, "x-evil"),
            ["x  X-Injected: yes    GET /smuggled HTTP/1.1"],
            "{h:?}"
        );
        assert!(header(&h, "x-injected").is_empty(), "{h:?}");
    }
    assert_eq!(s.upstream.hits(), 4, "a smuggled request reached the upstream");

    // No such claim: no value, and the client's own X-Tenant stays dropped.
    let plain = s.token(|_| {});
    let r = s.nginx.get(
        "/api",
        &[("Authorization", &format!("Bearer {plain}")), ("X-Tenant", "spoofed")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-tenant-out"), Some("[]"));
    assert!(header(&echoed(&r), "x-tenant").is_empty(), "{r:?}");

    // Refused (expired, wrong audience) tokens carrying the claim: no value.
    let hits = s.upstream.hits();
    for bad in [
        s.token(|c| {
            c["tenant"] = json!("acme");
            c["exp"] = json!(now() - 3600);
            c["iat"] = json!(now() - 7200);
        }),
        s.token(|c| {
            c["tenant"] = json!("acme");
            c["aud"] = json!("other-api");
        }),
    ] {
        let r = s.get("/api", &bad);
        assert_eq!(r.status, 401, "{r:?}");
        assert_eq!(r.header("x-tenant-out"), Some("[]"), "{r:?}");
    }
    assert_eq!(s.upstream.hits(), hits);
    // An open location verifies nothing: no claim, even with a good token.
    let r = s
        .nginx
        .get("/open/x", &[("Authorization", &auth), ("X-Tenant", "spoofed")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-tenant-out"), Some("[]"));
    assert!(header(&echoed(&r), "x-tenant").is_empty(), "{r:?}");

    // log_format: the allowed requests' values, "-" for the refused ones.
    let log_path = s.nginx.dir.path().join("logs/claims.log");
    let mut log = String::new();
    eventually("the access log has every request", || {
        log = std::fs::read_to_string(&log_path).unwrap_or_default();
        log.lines().count() >= 8
    });
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines
            .iter()
            .filter(|l| **l == "tenant=acme level=3 roles=admin,ops error=-")
            .count(),
        4,
        "{log}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| **l == "tenant=- level=- roles=- error=expired")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("tenant=- level=- roles=- error="))
            .count(),
        4,
        "{log}"
    );
}

// ---- verification assertions (issue 28) -----------------------------------

const ASSERTION_LOCATIONS: &str = r#"
    jwtwarden on;
    jwtwarden_audience api;
    jwtwarden_assertion orders;
    location /orders/ { proxy_pass http://127.0.0.1:{up}; }
    location /billing/ {
      jwtwarden_assertion billing header=X-Edge-Assertion;
      proxy_pass http://127.0.0.1:{up};
      location /billing/inner/ {
        jwtwarden_assertion inner;
        proxy_pass http://127.0.0.1:{up};
      }
    }
    location /open/ { jwtwarden open; proxy_pass http://127.0.0.1:{up}; }
"#;

/// `jwtwarden_assertion`: the upstream receives one assertion per request,
/// minted by the core's decision from the engine config's keys, that
/// verifies behind (the library's `Inheritance`, and golang-jwt) for this
/// method and normalised path only; the client's own copies of the header
/// never reach the upstream (allowed, open and repeated headers alike); a
/// repeat of the same request (a cache hit) carries a new assertion.
#[test]
fn the_module_mints_an_assertion_that_verifies_behind_for_its_request_only() {
    use common::assertion::{claims, edge_jwks, edge_pem, engine_section, Behind};
    let pem = edge_pem();
    let Some(s) = stack_at(2, Mode::Foreground, ASSERTION_LOCATIONS, |e| {
        e["assertion"] = engine_section(&pem)
    }) else {
        return;
    };
    let jwks = edge_jwks(&pem);
    let orders = Behind::new(&jwks, "orders");
    let billing = Behind::new(&jwks, "billing");
    let token = s.token(|_| {});
    let auth = format!("Bearer {token}");
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.";
    let r = s.get("/orders/1", &token);
    assert_eq!(r.status, 200, "{r:?}\n{}", s.nginx.error_log());

    let r = s.get("/orders/1", &token);
    assert_eq!(r.status, 200, "{r:?}\n{}", s.nginx.error_log());
    let mut jtis = std::collections::HashSet::new();
    let mut first = String::new();
    for i in 0..6 {
        let r = s.nginx.get(
            "/orders/./7?x=1",
            &[
                ("Authorization", &auth),
                ("X-Jwtwarden-Assertion", forged),
                ("x-jwtwarden-assertion", "second copy"),
            ],
        );
        assert_eq!(r.status, 200, "{r:?}\n{}", s.nginx.error_log());
        let h = echoed(&r);
        let got = header(&h, "x-jwtwarden-assertion");
        assert_eq!(got.len(), 1, "exactly the edge's assertion: {h:?}");
        let a = got[0].to_string();
        assert_ne!(a, forged);
        let c = claims(&a);
        assert_eq!(
            (c["htm"].as_str(), c["htu"].as_str(), c["aud"].as_str()),
            (Some("GET"), Some("/orders/7"), Some("orders"))
        );
        assert!(
            jtis.insert(c["jti"].as_str().unwrap().to_string()),
            "one assertion per request"
        );
        let original = orders
            .check(&a, "GET", "/orders/7?x=1")
            .unwrap_or_else(|k| panic!("request {i}: {k:?}"));
        assert_eq!(original["sub"], "alice");
        if i == 0 {
            first = a;
        }
    }
    // Used once already; replayed to another path or method, or to another
    // service: refused.
    assert_eq!(
        orders.check(&first, "GET", "/orders/7"),
        Err(jwtwarden::ErrorKind::Revoked)
    );
    let r = s.get("/orders/7", &token);
    let a = header(&echoed(&r), "x-jwtwarden-assertion")[0].to_string();
    assert_eq!(
        orders.check(&a, "GET", "/orders/8"),
        Err(jwtwarden::ErrorKind::InvalidAudience)
    );
    assert_eq!(
        orders.check(&a, "POST", "/orders/7"),
        Err(jwtwarden::ErrorKind::InvalidAudience)
    );
    assert!(billing.check(&a, "GET", "/orders/7").is_err());
    // An independent JWS library reads it as a standard EdDSA JWS.
    if let Some(c) = orders.golang_jwt(&a) {
        assert_eq!(c["htu"], "/orders/7");
        assert_eq!(c["iss"], "edge-1");
    }

    // Another location, another audience and header; the client's copy of
    // either header never passes.
    let r = s
        .nginx
        .get("/billing/x", &[("Authorization", &auth), ("X-Edge-Assertion", forged)]);
    assert_eq!(r.status, 200, "{r:?}");
    let h = echoed(&r);
    let got = header(&h, "x-edge-assertion");
    assert_eq!(got.len(), 1, "{h:?}");
    billing.check(got[0], "GET", "/billing/x").expect("billing's assertion");
    // A nested location's own directive takes its own header (the default),
    // not its parent's.
    let r = s.nginx.get("/billing/inner/x", &[("Authorization", &auth)]);
    let h = echoed(&r);
    assert!(header(&h, "x-edge-assertion").is_empty(), "{h:?}");
    let got = header(&h, "x-jwtwarden-assertion");
    assert_eq!(got.len(), 1, "{h:?}");
    assert_eq!(claims(got[0])["aud"], "inner");
    // An open location mints nothing and still drops the client's copy.
    let r = s.nginx.get("/open/x", &[("X-Jwtwarden-Assertion", forged)]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(header(&echoed(&r), "x-jwtwarden-assertion").is_empty(), "{r:?}");
    // A refused request never reaches the upstream, assertion or not.
    let before = s.upstream.hits();
    let r = s.nginx.get("/orders/7", &[("X-Jwtwarden-Assertion", forged)]);
    assert_eq!(r.status, 401);
    assert_eq!(s.upstream.hits(), before);
}

/// `nginx -t` refuses `jwtwarden_assertion` when the engine config has no
/// usable assertion keys, naming them, and a malformed header argument.
#[test]
fn nginx_t_refuses_an_assertion_without_keys() {
    let Some((binary, module)) = module() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("engine.json");
    let conf = |extra: &str| {
        format!(
            "  jwtwarden_config {};\n  server {{ listen {{listen}}; location / {{ jwtwarden on; {extra} return 200; }} }}",
            cfg.display()
        )
    };
    let engine = |assertion: Value| {
        // A key source `nginx -t` never fetches (jwtwarden_config_check
        // refuses an empty static keyset).
        let mut e: Value = serde_json::from_str(GOOD_ENGINE).unwrap();
        if !assertion.is_null() {
            e["assertion"] = assertion;
        }
        std::fs::write(&cfg, e.to_string()).unwrap();
    };
    engine(Value::Null);
    let (ok, out) = nginx_t(&binary, &module, &conf("jwtwarden_assertion orders;"));
    assert!(!ok && out.contains("no assertion section"), "{out}");
    let pem = common::assertion::edge_pem();
    engine(common::assertion::engine_section(&pem));
    let (ok, out) = nginx_t(&binary, &module, &conf("jwtwarden_assertion orders;"));
    assert!(ok, "{out}");
    let (ok, out) = nginx_t(&binary, &module, &conf("jwtwarden_assertion orders hdr=X;"));
    assert!(!ok && out.contains("header=NAME"), "{out}");
    let (ok, out) = nginx_t(
        &binary,
        &module,
        &conf("jwtwarden_assertion orders header=Authorization;"),
    );
    assert!(!ok && out.contains("assertion.header"), "{out}");
    engine(json!({"name": "e", "current": {"kid": "k", "pem": "x"}}));
    let (ok, out) = nginx_t(&binary, &module, &conf("jwtwarden_assertion orders;"));
    assert!(!ok && out.contains("assertion key"), "{out}");
}

/// The minting paths of the module (inline hit, thread-pool miss, refusal,
/// open location, the header dropped and set) under valgrind: no error in
/// the master or the worker.
#[test]
fn the_module_minting_under_valgrind_reports_no_error() {
    if std::env::var_os("JWTWARDEN_NGINX_PRELOAD").is_some() {
        eprintln!("SKIPPED: valgrind and AddressSanitizer do not mix");
        return;
    }
    let installed = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        assert!(
            std::env::var_os("JWTWARDEN_REQUIRE_VALGRIND").is_none(),
            "valgrind is not installed"
        );
        eprintln!("SKIPPED: valgrind is not installed");
        return;
    }
    let pem = common::assertion::edge_pem();
    let Some(s) = stack_at(1, Mode::Valgrind, ASSERTION_LOCATIONS, |e| {
        e["assertion"] = common::assertion::engine_section(&pem)
    }) else {
        return;
    };
    let orders = common::assertion::Behind::new(&common::assertion::edge_jwks(&pem), "orders");
    let auth = format!("Bearer {}", s.token(|_| {}));
    for _ in 0..3 {
        let r = s
            .nginx
            .get("/orders/1", &[("Authorization", &auth), ("X-Jwtwarden-Assertion", "x")]);
        assert_eq!(r.status, 200, "{r:?}\n{}", s.nginx.error_log());
        let h = echoed(&r);
        let a = header(&h, "x-jwtwarden-assertion");
        assert_eq!(a.len(), 1, "{h:?}");
        orders.check(a[0], "GET", "/orders/1").expect("verifies behind");
    }
    let r = s
        .nginx
        .get("/billing/x", &[("Authorization", &auth), ("X-Edge-Assertion", "x")]);
    assert_eq!(header(&echoed(&r), "x-edge-assertion").len(), 1);
    assert_eq!(s.nginx.get("/orders/1", &[("X-Jwtwarden-Assertion", "x")]).status, 401);
    assert_eq!(s.nginx.get("/open/x", &[("X-Jwtwarden-Assertion", "x")]).status, 200);
    // Dropping the stack stops nginx and reads valgrind's reports.
}
