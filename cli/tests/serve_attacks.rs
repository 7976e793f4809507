//! Issue 23: `serve`'s HTTP edges, attacked from outside. Each test is the
//! one an adversary would write: path spellings that reach the wrong route
//! rules, connections held to lock the admin listener out, a header block
//! over the limit sent in one write, and ambiguous credentials.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use common::serve::{parse_response, request, Resp, Serve};
use common::Env;
use serde_json::json;

fn serve_file(env: &Env, toml: &str) -> PathBuf {
    let p = env.dir.path().join("serve.toml");
    std::fs::write(&p, toml).unwrap();
    p
}

fn start(env: &Env, serve_toml: &str) -> Serve {
    Serve::start(&env.json_config, Some(&serve_file(env, serve_toml)))
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// What a spelling must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// `/admin/`'s rules: no token 401, a token without `admin` 403, with it 200.
    Admin,
    /// The open route: 200 without a token.
    Open,
    /// No route: any token the engine accepts, none refused with 401.
    Default,
    /// Refused whatever the token: 403 `invalid_request`.
    Refused,
}

/// One verdict: status and body `error` (empty for a 200).
fn verdict(r: &Resp) -> (u16, String) {
    let kind = if r.status == 200 {
        String::new()
    } else {
        serde_json::from_str::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|b| b["error"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    (r.status, kind)
}

/// The verdicts each expectation means, for no token, a plain token and
/// an admin token.
fn wanted(e: Expect) -> [(u16, &'static str); 3] {
    match e {
        Expect::Admin => [(401, "missing_token"), (403, "insufficient_scope"), (200, "")],
        Expect::Open => [(200, ""), (200, ""), (200, "")],
        Expect::Default => [(401, "missing_token"), (200, ""), (200, "")],
        Expect::Refused => [
            (403, "invalid_request"),
            (403, "invalid_request"),
            (403, "invalid_request"),
        ],
    }
}

const ROUTES: &str = "[[routes]]\nprefix = \"/admin/\"\nscopes = [\"admin\"]\n\
                      [[routes]]\nprefix = \"/public/\"\nopen = true\n";

/// Every spelling of issue 23, each in both directions (from the open route
/// towards the protected one, and back), through a real serve.
#[test]
fn path_spellings_get_the_rules_every_upstream_reading_needs() {
    use Expect::*;
    let env = Env::new();
    let s = start(&env, ROUTES);
    let plain = bearer(&env.good("alice"));
    let admin = bearer(&env.with_claims(|c| c["scope"] = json!("admin"), "root"));
    let cases: &[(&str, Expect)] = &[
        // The canonical spellings.
        ("/public/x", Open),
        ("/admin/x", Admin),
        ("/other", Default),
        ("/public/x?a=/..;/admin/", Open),
        // Tomcat/Jetty read `..;` as `..`; nginx, Go and Express as a name:
        // no one reading is safe in both directions, so refused.
        ("/public/..;/admin/x", Refused),
        ("/admin/..;/public/x", Refused),
        ("/public/..;x=1/admin/x", Refused),
        ("/public/.;/x", Refused),
        ("/public/..%3b/admin/x", Refused),
        ("/admin/..%3B/public/x", Refused),
        // Double encoding: still a `%` after one decode.
        ("/public/%252e%252e/admin/x", Refused),
        ("/admin/%252e%252e/public/x", Refused),
        ("/public/%25/x", Refused),
        // Case: protected routes match whatever the case, open ones only
        // as written.
        ("/ADMIN/x", Admin),
        ("/Admin/X", Admin),
        ("/PUBLIC/x", Default),
        ("/Public/x", Default),
        // Path parameters are stripped for protected routes; an open route
        // never matches a path that had some.
        ("/admin;x=1/x", Admin),
        ("/admin%3bx=1/x", Admin),
        ("/public;x=1/x", Default),
        // IIS drops trailing dots and spaces: refused.
        ("/admin./x", Refused),
        ("/public./x", Refused),
        ("/admin%20/x", Refused),
        ("/public%20/x", Refused),
        ("/admin/x.", Refused),
        // Dot segments: the rules of every reading (resolved, or taken as
        // names by an upstream that does not resolve them).
        ("/public/../admin/x", Admin),
        ("/admin/../public/x", Admin),
        ("/public/./x", Open),
        ("/../admin/x", Refused),
        ("/../public/x", Refused),
        ("/public/../../admin/x", Refused),
        // Encoded separators, backslashes, control and non-ASCII characters.
        ("/public%2f..%2fadmin/x", Refused),
        ("/admin%2F..%2Fpublic/x", Refused),
        ("/public/..%5cadmin/x", Refused),
        ("/public/..\\admin/x", Refused),
        ("/admin/..%5Cpublic/x", Refused),
        ("/public/%00/x", Refused),
        ("/public/%0d%0a/x", Refused),
        ("/public/%c3%a9", Refused),
        ("/admin/%c3%a9", Refused),
        // Repeated slashes: merged for protected routes; an open route
        // must match the path as written too.
        ("//admin//x", Admin),
        ("/public//x", Open),
        ("//public/x", Default),
    ];
    let mut wrong = Vec::new();
    for &(uri, expect) in cases {
        for (i, token) in [None, Some(plain.as_str()), Some(admin.as_str())]
            .into_iter()
            .enumerate()
        {
            let mut h = vec![("X-Original-URI", uri)];
            if let Some(t) = token {
                h.push(("Authorization", t));
            }
            let got = verdict(&s.get("/auth", &h));
            let want = wanted(expect)[i];
            if got != (want.0, want.1.to_string()) {
                let who = ["no token", "a plain token", "an admin token"][i];
                wrong.push(format!("{uri:?} with {who}: want {want:?} ({expect:?}), got {got:?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong verdicts:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Envoy sends the original path as the request path: the same normaliser.
#[test]
fn envoy_paths_are_normalised_the_same_way() {
    let env = Env::new();
    let s = start(&env, &format!("forwarded = \"envoy\"\n{ROUTES}"));
    let plain = bearer(&env.good("alice"));
    let at = |p: &str| verdict(&s.get(p, &[("Authorization", &plain)]));
    assert_eq!(at("/auth/public/x"), (200, String::new()));
    assert_eq!(at("/auth/ADMIN/x"), (403, "insufficient_scope".into()));
    assert_eq!(at("/auth/admin;x=1/x"), (403, "insufficient_scope".into()));
    assert_eq!(at("/auth/public/..;/admin/x"), (403, "invalid_request".into()));
    assert_eq!(at("/auth/public/%252e%252e/admin/x"), (403, "invalid_request".into()));
    assert_eq!(at("/auth/admin./x"), (403, "invalid_request".into()));
    // Without a token the open route opens only its own spelling.
    assert_eq!(verdict(&s.get("/auth/public/x", &[])), (200, String::new()));
    assert_eq!(verdict(&s.get("/auth/PUBLIC/x", &[])), (401, "missing_token".into()));
}

/// Issue 24: a skip of `/healthz` must be able to say that path alone.
#[test]
fn an_exact_route_opens_its_path_only() {
    let env = Env::new();
    let s = start(&env, "[[routes]]\nprefix = \"/healthz\"\nexact = true\nopen = true\n");
    let at = |p: &str| verdict(&s.get("/auth", &[("X-Original-URI", p)]));
    assert_eq!(at("/healthz"), (200, String::new()));
    assert_eq!(at("/healthz?full=1"), (200, String::new()));
    assert_eq!(at("/healthz/anything"), (401, "missing_token".into()));
    assert_eq!(at("/healthz/"), (401, "missing_token".into()));
    assert_eq!(at("/HEALTHZ"), (401, "missing_token".into()));
    assert_eq!(at("/healthzz"), (401, "missing_token".into()));
}

/// A keep-alive connection that has had one answer, so the server holds it.
fn held(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    // The health answer has a Content-Length; read until the whole body.
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed a connection it should hold");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap();
            if body.len() >= len {
                break;
            }
        }
    }
    s
}

/// Whether a new connection to `addr` gets an answer (false: closed or reset).
fn answered(addr: &str, req: &str) -> bool {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => raw.starts_with(b"HTTP/1."),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            panic!("no answer and no close within 10 s")
        }
        Err(_) => false,
    }
}

const GET_HEALTH: &str = "GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n";

#[test]
fn idle_connections_to_the_main_listener_do_not_lock_out_admin() {
    let env = Env::new();
    let s = start(
        &env,
        "max_connections = 4\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"JWTWARDEN_TEST_ADMIN_SECRET\"\n",
    );
    let hold: Vec<TcpStream> = (0..4).map(|_| held(&s.addr)).collect();
    assert!(!answered(&s.addr, GET_HEALTH), "the main listener is full");
    let admin = s.admin.clone().unwrap();
    assert!(
        answered(&admin, "GET / HTTP/1.0\r\nHost: x\r\n\r\n"),
        "the admin listener answers while the main one is full"
    );
    let r = s.revoke(&json!({"issuer": env.issuer.url(), "jti": "j-1"}));
    assert_eq!(r.status, 200, "{r:?}");
    drop(hold);
}

#[test]
fn one_peer_holds_at_most_max_connections_per_peer() {
    let env = Env::new();
    let s = start(&env, "max_connections = 100\nmax_connections_per_peer = 3\n");
    let mut hold: Vec<TcpStream> = (0..3).map(|_| held(&s.addr)).collect();
    assert!(
        !answered(&s.addr, GET_HEALTH),
        "the fourth connection of one peer is closed"
    );
    // Closing one gives the peer its place back.
    drop(hold.pop());
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !answered(&s.addr, GET_HEALTH) {
        assert!(std::time::Instant::now() < until, "the freed place never came back");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(hold);
}

#[test]
fn the_per_peer_limit_is_validated() {
    let env = Env::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jwtwarden"))
        .arg("serve")
        .arg("--config")
        .arg(&env.json_config)
        .arg("--serve-config")
        .arg(serve_file(&env, "max_connections_per_peer = 0\n"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_connections_per_peer: at least 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A request head of exactly `size` bytes (request line to the empty line
/// inclusive), sent in one write.
fn head_of(size: usize, token: &str) -> String {
    let start =
        format!("GET /auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nX-Pad: ");
    let end = "\r\n\r\n";
    let pad = size - start.len() - end.len();
    let head = format!("{start}{}{end}", "p".repeat(pad));
    assert_eq!(head.len(), size);
    head
}

#[test]
fn the_header_block_limit_is_exact_when_sent_in_one_write() {
    for limit in [8192, 20000, 32768, 65536] {
        header_block_limit_is_exact(limit);
    }
}

fn header_block_limit_is_exact(limit: usize) {
    let env = Env::new();
    let s = start(&env, &format!("max_request_header_bytes = {limit}\n"));
    let token = env.good("alice");
    let send = |size: usize| -> u16 {
        let mut c = TcpStream::connect(&s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(head_of(size, &token).as_bytes()).unwrap();
        let mut raw = Vec::new();
        let _ = c.read_to_end(&mut raw);
        parse_response(&raw).status
    };
    let verified = || {
        request(&s.addr, "GET", "/metrics", &[], "")
            .body
            .lines()
            .filter(|l| l.starts_with("jwtwarden_verifications_total"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(send(limit - 1), 200, "limit {limit}");
    assert_eq!(send(limit), 200, "limit {limit}");
    let before = verified();
    let mut wrong = Vec::new();
    for size in [
        limit + 1,
        limit + 2,
        limit + limit / 4,
        limit + limit / 2 - 1,
        2 * limit - 1,
    ] {
        let status = send(size);
        if status != 431 {
            wrong.push(format!("{size} bytes: {status}"));
        }
    }
    assert!(wrong.is_empty(), "over the limit of {limit}, not 431: {wrong:?}");
    assert_eq!(before, verified(), "a refused head verified nothing");
}

#[test]
fn ambiguous_credentials_are_refused() {
    let env = Env::new();
    let s = start(&env, "token_cookie = \"at\"\n");
    let t = env.good("alice");
    let u = env.good("mallory");
    let b = bearer(&t);
    let one = |name: &'static str, v: String| (name, v);
    let cases: Vec<(Vec<(&str, String)>, u16)> = vec![
        // Unambiguous.
        (vec![one("Cookie", format!("at={t}"))], 200),
        (vec![one("Cookie", format!("a=1; at={t}; b=2"))], 200),
        (vec![one("Authorization", b.clone())], 200),
        (
            vec![one("Authorization", b.clone()), one("Cookie", format!("at={t}"))],
            200,
        ),
        // Two cookies of the token's name, same or different values, in one
        // header or two, whatever the case or spacing of the name.
        (vec![one("Cookie", format!("at={t}; at={t}"))], 400),
        (vec![one("Cookie", format!("at={t}; at={u}"))], 400),
        (
            vec![one("Cookie", format!("at={u}")), one("Cookie", format!("at={t}"))],
            400,
        ),
        (vec![one("Cookie", format!("at=; at={t}"))], 400),
        (vec![one("Cookie", format!("AT={u}; at={t}"))], 400),
        (vec![one("Cookie", format!("at ={u}; at={t}"))], 400),
        // The header and the cookie disagree.
        (
            vec![one("Authorization", b.clone()), one("Cookie", format!("at={u}"))],
            400,
        ),
        (
            vec![one("Authorization", bearer(&u)), one("Cookie", format!("at={t}"))],
            400,
        ),
        // Two Authorization headers.
        (
            vec![one("Authorization", b.clone()), one("Authorization", b.clone())],
            400,
        ),
    ];
    let mut wrong = Vec::new();
    for (headers, want) in &cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let r = s.get("/auth", &h);
        let ok = r.status == *want && (*want == 200 || r.json()["error"] == "invalid_request");
        if !ok {
            let shown: Vec<String> = headers
                .iter()
                .map(|(n, v)| format!("{n}: {}", v.replace(&t, "<t>").replace(&u, "<u>")))
                .collect();
            wrong.push(format!(
                "{shown:?}: want {want}, got {} {}",
                r.status,
                r.body.replace(&t, "<t>")
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The URI header itself: repeated or unreadable is a path that cannot be
/// normalised safely (403, not a 400 that nginx turns into a 500); without
/// routes it is not read at all.
#[test]
fn the_original_uri_header_is_read_only_when_needed_and_strictly() {
    let env = Env::new();
    let plain = bearer(&env.good("alice"));
    let s = start(&env, ROUTES);
    let repeated = s.get(
        "/auth",
        &[
            ("X-Original-URI", "/public/x"),
            ("X-Original-URI", "/admin/x"),
            ("Authorization", &plain),
        ],
    );
    assert_eq!(verdict(&repeated), (403, "invalid_request".into()));
    let raw = s.get(
        "/auth",
        &[("X-Original-URI", "/public/caf\u{e9}"), ("Authorization", &plain)],
    );
    assert_eq!(verdict(&raw), (403, "invalid_request".into()));
    drop(s);
    let s = start(&env, "");
    let r = s.get(
        "/auth",
        &[
            ("X-Original-URI", "/a"),
            ("X-Original-URI", "/b"),
            ("Authorization", &plain),
        ],
    );
    assert_eq!(verdict(&r), (200, String::new()), "no routes: the URI does not matter");
}

/// Through a real nginx (`auth_request`, `X-Original-URI $request_uri`, as
/// docs/serve.md shows): the spellings never reach the upstream, and the
/// refusal reaches the client as 403 (nginx turns a 400 into a 500).
#[test]
fn through_nginx_the_spellings_never_reach_the_upstream() {
    let Some(binary) = common::serve::nginx_binary() else {
        if std::env::var_os("JWTWARDEN_REQUIRE_NGINX").is_some() {
            panic!("JWTWARDEN_REQUIRE_NGINX is set but nginx is not installed");
        }
        eprintln!("SKIPPED: nginx not found");
        return;
    };
    let env = Env::new();
    let s = start(&env, ROUTES);
    let upstream = common::serve::Upstream::start();
    let block = format!(
        r#"{auth}
    location / {{
      auth_request /_auth;
      proxy_pass http://127.0.0.1:{up};
    }}"#,
        auth = common::serve::auth_request_location(&format!("http://{}/auth", s.addr)),
        up = upstream.port
    );
    let nginx = common::serve::Nginx::start(&binary, &block);
    let plain = bearer(&env.good("alice"));
    assert_eq!(nginx.get("/public/x", &[]).status, 200, "{}", nginx.error_log());
    assert_eq!(upstream.hits(), 1);
    let mut wrong = Vec::new();
    for (uri, token, want) in [
        ("/public/..;/admin/x", None, 403),
        ("/public/..%3b/admin/x", None, 403),
        ("/public/%252e%252e/admin/x", None, 403),
        ("/admin/..;/public/x", None, 403),
        ("/ADMIN/x", Some(plain.as_str()), 403),
        ("/admin;x=1/x", Some(plain.as_str()), 403),
        ("/admin./x", Some(plain.as_str()), 403),
        ("/PUBLIC/x", None, 401),
    ] {
        let h: Vec<(&str, &str)> = token.map(|t| ("Authorization", t)).into_iter().collect();
        let r = nginx.get(uri, &h);
        if r.status != want {
            wrong.push(format!("{uri}: want {want}, got {}", r.status));
        }
    }
    assert!(wrong.is_empty(), "{wrong:?}");
    assert_eq!(upstream.hits(), 1, "nothing else reached the upstream");
}
