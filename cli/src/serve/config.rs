//! The serve configuration: how `jwtwarden serve` talks HTTP, separate from
//! the engine configuration.
//!
//! The engine's `Config` rejects unknown fields (a typo must not silently
//! weaken verification), and every front end reads that same file. So the
//! HTTP settings live in their own file (`--serve-config`, TOML or JSON by
//! extension), also strict about unknown fields, and the engine file stays
//! exactly what `jwtwarden verify`, the C ABI and the Python package read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use jwtwarden::http::{HeaderName, HttpPolicy, HttpPolicyConfig, RouteConfig};

/// The default listen address: loopback only, so a fresh install is not
/// reachable from the network until someone decides it should be.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8400";

/// Where the verification listener listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// An IP address and port.
    Tcp(SocketAddr),
    /// A Unix domain socket (`unix:/run/jwtwarden/serve.sock`), for a proxy
    /// on the same host: it skips the loopback TCP stack, which is most of
    /// what an answered cache hit costs, on both sides (who may connect is
    /// the socket file's permissions: the process umask and its directory).
    Unix(PathBuf),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl Listen {
    /// `IP:port`, or `unix:` and an absolute path.
    pub fn parse(field: &str, v: &str) -> Result<Listen, String> {
        match v.strip_prefix("unix:") {
            Some(path) if Path::new(path).is_absolute() => Ok(Listen::Unix(PathBuf::from(path))),
            Some(_) => Err(format!(
                "{field}: {v:?}: a unix socket needs an absolute path (unix:/run/...)"
            )),
            None => v.parse().map(Listen::Tcp).map_err(|_| {
                format!("{field}: {v:?} is neither an IP:port address (for example {DEFAULT_LISTEN}) nor unix:/a/path")
            }),
        }
    }
}

/// Where the original request's URI and method are read from: each proxy
/// sends them its own way, and only the one the proxy *sets* (overwriting
/// whatever the client sent) may be trusted, so exactly one is read.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Forwarded {
    /// nginx `auth_request`: `X-Original-URI` and `X-Original-Method`
    /// (set with `proxy_set_header`; the method falls back to the
    /// subrequest's own, which nginx copies from the original request).
    #[default]
    Nginx,
    /// Traefik ForwardAuth: `X-Forwarded-Uri` and `X-Forwarded-Method`.
    Traefik,
    /// Caddy `forward_auth`: `X-Forwarded-Uri` and `X-Forwarded-Method`.
    Caddy,
    /// Envoy `ext_authz` (HTTP service): the original path under
    /// `auth_path` as the request path, and the original method as the
    /// request's own.
    Envoy,
}

impl Forwarded {
    /// The header carrying the original URI, if this proxy uses one.
    pub fn uri_header(self) -> Option<&'static str> {
        match self {
            Forwarded::Nginx => Some("x-original-uri"),
            Forwarded::Traefik | Forwarded::Caddy => Some("x-forwarded-uri"),
            Forwarded::Envoy => None,
        }
    }

    /// The header carrying the original method, if this proxy uses one.
    pub fn method_header(self) -> Option<&'static str> {
        match self {
            Forwarded::Nginx => Some("x-original-method"),
            Forwarded::Traefik | Forwarded::Caddy => Some("x-forwarded-method"),
            Forwarded::Envoy => None,
        }
    }
}

/// How a verification runs on the async runtime. A cache hit costs about
/// 100 ns, but a miss may wait on a JWKS fetch for up to `http.timeout_ms`,
/// which must not stall a runtime worker (and every connection on it).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Offload {
    /// Answer cache hits on the runtime thread (`Verifier::verify_cached`,
    /// which never blocks) and verify only misses on the blocking pool
    /// (`spawn_blocking`). The default: a hit costs about as much as a hash
    /// lookup, and a miss, which may wait for a key fetch, never stalls a
    /// worker.
    #[default]
    Misses,
    /// `tokio::task::spawn_blocking` for every verification, hits included
    /// (the default before `misses`; costs a thread hop per request).
    SpawnBlocking,
    /// `tokio::task::block_in_place` for every verification: the worker
    /// hands its other tasks to another thread before verifying.
    BlockInPlace,
    /// Verify on the worker itself, misses included: a key fetch stalls
    /// every connection on that worker. For measurements only.
    Inline,
}

