//! `jwtwarden demo` end to end: a short run, guarantees read from its JSON.

use assert_cmd::cargo::cargo_bin_cmd;
use serde_json::Value;

#[test]
fn a_short_demo_run_keeps_every_guarantee() {
    let out = cargo_bin_cmd!("jwtwarden")
        .args(["demo", "--duration", "3", "--threads", "2", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}; stderr: {stderr}"));
    let g = &v["guarantees"];
    for (name, check) in g.as_object().unwrap() {
        assert_eq!(check["held"], true, "{name}: {check}\nstderr: {stderr}");
    }
    assert_eq!(v["ok"], true);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");

    // The numbers behind the guarantees are there and consistent.
    assert_eq!(g["storm_fetches_bounded"]["storm_tokens"], 10_000);
    assert_eq!(g["storm_fetches_bounded"]["accepted"], 0);
    assert!(
        g["storm_fetches_bounded"]["fetches"].as_u64().unwrap()
            <= g["storm_fetches_bounded"]["allowed_fetches"].as_u64().unwrap()
    );
    assert_eq!(g["revoked_token_rejected"]["first_check"], "revoked");
    assert_eq!(g["revoked_token_rejected"]["accepted_after_revocation"], 0);
    assert_eq!(g["retired_key_rejected"]["old_token_after_retirement"], "unknown_kid");
    assert_eq!(g["rotation_no_legit_failures"]["failed"], 0);
    assert!(g["rotation_no_legit_failures"]["legit_requests"].as_u64().unwrap() > 0);
    assert_eq!(g["outage_no_legit_failures"]["failed"], 0);
    assert!(g["outage_no_legit_failures"]["legit_requests"].as_u64().unwrap() > 0);
    assert!(v["throughput"]["verifications"].as_u64().unwrap() > 0);
    assert!((0.0..=1.0).contains(&v["cache"]["hit_rate"].as_f64().unwrap()));
    assert!(v["rejections"]["unknown_kid"].as_u64().unwrap() >= 10_000);
    let phases: Vec<_> = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "warmup",
            "rotation",
            "revocation",
            "storm",
            "retirement",
            "outage",
            "recovery"
        ]
    );
}

#[test]
fn bad_demo_flags_are_usage_errors() {
    cargo_bin_cmd!("jwtwarden")
        .args(["demo", "--duration", "0.5"])
        .assert()
        .code(2);
    cargo_bin_cmd!("jwtwarden")
        .args(["demo", "--threads", "0"])
        .assert()
        .code(2);
}
