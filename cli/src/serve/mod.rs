//! `jwtwarden serve`: the engine behind an HTTP forward-auth endpoint, for
//! proxies and legacy middleware that cannot link a library (nginx
//! `auth_request`, Envoy `ext_authz`, Traefik ForwardAuth, Caddy
//! `forward_auth`).
//!
//! Built on hyper 1.x (HTTP/1.1 server connections) with hyper-util's tokio
//! glue, on a multi-threaded tokio runtime. Why this stack and not another:
//! every forward-auth proxy speaks HTTP/1.1 to its auth service, and hyper
//! is the HTTP implementation most of the Rust ecosystem (axum, reqwest,
//! tonic) stands on, so its parser and limits get the most scrutiny. Its
//! connection builder gives exactly the knobs a server facing a proxy needs
//! — header size limit (`max_buf_size`), header count, a header read timeout
//! against slow clients, keep-alive, graceful shutdown — without a routing
//! framework: this server has three fixed paths, which axum's router and
//! tower layers would only add dependencies to. `tiny_http` (already in the
//! workspace for the test issuer) has no header timeout and one thread per
//! connection.
//!
//! The engine is synchronous. A cache hit costs about 100 ns and never
//! blocks, but a miss may wait up to `http.timeout_ms` for a JWKS fetch,
//! and that must not stall the other connections of a worker. So by default
//! (see [`config::Offload`]) a request asks the cache alone first
//! (`Verifier::verify_cached`) and answers a hit on the runtime thread; only
//! a miss goes to tokio's blocking pool (`spawn_blocking`).

pub mod admin;
pub mod assertion;
pub mod config;
pub mod http;
pub mod introspect;
pub mod limits;
pub mod stats;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use jwtwarden::Verifier;
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{Notify, Semaphore};

use crate::Exit;
use config::ServeConfig;

/// Options of `jwtwarden serve`.
pub struct ServeOptions {
    /// The engine configuration (the file every front end reads).
    pub config: PathBuf,
    /// The serve configuration (HTTP settings, routes, claim headers).
    pub serve_config: Option<PathBuf>,
    /// Overrides `listen` of the serve configuration.
    pub listen: Option<String>,
}

/// What a reload replaces, together: a request sees one or the other whole.
pub struct State {
    /// The engine.
    pub verifier: Arc<Verifier>,
    /// The serve configuration.
    pub config: Arc<ServeConfig>,
}

/// Shared by every connection.
pub struct App {
    /// The current verifier and configuration (swapped on SIGHUP).
    pub state: ArcSwap<State>,
    /// Answers by status and latency.
    pub stats: stats::Stats,
    /// Held by an admin revocation while it is applied to the current
    /// verifier, and by a reload while it carries the running verifier's
    /// trust state into the new one and swaps: a revocation lands in the
    /// old verifier before the carry, or in the new one after the swap,
    /// never in between (where the swap would drop it).
    pub trust_gate: Mutex<()>,
    /// Asks the reload task for a reload. Signals that arrive while a
    /// reload runs leave one permit: one more reload after it, not one each.
    pub reload: Notify,
}

/// Run `serve` until SIGTERM or SIGINT.
pub fn run(opts: ServeOptions) -> Exit {
    let state = match load(&opts) {
        Ok(s) => s,
        Err(e) => return Exit::usage(e),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = state.config.workers {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            log::error!("cannot start the runtime: {e}");
            return Exit::Unavailable;
        }
    };
    let exit = runtime.block_on(serve(opts, state));
    // A reload may still be waiting for an issuer (up to http.timeout_ms):
    // dropping the runtime would wait for it; its result is not needed.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    exit
}

/// Read both files and build a verifier. Offload: the verifier fetches
/// every issuer's keys before it is returned.
fn load(opts: &ServeOptions) -> Result<State, String> {
    let (engine, serve) = read(opts)?;
    build(engine, serve)
}

