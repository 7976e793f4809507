//! `jwtwarden verify`, driven as a user would, against an in-process test issuer.

mod common;

use assert_cmd::cargo::cargo_bin_cmd;
use common::{json_lines, now, Env};
use jwtwarden::ErrorKind;
use predicates::prelude::*;
use serde_json::{json, Value};

fn verify(config: &std::path::Path, tokens: &[&str]) -> (i32, Vec<Value>, String) {
    let out = cargo_bin_cmd!("jwtwarden")
        .arg("verify")
        .arg("--config")
        .arg(config)
        .args(tokens)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        json_lines(&out.stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The rejection line must carry the kind, its stable code and category.
fn assert_rejected(line: &Value, kind: ErrorKind) {
    assert_eq!(line["ok"], false, "{line}");
    assert_eq!(line["kind"], kind.as_str(), "{line}");
    assert_eq!(line["code"], kind.code(), "{line}");
    assert_eq!(line["category"], kind.category().as_str(), "{line}");
    assert!(line["message"].as_str().is_some_and(|m| !m.is_empty()), "{line}");
}

#[test]
fn a_good_token_verifies_with_json_config() {
    let env = Env::new();
    let token = env.good("alice");
    let (code, lines, _) = verify(&env.json_config, &[&token]);
    assert_eq!(code, 0);
    let l = &lines[0];
    assert_eq!(l["ok"], true, "{l}");
    assert_eq!(l["issuer"], env.issuer.url());
    assert_eq!(l["kid"], env.issuer.first_kid());
    assert_eq!(l["alg"], "RS256");
    assert_eq!(l["cached"], false);
    assert_eq!(l["sub"], "alice");
    assert_eq!(l["claims"]["aud"], "api");
    assert!(l["verified_at"].as_str().unwrap().ends_with('Z'), "{l}");
    assert!(l["verified_at_ms"].as_u64().unwrap() > 1_600_000_000_000);
}

#[test]
fn the_same_token_twice_is_served_from_the_cache() {
    let env = Env::new();
    let token = env.good("alice");
    let (code, lines, _) = verify(&env.toml_config, &[&token, &token]);
    assert_eq!(code, 0);
    assert_eq!(lines[0]["cached"], false);
    assert_eq!(lines[1]["cached"], true);
    assert_eq!(lines[0]["verified_at_ms"], lines[1]["verified_at_ms"]);
}

#[test]
fn fresh_skips_the_cache() {
    let env = Env::new();
    let token = env.good("alice");
    cargo_bin_cmd!("jwtwarden")
        .args(["verify", "--fresh", "--config"])
        .arg(&env.json_config)
        .args([&token, &token])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"cached\":true").not());
}

#[test]
fn each_failure_kind_is_reported_with_code_and_category() {
    let env = Env::new();
    let kid = env.issuer.first_kid();
    let good = env.good("alice");
    let other = env.good("bob");
    let bad_signature = format!(
        "{}.{}",
        good.rsplit_once('.').unwrap().0,
        other.rsplit_once('.').unwrap().1
    );
    let unknown_kid = env.issuer.mint_with_header(
        &kid,
        &json!({"alg": "RS256", "typ": "JWT", "kid": "no-such-kid"}),
        &env.issuer.default_claims("alice", now()),
    );
    let expired = env.with_claims(
        |c| {
            c["exp"] = json!(now() - 3600);
            c["iat"] = json!(now() - 7200);
            c["nbf"] = json!(now() - 7200);
        },
        "alice",
    );
    let wrong_audience = env.with_claims(|c| c["aud"] = json!("someone-else"), "alice");
    let unknown_issuer = env.with_claims(|c| c["iss"] = json!("https://other.example.com"), "alice");

    let bad_base64 = format!(
        "{}.%%%.{}",
        good.split('.').next().unwrap(),
        good.rsplit('.').next().unwrap()
    );
    let cases: [(&str, ErrorKind); 7] = [
        ("not-a-jwt", ErrorKind::MalformedToken),
        (&bad_base64, ErrorKind::InvalidBase64),
        (&bad_signature, ErrorKind::InvalidSignature),
        (&unknown_kid, ErrorKind::UnknownKid),
        (&expired, ErrorKind::Expired),
        (&wrong_audience, ErrorKind::InvalidAudience),
        (&unknown_issuer, ErrorKind::UnknownIssuer),
    ];
    for (token, kind) in cases {
        let (code, lines, _) = verify(&env.json_config, &[token]);
        assert_eq!(code, 1, "{kind}: exit status for a rejected token");
        assert_rejected(&lines[0], kind);
    }
    // What the token claims is shown (unverified) to help find the cause.
    let (_, lines, _) = verify(&env.json_config, &[&unknown_kid]);
    assert_eq!(lines[0]["claimed_kid"], "no-such-kid");
    assert_eq!(lines[0]["claimed_issuer"], env.issuer.url());
}

