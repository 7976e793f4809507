//! Issuer templates: which `iss` values a family of issuers covers, and
//! the URLs a member's keys are fetched from.
//!
//! A template is an issuer URL with one `{tenant}` placeholder in its path.
//! A token's `iss` matches when it is, byte for byte, the text before the
//! placeholder, a tenant, and the text after it. The tenant must be
//! non-empty, not `.` or `..`, hold none of `/ ? # @ %` (so it can neither
//! leave its path segment, start a query or fragment, smuggle userinfo nor
//! hide anything behind percent-encoding), and match the configured
//! pattern, anchored at both ends. Fetch URLs are the template's own text
//! with that tenant put in, so they always name the template's scheme, host
//! and port: a template whose placeholder could reach the authority part is
//! refused when the configuration is loaded.
//!
//! The pattern is a `regex` crate expression: linear-time matching (no
//! backtracking a hostile `iss` could make slow), no look-around, and the
//! same syntax users know from most engines. It is compiled anchored, as
//! `^(?:pattern)$`, whatever it says itself.

use regex::Regex;

use crate::error::{Error, ErrorKind, Result};

/// The placeholder, in `issuer` and `jwks_uri`.
pub(crate) const PLACEHOLDER: &str = "{tenant}";

/// Characters a tenant never holds, whatever its pattern says.
const FORBIDDEN: [char; 5] = ['/', '?', '#', '@', '%'];

/// The fields of one `issuer_templates` entry that decide matching and URLs
/// (borrowed from the configuration).
pub(crate) struct Spec<'a> {
    pub issuer: &'a str,
    pub tenant_pattern: &'a str,
    pub discovery: bool,
    pub jwks_uri: Option<&'a str>,
    pub tenants: &'a [String],
}

/// Where a member's keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Keys {
    /// OIDC discovery from the member's issuer.
    Discovery,
    /// A JWKS URL per member: the text around the placeholder.
    PerTenant(String, String),
    /// One JWKS URL for every member (Entra ID style).
    Shared(String),
}

/// A compiled template.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    prefix: String,
    suffix: String,
    pattern: Regex,
    allow: std::collections::HashSet<String>,
    pub keys: Keys,
}

/// One issuer template's counters (`Verifier::template_stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TemplateStats {
    /// The template's `issuer`, with its `{tenant}` placeholder.
    pub template: String,
    /// Tenants held now.
    pub tenants_held: u64,
    /// Tenants materialised since the start.
    pub materialised: u64,
    /// Tenants evicted (idle) to stay within `max_tenants`.
    pub evicted: u64,
    /// Tokens of a new tenant refused because `new_tenant_fetches_per_minute` was spent.
    pub refused_budget: u64,
    /// Tokens refused because their tenant does not match `tenant_pattern`.
    pub refused_pattern: u64,
    /// Tokens refused because their tenant is not in `tenants`.
    pub refused_allowlist: u64,
    /// Tokens refused because their tenant's first fetch failed recently.
    pub refused_unavailable: u64,
}

/// Why a matching `iss` names no member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The tenant breaks the pattern or the fixed character rules.
    Pattern,
    /// The tenant is not in the allowlist.
    NotAllowed,
}

impl Template {
    /// Compile a template. Errors name the field (without the entry's own
    /// path, which the caller adds).
    pub(crate) fn new(spec: &Spec<'_>, allow_http: bool) -> Result<Template> {
        let bad = |field: &str, why: &str| Err(Error::new(ErrorKind::InvalidConfig, format!("{field}: {why}")));
        let Some((prefix, suffix)) = split_once_only(spec.issuer) else {
            return bad("issuer", "must hold the placeholder {tenant} exactly once");
        };
        if let Err(why) = in_path(spec.issuer, prefix, allow_http) {
            return bad("issuer", &why);
        }
        let keys = match (spec.discovery, spec.jwks_uri) {
            (true, None) => Keys::Discovery,
            (false, Some(uri)) => match split_once_only(uri) {
                Some((p, s)) => {
                    if let Err(why) = in_path(uri, p, allow_http) {
                        return bad("jwks_uri", &why);
                    }
                    Keys::PerTenant(p.to_string(), s.to_string())
                }
                None if uri.contains(PLACEHOLDER) => {
                    return bad("jwks_uri", "must hold the placeholder {tenant} at most once")
                }
                None => {
                    if let Err(why) = scheme_ok(uri, allow_http) {
                        return bad("jwks_uri", &why);
                    }
                    Keys::Shared(uri.to_string())
                }
            },
            _ => return bad("jwks_uri", "give exactly one of discovery and jwks_uri"),
        };
        let pattern = match Regex::new(&format!("^(?:{})$", spec.tenant_pattern)) {
            Ok(r) => r,
            Err(e) => return bad("tenant_pattern", &format!("not a valid regular expression: {e}")),
        };
        let mut t = Template {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
            pattern,
            allow: Default::default(),
            keys,
        };
        for (i, tenant) in spec.tenants.iter().enumerate() {
            if !t.fits(tenant) {
                return bad(&format!("tenants[{i}]"), "does not match tenant_pattern");
            }
            t.allow.insert(tenant.clone());
        }
        Ok(t)
    }

