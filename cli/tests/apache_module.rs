//! mod_jwtwarden (bindings/apache) inside the Debian `apache2` binary, on
//! loopback ports, with its own temporary ServerRoot (no /etc/apache2),
//! under the prefork and event MPMs, in front of a shell CGI that prints
//! `REMOTE_USER` and the `JWT_CLAIM_*` environment and of a proxied
//! upstream that echoes the headers it receives.
//!
//! The module is the one `scripts/build-apache-module` printed, passed in
//! `JWTWARDEN_APACHE_MODULE` (scripts/test-apache sets it). Skipped (with a
//! message) when apache2 or the module is missing, unless
//! `JWTWARDEN_REQUIRE_APACHE=1`.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::contract::{self, Seen};
use common::now;
use common::serve::{echoed, free_port, request, Resp, Upstream};
use jwtwarden_testissuer::redis::RedisServer;
use jwtwarden_testissuer::{Alg, Fault, TestIssuer};
use serde_json::{json, Value};

const APACHE_MODULES: &str = "/usr/lib/apache2/modules";

fn apache_binary() -> Option<PathBuf> {
    ["/usr/sbin/apache2", "/usr/local/apache2/bin/httpd", "/usr/sbin/httpd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// apache2 and the module, or None (skip) when allowed.
fn prerequisites() -> Option<(PathBuf, PathBuf)> {
    let binary = apache_binary();
    let module = std::env::var_os("JWTWARDEN_APACHE_MODULE").map(PathBuf::from);
    match (binary, module) {
        (Some(b), Some(m)) if m.exists() && Path::new(APACHE_MODULES).join("mod_mpm_event.so").exists() => Some((b, m)),
        (b, m) => {
            let why =
                format!("apache2: {b:?}, JWTWARDEN_APACHE_MODULE: {m:?} (scripts/test-apache builds and sets both)");
            if std::env::var_os("JWTWARDEN_REQUIRE_APACHE").is_some() {
                panic!("JWTWARDEN_REQUIRE_APACHE is set but {why}");
            }
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

/// A free loopback port that no other Apache of this test binary got:
/// apache2 listens with SO_REUSEPORT, so two servers handed the same port
/// by the bind-and-release of `free_port` would both bind it and share its
/// connections.
fn apache_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    loop {
        let port = free_port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mpm {
    Prefork,
    Worker,
    Event,
}

/// The CGI: every request's user, cached flag and claims, one per line.
const APP_SH: &str = "#!/bin/sh\n\
printf 'Content-Type: text/plain\\r\\n\\r\\n'\n\
printf 'REMOTE_USER=%s\\n' \"$REMOTE_USER\"\n\
printf 'CACHED=%s\\n' \"$JWTWARDEN_CACHED\"\n\
printf 'X_AUTH_SUB=%s\\n' \"$HTTP_X_AUTH_SUB\"\n\
env | grep '^JWT_CLAIM_' | sort\n\
if [ -n \"$APP_LOG\" ]; then echo hit >> \"$APP_LOG\"; fi\n";

struct Apache {
    binary: PathBuf,
    root: tempfile::TempDir,
    child: Option<Child>,
    addr: String,
    conf: PathBuf,
}

impl Apache {
    /// Apache with `engine` as JwtWardenConfig and `locations` inside the
    /// server config; the CGI answers every path outside `/up/`, which is
    /// proxied to `upstream_port`.
    fn start(
        binary: &Path,
        module: &Path,
        mpm: Mpm,
        children: u32,
        engine: &Value,
        locations: &str,
        upstream_port: u16,
    ) -> Apache {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in ["cgi", "run", "state", "logs"] {
            std::fs::create_dir(r.join(d)).unwrap();
        }
        // Children run as nobody when the test runs as root: they need to
        // reach the CGI, the run directory and the shared state_dir.
        std::fs::set_permissions(r, std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in ["run", "state", "logs"] {
            std::fs::set_permissions(r.join(d), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        std::fs::write(r.join("cgi/app.sh"), APP_SH).unwrap();
        std::fs::set_permissions(r.join("cgi/app.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(r.join("app.log"), "").unwrap();
        std::fs::set_permissions(r.join("app.log"), std::fs::Permissions::from_mode(0o666)).unwrap();
        let engine = engine
            .to_string()
            .replace("{state_dir}", &r.join("state").display().to_string());
        std::fs::write(r.join("engine.json"), engine).unwrap();
        std::fs::set_permissions(r.join("engine.json"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let port = apache_port();
        let (mpm_name, cgi, mpm_conf) = match mpm {
            Mpm::Prefork => (
                "prefork",
                "cgi",
                format!(
                    "StartServers {children}\nMinSpareServers {children}\nMaxSpareServers {children}\n\
                     ServerLimit {children}\nMaxRequestWorkers {children}\n"
                ),
            ),
            Mpm::Worker | Mpm::Event => (
                if mpm == Mpm::Worker { "worker" } else { "event" },
                "cgid",
                format!(
                    "StartServers {children}\nServerLimit {children}\nThreadsPerChild 8\n\
                     MaxRequestWorkers {}\nMinSpareThreads 1\nMaxSpareThreads {}\nScriptSock \"{}\"\n",
                    children * 8,
                    children * 8,
                    r.join("run/cgid.sock").display()
                ),
            ),
        };
        // SAFETY: getuid has no preconditions.
        let user = if unsafe { libc::getuid() } == 0 {
            "User nobody\nGroup nogroup\n"
        } else {
            ""
        };
        let m = |name: &str, file: &str| format!("LoadModule {name}_module {APACHE_MODULES}/mod_{file}.so\n");
        let conf = format!(
            "ServerRoot \"{root}\"\nDefaultRuntimeDir \"{root}/run\"\nPidFile \"{root}/run/httpd.pid\"\n\
             ErrorLog \"{root}/logs/error.log\"\nLogLevel warn\nListen 127.0.0.1:{port}\nServerName 127.0.0.1\n\
             {mpm_mod}{authn}{authz}{cgi_mod}{env}{alias}{proxy}{proxy_http}\
             LoadModule jwtwarden_module \"{module}\"\n{user}{mpm_conf}\
             KeepAlive Off\nTimeout 10\nGracefulShutdownTimeout 5\n\
             DocumentRoot \"{root}/cgi\"\nPassEnv PATH\nSetEnv APP_LOG \"{root}/app.log\"\n\
             JwtWardenConfig \"{root}/engine.json\"\n\
             ScriptAliasMatch \"^/(?!up/)\" \"{root}/cgi/app.sh\"\n\
             ProxyPass /up/ http://127.0.0.1:{upstream_port}/\n\
             {locations}\n",
            root = r.display(),
            mpm_mod = m(&format!("mpm_{mpm_name}"), &format!("mpm_{mpm_name}")),
            authn = m("authn_core", "authn_core"),
            authz = m("authz_core", "authz_core"),
            cgi_mod = m(cgi, cgi),
            env = m("env", "env"),
            alias = m("alias", "alias"),
            proxy = m("proxy", "proxy"),
            proxy_http = m("proxy_http", "proxy_http"),
            module = module.display(),
        );
        let conf_path = r.join("httpd.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut a = Apache {
            binary: binary.to_path_buf(),
            root,
            child: None,
            addr: format!("127.0.0.1:{port}"),
            conf: conf_path,
        };
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"umask 000; exec "$0" -f "$1" -DFOREGROUND"#)
            .arg(&a.binary)
            .arg(&a.conf)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: apache2 signals its whole group when
            // it stops, and the test runner must not be in it.
            .process_group(0)
            .spawn()
            .unwrap();
        a.child = Some(child);
        a.wait_serving();
        a
    }

    fn wait_serving(&mut self) {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("apache2 exited ({status}):\n{}", self.error_log());
            }
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return;
            }
            assert!(Instant::now() < until, "apache2 not listening:\n{}", self.error_log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.path("logs/error.log")).unwrap_or_default()
    }

    fn app_hits(&self) -> usize {
        std::fs::read_to_string(self.path("app.log"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        request(&self.addr, "GET", path, headers, "")
    }

    fn bearer(&self, path: &str, token: &str) -> Resp {
        self.get(path, &[("Authorization", &format!("Bearer {token}"))])
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.as_ref().unwrap().id() as i32, sig) }, 0);
    }
}

impl Apache {
    /// Stop (SIGTERM, as `apachectl stop`) and return the error log.
    fn stop(&mut self) -> String {
        self.shutdown();
        self.error_log()
    }

    fn shutdown(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let until = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The CGI's lines as a map.
fn app_env(r: &Resp) -> HashMap<String, String> {
    r.body
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The engine's config; `{state_dir}` becomes the ServerRoot's `state/`.
fn engine_for(issuer: &TestIssuer) -> Value {
    json!({
        "issuers": [{"issuer": issuer.url(), "jwks_uri": issuer.jwks_uri(), "audiences": ["api"]}],
        "http": {"allow_http": true, "timeout_ms": 3000},
        "state_dir": "{state_dir}",
    })
}

const LOCATIONS: &str = r#"
<Location />
  AuthType jwtwarden
  AuthName api
  JwtWardenOpen /healthz
  JwtWardenClaimHeader sub X-Auth-Sub
  JwtWardenClaimHeader name X-Auth-Name
  Require jwt-issuer ISSUER
</Location>
<Location /admin/>
  JwtWardenFresh On
</Location>
<Location /any/>
  <RequireAny>
    Require jwt-claim role admin auditor
    Require jwt-scope write
  </RequireAny>
</Location>
<Location /all/>
  <RequireAll>
    Require jwt-claim role admin
    Require jwt-scope write read
  </RequireAll>
</Location>
<Location /not/>
  <RequireAll>
    Require jwt-issuer ISSUER
    Require not jwt-claim sub mallory
  </RequireAll>
</Location>
<Location /strict/>
  AuthzSendForbiddenOnFailure On
  Require jwt-scope write
</Location>
"#;

struct Stack {
    issuer: TestIssuer,
    upstream: Upstream,
    apache: Apache,
}

fn stack(mpm: Mpm, children: u32) -> Option<Stack> {
    stack_with(mpm, children, |_| {})
}

/// The stack, with the engine's config changed by `edit` first.
fn stack_with(mpm: Mpm, children: u32, edit: impl FnOnce(&mut Value)) -> Option<Stack> {
    stack_at(mpm, children, LOCATIONS, edit)
}

/// The stack with `locations` (`ISSUER`: the issuer's URL).
fn stack_at(mpm: Mpm, children: u32, locations: &str, edit: impl FnOnce(&mut Value)) -> Option<Stack> {
    let (binary, module) = prerequisites()?;
    let issuer = TestIssuer::start();
    let upstream = Upstream::start();
    let locations = locations.replace("ISSUER", &issuer.url());
    let mut engine = engine_for(&issuer);
    edit(&mut engine);
    let apache = Apache::start(&binary, &module, mpm, children, &engine, &locations, upstream.port);
    Some(Stack {
        issuer,
        upstream,
        apache,
    })
}

impl Stack {
    fn token(&self, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = self.issuer.default_claims("alice", now());
        edit(&mut claims);
        self.issuer.mint(&self.issuer.first_kid(), &claims)
    }

    /// `token` gets a 401 invalid_token and the CGI never runs.
    fn assert_refused(&self, token: &str, what: &str) {
        let before = self.apache.app_hits();
        let r = self.apache.bearer("/orders", token);
        assert_eq!(r.status, 401, "{what}: {r:?}\n{}", self.apache.error_log());
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with(r#"Bearer realm="api", error="invalid_token""#),
            "{what}: {r:?}"
        );
        assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
        assert!(!r.body.contains(token), "{what}: the token is echoed");
        assert_eq!(self.apache.app_hits(), before, "{what}: the CGI ran");
    }
}

fn valid_and_bad_tokens(s: &Stack) {
    let issuer = &s.issuer;
    let kid = issuer.first_kid();
    let good = s.token(|c| c["name"] = json!("Alice A."));
    let r = s.apache.bearer("/orders", &good);
    assert_eq!(r.status, 200, "{r:?}\n{}", s.apache.error_log());
    let env = app_env(&r);
    assert_eq!(env["REMOTE_USER"], "alice");
    assert_eq!(env["JWT_CLAIM_sub"], "alice");
    assert_eq!(env["JWT_CLAIM_name"], "Alice A.");
    assert_eq!(env["JWT_CLAIM_iss"], issuer.url());
    assert_eq!(env["JWT_CLAIM_aud"], "api");
    assert_eq!(env["X_AUTH_SUB"], "alice");

    // Missing: the bare challenge, the CGI never runs.
    let before = s.apache.app_hits();
    let r = s.apache.get("/orders", &[]);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="api""#));
    assert_eq!(r.json()["error"], "missing_token");
    assert_eq!(s.apache.app_hits(), before);

    s.assert_refused(
        &s.token(|c| {
            c["exp"] = json!(now() - 3600);
            c["iat"] = json!(now() - 7200);
        }),
        "expired",
    );
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    parts[1] = s
        .token(|c| c["sub"] = json!("mallory"))
        .split('.')
        .nth(1)
        .unwrap()
        .to_string();
    s.assert_refused(&parts.join("."), "forged (payload swapped)");
    s.assert_refused(&common::foreign_key_token(issuer, &kid), "forged (foreign key)");
    s.assert_refused(&common::alg_none_token(issuer), "alg none");
    s.assert_refused(&s.token(|c| c["aud"] = json!("other-api")), "wrong audience");

    // An open route needs nothing and passes nothing on.
    let r = s.apache.get("/healthz", &[("X-Auth-Sub", "admin")]);
    assert_eq!(r.status, 200, "{r:?}");
    let env = app_env(&r);
    assert_eq!(env["REMOTE_USER"], "");
    assert_eq!(
        env["X_AUTH_SUB"], "",
        "a client's claim header reached the app on an open route"
    );
    assert!(!env.keys().any(|k| k.starts_with("JWT_CLAIM_")));
    // ...and no spelling of another path reaches it.
    assert_eq!(s.apache.get("/healthz/../orders", &[]).status, 401);
    assert_eq!(s.apache.get("/HEALTHZ", &[]).status, 401);
}

/// Revoked through the journal in the shared state_dir, by `jwtwarden
/// revoke` next to the server: refused by every child within the journal's
/// poll (about a second), the CGI never runs.
fn revoked_in_every_child(s: &Stack, children: u32) {
    let token = s.token(|c| c["jti"] = json!("jti-apache-1"));
    // Cache it in as many children as will answer.
    for _ in 0..children * 4 {
        assert_eq!(s.apache.bearer("/orders", &token).status, 200);
    }
    let cfg = s.apache.path("engine.json");
    let out = Command::new(env!("CARGO_BIN_EXE_jwtwarden"))
        .args(["revoke", "--config"])
        .arg(&cfg)
        .args(["--issuer", &s.issuer.url(), "--jti", "jti-apache-1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut refused_in_a_row = 0;
    while refused_in_a_row < children * 4 {
        let r = s.apache.bearer("/orders", &token);
        if r.status == 401 {
            refused_in_a_row += 1;
        } else {
            refused_in_a_row = 0;
        }
        assert!(
            Instant::now() < deadline,
            "the revocation did not reach every child: {r:?}\n{}",
            s.apache.error_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = s.apache.app_hits();
    s.assert_refused(&token, "revoked");
    assert_eq!(s.apache.app_hits(), before);
}

fn require_combinations(s: &Stack) {
    let admin = s.token(|c| c["role"] = json!("admin"));
    let auditor_arr = s.token(|c| c["role"] = json!(["viewer", "auditor"]));
    let writer = s.token(|c| c["scope"] = json!("read write"));
    let admin_writer = s.token(|c| {
        c["role"] = json!("admin");
        c["scope"] = json!("read write");
    });
    let admin_read = s.token(|c| {
        c["role"] = json!("admin");
        c["scope"] = json!("read");
    });
    let nobody = s.token(|_| {});
    let mallory = s.token(|c| c["sub"] = json!("mallory"));
    let cases: [(&str, &str, u16); 14] = [
        ("/any/x", &admin, 200),
        ("/any/x", &auditor_arr, 200),
        ("/any/x", &writer, 200),
        ("/any/x", &nobody, 401),
        ("/all/x", &admin_writer, 200),
        ("/all/x", &admin, 401),
        ("/all/x", &writer, 401),
        ("/all/x", &admin_read, 401),
        ("/not/x", &nobody, 200),
        ("/not/x", &mallory, 401),
        ("/orders", &mallory, 200),
        ("/admin/x", &nobody, 200),
        // AuthzSendForbiddenOnFailure On: RFC 6750's 403, same challenge.
        ("/strict/x", &writer, 200),
        ("/strict/x", &admin, 403),
    ];
    for (path, token, want) in cases {
        let before = s.apache.app_hits();
        let r = s.apache.bearer(path, token);
        assert_eq!(r.status, want, "{path}: {r:?}\n{}", s.apache.error_log());
        if want == 401 || want == 403 {
            assert_eq!(s.apache.app_hits(), before, "{path}: the CGI ran");
            let challenge = r.header("www-authenticate").unwrap_or_default();
            assert_eq!(
                challenge, r#"Bearer realm="api", error="insufficient_scope""#,
                "{path}: {r:?}"
            );
            assert_eq!(r.header("cache-control"), Some("no-store"));
            assert_eq!(r.header("content-type"), Some("application/json"), "{path}: {r:?}");
            assert_eq!(r.json()["error"], "insufficient_scope", "{path}: {r:?}");
            assert!(!r.body.contains(token), "{path}: the token is echoed");
        }
    }
    // A JWT_CLAIM_ value is exactly what was verified: a claim naming
    // another role does not pass.
    let spoof = s.token(|c| c["role"] = json!("admin auditor"));
    assert_eq!(s.apache.bearer("/any/x", &spoof).status, 401);
}

/// Claim values cannot add headers (to the backend or the client) or
/// environment variables (to the CGI).
fn no_injection(s: &Stack) {
    let evil = s.token(|c| {
        c["sub"] = json!("eve\r\nX-Injected: 1");
        c["name"] = json!("a\nJWT_CLAIM_role=admin\r\nX-Injected: 2");
        c["role"] = json!("user");
        c["bad-name\nJWT_CLAIM_x"] = json!("y");
        c["HTTP_X"] = json!("z\u{0}w");
    });
    let r = s.apache.bearer("/orders", &evil);
    assert_eq!(r.status, 200, "{r:?}\n{}", s.apache.error_log());
    assert!(r.header("x-injected").is_none(), "{r:?}");
    let env = app_env(&r);
    assert_eq!(env["JWT_CLAIM_role"], "user", "{}", r.body);
    assert!(!env.contains_key("JWT_CLAIM_x"), "{}", r.body);
    assert!(!r.body.lines().any(|l| l.starts_with("X-Injected")), "{}", r.body);
    assert_eq!(env["REMOTE_USER"], "eve??X-Injected: 1");
    // Through the proxy: the core's sanitised claim headers, one each, and
    // the client's own X-Auth-Sub replaced.
    let r = s.apache.get(
        "/up/orders",
        &[("Authorization", &format!("Bearer {evil}")), ("X-Auth-Sub", "admin")],
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", s.apache.error_log());
    let h = echoed(&r);
    let subs: Vec<&str> = h
        .iter()
        .filter(|(n, _)| n == "x-auth-sub")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(subs.len(), 1, "{h:?}");
    assert!(
        !subs[0].contains('\n') && !subs[0].contains('\r') && subs[0] != "admin",
        "{h:?}"
    );
    assert!(!h.iter().any(|(n, _)| n == "x-injected"), "{h:?}");
    assert!(s.upstream.hits() >= 1);
    // No token on a proxied path: the backend never sees the request.
    let before = s.upstream.hits();
    assert_eq!(s.apache.get("/up/orders", &[("X-Auth-Sub", "admin")]).status, 401);
    assert_eq!(s.upstream.hits(), before);
}

/// SIGUSR1 (`apachectl graceful`) while clients keep asking: every answer
/// is a 200, and new children serve after it. The load goes to the proxied
/// upstream: mod_cgid restarts its CGI daemon on a graceful restart and
/// answers 503 to a CGI request caught in between (Apache's, not the
/// module's: seen with the event MPM).
fn graceful_keeps_serving(s: &Stack) {
    let token = s.token(|_| {});
    let addr = s.apache.addr.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (addr, token, stop) = (addr.clone(), token.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let r = request(
                        &addr,
                        "GET",
                        "/up/orders",
                        &[("Authorization", &format!("Bearer {token}"))],
                        "",
                    );
                    statuses.push(r.status);
                }
                statuses
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    s.apache.signal(libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut n = 0;
    for w in workers {
        for status in w.join().unwrap() {
            n += 1;
            assert_eq!(
                status,
                200,
                "a request failed across a graceful restart\n{}",
                s.apache.error_log()
            );
        }
    }
    assert!(n > 10, "too few requests crossed the restart ({n})");
    let r = s.apache.bearer("/orders", &token);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(s.apache.error_log().contains("resuming normal operations"));
}

/// Many threads of one child meet a token for the first time at once
/// (worker and event MPMs): every request passes with its own user and
/// claims. Before the fix a burst like this refused requests with an
/// empty user (`user : authorization failure`): the module read the
/// claims through a second verification whose result shared one memo slot
/// with the HTTP decision's claim headers, so a thread that hit the cache
/// entry another thread's decision had just filled read no claims at all.
fn first_hits_in_parallel_keep_the_user(s: &Stack, rounds: usize, threads: usize) {
    let addr = s.apache.addr.clone();
    for round in 0..rounds {
        let sub = format!("user-{round}");
        let token = s.token(|c| {
            c["sub"] = json!(sub);
            c["jti"] = json!(format!("burst-{round}"));
        });
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads));
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (addr, token, barrier) = (addr.clone(), token.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    (0..3)
                        .map(|_| get_retrying_a_dropped_connection(&addr, "/up/orders", &token))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for w in workers {
            for r in w.join().unwrap() {
                assert_eq!(
                    r.status,
                    200,
                    "round {round}: a valid token refused under concurrency: {r:?}\n{}",
                    s.apache.error_log()
                );
                let subs: Vec<String> = echoed(&r)
                    .into_iter()
                    .filter(|(n, _)| n == "x-auth-sub")
                    .map(|(_, v)| v)
                    .collect();
                assert_eq!(subs, std::slice::from_ref(&sub), "round {round}: {r:?}");
            }
        }
    }
    let log = s.apache.error_log();
    assert!(!log.contains("authorization failure"), "{log}");
    // A connection closed without an answer is retried above; a child that
    // crashed would be logged here.
    assert!(!log.contains("exit signal"), "{log}");
}

/// GET `path` with `token` on a connection of its own (HTTP/1.0). A
/// connection the server closed without a byte (seen once in CI under
/// load, not reproduced since, with no child crash logged) is tried once
/// more on a new connection: what this file checks is the answer, and an
/// answer is still required.
fn get_retrying_a_dropped_connection(addr: &str, path: &str, token: &str) -> Resp {
    use std::io::{Read, Write};
    let auth = format!("Bearer {token}");
    for attempt in 0..2 {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: {auth}\r\n\r\n");
        c.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        c.read_to_end(&mut raw).unwrap();
        if !raw.is_empty() || attempt == 1 {
            return common::serve::parse_response(&raw);
        }
        eprintln!("{addr}: connection closed without an answer; trying once more");
    }
    unreachable!()
}

fn whole_suite(mpm: Mpm) {
    let children = 3;
    let Some(mut s) = stack(mpm, children) else { return };
    valid_and_bad_tokens(&s);
    require_combinations(&s);
    no_injection(&s);
    revoked_in_every_child(&s, children);
    graceful_keeps_serving(&s);
    // Children free their verifiers and exit promptly when told to stop;
    // nothing crashed; the journal was readable by every child.
    let log = s.apache.stop();
    for bad in [
        "Segmentation fault",
        "exit signal",
        "still did not exit",
        "journal",
        "jwtwarden:crit",
    ] {
        assert!(!log.contains(bad), "{bad:?} in the error log:\n{log}");
    }
    assert!(log.contains("caught SIGTERM, shutting down"), "{log}");
}

#[test]
fn prefork_valid_bad_revoked_require_injection_graceful() {
    whole_suite(Mpm::Prefork);
}

#[test]
fn event_valid_bad_revoked_require_injection_graceful() {
    whole_suite(Mpm::Event);
}

#[test]
fn worker_valid_bad_revoked_require_injection_graceful() {
    whole_suite(Mpm::Worker);
}

/// One child, eight threads: bursts of first hits of fresh tokens.
#[test]
fn event_first_hits_of_a_token_in_parallel_keep_the_user() {
    let Some(s) = stack(Mpm::Event, 1) else { return };
    first_hits_in_parallel_keep_the_user(&s, 150, 8);
}

#[test]
fn worker_first_hits_of_a_token_in_parallel_keep_the_user() {
    let Some(s) = stack(Mpm::Worker, 1) else { return };
    first_hits_in_parallel_keep_the_user(&s, 150, 8);
}

/// The identity provider goes down: tokens of known keys keep passing in
/// every child (last known good), a token of a key nobody has seen fails
/// closed (the CGI never runs); back up, the new key is learned, and a
/// rotation under load answers every request with 200. What the IdP saw
/// is printed and bounded.
#[test]
fn prefork_issuer_down_then_rotation_under_load() {
    let children = 3;
    let Some(s) = stack_with(Mpm::Prefork, children, |e| {
        e["issuers"][0]["refresh"] = json!({"min_ttl_secs": 1, "unknown_kid_cooldown_secs": 1,
                                            "backoff_initial_secs": 1, "backoff_max_secs": 1});
    }) else {
        return;
    };
    let good = s.token(|_| {});
    for _ in 0..children * 3 {
        assert_eq!(s.apache.bearer("/orders", &good).status, 200);
    }
    // Every child has built its verifier (child_init) by now, or is
    // about to: wait until the count stops moving.
    let mut at_start = s.issuer.jwks_requests();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let n = s.issuer.jwks_requests();
        if n == at_start {
            break;
        }
        at_start = n;
    }
    eprintln!("JWKS fetches at start (parent's check + {children} children): {at_start}");
    assert!(at_start <= 2 + u64::from(children), "{at_start} fetches at start");
    s.issuer.set_fault(Fault::Status(500));
    let new_kid = s.issuer.rotate(Alg::RS256);
    let mut claims = s.issuer.default_claims("carol", now());
    claims["jti"] = json!("new-key");
    let unseen = s.issuer.mint(&new_kid, &claims);
    for _ in 0..children * 3 {
        let r = s.apache.bearer("/orders", &good);
        assert_eq!(r.status, 200, "last known good: {r:?}\n{}", s.apache.error_log());
        let before = s.apache.app_hits();
        let r = s.apache.bearer("/orders", &unseen);
        assert!(matches!(r.status, 401 | 503), "a new kid with the IdP down: {r:?}");
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(s.apache.app_hits(), before, "the CGI ran for an unverifiable token");
    }

    // Back up: the new key is learned (unknown-kid fetch, 1 s cooldown);
    // then a rotation under load fails no request.
    s.issuer.set_fault(Fault::None);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ok_in_a_row = 0;
    while ok_in_a_row < children * 4 {
        let r = s.apache.bearer("/orders", &unseen);
        ok_in_a_row = if r.status == 200 { ok_in_a_row + 1 } else { 0 };
        assert!(Instant::now() < deadline, "the new key was not learned: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Each child has just spent its unknown-kid cooldown (1 s) learning
    // the new key: a kid it meets again within that second is refused by
    // design (at most one fetch per cooldown). Let the cooldown pass, so
    // the rotation below is the ordinary one: a key first seen after the
    // cooldown is fetched once and then verifies.
    std::thread::sleep(Duration::from_millis(1500));
    let before_rotation = s.issuer.jwks_requests();
    let rotated = s.issuer.rotate(Alg::RS256);
    let mut claims = s.issuer.default_claims("dave", now());
    claims["jti"] = json!("rotated");
    let rotated_token = s.issuer.mint(&rotated, &claims);
    let addr = s.apache.addr.clone();
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let t = if i % 2 == 0 {
                good.clone()
            } else {
                rotated_token.clone()
            };
            let addr = addr.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|_| request(&addr, "GET", "/up/x", &[("Authorization", &format!("Bearer {t}"))], "").status)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for w in workers {
        for status in w.join().unwrap() {
            assert_eq!(
                status,
                200,
                "a request failed during the rotation\n{}",
                s.apache.error_log()
            );
        }
    }
    let per_rotation = s.issuer.jwks_requests() - before_rotation;
    eprintln!("JWKS fetches for one rotation with {children} children under load: {per_rotation}");
    assert!(
        per_rotation <= 2 * u64::from(children) + 2,
        "{per_rotation} fetches for one rotation"
    );
}

/// A revocation through the Redis feed (`revocation.redis`) is refused by
/// every prefork child: `jwtwarden revoke` runs with the same feed but its
/// own state_dir, so the feed is the only way it reaches Apache.
#[test]
fn prefork_revocation_through_the_redis_feed_reaches_every_child() {
    if prerequisites().is_none() {
        return;
    }
    let Some(redis) = RedisServer::start() else {
        if std::env::var_os("JWTWARDEN_REQUIRE_APACHE").is_some() {
            panic!("JWTWARDEN_REQUIRE_APACHE is set but redis-server is not installed");
        }
        eprintln!("SKIPPED: redis-server not found");
        return;
    };
    let children = 3;
    let feed = json!({"redis": {"url": redis.url(), "timeout_ms": 500}});
    let Some(s) = stack_with(Mpm::Prefork, children, |e| e["revocation"] = feed.clone()) else {
        return;
    };
    let token = s.token(|c| c["jti"] = json!("jti-feed-1"));
    for _ in 0..children * 4 {
        let r = s.apache.bearer("/orders", &token);
        assert_eq!(r.status, 200, "{r:?}\n{}", s.apache.error_log());
    }
    let cli_dir = tempfile::tempdir().unwrap();
    let cli_cfg = cli_dir.path().join("cli.json");
    let mut cfg = engine_for(&s.issuer);
    cfg["state_dir"] = json!(cli_dir.path().join("state"));
    cfg["revocation"] = feed;
    std::fs::write(&cli_cfg, cfg.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jwtwarden"))
        .args(["revoke", "--config"])
        .arg(&cli_cfg)
        .args(["--issuer", &s.issuer.url(), "--jti", "jti-feed-1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("fleet"),
        "not published: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut refused_in_a_row = 0;
    while refused_in_a_row < children * 4 {
        let r = s.apache.bearer("/orders", &token);
        refused_in_a_row = if r.status == 401 { refused_in_a_row + 1 } else { 0 };
        assert!(
            Instant::now() < deadline,
            "the feed's revocation did not reach every child: {r:?}\n{}",
            s.apache.error_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    s.assert_refused(&token, "revoked through the feed");
}

/// `apache2 -t` refuses a bad engine config and names the field; a bad
/// directive value names the directive.
#[test]
fn configtest_refuses_a_bad_config_naming_the_field() {
    let Some((binary, module)) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let check = |engine: &str, extra: &str| {
        std::fs::write(d.join("engine.json"), engine).unwrap();
        let conf = format!(
            "ServerRoot \"{root}\"\nDefaultRuntimeDir \"{root}\"\nPidFile \"{root}/pid\"\nErrorLog \"{root}/error.log\"\n\
             Listen 127.0.0.1:{port}\nServerName 127.0.0.1\n\
             LoadModule mpm_prefork_module {APACHE_MODULES}/mod_mpm_prefork.so\n\
             LoadModule authn_core_module {APACHE_MODULES}/mod_authn_core.so\n\
             LoadModule authz_core_module {APACHE_MODULES}/mod_authz_core.so\n\
             LoadModule jwtwarden_module \"{module}\"\nJwtWardenConfig \"{root}/engine.json\"\n{extra}\n",
            root = d.display(),
            port = apache_port(),
            module = module.display()
        );
        std::fs::write(d.join("httpd.conf"), conf).unwrap();
        let out = Command::new(&binary)
            .arg("-t")
            .arg("-f")
            .arg(d.join("httpd.conf"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(d.join("error.log")).unwrap_or_default()
        );
        (out.status.success(), text)
    };
    let good = json!({"issuers": [{"issuer": "https://idp.example", "jwks_uri": "http://127.0.0.1:1/jwks", "audiences": ["api"]}],
                      "http": {"allow_http": true, "connect_timeout_ms": 200, "timeout_ms": 300}});
    let (ok, text) = check(
        &good.to_string(),
        "<Location />\nAuthType jwtwarden\nRequire jwt-scope read\n</Location>",
    );
    assert!(ok, "a good config is refused:\n{text}");

    let mut bad = good.clone();
    bad["issuers"][0]["audiencez"] = json!(["api"]);
    let (ok, text) = check(&bad.to_string(), "");
    assert!(!ok && text.contains("audiencez"), "{text}");
    let (ok, text) = check("{not json", "");
    assert!(!ok && text.contains("JwtWardenConfig"), "{text}");
    let (ok, text) = check(
        &good.to_string(),
        "<Location />\nJwtWardenClaimHeader sub \"Bad Header\"\n</Location>",
    );
    assert!(!ok && text.contains("JwtWardenClaimHeader"), "{text}");
    let (ok, text) = check(
        &good.to_string(),
        "<Location />\nAuthType jwtwarden\nRequire jwt-claim role\n</Location>",
    );
    assert!(!ok && text.contains("jwt-claim"), "{text}");
    // JwtWardenAssertion needs the engine config's assertion keys.
    let mint = "<Location />\nAuthType jwtwarden\nJwtWardenAssertion orders\nRequire jwt-scope read\n</Location>";
    let (ok, text) = check(&good.to_string(), mint);
    assert!(!ok && text.contains("no assertion section"), "{text}");
    let mut keyed = good.clone();
    keyed["assertion"] = common::assertion::engine_section(&common::assertion::edge_pem());
    let (ok, text) = check(&keyed.to_string(), mint);
    assert!(ok, "{text}");
    let (ok, text) = check(
        &keyed.to_string(),
        "<Location />\nJwtWardenAssertion orders Authorization\n</Location>",
    );
    assert!(!ok && text.contains("JwtWardenAssertion"), "{text}");
}

// ---------- tests/http_contract.json ----------

/// The problems of an answer to a row; the application's answer is the
/// CGI's environment.
fn check(case: &Value, r: &Resp, sent: &[String]) -> Vec<String> {
    let seen = |r: &Resp| {
        let env = app_env(r);
        let non_empty = |k: &str| env.get(k).filter(|s| !s.is_empty()).cloned();
        Seen {
            sub: non_empty("REMOTE_USER"),
            cached: non_empty("CACHED"),
        }
    };
    // The CGI answers text/plain: the application's own type.
    contract::check(case, r, sent, seen, &["content-type"])
}

/// Every row of the table against the module,
/// one child (a row's `repeat` must land in the cache it filled). The
/// table's options as Apache directives: `skip_paths` → `JwtWardenOpen`,
/// `fresh_paths` → `JwtWardenFresh On` in a `<Location>`, realm → `AuthName`.
fn contract_against(mpm: Mpm) {
    let Some((binary, module)) = prerequisites() else {
        return;
    };
    let table = contract::table();
    let issuer = TestIssuer::start();
    let engine: Value = serde_json::from_str(&contract::engine_config(&table, &issuer)).unwrap();
    let mw = &table["middleware"];
    let open: Vec<&str> = mw["skip_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let mut locations = format!(
        "<Location />\n  AuthType jwtwarden\n  AuthName {}\n  JwtWardenOpen {}\n  JwtWardenClaimEnv Off\n  Require jwt-issuer {}\n</Location>\n",
        mw["realm"].as_str().unwrap(),
        open.join(" "),
        issuer.url()
    );
    for p in mw["fresh_paths"].as_array().unwrap() {
        let prefix = p.as_str().unwrap().strip_suffix('*').unwrap();
        locations.push_str(&format!("<Location {prefix}>\n  JwtWardenFresh On\n</Location>\n"));
    }
    let upstream = Upstream::start();
    let apache = Apache::start(&binary, &module, mpm, 1, &engine, &locations, upstream.port);

    let tokens = contract::tokens(&table, &issuer);
    let replay = contract::replay(&table, &tokens, |row| {
        let all = row.fields();
        let before = apache.app_hits();
        let r = row.send(|| request(&apache.addr, row.method, row.path, &all, ""));
        let mut problems = check(row.case, &r, &row.sent);
        if r.status >= 400 && apache.app_hits() != before {
            problems.push("the CGI ran for a refused request".into());
        }
        (r, problems)
    });
    assert!(
        replay.failures.is_empty(),
        "rows that differ ({mpm:?}):\n{}\n{}",
        replay.failures.join("\n"),
        apache.error_log()
    );
    assert_eq!(replay.skipped, 1, "only the closed-verifier row is skipped");
}

#[test]
fn every_contract_row_holds_against_the_module_prefork() {
    contract_against(Mpm::Prefork);
}

#[test]
fn every_contract_row_holds_against_the_module_event() {
    contract_against(Mpm::Event);
}

#[test]
fn every_contract_row_holds_against_the_module_worker() {
    contract_against(Mpm::Worker);
}

// ---------- 20 prefork children: what the identity provider sees ----------

/// `threads` clients sending `per_thread` requests each (a token from
/// `token(thread, i)`) to the proxied path; every status.
fn load(addr: &str, threads: usize, per_thread: usize, token: impl Fn(usize, usize) -> String + Sync) -> Vec<u16> {
    std::thread::scope(|scope| {
        let token = &token;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (0..per_thread)
                        .map(|i| {
                            let auth = format!("Bearer {}", token(t, i));
                            request(addr, "GET", "/up/x", &[("Authorization", &auth)], "").status
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// JWKS requests of `issuer` once they reached `at_least` (polled, up to
/// 60 s: on a loaded machine twenty children take a while to build their
/// verifiers) and then stopped moving (no request in 300 ms).
fn settled_jwks_requests(issuer: &TestIssuer, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    while issuer.jwks_requests() < at_least && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut n = issuer.jwks_requests();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let m = issuer.jwks_requests();
        if m == n {
            return n;
        }
        n = m;
    }
}

/// Twenty prefork children, each with its own verifier (no key set is
/// shared between children today): the JWKS fetches the IdP sees at
/// start, for one key rotation under load, and for an unknown-kid storm
/// (each request a new random kid). Two issuers, so the rotation's and the
/// storm's unknown-kid cooldowns are separate. Printed with --nocapture;
/// the children share one fetch through the `state_dir` (docs/design.md,
/// "One fetch per host"): one per rotation, one per cooldown in a storm.
#[test]
fn prefork_twenty_children_what_the_idp_sees() {
    let Some((binary, module)) = prerequisites() else {
        return;
    };
    let children: u32 = 20;
    let (rot, storm) = (TestIssuer::start(), TestIssuer::start());
    let issuer = |i: &TestIssuer| json!({"issuer": i.url(), "jwks_uri": i.jwks_uri(), "audiences": ["api"]});
    let engine = json!({
        "issuers": [issuer(&rot), issuer(&storm)],
        "http": {"allow_http": true, "timeout_ms": 3000},
        "state_dir": "{state_dir}",
    });
    let locations = format!(
        "<Location />\n  AuthType jwtwarden\n  AuthName api\n  Require jwt-issuer {} {}\n</Location>\n",
        rot.url(),
        storm.url()
    );
    let upstream = Upstream::start();
    let apache = Apache::start(
        &binary,
        &module,
        Mpm::Prefork,
        children,
        &engine,
        &locations,
        upstream.port,
    );
    let threads = children as usize;

    // Start: the parent's configuration check (twice at start) and each
    // child's verifier need every issuer's keys; through the shared
    // `state_dir` one fetch serves them all (the others adopt the set it
    // persisted), never more than one per process. Every child answers a
    // token of each issuer first, so no child's start is counted below.
    let most = 2 + u64::from(children);
    let start = (settled_jwks_requests(&rot, 1), settled_jwks_requests(&storm, 1));
    let warm = |i: &TestIssuer| i.mint(&i.first_kid(), &i.default_claims("warm", now()));
    let (warm_rot, warm_storm) = (warm(&rot), warm(&storm));
    assert!(load(&apache.addr, threads, 3, |t, _| if t % 2 == 0 {
        warm_rot.clone()
    } else {
        warm_storm.clone()
    })
    .iter()
    .all(|&s| s == 200));
    let start = (start.0.max(rot.jwks_requests()), start.1.max(storm.jwks_requests()));
    assert!(
        (1..=most).contains(&start.0) && (1..=most).contains(&start.1),
        "{start:?} at start\n{}",
        apache.error_log()
    );
    let good = rot.mint(&rot.first_kid(), &rot.default_claims("alice", now()));
    assert!(load(&apache.addr, threads, 5, |_, _| good.clone())
        .iter()
        .all(|&s| s == 200));

    // A rotation under load: a new kid, 20 clients; every request passes.
    let before = rot.jwks_requests();
    let kid = rot.rotate(Alg::RS256);
    let rotated = rot.mint(&kid, &rot.default_claims("bob", now()));
    let statuses = load(&apache.addr, threads, 25, |_, _| rotated.clone());
    let bad: Vec<_> = statuses.iter().filter(|&&s| s != 200).collect();
    assert!(
        bad.is_empty(),
        "refused during the rotation: {bad:?}\n{}",
        apache.error_log()
    );
    let per_rotation = settled_jwks_requests(&rot, 0) - before;

    // A storm: every request a kid nobody published (fails closed).
    let before = storm.jwks_requests();
    let skid = storm.first_kid();
    let statuses = load(&apache.addr, threads, 50, |t, i| {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": format!("storm-{t}-{i}")});
        storm.mint_with_header(&skid, &header, &storm.default_claims("eve", now()))
    });
    assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
    let per_storm = settled_jwks_requests(&storm, 0) - before;
    let storm_requests = statuses.len();

    eprintln!(
        "IdP with {children} prefork children sharing a state_dir, per issuer: {} + {} JWKS fetches at start, \
         {per_rotation} for one rotation under load ({} requests), {per_storm} for an unknown-kid storm of {storm_requests} requests",
        start.0,
        start.1,
        threads * 25
    );
    let log = apache.error_log();
    // Shared through the state_dir: one fetch, whichever child meets the
    // new kid first; the others adopt it or learn it was just asked.
    assert!(per_rotation <= 1, "{per_rotation} fetches for one rotation\n{log}");
    assert!(
        per_storm <= 1,
        "{per_storm} fetches for a storm within one cooldown\n{log}"
    );
    assert!(!log.contains("authorization failure"), "{log}");
}

/// A child that could not build its verifier (here: a `state_dir` the
/// parent, root, can write but Apache's `User` cannot: the ServerRoot's
/// `cgi/`, 0755 root) answers every token with the contract's server-side
/// refusal: 500, no challenge, no-store, the fixed JSON body; the
/// application never runs, and nothing becomes an authorization failure.
/// Needs root (children run as nobody).
#[test]
fn prefork_child_without_a_verifier_answers_the_contracts_500() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("SKIPPED: needs root (children run as nobody)");
        return;
    }
    let Some(s) = stack_with(Mpm::Prefork, 2, |e| e["state_dir"] = json!("{state_dir}/../cgi")) else {
        return;
    };
    let token = s.token(|_| {});
    for _ in 0..6 {
        let before = s.apache.app_hits();
        let r = s.apache.bearer("/orders", &token);
        assert_eq!(r.status, 500, "{r:?}\n{}", s.apache.error_log());
        assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
        assert!(r.header("www-authenticate").is_none(), "{r:?}");
        assert_eq!(
            r.json(),
            json!({"error": "invalid_argument", "code": 501, "category": "usage",
                   "message": "token verification failed on the server"})
        );
        assert_eq!(s.apache.app_hits(), before, "the CGI ran");
    }
    let log = s.apache.error_log();
    assert!(log.contains("jwtwarden: verifier:"), "{log}");
    assert!(!log.contains("authorization failure"), "{log}");
}

// ---------- verification assertions (issue 28) ----------

const ASSERTION_LOCATIONS: &str = r#"
<Location />
  AuthType jwtwarden
  AuthName api
  Require jwt-issuer ISSUER
  JwtWardenAssertion orders
</Location>
<Location /up/billing/>
  JwtWardenAssertion billing X-Edge-Assertion
</Location>
"#;

/// `JwtWardenAssertion`: the backend behind mod_proxy receives one
/// assertion per request, bound to the request's method and path as Apache
/// received it, that verifies behind (the library, and golang-jwt) for that
/// request only; the client's own copies of the header never pass.
#[test]
fn prefork_mints_an_assertion_that_verifies_behind_for_its_request_only() {
    use common::assertion::{claims, edge_jwks, edge_pem, engine_section, Behind};
    let pem = edge_pem();
    let Some(s) = stack_at(Mpm::Prefork, 2, ASSERTION_LOCATIONS, |e| {
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
    let mut jtis = std::collections::HashSet::new();
    let mut first = String::new();
    for i in 0..4 {
        let r = s.apache.get(
            "/up/orders/7",
            &[("Authorization", &auth), ("X-Jwtwarden-Assertion", forged)],
        );
        assert_eq!(r.status, 200, "{r:?}\n{}", s.apache.error_log());
        let h = echoed(&r);
        let got: Vec<&str> = h
            .iter()
            .filter(|(n, _)| n == "x-jwtwarden-assertion")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(got.len(), 1, "exactly the edge's assertion: {h:?}");
        assert_ne!(got[0], forged);
        let c = claims(got[0]);
        assert_eq!(
            (c["htu"].as_str(), c["aud"].as_str()),
            (Some("/up/orders/7"), Some("orders"))
        );
        assert!(
            jtis.insert(c["jti"].as_str().unwrap().to_string()),
            "one assertion per request"
        );
        // Bound to the path Apache received (ProxyPass rewrites it for the
        // backend: the service checks the edge's path, docs/trust-handoff.md).
        let original = orders
            .check(got[0], "GET", "/up/orders/7")
            .unwrap_or_else(|k| panic!("request {i}: {k:?}"));
        assert_eq!(original["sub"], "alice");
        if i == 0 {
            first = got[0].to_string();
        }
    }
    assert_eq!(
        orders.check(&first, "GET", "/up/orders/7"),
        Err(jwtwarden::ErrorKind::Revoked)
    );
    let r = s.apache.bearer("/up/orders/7", &token);
    let a = echoed(&r)
        .into_iter()
        .find(|(n, _)| n == "x-jwtwarden-assertion")
        .unwrap()
        .1;
    assert_eq!(
        orders.check(&a, "GET", "/up/orders/8"),
        Err(jwtwarden::ErrorKind::InvalidAudience)
    );
    assert_eq!(
        orders.check(&a, "PUT", "/up/orders/7"),
        Err(jwtwarden::ErrorKind::InvalidAudience)
    );
    assert!(billing.check(&a, "GET", "/up/orders/7").is_err());
    if let Some(c) = orders.golang_jwt(&a) {
        assert_eq!(c["htu"], "/up/orders/7");
    }
    // Another location: its own audience and header.
    let r = s.apache.get(
        "/up/billing/x",
        &[("Authorization", &auth), ("X-Edge-Assertion", forged)],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let h = echoed(&r);
    let got: Vec<&str> = h
        .iter()
        .filter(|(n, _)| n == "x-edge-assertion")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(got.len(), 1, "{h:?}");
    billing
        .check(got[0], "GET", "/up/billing/x")
        .expect("billing's assertion");
    // Refused: the backend never sees the request.
    let before = s.upstream.hits();
    assert_eq!(
        s.apache
            .get("/up/orders/7", &[("X-Jwtwarden-Assertion", forged)])
            .status,
        401
    );
    assert_eq!(s.upstream.hits(), before);
}

/// The CGI's `JWT_CLAIM_*` lines whose name is `name` ignoring case.
fn env_lines<'a>(r: &'a Resp, name: &str) -> Vec<&'a str> {
    r.body
        .lines()
        .filter(|l| l.split_once('=').is_some_and(|(k, _)| k.eq_ignore_ascii_case(name)))
        .collect()
}

/// One child remembers the prepared claims of the tokens it has seen (the
/// claims memo, found by the address of the core's claims text and used
/// only when the whole text is equal): more distinct tokens than it holds,
/// each sent twice (prepared, then from the memo or prepared again after
/// an eviction), names of one length that differ in one character, and
/// claim sets that differ in a member, all through one child. Each answer
/// carries its own token's user and claims, never another's.
fn claims_are_never_another_tokens(s: &Stack, threads: usize) {
    const TOKENS: usize = 300; // the memo holds 256
    let tokens: Vec<(String, String)> = (0..TOKENS)
        .map(|i| {
            let sub = format!("u{i:04}");
            let token = s.token(|c| {
                c["sub"] = json!(sub);
                c["jti"] = json!(format!("memo-{i}"));
                if i % 2 == 0 {
                    c["role"] = json!(format!("r{i:04}"));
                }
            });
            (sub, token)
        })
        .collect();
    let addr = s.apache.addr.clone();
    for pass in 0..2 {
        let tokens = std::sync::Arc::new(tokens.clone());
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (addr, tokens) = (addr.clone(), tokens.clone());
                std::thread::spawn(move || {
                    let mut failures = Vec::new();
                    for i in (t..TOKENS).step_by(threads) {
                        let (sub, token) = &tokens[i];
                        let r = request(
                            &addr,
                            "GET",
                            "/orders",
                            &[("Authorization", &format!("Bearer {token}"))],
                            "",
                        );
                        let env = app_env(&r);
                        let role = (i % 2 == 0).then(|| format!("r{i:04}"));
                        if r.status != 200
                            || env.get("REMOTE_USER") != Some(sub)
                            || env.get("JWT_CLAIM_sub") != Some(sub)
                            || env.get("JWT_CLAIM_jti") != Some(&format!("memo-{i}"))
                            || env.get("JWT_CLAIM_role") != role.as_ref()
                        {
                            failures.push(format!("pass {pass}, token {i}: {r:?}"));
                        }
                    }
                    failures
                })
            })
            .collect();
        let failures: Vec<String> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
        assert!(
            failures.is_empty(),
            "{} failures, first: {}",
            failures.len(),
            failures[0]
        );
    }
}

#[test]
fn prefork_claims_memo_never_answers_with_another_tokens_claims() {
    let Some(s) = stack(Mpm::Prefork, 1) else { return };
    claims_are_never_another_tokens(&s, 1);
}

/// Eight threads of one child share its memo (under its lock).
#[test]
fn event_claims_memo_never_answers_with_another_tokens_claims() {
    let Some(s) = stack(Mpm::Event, 1) else { return };
    claims_are_never_another_tokens(&s, 8);
}

const EDGE_LOCATIONS: &str = r#"
LoadModule setenvif_module /usr/lib/apache2/modules/mod_setenvif.so
LoadModule headers_module /usr/lib/apache2/modules/mod_headers.so
<Location />
  AuthType jwtwarden
  AuthName api
  Require jwt-issuer ISSUER
  RequestHeader set X-Env-Sub "%{JWT_CLAIM_sub}e"
  RequestHeader set X-Env-Role "%{JWT_CLAIM_role}e"
</Location>
<Location /up/forged/>
  SetEnvIf X-Forge "(.+)" JWT_CLAIM_sub=$1 JWT_CLAIM_role=$1
</Location>
<Location /forged/>
  SetEnvIf X-Forge "(.+)" JWT_CLAIM_sub=$1 JWT_CLAIM_role=$1
</Location>
<Location /one/>
  AuthName one
</Location>
<Location /two/>
  AuthName two
</Location>
<Location /tenant/>
  Require jwt-claim tenant acme "big corp"
</Location>
"#;

/// What the module prepares from the claims, at its edges: strings with
/// escapes (a value ending in a backslash, then more claims), DEL, UTF-8,
/// non-string values, names that are not plain, two names that are one
/// variable ignoring case (the last wins, one variable), a variable of the
/// same name set before authentication (SetEnvIf on a client header: the
/// verified claim replaces it, one variable; for the CGI, whose environment
/// Apache de-duplicates as it runs it, and for every reader of the table
/// before that, here mod_headers' `RequestHeader ... %{...}e` to the
/// proxied backend, which takes the first of a name), realms of two
/// locations that
/// differ in nothing else, and Require words split once at startup
/// (quoted words kept whole).
#[test]
fn prefork_claim_edges_reach_the_environment_exactly() {
    let Some(mut s) = stack_at(Mpm::Prefork, 1, EDGE_LOCATIONS, |_| {}) else {
        return;
    };
    let long = "n".repeat(65);
    let max = "m".repeat(64);
    let token = s.token(|c| {
        c["path"] = json!("C:\\dir\\");
        c["quote"] = json!("say \"hi\"");
        c["zz"] = json!("after");
        c["del"] = json!("a\u{7f}b");
        c["uni"] = json!("é");
        c["num"] = json!(42);
        c["obj"] = json!({"a": "b,c"});
        c["arr"] = json!(["x", "y"]);
        c["t"] = json!(true);
        c["nul"] = json!(null);
        c["Role"] = json!("upper");
        c["role"] = json!("lower");
        c["ab\"c"] = json!("x");
        c[long.as_str()] = json!("too long");
        c[max.as_str()] = json!("fits");
    });
    let plain = s.token(|c| c["role"] = json!("user"));
    for round in 0..3 {
        let r = s.apache.bearer("/orders", &token);
        assert_eq!(r.status, 200, "round {round}: {r:?}\n{}", s.apache.error_log());
        let env = app_env(&r);
        for (k, v) in [
            ("path", "C:\\dir\\"),
            ("quote", "say \"hi\""),
            ("zz", "after"),
            ("del", "a?b"),
            ("uni", "é"),
            ("num", "42"),
            ("obj", r#"{"a":"b,c"}"#),
            ("arr", r#"["x","y"]"#),
            ("t", "true"),
            ("nul", "null"),
            (max.as_str(), "fits"),
        ] {
            assert_eq!(
                env.get(&format!("JWT_CLAIM_{k}")).map(String::as_str),
                Some(v),
                "round {round}: {k}: {}",
                r.body
            );
        }
        let roles = env_lines(&r, "JWT_CLAIM_role");
        assert_eq!(roles.len(), 1, "round {round}: {}", r.body);
        assert!(roles[0].ends_with("=lower"), "round {round}: {}", r.body);
        let r = s.apache.bearer("/up/orders", &token);
        let h = echoed(&r);
        let role: Vec<&str> = h
            .iter()
            .filter(|(n, _)| n == "x-env-role")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(role, ["lower"], "round {round}: {h:?}");
        assert!(!r.body.contains("JWT_CLAIM_ab"), "round {round}: {}", r.body);
        assert!(
            !r.body.contains(&format!("JWT_CLAIM_{long}")),
            "round {round}: {}",
            r.body
        );

        // Set before authentication from a client's header: replaced (a
        // token whose names are distinct, the module's fast path).
        let r = s.apache.get(
            "/forged/orders",
            &[("Authorization", &format!("Bearer {plain}")), ("X-Forge", "mallory")],
        );
        assert_eq!(r.status, 200, "round {round}: {r:?}");
        assert_eq!(
            env_lines(&r, "JWT_CLAIM_sub"),
            ["JWT_CLAIM_sub=alice"],
            "round {round}: {}",
            r.body
        );
        let roles = env_lines(&r, "JWT_CLAIM_role");
        assert_eq!(roles.len(), 1, "round {round}: {}", r.body);
        assert!(roles[0].ends_with("=user"), "round {round}: {}", r.body);
        let r = s.apache.get(
            "/up/forged/orders",
            &[("Authorization", &format!("Bearer {plain}")), ("X-Forge", "mallory")],
        );
        assert_eq!(r.status, 200, "round {round}: {r:?}");
        let h = echoed(&r);
        let env: Vec<&str> = h
            .iter()
            .filter(|(n, _)| n == "x-env-sub" || n == "x-env-role")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(env, ["alice", "user"], "round {round}: {h:?}");

        // Two realms, one child, alternating.
        for realm in ["one", "two"] {
            let r = s.apache.get(&format!("/{realm}/x"), &[]);
            assert_eq!(r.status, 401, "{r:?}");
            assert_eq!(
                r.header("www-authenticate"),
                Some(format!("Bearer realm=\"{realm}\"").as_str()),
                "{r:?}"
            );
        }
    }
    for (tenant, status) in [
        ("acme", 200),
        ("big corp", 200),
        ("big", 401),
        ("corp", 401),
        ("\"big", 401),
    ] {
        let t = s.token(|c| c["tenant"] = json!(tenant));
        assert_eq!(s.apache.bearer("/tenant/x", &t).status, status, "tenant {tenant:?}");
    }
    let log = s.apache.stop();
    assert!(!log.contains("Segmentation fault"), "{log}");
}
