//! End-to-end tests of the issuer over real HTTP on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use common::{get, raw_request, request};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{decode, decode_header, DecodingKey, EncodingKey, Header, Validation};
use jwtwarden_testissuer::{Alg, Fault, TestIssuer};
use serde_json::{json, Value};

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn fetch_jwks(issuer: &TestIssuer) -> Value {
    let r = get(issuer.port(), "/jwks.json");
    assert_eq!(r.status, 200);
    r.json()
}

fn jwk_by_kid(jwks: &Value, kid: &str) -> Value {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} not in {jwks}"))
        .clone()
}

fn verify(issuer: &TestIssuer, jwk: &Value, alg: Alg, token: &str) -> Value {
    let jwk: Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let key = DecodingKey::from_jwk(&jwk).unwrap();
    let mut v = Validation::new(alg.algorithm());
    v.set_audience(&["api"]);
    v.set_issuer(&[issuer.url()]);
    decode::<Value>(token, &key, &v)
        .unwrap_or_else(|e| panic!("{alg}: {e}"))
        .claims
}

#[test]
fn serves_one_rs256_key_and_discovery() {
    let issuer = TestIssuer::start();
    let port = issuer.port();
    assert_eq!(issuer.url(), format!("http://127.0.0.1:{port}"));
    assert_eq!(issuer.jwks_uri(), format!("http://127.0.0.1:{port}/jwks.json"));

    let r = get(port, "/jwks.json");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), None);
    assert_eq!(r.header("etag"), None);
    let jwks = r.json();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!(k["kid"], issuer.first_kid());
    assert_eq!(k["kty"], "RSA");
    assert_eq!(k["alg"], "RS256");
    assert_eq!(k["use"], "sig");
    assert_eq!(k["e"], "AQAB");
    assert!(k["n"].as_str().unwrap().len() >= 342, "2048-bit modulus");
    assert_eq!(*k, issuer.public_jwk(&issuer.first_kid()));
    assert!(issuer.first_kid().starts_with("k-"));

    let d = get(port, "/.well-known/openid-configuration");
    assert_eq!(d.status, 200);
    assert_eq!(d.header("content-type"), Some("application/json"));
    assert_eq!(d.json(), json!({"issuer": issuer.url(), "jwks_uri": issuer.jwks_uri()}));

    assert_eq!(issuer.jwks_requests(), 1);
    assert_eq!(issuer.discovery_requests(), 1);
    assert_eq!(issuer.total_requests(), 2);
}

#[test]
fn start_empty_publishes_nothing() {
    let issuer = TestIssuer::start_empty();
    assert_eq!(fetch_jwks(&issuer), json!({"keys": []}));
    assert!(issuer.published_kids().is_empty());
}

