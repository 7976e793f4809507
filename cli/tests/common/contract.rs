//! The replay of `tests/http_contract.json` (docs/http.md), shared by the
//! front ends that run it: `serve` (serve_contract.rs), the nginx module
//! (nginx_module.rs) and the Apache module (apache_module.rs). Each test
//! keeps only how it starts its server, sends a request, and reads what the
//! application saw.

use std::collections::HashMap;

use jwtwarden_testissuer::TestIssuer;
use serde_json::{json, Value};

use super::now;
use super::serve::Resp;

/// The table.
pub fn table() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/http_contract.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The table's engine configuration, trusting `issuer`.
pub fn engine_config(table: &Value, issuer: &TestIssuer) -> String {
    table["config"]
        .to_string()
        .replace("{issuer}", &issuer.url())
        .replace("{jwks_uri}", &issuer.jwks_uri())
}

/// A token by the table's `token_recipe`.
pub fn mint(issuer: &TestIssuer, recipe: &Value) -> String {
    if let Some(t) = recipe["literal"].as_str() {
        return t.to_string();
    }
    let now = now() as i64;
    let mut claims = issuer.default_claims("user", now as u64);
    for (k, v) in recipe["claims"].as_object().into_iter().flatten() {
        claims[k] = v.clone();
    }
    for (k, v) in recipe["relative"].as_object().into_iter().flatten() {
        claims[k] = json!(now + v.as_i64().unwrap());
    }
    let first = issuer.first_kid();
    let mut t = match recipe["kid"].as_str() {
        Some(kid) => issuer.mint_with_header(
            &first,
            &json!({"alg": issuer.key_alg(&first).as_str(), "typ": "JWT", "kid": kid}),
            &claims,
        ),
        None => issuer.mint(&first, &claims),
    };
    if recipe["tamper"] == "signature" {
        let sig_at = t.rfind('.').unwrap() + 1;
        let i = sig_at + 10;
        let c = if &t[i..=i] == "A" { "B" } else { "A" };
        t.replace_range(i..=i, c);
    }
    t
}

/// Every named token of the table, minted by `issuer`.
pub fn tokens(table: &Value, issuer: &TestIssuer) -> HashMap<String, String> {
    table["tokens"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, recipe)| (name.clone(), mint(issuer, recipe)))
        .collect()
}

/// The rows (`cases`: every front end passes every one).
pub fn cases(table: &Value) -> Vec<&Value> {
    table["cases"].as_array().unwrap().iter().collect()
}

/// One row's request, its `{token:NAME}` placeholders filled.
pub struct Row<'a> {
    pub case: &'a Value,
    pub method: &'a str,
    pub path: &'a str,
    /// The request's header fields, tokens in place.
    pub headers: Vec<(String, String)>,
    /// The tokens put in the header fields (none may come back in a refusal).
    pub sent: Vec<String>,
}

impl<'a> Row<'a> {
    fn new(case: &'a Value, tokens: &HashMap<String, String>) -> Row<'a> {
        let req = &case["request"];
        let mut sent = Vec::new();
        let headers = req["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                let mut value = h[1].as_str().unwrap().to_string();
                for (t, token) in tokens {
                    let placeholder = format!("{{token:{t}}}");
                    if value.contains(&placeholder) {
                        value = value.replace(&placeholder, token);
                        sent.push(token.clone());
                    }
                }
                (h[0].as_str().unwrap().to_string(), value)
            })
            .collect();
        Row {
            case,
            method: req["method"].as_str().unwrap(),
            path: req["path"].as_str().unwrap(),
            headers,
            sent,
        }
    }

    /// The header fields as `request` takes them.
    pub fn fields(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
    }

    /// Sends the row `repeat` times (default once); the last answer.
    pub fn send(&self, mut send: impl FnMut() -> Resp) -> Resp {
        let mut r = None;
        for _ in 0..self.case["repeat"].as_u64().unwrap_or(1) {
            r = Some(send());
        }
        r.unwrap()
    }
}

/// What a replay found.
pub struct Replay {
    /// One line per row that differs: its name, its problems, the answer.
    pub failures: Vec<String>,
    /// Rows not replayed.
    pub skipped: usize,
}