/// The serve file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeFile {
    listen: Option<String>,
    auth_path: Option<String>,
    health_path: Option<String>,
    metrics_path: Option<String>,
    realm: Option<String>,
    forwarded: Option<Forwarded>,
    token_header: Option<String>,
    token_cookie: Option<String>,
    retry_after_secs: Option<u64>,
    max_claim_header_bytes: Option<usize>,
    #[serde(default)]
    claim_headers: BTreeMap<String, String>,
    #[serde(default)]
    routes: Vec<RouteConfig>,
    open_methods: Option<Vec<String>>,
    cached_header: Option<String>,
    header_read_timeout_ms: Option<u64>,
    max_request_header_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_peer: Option<usize>,
    shutdown_grace_secs: Option<u64>,
    socket_mode: Option<String>,
    workers: Option<usize>,
    offload: Option<Offload>,
    admin: Option<AdminFile>,
    introspection: Option<super::introspect::IntrospectionFile>,
    assertion: Option<super::assertion::AssertionFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    listen: String,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
    max_connections: Option<usize>,
}

/// The optional admin listener (revocations).
#[derive(Clone)]
pub struct AdminConfig {
    /// Its own address, never the verification listener's.
    pub listen: SocketAddr,
    /// The bearer secret a request must present.
    pub secret: String,
    /// Connections the admin listener serves at once: its own budget, so
    /// a client holding the verification listener's connections does not
    /// lock operators out (default 16).
    pub max_connections: usize,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is never printed.
        f.debug_struct("AdminConfig").field("listen", &self.listen).finish()
    }
}

/// The validated serve configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The verification listener.
    pub listen: Listen,
    /// The forward-auth endpoint (and, for Envoy, the prefix of the
    /// original path).
    pub auth_path: String,
    /// Issuer health.
    pub health_path: String,
    /// Prometheus text.
    pub metrics_path: String,
    /// Which proxy's forwarding headers are trusted.
    pub forwarded: Forwarded,
    /// The HTTP decision: realm, where the token is, `Retry-After`, claim
    /// headers, routes and open methods (the core's, shared by every front
    /// end).
    pub policy: HttpPolicy,
    /// A response header saying whether an accepted token came from the
    /// cache (`true`/`false`), if configured.
    pub cached_header: Option<hyper::header::HeaderName>,
    /// A client must send its whole request header within this time.
    pub header_read_timeout: Duration,
    /// Largest request header block, in bytes.
    pub max_request_header_bytes: usize,
    /// Connections served at once on the verification listener; more are
    /// closed at once.
    pub max_connections: usize,
    /// Connections one peer (an IPv4 address, an IPv6 /64) may hold on a
    /// TCP verification listener; more are closed at once. Default 1024 (at
    /// most `max_connections`): behind a proxy every connection comes from
    /// the proxy's address, so the cap must exceed what the proxy opens
    /// (nginx: `keepalive` idle connections per worker, plus one per
    /// subrequest in flight). Unix socket connections are not counted.
    pub max_connections_per_peer: usize,
    /// How long in-flight requests may finish after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// Permissions of a Unix socket listener's file (connecting needs write
    /// permission). Default `0660`: the server's user and group.
    pub socket_mode: u32,
    /// Runtime threads answering requests (misses are verified on tokio's
    /// blocking pool, not on these). `None`: one per CPU. On a host shared
    /// with the proxy, fewer leave the proxy its cores.
    pub workers: Option<usize>,
    /// How verification runs on the runtime.
    pub offload: Offload,
    /// The admin listener, if enabled.
    pub admin: Option<AdminConfig>,
    /// The RFC 7662 introspection listener, if enabled.
    pub introspection: Option<super::introspect::IntrospectionConfig>,
    /// The signed verification assertion, if enabled (`[assertion]`).
    pub assertion: Option<std::sync::Arc<super::assertion::AssertionConfig>>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig::from_file(ServeFile::default()).expect("the defaults are valid")
    }
}