#[test]
fn every_alg_mints_tokens_verifiable_with_the_published_jwk() {
    let issuer = TestIssuer::start_empty();
    let kids: Vec<(Alg, String)> = Alg::ALL.iter().map(|&a| (a, issuer.add_key(a))).collect();
    let mut unique: Vec<&String> = kids.iter().map(|(_, k)| k).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), Alg::ALL.len(), "distinct kids");
    let rsa_moduli: std::collections::HashSet<Value> = kids
        .iter()
        .filter(|(a, _)| a.as_str().starts_with('R') || a.as_str().starts_with('P'))
        .map(|(_, k)| issuer.public_jwk(k)["n"].clone())
        .collect();
    assert_eq!(rsa_moduli.len(), 6, "no RSA material reused within an issuer");

    let jwks = fetch_jwks(&issuer);
    for (alg, kid) in &kids {
        let jwk = jwk_by_kid(&jwks, kid);
        assert_eq!(jwk["alg"], alg.as_str());
        assert_eq!(jwk["use"], "sig");
        let params: &[&str] = match alg {
            Alg::ES256 => {
                assert_eq!((&jwk["kty"], &jwk["crv"]), (&json!("EC"), &json!("P-256")));
                &["x", "y"]
            }
            Alg::ES384 => {
                assert_eq!((&jwk["kty"], &jwk["crv"]), (&json!("EC"), &json!("P-384")));
                &["x", "y"]
            }
            Alg::EdDSA => {
                assert_eq!((&jwk["kty"], &jwk["crv"]), (&json!("OKP"), &json!("Ed25519")));
                &["x"]
            }
            _ => {
                assert_eq!(jwk["kty"], "RSA");
                &["n", "e"]
            }
        };
        for p in params {
            assert!(jwk[p].as_str().is_some_and(|s| !s.is_empty()), "{alg} {p}");
        }
        assert_eq!(issuer.key_alg(kid), *alg);

        // mint(): header {alg, typ, kid}.
        let claims = issuer.default_claims("alice", now());
        let token = issuer.mint(kid, &claims);
        let header = decode_header(&token).unwrap();
        assert_eq!(header.alg, alg.algorithm());
        assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(verify(&issuer, &jwk, *alg, &token), claims);

        // The PKCS#8 PEM works with an independent signer.
        let pem = issuer.private_key_pem(kid);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let enc = match alg {
            Alg::ES256 | Alg::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()),
            Alg::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
        }
        .unwrap();
        let mut h = Header::new(alg.algorithm());
        h.kid = Some(kid.clone());
        let token = jsonwebtoken::encode(&h, &claims, &enc).unwrap();
        verify(&issuer, &jwk, *alg, &token);
        let token = jsonwebtoken::encode(&h, &claims, &issuer.encoding_key(kid)).unwrap();
        verify(&issuer, &jwk, *alg, &token);
    }
}

#[test]
fn default_claims_shape() {
    let issuer = TestIssuer::start_empty();
    let c = issuer.default_claims("bob", 1000);
    assert_eq!(c["iss"], issuer.url());
    assert_eq!(c["aud"], "api");
    assert_eq!(c["sub"], "bob");
    assert_eq!(
        (&c["iat"], &c["nbf"], &c["exp"]),
        (&json!(1000), &json!(1000), &json!(4600))
    );
    let jti = c["jti"].as_str().unwrap();
    assert!(jti.len() >= 16 && jti.chars().all(|ch| ch.is_ascii_hexdigit()));
    assert_ne!(issuer.default_claims("bob", 1000)["jti"], c["jti"]);
}

#[test]
fn mint_with_header_uses_the_header_verbatim() {
    let issuer = TestIssuer::start();
    let kid = issuer.first_kid();
    let header = json!({"alg": "RS256", "kid": "someone-else", "jku": "http://evil.example/jwks", "typ": "at+jwt"});
    let token = issuer.mint_with_header(&kid, &header, &json!({"sub": "x"}));
    let h = decode_header(&token).unwrap();
    assert_eq!(h.kid.as_deref(), Some("someone-else"));
    assert_eq!(h.jku.as_deref(), Some("http://evil.example/jwks"));
    assert_eq!(h.typ.as_deref(), Some("at+jwt"));
    // Signed with kid's key regardless of the header's claims.
    let key = DecodingKey::from_jwk(&serde_json::from_value(issuer.public_jwk(&kid)).unwrap()).unwrap();
    let mut v = Validation::new(jsonwebtoken::Algorithm::RS256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    decode::<Value>(&token, &key, &v).unwrap();

    // A lying alg is kept as given.
    let token = issuer.mint_with_header(&kid, &json!({"alg": "HS256"}), &json!({}));
    let first = token.split('.').next().unwrap();
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(first).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&raw).unwrap(), json!({"alg": "HS256"}));

    let unsigned = issuer.mint_unsigned(&json!({"alg": "none"}), &json!({"sub": "x"}));
    assert!(unsigned.ends_with('.') && unsigned.matches('.').count() == 2);
}

