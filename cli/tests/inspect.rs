//! `jwtwarden inspect`: decoding without verification, including tokens the
//! verifier would reject.

mod common;

use assert_cmd::cargo::cargo_bin_cmd;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{now, Env};
use predicates::prelude::*;
use serde_json::{json, Value};

fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[test]
fn an_expired_token_is_shown_with_human_times_and_marked_unverified() {
    let env = Env::new();
    let token = env.with_claims(
        |c| {
            c["exp"] = json!(now() - 180);
            c["iat"] = json!(now() - 7200);
            c["nbf"] = json!(now() - 7200);
        },
        "alice",
    );
    cargo_bin_cmd!("jwtwarden")
        .args(["inspect", &token])
        .assert()
        .success()
        .stdout(predicate::str::contains("UNVERIFIED"))
        .stdout(predicate::str::contains("\"sub\": \"alice\""))
        .stdout(predicate::str::contains(env.issuer.first_kid()))
        .stdout(predicate::str::is_match(r"exp\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+expired 3 min ago").unwrap())
        .stdout(predicate::str::contains("issued 2 h ago"));
}

#[test]
fn json_output_keeps_the_unverified_marker() {
    let env = Env::new();
    let token = env.good("bob");
    let out = cargo_bin_cmd!("jwtwarden")
        .args(["inspect", "--json", &token])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verified"], false);
    assert!(v["warning"].as_str().unwrap().contains("UNVERIFIED"));
    assert_eq!(v["header"]["alg"], "RS256");
    assert_eq!(v["claims"]["sub"], "bob");
    assert!(
        v["times"]["exp"]["relative"]
            .as_str()
            .unwrap()
            .starts_with("expires in "),
        "{v}"
    );
    assert!(v["times"]["exp"]["utc"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["signature_bytes"], 256);
}

#[test]
fn tokens_the_verifier_rejects_are_still_decoded() {
    // alg none, a key pointer in the header, no aud: all rejected by verify.
    let none = unsigned(
        &json!({"alg": "none", "jku": "https://evil.example/jwks"}),
        // Half a minute past two hours: a slow start of the command (a
        // loaded CI machine) still reads "2 h", never "1 h 59 min".
        &json!({"sub": "mallory", "exp": now() + 7200 + 30}),
    );
    cargo_bin_cmd!("jwtwarden")
        .args(["inspect", &none])
        .assert()
        .success()
        .stdout(predicate::str::contains("mallory"))
        .stdout(predicate::str::contains("alg is \"none\""))
        .stdout(predicate::str::contains("\"jku\": never used"))
        .stdout(predicate::str::contains("expires in 2 h"));

    // Two segments, a payload that is not JSON: decoded as far as possible.
    let odd = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode("hello")
    );
    cargo_bin_cmd!("jwtwarden")
        .args(["inspect", &odd])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("\"hello\""))
        .stdout(predicate::str::contains("2 segment(s)"));
}

#[test]
fn garbage_is_reported_not_decoded() {
    cargo_bin_cmd!("jwtwarden")
        .args(["inspect", "%%%.%%%.%%%"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("not base64url"));
}

#[test]
fn the_token_can_come_from_stdin() {
    let env = Env::new();
    cargo_bin_cmd!("jwtwarden")
        .arg("inspect")
        .write_stdin(format!("{}\n", env.good("carol")))
        .assert()
        .success()
        .stdout(predicate::str::contains("carol"));
    cargo_bin_cmd!("jwtwarden")
        .arg("inspect")
        .write_stdin("\n")
        .assert()
        .code(2);
}
