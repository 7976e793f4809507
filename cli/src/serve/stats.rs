//! Serve's own metrics: forward-auth answers by status and their latency.
//!
//! Plain atomics with fixed buckets: every request writes them, so they
//! must cost no lock. They are striped: each thread writes its own
//! cache-line-aligned stripe (runtime workers get one each), so two workers
//! never bounce a counter's cache line between cores; a scrape sums the
//! stripes. They survive a reload (the verifier's counters start again with
//! the new verifier).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Statuses counted separately; anything else is `other`.
const STATUSES: [u16; 8] = [200, 400, 401, 403, 404, 405, 500, 503];

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 14] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 500_000, 2_000_000, 10_000_000,
];

/// Stripes: more than the runtime has workers on most machines; threads
/// beyond that share stripes (still correct, only slower).
const STRIPES: usize = 16;

/// One thread's counters, on cache lines of their own.
#[derive(Default)]
#[repr(align(128))]
struct Stripe {
    by_status: [AtomicU64; STATUSES.len() + 1],
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// Request counters and a latency histogram.
#[derive(Default)]
pub struct Stats {
    stripes: [Stripe; STRIPES],
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    introspection: IntrospectionStats,
}

/// The stripe of the calling thread: threads take stripes in turn.
fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    INDEX.with(|i| *i)
}

impl Stats {
    /// Count one forward-auth answer.
    pub fn record(&self, status: u16, elapsed: Duration) {
        let s = &self.stripes[stripe_index()];
        let i = STATUSES.iter().position(|s| *s == status).unwrap_or(STATUSES.len());
        s.by_status[i].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // Cumulative buckets are computed at read time: one write per request.
        if let Some(b) = BUCKETS_US.iter().position(|le| us <= *le) {
            s.buckets[b].fetch_add(1, Ordering::Relaxed);
        }
        s.count.fetch_add(1, Ordering::Relaxed);
        s.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn sum(&self, field: impl Fn(&Stripe) -> &AtomicU64) -> u64 {
        self.stripes.iter().map(|s| field(s).load(Ordering::Relaxed)).sum()
    }

    /// Count a configuration reload.
    pub fn reloaded(&self, ok: bool) {
        let c = if ok { &self.reloads_ok } else { &self.reloads_failed };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Answers with `status` so far (tests).
    #[cfg(test)]
    pub fn requests_with(&self, status: u16) -> u64 {
        let i = STATUSES.iter().position(|s| *s == status).unwrap_or(STATUSES.len());
        self.sum(|s| &s.by_status[i])
    }

    /// The metrics in the OpenMetrics text format, without the `# EOF`
    /// line (the caller appends these to the engine's).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP jwtwarden_serve_requests Forward-auth answers by HTTP status.\n");
        out.push_str("# TYPE jwtwarden_serve_requests counter\n");
        for i in 0..=STATUSES.len() {
            let status = STATUSES.get(i).map_or("other".to_string(), u16::to_string);
            let _ = writeln!(
                out,
                "jwtwarden_serve_requests_total{{status=\"{status}\"}} {}",
                self.sum(|s| &s.by_status[i])
            );
        }
        out.push_str("# HELP jwtwarden_serve_request_duration_seconds Time to answer a forward-auth request.\n");
        out.push_str("# TYPE jwtwarden_serve_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (b, le) in BUCKETS_US.iter().enumerate() {
            cumulative += self.sum(|s| &s.buckets[b]);
            let _ = writeln!(
                out,
                "jwtwarden_serve_request_duration_seconds_bucket{{le=\"{}\"}} {cumulative}",
                *le as f64 / 1e6
            );
        }
        let count = self.sum(|s| &s.count);
        let _ = writeln!(
            out,
            "jwtwarden_serve_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "jwtwarden_serve_request_duration_seconds_sum {}",
            self.sum(|s| &s.sum_us) as f64 / 1e6
        );
        let _ = writeln!(out, "jwtwarden_serve_request_duration_seconds_count {count}");
        out.push_str("# HELP jwtwarden_serve_reloads Configuration reloads (SIGHUP) by result.\n");
        out.push_str("# TYPE jwtwarden_serve_reloads counter\n");
        for (result, c) in [("ok", &self.reloads_ok), ("failed", &self.reloads_failed)] {
            let _ = writeln!(
                out,
                "jwtwarden_serve_reloads_total{{result=\"{result}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        self.introspection.encode(&mut out);
        out
    }

    /// The introspection listener's counters.
    pub fn introspection(&self) -> &IntrospectionStats {
        &self.introspection
    }
}

/// What one introspection client's requests came to.
#[derive(Clone, Copy, Debug)]
pub enum ClientEvent {
    /// An authenticated request (counted before the rate limit).
    Request,
    /// Answered `{"active": true, …}`.
    Active,
    /// Answered `{"active": false}`.
    Inactive,
    /// Refused with 429 (over the client's rate).
    RateLimited,
}

/// One thread's share of a client's counters, on cache lines of its own.
#[derive(Default)]
#[repr(align(128))]
struct ClientStripe {
    /// Indexed by `ClientEvent as usize`.
    events: [AtomicU64; 4],
}

/// One introspection client's counters, striped like [`Stats`].
#[derive(Default)]
pub struct ClientCounters {
    stripes: [ClientStripe; STRIPES],
}

impl std::fmt::Debug for ClientCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCounters")
            .field("requests", &self.get(ClientEvent::Request))
            .finish()
    }
}

impl ClientCounters {
    /// Count one event.
    pub fn count(&self, e: ClientEvent) {
        self.stripes[stripe_index()].events[e as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Events of kind `e` so far.
    pub fn get(&self, e: ClientEvent) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.events[e as usize].load(Ordering::Relaxed))
            .sum()
    }
}

/// The introspection listener's counters: per client (by its configured
/// id, never its secret) and unauthenticated refusals. Clients are
/// registered by id, so a reload that keeps a client keeps its counters,
/// and one it removes keeps what it counted.
#[derive(Default)]
pub struct IntrospectionStats {
    /// Registered clients, in the order first seen. Locked only when a
    /// configuration is first used and at a scrape, never per request.
    clients: Mutex<Vec<(String, Arc<ClientCounters>)>>,
    /// 401 answers (no, wrong or ambiguous credentials), striped.
    unauthenticated: [ClientStripe; STRIPES],
}

impl IntrospectionStats {
    /// The counters of client `id` (registered on first use).
    pub fn client(&self, id: &str) -> Arc<ClientCounters> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = clients.iter().find(|(i, _)| i == id) {
            return c.clone();
        }
        let c = Arc::new(ClientCounters::default());
        clients.push((id.to_string(), c.clone()));
        c
    }