    /// The tenant `iss` names under this template, if it has the template's
    /// shape at all (`None`: not this family). `Err` when it has the shape
    /// but names no member.
    pub(crate) fn tenant_of<'a>(&self, iss: &'a str) -> Option<std::result::Result<&'a str, Refusal>> {
        let tenant = iss.strip_prefix(&self.prefix)?.strip_suffix(&self.suffix)?;
        if !self.fits(tenant) {
            return Some(Err(Refusal::Pattern));
        }
        if !self.allow.is_empty() && !self.allow.contains(tenant) {
            return Some(Err(Refusal::NotAllowed));
        }
        Some(Ok(tenant))
    }

    /// Whether `tenant` passes the fixed rules and the pattern.
    fn fits(&self, tenant: &str) -> bool {
        !tenant.is_empty()
            && tenant != "."
            && tenant != ".."
            && !tenant.contains(FORBIDDEN)
            && !tenant.chars().any(char::is_control)
            && self.pattern.is_match(tenant)
    }

    /// The member's issuer: the template with `tenant` put in.
    pub(crate) fn issuer(&self, tenant: &str) -> String {
        format!("{}{tenant}{}", self.prefix, self.suffix)
    }

    /// The template's issuer as configured (with the placeholder).
    pub(crate) fn name(&self) -> String {
        self.issuer(PLACEHOLDER)
    }

    /// The member's JWKS URL, if not found by discovery.
    pub(crate) fn jwks_uri(&self, tenant: &str) -> Option<String> {
        match &self.keys {
            Keys::Discovery => None,
            Keys::PerTenant(p, s) => Some(format!("{p}{tenant}{s}")),
            Keys::Shared(u) => Some(u.clone()),
        }
    }
}

/// The text around the one placeholder, if there is exactly one.
fn split_once_only(text: &str) -> Option<(&str, &str)> {
    let (p, s) = text.split_once(PLACEHOLDER)?;
    (!s.contains(PLACEHOLDER)).then_some((p, s))
}

fn scheme_ok(url: &str, allow_http: bool) -> std::result::Result<(), String> {
    if url.starts_with("https://") || (allow_http && url.starts_with("http://")) {
        Ok(())
    } else {
        Err("must be an https:// URL (http:// only with http.allow_http)".into())
    }
}

/// The placeholder (which starts after `prefix`) sits in the path: the
/// prefix holds the whole authority and the `/` that ends it, and nothing
/// of a query or fragment.
fn in_path(url: &str, prefix: &str, allow_http: bool) -> std::result::Result<(), String> {
    scheme_ok(url, allow_http)?;
    let rest = &prefix[prefix.find("://").map_or(0, |i| i + 3)..];
    match rest.find('/') {
        Some(0) | None => Err("the placeholder {tenant} must be in the path, after the host \
             (a tenant could otherwise choose the host fetched from)"
            .into()),
        Some(_) if rest.contains(['?', '#']) => {
            Err("the placeholder {tenant} must be in the path, not in a query or fragment".into())
        }
        Some(_) if rest[..rest.find('/').unwrap_or(0)].contains('@') => Err("the URL must not hold userinfo".into()),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(issuer: &str, pattern: &str) -> Result<Template> {
        Template::new(
            &Spec {
                issuer,
                tenant_pattern: pattern,
                discovery: true,
                jwks_uri: None,
                tenants: &[],
            },
            false,
        )
    }

    #[test]
    fn the_placeholder_must_sit_in_the_path() {
        for bad in [
            "https://{tenant}.okta.com/oauth2",
            "https://login.example.com{tenant}/v2.0",
            "https://login.example.com:{tenant}/x",
            "https://{tenant}/v2.0",
            "https://a.example.com/x?t={tenant}",
            "https://u@a.example.com/{tenant}",
            "https://a.example.com/{tenant}/{tenant}",
        ] {
            let e = t(bad, ".+").unwrap_err();
            assert!(e.message().starts_with("issuer:"), "{bad}: {e}");
        }
        assert!(t("https://login.example.com/{tenant}/v2.0", "[a-z]+").is_ok());
    }

    #[test]
    fn tenants_never_leave_their_segment() {
        let t = t("https://login.example.com/{tenant}/v2.0", ".*").unwrap();
        assert_eq!(t.tenant_of("https://login.example.com/abc/v2.0"), Some(Ok("abc")));
        for iss in [
            "https://login.example.com//v2.0",
            "https://login.example.com/../v2.0",
            "https://login.example.com/./v2.0",
            "https://login.example.com/a/b/v2.0",
            "https://login.example.com/a%2fb/v2.0",
            "https://login.example.com/a@b/v2.0",
            "https://login.example.com/a?b/v2.0",
            "https://login.example.com/a#b/v2.0",
        ] {
            assert_eq!(t.tenant_of(iss), Some(Err(Refusal::Pattern)), "{iss}");
        }
        for iss in [
            "https://login.example.com/abc/v2.0/",
            "https://LOGIN.example.com/abc/v2.0",
            "https://evil.example.com/abc/v2.0",
            "https://login.example.com.evil.com/abc/v2.0",
            "https://login.example.com/v2.0",
        ] {
            assert_eq!(t.tenant_of(iss), None, "{iss}");
        }
    }

    #[test]
    fn the_pattern_is_anchored() {
        let t = t("https://kc.example.com/realms/{tenant}", "[a-z]+").unwrap();
        assert_eq!(t.tenant_of("https://kc.example.com/realms/abc"), Some(Ok("abc")));
        assert_eq!(
            t.tenant_of("https://kc.example.com/realms/abc1"),
            Some(Err(Refusal::Pattern))
        );
        assert_eq!(
            t.tenant_of("https://kc.example.com/realms/1abc"),
            Some(Err(Refusal::Pattern))
        );
    }
}
