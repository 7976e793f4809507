//! SPIFFE JWT-SVIDs (issue 27): trust domains as a key source, chosen by the
//! token's `sub` SPIFFE ID, against a real SPIFFE bundle endpoint on
//! 127.0.0.1 (`jwtwarden_testissuer::SpiffeBundleServer`), with a manual
//! clock. Each attack counts the requests the endpoint saw.

use std::sync::Arc;

use jwtwarden::{Config, ErrorKind, Health, ManualClock, Verifier, VerifyOptions};
use jwtwarden_testissuer::SpiffeBundleServer;
use serde_json::{json, Value};

const AUD: &str = "spiffe://example.org/api";

fn domain(b: &SpiffeBundleServer, adjust: impl FnOnce(&mut Value)) -> Value {
    let mut d = json!({
        "trust_domain": b.trust_domain(),
        "bundle_endpoint": b.bundle_url(),
        "audiences": [AUD],
        "refresh": { "jitter": 0.0 },
    });
    adjust(&mut d);
    d
}

fn config(domains: Vec<Value>, issuers: Vec<Value>) -> Value {
    json!({
        "issuers": issuers,
        "spiffe": domains,
        "http": { "allow_http": true, "timeout_ms": 3000, "connect_timeout_ms": 500 },
        "background_refresh": false,
    })
}

fn verifier(clock: &ManualClock, cfg: Value) -> Verifier {
    let config = Config::from_value(cfg).expect("valid config");
    Verifier::with_clock(config, Arc::new(clock.clone())).expect("verifier starts")
}

fn setup() -> (SpiffeBundleServer, ManualClock, Verifier) {
    let b = SpiffeBundleServer::start("example.org");
    let clock = ManualClock::starting_now();
    let v = verifier(&clock, config(vec![domain(&b, |_| {})], vec![]));
    (b, clock, v)
}

/// A JWT-SVID of `b` for workload `path`, signed with `kid`, valid an hour.
fn svid(b: &SpiffeBundleServer, kid: &str, path: &str, clock: &ManualClock) -> String {
    let mut c = b.claims(path, AUD, clock.now_secs());
    c["exp"] = json!(clock.now_secs() + 3600);
    b.mint(kid, &c)
}

fn kind(v: &Verifier, token: &str) -> ErrorKind {
    v.verify(token).expect_err("must be refused").kind()
}

#[test]
fn a_jwt_svid_verifies_then_is_served_from_the_cache() {
    let (b, clock, v) = setup();
    let kid = b.published_kids()[0].clone();
    let token = svid(&b, &kid, "ns/prod/sa/web", &clock);
    let first = v.verify(&token).expect("accepted");
    assert!(!first.cached());
    assert_eq!(first.claims()["sub"], "spiffe://example.org/ns/prod/sa/web");
    assert!(v.verify(&token).expect("accepted").cached());
    assert_eq!(b.requests(), 1, "fetched once, at start");
    assert_eq!(v.issuer_health("spiffe://example.org").unwrap(), Health::Fresh);
    assert!(v.issuers().contains(&"spiffe://example.org".to_string()));
}

#[test]
fn a_token_of_another_trust_domain_is_refused_without_a_fetch() {
    let (b, clock, v) = setup();
    let other = SpiffeBundleServer::start("other.org");
    let okid = other.published_kids()[0].clone();
    let foreign = svid(&other, &okid, "web", &clock);
    assert_eq!(kind(&v, &foreign), ErrorKind::UnknownIssuer);
    // Signed with a configured domain's key, naming the other domain in sub.
    let kid = b.published_kids()[0].clone();
    let mut c = b.claims("web", AUD, clock.now_secs());
    c["sub"] = json!("spiffe://other.org/web");
    assert_eq!(kind(&v, &b.mint(&kid, &c)), ErrorKind::UnknownIssuer);
    // `iss` naming the trust domain's key holder does not choose it.
    let mut c = b.claims("web", AUD, clock.now_secs());
    c["iss"] = json!("spiffe://example.org");
    c["sub"] = json!("alice");
    assert_eq!(kind(&v, &b.mint(&kid, &c)), ErrorKind::UnknownIssuer);
    // Pinned to the trust domain, a token of another one is refused.
    let pinned = VerifyOptions {
        issuer: Some("spiffe://example.org"),
        ..Default::default()
    };
    let e = v.verify_with(&foreign, &pinned).expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::UnknownIssuer);
    assert_eq!((b.requests(), other.requests()), (1, 0), "nothing fetched");
}