#[test]
fn rotate_and_retire() {
    let issuer = TestIssuer::start();
    let old = issuer.first_kid();
    let new = issuer.rotate(Alg::ES256);
    assert_eq!(issuer.published_kids(), vec![old.clone(), new.clone()]);
    let jwks = fetch_jwks(&issuer);
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);

    issuer.retire_key(&old);
    assert_eq!(issuer.published_kids(), vec![new.clone()]);
    assert_eq!(issuer.first_kid(), new);
    let jwks = fetch_jwks(&issuer);
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kid"], new.as_str());

    // The retired key still signs (and still has a JWK to check against).
    let claims = issuer.default_claims("carol", now());
    let token = issuer.mint(&old, &claims);
    verify(&issuer, &issuer.public_jwk(&old), Alg::RS256, &token);
}

#[test]
fn etag_cache_headers_and_request_headers() {
    let issuer = TestIssuer::start();
    let port = issuer.port();
    issuer.set_etag(true);
    issuer.set_cache_control(Some("max-age=60"));
    issuer.set_expires(Some("Wed, 21 Oct 2065 07:28:00 GMT"));

    let r = get(port, "/jwks.json");
    assert_eq!(r.status, 200);
    let etag = r.header("etag").expect("ETag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    assert_eq!(r.header("cache-control"), Some("max-age=60"));
    assert_eq!(r.header("expires"), Some("Wed, 21 Oct 2065 07:28:00 GMT"));

    let r = request(
        port,
        "GET",
        "/jwks.json",
        &[("If-None-Match", &etag), ("Cache-Control", "no-cache")],
        None,
    );
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let seen = issuer.last_jwks_request_headers();
    assert!(seen.contains(&("if-none-match".to_string(), etag.clone())), "{seen:?}");
    assert!(seen.contains(&("cache-control".to_string(), "no-cache".to_string())));

    let weak = format!("W/{etag}");
    let r = request(
        port,
        "GET",
        "/jwks.json",
        &[("If-None-Match", &format!("\"zzz\", {weak}"))],
        None,
    );
    assert_eq!(r.status, 304);

    let r = request(port, "GET", "/jwks.json", &[("If-None-Match", "\"other\"")], None);
    assert_eq!(r.status, 200);
    assert!(!r.body.is_empty());

    // A new key changes the body and therefore the ETag.
    issuer.add_key(Alg::EdDSA);
    let r = request(port, "GET", "/jwks.json", &[("If-None-Match", &etag)], None);
    assert_eq!(r.status, 200);
    assert_ne!(r.header("etag"), Some(etag.as_str()));

    assert_eq!(issuer.jwks_requests(), 5, "304s are counted");

    issuer.set_etag(false);
    issuer.set_cache_control(None);
    issuer.set_expires(None);
    let r = request(port, "GET", "/jwks.json", &[("If-None-Match", &etag)], None);
    assert_eq!(r.status, 200);
    assert_eq!(
        (r.header("etag"), r.header("cache-control"), r.header("expires")),
        (None, None, None)
    );
}

#[test]
fn faults() {
    let issuer = TestIssuer::start();
    let port = issuer.port();
    for path in ["/jwks.json", "/.well-known/openid-configuration"] {
        issuer.set_fault(Fault::Status(503));
        let r = get(port, path);
        assert_eq!(r.status, 503);

        issuer.set_fault(Fault::Drop);
        let raw = raw_request(port, "GET", path, &[], None);
        assert!(raw.as_ref().map_or(true, Vec::is_empty), "{path}: got {raw:?}");

        issuer.set_fault(Fault::Oversized(300_000));
        let r = get(port, path);
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 300_000);
        assert_eq!(r.header("content-length"), Some("300000"));
        let v = r.json();
        assert!(v.get("padding").is_some());

        issuer.set_fault(Fault::InvalidJson);
        let r = get(port, path);
        assert_eq!(r.status, 200);
        assert!(serde_json::from_slice::<Value>(&r.body).is_err());

        issuer.set_fault(Fault::RedirectTo("http://127.0.0.1:1/elsewhere".into()));
        let r = get(port, path);
        assert_eq!(r.status, 302);
        assert_eq!(r.header("location"), Some("http://127.0.0.1:1/elsewhere"));

        issuer.set_fault(Fault::None);
        assert_eq!(get(port, path).status, 200);
    }
    assert_eq!(issuer.jwks_requests(), 6);
    assert_eq!(issuer.discovery_requests(), 6);
    assert_eq!(issuer.total_requests(), 12);

    // Faults never apply to other paths.
    issuer.set_fault(Fault::Status(500));
    assert_eq!(get(port, "/redirect-same-host").status, 302);
}

