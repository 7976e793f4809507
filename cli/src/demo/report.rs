//! The demo's summary: the table for people, JSON for machines, and the
//! guarantees with the numbers behind them.

use serde_json::{json, Value};

use super::{unknown_kid, DemoOptions, Outcome, Phase, COOLDOWN_SECS, JWKS_MAX_AGE_SECS};

/// Why the run is arranged as it is; printed with the summary.
pub const NOTES: &[&str] = &[
    "Phase order: the first token with a rotated kid may need the one unknown-kid refresh a \
     cooldown window allows, so the rotation runs before the storm. The storm's window then only \
     delays kids no legitimate client uses. A new kid first seen inside an open window is \
     rejected until the next scheduled refresh (at most the JWKS TTL): publish keys before \
     signing with them.",
    "Retirement: a key the issuer stops publishing verifies until the verifier's next refresh \
     sees it gone (within the TTL); refresh.rotation_grace_secs keeps it longer on purpose.",
    "Outage: tokens keep verifying from the last known good keys, past their TTL, until \
     refresh.max_stale_secs (default 6 h); then the issuer fails closed (keys_stale).",
];

/// One checked guarantee.
pub struct Guarantee {
    /// Stable key in the JSON output.
    pub key: &'static str,
    /// What must hold, in words.
    pub title: &'static str,
    /// Whether it held.
    pub held: bool,
    /// The numbers behind it, in words.
    pub detail: String,
    /// The numbers behind it, for machines.
    pub numbers: Value,
}

/// The whole summary.
pub struct Summary<'a> {
    o: &'a Outcome,
    threads: usize,
    guarantees: Vec<Guarantee>,
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate with an SI suffix: `987`, `45.6 k`, `1.23 M`.
pub fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn result_str(r: &Option<Result<(), String>>, ok: &str) -> String {
    match r {
        None => "not checked".into(),
        Some(Ok(())) => ok.into(),
        Some(Err(k)) => k.clone(),
    }
}