#[test]
fn one_domain_keys_never_verify_a_token_naming_another_configured_domain() {
    let a = SpiffeBundleServer::start("a.example");
    let b = SpiffeBundleServer::start("b.example");
    let clock = ManualClock::starting_now();
    let v = verifier(&clock, config(vec![domain(&a, |_| {}), domain(&b, |_| {})], vec![]));
    let akid = a.published_kids()[0].clone();
    let mut c = a.claims("web", AUD, clock.now_secs());
    c["sub"] = json!("spiffe://b.example/web");
    let e = v.verify(a.mint(&akid, &c)).expect_err("refused");
    assert!(
        matches!(e.kind(), ErrorKind::UnknownKid | ErrorKind::InvalidSignature),
        "{e}"
    );
    v.verify(svid(&a, &akid, "web", &clock))
        .expect("its own domain accepts it");
}

#[test]
fn a_bundle_rollback_is_refused_and_the_rolled_back_key_never_accepted() {
    let b = SpiffeBundleServer::start("example.org");
    let old = b.published_kids()[0].clone();
    let new = b.rotate(); // sequence 2: old and new
    b.retire(&old); // sequence 3: new only
    let clock = ManualClock::starting_now();
    let v = verifier(&clock, config(vec![domain(&b, |_| {})], vec![]));
    let with_old = svid(&b, &old, "web", &clock);
    let with_new = svid(&b, &new, "web", &clock);
    assert_eq!(kind(&v, &with_old), ErrorKind::UnknownKid);
    v.verify(&with_new).expect("accepted");
    b.rollback_to(2); // the endpoint replays a bundle that still holds `old`
    clock.advance_secs(301);
    v.run_due_refreshes();
    assert!(
        b.requests() >= 2,
        "the scheduled refresh fetched the rolled-back bundle"
    );
    for _ in 0..3 {
        let e = v.verify_with(
            &with_old,
            &VerifyOptions {
                fresh: true,
                ..Default::default()
            },
        );
        assert!(e.is_err(), "a key of a rolled-back bundle is never accepted");
        clock.advance_secs(31); // past the unknown-kid cooldown: fetches the rollback again
    }
    v.verify_with(
        &with_new,
        &VerifyOptions {
            fresh: true,
            ..Default::default()
        },
    )
    .expect("the held keys are kept");
    assert!(v
        .metrics()
        .issuers
        .iter()
        .any(|i| i.issuer == "spiffe://example.org" && i.fetch_failures >= 1));
    // Once the endpoint moves forward again, its bundle is taken.
    let newer = b.rotate();
    clock.advance_secs(31);
    v.verify(svid(&b, &newer, "web", &clock)).expect("sequence 4 accepted");
}

#[test]
fn an_empty_bundle_refuses_every_token_of_the_domain() {
    let (b, clock, v) = setup();
    let kid = b.published_kids()[0].clone();
    let token = svid(&b, &kid, "web", &clock);
    v.verify(&token).expect("accepted");
    assert!(v.verify(&token).unwrap().cached());
    b.publish_empty();
    clock.advance_secs(301);
    v.run_due_refreshes();
    assert_eq!(b.requests(), 2);
    // The cached result goes with the keys.
    assert!(v.verify(&token).is_err(), "cached success refused");
    let again = svid(&b, &kid, "other", &clock);
    assert!(v.verify(&again).is_err());
    assert_eq!(
        v.metrics()
            .issuers
            .iter()
            .find(|i| i.issuer == "spiffe://example.org")
            .unwrap()
            .keys,
        0
    );
}