    /// Count one request refused for its credentials.
    pub fn unauthenticated(&self) {
        self.unauthenticated[stripe_index()].events[0].fetch_add(1, Ordering::Relaxed);
    }

    fn unauthenticated_total(&self) -> u64 {
        self.unauthenticated
            .iter()
            .map(|s| s.events[0].load(Ordering::Relaxed))
            .sum()
    }

    /// A snapshot: `{"unauthenticated": n, "clients": {id: {"requests",
    /// "active", "inactive", "rate_limited"}}}`.
    pub fn snapshot(&self) -> serde_json::Value {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let per: serde_json::Map<String, serde_json::Value> = clients
            .iter()
            .map(|(id, c)| {
                (
                    id.clone(),
                    serde_json::json!({
                        "requests": c.get(ClientEvent::Request),
                        "active": c.get(ClientEvent::Active),
                        "inactive": c.get(ClientEvent::Inactive),
                        "rate_limited": c.get(ClientEvent::RateLimited),
                    }),
                )
            })
            .collect();
        serde_json::json!({"unauthenticated": self.unauthenticated_total(), "clients": per})
    }

    /// The OpenMetrics families, once the listener has been used (a
    /// server without introspection shows none). Client ids are limited to
    /// `A-Z a-z 0-9 . _ -`, so they need no escaping in a label.
    fn encode(&self, out: &mut String) {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let unauthenticated = self.unauthenticated_total();
        if clients.is_empty() && unauthenticated == 0 {
            return;
        }
        out.push_str("# HELP jwtwarden_serve_introspection_requests Authenticated introspection requests by client.\n");
        out.push_str("# TYPE jwtwarden_serve_introspection_requests counter\n");
        for (id, c) in clients.iter() {
            let _ = writeln!(
                out,
                "jwtwarden_serve_introspection_requests_total{{client=\"{id}\"}} {}",
                c.get(ClientEvent::Request)
            );
        }
        out.push_str("# HELP jwtwarden_serve_introspection_answers Introspection answers by client and activity.\n");
        out.push_str("# TYPE jwtwarden_serve_introspection_answers counter\n");
        for (id, c) in clients.iter() {
            for (active, e) in [("true", ClientEvent::Active), ("false", ClientEvent::Inactive)] {
                let _ = writeln!(
                    out,
                    "jwtwarden_serve_introspection_answers_total{{client=\"{id}\",active=\"{active}\"}} {}",
                    c.get(e)
                );
            }
        }
        out.push_str(
            "# HELP jwtwarden_serve_introspection_rate_limited Introspection requests refused with 429, by client.\n",
        );
        out.push_str("# TYPE jwtwarden_serve_introspection_rate_limited counter\n");
        for (id, c) in clients.iter() {
            let _ = writeln!(
                out,
                "jwtwarden_serve_introspection_rate_limited_total{{client=\"{id}\"}} {}",
                c.get(ClientEvent::RateLimited)
            );
        }
        out.push_str("# HELP jwtwarden_serve_introspection_unauthenticated Introspection requests refused with 401.\n");
        out.push_str("# TYPE jwtwarden_serve_introspection_unauthenticated counter\n");
        let _ = writeln!(
            out,
            "jwtwarden_serve_introspection_unauthenticated_total {unauthenticated}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_cumulative_buckets() {
        let s = Stats::default();
        s.record(200, Duration::from_micros(10));
        s.record(200, Duration::from_micros(80));
        s.record(401, Duration::from_millis(3));
        s.record(418, Duration::from_secs(60));
        let t = s.encode();
        assert!(t.contains("jwtwarden_serve_requests_total{status=\"200\"} 2\n"), "{t}");
        assert!(
            t.contains("jwtwarden_serve_requests_total{status=\"other\"} 1\n"),
            "{t}"
        );
        assert!(t.contains("_bucket{le=\"0.000025\"} 1\n"), "{t}");
        assert!(t.contains("_bucket{le=\"0.0001\"} 2\n"), "{t}");
        assert!(t.contains("_bucket{le=\"0.005\"} 3\n"), "{t}");
        assert!(t.contains("_bucket{le=\"10\"} 3\n"), "{t}");
        assert!(t.contains("_bucket{le=\"+Inf\"} 4\n"), "{t}");
        assert!(t.contains("_count 4\n"), "{t}");
        assert_eq!(s.requests_with(401), 1);
    }

    #[test]
    fn threads_on_other_stripes_add_up() {
        let s = Stats::default();
        std::thread::scope(|sc| {
            for _ in 0..20 {
                sc.spawn(|| s.record(200, Duration::from_micros(30)));
            }
        });
        assert_eq!(s.requests_with(200), 20);
        assert!(s.encode().contains("_bucket{le=\"0.00005\"} 20\n"));
    }

    #[test]
    fn introspection_counts_per_client_and_survive_re_registration() {
        let s = Stats::default();
        assert!(!s.encode().contains("introspection"), "none before use");
        let i = s.introspection();
        let orders = i.client("orders");
        orders.count(ClientEvent::Request);
        orders.count(ClientEvent::Active);
        i.client("billing").count(ClientEvent::RateLimited);
        // A reload asks again by id: the same counters.
        i.client("orders").count(ClientEvent::Inactive);
        i.unauthenticated();
        let t = s.encode();
        assert!(
            t.contains("jwtwarden_serve_introspection_requests_total{client=\"orders\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("jwtwarden_serve_introspection_answers_total{client=\"orders\",active=\"true\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("jwtwarden_serve_introspection_answers_total{client=\"orders\",active=\"false\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("jwtwarden_serve_introspection_rate_limited_total{client=\"billing\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("jwtwarden_serve_introspection_unauthenticated_total 1\n"),
            "{t}"
        );
        let j = i.snapshot();
        assert_eq!(j["clients"]["orders"]["inactive"], 1, "{j}");
        assert_eq!(j["unauthenticated"], 1, "{j}");
    }
}
