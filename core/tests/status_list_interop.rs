//! Interoperability: Token Status Lists and referenced tokens minted by an
//! independent implementation (the `token-status-list` package from PyPI,
//! signed with Ed25519 by `cryptography`; see
//! `fixtures/status_list/generate.py`) are read as that implementation
//! wrote them, end to end through a verifier.

use std::sync::Arc;

use jwtwarden::status::{describe_list_token, StatusList};
use jwtwarden::{Config, ErrorKind, ManualClock, Verifier};
use jwtwarden_testissuer::{IssuerOptions, TestIssuer};
use serde_json::{json, Value};

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/status_list/interop.json")).expect("fixture is JSON")
}

fn expected_kind(status: u64) -> Option<ErrorKind> {
    match status {
        0 | 9 => None,
        1 => Some(ErrorKind::Revoked),
        2 => Some(ErrorKind::Suspended),
        _ => Some(ErrorKind::StatusNotValid),
    }
}

#[test]
fn lists_written_by_another_implementation_decode_to_its_statuses() {
    let f = fixture();
    for list in f["lists"].as_array().unwrap() {
        let bits = list["bits"].as_u64().unwrap() as u8;
        let decoded = StatusList::decode(bits, list["lst"].as_str().unwrap(), 1 << 20).unwrap();
        assert_eq!(decoded.len(), list["size"].as_u64().unwrap(), "bits {bits}");
        let report = describe_list_token(list["token"].as_str().unwrap().as_bytes(), 1 << 20).unwrap();
        assert_eq!(report.entries, decoded.len());
        assert_eq!(report.header["typ"], "statuslist+jwt");
        let mut nonzero = 0;
        for t in f["tokens"].as_array().unwrap().iter().filter(|t| t["bits"] == bits) {
            let idx = t["idx"].as_u64().unwrap();
            assert_eq!(
                u64::from(decoded.get(idx).unwrap()),
                t["status"].as_u64().unwrap(),
                "bits {bits} idx {idx}"
            );
            nonzero += u64::from(t["status"] != 0);
        }
        let valid = report.counts.iter().find(|(v, _)| *v == 0).map_or(0, |(_, n)| *n);
        assert_eq!(
            valid,
            decoded.len() - nonzero,
            "bits {bits}: every other entry is VALID"
        );
    }
}

#[test]
fn tokens_and_lists_minted_by_another_implementation_verify_end_to_end() {
    let f = fixture();
    let port = f["port"].as_u64().unwrap() as u16;
    let issuer = TestIssuer::start_with(&IssuerOptions {
        port,
        ..IssuerOptions::default()
    })
    .unwrap_or_else(|e| panic!("the fixture's lists are signed for port {port}, which must be free: {e}"));
    for list in f["lists"].as_array().unwrap() {
        let path = list["path"].as_str().unwrap();
        issuer.publish_status_list(path, 1, 8);
        let token = list["token"].as_str().unwrap().to_string();
        issuer.configure_status_list(path, |o| o.body_override = Some(token));
    }
    let config = Config::from_value(json!({
        "issuers": [{
            "issuer": f["issuer"], "jwks": f["jwks"], "audiences": ["api"],
            "algorithms": ["EdDSA"],
            "status_list": {"allowed_uris": [format!("{}/statuslists/", f["issuer"].as_str().unwrap())],
                            "valid_statuses": [9]},
        }],
        "http": {"allow_http": true, "timeout_ms": 2000},
        "background_refresh": false,
    }))
    .unwrap();
    let verifier = Verifier::with_clock(config, Arc::new(ManualClock::starting_now())).unwrap();
    let tokens = f["tokens"].as_array().unwrap();
    assert!(tokens.len() >= 30);
    for t in tokens {
        let token = t["token"].as_str().unwrap();
        let got = verifier.verify(token).err().map(|e| e.kind());
        assert_eq!(got, expected_kind(t["status"].as_u64().unwrap()), "{t}");
    }
    for list in f["lists"].as_array().unwrap() {
        assert_eq!(issuer.requests_to(list["path"].as_str().unwrap()), 1);
    }
}
