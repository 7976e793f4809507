//! `jwtwarden revoke` and `jwtwarden revocations`, run as an incident
//! responder would, against verifiers on the same real `redis-server`.

mod common;

use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin_cmd;
use common::{json_lines, Env};
use jwtwarden::{Config, ErrorKind, Verifier};
use jwtwarden_testissuer::redis::RedisServer;
use serde_json::{json, Value};

/// A config for `env`'s issuer on the feed at `redis`, with a state dir.
fn write_config(env: &Env, redis: &RedisServer) -> (std::path::PathBuf, Value) {
    let cfg = json!({
        "issuers": [{"issuer": env.issuer.url(), "jwks_uri": env.issuer.jwks_uri(), "audiences": ["api"]}],
        "http": {"allow_http": true},
        "state_dir": env.dir.path().join("state"),
        "revocation": {"redis": {"url": redis.url(), "timeout_ms": 500}},
    });
    let path = env.dir.path().join("fleet.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    (path, cfg)
}

fn run(args: &[&str]) -> (i32, Vec<Value>) {
    let out = cargo_bin_cmd!("jwtwarden").args(args).output().unwrap();
    (out.status.code().unwrap(), json_lines(&out.stdout))
}

/// `jwtwarden revoke --config CONFIG --issuer ISSUER --jti JTI`.
fn revoke_jti(config: &std::path::Path, issuer: &str, jti: &str) -> (i32, Vec<Value>) {
    run(&[
        "revoke",
        "--config",
        config.to_str().unwrap(),
        "--issuer",
        issuer,
        "--jti",
        jti,
    ])
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_revocation_from_the_shell_reaches_a_running_verifier() {
    let Some(redis) = RedisServer::start() else { return };
    let env = Env::new();
    let (path, cfg) = write_config(&env, &redis);
    let path = path.to_str().unwrap();
    let verifier = Verifier::new(Config::from_value(cfg).unwrap()).unwrap();
    let token = env.with_claims(|c| c["jti"] = json!("j-shell"), "alice");
    let bob = env.good("bob");
    verifier.verify(&token).unwrap();
    verifier.verify(&bob).unwrap();
    let iss = env.issuer.url();

    let (code, lines) = run(&["revoke", "--config", path, "--issuer", &iss, "--jti", "j-shell"]);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines[0]["propagation"], "fleet");
    eventually("the running verifier rejects", || {
        verifier.verify(&token).is_err_and(|e| e.kind() == ErrorKind::Revoked)
    });

    let (code, _) = run(&[
        "revoke", "--config", path, "--issuer", "*", "--sub", "bob", "--before", "now",
    ]);
    assert_eq!(code, 0);
    eventually("bob's older tokens are rejected", || {
        verifier.verify(&bob).is_err_and(|e| e.kind() == ErrorKind::Revoked)
    });

    let (code, lines) = run(&["revocations", "--config", path]);
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l["source"] == "fleet"));
    assert!(lines
        .iter()
        .any(|l| l["kind"] == "subject" && l["issuer"] == "*" && l["value"] == "bob"));
}

#[test]
fn with_redis_down_the_shell_is_told_it_is_not_yet_fleet_wide() {
    let Some(mut redis) = RedisServer::start() else { return };
    let env = Env::new();
    let (path, cfg) = write_config(&env, &redis);
    let path = path.to_str().unwrap();
    redis.stop();
    let iss = env.issuer.url();
    let (code, lines) = run(&["revoke", "--config", path, "--issuer", &iss, "--kid", "k-1"]);
    assert_eq!(code, 3, "pending is its own exit status");
    assert_eq!(lines[0]["propagation"], "pending");
    // The journal kept it: the next process started on the state dir holds
    // it, and publishes it once Redis is back.
    redis.resume();
    let verifier = Verifier::new(Config::from_value(cfg).unwrap()).unwrap();
    assert!(verifier.revocations().iter().any(|r| r.value == "k-1"));
    eventually("it reached the fleet's set", || {
        let (_, lines) = run(&["revocations", "--config", path]);
        lines.iter().any(|l| l["value"] == "k-1")
    });
}

