//! Revocations, status lists and rollback state for issuer families (issue
//! 27): kid revocations and Token Status Lists scoped to one tenant of an
//! issuer template (also when tenants share one key set), status lists for
//! SPIFFE trust domains, and the SPIFFE bundle sequence kept across a
//! restart with `state_dir`. Against the multi-tenant test issuer and a
//! SPIFFE bundle endpoint on 127.0.0.1, with a manual clock; each refusal
//! that must cost no fetch counts the requests the server saw.

use std::sync::Arc;

use jwtwarden::{Config, ErrorKind, ManualClock, Verifier, VerifyOptions};
use jwtwarden_testissuer::{SpiffeBundleServer, TenantIssuer, TenantMode};
use serde_json::{json, Value};

const UUID: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

/// A valid-looking tenant id.
fn tid(n: u64) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", n >> 48, n & 0xffff_ffff_ffff)
}

/// A template over `idp`: per-tenant discovery, or with `SharedKeys` the
/// one shared `jwks_uri` and `tenant_claim = "tid"`.
fn template(idp: &TenantIssuer, mode: TenantMode) -> Value {
    let mut t = json!({
        "issuer": format!("{}/{{tenant}}/v2.0", idp.url()),
        "tenant_pattern": UUID,
        "audiences": ["api://orders"],
        "max_tenants": 10000,
        "new_tenant_fetches_per_minute": 60,
        "refresh": { "jitter": 0.0 },
    });
    match mode {
        TenantMode::PerTenant => t["discovery"] = json!(true),
        TenantMode::SharedKeys => {
            t["jwks_uri"] = json!(format!("{}/common/keys", idp.url()));
            t["tenant_claim"] = json!("tid");
        }
    }
    t
}

fn verifier_with(clock: &ManualClock, cfg: Value) -> Verifier {
    let config = Config::from_value(cfg).expect("valid config");
    Verifier::with_clock(config, Arc::new(clock.clone())).expect("verifier starts")
}

fn config(templates: Vec<Value>, adjust: impl FnOnce(&mut Value)) -> Value {
    let mut cfg = json!({
        "issuer_templates": templates,
        "http": { "allow_http": true, "timeout_ms": 3000, "connect_timeout_ms": 500 },
        "background_refresh": false,
    });
    adjust(&mut cfg);
    cfg
}

fn setup(mode: TenantMode, adjust: impl FnOnce(&mut Value)) -> (TenantIssuer, ManualClock, Verifier) {
    let idp = TenantIssuer::start(mode);
    let clock = ManualClock::starting_now();
    let mut t = template(&idp, mode);
    adjust(&mut t);
    let v = verifier_with(&clock, config(vec![t], |_| {}));
    (idp, clock, v)
}

fn kind(v: &Verifier, token: &str) -> ErrorKind {
    v.verify(token).expect_err("must be refused").kind()
}

fn fresh() -> VerifyOptions<'static> {
    VerifyOptions {
        fresh: true,
        ..Default::default()
    }
}

// ---- 1. revoke_kid for a tenant ------------------------------------------

#[test]
fn revoke_kid_for_a_tenant_refuses_its_cached_and_new_tokens_and_spares_a_tenant_sharing_the_key() {
    let (idp, clock, v) = setup(TenantMode::SharedKeys, |_| {});
    let (a, b) = (tid(1), tid(2));
    let now = clock.now_secs();
    let (ta, tb) = (idp.mint(&a, "alice", now), idp.mint(&b, "bob", now));
    let kid = v
        .verify(&ta)
        .expect("a")
        .kid()
        .expect("the shared key has a kid")
        .to_string();
    assert_eq!(v.verify(&tb).expect("b").kid(), Some(kid.as_str()), "one shared key");
    assert!(v.verify(&ta).unwrap().cached() && v.verify(&tb).unwrap().cached());
    let fetches = idp.jwks_requests();

    v.revoke_kid(&idp.issuer(&a), &kid)
        .expect("a tenant's kid can be revoked");

    // A's cached result is refused on the next call, and so is a new token.
    assert_eq!(kind(&v, &ta), ErrorKind::KeyRevoked);
    assert_eq!(kind(&v, &idp.mint(&a, "alice2", now)), ErrorKind::KeyRevoked);
    // A token without kid, signed with the revoked key (the only one), too.
    let no_kid = idp.mint_without_kid(&a, &idp.claims(&a, "carol", now));
    assert_eq!(kind(&v, &no_kid), ErrorKind::KeyRevoked);
    // B shares the key set: the kid is revoked for A's issuer only.
    assert!(v.verify(&tb).expect("b's cached result stays").cached());
    v.verify_with(&tb, &fresh())
        .expect("b verified afresh with the same key");
    v.verify(idp.mint(&b, "bob2", now)).expect("b's new token");
    // A signature of B's tenant claiming A is still A's token: refused.
    let mut claims = idp.claims(&a, "mallory", now);
    claims["sub"] = json!("mallory");
    assert_eq!(kind(&v, &idp.mint_as(&b, &claims)), ErrorKind::KeyRevoked);
    assert_eq!(idp.jwks_requests(), fetches, "a revoked kid costs no fetch");
    assert!(v
        .revocations()
        .iter()
        .any(|r| r.issuer == idp.issuer(&a) && r.value == kid));
}

