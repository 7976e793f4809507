//! Per-route rules, chosen from the original request's path and method.
//!
//! The path comes from a proxy header and is the *raw* request target
//! (nginx's `$request_uri`, Traefik's `X-Forwarded-Uri`), while upstreams
//! read it in different ways. So matching works on [`path::normalise`]'s
//! two readings (normalised, and decoded as sent) and a request gets the
//! rules of both: `/public/../admin` must not pick the rules of `/public/`,
//! nor `/admin/../public` those of `/public/` for an upstream that does not
//! resolve dot segments. Protected routes match whatever the case (an
//! upstream may fold it); open routes only as written.
//!
//! [`path::normalise`]: super::path::normalise

use serde::Deserialize;
use serde_json::{Map, Value};

use super::path::{normalise, Normalised};

/// One route entry as written (a serve file's `[[routes]]`, the C ABI's
/// policy JSON `routes`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    prefix: String,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    exact: bool,
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
    /// not end with one); case-insensitively unless the route is open.
    pub prefix: String,
    /// Matches the path `prefix` only, nothing below it.
    pub exact: bool,
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
        let normal = normalise(&c.prefix).is_ok_and(|n| n.literal.is_none() && n.path == c.prefix);
        if !c.prefix.starts_with('/') || c.prefix.contains(['?', '#']) || !normal {
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
            exact: c.exact,
            methods,
            open: c.open,
            issuer: c.issuer,
            fresh: c.fresh,
            scopes: c.scopes,
            audiences: c.audiences,
        })
    }

    fn matches(&self, path: &str, method: &str) -> bool {
        let (p, prefix) = (path.as_bytes(), self.prefix.as_bytes());
        let head = p.get(..prefix.len());
        // An open route opens only the spelling it was written with; a
        // protected one also covers `/ADMIN` for an upstream that folds case.
        let same = |a: &[u8]| {
            if self.open {
                a == prefix
            } else {
                a.eq_ignore_ascii_case(prefix)
            }
        };
        let under = if self.exact {
            p.len() == prefix.len() && same(p)
        } else {
            head.is_some_and(same)
                && (p.len() == prefix.len() || prefix.ends_with(b"/") || p.get(prefix.len()) == Some(&b'/'))
        };
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
    exact: false,
    methods: Vec::new(),
    open: false,
    issuer: None,
    fresh: false,
    scopes: Vec::new(),
    audiences: Vec::new(),
};

/// The rules when no route is configured: any token the engine accepts.
pub fn default_rules() -> &'static Route {
    &DEFAULT
}

impl Routes {
    /// Routes in configuration order.
    pub fn new(routes: Vec<Route>) -> Routes {
        Routes { routes }
    }

    /// The routes, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// True when no route is configured (the original URI is then not needed).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Every issuer a route pins (checked against the engine at start).
    pub fn pinned_issuers(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().filter_map(|r| r.issuer.as_deref())
    }

