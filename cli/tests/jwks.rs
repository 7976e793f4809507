//! `jwtwarden jwks` against an in-process test issuer.

mod common;

use assert_cmd::cargo::cargo_bin_cmd;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::Env;
use jwtwarden_testissuer::{Alg, Fault, IssuerOptions, TestIssuer};
use predicates::prelude::*;
use serde_json::{json, Value};

fn three_key_issuer() -> TestIssuer {
    TestIssuer::start_with(&IssuerOptions {
        algs: vec![Alg::RS256, Alg::ES256, Alg::EdDSA],
        ..IssuerOptions::default()
    })
    .unwrap()
}

fn jwks_json(args: &[&str]) -> (i32, Value) {
    let out = cargo_bin_cmd!("jwtwarden")
        .arg("jwks")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let code = out.status.code().unwrap();
    let v =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (code, v)
}

#[test]
fn lists_usable_keys_with_thumbprints_and_the_ttl() {
    let issuer = three_key_issuer();
    issuer.set_cache_control(Some("public, max-age=120"));
    let (code, v) = jwks_json(&["--allow-http", &issuer.jwks_uri()]);
    assert_eq!(code, 0, "{v}");
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    let kids: Vec<_> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, issuer.published_kids());
    let rows: Vec<_> = keys
        .iter()
        .map(|k| {
            (
                k["kty"].as_str().unwrap(),
                k["alg"].as_str().unwrap(),
                k["size"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("RSA", "RS256", "2048 bits"),
            ("EC", "ES256", "P-256"),
            ("OKP", "EdDSA", "Ed25519")
        ]
    );
    for k in keys {
        assert_eq!(k["thumbprint"].as_str().unwrap().len(), 43, "SHA-256 in base64url: {k}");
    }
    assert_eq!(v["cache"]["cache_control"], "public, max-age=120");
    assert_eq!(v["cache"]["max_age_secs"], 120);
    assert_eq!(v["cache"]["ttl_secs"], 120);
    assert_eq!(v["skipped"], json!([]));
}

#[test]
fn skipped_keys_are_listed_with_the_reason() {
    let issuer = TestIssuer::start();
    let good = issuer.public_jwk(&issuer.first_kid());
    let small_n = URL_SAFE_NO_PAD.encode([0xffu8; 128]);
    issuer.set_jwks_override(Some(
        json!({"keys": [
            good,
            {"kty": "oct", "kid": "shared-secret", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "too-small", "n": small_n, "e": "AQAB"},
            {"kty": "RSA", "kid": "for-encryption", "use": "enc", "n": small_n, "e": "AQAB"},
        ]})
        .to_string(),
    ));
    issuer.set_cache_control(Some("max-age=5"));
    let (code, v) = jwks_json(&["--allow-http", &issuer.jwks_uri()]);
    assert_eq!(code, 0);
    assert_eq!(v["keys"].as_array().unwrap().len(), 1);
    let skipped: Vec<(String, String)> = v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["kid"].as_str().unwrap().into(), s["reason"].as_str().unwrap().into()))
        .collect();
    assert_eq!(skipped[0].0, "shared-secret");
    assert!(skipped[0].1.contains("symmetric"), "{skipped:?}");
    assert_eq!(skipped[1].0, "too-small");
    assert!(skipped[1].1.contains("1024 bits"), "{skipped:?}");
    assert!(skipped[2].1.contains("sig"), "{skipped:?}");
    // max-age 5 is below the default min_ttl_secs (60): clamped.
    assert_eq!(v["cache"]["max_age_secs"], 5);
    assert_eq!(v["cache"]["ttl_secs"], 60);

    // The human table says the same.
    cargo_bin_cmd!("jwtwarden")
        .args(["jwks", "--allow-http", &issuer.jwks_uri()])
        .assert()
        .success()
        .stdout(predicate::str::contains("usable keys (1)"))
        .stdout(predicate::str::contains("skipped keys (3)"))
        .stdout(predicate::str::contains("too-small"))
        .stdout(predicate::str::contains("clamped"));
}

#[test]
fn uses_the_issuer_settings_from_a_config() {
    let env = Env::with_issuer(three_key_issuer());
    // The configured algorithms decide which keys are usable.
    let config = env.dir.path().join("rs-only.toml");
    std::fs::write(
        &config,
        format!(
            "[[issuers]]\nissuer = \"{}\"\njwks_uri = \"{}\"\naudiences = [\"api\"]\nalgorithms = [\"RS256\"]\n\
             [issuers.refresh]\nmin_ttl_secs = 1\n\n[http]\nallow_http = true\n",
            env.issuer.url(),
            env.issuer.jwks_uri()
        ),
    )
    .unwrap();
    env.issuer.set_cache_control(Some("max-age=7"));
    let (code, v) = jwks_json(&["--config", config.to_str().unwrap(), &env.issuer.url()]);
    assert_eq!(code, 0);
    assert_eq!(v["issuer"], env.issuer.url());
    assert_eq!(v["keys"].as_array().unwrap().len(), 1);
    assert_eq!(v["skipped"].as_array().unwrap().len(), 2);
    assert_eq!(v["cache"]["ttl_secs"], 7);

    // All configured issuers, human output.
    cargo_bin_cmd!("jwtwarden")
        .args(["jwks", "--config"])
        .arg(&env.toml_config)
        .assert()
        .success()
        .stdout(predicate::str::contains(env.issuer.url()))
        .stdout(predicate::str::contains(env.issuer.first_kid()));

    cargo_bin_cmd!("jwtwarden")
        .args(["jwks", "--config"])
        .arg(&env.json_config)
        .arg("https://not-configured.example")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not in"));
}

#[test]
fn plain_http_needs_allow_http() {
    let issuer = TestIssuer::start();
    cargo_bin_cmd!("jwtwarden")
        .args(["jwks", &issuer.jwks_uri()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--allow-http"));
    assert_eq!(issuer.total_requests(), 0, "refused before any request");
}

#[test]
fn a_failing_endpoint_exits_3() {
    let issuer = TestIssuer::start();
    issuer.set_fault(Fault::Status(500));
    cargo_bin_cmd!("jwtwarden")
        .args(["jwks", "--allow-http", &issuer.jwks_uri()])
        .assert()
        .code(3)
        .stdout(predicate::str::contains("HTTP 500"))
        // A failed fetch lists no keys: "usable keys (0)" would read as an empty JWKS.
        .stdout(predicate::str::contains("usable keys").not());
}