/// Both configuration files, parsed and checked against each other.
fn read(opts: &ServeOptions) -> Result<(jwtwarden::Config, ServeConfig), String> {
    let engine = jwtwarden::Config::from_path(&opts.config).map_err(|e| e.message().to_string())?;
    let mut serve = match &opts.serve_config {
        Some(p) => ServeConfig::from_path(p)?,
        None => ServeConfig::default(),
    };
    if let Some(listen) = &opts.listen {
        serve.listen = config::Listen::parse("--listen", listen)?;
    }
    let configured: Vec<&str> = engine.issuers.iter().map(|i| i.issuer.as_str()).collect();
    if let Some(bad) = serve.policy.routes().pinned_issuers().find(|i| !configured.contains(i)) {
        return Err(format!(
            "a route pins issuer {bad:?}, which the engine configuration does not have"
        ));
    }
    Ok((engine, serve))
}

/// A new verifier for `engine`, with `serve`.
fn build(engine: jwtwarden::Config, serve: ServeConfig) -> Result<State, String> {
    let verifier = Verifier::new(engine).map_err(|e| format!("cannot build the verifier: {e}"))?;
    Ok(State {
        verifier: Arc::new(verifier),
        config: Arc::new(serve),
    })
}

async fn serve(opts: ServeOptions, state: State) -> Exit {
    let config = state.config.clone();
    let listener = match Listener::bind(&config.listen, config.socket_mode).await {
        Ok(l) => l,
        Err(e) => return Exit::usage(format!("cannot listen on {}: {e}", config.listen)),
    };
    let admin_listener = match &config.admin {
        Some(a) => match TcpListener::bind(a.listen).await {
            Ok(l) => Some(l),
            Err(e) => return Exit::usage(format!("cannot listen on {} (admin): {e}", a.listen)),
        },
        None => None,
    };
    let introspect_listener = match &config.introspection {
        Some(i) => match TcpListener::bind(i.listen).await {
            Ok(l) => Some(l),
            Err(e) => return Exit::usage(format!("cannot listen on {} (introspection): {e}", i.listen)),
        },
        None => None,
    };
    let introspect_addr = introspect_listener
        .as_ref()
        .map(|l| l.local_addr())
        .and_then(Result::ok);
    let (Ok(addr), admin_addr) = (listener.local(), admin_listener.as_ref().map(|l| l.local_addr())) else {
        return Exit::Unavailable;
    };
    let admin_addr = admin_addr.and_then(Result::ok);
    // Handlers before the ready line: a SIGHUP sent as soon as the line is
    // read must reload, not kill the process (SIGHUP's default action).
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        log::error!("cannot install signal handlers");
        return Exit::Unavailable;
    };
    // One machine-readable line, so scripts and tests can find an
    // ephemeral port (`--listen 127.0.0.1:0`).
    println!(
        "{}",
        serde_json::json!({
            "listen": addr.to_string(),
            "admin": admin_addr.map(|a| a.to_string()),
            "introspection": introspect_addr.map(|a| a.to_string()),
        })
    );
    log::info!("serving forward auth on {addr}, path {}", config.auth_path);

    // One per process, alive until it exits: leaked, so a request borrows
    // it instead of touching a reference count shared by every worker.
    let app: &'static App = Box::leak(Box::new(App {
        state: ArcSwap::from_pointee(state),
        stats: stats::Stats::default(),
        trust_gate: Mutex::new(()),
        reload: Notify::new(),
    }));
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(config.max_connections));
    // The admin listener's own budget: holding the verification
    // listener's connections must not lock operators out.
    let admin_limit = Arc::new(Semaphore::new(config.admin.as_ref().map_or(1, |a| a.max_connections)));
    // Introspection's own budget, for the same reason.
    let introspect_limit = Arc::new(Semaphore::new(
        config.introspection.as_ref().map_or(1, |i| i.max_connections),
    ));
    let peers = limits::Peers::new(config.max_connections_per_peer);
    // Reloads run in their own task: the accept loop only asks for one.
    tokio::spawn(reloads(app, Arc::new(opts)));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(Accepted::Tcp(stream)) => {
                    let _ = stream.set_nodelay(true);
                    match peers.admit(stream.peer_addr()) {
                        Some(peer) => spawn_connection(app, &graceful, &limit, stream, Port::Auth, Some(peer)),
                        None => log::warn!("connection refused: max_connections_per_peer reached"),
                    }
                }
                Ok(Accepted::Unix(stream)) => spawn_connection(app, &graceful, &limit, stream, Port::Auth, None),
                Err(e) => {
                    // Out of descriptors, usually: back off instead of spinning.
                    log::warn!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            accepted = accept_admin(admin_listener.as_ref()) => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    spawn_connection(app, &graceful, &admin_limit, stream, Port::Admin, None);
                }
                Err(e) => {
                    log::warn!("admin accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            accepted = accept_admin(introspect_listener.as_ref()) => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    spawn_connection(app, &graceful, &introspect_limit, stream, Port::Introspect, None);
                }
                Err(e) => {
                    log::warn!("introspection accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = hup.recv() => app.reload.notify_one(),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    // Stop accepting, then let requests in flight finish; idle keep-alive
    // connections close at once.
    drop(listener);
    drop(admin_listener);
    drop(introspect_listener);
    log::info!(
        "shutting down: waiting up to {:?} for requests in flight",
        config.shutdown_grace
    );
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        log::warn!("shutdown: connections still open after the grace period; closing them");
    }
    Exit::Ok
}

async fn accept_admin(l: Option<&TcpListener>) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// The verification listener, bound.
enum Listener {
    Tcp(TcpListener),
    /// The socket, and its path (removed when the server stops).
    Unix(UnixListener, PathBuf),
}

/// An accepted connection.
enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Listener {
    /// Bind `listen`; a Unix socket gets permissions `mode`. A Unix socket
    /// path that exists is taken over only if it is a socket nobody answers
    /// on (left behind by a server that did not stop cleanly); a live
    /// server's socket, or any other file, is left alone and refused.
    async fn bind(listen: &config::Listen, mode: u32) -> std::io::Result<Listener> {
        match listen {
            config::Listen::Tcp(addr) => Ok(Listener::Tcp(TcpListener::bind(addr).await?)),
            config::Listen::Unix(path) => {
                use std::os::unix::fs::FileTypeExt;
                match std::fs::symlink_metadata(path) {
                    Ok(m) if !m.file_type().is_socket() => {
                        return Err(std::io::Error::other("the path exists and is not a socket"));
                    }
                    Ok(_) if std::os::unix::net::UnixStream::connect(path).is_ok() => {
                        return Err(std::io::Error::other("a server is already listening on it"));
                    }
                    Ok(_) => std::fs::remove_file(path)?,
                    Err(_) => {}
                }
                let listener = Listener::Unix(UnixListener::bind(path)?, path.clone());
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
                Ok(listener)
            }
        }
    }

    /// What the ready line and the log show.
    fn local(&self) -> std::io::Result<String> {
        match self {
            Listener::Tcp(l) => Ok(l.local_addr()?.to_string()),
            Listener::Unix(_, path) => Ok(format!("unix:{}", path.display())),
        }
    }

    async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            Listener::Tcp(l) => Ok(Accepted::Tcp(l.accept().await?.0)),
            Listener::Unix(l, _) => Ok(Accepted::Unix(l.accept().await?.0)),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Which listener a connection came in on.
#[derive(Clone, Copy)]
enum Port {
    /// Forward auth, health, metrics.
    Auth,
    /// `POST /revoke`.
    Admin,
    /// RFC 7662 introspection.
    Introspect,
}

fn spawn_connection<S>(
    app: &'static App,
    graceful: &GracefulShutdown,
    limit: &Arc<Semaphore>,
    stream: S,
    port: Port,
    peer: Option<limits::PeerPermit>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Ok(permit) = limit.clone().try_acquire_owned() else {
        // Over max_connections: closing is kinder to the proxy than a
        // connection that hangs until it times out.
        log::warn!("connection refused: max_connections reached");
        return;
    };
    let cfg = app.state.load().config.clone();
    let service = service_fn(move |req| async move {
        Ok::<_, Infallible>(match port {
            Port::Auth => http::handle(app, req).await,
            Port::Admin => admin::handle(app, req).await,
            Port::Introspect => introspect::handle(app, req).await,
        })
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        // Answers are a few hundred bytes: one flat buffer, one write.
        .writev(false)
        .header_read_timeout(cfg.header_read_timeout)
        // At most 100 headers (431 beyond): hyper's default, left unset on
        // purpose. Setting it, even to 100, moves the parser's header array
        // from the stack to a heap allocation per request.
        .max_buf_size(cfg.max_request_header_bytes);
    let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            log::debug!("connection: {e}");
        }
        drop(permit);
        drop(peer);
    });
}

/// The reload task: one reload at a time, for as long as the server runs.
async fn reloads(app: &'static App, opts: Arc<ServeOptions>) {
    loop {
        app.reload.notified().await;
        reload(app, &opts).await;
    }
}

/// SIGHUP: build a new verifier from both files, carry the running one's
/// trust state into it and swap it in. Until the swap, requests are
/// answered on the running state (the build, which fetches every issuer's
/// keys and syncs the revocation feed, runs on the blocking pool, not in
/// the accept loop). Requests in flight finish on the state they started
/// with. The running one stays in place when a file does not load, when
/// the new verifier cannot hold the running one's revocations, or when it
/// could fetch no keys for an issuer whose last good keys the running one
/// holds.
async fn reload(app: &'static App, opts: &Arc<ServeOptions>) {
    log::info!("SIGHUP: reloading {}", opts.config.display());
    let o = opts.clone();
    let done = tokio::task::spawn_blocking(move || {
        let (engine, serve) = read(&o)?;
        let running = app.state.load_full();
        // In place: issuers whose configuration did not change keep their
        // keys and cached results, and the trust state stays where it is.
        match running.verifier.reload(engine.clone()) {
            Ok(()) => {
                app.state.store(Arc::new(State {
                    verifier: running.verifier.clone(),
                    config: Arc::new(serve),
                }));
                Ok(true)
            }
            // A field only a new verifier can change (or, equally refused
            // there, an invalid configuration): build one, as before.
            Err(e) if e.kind() == jwtwarden::ErrorKind::InvalidConfig => {
                swap(app, build(engine, serve)?).map(|()| false)
            }
            Err(e) => Err(format!("cannot reload the verifier: {e}")),
        }
    })
    .await;
    match done {
        Ok(Ok(true)) => {
            app.stats.reloaded(true);
            log::info!(
                "reloaded in place; unchanged issuers keep their keys and cached results, \
                 changed ones were rebuilt, removed ones dropped"
            );
        }
        Ok(Ok(false)) => {
            app.stats.reloaded(true);
            log::info!(
                "reloaded with a new verifier; revocations, the policy version and the feed's staleness clock \
                 carried over, cached verification results start empty"
            );
        }
        Ok(Err(e)) => {
            log::error!("reload failed, keeping the running configuration: {e}");
            app.stats.reloaded(false);
        }
        Err(e) => {
            log::error!("reload failed, keeping the running configuration: {e}");
            app.stats.reloaded(false);
        }
    }
}

/// Carry the running verifier's trust state into `new` and put `new` in
/// service, under the trust gate (no admin revocation falls between).
fn swap(app: &App, new: State) -> Result<(), String> {
    let _gate = app.trust_gate.lock().unwrap_or_else(|e| e.into_inner());
    let old = app.state.load_full();
    let lost = lost_keys(&old.verifier, &new.verifier);
    if !lost.is_empty() {
        return Err(format!(
            "no keys could be fetched for {lost:?}, whose last good keys the running verifier holds; \
             reload again once the issuer answers"
        ));
    }
    new.verifier
        .inherit_trust_from(&old.verifier)
        .map_err(|e| format!("the new verifier cannot hold the running one's revocations: {e}"))?;
    if new.config.listen != old.config.listen
        || new.config.admin.as_ref().map(|a| a.listen) != old.config.admin.as_ref().map(|a| a.listen)
        || new.config.introspection.as_ref().map(|i| i.listen) != old.config.introspection.as_ref().map(|i| i.listen)
        || new.config.socket_mode != old.config.socket_mode
        || new.config.workers != old.config.workers
    {
        log::warn!("reload: listen addresses, socket_mode and workers change only on restart");
    }
    app.state.store(Arc::new(new));
    Ok(())
}

/// Issuers configured in both verifiers for which `new` holds no keys
/// (failed closed) while `old` holds usable ones: keys are trust state, and
/// swapping would refuse every token of those issuers until they answer
/// again, though the running verifier could serve them (within
/// `max_stale_secs`).
fn lost_keys(old: &Verifier, new: &Verifier) -> Vec<String> {
    use jwtwarden::Health;
    new.issuers()
        .into_iter()
        .filter(|name| {
            matches!(new.issuer_health(name), Ok(Health::FailedClosed))
                && matches!(old.issuer_health(name), Ok(Health::Fresh | Health::Stale))
        })
        .collect()
}