#[test]
fn one_rejected_token_among_good_ones_fails_the_run() {
    let env = Env::new();
    let (code, lines, _) = verify(&env.json_config, &[&env.good("a"), "garbage", &env.good("b")]);
    assert_eq!(code, 1);
    let oks: Vec<_> = lines.iter().map(|l| l["ok"].as_bool().unwrap()).collect();
    assert_eq!(oks, [true, false, true]);
}

#[test]
fn tokens_are_read_from_stdin_one_per_line() {
    let env = Env::new();
    let input = format!("{}\n\n  Bearer {}  \n{}\n", env.good("a"), env.good("b"), "x.y.z");
    let out = cargo_bin_cmd!("jwtwarden")
        .arg("verify")
        .arg("--config")
        .arg(&env.toml_config)
        .write_stdin(input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 3, "blank lines are skipped");
    assert_eq!(lines[0]["sub"], "a");
    assert_eq!(lines[1]["sub"], "b", "a Bearer prefix is ignored");
    assert_eq!(lines[2]["ok"], false);
}

#[test]
fn a_config_without_extension_is_read_as_json_or_toml() {
    let env = Env::new();
    for src in [&env.json_config, &env.toml_config] {
        let plain = env.dir.path().join("config");
        std::fs::copy(src, &plain).unwrap();
        cargo_bin_cmd!("jwtwarden")
            .arg("verify")
            .arg("--config")
            .arg(&plain)
            .arg(env.good("a"))
            .assert()
            .success();
    }
}