#[test]
fn a_tenant_kid_revocation_holds_through_its_later_fetches_until_kid_revocation_secs() {
    let idp = TenantIssuer::start(TenantMode::PerTenant);
    let clock = ManualClock::starting_now();
    let v = verifier_with(
        &clock,
        config(vec![template(&idp, TenantMode::PerTenant)], |c| {
            c["revocation"] = json!({ "kid_revocation_secs": 900 });
        }),
    );
    let a = tid(1);
    let ta = idp.mint(&a, "alice", clock.now_secs());
    let kid = v.verify(&ta).expect("a").kid().unwrap().to_string();
    v.revoke_kid(&idp.issuer(&a), &kid).unwrap();
    assert_eq!(kind(&v, &ta), ErrorKind::KeyRevoked);
    // A's key set expires (5 min default) and is fetched again: it still
    // publishes the kid, which stays refused.
    let keys_path = format!("/{a}/keys");
    let before = idp.requests(&keys_path);
    clock.advance_secs(301);
    v.run_due_refreshes();
    assert!(idp.requests(&keys_path) > before, "A's keys were fetched again");
    assert_eq!(
        kind(&v, &idp.mint(&a, "alice", clock.now_secs())),
        ErrorKind::KeyRevoked
    );
    // Past kid_revocation_secs the kid is A's again (rotate it out in time).
    clock.advance_secs(600);
    v.run_due_refreshes();
    v.verify(idp.mint(&a, "alice", clock.now_secs()))
        .expect("the revocation lapsed");
}

#[test]
fn revoke_kid_for_every_issuer_reaches_tenants() {
    let (idp, clock, v) = setup(TenantMode::PerTenant, |_| {});
    let (a, b) = (tid(1), tid(2));
    let now = clock.now_secs();
    let (ta, tb) = (idp.mint(&a, "alice", now), idp.mint(&b, "bob", now));
    let kid_a = v.verify(&ta).unwrap().kid().unwrap().to_string();
    let kid_b = v.verify(&tb).unwrap().kid().unwrap().to_string();
    assert_ne!(kid_a, kid_b);
    v.revoke_kid("*", &kid_a).expect("\"*\"");
    assert_eq!(kind(&v, &ta), ErrorKind::KeyRevoked, "cached result refused");
    assert_eq!(kind(&v, &idp.mint(&a, "x", now)), ErrorKind::KeyRevoked);
    assert!(v.verify(&tb).expect("b has another kid").cached());
    // A tenant materialised after the revocation is covered too.
    let c = tid(3);
    let tc = idp.mint(&c, "carol", now);
    let kid_c = v.verify(&tc).unwrap().kid().unwrap().to_string();
    v.revoke_kid("*", &kid_c).unwrap();
    assert_eq!(kind(&v, &tc), ErrorKind::KeyRevoked);
}

