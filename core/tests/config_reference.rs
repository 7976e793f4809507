//! The configuration reference in `docs/` is generated from the config
//! types and must match them: `docs/config.schema.json` (JSON Schema, for
//! editors) and `docs/config.md` (the same, as tables). Run with
//! `JWTWARDEN_BLESS=1` to rewrite both after changing the configuration.

use std::fmt::Write as _;
use std::path::PathBuf;

use jwtwarden::Config;
use serde_json::Value;

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

#[test]
fn config_reference_matches_the_code() {
    let schema = Config::json_schema();
    let json = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    let markdown = render(&schema);
    let targets = [("config.schema.json", json), ("config.md", markdown)];
    if std::env::var_os("JWTWARDEN_BLESS").is_some() {
        for (name, text) in &targets {
            std::fs::write(docs().join(name), text).unwrap();
        }
        return;
    }
    for (name, text) in &targets {
        let committed = std::fs::read_to_string(docs().join(name)).unwrap_or_default();
        assert!(
            committed == *text,
            "docs/{name} is out of date with the config types: run \
             JWTWARDEN_BLESS=1 cargo test -p jwtwarden --test config_reference, then commit it"
        );
    }
}

/// Every documented field has a default (or is required), and the schema
/// refuses unknown fields, like the loader.
#[test]
fn schema_refuses_unknown_fields_and_states_defaults() {
    let schema = Config::json_schema();
    assert_eq!(schema["additionalProperties"], false);
    let cache = &schema["$defs"]["CacheConfig"]["properties"];
    assert_eq!(cache["capacity"]["default"], 100_000);
    assert_eq!(cache["max_bytes"]["default"], 256 * 1024 * 1024);
    let hmac = &schema["$defs"]["HmacKeyConfig"];
    assert!(
        hmac["properties"]["secret_base64"].is_object(),
        "hmac_keys are documented"
    );
}

fn render(schema: &Value) -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         <!-- Generated from the config types (core/src/config.rs) by core/tests/config_reference.rs;\n\
         do not edit: run JWTWARDEN_BLESS=1 cargo test -p jwtwarden --test config_reference. -->\n\n\
         One format for every front end (Rust, C, C++, Go, Python, the CLI): JSON, or\n\
         the same structure in TOML (`Config::from_path` reads `.json` as JSON, `.toml`\n\
         as TOML, and tries any other name as JSON, then TOML). Unknown fields are\n\
         refused, and every error names the field (for example\n\
         `issuers[0].refresh.min_ttl_secs`). Editors can validate a config file with\n\
         [config.schema.json](config.schema.json).\n\n\
         ```json\n\
         {\n  \"issuers\": [{\n    \"issuer\": \"https://idp.example.com\",\n    \
         \"jwks_uri\": \"https://idp.example.com/.well-known/jwks.json\",\n    \
         \"audiences\": [\"orders-api\"]\n  }]\n}\n```\n",
    );
    section(&mut out, "Top level", schema, schema);
    let defs = schema["$defs"].as_object().expect("definitions");
    for (name, def) in defs {
        if def.get("properties").is_some() {
            section(&mut out, name, def, schema);
        }
    }
    out
}

fn section(out: &mut String, title: &str, def: &Value, root: &Value) {
    let _ = write!(out, "\n## {title}\n\n");
    if let Some(d) = def.get("description").and_then(Value::as_str) {
        let _ = write!(out, "{}\n\n", one_line(d));
    }
    out.push_str("| field | type | default | meaning |\n|---|---|---|---|\n");
    let required: Vec<&str> = def["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (field, prop) in def["properties"].as_object().expect("properties") {
        let default = if required.contains(&field.as_str()) {
            "required".to_string()
        } else {
            match prop.get("default") {
                Some(Value::Null) | None => "none".to_string(),
                // A section's defaults are listed in its own table.
                Some(Value::Object(_)) => "see its table".to_string(),
                Some(v) => format!("`{v}`"),
            }
        };
        let meaning = prop.get("description").and_then(Value::as_str).unwrap_or("");
        let _ = writeln!(
            out,
            "| `{field}` | {} | {default} | {} |",
            type_of(prop, root),
            one_line(meaning).replace('|', "\\|")
        );
    }
}

fn type_of(prop: &Value, root: &Value) -> String {
    if let Some(r) = prop.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        let def = &root["$defs"][name];
        return if def.get("properties").is_some() {
            format!("[{name}](#{})", name.to_ascii_lowercase())
        } else if let Some(values) = def.get("enum").or_else(|| def.get("oneOf")) {
            let names: Vec<String> = values
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .or_else(|| v["const"].as_str().map(str::to_owned))
                })
                .collect();
            names.join(" \\| ")
        } else {
            name.to_string()
        };
    }
    if let Some(any) = prop.get("anyOf").and_then(Value::as_array) {
        let parts: Vec<String> = any
            .iter()
            .filter(|p| p["type"] != "null")
            .map(|p| type_of(p, root))
            .collect();
        return format!("{} or null", parts.join(" or "));
    }
    match &prop["type"] {
        Value::String(t) if t == "array" => format!("array of {}", type_of(&prop["items"], root)),
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" or "),
        _ => "any".into(),
    }
}

/// Doc comments wrap lines; a table cell holds one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
