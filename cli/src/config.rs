//! Reading a configuration file: JSON or TOML, the same structure either way
//! (see `jwtwarden::config`).

use std::path::Path;

use jwtwarden::Config;
use serde_json::Value;

/// Read and validate the configuration in `path`. `.json` is parsed as JSON,
/// `.toml` as TOML; any other name is tried as JSON, then as TOML. The error
/// names the file and, for invalid settings, the field.
pub fn load(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let value = match ext.as_deref() {
        Some("json") => parse_json(&text),
        Some("toml") => parse_toml(&text),
        _ => parse_json(&text).or_else(|json_err| {
            parse_toml(&text).map_err(|toml_err| format!("neither JSON ({json_err}) nor TOML ({toml_err})"))
        }),
    }
    .map_err(|e| format!("config {}: {e}", path.display()))?;
    Config::from_value(value).map_err(|e| format!("config {}: {}", path.display(), e.message()))
}

fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))
}

fn parse_toml(text: &str) -> Result<Value, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| format!("invalid TOML: {}", e.to_string().trim_end()))?;
    Ok(toml_to_json(toml::Value::Table(table)))
}

/// TOML to the JSON data model. Datetimes (which the configuration never
/// uses) become strings, so the field that got one is named in the error.
fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_maps_onto_the_json_structure() {
        let v = parse_toml(
            r#"
            max_token_bytes = 8192
            [[issuers]]
            issuer = "https://idp.example.com"
            jwks_uri = "https://idp.example.com/jwks.json"
            audiences = ["api"]
            [issuers.refresh]
            jitter = 0.1
            "#,
        )
        .unwrap();
        assert_eq!(v["max_token_bytes"], 8192);
        assert_eq!(v["issuers"][0]["audiences"][0], "api");
        assert_eq!(v["issuers"][0]["refresh"]["jitter"], 0.1);
        let config = Config::from_value(v).unwrap();
        assert_eq!(config.issuers[0].issuer, "https://idp.example.com");
    }

    #[test]
    fn errors_name_the_field() {
        let v =
            parse_toml("[[issuers]]\nissuer = \"https://idp\"\njwks_uri = \"https://idp/j\"\naudiences = 5\n").unwrap();
        let e = Config::from_value(v).unwrap_err();
        assert!(e.message().contains("issuers[0].audiences"), "{e}");
    }
}
