//! `jwtwarden inspect`: show what a token says, WITHOUT verifying it.

use serde_json::{json, Map, Value};

use crate::decode::{self, Part};
use crate::{timefmt, Exit};

/// The loud marker on every `inspect` output.
pub const UNVERIFIED: &str = "UNVERIFIED: decoded without checking the signature or any claim. Do not trust it.";

/// Header members that point at keys. jwtwarden never follows them.
const KEY_POINTERS: &[&str] = &["jku", "jwk", "x5u", "x5c"];

/// Run `inspect` on one token.
pub fn run(token: &str, as_json: bool) -> Exit {
    let token = decode::clean(token);
    if token.is_empty() {
        return Exit::usage("no token given");
    }
    let d = decode::decode(token);
    let now = timefmt::now_secs();
    let times = time_claims(d.payload.object(), now);
    let warnings = warnings(&d);
    let readable = d.header.object().is_some() && (d.payload.object().is_some() || d.segments == 5);

    if as_json {
        let out = json!({
            "verified": false,
            "warning": UNVERIFIED,
            "fingerprint": jwtwarden::fingerprint(token.as_bytes()),
            "segments": d.segments,
            "header": d.header.to_json(),
            "claims": d.payload.to_json(),
            "signature_bytes": d.signature_bytes,
            "times": times.iter().map(|t| (t.name.to_string(), t.to_json())).collect::<Map<_, _>>(),
            "status": status_reference(d.payload.object()),
            "warnings": warnings,
            "notes": d.notes,
        });
        println!(
            "{}",
            crate::safe::json(serde_json::to_string_pretty(&out).expect("JSON serializes"))
        );
    } else {
        print_human(token, &d, &times, &warnings);
    }
    if readable {
        Exit::Ok
    } else {
        Exit::Failed
    }
}

struct TimeClaim {
    name: &'static str,
    value: Value,
    secs: Option<i64>,
    utc: Option<String>,
    relative: String,
}

impl TimeClaim {
    fn to_json(&self) -> Value {
        json!({"value": self.value, "utc": self.utc, "relative": self.relative})
    }
}

fn time_claims(claims: Option<&Map<String, Value>>, now: i64) -> Vec<TimeClaim> {
    let Some(claims) = claims else { return Vec::new() };
    ["exp", "nbf", "iat"]
        .into_iter()
        .filter_map(|name| {
            let value = claims.get(name)?.clone();
            // NumericDate may have a fraction; anything else is not a date.
            let secs = value.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64);
            let utc = secs.and_then(timefmt::iso_utc);
            let relative = match (secs, &utc) {
                (Some(s), Some(_)) => describe(name, s, now),
                (Some(_), None) => "out of range".into(),
                (None, _) => "not a number: not a valid NumericDate".into(),
            };
            Some(TimeClaim {
                name,
                value,
                secs,
                utc,
                relative,
            })
        })
        .collect()
}

fn describe(name: &str, at: i64, now: i64) -> String {
    let rel = timefmt::relative(at, now);
    match (name, at <= now) {
        ("exp", true) => format!("expired {rel}"),
        ("exp", false) => format!("expires {rel}"),
        ("nbf", true) => format!("valid from {rel}"),
        ("nbf", false) => format!("not valid yet: valid {rel}"),
        ("iat", true) => format!("issued {rel}"),
        (_, _) => format!("issued in the future: {rel}"),
    }
}

fn warnings(d: &decode::Decoded) -> Vec<String> {
    let mut w = Vec::new();
    if let Some(h) = d.header.object() {
        match h.get("alg").and_then(Value::as_str) {
            None => w.push("header has no string \"alg\"".into()),
            Some(a) if a.eq_ignore_ascii_case("none") => {
                w.push("alg is \"none\": an unsigned token, always rejected".into())
            }
            Some(a) if a.starts_with("HS") => w.push(format!(
                "alg {a} is HMAC: accepted only with a locally configured secret"
            )),
            Some(_) => {}
        }
        for p in KEY_POINTERS {
            if h.contains_key(*p) {
                w.push(format!("header has {p:?}: never used to find a key"));
            }
        }
        if h.contains_key("crit") {
            w.push("header has \"crit\": rejected (no extension is supported)".into());
        }
    }
    if let Some(c) = d.payload.object() {
        if !c.contains_key("exp") {
            w.push("no \"exp\" claim: rejected (exp is required)".into());
        }
        if !c.contains_key("aud") {
            w.push("no \"aud\" claim: rejected unless the issuer allows any audience".into());
        }
    }
    w
}