impl ServeConfig {
    /// Read and validate a serve file (TOML or JSON, by extension; else
    /// both are tried). Errors name the file and the field.
    pub fn from_path(path: &Path) -> Result<ServeConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let file = match ext.as_deref() {
            Some("json") => from_json(&text),
            Some("toml") => from_toml(&text),
            _ => from_json(&text).or_else(|json_err| {
                from_toml(&text).map_err(|toml_err| format!("neither JSON ({json_err}) nor TOML ({toml_err})"))
            }),
        }
        .map_err(|e| format!("serve config {}: {e}", path.display()))?;
        ServeConfig::from_file(file).map_err(|e| format!("serve config {}: {e}", path.display()))
    }

    /// Parse a TOML serve configuration (tests).
    #[cfg(test)]
    pub fn from_toml_str(text: &str) -> Result<ServeConfig, String> {
        ServeConfig::from_file(from_toml(text)?)
    }

    fn from_file(f: ServeFile) -> Result<ServeConfig, String> {
        let listen = Listen::parse("listen", f.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
        let path = |field: &str, v: Option<String>, default: &str| -> Result<String, String> {
            let v = v.unwrap_or_else(|| default.to_string());
            if !v.starts_with('/') || v.len() > 1 && v.ends_with('/') || v.contains(['?', '#']) {
                return Err(format!(
                    "{field}: {v:?} must start with '/', not end with one, and have no query"
                ));
            }
            Ok(v)
        };
        let auth_path = path("auth_path", f.auth_path, "/auth")?;
        let health_path = path("health_path", f.health_path, "/healthz")?;
        let metrics_path = path("metrics_path", f.metrics_path, "/metrics")?;
        if health_path == auth_path || metrics_path == auth_path || health_path == metrics_path {
            return Err("auth_path, health_path and metrics_path must differ".into());
        }
        // Serve's defaults where the core's differ: the realm is
        // "jwtwarden" unless set (an empty one leaves it out), and no
        // method is open unless listed (serve answers for every method of
        // the upstream; the middlewares open OPTIONS by default).
        let realm = match f.realm {
            None => Some("jwtwarden".to_string()),
            Some(r) if r.is_empty() => None,
            Some(r) => Some(r),
        };
        let policy = HttpPolicy::new(HttpPolicyConfig {
            realm,
            token_header: f.token_header,
            token_cookie: f.token_cookie,
            retry_after_secs: f.retry_after_secs,
            max_claim_header_bytes: f.max_claim_header_bytes,
            claim_headers: f.claim_headers,
            routes: f.routes,
            open_methods: Some(f.open_methods.unwrap_or_default()),
            // serve mints with its own `[assertion]` section (serve::assertion).
            assertion: None,
        })?;
        let cached_header = match f.cached_header {
            None => None,
            Some(h) => {
                let name = HeaderName::parse(&h).map_err(|e| format!("cached_header: {e}"))?;
                if policy.claim_mapping().iter().any(|(_, n)| n == &name) {
                    return Err(format!("cached_header: {h} is also a claim header"));
                }
                Some(
                    hyper::header::HeaderName::from_bytes(name.as_str().as_bytes())
                        .map_err(|e| format!("cached_header: {e}"))?,
                )
            }
        };
        let assertion = match f.assertion {
            None => None,
            Some(a) => {
                let prefixes: Vec<&str> = policy.routes().iter().map(|r| r.prefix.as_str()).collect();
                Some(super::assertion::AssertionConfig::from_file(a, &prefixes)?)
            }
        };
        let admin = f.admin.map(admin_config).transpose()?;
        if admin.as_ref().is_some_and(|a| Listen::Tcp(a.listen) == listen) {
            return Err("admin.listen must differ from listen".into());
        }
        let introspection = f
            .introspection
            .map(|i| super::introspect::IntrospectionConfig::from_file(i, assertion.as_deref()))
            .transpose()?;
        // Signed answers are checked against keys a client can fetch.
        if introspection.as_ref().is_some_and(|i| i.jwt.is_some()) && admin.is_none() {
            return Err(
                "introspection.jwt_response: its keys are published on the admin listener \
                        (/.well-known/jwks.json): configure [admin]"
                    .into(),
            );
        }
        // Port 0 (an ephemeral port each) never collides.
        if let Some(i) = introspection.as_ref().filter(|i| i.listen.port() != 0) {
            if Listen::Tcp(i.listen) == listen || admin.as_ref().is_some_and(|a| a.listen == i.listen) {
                return Err("introspection.listen must differ from listen and admin.listen".into());
            }
        }
        let max_connections = f.max_connections.unwrap_or(4096).max(1);
        let max_connections_per_peer = match f.max_connections_per_peer {
            Some(0) => return Err("max_connections_per_peer: at least 1".into()),
            n => n.unwrap_or(1024).min(max_connections),
        };
        let max_request_header_bytes = f.max_request_header_bytes.unwrap_or(32 * 1024);
        if !(8192..=1024 * 1024).contains(&max_request_header_bytes) {
            return Err("max_request_header_bytes: between 8192 and 1048576".into());
        }
        Ok(ServeConfig {
            listen,
            auth_path,
            health_path,
            metrics_path,
            forwarded: f.forwarded.unwrap_or_default(),
            policy,
            cached_header,
            header_read_timeout: Duration::from_millis(f.header_read_timeout_ms.unwrap_or(5000).clamp(100, 600_000)),
            max_request_header_bytes,
            max_connections,
            max_connections_per_peer,
            shutdown_grace: Duration::from_secs(f.shutdown_grace_secs.unwrap_or(10)),
            workers: match f.workers {
                Some(n) if !(1..=1024).contains(&n) => return Err("workers: between 1 and 1024".into()),
                n => n,
            },
            socket_mode: match f.socket_mode.as_deref() {
                None => 0o660,
                Some(m) => u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| format!("socket_mode: {m:?} is not an octal mode such as \"0660\""))?,
            },
            offload: f.offload.unwrap_or_default(),
            admin,
            introspection,
            assertion,
        })
    }
}

