//! A real `redis-server` on a free loopback port, for the fleet revocation
//! tests: started, stopped and restarted (without persistence, so a restart
//! loses every key, like a Redis that crashed) on the same port.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process; killed when dropped.
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
}

/// Where `redis-server` is, if installed.
fn find_binary() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/bin".into());
    dirs.push("/usr/local/bin".into());
    dirs.into_iter().map(|d| d.join("redis-server")).find(|p| p.is_file())
}

impl RedisServer {
    /// Start a server, or `None` when `redis-server` is not installed and
    /// `JWTWARDEN_REQUIRE_REDIS` is unset (the test then skips, saying so).
    /// With `JWTWARDEN_REQUIRE_REDIS=1` (set by `scripts/test`) a missing
    /// binary fails the test instead.
    pub fn start() -> Option<RedisServer> {
        let Some(binary) = find_binary() else {
            assert!(
                std::env::var_os("JWTWARDEN_REQUIRE_REDIS").is_none(),
                "redis-server is required (JWTWARDEN_REQUIRE_REDIS is set) but not installed"
            );
            eprintln!("skipped: redis-server is not installed");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = RedisServer {
            binary,
            port,
            child: None,
        };
        server.resume();
        Some(server)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kill the server (SIGKILL: no goodbye to the clients).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Until the port is free again.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop the server process (SIGSTOP) without closing anything: its
    /// connections stay open and unanswered, as under a long pause of
    /// Redis, until [`Self::unfreeze`].
    #[cfg(unix)]
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Let a [frozen](Self::freeze) server run again (SIGCONT).
    #[cfg(unix)]
    pub fn unfreeze(&self) {
        self.signal(libc::SIGCONT);
    }

    #[cfg(unix)]
    fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("running");
        let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
        // SAFETY: kill has no memory preconditions; the pid is our own child,
        // not yet waited for.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill({pid}, {signal})");
    }

    /// Start the server again on the same port, empty.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args([
                "--loglevel",
                "warning",
                "--dir",
                &std::env::temp_dir().to_string_lossy(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.command(&["PING"]).is_some_and(|r| r.starts_with("+PONG")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not answer on port {}", self.port);
    }

    /// Kill and start again: every key is gone.
    pub fn restart(&mut self) {
        self.stop();
        self.resume();
    }

    /// Send one command (RESP) and return the raw reply, for tests that act
    /// as a hostile publisher or inspect what the fleet holds.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = vec![0u8; 1 << 20];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
