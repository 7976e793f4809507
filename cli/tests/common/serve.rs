//! Helpers for `jwtwarden serve` tests: the server as a child process, a
//! tiny HTTP client, an upstream that echoes what it receives, and nginx.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The admin secret the tests use.
pub const ADMIN_SECRET: &str = "test-admin-secret-0123456789";

/// A running `jwtwarden serve`.
pub struct Serve {
    pub child: Child,
    pub addr: String,
    pub admin: Option<String>,
}

impl Serve {
    /// Start it on an ephemeral loopback port and wait for its address line.
    pub fn start(engine: &Path, serve_config: Option<&Path>) -> Serve {
        Serve::start_on("127.0.0.1:0", engine, serve_config)
    }

    /// Start it listening on `listen` (`IP:port` or `unix:/path`).
    pub fn start_on(listen: &str, engine: &Path, serve_config: Option<&Path>) -> Serve {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jwtwarden"));
        cmd.arg("serve").arg("--config").arg(engine).arg("--listen").arg(listen);
        if let Some(s) = serve_config {
            cmd.arg("--serve-config").arg(s);
        }
        let mut child = cmd
            .env("JWTWARDEN_TEST_ADMIN_SECRET", ADMIN_SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start jwtwarden serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("serve printed {line:?}: {e}"));
        Serve {
            addr: v["listen"].as_str().unwrap().to_string(),
            admin: v["admin"].as_str().map(str::to_string),
            child,
        }
    }

    /// Send a signal (SIGHUP, SIGTERM...).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Wait until `/metrics` counts `n` reloads with `result` (`ok` or
    /// `failed`). Signals that arrive while a reload runs are merged into
    /// one, so a test that sends several waits for each in turn.
    pub fn wait_for_reloads(&self, result: &str, n: u64) {
        let until = Instant::now() + Duration::from_secs(20);
        let want = format!("jwtwarden_serve_reloads_total{{result=\"{result}\"}} {n}");
        while !self.get("/metrics", &[]).body.contains(&want) {
            assert!(Instant::now() < until, "no {result} reload number {n} seen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET `path` on the verification listener.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        request(&self.addr, "GET", path, headers, "")
    }

    /// Revoke through the admin API.
    pub fn revoke(&self, body: &Value) -> Resp {
        let auth = format!("Bearer {ADMIN_SECRET}");
        request(
            self.admin.as_ref().expect("admin listener"),
            "POST",
            "/revoke",
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            &body.to_string(),
        )
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response read to the end of the connection.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// One HTTP/1.0 request (the connection closes after the answer, so no
/// chunked bodies to decode).
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut s: Box<dyn ReadWrite> = match addr.strip_prefix("unix:") {
        Some(path) => {
            let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            Box::new(s)
        }
        None => {
            let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            Box::new(s)
        }
    };
    let host = if addr.starts_with("unix:") { "localhost" } else { addr };
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse_response(&raw)
}

/// A connected stream, TCP or Unix.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Parse a whole HTTP/1.x response.
pub fn parse_response(raw: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

/// An upstream that answers 200 with the request's headers as a JSON array
/// of `[name, value]` pairs, and counts requests.
pub struct Upstream {
    pub port: u16,
    pub hits: Arc<AtomicU64>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let h = h.clone();
                std::thread::spawn(move || echo(stream, &h));
            }
        });
        Upstream { port, hits }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

fn echo(mut stream: TcpStream, hits: &AtomicU64) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let text = String::from_utf8_lossy(&raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let pairs: Vec<(String, String)> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = serde_json::to_string(&pairs).unwrap();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The headers an upstream received, from its echo body.
pub fn echoed(resp: &Resp) -> Vec<(String, String)> {
    serde_json::from_str(&resp.body).unwrap_or_else(|e| panic!("not an echo ({e}): {resp:?}"))
}

/// What the upstream received (`echoed`) for a token whose `sub` is
/// `"alice\r\nX-Injected: yes"`, `name` `"Eve\nSet-Cookie: a=b\u{0}\u{7f}\u{85}"`
/// and `scope` `["read", "write\r\nX-Injected: 2"]`, mapped to
/// `X-Auth-Subject`, `X-Auth-Name` and `X-Auth-Scope`: no header injected,
/// the values made printable.
pub fn assert_claims_not_injected(h: &[(String, String)]) {
    let header = |name: &str| -> Vec<&str> { h.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect() };
    assert!(header("x-injected").is_empty(), "{h:?}");
    assert!(header("set-cookie").is_empty(), "{h:?}");
    assert_eq!(header("x-auth-subject"), ["alice  X-Injected: yes"]);
    assert_eq!(header("x-auth-name"), ["Eve Set-Cookie: a=b"]);
    assert_eq!(header("x-auth-scope"), ["read,write  X-Injected: 2"]);
}

/// A free loopback port (bound and released: a small race nginx tolerates
/// in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Wait until something accepts connections on `addr`.
pub fn wait_listening(addr: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < until, "nothing listening on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The nginx binary, if installed.
pub fn nginx_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            "/usr/sbin".into(),
            "/usr/local/sbin".into(),
            "/usr/local/nginx/sbin".into(),
        ])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

/// nginx in the foreground (master and workers) with `prefix` as its
/// prefix directory and `prefix/nginx.conf` as its configuration.
pub fn nginx_command(binary: &Path, prefix: &Path) -> Command {
    let mut cmd = Command::new(binary);
    cmd.arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .arg("-g")
        .arg("daemon off; master_process on;")
        .stdin(Stdio::null());
    cmd
}

/// The internal `location = /_auth` that nginx's `auth_request /_auth`
/// sends to serve at `auth_url` (its `/auth`), with the original URI and
/// method and without the body.
pub fn auth_request_location(auth_url: &str) -> String {
    format!(
        r#"
    location = /_auth {{
      internal;
      proxy_pass {auth_url};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
    }}"#
    )
}

/// nginx in the foreground with its own prefix directory.
pub struct Nginx {
    pub child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl Nginx {
    /// Start nginx on a free port; `server_block` is the body of its
    /// `server {}` (the `listen` line is added).
    pub fn start(binary: &Path, server_block: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let port = free_port();
        let conf = format!(
            "worker_processes 2;\nerror_log {d}/logs/error.log warn;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             server {{\n    listen 127.0.0.1:{port};\n{server_block}\n  }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = nginx_command(binary, dir.path()).spawn().expect("start nginx");
        let addr = format!("127.0.0.1:{port}");
        wait_listening(&addr);
        Nginx { child, addr, dir }
    }

    /// GET through nginx.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        request(&self.addr, "GET", path, headers, "")
    }

    /// nginx's error log (for assertion messages).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: fast shutdown of the master and its workers.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