#[test]
fn revoke_refuses_what_it_cannot_scope() {
    let Some(redis) = RedisServer::start() else { return };
    let env = Env::new();
    let (path, _) = write_config(&env, &redis);
    let path = path.to_str().unwrap();
    let (code, lines) = run(&["revoke", "--config", path, "--issuer", "https://other/", "--jti", "j"]);
    assert_eq!(code, 2);
    assert_eq!(lines[0]["error"], "unknown_issuer");
    // Exactly one of --jti, --sub, --kid.
    let (code, _) = run(&["revoke", "--config", path, "--issuer", "*"]);
    assert_eq!(code, 2);
    let (code, _) = run(&["revoke", "--config", path, "--issuer", "*", "--jti", "a", "--kid", "b"]);
    assert_eq!(code, 2);
}

/// Issue 23, item 9b: `jwtwarden revoke` without a feed said "in force"
/// (exit 0) while a `jwtwarden serve` on the same `state_dir` never re-read
/// the journal and kept accepting the token.
#[test]
fn a_revoke_beside_a_running_serve_without_a_feed_reaches_it() {
    let env = Env::new();
    let cfg = json!({
        "issuers": [{"issuer": env.issuer.url(), "jwks_uri": env.issuer.jwks_uri(), "audiences": ["api"]}],
        "http": {"allow_http": true},
        "state_dir": env.dir.path().join("state"),
    });
    let path = env.dir.path().join("local.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let serve = common::serve::Serve::start(&path, None);
    let token = env.with_claims(|c| c["jti"] = json!("j-beside"), "alice");
    let auth = format!("Bearer {token}");
    assert_eq!(serve.get("/auth", &[("Authorization", &auth)]).status, 200);
    assert_eq!(serve.get("/auth", &[("Authorization", &auth)]).status, 200, "cached");
    let iss = env.issuer.url();
    let (code, lines) = revoke_jti(&path, &iss, "j-beside");
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines[0]["propagation"], "local");
    let reaches = lines[0]["reaches"].as_str().unwrap();
    assert!(reaches.contains("within about 1 s"), "{reaches}");
    eventually("the running serve refuses the revoked token", || {
        serve.get("/auth", &[("Authorization", &auth)]).status == 401
    });

    // Neither state_dir nor a feed: the revocation would reach nobody.
    let (code, _) = revoke_jti(&env.json_config, &iss, "j-nowhere");
    assert_eq!(code, 2);
}

/// Issue 23: a revocation the fleet's subscribers cannot hold (the set is
/// over `revocation.max_entries`) is not reported as in force fleet-wide.
#[test]
fn a_revocation_the_fleet_cannot_hold_exits_non_zero() {
    let redis = RedisServer::start().expect("redis-server is installed");
    let env = Env::new();
    let cfg = json!({
        "issuers": [{"issuer": env.issuer.url(), "jwks_uri": env.issuer.jwks_uri(), "audiences": ["api"]}],
        "http": {"allow_http": true},
        "revocation": {"max_entries": 1, "redis": {"url": redis.url(), "timeout_ms": 500}},
    });
    let path = env.dir.path().join("full.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let held = json!({"kind": "jti", "iss": env.issuer.url(), "value": "j-held", "until_ms": 9_000_000_000_000u64});
    redis
        .command(&["ZADD", "jwtwarden:revocations", "9000000000000", &held.to_string()])
        .expect("written");
    let iss = env.issuer.url();
    let (code, lines) = revoke_jti(&path, &iss, "j-2");
    assert_ne!(code, 0, "{lines:?}");
    assert_eq!(lines[0]["ok"], false, "{lines:?}");
    assert_eq!(lines[0]["error"], "revocation_list_full", "{lines:?}");
}