#[test]
fn a_sub_that_is_not_a_valid_spiffe_id_is_refused_without_a_fetch() {
    let (b, clock, v) = setup();
    let kid = b.published_kids()[0].clone();
    for sub in [
        "spiffe://EXAMPLE.org/web",
        "spiffe://Example.org/web",
        "SPIFFE://example.org/web",
        "spiffe://example.org:443/web",
        "spiffe://user@example.org/web",
        "spiffe://example.org/a/../web",
        "spiffe://example.org/./web",
        "spiffe://example.org/web?admin=1",
        "spiffe://example.org/web#frag",
        "spiffe://example.org/w%65b",
        "spiffe://example.org/web/",
        "spiffe://example.org//web",
        "spiffe://example.org",
        "spiffe:example.org/web",
    ] {
        let mut c = b.claims("web", AUD, clock.now_secs());
        c["sub"] = json!(sub);
        let e = v.verify(b.mint(&kid, &c)).expect_err(sub);
        assert!(
            matches!(e.kind(), ErrorKind::InvalidPayload | ErrorKind::UnknownIssuer),
            "{sub}: {e}"
        );
    }
    let mut c = b.claims("web", AUD, clock.now_secs());
    c["sub"] = json!(format!("spiffe://example.org/{}", "a".repeat(2100)));
    assert!(v.verify(b.mint(&kid, &c)).is_err(), "over 2048 bytes");
    assert_eq!(b.requests(), 1, "no fetch");
}

#[test]
fn aud_missing_or_wrong_is_refused() {
    let (b, clock, v) = setup();
    let kid = b.published_kids()[0].clone();
    let mut c = b.claims("web", AUD, clock.now_secs());
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(kind(&v, &b.mint(&kid, &c)), ErrorKind::MissingRequiredClaim);
    let c = b.claims("web", "spiffe://example.org/other-api", clock.now_secs());
    assert_eq!(kind(&v, &b.mint(&kid, &c)), ErrorKind::InvalidAudience);
    // JWT-SVIDs may omit iss: accepted without one, and with any.
    let mut c = b.claims("web", AUD, clock.now_secs());
    v.verify(b.mint(&kid, &c)).expect("no iss");
    c["iss"] = json!("https://spire.example.org");
    v.verify(b.mint(&kid, &c)).expect("any iss when none is configured");
}

#[test]
fn a_configured_issuer_is_checked() {
    let b = SpiffeBundleServer::start("example.org");
    let clock = ManualClock::starting_now();
    let d = domain(&b, |d| d["issuer"] = json!("https://spire.example.org"));
    let v = verifier(&clock, config(vec![d], vec![]));
    let kid = b.published_kids()[0].clone();
    let mut c = b.claims("web", AUD, clock.now_secs());
    assert_eq!(kind(&v, &b.mint(&kid, &c)), ErrorKind::MissingRequiredClaim);
    c["iss"] = json!("https://evil.example.org");
    assert_eq!(kind(&v, &b.mint(&kid, &c)), ErrorKind::InvalidIssuer);
    c["iss"] = json!("https://spire.example.org");
    v.verify(b.mint(&kid, &c)).expect("accepted");
}

#[test]
fn the_refresh_hint_sets_the_schedule_clamped_like_a_ttl() {
    let b = SpiffeBundleServer::start("example.org");
    b.set_refresh_hint(Some(100));
    let clock = ManualClock::starting_now();
    let v = verifier(&clock, config(vec![domain(&b, |_| {})], vec![]));
    assert_eq!(b.requests(), 1);
    clock.advance_secs(89); // refreshed at 0.9 of the hint (jitter 0)
    v.run_due_refreshes();
    assert_eq!(b.requests(), 1);
    clock.advance_secs(2);
    v.run_due_refreshes();
    assert_eq!(b.requests(), 2);
    // A hint of 5 s is clamped to refresh.min_ttl_secs (60 by default).
    b.set_refresh_hint(Some(5));
    clock.advance_secs(91);
    v.run_due_refreshes();
    assert_eq!(b.requests(), 3);
    clock.advance_secs(50);
    v.run_due_refreshes();
    assert_eq!(b.requests(), 3, "not every 5 s");
    clock.advance_secs(5);
    v.run_due_refreshes();
    assert_eq!(b.requests(), 4);
}

