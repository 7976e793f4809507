//! `jwtwarden status-list` and the status reference in `inspect`, against
//! an in-process test issuer.

use assert_cmd::cargo::cargo_bin_cmd;
use jwtwarden_testissuer::{Fault, TestIssuer};
use predicates::prelude::*;
use serde_json::{json, Value};

#[test]
fn a_list_is_shown_with_its_header_size_and_counts() {
    let issuer = TestIssuer::start();
    let uri = issuer.publish_status_list("/status/1", 2, 1000);
    issuer.configure_status_list("/status/1", |o| o.ttl = Some(600));
    issuer.set_status("/status/1", 3, 1);
    issuer.set_status("/status/1", 4, 2);
    issuer.set_status("/status/1", 5, 2);
    issuer.set_status("/status/1", 6, 3);
    let out = cargo_bin_cmd!("jwtwarden")
        .args(["status-list", "--json", "--allow-http", &uri])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verified"], false);
    assert_eq!(v["bits"], 2);
    assert_eq!(v["entries"], 1000);
    assert_eq!(v["inflated_bytes"], 250);
    assert_eq!(v["header"]["typ"], "statuslist+jwt");
    assert_eq!(v["claims"]["sub"], uri.as_str());
    assert_eq!(v["claims"]["ttl"], 600);
    assert!(v["claims"]["status_list"].get("lst").is_none());
    assert_eq!(
        v["counts"],
        json!([
            {"status": 0, "name": "VALID", "count": 996},
            {"status": 1, "name": "INVALID", "count": 1},
            {"status": 2, "name": "SUSPENDED", "count": 2},
            {"status": 3, "name": "application-specific", "count": 1},
        ])
    );
    cargo_bin_cmd!("jwtwarden")
        .args(["status-list", "--allow-http", &uri])
        .assert()
        .success()
        .stdout(predicate::str::contains("1000 entries of 2 bit(s)"))
        .stdout(predicate::str::contains("SUSPENDED"))
        .stdout(predicate::str::contains("NOT checked"));
}

#[test]
fn an_unreachable_list_exits_3_and_http_needs_allow_http() {
    let issuer = TestIssuer::start();
    let uri = issuer.publish_status_list("/status/1", 1, 8);
    cargo_bin_cmd!("jwtwarden")
        .args(["status-list", &uri])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--allow-http"));
    issuer.configure_status_list("/status/1", |o| o.fault = Fault::Status(503));
    cargo_bin_cmd!("jwtwarden")
        .args(["status-list", "--allow-http", &uri])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("503"));
}

#[test]
fn inspect_shows_the_status_reference() {
    let issuer = TestIssuer::start();
    let kid = issuer.first_kid();
    let mut claims = issuer.default_claims("alice", 1_700_000_000);
    claims["status"] = json!({"status_list": {"idx": 42, "uri": "https://idp.example.com/sl/7"}});
    let token = issuer.mint(&kid, &claims);
    let out = cargo_bin_cmd!("jwtwarden")
        .args(["inspect", "--json", &token])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], json!({"uri": "https://idp.example.com/sl/7", "idx": 42}));
    cargo_bin_cmd!("jwtwarden")
        .args(["inspect", &token])
        .assert()
        .stdout(predicate::str::contains(
            "Token Status List https://idp.example.com/sl/7 entry 42",
        ))
        .stdout(predicate::str::contains("allowed_uris"));
}

/// No terminal control reaches the output: C0 (ESC, BEL, CR), DEL, C1
/// (CSI U+009B, OSC U+009D) and bidi overrides / isolates.
fn assert_terminal_safe(what: &str, out: &[u8]) {
    let text = String::from_utf8_lossy(out);
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| (c.is_control() && c != '\n') || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
        .collect();
    assert!(bad.is_empty(), "{what}: printed raw {bad:?}:\n{text}");
}

/// Issue 23, item 9e: a hostile status list (and a hostile token shown by
/// `inspect`) carries terminal escape sequences in the text the CLI prints.
#[test]
fn escape_sequences_from_a_hostile_list_or_token_are_printed_escaped() {
    let issuer = TestIssuer::start();
    let uri = issuer.publish_status_list("/status/1", 1, 8);
    let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[2J\r\u{9b}31m\u{7f}\u{202e}gnp.exe\u{2066}";
    issuer.configure_status_list("/status/1", |o| {
        o.sub = Some(format!("{uri}{hostile}"));
        o.iss = Some(hostile.to_string());
        o.typ = format!("statuslist+jwt{hostile}");
    });
    let out = cargo_bin_cmd!("jwtwarden")
        .args(["status-list", "--allow-http", &uri])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_terminal_safe("status-list", &out.stdout);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("u{1b}]0;pwned"),
        "shown, escaped"
    );
    let out = cargo_bin_cmd!("jwtwarden")
        .args(["status-list", "--json", "--allow-http", &uri])
        .output()
        .unwrap();
    assert_terminal_safe("status-list --json", &out.stdout);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["claims"]["iss"], hostile, "the JSON still holds the exact value");

    // The same text in a token shown by `inspect`.
    let mut claims = issuer.default_claims(hostile, 1_700_000_000);
    claims["status"] = json!({"status_list": {"idx": 0, "uri": format!("{uri}{hostile}")}});
    claims["exp"] = json!(hostile);
    let token = issuer.mint(&issuer.first_kid(), &claims);
    for args in [
        vec!["inspect", token.as_str()],
        vec!["inspect", "--json", token.as_str()],
    ] {
        let out = cargo_bin_cmd!("jwtwarden").args(&args).output().unwrap();
        assert_terminal_safe(&args.join(" ")[..12], &out.stdout);
        assert_terminal_safe("inspect stderr", &out.stderr);
    }
}
