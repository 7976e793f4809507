//! Skipped JWKS keys are summarized in one log line per fetch, however many
//! there are.

mod common;

use common::{setup_for, LogCapture};
use jwtwarden::{describe_issuer_keys, HttpConfig, IssuerConfig, Problem, MAX_SKIPPED_LISTED};
use jwtwarden_testissuer::TestIssuer;
use serde_json::{json, Value};

static CAPTURE: LogCapture = LogCapture::new(true);

/// `n` keys of an unsupported kty, small enough that 10,000 of them fit
/// the default 256 KiB JWKS size limit.
fn junk(n: usize) -> Vec<Value> {
    (0..n).map(|i| json!({"kid": i.to_string(), "kty": "x"})).collect()
}

// One test function: the logger is global to this test binary.
#[test]
fn ten_thousand_junk_keys_log_one_line() {
    CAPTURE.install();

    // A static JWKS, described as a verifier would take it.
    let mut issuer = IssuerConfig::new("https://idp.example", "https://unused.example");
    issuer.jwks_uri = None;
    issuer.jwks = Some(json!({ "keys": junk(10_000) }));
    let report = describe_issuer_keys(&HttpConfig::default(), &issuer).unwrap();
    assert!(report.keys.is_empty());
    assert_eq!(report.problem, Some(Problem::NoUsableKey));
    assert_eq!(
        report.skipped.len(),
        MAX_SKIPPED_LISTED + 1,
        "bounded list plus a count"
    );
    let lines = CAPTURE.take();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    assert!(line.starts_with("WARN"), "{line}");
    assert!(line.contains("skipped 10000 of 10000 keys"), "{line}");
    assert!(line.contains("unsupported: 10000"), "{line}");
    assert!(
        line.contains("kids \"0\", \"1\", \"2\", \"3\", \"4\", ..."),
        "at most 5 kids: {line}"
    );

    // End to end: a fetch of a JWKS with one good key among 10,000 junk ones.
    let issuer = TestIssuer::start();
    let kid = issuer.first_kid();
    let mut keys = junk(10_000);
    keys.push(issuer.public_jwk(&kid));
    issuer.set_jwks_override(Some(json!({ "keys": keys }).to_string()));
    let s = setup_for(issuer);
    let verified = s.verifier.verify(s.token(&kid));
    let lines = CAPTURE.take();
    assert!(verified.is_ok(), "{verified:?} {lines:#?}");
    let skip_lines: Vec<_> = lines.iter().filter(|l| l.contains("skipped")).collect();
    assert_eq!(skip_lines.len(), 1, "{lines:#?}");
    assert!(
        skip_lines[0].contains("skipped 10000 of 10001 keys"),
        "{}",
        skip_lines[0]
    );
    assert!(lines.len() <= 2, "the summary and the fetch's own line: {lines:#?}");
}
