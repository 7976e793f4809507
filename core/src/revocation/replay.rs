//! Replay windows for single-use identifiers: the `jti` of each
//! verification assertion (`crate::assertion`) is accepted once.
//!
//! [`ReplayGuard`] remembers them in this process. [`RedisReplay`] makes
//! the window fleet-wide through the Redis server of the revocation feed
//! (`revocation.redis`): the first use of an identifier is an atomic
//! `SET key 1 NX PX ttl`, so of all the processes sharing that server
//! exactly one accepts it. Redis unreachable (or answering an error) refuses
//! the assertion (`revocations_stale`): fail closed, never "probably not
//! seen".

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::config::RedisFeedConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::fork::PerProcess;

/// Where identifiers already seen are remembered. The in-process
/// [`ReplayGuard`] is the default; [`RedisReplay`] shares the window with
/// the fleet.
pub trait ReplayStore: Send + Sync {
    /// Record `(edge, jti)` until `until_ms`; `Ok(false)` if it was already
    /// recorded (a replay). An error refuses the assertion (fail closed).
    fn first_use(&self, edge: &str, jti: &str, until_ms: u64, now_ms: u64) -> Result<bool>;
}

/// The per-process replay window: identifiers kept until their
/// assertion's `exp` plus leeway, bounded in entries (full: refuse, never
/// forget).
pub struct ReplayGuard {
    seen: parking_lot::Mutex<HashMap<(String, String), u64>>,
    max_entries: usize,
}

impl ReplayGuard {
    /// A guard holding at most `max_entries` live identifiers.
    pub fn new(max_entries: usize) -> ReplayGuard {
        ReplayGuard {
            seen: parking_lot::Mutex::new(HashMap::new()),
            max_entries,
        }
    }
}

impl ReplayStore for ReplayGuard {
    fn first_use(&self, edge: &str, jti: &str, until_ms: u64, now_ms: u64) -> Result<bool> {
        let mut seen = self.seen.lock();
        let key = (edge.to_string(), jti.to_string());
        if seen.get(&key).is_some_and(|&until| until > now_ms) {
            return Ok(false);
        }
        if seen.len() >= self.max_entries {
            seen.retain(|_, until| *until > now_ms);
            if seen.len() >= self.max_entries {
                return Err(Error::new(
                    ErrorKind::RevocationListFull,
                    "assertion replay window full: refusing rather than forgetting a jti",
                ));
            }
        }
        seen.insert(key, until_ms);
        Ok(true)
    }
}

/// The fleet-wide replay window, in the Redis server of the revocation
/// feed: one key per identifier, `{key_prefix}assertion-jti:{len}:{edge}:{jti}`
/// (the edge's length first, so no edge name and `jti` can be spliced
/// into another pair), set with `NX` and expiring with the assertion.
pub struct RedisReplay {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    /// This process's connection (a forked child opens its own).
    con: PerProcess<Mutex<Option<redis::Connection>>>,
}

impl RedisReplay {
    /// A window in the server `cfg` names; connects on first use.
    pub fn new(cfg: &RedisFeedConfig) -> Result<RedisReplay> {
        let client = redis::Client::open(cfg.url.as_str()).map_err(|e| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("revocation.redis.url: {}", e.category()),
            )
        })?;
        Ok(RedisReplay {
            client,
            prefix: cfg.key_prefix.clone(),
            timeout: Duration::from_millis(cfg.timeout_ms),
            con: PerProcess::new(Mutex::new(None)),
        })
    }

    /// The Redis key of `(edge, jti)`.
    pub fn key(&self, edge: &str, jti: &str) -> String {
        format!("{}assertion-jti:{}:{edge}:{jti}", self.prefix, edge.len())
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let con = self.client.get_connection_with_timeout(self.timeout)?;
        con.set_read_timeout(Some(self.timeout))?;
        con.set_write_timeout(Some(self.timeout))?;
        Ok(con)
    }

    fn set_nx(con: &mut redis::Connection, key: &str, ttl_ms: u64) -> redis::RedisResult<bool> {
        let reply: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query(con)?;
        Ok(reply.is_some())
    }
}

impl ReplayStore for RedisReplay {
    fn first_use(&self, edge: &str, jti: &str, until_ms: u64, now_ms: u64) -> Result<bool> {
        let key = self.key(edge, jti);
        let ttl_ms = until_ms.saturating_sub(now_ms).max(1);
        let slot = self.con.get(|_| Mutex::new(None));
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        // A kept connection may have died since its last use: an I/O
        // failure on it is retried once on a fresh one. If the lost attempt
        // did reach Redis, the retry finds the key and refuses: a first use
        // may be refused, a replay is never accepted.
        if let Some(con) = slot.as_mut() {
            match Self::set_nx(con, &key, ttl_ms) {
                Ok(first) => return Ok(first),
                Err(e) if !e.is_io_error() && !e.is_connection_dropped() => return Err(unavailable(&e)),
                Err(_) => *slot = None,
            }
        }
        let mut con = self.connect().map_err(|e| unavailable(&e))?;
        let first = Self::set_nx(&mut con, &key, ttl_ms).map_err(|e| unavailable(&e))?;
        *slot = Some(con);
        Ok(first)
    }
}

/// Redis could not say whether the identifier was seen: refuse.
fn unavailable(e: &redis::RedisError) -> Error {
    Error::new(
        ErrorKind::RevocationsStale,
        format!(
            "assertion replay window (Redis) unavailable ({}): refused, fail closed",
            e.category()
        ),
    )
}