fn print_human(token: &str, d: &decode::Decoded, times: &[TimeClaim], warnings: &[String]) {
    let rule = "!".repeat(78);
    println!("{rule}");
    println!("!! {UNVERIFIED}");
    println!("{rule}");
    println!(
        "token     {} bytes, {} segment(s), fingerprint {}",
        token.len(),
        d.segments,
        jwtwarden::fingerprint(token.as_bytes())
    );
    match d.signature_bytes {
        Some(0) => println!("signature none (empty)"),
        Some(n) => println!("signature {n} bytes (NOT checked)"),
        None => println!("signature unreadable"),
    }
    print_part("header (unverified)", &d.header);
    print_part("claims (unverified)", &d.payload);
    if let Some(st) = status_reference(d.payload.object()) {
        println!("\nstatus (unverified)");
        match (st["uri"].as_str(), st["idx"].as_u64()) {
            (Some(uri), Some(idx)) => {
                let uri = crate::safe::text(uri);
                println!("  Token Status List {uri} entry {idx}");
                println!("  checked by a verifier only if the uri is under the issuer's status_list.allowed_uris");
                println!("  (see: jwtwarden status-list {uri})");
            }
            _ => println!("  {}", crate::safe::text(st["error"].as_str().unwrap_or("unreadable"))),
        }
    }
    if !times.is_empty() {
        println!(
            "\ntimes (UTC, now {})",
            timefmt::iso_utc(timefmt::now_secs()).unwrap_or_default()
        );
        for t in times {
            let shown = match (&t.utc, t.secs) {
                (Some(utc), _) => utc.clone(),
                (None, _) => crate::safe::json_value(&t.value),
            };
            println!("  {:<4} {:<22} {}", t.name, shown, t.relative);
        }
    }
    if !warnings.is_empty() || !d.notes.is_empty() {
        println!("\nwarnings");
        for w in warnings.iter().chain(&d.notes) {
            println!("  - {}", crate::safe::text(w));
        }
    }
    println!("\nTo verify it: jwtwarden verify --config FILE TOKEN");
}

/// The token's Token Status List reference (`status.status_list`), if it
/// has a `status` claim: `{"uri", "idx"}`, or `{"error"}` when malformed.
fn status_reference(claims: Option<&Map<String, Value>>) -> Option<Value> {
    let claims = claims?;
    claims.get("status")?;
    Some(match jwtwarden::status::reference(claims) {
        Ok(Some((uri, idx))) => json!({"uri": uri, "idx": idx}),
        Ok(None) => json!({"error": "status claim without a status_list reference"}),
        Err(e) => json!({"error": e.message()}),
    })
}

fn print_part(title: &str, part: &Part) {
    println!("\n{title}");
    let body = match part {
        Part::Object(m) => crate::safe::json(serde_json::to_string_pretty(m).expect("JSON serializes")),
        Part::OtherJson(v) => format!("{}   (JSON, but not an object)", crate::safe::json_value(v)),
        Part::NotJson(text) => format!("{}   (not JSON)", crate::safe::text(&format!("{text:?}"))),
        Part::Binary(n) => format!("({n} bytes, not text; not JSON)"),
        Part::NotBase64 => "(not base64url)".into(),
        Part::Missing => "(missing or encrypted)".into(),
    };
    for line in body.lines() {
        println!("  {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_claims_read_naturally() {
        let claims = json!({"exp": 1000, "nbf": 2000.5, "iat": "yesterday"});
        let t = time_claims(claims.as_object(), 1180);
        assert_eq!(t[0].relative, "expired 3 min ago");
        assert_eq!(t[0].utc.as_deref(), Some("1970-01-01T00:16:40Z"));
        assert_eq!(t[1].relative, "not valid yet: valid in 13 min");
        assert!(t[2].relative.contains("not a number"));
    }
}