impl<'a> Summary<'a> {
    /// Check the guarantees against what happened.
    pub fn build(opts: &DemoOptions, o: &'a Outcome) -> Summary<'a> {
        let f = &o.facts;
        let phase = |p: Phase| o.phases.iter().find(|x| x.0 == p).copied().unwrap_or((p, 0, 0, 0));
        let (_, rot_legit, _, rot_failed) = phase(Phase::Rotation);
        let (_, ret_legit, _, ret_failed) = phase(Phase::Retirement);
        let (_, out_legit, out_cached, out_failed) = phase(Phase::Outage);
        let all_legit: u64 = o.phases.iter().map(|p| p.1).sum();
        let all_failed: u64 = o.phases.iter().map(|p| p.3).sum();
        let storm_allowed = 1 + (f.storm.secs / COOLDOWN_SECS as f64).floor() as u64;
        let learned_by = if f.rotation_unknown_kid_fetches > 0 {
            "unknown-kid refresh"
        } else {
            "scheduled refresh"
        };

        let mut g = Vec::new();
        g.push(Guarantee {
            key: "rotation_no_legit_failures",
            title: "no legitimate request failed during key rotation",
            held: rot_failed + ret_failed == 0,
            detail: format!(
                "{} failed of {}; new kid learned by {learned_by}",
                thousands(rot_failed + ret_failed),
                thousands(rot_legit + ret_legit)
            ),
            numbers: json!({
                "legit_requests": rot_legit + ret_legit,
                "failed": rot_failed + ret_failed,
                "old_kid": f.old_kid,
                "new_kid": f.new_kid,
                "new_kid_learned_by": learned_by,
                "rotation_unknown_kid_fetches": f.rotation_unknown_kid_fetches,
            }),
        });
        g.push(Guarantee {
            key: "outage_no_legit_failures",
            title: "no legitimate request failed during the issuer outage",
            held: out_failed == 0,
            detail: format!(
                "{} failed of {} ({} fresh signature checks); {} fetches failed, keys stale for {:.1} s",
                thousands(out_failed),
                thousands(out_legit),
                thousands(out_legit - out_cached - out_failed),
                f.outage_fetch_failures,
                o.observed.stale_secs
            ),
            numbers: json!({
                "legit_requests": out_legit,
                "failed": out_failed,
                "fresh_verifications": out_legit - out_cached - out_failed,
                "outage_secs": f.outage_secs,
                "fetch_failures": f.outage_fetch_failures,
                "scheduled_fetches": f.outage_scheduled_fetches,
                "stale_secs": o.observed.stale_secs,
                "failed_closed_secs": o.observed.failed_closed_secs,
            }),
        });
        let first_check = result_str(&f.revoked_after, "ACCEPTED");
        g.push(Guarantee {
            key: "revoked_token_rejected",
            title: "a revoked token is rejected from the moment revoke_jti returns",
            held: first_check == "revoked" && o.replay_accepted == 0,
            detail: format!(
                "{} accepted of {} replays; first check: {first_check}; cached before: {}",
                thousands(o.replay_accepted),
                thousands(o.replay_attempts),
                matches!(f.revoked_before, Some(Ok(true)))
            ),
            numbers: json!({
                "was_cached_before": matches!(f.revoked_before, Some(Ok(true))),
                "first_check": first_check,
                "attempts_after_revocation": o.replay_attempts,
                "accepted_after_revocation": o.replay_accepted,
                "rejected_by_kind": o.replay_kinds,
            }),
        });
        let storm_unknown = f
            .storm
            .rejected
            .iter()
            .filter(|(k, _)| unknown_kid(k))
            .map(|(_, n)| n)
            .sum::<u64>();
        g.push(Guarantee {
            key: "storm_fetches_bounded",
            title: "an unknown-kid storm costs at most 1 fetch per cooldown window",
            held: f.storm.accepted == 0 && f.storm_fetches <= storm_allowed,
            detail: format!(
                "{} tokens -> {} fetch(es) (allowed {storm_allowed} in {:.2} s at {COOLDOWN_SECS} s cooldown), {} accepted",
                thousands(f.storm.tokens),
                f.storm_fetches,
                f.storm.secs,
                f.storm.accepted
            ),
            numbers: json!({
                "storm_tokens": f.storm.tokens,
                "fetches": f.storm_fetches,
                "allowed_fetches": storm_allowed,
                "cooldown_secs": COOLDOWN_SECS,
                "storm_secs": f.storm.secs,
                "accepted": f.storm.accepted,
                "rejected_unknown_kid": storm_unknown,
                "rejected_by_kind": f.storm.rejected,
                "rate_limited_refreshes": f.storm_rate_limited,
            }),
        });
        let before = result_str(&f.old_token_ok_while_published, "ok");
        let after = result_str(&f.retired_token_result, "ACCEPTED");
        g.push(Guarantee {
            key: "retired_key_rejected",
            title: "old tokens verify while their key is published, not once it is retired",
            held: before == "ok" && f.retired_dropped_after.is_some() && unknown_kid(&after),
            detail: format!(
                "old token before retirement: {before}; key dropped after {}; then: {after}",
                f.retired_dropped_after
                    .map_or("(never)".into(), |s| format!("{s:.1} s"))
            ),
            numbers: json!({
                "old_token_while_published": before,
                "dropped_after_secs": f.retired_dropped_after,
                "old_token_after_retirement": after,
            }),
        });
        g.push(Guarantee {
            key: "no_legit_failures",
            title: "no legitimate request failed at any point",
            held: all_failed == 0,
            detail: format!("{} failed of {}", thousands(all_failed), thousands(all_legit)),
            numbers: json!({"legit_requests": all_legit, "failed": all_failed}),
        });
        Summary {
            o,
            threads: opts.threads,
            guarantees: g,
        }
    }

    /// Whether every guarantee held.
    pub fn all_held(&self) -> bool {
        !self.o.facts.thread_panicked && self.guarantees.iter().all(|g| g.held)
    }

    fn hit_rate(&self) -> f64 {
        let c = &self.o.metrics.cache;
        let n = c.hits + c.misses;
        if n == 0 {
            0.0
        } else {
            c.hits as f64 / n as f64
        }
    }

    fn per_sec(&self) -> f64 {
        self.o.verifications as f64 / self.o.facts.run_secs.max(1e-3)
    }

    /// The machine-readable summary.
    pub fn to_json(&self) -> Value {
        let o = self.o;
        let f = &o.facts;
        let iss = o.metrics.issuers.first();
        let starts = &f.phase_starts;
        let phases: Vec<Value> = o
            .phases
            .iter()
            .map(|(p, legit, cached, failed)| {
                let start = starts.iter().find(|s| s.0 == *p).map(|s| s.1);
                let end = starts
                    .iter()
                    .skip_while(|s| s.0 != *p)
                    .nth(1)
                    .map_or(f.run_secs, |s| s.1);
                json!({
                    "name": p.name(),
                    "start_secs": start,
                    "secs": start.map(|s| end - s),
                    "legit_requests": legit,
                    "cached": cached,
                    "failed": failed,
                })
            })
            .collect();
        json!({
            "ok": self.all_held(),
            "version": jwtwarden::VERSION,
            "setup_secs": f.setup_secs,
            "run_secs": f.run_secs,
            "threads": self.threads,
            "issuer": o.issuer,
            "config": o.config,
            "throughput": {
                "verifications": o.verifications,
                "per_sec": self.per_sec(),
                "peak_per_sec": o.observed.peak_per_sec,
            },
            "cache": {
                "hit_rate": self.hit_rate(),
                "hits": o.metrics.cache.hits,
                "misses": o.metrics.cache.misses,
                "inserts": o.metrics.cache.inserts,
                "evictions": o.metrics.cache.evictions,
            },
            "fetches": {
                "by_reason": iss.map(|i| &i.fetches),
                "failures": iss.map(|i| i.fetch_failures),
                "not_modified": iss.map(|i| i.not_modified),
                "rate_limited_refreshes": iss.map(|i| i.rate_limited_refreshes),
                "final_health": f.final_health.map(|h| h.as_str()),
                "recovered_after_secs": f.recovered_after,
            },
            "rejections": o.metrics.verifications.rejected,
            "phases": phases,
            "timeline": f.timeline.iter().map(|(t, e)| json!({"at_secs": t, "event": e})).collect::<Vec<_>>(),
            "guarantees": self.guarantees.iter().map(|g| {
                let mut n = g.numbers.clone();
                n["held"] = json!(g.held);
                n["title"] = json!(g.title);
                (g.key.to_string(), n)
            }).collect::<serde_json::Map<_, _>>(),
            "notes": NOTES,
            "legit_failure_samples": o.samples.iter().map(|s| json!({
                "at_secs": s.at_secs, "phase": s.phase.name(), "kind": s.kind,
                "message": s.message, "kid": s.kid, "fingerprint": s.fingerprint,
            })).collect::<Vec<_>>(),
            "metrics": o.metrics,
        })
    }

    /// The table for people, on stdout.
    pub fn print(&self) {
        let o = self.o;
        let f = &o.facts;
        let iss = o.metrics.issuers.first();
        println!();
        println!(
            "jwtwarden {} demo: {:.1} s of traffic on {} threads ({:.1} s setup), issuer {}",
            jwtwarden::VERSION,
            f.run_secs,
            self.threads,
            f.setup_secs,
            o.issuer
        );
        println!(
            "JWKS Cache-Control: max-age={JWKS_MAX_AGE_SECS}, refresh.min_ttl_secs 1, unknown-kid cooldown {COOLDOWN_SECS} s"
        );
        println!("\nTimeline");
        for (t, e) in &f.timeline {
            println!("  {t:5.1} s  {e}");
        }

        println!("\nThroughput and cache");
        let row = |k: &str, v: String| println!("  {k:<34} {v}");
        row("verifications", thousands(o.verifications));
        row(
            "verifications per second",
            format!("{}/s (peak {}/s)", si(self.per_sec()), si(o.observed.peak_per_sec)),
        );
        row(
            "cache hit rate",
            format!(
                "{:.3} % ({} hits, {} misses)",
                100.0 * self.hit_rate(),
                thousands(o.metrics.cache.hits),
                thousands(o.metrics.cache.misses)
            ),
        );
        if let Some(i) = iss {
            let by_reason: Vec<String> = i.fetches.iter().map(|(r, n)| format!("{r} {n}")).collect();
            row("JWKS fetches by reason", by_reason.join(", "));
            row("failed JWKS fetches", thousands(i.fetch_failures));
            // Requests for a refresh that the cooldown refused: no fetch was made.
            row(
                "refreshes refused by the cooldown",
                format!("{} (no fetch made)", thousands(i.rate_limited_refreshes)),
            );
            row(
                "issuer health at the end",
                format!(
                    "{}{}",
                    f.final_health.map_or("?", |h| h.as_str()),
                    f.recovered_after
                        .map_or(String::new(), |s| format!(" (refreshed {s:.1} s after the outage)"))
                ),
            );
        }
        row(
            "storm tokens / fetches they caused",
            format!("{} / {}", thousands(f.storm.tokens), f.storm_fetches),
        );
        let rejections: Vec<String> = o
            .metrics
            .verifications
            .rejected
            .iter()
            .map(|(k, n)| format!("{k} {}", thousands(*n)))
            .collect();
        row(
            "rejections by kind",
            if rejections.is_empty() {
                "none".into()
            } else {
                rejections.join(", ")
            },
        );

        println!("\nLegitimate requests by phase");
        println!(
            "  {:<12} {:>12} {:>12} {:>8}",
            "phase", "requests", "from cache", "failed"
        );
        for (p, legit, cached, failed) in &o.phases {
            println!(
                "  {:<12} {:>12} {:>12} {:>8}",
                p.name(),
                thousands(*legit),
                thousands(*cached),
                thousands(*failed)
            );
        }

        println!("\nNotes");
        for n in NOTES {
            let mut line = String::from("  -");
            for word in n.split_whitespace() {
                if line.len() + word.len() > 96 {
                    println!("{line}");
                    line = String::from("   ");
                }
                line.push(' ');
                line.push_str(word);
            }
            println!("{line}");
        }

        println!("\nGuarantees");
        for g in &self.guarantees {
            println!("  [{}] {}", if g.held { "PASS" } else { "FAIL" }, g.title);
            println!("         {}", g.detail);
        }
        for s in &o.samples {
            println!(
                "  failed: +{:.2} s {} kid {} token {}: {} ({})",
                s.at_secs,
                s.phase.name(),
                s.kid,
                s.fingerprint,
                s.kind,
                s.message
            );
        }
        println!(
            "\n{}",
            if self.all_held() {
                "All guarantees held."
            } else {
                "SOME GUARANTEES DID NOT HOLD."
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(si(1_234_567.0), "1.23 M");
        assert_eq!(si(45_600.0), "45.6 k");
        assert_eq!(si(12.0), "12");
    }
}