#[test]
fn a_tenant_kid_revocation_survives_a_restart_and_an_eviction() {
    let idp = TenantIssuer::start(TenantMode::SharedKeys);
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let cfg = |max_tenants: usize| {
        let mut t = template(&idp, TenantMode::SharedKeys);
        t["max_tenants"] = json!(max_tenants);
        config(vec![t], |c| c["state_dir"] = json!(dir.path()))
    };
    let (a, b) = (tid(1), tid(2));
    let now = clock.now_secs();
    let (ta, tb) = (idp.mint(&a, "alice", now), idp.mint(&b, "bob", now));
    let first = verifier_with(&clock, cfg(10));
    let kid = first.verify(&ta).unwrap().kid().unwrap().to_string();
    first.revoke_kid(&idp.issuer(&a), &kid).unwrap();
    drop(first);

    // A restart on the journal, holding one tenant at a time.
    let v = verifier_with(&clock, cfg(1));
    assert_eq!(kind(&v, &ta), ErrorKind::KeyRevoked, "replayed from the journal");
    v.verify(&tb).expect("b: same key, not revoked for it");
    assert_eq!(v.template_stats()[0].evicted, 1, "b evicted a (max_tenants 1)");
    // A comes back, materialised anew: still revoked.
    assert_eq!(kind(&v, &ta), ErrorKind::KeyRevoked);
    let stats = &v.template_stats()[0];
    assert_eq!((stats.materialised, stats.evicted), (3, 2));
    v.verify_with(&tb, &fresh()).expect("b again");

    // The operator tool (no verifier, no keys) names a tenant too; the
    // running verifier applies what it appended to the journal.
    let revoker = jwtwarden::Revoker::with_clock(Config::from_value(cfg(1)).unwrap(), Arc::new(clock.clone())).unwrap();
    revoker
        .revoke_kid(&idp.issuer(&b), &kid)
        .expect("jwtwarden revoke names a tenant");
    v.run_due_refreshes();
    assert_eq!(kind(&v, &tb), ErrorKind::KeyRevoked);
}

#[test]
fn a_tenant_kid_revocation_holds_when_its_template_is_removed_and_added_back() {
    let idp = TenantIssuer::start(TenantMode::SharedKeys);
    let clock = ManualClock::starting_now();
    let other = TenantIssuer::start(TenantMode::PerTenant);
    let t = template(&idp, TenantMode::SharedKeys);
    let v = verifier_with(
        &clock,
        config(vec![t.clone(), template(&other, TenantMode::PerTenant)], |_| {}),
    );
    let (a, b) = (tid(1), tid(2));
    let now = clock.now_secs();
    let (ta, tb) = (idp.mint(&a, "alice", now), idp.mint(&b, "bob", now));
    let kid = v.verify(&ta).unwrap().kid().unwrap().to_string();
    v.revoke_kid(&idp.issuer(&a), &kid).unwrap();
    v.remove_issuer(t["issuer"].as_str().unwrap()).unwrap();
    assert_eq!(kind(&v, &ta), ErrorKind::UnknownIssuer);
    v.add_issuer(jwtwarden::IssuerEntry::from_json(&t.to_string()).unwrap())
        .unwrap();
    assert_eq!(kind(&v, &ta), ErrorKind::KeyRevoked);
    v.verify(&tb).expect("b");
}

#[test]
fn a_tenant_kid_revocation_reaches_the_fleet_and_spares_the_other_tenants_there() {
    let Some(redis) = jwtwarden_testissuer::redis::RedisServer::start() else {
        return; // no redis-server here (the fleet suites skip likewise)
    };
    let idp = TenantIssuer::start(TenantMode::SharedKeys);
    let clock = ManualClock::starting_now();
    let on_feed = || {
        let v = verifier_with(
            &clock,
            config(vec![template(&idp, TenantMode::SharedKeys)], |c| {
                c["revocation"] = json!({ "redis": { "url": redis.url(), "timeout_ms": 2000, "max_stale_secs": 60 } });
            }),
        );
        eventually("the feed is connected", || {
            v.revocation_feed().unwrap().state == jwtwarden::FeedState::Connected
        });
        v
    };
    let (here, there) = (on_feed(), on_feed());
    let (a, b) = (tid(1), tid(2));
    let now = clock.now_secs();
    let (ta, tb) = (idp.mint(&a, "alice", now), idp.mint(&b, "bob", now));
    let kid = here.verify(&ta).unwrap().kid().unwrap().to_string();
    for v in [&here, &there] {
        v.verify(&ta).unwrap();
        v.verify(&tb).unwrap();
    }
    assert_eq!(
        here.revoke_kid(&idp.issuer(&a), &kid).unwrap(),
        jwtwarden::Propagation::Fleet
    );
    eventually("the other process refuses a's cached token", || {
        there.verify(&ta).err().map(|e| e.kind()) == Some(ErrorKind::KeyRevoked)
    });
    assert!(there.verify(&tb).expect("b, same shared key").cached());
}

/// Poll `f` until it holds; fail after 20 s (a bound for a broken feed, not
/// a timing assertion: loopback delivery takes milliseconds).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

