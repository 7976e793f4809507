//! Issues 25/26, measured on real processes: nginx with
//! `ngx_http_jwtwarden_module` and 4 workers, each with its own verifier,
//! sharing one `state_dir`: the identity provider sees one JWKS fetch at
//! start, one per rotation and at most one per unknown-kid storm, not one
//! per worker (docs/design.md, "One fetch per host").
//!
//! Like `nginx_module.rs`, it needs the module built by
//! `scripts/build-nginx-module` and named by JWTWARDEN_NGINX_MODULE;
//! without it the test is skipped (with a message) unless
//! JWTWARDEN_REQUIRE_NGINX_MODULE is set.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::now;
use common::serve::{free_port, nginx_binary, nginx_command, request, wait_listening, Resp, Upstream};
use jwtwarden_testissuer::TestIssuer;
use serde_json::json;

const WORKERS: usize = 4;

fn module() -> Option<(PathBuf, PathBuf)> {
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

struct Nginx {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(binary: &Path, module: &Path, config: &Path, upstream: u16) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let conf = format!(
            "load_module {m};\nworker_processes {WORKERS};\nerror_log {d}/logs/error.log info;\npid {d}/nginx.pid;\n\
             thread_pool default threads=4;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             jwtwarden_config {c};\n  server {{\n    listen {addr};\n    jwtwarden on;\n    jwtwarden_audience api;\n\
             location / {{ proxy_pass http://127.0.0.1:{upstream}; add_header X-Worker $pid always; }}\n  }}\n}}\n",
            m = module.display(),
            c = config.display(),
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let mut cmd = nginx_command(binary, dir.path());
        if let Some(preload) = std::env::var_os("JWTWARDEN_NGINX_PRELOAD") {
            cmd.env("LD_PRELOAD", preload).env("ASAN_OPTIONS", "detect_leaks=0");
        }
        let child = cmd.spawn().expect("start nginx");
        wait_listening(&addr);
        Nginx { child, addr, _dir: dir }
    }

    fn get(&self, token: &str) -> Resp {
        let auth = format!("Bearer {token}");
        request(&self.addr, "GET", "/api", &[("Authorization", &auth)], "")
    }

    /// Send `token` until every worker has answered it with `status`
    /// (which worker answers is the kernel's choice; `X-Worker` says).
    fn until_every_worker_answers(&self, token: impl Fn() -> String, status: u16) {
        let mut seen = HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.len() < WORKERS {
            assert!(Instant::now() < deadline, "only workers {seen:?} answered {status}");
            let r = self.get(&token());
            assert_eq!(r.status, status, "{r:?}");
            if let Some(pid) = r.header("x-worker") {
                seen.insert(pid.to_string());
            }
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The test issuer, nginx with 4 workers on one state_dir, and what they
/// need to live.
struct Stack {
    nginx: Nginx,
    issuer: TestIssuer,
    _upstream: Upstream,
    _dir: tempfile::TempDir,
}

fn stack() -> Option<Stack> {
    let (binary, module) = module()?;
    let issuer = TestIssuer::start();
    let dir = tempfile::tempdir().unwrap();
    // The workers run as another user (nobody, when started as root).
    use std::os::unix::fs::PermissionsExt;
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = dir.path().join("jwtwarden.json");
    let engine = json!({
        "issuers": [{"issuer": issuer.url(), "jwks_uri": issuer.jwks_uri(), "audiences": ["api"],
                     "refresh": {"min_ttl_secs": 600, "unknown_kid_cooldown_secs": 60}}],
        "http": {"allow_http": true, "timeout_ms": 3000},
        "state_dir": state,
    });
    std::fs::write(&config, engine.to_string()).unwrap();
    let upstream = Upstream::start();
    let nginx = Nginx::start(&binary, &module, &config, upstream.port);
    // Every worker has built its verifier and holds the keys.
    let good = issuer.mint(&issuer.first_kid(), &issuer.default_claims("svc", now()));
    nginx.until_every_worker_answers(|| good.clone(), 200);
    Some(Stack {
        nginx,
        issuer,
        _upstream: upstream,
        _dir: dir,
    })
}

#[test]
fn four_workers_fetch_once_at_start_and_once_per_rotation() {
    let Some(s) = stack() else { return };
    let at_start = s.issuer.jwks_requests();
    let new = s.issuer.rotate(jwtwarden_testissuer::Alg::RS256);
    let rotated = s.issuer.mint(&new, &s.issuer.default_claims("svc", now()));
    s.nginx.until_every_worker_answers(|| rotated.clone(), 200);
    let rotation = s.issuer.jwks_requests() - at_start;
    eprintln!("nginx, {WORKERS} workers, one state_dir: {at_start} JWKS fetch(es) at start, {rotation} for a rotation");
    assert_eq!(at_start, 1, "one fetch at start for {WORKERS} workers");
    assert_eq!(rotation, 1, "one fetch for the rotation");
}

#[test]
fn four_workers_fetch_once_for_an_unknown_kid_storm() {
    let Some(s) = stack() else { return };
    let before = s.issuer.jwks_requests();
    let first = s.issuer.first_kid();
    let n = std::sync::atomic::AtomicU64::new(0);
    let storm = || {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        s.issuer.mint_with_header(
            &first,
            &json!({"alg": "RS256", "typ": "JWT", "kid": format!("storm-{i}")}),
            &s.issuer.default_claims("storm", now()),
        )
    };
    s.nginx.until_every_worker_answers(storm, 401);
    for _ in 0..40 {
        assert_eq!(s.nginx.get(&storm()).status, 401);
    }
    let fetches = s.issuer.jwks_requests() - before;
    eprintln!(
        "nginx, {WORKERS} workers, one state_dir: {fetches} JWKS fetch(es) for an unknown-kid storm of {} requests",
        n.into_inner()
    );
    assert_eq!(fetches, 1, "one fetch for the storm, not one per worker");
}