#[test]
fn oversized_keeps_the_real_keys() {
    let issuer = TestIssuer::start();
    issuer.set_fault(Fault::Oversized(100_000));
    let v = get(issuer.port(), "/jwks.json").json();
    assert_eq!(v["keys"][0]["kid"], issuer.first_kid());
}

#[test]
fn delay_does_not_block_other_requests() {
    let issuer = TestIssuer::start();
    let port = issuer.port();
    issuer.set_fault(Fault::Delay(Duration::from_secs(3)));
    let start = Instant::now();
    let slow = std::thread::spawn(move || {
        let r = get(port, "/jwks.json");
        (r.status, start.elapsed())
    });
    // The delayed request is counted when it arrives, before its delay.
    until(|| issuer.jwks_requests() == 1);
    // Other requests are answered while it waits (3 s is a margin for a
    // loaded machine, not a measurement).
    assert_eq!(get(port, "/nope").status, 404);
    assert_eq!(get(port, "/redirect-same-host").status, 302);
    assert!(!slow.is_finished(), "blocked behind the delayed request");
    let (status, took) = slow.join().unwrap();
    assert_eq!(status, 200);
    assert!(took >= Duration::from_secs(3), "{took:?}");
}

#[test]
fn drop_stops_promptly_and_cuts_delayed_requests() {
    let issuer = TestIssuer::start();
    let port = issuer.port();
    issuer.set_fault(Fault::Delay(Duration::from_secs(30)));
    let pending = std::thread::spawn(move || raw_request(port, "GET", "/jwks.json", &[], None));
    std::thread::sleep(Duration::from_millis(150));
    let t = Instant::now();
    drop(issuer);
    assert!(t.elapsed() < Duration::from_secs(1), "drop took {:?}", t.elapsed());
    let got = pending.join().unwrap();
    assert!(got.as_ref().map_or(true, Vec::is_empty), "{got:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening"
    );
}

#[test]
fn paths_counts_and_redirect() {
    let issuer = TestIssuer::start();
    let port = issuer.port();
    let r = get(port, "/redirect-same-host");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some(issuer.jwks_uri().as_str()));

    let r = get(port, "/evil-jku");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/json"));
    get(port, "/evil-jku?x=1");
    get(port, "/jwks.json?cachebust=2");
    // Admin paths are ordinary unknown paths unless the admin API is enabled.
    assert_eq!(get(port, "/admin/stats").status, 404);

    assert_eq!(issuer.requests_to("/evil-jku"), 2);
    assert_eq!(issuer.requests_to("/redirect-same-host"), 1);
    assert_eq!(issuer.requests_to("/jwks.json"), 1);
    assert_eq!(issuer.requests_to("/admin/stats"), 1);
    assert_eq!(issuer.requests_to("/never"), 0);
    assert_eq!(issuer.jwks_requests(), 1);
    assert_eq!(issuer.total_requests(), 5);

    issuer.reset_counts();
    assert_eq!(
        (
            issuer.total_requests(),
            issuer.jwks_requests(),
            issuer.requests_to("/evil-jku")
        ),
        (0, 0, 0)
    );
}

#[test]
fn jwks_override() {
    let issuer = TestIssuer::start();
    let body = r#"{"keys":[{"kty":"RSA","kid":"bad","n":"!!","e":"AQAB"}]}"#;
    issuer.set_jwks_override(Some(body.to_string()));
    assert_eq!(get(issuer.port(), "/jwks.json").body, body.as_bytes());
    issuer.set_jwks_override(None);
    assert_eq!(fetch_jwks(&issuer)["keys"][0]["kid"], issuer.first_kid());
}

