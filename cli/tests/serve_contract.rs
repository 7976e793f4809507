//! Every row of `tests/http_contract.json` replayed against a real
//! `jwtwarden serve`, as the Go and Python harnesses replay it against
//! their middlewares (docs/http.md).
//!
//! serve is a forward-auth server, not a middleware around an application,
//! so the table's pieces are mapped as nginx `auth_request` would use
//! them: the case's method and path go to `/auth` as `X-Original-Method`
//! and `X-Original-URI`; the middleware options become serve routes
//! (`skip_paths` open routes, exact unless the pattern ends with `*`;
//! `fresh_paths` fresh routes; `OPTIONS` an open method, the middlewares'
//! default); and the application's answer `{"sub", "cached"}` is read from
//! serve's answer headers (`sub` as a claim header, `cached` as
//! `cached_header`), absent where the application would say null.

mod common;

use common::contract::{self, Seen};
use common::serve::{request, Serve};
use jwtwarden_testissuer::TestIssuer;
use serde_json::Value;

const SUB_HEADER: &str = "x-contract-sub";
const CACHED_HEADER: &str = "x-contract-cached";

/// serve's file for the table's middleware options.
fn serve_toml(mw: &Value, retry_after: &str) -> String {
    let mut routes = String::new();
    for p in mw["skip_paths"].as_array().unwrap() {
        let p = p.as_str().unwrap();
        match p.strip_suffix('*') {
            Some(prefix) => routes.push_str(&format!("[[routes]]\nprefix = {prefix:?}\nopen = true\n")),
            None => routes.push_str(&format!("[[routes]]\nprefix = {p:?}\nexact = true\nopen = true\n")),
        }
    }
    for p in mw["fresh_paths"].as_array().unwrap() {
        let prefix = p
            .as_str()
            .unwrap()
            .strip_suffix('*')
            .expect("fresh paths are prefixes here");
        routes.push_str(&format!("[[routes]]\nprefix = {prefix:?}\nfresh = true\n"));
    }
    format!(
        "realm = {:?}\nretry_after_secs = {retry_after}\nopen_methods = [\"OPTIONS\"]\ncached_header = \"X-Contract-Cached\"\n\
         [claim_headers]\nsub = \"X-Contract-Sub\"\n{routes}",
        mw["realm"].as_str().unwrap()
    )
}

#[test]
fn every_contract_row_holds_against_serve() {
    let table = contract::table();
    let issuer = TestIssuer::start();
    let dir = tempfile::tempdir().unwrap();
    let engine_path = dir.path().join("engine.json");
    std::fs::write(&engine_path, contract::engine_config(&table, &issuer)).unwrap();
    let serve_path = dir.path().join("serve.toml");
    let retry_after = table["retry_after"].as_str().unwrap();
    std::fs::write(&serve_path, serve_toml(&table["middleware"], retry_after)).unwrap();
    let serve = Serve::start(&engine_path, Some(&serve_path));

    let tokens = contract::tokens(&table, &issuer);
    let replay = contract::replay(&table, &tokens, |row| {
        let mut all = row.fields();
        all.push(("X-Original-URI", row.path));
        all.push(("X-Original-Method", row.method));
        let r = row.send(|| request(&serve.addr, row.method, "/auth", &all, ""));
        // The application's answer, as serve's answer headers.
        let seen = |r: &common::serve::Resp| Seen {
            sub: r.header(SUB_HEADER).map(str::to_string),
            cached: r.header(CACHED_HEADER).map(str::to_string),
        };
        let problems = contract::check(row.case, &r, &row.sent, seen, &[]);
        (r, problems)
    });
    assert!(
        replay.failures.is_empty(),
        "rows that differ:\n{}",
        replay.failures.join("\n")
    );
    assert_eq!(replay.skipped, 1, "only the closed-verifier row is skipped");
}
