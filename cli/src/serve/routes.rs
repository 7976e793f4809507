//! Per-route rules, chosen from the original request's path and method.
//!
//! The path comes from a proxy header and is the *raw* request target
//! (nginx's `$request_uri`, Traefik's `X-Forwarded-Uri`), while the upstream
//! usually acts on a normalised one. So matching works on a normalised path
//! (percent-decoded, dot segments resolved, repeated slashes merged):
//! `/public/../admin` must not pick the rules of `/public/`.

use serde::Deserialize;
use serde_json::{Map, Value};

/// One `[[routes]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    prefix: String,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    open: bool,
    issuer: Option<String>,
    #[serde(default)]
    fresh: bool,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    audiences: Vec<String>,
}

/// A validated route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Matches paths equal to it or below it (at a `/` boundary when it does
    /// not end with one).
    pub prefix: String,
    /// Upper-case methods; empty = any.
    pub methods: Vec<String>,
    /// No token needed (health checks, CORS preflight).
    pub open: bool,
    /// Verify for this configured issuer only.
    pub issuer: Option<String>,
    /// Check the signature even on a cache hit.
    pub fresh: bool,
    /// Every one of these must be granted (`scope` or `scp`).
    pub scopes: Vec<String>,
    /// `aud` must contain at least one of these.
    pub audiences: Vec<String>,
}

