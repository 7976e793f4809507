//! Logs go through the `log` facade and never contain a whole token.

mod common;

use common::{setup, with_header, Fault, LogCapture};
use serde_json::json;

static CAPTURE: LogCapture = LogCapture::new(false);

#[test]
fn no_log_line_contains_a_token_or_its_signature() {
    CAPTURE.install();

    let s = setup();
    let kid = s.issuer.first_kid();
    let good = s.token(&kid);
    let bad_sig = format!("{}AAAA", &good[..good.len() - 4]);
    let unknown = with_header(&good, &json!({"alg": "RS256", "kid": "nope"}));
    let expired = s.token_with(&kid, json!({"exp": 1}));
    let tokens = [good.clone(), bad_sig, unknown, expired, "a.b.c".to_string()];
    for t in &tokens {
        let _ = s.verifier.verify(t);
    }
    s.issuer.set_fault(Fault::Status(500));
    s.clock.advance_secs(400);
    s.verifier.run_due_refreshes();

    let lines = CAPTURE.take();
    assert!(
        lines.iter().any(|l| l.contains("rejected token")),
        "rejections are logged: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("WARN") && l.contains("fetch failed")),
        "{lines:#?}"
    );
    for t in &tokens {
        let signature = t.rsplit('.').next().unwrap();
        for line in &lines {
            assert!(!line.contains(t.as_str()) || t.len() < 8, "token logged whole: {line}");
            assert!(
                signature.len() < 8 || !line.contains(signature),
                "signature logged: {line}"
            );
        }
    }
    // The fingerprint is what identifies a token in logs.
    let fp = jwtwarden::fingerprint(tokens[1].as_bytes());
    assert!(lines.iter().any(|l| l.contains(&fp)), "fingerprint {fp} in {lines:#?}");
}