/// Replays every row but the closed-verifier one: no front end can close
/// its own verifier, and that row (500, usage) is the refusal table's,
/// checked in the core (http::refusal::tests::every_engine_kind_maps_to_a_status_by_category).
/// `answer` sends the row and returns the answer and its problems.
pub fn replay(
    table: &Value,
    tokens: &HashMap<String, String>,
    mut answer: impl FnMut(&Row) -> (Resp, Vec<String>),
) -> Replay {
    let cases = cases(table);
    let mut failures = Vec::new();
    let mut replayed = 0;
    for &case in &cases {
        if case["verifier"] == "closed" {
            continue;
        }
        let row = Row::new(case, tokens);
        let (r, problems) = answer(&row);
        replayed += 1;
        if !problems.is_empty() {
            let name = case["name"].as_str().unwrap();
            failures.push(format!("{name}: {}\n    {r:?}", problems.join("; ")));
        }
    }
    Replay {
        failures,
        skipped: cases.len() - replayed,
    }
}

/// `'*'` is any non-empty value; a value ending with `*` is a prefix.
pub fn matches(expected: &str, actual: Option<&str>) -> bool {
    match (expected, actual) {
        (_, None) => false,
        ("*", Some(a)) => !a.is_empty(),
        (e, Some(a)) => match e.strip_suffix('*') {
            Some(prefix) => a.starts_with(prefix),
            None => a == e,
        },
    }
}

/// The row's status against the answer's.
pub fn check_status(case: &Value, r: &Resp) -> Vec<String> {
    let status = case["expect"]["status"].as_u64().unwrap();
    if u64::from(r.status) != status {
        return vec![format!("status {} (want {status})", r.status)];
    }
    Vec::new()
}

/// What the application saw of an allowed request: the `sub` and `cached`
/// of its answer, `None` where it would say null.
pub struct Seen {
    pub sub: Option<String>,
    pub cached: Option<String>,
}

/// The problems of an answer to a row. `seen` reads what the application
/// saw (asked only for an allowed request); `app_headers` are expected
/// headers not checked on an allowed answer, being the application's own.
pub fn check(
    case: &Value,
    r: &Resp,
    sent: &[String],
    seen: impl FnOnce(&Resp) -> Seen,
    app_headers: &[&str],
) -> Vec<String> {
    let mut problems = check_status(case, r);
    let expect = &case["expect"];
    let status = expect["status"].as_u64().unwrap();
    for (name, want) in expect["headers"].as_object().into_iter().flatten() {
        let want = want.as_str().unwrap();
        if status < 400 && app_headers.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            continue;
        }
        if !matches(want, r.header(name)) {
            problems.push(format!("{name}: {:?} (want {want:?})", r.header(name)));
        }
    }
    for name in expect["absent_headers"].as_array().into_iter().flatten() {
        let name = name.as_str().unwrap();
        if let Some(v) = r.header(name) {
            problems.push(format!("{name}: {v:?} (want none)"));
        }
    }
    if status < 400 {
        let seen = seen(r);
        let body = &expect["body"];
        let sub = body["sub"].as_str();
        if seen.sub.as_deref() != sub {
            problems.push(format!("sub {:?} (want {sub:?})", seen.sub));
        }
        let cached = body["cached"].as_bool().map(|c| c.to_string());
        if seen.cached != cached {
            problems.push(format!("cached {:?} (want {cached:?})", seen.cached));
        }
        return problems;
    }
    if r.header("cache-control") != Some("no-store") {
        problems.push("a refusal without Cache-Control: no-store".into());
    }
    let got: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    for (k, want) in expect["body"].as_object().into_iter().flatten() {
        let ok = match want {
            Value::String(w) => matches(w, got[k].as_str()),
            w => &got[k] == w,
        };
        if !ok {
            problems.push(format!("body.{k}: {} (want {want})", got[k]));
        }
    }
    for t in sent {
        if r.body.contains(t.as_str()) || r.headers.iter().any(|(_, v)| v.contains(t.as_str())) {
            problems.push("the refusal repeats a token sent".into());
        }
    }
    problems
}