impl Route {
    /// Validate one route; errors start with the field name.
    pub fn new(c: RouteConfig) -> Result<Route, String> {
        if !c.prefix.starts_with('/') || normalize(&c.prefix).as_deref() != Some(c.prefix.as_str()) {
            return Err(format!("prefix: {:?} must be a normalised absolute path", c.prefix));
        }
        let methods = c
            .methods
            .iter()
            .map(|m| {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                    Err(format!("methods: {m:?} is not a method"))
                } else {
                    Ok(m.to_ascii_uppercase())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if c.scopes.iter().any(|s| s.is_empty() || s.contains(char::is_whitespace)) {
            return Err("scopes: a scope is one non-empty word".into());
        }
        if c.open && (c.issuer.is_some() || c.fresh || !c.scopes.is_empty() || !c.audiences.is_empty()) {
            return Err("open: an open route takes no token, so it cannot have token rules".into());
        }
        Ok(Route {
            prefix: c.prefix,
            methods,
            open: c.open,
            issuer: c.issuer,
            fresh: c.fresh,
            scopes: c.scopes,
            audiences: c.audiences,
        })
    }

    fn matches(&self, path: &str, method: &str) -> bool {
        let under = path == self.prefix
            || path.starts_with(&self.prefix)
                && (self.prefix.ends_with('/') || path.as_bytes().get(self.prefix.len()) == Some(&b'/'));
        under && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }
}

/// The configured routes.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

/// The rules of the default route: any token the engine accepts.
static DEFAULT: Route = Route {
    prefix: String::new(),
    methods: Vec::new(),
    open: false,
    issuer: None,
    fresh: false,
    scopes: Vec::new(),
    audiences: Vec::new(),
};

impl Routes {
    /// Routes in configuration order.
    pub fn new(routes: Vec<Route>) -> Routes {
        Routes { routes }
    }

    /// True when no route is configured (the original URI is then not needed).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Every issuer a route pins (checked against the engine at start).
    pub fn pinned_issuers(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().filter_map(|r| r.issuer.as_deref())
    }

    /// The route for a normalised path and method: the longest matching
    /// prefix (the first configured among equals), else the default rules.
    pub fn select(&self, path: &str, method: &str) -> &Route {
        self.routes
            .iter()
            .filter(|r| r.matches(path, method))
            .fold(None::<&Route>, |best, r| match best {
                Some(b) if b.prefix.len() >= r.prefix.len() => Some(b),
                _ => Some(r),
            })
            .unwrap_or(&DEFAULT)
    }
}

/// The path of a request target, normalised for matching: query and
/// fragment dropped, percent-escapes decoded, `.` and `..` segments
/// resolved, repeated slashes merged. `None` for a target that is not an
/// absolute path or decodes to control characters or invalid UTF-8 (refused
/// rather than guessed at).
pub fn normalize(target: &str) -> Option<String> {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return None;
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            decoded.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(decoded).ok()?;
    if decoded.chars().any(|c| c.is_control() || c == '\\') {
        return None;
    }
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    // A trailing slash (or a trailing dot segment) names a directory; keep it
    // so `/admin/` routes match `/admin/` itself.
    if out.is_empty() || decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..") {
        out.push('/');
    }
    Some(out)
}

/// Whether the verified claims grant every scope in `required`. Scopes come
/// from `scope` (RFC 8693: one space-separated string) or `scp` (an array
/// of strings, or a space-separated string, as some issuers send).
pub fn has_scopes(claims: &Map<String, Value>, required: &[String]) -> bool {
    if required.is_empty() {
        return true;
    }
    let mut granted: Vec<&str> = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => granted.extend(s.split(' ').filter(|s| !s.is_empty())),
            Some(Value::Array(items)) => granted.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    required.iter().all(|r| granted.contains(&r.as_str()))
}

/// Whether `aud` (a string or an array of strings) contains one of `accepted`.
pub fn has_audience(claims: &Map<String, Value>, accepted: &[String]) -> bool {
    if accepted.is_empty() {
        return true;
    }
    match claims.get("aud") {
        Some(Value::String(a)) => accepted.contains(a),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|a| accepted.iter().any(|x| x == a)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(toml: &str) -> Route {
        Route::new(toml::from_str(toml).unwrap()).unwrap()
    }

    #[test]
    fn normalisation_defeats_traversal_and_encoding_tricks() {
        let n = |s| normalize(s);
        assert_eq!(n("/a/b?x=1#f").as_deref(), Some("/a/b"));
        assert_eq!(n("/public/../admin/x").as_deref(), Some("/admin/x"));
        assert_eq!(n("/public/%2e%2e/admin").as_deref(), Some("/admin"));
        assert_eq!(n("//admin///x").as_deref(), Some("/admin/x"));
        assert_eq!(n("/%61dmin/").as_deref(), Some("/admin/"));
        assert_eq!(n("/../../etc").as_deref(), Some("/etc"));
        assert_eq!(n("/admin/.").as_deref(), Some("/admin/"));
        assert_eq!(n("/").as_deref(), Some("/"));
        assert_eq!(n("/a%0d%0ab"), None);
        assert_eq!(n("/a%zz"), None);
        assert_eq!(n("/a%2"), None);
        assert_eq!(n("/a\\..\\b"), None);
        assert_eq!(n("http://x/a"), None);
        assert_eq!(n("/%ff"), None);
    }

    #[test]
    fn the_longest_prefix_wins_and_methods_filter() {
        let routes = Routes::new(vec![
            route("prefix = \"/\"\nscopes = [\"read\"]"),
            route("prefix = \"/admin\"\nscopes = [\"admin\"]\nfresh = true"),
            route("prefix = \"/admin/health\"\nopen = true\nmethods = [\"get\"]"),
            route("prefix = \"/api/\"\nmethods = [\"OPTIONS\"]\nopen = true"),
        ]);
        assert_eq!(routes.select("/admin", "GET").scopes, ["admin"]);
        assert_eq!(routes.select("/admin/users", "GET").scopes, ["admin"]);
        assert_eq!(
            routes.select("/administrator", "GET").scopes,
            ["read"],
            "a prefix ends at a segment"
        );
        assert!(routes.select("/admin/health", "GET").open);
        assert!(!routes.select("/admin/health", "POST").open, "method must match");
        assert!(routes.select("/api/x", "OPTIONS").open);
        assert_eq!(routes.select("/api/x", "GET").scopes, ["read"]);
        assert_eq!(Routes::default().select("/x", "GET"), &DEFAULT);
    }

    #[test]
    fn routes_are_validated() {
        let bad = |t: &str| Route::new(toml::from_str(t).unwrap()).unwrap_err();
        assert!(bad("prefix = \"admin\"").starts_with("prefix"));
        assert!(bad("prefix = \"/a/../b\"").starts_with("prefix"));
        assert!(bad("prefix = \"/a\"\nopen = true\nscopes = [\"x\"]").starts_with("open"));
        assert!(bad("prefix = \"/a\"\nscopes = [\"a b\"]").starts_with("scopes"));
        assert!(bad("prefix = \"/a\"\nmethods = [\"GE T\"]").starts_with("methods"));
    }

    #[test]
    fn scopes_from_scope_or_scp() {
        let req = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = |v: Value| v.as_object().unwrap().clone();
        assert!(has_scopes(
            &c(json!({"scope": "read  write"})),
            &req(&["write", "read"])
        ));
        assert!(!has_scopes(&c(json!({"scope": "read"})), &req(&["write"])));
        assert!(has_scopes(&c(json!({"scp": ["admin", "read"]})), &req(&["admin"])));
        assert!(has_scopes(&c(json!({"scp": "admin"})), &req(&["admin"])));
        assert!(!has_scopes(&c(json!({"scope": "readwrite"})), &req(&["read"])));
        assert!(!has_scopes(&c(json!({})), &req(&["read"])));
        assert!(has_scopes(&c(json!({})), &[]));
    }

    #[test]
    fn audience_string_or_array() {
        let c = |v: Value| v.as_object().unwrap().clone();
        let acc = vec!["orders".to_string()];
        assert!(has_audience(&c(json!({"aud": "orders"})), &acc));
        assert!(has_audience(&c(json!({"aud": ["x", "orders"]})), &acc));
        assert!(!has_audience(&c(json!({"aud": "api"})), &acc));
        assert!(!has_audience(&c(json!({})), &acc));
        assert!(has_audience(&c(json!({})), &[]));
    }
}