#[test]
fn jwt_svid_keys_are_refused_for_ordinary_issuers() {
    let b = SpiffeBundleServer::start("example.org");
    let clock = ManualClock::starting_now();
    let issuer = json!({
        "issuer": "https://spire.example.org",
        "jwks_uri": b.bundle_url(),
        "audiences": [AUD],
    });
    let v = verifier(&clock, config(vec![], vec![issuer]));
    let kid = b.published_kids()[0].clone();
    let mut c = b.claims("web", AUD, clock.now_secs());
    c["iss"] = json!("https://spire.example.org");
    c["sub"] = json!("alice");
    assert_eq!(kind(&v, &b.mint(&kid, &c)), ErrorKind::KeysUnavailable);
}

#[test]
fn a_bundle_file_is_reloaded_and_its_rollback_and_emptiness_obeyed() {
    let b = SpiffeBundleServer::start("example.org");
    let new = b.rotate(); // sequence 2
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.json");
    let write = |doc: &Value, secs: u64| {
        std::fs::write(&path, serde_json::to_vec(doc).unwrap()).unwrap();
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000 + secs);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    };
    let old = b.published_kids()[0].clone();
    b.retire(&old); // sequence 3
    write(&b.bundle(), 1);
    let clock = ManualClock::starting_now();
    let d = json!({ "trust_domain": "example.org", "bundle_file": path, "audiences": [AUD] });
    let v = verifier(&clock, config(vec![d], vec![]));
    let with_new = svid(&b, &new, "web", &clock);
    let with_old = svid(&b, &old, "web", &clock);
    v.verify(&with_new).expect("accepted");
    assert!(v.verify(&with_old).is_err());
    b.rollback_to(2);
    write(&b.bundle(), 2);
    clock.advance_secs(3);
    v.run_due_refreshes();
    assert!(v.verify(&with_old).is_err(), "rolled-back file refused");
    v.verify(&with_new).expect("held keys kept");
    b.publish_empty(); // sequence 4
    write(&b.bundle(), 3);
    clock.advance_secs(3);
    v.run_due_refreshes();
    assert!(v.verify(&with_new).is_err(), "empty bundle: every token refused");
}

#[test]
fn spiffe_config_is_checked() {
    let bad = |d: Value| {
        let e = Config::from_value(config(vec![d], vec![])).expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        e.message().to_string()
    };
    let ok = json!({"trust_domain": "example.org", "bundle_endpoint": "https://x/b", "audiences": ["a"]});
    Config::from_value(config(vec![ok.clone()], vec![])).expect("valid");
    let with = |k: &str, val: Value| {
        let mut d = ok.clone();
        d[k] = val;
        d
    };
    assert!(bad(with("trust_domain", json!("Example.org"))).contains("spiffe[0].trust_domain"));
    assert!(bad(with("trust_domain", json!("example.org:443"))).contains("port"));
    assert!(bad(with("audiences", json!([]))).contains("audiences"));
    assert!(bad(with("bundle_file", json!("/x"))).contains("bundle_endpoint"));
    assert!(bad(with("algorithms", json!(["HS256"]))).contains("algorithms"));
    let e = Config::from_value(config(vec![ok.clone(), ok], vec![])).expect_err("duplicate");
    assert!(e.message().contains("duplicate trust domain"));
}

/// A JWT-SVID signed by an independent implementation: Python's
/// `cryptography` (OpenSSL), ES256 with the header and claims serialized by
/// Python, not by the test issuer's Rust signer.
#[test]
fn a_jwt_svid_minted_by_python_cryptography_verifies() {
    let (b, clock, v) = setup();
    let kid = b.published_kids()[0].clone();
    let script = r#"
import base64, json, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
args = json.load(sys.stdin)
key = serialization.load_pem_private_key(args["pem"].encode(), password=None)
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
header = {"alg": "ES256", "typ": "JWT", "kid": args["kid"]}
signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(args["claims"]).encode())
r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
print(signing_input + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big")))
"#;
    let input = json!({"pem": b.private_pem(&kid), "kid": kid, "claims": b.claims("py/worker", AUD, clock.now_secs())});
    let child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("SKIPPED: python3 not found");
        return;
    };
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.to_string().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("No module named 'cryptography'") {
        eprintln!("SKIPPED: python3 has no cryptography module");
        return;
    }
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap();
    let ok = v.verify(token.trim()).expect("the Python-minted JWT-SVID verifies");
    assert_eq!(ok.claims()["sub"], "spiffe://example.org/py/worker");
}