#[test]
fn many_issuers_are_cheap_and_independent() {
    let t = Instant::now();
    let issuers: Vec<TestIssuer> = (0..24).map(|_| TestIssuer::start()).collect();
    let mut urls: Vec<String> = issuers.iter().map(TestIssuer::url).collect();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 24);
    // Within one issuer, RSA material is never reused, even beyond the pool size.
    let kids: Vec<String> = (0..20).map(|_| issuers[1].add_key(Alg::PS256)).collect();
    let moduli: std::collections::HashSet<Value> = kids.iter().map(|k| issuers[1].public_jwk(k)["n"].clone()).collect();
    assert_eq!(moduli.len(), 20);
    // A fresh key is unrelated to every pooled one.
    let fresh = issuers[0].add_fresh_key(Alg::RS256);
    let n = issuers[0].public_jwk(&fresh)["n"].clone();
    assert!(issuers.iter().all(|i| i.public_jwk(&i.first_kid())["n"] != n));
    eprintln!("24 issuers + 21 keys: {:?}", t.elapsed());
}

/// Reads one response with a `Content-Length` from a keep-alive connection.
fn read_one(s: &mut std::net::TcpStream) -> std::io::Result<common::Resp> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let head = common::parse(&buf);
    let len: usize = head.header("content-length").unwrap().parse().unwrap();
    let mut body = vec![0; len];
    s.read_exact(&mut body)?;
    Ok(common::Resp { body, ..head })
}

#[test]
fn drop_closes_idle_keep_alive_connections() {
    use std::io::Write;
    let issuer = TestIssuer::start();
    let port = issuer.port();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!("GET /jwks.json HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    assert_eq!(read_one(&mut s).unwrap().status, 200);
    // Same connection, second request: still served.
    s.write_all(req.as_bytes()).unwrap();
    assert_eq!(read_one(&mut s).unwrap().status, 200);
    assert_eq!(issuer.jwks_requests(), 2);

    drop(issuer);
    let t = Instant::now();
    let _ = s.write_all(req.as_bytes());
    assert!(read_one(&mut s).is_err(), "served after drop");
    assert!(t.elapsed() < Duration::from_secs(1), "hung: {:?}", t.elapsed());
}

#[test]
fn drop_fault_on_a_keep_alive_connection() {
    use std::io::Write;
    let issuer = TestIssuer::start();
    let port = issuer.port();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!("GET /jwks.json HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    assert_eq!(read_one(&mut s).unwrap().status, 200);
    issuer.set_fault(Fault::Drop);
    let t = Instant::now();
    s.write_all(req.as_bytes()).unwrap();
    assert!(read_one(&mut s).is_err());
    assert!(t.elapsed() < Duration::from_secs(1), "hung: {:?}", t.elapsed());
    // The server keeps serving new connections.
    issuer.set_fault(Fault::None);
    assert_eq!(get(port, "/jwks.json").status, 200);
}

#[test]
fn retry_after_and_unconditional_not_modified_faults() {
    let issuer = TestIssuer::start();
    let port = issuer.port();
    for path in ["/jwks.json", "/.well-known/openid-configuration"] {
        issuer.set_fault(Fault::StatusRetryAfter(429, "7".into()));
        let r = get(port, path);
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("7"));

        issuer.set_fault(Fault::NotModified);
        let r = get(port, path);
        assert_eq!(r.status, 304, "{path}: 304 although the request sent no validator");
        assert!(r.body.is_empty());
    }
    issuer.set_cache_control(Some("max-age=42"));
    assert_eq!(get(port, "/jwks.json").header("cache-control"), Some("max-age=42"));
    issuer.set_fault(Fault::None);
    assert_eq!(get(port, "/jwks.json").status, 200);
}

#[test]
fn hang_never_answers_until_the_issuer_stops() {
    use std::io::{Read, Write};
    let issuer = TestIssuer::start();
    issuer.set_fault(Fault::Hang);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", issuer.port())).unwrap();
    s.write_all(b"GET /jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 64];
    let err = s.read(&mut buf).expect_err("no answer while hanging");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err:?}"
    );
    // Counted by the request's own thread, which may run after the read
    // above timed out.
    until(|| issuer.jwks_requests() == 1);
    drop(issuer);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "dropped without an answer: {rest:?}");
}