    /// The rules for a path and method. Each reading of the path (see
    /// [`Normalised`]) picks the longest matching prefix (the first
    /// configured among equals). When the readings pick different routes,
    /// an open one never wins; a protected route wins over none; two
    /// different protected routes are refused (`Err`).
    pub fn select(&self, path: &Normalised, method: &str) -> Result<&Route, &'static str> {
        let normal = self.best(&path.path, method);
        let Some(literal) = &path.literal else {
            return Ok(normal.unwrap_or(&DEFAULT));
        };
        let literal = self.best(literal, method);
        let same = |a: Option<&Route>, b: Option<&Route>| match (a, b) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if same(normal, literal) {
            return Ok(normal.unwrap_or(&DEFAULT));
        }
        match (normal.filter(|r| !r.open), literal.filter(|r| !r.open)) {
            (None, None) => Ok(&DEFAULT),
            (Some(r), None) | (None, Some(r)) => Ok(r),
            (Some(_), Some(_)) => Err("the original URI reads as two different protected routes"),
        }
    }

    /// The rules for the route path `path` alone (a route's own test).
    #[cfg(test)]
    fn select_path(&self, path: &str, method: &str) -> &Route {
        self.best(path, method).unwrap_or(&DEFAULT)
    }

    fn best(&self, path: &str, method: &str) -> Option<&Route> {
        self.routes
            .iter()
            .filter(|r| r.matches(path, method))
            .fold(None::<&Route>, |best, r| match best {
                Some(b) if b.prefix.len() >= r.prefix.len() => Some(b),
                _ => Some(r),
            })
    }
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
    fn the_longest_prefix_wins_and_methods_filter() {
        let routes = Routes::new(vec![
            route("prefix = \"/\"\nscopes = [\"read\"]"),
            route("prefix = \"/admin\"\nscopes = [\"admin\"]\nfresh = true"),
            route("prefix = \"/admin/health\"\nopen = true\nmethods = [\"get\"]"),
            route("prefix = \"/api/\"\nmethods = [\"OPTIONS\"]\nopen = true"),
        ]);
        assert_eq!(routes.select_path("/admin", "GET").scopes, ["admin"]);
        assert_eq!(routes.select_path("/admin/users", "GET").scopes, ["admin"]);
        assert_eq!(
            routes.select_path("/administrator", "GET").scopes,
            ["read"],
            "a prefix ends at a segment"
        );
        assert!(routes.select_path("/admin/health", "GET").open);
        assert!(!routes.select_path("/admin/health", "POST").open, "method must match");
        assert!(routes.select_path("/api/x", "OPTIONS").open);
        assert_eq!(routes.select_path("/api/x", "GET").scopes, ["read"]);
        assert_eq!(Routes::default().select_path("/x", "GET"), &DEFAULT);
    }

    #[test]
    fn both_readings_of_a_path_and_its_case() {
        let routes = Routes::new(vec![
            route("prefix = \"/admin/\"\nscopes = [\"admin\"]"),
            route("prefix = \"/public/\"\nopen = true"),
            route("prefix = \"/healthz\"\nexact = true\nopen = true"),
            route("prefix = \"/api/\"\nscopes = [\"api\"]"),
        ]);
        let sel = |p: &str| routes.select(&normalise(p).unwrap(), "GET").map(|r| r.prefix.as_str());
        assert_eq!(sel("/ADMIN/x"), Ok("/admin/"));
        assert_eq!(sel("/PUBLIC/x"), Ok(""), "an open route matches as written");
        assert_eq!(sel("/public/x"), Ok("/public/"));
        assert_eq!(sel("/public/../admin/x"), Ok("/admin/"));
        assert_eq!(sel("/admin/../public/x"), Ok("/admin/"), "the literal reading");
        assert_eq!(sel("/admin;x=1/y"), Ok("/admin/"));
        assert_eq!(sel("/public;x/y"), Ok(""), "an open route never wins a disagreement");
        assert_eq!(sel("/public/./y"), Ok("/public/"), "both readings open");
        assert!(sel("/api/../admin/x").is_err(), "two protected readings");
        assert_eq!(sel("/healthz"), Ok("/healthz"));
        assert_eq!(sel("/healthz/x"), Ok(""));
        assert_eq!(sel("/healthz/"), Ok(""));
    }

    #[test]
    fn routes_are_validated() {
        let bad = |t: &str| Route::new(toml::from_str(t).unwrap()).unwrap_err();
        assert!(bad("prefix = \"admin\"").starts_with("prefix"));
        assert!(bad("prefix = \"/a/../b\"").starts_with("prefix"));
        assert!(bad("prefix = \"/a;x/b\"").starts_with("prefix"));
        assert!(bad("prefix = \"/a./b\"").starts_with("prefix"));
        assert!(bad("prefix = \"/a//b\"").starts_with("prefix"));
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