// ---- 2. status lists for tenants -----------------------------------------

/// A per-tenant template whose tenants' lists live under `/<tenant>/status`.
fn with_tenant_lists(idp: &TenantIssuer, mode: TenantMode) -> Value {
    let mut t = template(idp, mode);
    t["status_list"] = json!({ "allowed_uris": [format!("{}/{{tenant}}/status", idp.url())] });
    t
}

fn with_status(idp: &TenantIssuer, tenant: &str, uri: &str, idx: usize, now: u64) -> String {
    let mut c = idp.claims(tenant, "alice", now);
    c["status"] = TenantIssuer::status_claim(uri, idx);
    idp.mint_as(tenant, &c)
}

#[test]
fn a_tenant_token_is_checked_against_its_own_status_list_cache_hits_included() {
    let idp = TenantIssuer::start(TenantMode::PerTenant);
    let clock = ManualClock::starting_now();
    let v = verifier_with(
        &clock,
        config(vec![with_tenant_lists(&idp, TenantMode::PerTenant)], |_| {}),
    );
    let a = tid(1);
    let uri = idp.publish_status_list(&a, "l1", 16);
    idp.set_status(&a, "l1", 3, 1);
    let now = clock.now_secs();
    let valid = with_status(&idp, &a, &uri, 2, now);
    assert!(!v.verify(&valid).expect("VALID passes").cached());
    assert!(v.verify(&valid).expect("served from the cache").cached());
    assert_eq!(kind(&v, &with_status(&idp, &a, &uri, 3, now)), ErrorKind::Revoked);
    assert_eq!(
        kind(&v, &with_status(&idp, &a, &uri, 99, now)),
        ErrorKind::StatusIndexOutOfRange
    );
    let list_path = format!("/{a}/status/l1");
    assert_eq!(idp.requests(&list_path), 1, "one list, fetched once");
    assert_eq!(
        v.status_list_health(&idp.issuer(&a), &uri).unwrap(),
        Some(jwtwarden::Health::Fresh)
    );
    assert_eq!(
        v.status_list_health(&idp.issuer(&tid(2)), &uri).ok().flatten(),
        None,
        "not b's"
    );
    // The issuer revokes entry 2: once the list is refreshed (ttl 300 s),
    // the cached result is refused.
    idp.set_status(&a, "l1", 2, 1);
    clock.advance_secs(301);
    v.run_due_refreshes();
    assert_eq!(idp.requests(&list_path), 2);
    assert_eq!(kind(&v, &valid), ErrorKind::Revoked);
}

#[test]
fn a_tenant_token_naming_a_list_outside_its_allowlist_or_another_tenants_list_is_refused_without_a_fetch() {
    let idp = TenantIssuer::start(TenantMode::PerTenant);
    let clock = ManualClock::starting_now();
    let v = verifier_with(
        &clock,
        config(vec![with_tenant_lists(&idp, TenantMode::PerTenant)], |_| {}),
    );
    let (a, b) = (tid(1), tid(2));
    let b_list = idp.publish_status_list(&b, "l1", 16);
    let now = clock.now_secs();
    v.verify(with_status(&idp, &b, &b_list, 1, now)).expect("b's own list");
    v.verify(idp.mint(&a, "alice", now)).expect("a, materialised");
    let before = idp.total_requests();
    // A's token (signed by A) naming B's list, a list on another host, a
    // path outside A's prefix and a dot-segment escape from it.
    for uri in [
        b_list.clone(),
        "http://127.0.0.2:1/status/x".to_string(),
        format!("{}/status/{a}", idp.url()),
        format!("{}/{a}/status/../../{b}/status/l1", idp.url()),
        format!("{}/{a}/status/%2e%2e/%2e%2e/{b}/status/l1", idp.url()),
    ] {
        assert_eq!(
            kind(&v, &with_status(&idp, &a, &uri, 1, now)),
            ErrorKind::StatusUriNotAllowed,
            "{uri}"
        );
    }
    assert_eq!(idp.total_requests(), before, "nothing fetched for a refused uri");
}