#[test]
fn slow_redirects_hop_on_the_same_host_each_after_the_delay() {
    let issuer = TestIssuer::start();
    let port = issuer.port();
    let delay = Duration::from_millis(100);
    issuer.set_fault(Fault::SlowRedirects { hops: 2, delay });
    for path in ["/jwks.json", "/.well-known/openid-configuration"] {
        let mut next = path.to_string();
        for hop in 1..=2 {
            let t = Instant::now();
            let r = get(port, &next);
            assert!(t.elapsed() >= delay, "hop {hop} answered early");
            assert_eq!(r.status, 302);
            let location = r.header("location").unwrap().to_string();
            assert_eq!(location, format!("{}/slow-redirect/{hop}{path}", issuer.url()));
            next = location.trim_start_matches(&issuer.url()).to_string();
        }
        let t = Instant::now();
        let r = get(port, &next);
        assert!(t.elapsed() >= delay);
        assert_eq!(r.status, 200);
        assert!(r.json().is_object());
    }
    assert_eq!(issuer.jwks_requests(), 1, "hops are not counted as JWKS requests");
    assert_eq!(issuer.requests_to("/slow-redirect/2/jwks.json"), 1);
    // Without the fault a hop serves the document at once.
    issuer.set_fault(Fault::None);
    assert_eq!(get(port, "/slow-redirect/1/jwks.json").status, 200);
    assert_eq!(get(port, "/slow-redirect/x/jwks.json").status, 404);
    assert_eq!(get(port, "/slow-redirect/1/elsewhere").status, 404);
}

#[test]
fn moved_jwks_is_advertised_by_discovery_and_the_old_path_404s() {
    let issuer = TestIssuer::start();
    let port = issuer.port();
    issuer.set_discovery_cache_control(Some("max-age=77"));
    let r = get(port, "/.well-known/openid-configuration");
    assert_eq!(r.header("cache-control"), Some("max-age=77"));
    assert_eq!(r.json()["jwks_uri"], format!("{}/jwks.json", issuer.url()));

    issuer.set_jwks_path(Some("/keys/v2"));
    assert_eq!(issuer.jwks_uri(), format!("{}/keys/v2", issuer.url()));
    let doc = get(port, "/.well-known/openid-configuration").json();
    assert_eq!(doc["jwks_uri"], issuer.jwks_uri());
    assert_eq!(get(port, "/jwks.json").status, 404);
    let v = get(port, "/keys/v2").json();
    assert_eq!(v["keys"][0]["kid"], issuer.first_kid());
    assert_eq!(
        get(port, "/redirect-same-host").header("location"),
        Some(issuer.jwks_uri().as_str())
    );
    assert_eq!(issuer.jwks_requests(), 1, "counts the current path");
    assert_eq!(issuer.requests_to("/jwks.json"), 1);

    issuer.set_jwks_path(None);
    assert_eq!(fetch_jwks(&issuer)["keys"][0]["kid"], issuer.first_kid());
    assert_eq!(get(port, "/keys/v2").status, 404);
}

#[test]
#[should_panic(expected = "taken by another route")]
fn jwks_path_cannot_shadow_discovery() {
    TestIssuer::start_empty().set_jwks_path(Some("/.well-known/openid-configuration"));
}

/// Poll `f` until it holds; fail after 20 s (a bound for a broken server,
/// not a timing assertion).
fn until(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
}