#[test]
fn verify_without_waiting_takes_the_same_spiffe_decisions() {
    let (b, clock, v) = setup();
    let kid = b.published_kids()[0].clone();
    let token = svid(&b, &kid, "web", &clock);
    let opts = VerifyOptions::default();
    assert!(
        v.verify_without_waiting(&token, &opts).is_none(),
        "checks a signature next"
    );
    v.verify(&token).expect("accepted");
    assert!(v.verify_without_waiting(&token, &opts).unwrap().unwrap().cached());
    let other = SpiffeBundleServer::start("other.org");
    let okid = other.published_kids()[0].clone();
    let foreign = svid(&other, &okid, "web", &clock);
    let e = v.verify_without_waiting(&foreign, &opts).unwrap().expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::UnknownIssuer);
    let mut c = b.claims("web", AUD, clock.now_secs());
    c["sub"] = json!("spiffe://example.org/a/../b");
    let e = v
        .verify_without_waiting(b.mint(&kid, &c), &opts)
        .unwrap()
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::InvalidPayload);
    assert_eq!((b.requests(), other.requests()), (1, 0));
}

#[test]
fn revoke_kid_names_a_trust_domain_and_reaches_its_cached_results() {
    let (b, clock, v) = setup();
    let kid = b.published_kids()[0].clone();
    let token = svid(&b, &kid, "web", &clock);
    v.verify(&token).expect("accepted");
    assert!(v.verify(&token).unwrap().cached());
    v.revoke_kid("spiffe://example.org", &kid)
        .expect("a configured trust domain");
    assert_eq!(kind(&v, &token), ErrorKind::KeyRevoked);
    assert_eq!(kind(&v, &svid(&b, &kid, "other", &clock)), ErrorKind::KeyRevoked);
}

#[test]
fn trust_domains_keep_their_keys_and_cache_across_runtime_issuer_changes() {
    // Issuers added, removed or reloaded at runtime (issue 27) carry the
    // SPIFFE trust domains as they are: same keys, same cached results, no
    // fetch; a reload that changes `spiffe` is refused (build a new
    // verifier), nothing changed.
    let b = SpiffeBundleServer::start("example.org");
    let clock = ManualClock::starting_now();
    let cfg = config(vec![domain(&b, |_| {})], vec![]);
    let v = verifier(&clock, cfg.clone());
    let kid = b.published_kids()[0].clone();
    let token = svid(&b, &kid, "web", &clock);
    assert!(!v.verify(&token).expect("accepted").cached());

    let other = jwtwarden_testissuer::TestIssuer::start();
    let entry = json!({"issuer": other.url(), "jwks_uri": other.jwks_uri(), "audiences": ["api"]});
    v.add_issuer(jwtwarden::IssuerEntry::from_json(&entry.to_string()).unwrap())
        .expect("added");
    assert!(v.verify(&token).expect("still accepted").cached(), "cache kept");
    v.remove_issuer(&other.url()).expect("removed");
    assert!(v.verify(&token).expect("still accepted").cached(), "cache kept");
    v.reload(Config::from_value(cfg.clone()).unwrap()).expect("same config");
    assert!(v.verify(&token).expect("still accepted").cached(), "cache kept");
    assert_eq!(b.requests(), 1, "no fetch for the trust domain");

    let mut changed = cfg;
    changed["spiffe"][0]["audiences"] = json!(["spiffe://example.org/other"]);
    let e = v.reload(Config::from_value(changed).unwrap()).expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
    assert!(v.verify(&token).is_ok(), "nothing changed");
    // Another domain's token is still refused, and a SPIFFE ID still picks it.
    let foreign = SpiffeBundleServer::start("other.org");
    let okid = foreign.published_kids()[0].clone();
    assert_eq!(
        kind(&v, &svid(&foreign, &okid, "web", &clock)),
        ErrorKind::UnknownIssuer
    );
}