#[test]
fn with_shared_keys_one_tenants_list_never_serves_another_even_at_an_allowed_uri() {
    let idp = TenantIssuer::start(TenantMode::SharedKeys);
    let clock = ManualClock::starting_now();
    // An allowlist without {tenant}: every tenant may name any list on the
    // host, so B may name A's list; it is fetched for B and must name B.
    let mut t = template(&idp, TenantMode::SharedKeys);
    t["status_list"] = json!({ "allowed_uris": [format!("{}/", idp.url())] });
    let v = verifier_with(&clock, config(vec![t], |_| {}));
    let (a, b) = (tid(1), tid(2));
    let a_list = idp.publish_status_list(&a, "l1", 16);
    let now = clock.now_secs();
    v.verify(with_status(&idp, &a, &a_list, 1, now)).expect("a's own list");
    // Signed with the shared key, `iss` A: not B's list.
    assert_eq!(
        kind(&v, &with_status(&idp, &b, &a_list, 1, now)),
        ErrorKind::StatusListUnavailable
    );
    assert_eq!(idp.requests(&format!("/{a}/status/l1")), 2, "fetched for a, then for b");
    v.verify(with_status(&idp, &a, &a_list, 1, now))
        .expect("a's list still serves a");
}

#[test]
fn a_template_without_lists_refuses_status_and_its_allowlist_is_checked_at_load() {
    let (idp, clock, v) = setup(TenantMode::PerTenant, |_| {});
    let a = tid(1);
    let uri = idp.publish_status_list(&a, "l1", 16);
    let before = idp.total_requests();
    assert_eq!(
        kind(&v, &with_status(&idp, &a, &uri, 1, clock.now_secs())),
        ErrorKind::StatusUriNotAllowed
    );
    assert_eq!(idp.total_requests(), before + 2, "discovery and keys only, no list");
    let bad = |status_list: Value| {
        let mut t = template(&idp, TenantMode::PerTenant);
        t["status_list"] = status_list;
        Config::from_value(config(vec![t], |_| {}))
            .expect_err("refused at load")
            .to_string()
    };
    for host in [
        "http://{tenant}.example.com/status",
        "http://idp:{tenant}/status",
        "http://u{tenant}@idp/status",
    ] {
        let e = bad(json!({ "allowed_uris": [host] }));
        assert!(e.contains("issuer_templates[0].status_list.allowed_uris[0]"), "{e}");
    }
    let e = bad(json!({ "allowed_uris": ["http://idp/{tenant}/status"], "preload": ["http://idp/x/status/1"] }));
    assert!(e.contains("issuer_templates[0].status_list.preload"), "{e}");
}

// ---- 2b. status lists for SPIFFE trust domains ---------------------------

const AUD: &str = "spiffe://example.org/api";

fn spiffe_config(b: &SpiffeBundleServer, status_list: Option<Value>, state_dir: Option<&std::path::Path>) -> Value {
    let mut d = json!({
        "trust_domain": b.trust_domain(),
        "bundle_endpoint": b.bundle_url(),
        "audiences": [AUD],
        "refresh": { "jitter": 0.0 },
    });
    if let Some(s) = status_list {
        d["status_list"] = s;
    }
    let mut cfg = json!({
        "spiffe": [d],
        "http": { "allow_http": true, "timeout_ms": 3000, "connect_timeout_ms": 500 },
        "background_refresh": false,
    });
    if let Some(dir) = state_dir {
        cfg["state_dir"] = json!(dir);
    }
    cfg
}

fn svid(b: &SpiffeBundleServer, kid: &str, clock: &ManualClock, status: Option<Value>) -> String {
    let mut c = b.claims("web", AUD, clock.now_secs());
    c["exp"] = json!(clock.now_secs() + 3600);
    if let Some(s) = status {
        c["status"] = s;
    }
    b.mint(kid, &c)
}

/// A Status List Token of `b`'s trust domain at `path`, with `statuses`.
fn publish_spiffe_list(b: &SpiffeBundleServer, kid: &str, path: &str, statuses: &[u8], iss: &str) -> String {
    let uri = b.serve(path, String::new());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": iss,
        "sub": uri,
        "iat": now,
        "ttl": 300,
        "status_list": { "bits": 2, "lst": jwtwarden_testissuer::encode_lst(2, statuses) },
    });
    b.serve(
        path,
        b.mint_with_header(kid, &json!({"typ": "statuslist+jwt"}), &claims),
    )
}