fn from_json(text: &str) -> Result<ServeFile, String> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

fn from_toml(text: &str) -> Result<ServeFile, String> {
    toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
}

fn parse_addr(field: &str, v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| format!("{field}: {v:?} is not an IP:port address (for example {DEFAULT_LISTEN})"))
}

fn admin_config(a: AdminFile) -> Result<AdminConfig, String> {
    let listen = parse_addr("admin.listen", &a.listen)?;
    let secret = match (&a.token_file, &a.token_env) {
        (Some(p), None) => std::fs::read_to_string(p)
            .map_err(|e| format!("admin.token_file: cannot read {}: {e}", p.display()))?
            .trim()
            .to_string(),
        (None, Some(var)) => std::env::var(var).map_err(|_| format!("admin.token_env: {var} is not set"))?,
        _ => return Err("admin: exactly one of token_file and token_env".into()),
    };
    // A short secret can be guessed; the listener is for operators.
    if secret.len() < 16 || !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("admin: the secret must be at least 16 visible ASCII characters".into());
    }
    let max_connections = match a.max_connections {
        Some(0) => return Err("admin.max_connections: at least 1".into()),
        n => n.unwrap_or(16),
    };
    Ok(AdminConfig {
        listen,
        secret,
        max_connections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_an_address_or_an_absolute_unix_socket_path() {
        let unix = ServeConfig::from_toml_str("listen = \"unix:/run/jwtwarden/serve.sock\"").unwrap();
        assert_eq!(unix.listen, Listen::Unix("/run/jwtwarden/serve.sock".into()));
        assert_eq!(unix.listen.to_string(), "unix:/run/jwtwarden/serve.sock");
        for bad in ["unix:serve.sock", "unix:", "localhost:8400", "/run/serve.sock"] {
            let e = ServeConfig::from_toml_str(&format!("listen = {bad:?}")).unwrap_err();
            assert!(e.starts_with("listen:"), "{bad}: {e}");
        }
        assert_eq!(unix.socket_mode, 0o660);
        assert_eq!(unix.workers, None, "one per CPU");
        assert_eq!(ServeConfig::from_toml_str("workers = 1").unwrap().workers, Some(1));
        assert!(ServeConfig::from_toml_str("workers = 0")
            .unwrap_err()
            .starts_with("workers:"));
        let open = ServeConfig::from_toml_str("socket_mode = \"0666\"").unwrap();
        assert_eq!(open.socket_mode, 0o666);
        for bad in ["rw-rw----", "1777", "888"] {
            let e = ServeConfig::from_toml_str(&format!("socket_mode = {bad:?}")).unwrap_err();
            assert!(e.starts_with("socket_mode:"), "{bad}: {e}");
        }
    }

    #[test]
    fn defaults_listen_on_loopback() {
        let c = ServeConfig::default();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert!(matches!(c.listen, Listen::Tcp(a) if a.ip().is_loopback()));
        assert_eq!(c.auth_path, "/auth");
        assert_eq!(c.policy.token_source().header, "authorization");
        assert_eq!(c.policy.realm(), Some("jwtwarden"));
        assert_eq!(ServeConfig::from_toml_str("realm = \"\"").unwrap().policy.realm(), None);
        assert!(c.admin.is_none());
        assert_eq!(c.max_connections_per_peer, 1024);
        let c = ServeConfig::from_toml_str("max_connections = 100").unwrap();
        assert_eq!(c.max_connections_per_peer, 100, "at most max_connections");
        assert!(ServeConfig::from_toml_str("max_connections_per_peer = 0")
            .unwrap_err()
            .starts_with("max_connections_per_peer"));
        assert_eq!(c.offload, Offload::Misses, "hits inline, misses offloaded");
        for (name, mode) in [
            ("spawn_blocking", Offload::SpawnBlocking),
            ("block_in_place", Offload::BlockInPlace),
            ("inline", Offload::Inline),
        ] {
            let c = ServeConfig::from_toml_str(&format!("offload = \"{name}\"")).unwrap();
            assert_eq!(c.offload, mode);
        }
    }

    #[test]
    fn unknown_fields_and_bad_headers_are_errors() {
        assert!(ServeConfig::from_toml_str("listn = \"127.0.0.1:1\"")
            .unwrap_err()
            .contains("listn"));
        let e = ServeConfig::from_toml_str("[claim_headers]\nsub = \"X-Auth\\r\\nEvil\"").unwrap_err();
        assert!(e.contains("claim_headers.sub"), "{e}");
        let e = ServeConfig::from_toml_str("[claim_headers]\nsub = \"Content-Length\"").unwrap_err();
        assert!(e.contains("claim_headers.sub"), "{e}");
        assert!(ServeConfig::from_toml_str("auth_path = \"auth\"").is_err());
        assert!(ServeConfig::from_toml_str("realm = 'a\"b'").is_err());
    }

    /// The serve file docs/serve.md shows is one serve accepts.
    #[test]
    fn the_documented_serve_file_loads() {
        let doc = include_str!("../../../docs/serve.md");
        let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let block = &doc[start..start + doc[start..].find("```").unwrap()];
        let c = ServeConfig::from_toml_str(block).unwrap_or_else(|e| panic!("docs/serve.md: {e}"));
        assert_eq!(c.max_connections_per_peer, 1024);
        assert_eq!(c.max_request_header_bytes, 32768);
    }

    #[test]
    fn admin_needs_a_long_secret() {
        std::env::set_var("JWTWARDEN_TEST_SHORT_SECRET", "short");
        let e = ServeConfig::from_toml_str(
            "[admin]\nlisten = \"127.0.0.1:1\"\ntoken_env = \"JWTWARDEN_TEST_SHORT_SECRET\"",
        )
        .unwrap_err();
        assert!(e.contains("16"), "{e}");
    }
}