#[test]
fn the_issuer_can_be_pinned() {
    let env = Env::new();
    cargo_bin_cmd!("jwtwarden")
        .args(["verify", "--issuer", "https://not-configured.example", "--config"])
        .arg(&env.json_config)
        .arg(env.good("a"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not in the configuration"));
    cargo_bin_cmd!("jwtwarden")
        .args(["verify", "--issuer", &env.issuer.url(), "--config"])
        .arg(&env.json_config)
        .arg(env.good("a"))
        .assert()
        .success();
}

#[test]
fn configuration_errors_exit_2_and_name_the_field() {
    let env = Env::new();
    let bad = env.dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[issuers]]\nissuer = \"https://idp\"\njwks_uri = \"https://idp/j\"\naudiences = [\"api\"]\nleeway_secs = \"soon\"\n",
    )
    .unwrap();
    cargo_bin_cmd!("jwtwarden")
        .args(["verify", "--config"])
        .arg(&bad)
        .arg(env.good("a"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("issuers[0].leeway_secs"));

    let broken = env.dir.path().join("broken.json");
    std::fs::write(&broken, "{ not json").unwrap();
    cargo_bin_cmd!("jwtwarden")
        .args(["verify", "--config"])
        .arg(&broken)
        .arg(env.good("a"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid JSON"));

    cargo_bin_cmd!("jwtwarden")
        .args(["verify", "--config", "/nonexistent/jwtwarden.json", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read config"));

    // No token at all.
    cargo_bin_cmd!("jwtwarden")
        .args(["verify", "--config"])
        .arg(&env.json_config)
        .write_stdin("\n")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no token"));

    // Missing --config is a clap usage error: also 2.
    cargo_bin_cmd!("jwtwarden").args(["verify", "x"]).assert().code(2);
}

#[test]
fn tokens_never_appear_in_logs() {
    let env = Env::new();
    let bad = env.with_claims(|c| c["aud"] = json!("nope"), "alice");
    let out = cargo_bin_cmd!("jwtwarden")
        .args(["-vv", "verify", "--config"])
        .arg(&env.json_config)
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rejected"), "debug log expected: {stderr}");
    let signature = bad.rsplit('.').next().unwrap();
    assert!(!stderr.contains(signature), "token leaked into logs: {stderr}");
    assert!(!stderr.contains(&bad[..40]), "token leaked into logs: {stderr}");
}

#[test]
fn help_has_examples() {
    for cmd in ["verify", "inspect", "jwks", "demo"] {
        cargo_bin_cmd!("jwtwarden")
            .args([cmd, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Examples:"))
            .stdout(predicate::str::contains("Exit status"));
    }
    cargo_bin_cmd!("jwtwarden")
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("jwtwarden demo"));
}

/// An outage is not a bad token: when the issuer's keys are unavailable the
/// command exits 3 ("could not decide"), which wins over a rejection (1).
#[test]
fn keys_unavailable_exits_3_not_1() {
    let env = Env::new();
    let token = env.good("alice");
    let forged = {
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[2] = "AAAA";
        parts.join(".")
    };
    env.issuer.set_fault(jwtwarden_testissuer::Fault::Status(503));
    let (code, lines, _) = verify(&env.json_config, &[&token]);
    assert_eq!(code, 3, "{lines:?}");
    assert_rejected(&lines[0], ErrorKind::KeysUnavailable);
    // A malformed token next to an undecided one: still 3.
    let (code, lines, _) = verify(&env.json_config, &[&forged, &token]);
    assert_eq!(code, 3, "{lines:?}");
    assert_eq!(lines[0]["ok"], false);
}

/// `jwtwarden verify ... | head -1`: the reader goes away after one line;
/// the command ends quietly (SIGPIPE), never with a panic and exit 101.
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};

    let env = Env::new();
    let token = env.good("alice");
    let tokens: Vec<&str> = std::iter::repeat_n(token.as_str(), 20_000).collect();
    let stdin_file = env.dir.path().join("tokens.txt");
    std::fs::write(&stdin_file, tokens.join("\n")).unwrap();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin!("jwtwarden"))
        .args(["verify", "--config"])
        .arg(&env.json_config)
        .stdin(std::fs::File::open(&stdin_file).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("\"ok\":true"), "{first}");
    // The reader is dropped here: the pipe is closed.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.status.signal() == Some(libc_sigpipe()) || out.status.code() == Some(0),
        "{:?}: {stderr}",
        out.status
    );
}

fn libc_sigpipe() -> i32 {
    13 // SIGPIPE on every Unix jwtwarden supports
}

/// Issuers are matched exactly, but a configured issuer that differs by a
/// trailing slash is named in the error, so the slip is found at once.
#[test]
fn an_issuer_differing_by_a_trailing_slash_is_named_in_the_error() {
    let env = Env::new();
    let url = env.issuer.url();
    let token = env.with_claims(|c| c["iss"] = json!(format!("{url}/")), "alice");
    let (code, lines, _) = verify(&env.json_config, &[&token]);
    assert_eq!(code, 1);
    assert_rejected(&lines[0], ErrorKind::UnknownIssuer);
    let message = lines[0]["message"].as_str().unwrap();
    assert!(
        message.contains("did you mean the configured issuer") && message.contains("trailing slash"),
        "{message}"
    );
}