#[test]
fn a_jwt_svid_status_is_checked_when_the_trust_domain_allows_lists_and_refused_by_default() {
    let b = SpiffeBundleServer::start("example.org");
    let kid = b.published_kids()[0].clone();
    let uri = publish_spiffe_list(&b, &kid, "/status/1", &[0, 1, 0, 0], "spiffe://example.org");
    let clock = ManualClock::starting_now();
    let claim = |idx: usize| Some(json!({"status_list": {"idx": idx, "uri": uri}}));

    // Default: off, as before.
    let off = verifier_with(&clock, spiffe_config(&b, None, None));
    assert_eq!(
        kind(&off, &svid(&b, &kid, &clock, claim(0))),
        ErrorKind::StatusUriNotAllowed
    );
    off.verify(svid(&b, &kid, &clock, None)).expect("no status, no list");

    let allowed = json!({ "allowed_uris": [format!("{}/status", b.bundle_url().trim_end_matches("/bundle"))] });
    let v = verifier_with(&clock, spiffe_config(&b, Some(allowed.clone()), None));
    let ok = svid(&b, &kid, &clock, claim(0));
    v.verify(&ok).expect("VALID");
    assert!(v.verify(&ok).unwrap().cached());
    assert_eq!(kind(&v, &svid(&b, &kid, &clock, claim(1))), ErrorKind::Revoked);
    let outside = Some(json!({"status_list": {"idx": 0, "uri": "http://127.0.0.2:1/status/1"}}));
    assert_eq!(
        kind(&v, &svid(&b, &kid, &clock, outside)),
        ErrorKind::StatusUriNotAllowed
    );
    // A list naming another issuer is not the trust domain's.
    let other = publish_spiffe_list(&b, &kid, "/status/2", &[0], "https://idp.example.com");
    let foreign = Some(json!({"status_list": {"idx": 0, "uri": other}}));
    assert_eq!(
        kind(&v, &svid(&b, &kid, &clock, foreign.clone())),
        ErrorKind::StatusListUnavailable
    );

    // With `issuer` configured, the lists must name it instead.
    let mut cfg = spiffe_config(&b, Some(allowed), None);
    cfg["spiffe"][0]["issuer"] = json!("https://idp.example.com");
    let named = verifier_with(&clock, cfg);
    let with_iss = |status: Option<Value>| {
        let mut c = b.claims("web", AUD, clock.now_secs());
        c["iss"] = json!("https://idp.example.com");
        c["status"] = status.unwrap();
        b.mint(&kid, &c)
    };
    named
        .verify(with_iss(foreign))
        .expect("a list naming the configured issuer");
    assert_eq!(kind(&named, &with_iss(claim(0))), ErrorKind::StatusListUnavailable);
}

// ---- 3. the SPIFFE sequence across restarts ------------------------------

#[test]
fn a_bundle_endpoint_rolled_back_while_we_were_down_is_refused_after_a_restart() {
    let b = SpiffeBundleServer::start("example.org");
    let old = b.published_kids()[0].clone();
    let new = b.rotate(); // sequence 2: old and new
    b.retire(&old); // sequence 3: new only
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let first = verifier_with(&clock, spiffe_config(&b, None, Some(dir.path())));
    assert_eq!(kind(&first, &svid(&b, &old, &clock, None)), ErrorKind::UnknownKid);
    first.verify(svid(&b, &new, &clock, None)).expect("sequence 3");

    // While nothing runs, the endpoint is rolled back to sequence 2, whose
    // bundle still holds the retired key.
    b.rollback_to(2);
    // Past the bundle's refresh hint, so the restarted verifier fetches
    // rather than adopting the set persisted by the first one.
    clock.advance_secs(301);
    let fetched = b.requests();
    let second = verifier_with(&clock, spiffe_config(&b, None, Some(dir.path())));
    assert!(
        b.requests() > fetched,
        "the restarted verifier fetched the rolled-back bundle"
    );
    assert!(
        second.verify(svid(&b, &old, &clock, None)).is_err(),
        "the retired key of the rolled-back bundle is never accepted"
    );
    assert!(second
        .metrics()
        .issuers
        .iter()
        .any(|i| i.issuer == "spiffe://example.org" && i.fetch_failures >= 1));
    drop(first);
    let persisted = std::fs::read_to_string(dir.path().join("spiffe-example.org.sequence.json")).unwrap();
    assert!(persisted.contains("\"spiffe_sequence\":3"), "{persisted}");

    // Without state_dir the sequence lives in memory: the same rollback is
    // accepted by a fresh process (documented).
    let forgetful = verifier_with(&clock, spiffe_config(&b, None, None));
    forgetful
        .verify(svid(&b, &old, &clock, None))
        .expect("in memory only: a restart accepts the first bundle");
}
