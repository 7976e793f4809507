//! The one configuration format shared by every front end (Rust, C, Python,
//! Go, CLI). JSON; the CLI also accepts the same structure as TOML.
//!
//! This module is the reference: each field below is documented with its
//! default. Unknown fields are rejected, and every error names the field
//! (for example `issuers[0].refresh.min_ttl_secs`).
//!
//! ```json
//! {
//!   "issuers": [{
//!     "issuer": "https://idp.example.com",
//!     "jwks_uri": "https://idp.example.com/.well-known/jwks.json",
//!     "audiences": ["orders-api"],
//!     "algorithms": ["RS256", "ES256"]
//!   }],
//!   "cache": { "capacity": 100000, "max_bytes": 268435456, "max_ttl_secs": 300 }
//! }
//! ```

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::token::Alg;

/// Top-level configuration.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The issuers whose tokens are accepted. At least one, unless
    /// `issuer_templates` names a family.
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// Families of issuers (one per tenant or realm), each materialised on
    /// its first token: see [`IssuerTemplateConfig`] and
    /// `docs/issuer-families.md`. Default: none.
    #[serde(default)]
    pub issuer_templates: Vec<IssuerTemplateConfig>,
    /// SPIFFE trust domains whose JWT-SVIDs are accepted, each with its JWT
    /// bundle (a bundle endpoint or a bundle file): see [`SpiffeConfig`] and
    /// `docs/issuer-families.md`. Default: none.
    #[serde(default)]
    pub spiffe: Vec<SpiffeConfig>,
    /// The verification-result cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// How JWKS and discovery documents are fetched.
    #[serde(default)]
    pub http: HttpConfig,
    /// Revocation denylist bounds.
    #[serde(default)]
    pub revocation: RevocationConfig,
    /// Tokens longer than this many bytes are rejected before any parsing.
    /// Default 16384 (16 KiB).
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Directory where the last good JWKS of each issuer is persisted
    /// (atomic write) and loaded at start when the endpoint is unreachable.
    /// Processes sharing it (web-server workers) also share one JWKS fetch:
    /// one takes a lock there and fetches, the others adopt the set it
    /// persisted (docs/design.md, "One fetch per host").
    /// Default: none (nothing persisted).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Run the background refresher thread. Default true. With false, keys are
    /// fetched at start, on unknown `kid`, on `refresh_issuer`, and when
    /// `Verifier::run_due_refreshes` is called (tests with a manual clock).
    #[serde(default = "default_true")]
    pub background_refresh: bool,
    /// Signing keys for verification assertions minted at the edge (the
    /// web-server modules, through the HTTP decision): see
    /// [`AssertionConfig`] and `docs/trust-handoff.md`. The verifier itself
    /// does not use it. Default: none (nothing is minted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion: Option<AssertionConfig>,
}

/// One trusted issuer.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The issuer identifier, compared exactly with the token's `iss`.
    /// With `discovery`, also the base URL of the OIDC discovery document.
    pub issuer: String,
    /// Where the JWKS is fetched. Exactly one key source is required:
    /// `jwks_uri`, `discovery`, `jwks` or `jwks_file`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Find `jwks_uri` in `{issuer}/.well-known/openid-configuration`.
    /// The document's `issuer` must equal `issuer`. Default false.
    #[serde(default)]
    pub discovery: bool,
    /// A static JWKS, inline (air-gapped use). Never refreshed.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// A static JWKS file, reloaded when its modification time changes.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Accepted audiences; the token's `aud` must contain one of them.
    /// Required (non-empty) unless `allow_any_audience` is true.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accept any (or no) `aud`. Default false: audience is checked.
    #[serde(default)]
    pub allow_any_audience: bool,
    /// Allowed `alg` values. Default: RS256, RS384, RS512, PS256, PS384,
    /// PS512, ES256, ES384, EdDSA. HS* only with `hmac_keys`. `none` never.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Alg>,
    /// Claims that must be present, besides `exp` (always required).
    /// Default: none.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// If set, the header `typ` must name this media type: compared
    /// case-insensitively, and with or without `application/` (RFC 7515
    /// §4.1.9), so `at+jwt` matches `AT+JWT` and `application/at+jwt`, and
    /// the reverse. Default: not checked.
    #[serde(default)]
    pub typ: Option<String>,
    /// Clock-skew leeway for `exp`, `nbf` and `iat`, in seconds. Default 30.
    /// Time is compared in milliseconds: a token is invalid from the instant
    /// `exp + leeway_secs` on, and valid from `nbf - leeway_secs`. `exp`,
    /// `nbf` and `iat` must be non-negative, finite and at most
    /// 253402300799 (9999-12-31T23:59:59Z, [`crate::MAX_NUMERIC_DATE_SECS`]),
    /// else `invalid_payload`; fractional seconds count to the millisecond.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// If set, reject (`token_lifetime_exceeded`) a token whose lifetime is
    /// longer than this many seconds: `exp - iat`, or without `iat`,
    /// `exp - now` (plus `leeway_secs`, for the issuer's clock skew). Bounds
    /// what one stolen token is worth. Envoy calls this `max_lifetime`.
    /// Must be positive. Default: none (any lifetime). Not to be confused
    /// with `revocation.max_token_lifetime_secs`, which only sizes how long
    /// revocations are kept.
    #[serde(default)]
    pub max_token_lifetime_secs: Option<u64>,
    /// Locally configured HMAC secrets (HS256/384/512). Symmetric keys are
    /// never taken from a fetched JWKS.
    #[serde(default)]
    pub hmac_keys: Vec<HmacKeyConfig>,
    /// How this issuer's keys are refreshed.
    #[serde(default)]
    pub refresh: RefreshConfig,
    /// IETF Token Status List checks for this issuer's tokens
    /// (`status.status_list`). Default: no list may be fetched, so a token
    /// that references one is rejected (`status_uri_not_allowed`).
    #[serde(default)]
    pub status_list: StatusListConfig,
    /// What this issuer issues. `"token"` (the default): access tokens,
    /// accepted by `verify`. `"assertion"`: an edge (`jwtwarden serve`, a
    /// web-server module) minting verification assertions for this
    /// service (`docs/trust-handoff.md`): `issuer` is the edge's name, the
    /// key source its JWKS (`jwks_uri` of its admin listener, `jwks` or
    /// `jwks_file`), `audiences` the audience it mints for. Its
    /// assertions are accepted only by `verify_assertion`, never by
    /// `verify`, under a fixed policy: EdDSA only, `typ`
    /// `jwtwarden-assertion+jwt`, the binding claims required, leeway 5 s,
    /// lifetime at most 300 s. Opt-in HMAC mode: `algorithms = ["HS256"]`
    /// with this service's `hmac_keys` (the edge's `assertion.hs256`
    /// secrets for this audience) and no JWKS source; one edge is never
    /// both. Fields that would loosen it are refused,
    /// naming the field: `algorithms` other than the default,
    /// `["EdDSA"]` or `["HS256"]`, another `typ`, `leeway_secs` above 5 (the default 30
    /// becomes 5), `max_token_lifetime_secs` above 300, `discovery`,
    /// `allow_any_audience`, `hmac_keys` without `["HS256"]`, `status_list.allowed_uris`.
    /// Edges cannot be added, removed or changed at runtime.
    #[serde(default)]
    pub kind: IssuerKind,
    /// Only with `kind = "assertion"`: a verification that demands `fresh`
    /// accepts this edge's assertion when the edge verified the original
    /// token at most this many seconds ago (its `verified_at`). Default:
    /// none, so a `fresh` verification refuses inherited trust
    /// (`token_lifetime_exceeded`).
    #[serde(default)]
    pub fresh_within_secs: Option<u64>,
}

/// What an issuer entry issues (`issuers[].kind`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IssuerKind {
    /// Access tokens, verified by `verify`.
    #[default]
    Token,
    /// Verification assertions of an edge, verified by `verify_assertion`
    /// only (inherited trust, `docs/trust-handoff.md`).
    Assertion,
}

/// The JOSE `typ` an assertion issuer requires (the same string as
/// `jwtwarden::assertion::ASSERTION_TYP`, which a test checks).
pub(crate) const ASSERTION_TYP: &str = "jwtwarden-assertion+jwt";
/// Claims every assertion must carry (besides `exp`).
pub(crate) const ASSERTION_REQUIRED_CLAIMS: &[&str] = &["iat", "jti", "htm", "htu", "verified_at", "orig"];
/// Leeway for an assertion's `exp`/`iat`, in seconds: assertions live
/// seconds, so the ordinary 30 s would double their life.
pub(crate) const ASSERTION_LEEWAY_SECS: u64 = 5;
/// Longest assertion lifetime accepted, in seconds.
pub(crate) const ASSERTION_MAX_LIFETIME_SECS: u64 = 300;

/// A family of issuers: one issuer per tenant (or realm), named by a template
/// with one `{tenant}` placeholder. A token whose `iss` fits the template,
/// with a tenant its pattern (and allowlist) accepts, is verified against
/// that tenant's own issuer, materialised on its first token. Fetch URLs are
/// built from the template only. See `docs/issuer-families.md`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuerTemplateConfig {
    /// The issuer identifier with exactly one `{tenant}` placeholder, in the
    /// path (never in the scheme, host or port), for example
    /// `https://login.example.com/{tenant}/v2.0`. A token's `iss` is matched
    /// byte for byte against the text around the placeholder.
    pub issuer: String,
    /// The tenant must match this regular expression (Rust `regex` syntax;
    /// anchored at both ends whether or not it says `^...$`). Besides, a
    /// tenant is never empty, `.` or `..`, and holds none of `/ ? # @ %`,
    /// whatever the pattern says. Required.
    pub tenant_pattern: String,
    /// Find each tenant's `jwks_uri` in
    /// `{issuer}/.well-known/openid-configuration` (the tenant's issuer);
    /// the document's `issuer` must equal the tenant's issuer exactly.
    /// Default false. Exactly one of `discovery` and `jwks_uri`.
    #[serde(default)]
    pub discovery: bool,
    /// Where keys are fetched: with a `{tenant}` placeholder (in the path),
    /// one key set per tenant; without one, one key set shared by every
    /// tenant (Entra ID style), fetched once and bound to each tenant by
    /// `iss` (and `tenant_claim`).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Accepted audiences; the token's `aud` must contain one. Required.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Allowed `alg` values, as `issuers[].algorithms` (no HS*). Default:
    /// the asymmetric algorithms.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Alg>,
    /// If set, this claim must be a string equal to the tenant the token's
    /// `iss` names (`tid` for Entra ID); else `invalid_issuer`. Required in
    /// practice with a shared `jwks_uri`. Default: not checked.
    #[serde(default)]
    pub tenant_claim: Option<String>,
    /// If not empty, only these tenants are accepted; others are refused
    /// (`tenant_not_allowed`) without a fetch. Each must match
    /// `tenant_pattern`. Default: empty (any tenant the pattern accepts).
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Tenants held at once (1 to 1000000); past that the one idle longest
    /// is evicted, with its keys and cached results. Default 10000.
    #[serde(default = "default_max_tenants")]
    pub max_tenants: usize,
    /// New tenants materialised per minute at most (a token bucket of this
    /// size, refilled continuously); a token of one more new tenant is
    /// refused (`tenant_budget_exhausted`) without a fetch. At least 1.
    /// Default 60.
    #[serde(default = "default_new_tenant_fetches")]
    pub new_tenant_fetches_per_minute: u32,
    /// Clock-skew leeway, as `issuers[].leeway_secs`. Default 30.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// How each tenant's keys are refreshed, as `issuers[].refresh`.
    #[serde(default)]
    pub refresh: RefreshConfig,
    /// Token Status List checks for each tenant's tokens, as
    /// `issuers[].status_list`, with `{tenant}` allowed in the path of
    /// `allowed_uris` (never in the scheme, host or port), replaced by the
    /// token's tenant. Each tenant's lists are its own: fetched for it,
    /// signed with its keys, naming its issuer as `iss`, never used for
    /// another tenant. `preload` must be empty. Default: no list may be
    /// fetched (a tenant's token with `status` is `status_uri_not_allowed`).
    #[serde(default)]
    pub status_list: StatusListConfig,
}

impl IssuerTemplateConfig {
    /// The status list settings of `tenant`'s tokens: `status_list` with
    /// `{tenant}` replaced in `allowed_uris`.
    pub(crate) fn status_list_for(&self, tenant: &str) -> StatusListConfig {
        let mut cfg = self.status_list.clone();
        for uri in &mut cfg.allowed_uris {
            *uri = uri.replace(TENANT, tenant);
        }
        cfg
    }

    /// Check `status_list`; `at` names the template in errors.
    fn validate_status_list(&self, at: &str, allow_http: bool) -> Result<()> {
        let f = |name: &str| format!("{at}.status_list.{name}");
        if !self.status_list.preload.is_empty() {
            return invalid(
                &f("preload"),
                "not supported for issuer templates (tenants come and go)",
            );
        }
        for (i, uri) in self.status_list.allowed_uris.iter().enumerate() {
            // The placeholder only after the authority: a token's tenant
            // never chooses the host a list is fetched from.
            let authority_end = uri
                .find("://")
                .map(|s| s + 3)
                .and_then(|start| uri[start..].find(['/', '?', '#']).map(|e| start + e))
                .unwrap_or(uri.len());
            if uri[..authority_end].contains(TENANT) {
                return invalid(
                    &f(&format!("allowed_uris[{i}]")),
                    "{tenant} may appear only in the path, never in the scheme, host or port",
                );
            }
        }
        // As `issuers[].status_list`, with an example tenant put in.
        self.status_list_for("tenant")
            .validate(&format!("{at}.status_list"), allow_http)
    }
}

/// The placeholder of issuer templates.
const TENANT: &str = "{tenant}";

impl IssuerTemplateConfig {
    /// The matching rules, for `crate::template`.
    pub(crate) fn spec(&self) -> crate::template::Spec<'_> {
        crate::template::Spec {
            issuer: &self.issuer,
            tenant_pattern: &self.tenant_pattern,
            discovery: self.discovery,
            jwks_uri: self.jwks_uri.as_deref(),
            tenants: &self.tenants,
        }
    }
}

/// One SPIFFE trust domain whose JWT-SVIDs are accepted. A token is for
/// this trust domain when its `sub` is a SPIFFE ID
/// (`spiffe://<trust_domain>/<path>`, checked strictly) in it and its `iss`
/// names no configured issuer; it is verified with the keys of the trust
/// domain's JWT bundle only (`use: "jwt-svid"` keys, which ordinary issuers
/// never take). See `docs/issuer-families.md`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpiffeConfig {
    /// The trust domain name, as in SPIFFE IDs: lowercase letters, digits,
    /// `.`, `-` and `_`, at most 255 bytes, no scheme, port or userinfo
    /// (`example.org`).
    pub trust_domain: String,
    /// The SPIFFE bundle endpoint (`https_web` profile) serving the trust
    /// domain's bundle: a JWKS whose `keys` have `use: "jwt-svid"`, with
    /// `spiffe_sequence` and `spiffe_refresh_hint`. Refreshed every
    /// `spiffe_refresh_hint` seconds (else the response's `max-age`, else
    /// `refresh.default_ttl_secs`), clamped to `refresh.min_ttl_secs` and
    /// `refresh.max_ttl_secs`. Exactly one of `bundle_endpoint` and
    /// `bundle_file`.
    #[serde(default)]
    pub bundle_endpoint: Option<String>,
    /// A SPIFFE bundle file (the same JSON), reloaded when its modification
    /// time changes.
    #[serde(default)]
    pub bundle_file: Option<PathBuf>,
    /// Accepted audiences; a JWT-SVID's `aud` must contain one. Required
    /// (JWT-SVIDs always carry `aud`).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// If set, the token's `iss` must equal it. Default: `iss` is not
    /// checked (JWT-SVIDs may omit it).
    #[serde(default)]
    pub issuer: Option<String>,
    /// Allowed `alg` values, as `issuers[].algorithms` (no HS*). Default:
    /// the asymmetric algorithms.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Alg>,
    /// Clock-skew leeway, as `issuers[].leeway_secs`. Default 30.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// How the bundle is refreshed, as `issuers[].refresh`
    /// (`spiffe_refresh_hint` takes the place of `max-age`).
    #[serde(default)]
    pub refresh: RefreshConfig,
    /// Token Status List checks for JWT-SVIDs, as `issuers[].status_list`:
    /// lists are verified with the trust domain's JWT authorities and must
    /// name `issuer` (if set, else `spiffe://<trust_domain>`) as `iss`.
    /// Default off: no list may be fetched, so a JWT-SVID with a `status`
    /// claim is refused (`status_uri_not_allowed`).
    #[serde(default)]
    pub status_list: StatusListConfig,
}

impl SpiffeConfig {
    /// The issuer entry the trust domain's keys are held by, named
    /// `spiffe://<trust_domain>` (for health, metrics and `revoke_kid`).
    pub(crate) fn issuer_config(&self) -> IssuerConfig {
        IssuerConfig {
            issuer: format!("spiffe://{}", self.trust_domain),
            jwks_uri: self.bundle_endpoint.clone(),
            discovery: false,
            jwks: None,
            jwks_file: self.bundle_file.clone(),
            audiences: self.audiences.clone(),
            allow_any_audience: false,
            algorithms: self.algorithms.clone(),
            required_claims: vec!["sub".to_string()],
            typ: None,
            leeway_secs: self.leeway_secs,
            max_token_lifetime_secs: None,
            hmac_keys: Vec::new(),
            refresh: self.refresh.clone(),
            status_list: self.status_list.clone(),
            kind: IssuerKind::Token,
            fresh_within_secs: None,
        }
    }

    /// Check one trust domain; `at` names it in errors (`spiffe[0]`).
    fn validate(&self, at: &str, allow_http: bool) -> Result<()> {
        let f = |name: &str| format!("{at}.{name}");
        if let Err(why) = crate::spiffe_id::check_trust_domain(&self.trust_domain) {
            return invalid(&f("trust_domain"), &why);
        }
        match (&self.bundle_endpoint, &self.bundle_file) {
            (Some(url), None) => {
                if !(url.starts_with("https://") || (allow_http && url.starts_with("http://"))) {
                    return invalid(
                        &f("bundle_endpoint"),
                        "must be an https:// URL (http:// only with http.allow_http)",
                    );
                }
            }
            (None, Some(_)) => {}
            _ => {
                return invalid(
                    &f("bundle_endpoint"),
                    "give exactly one of bundle_endpoint, bundle_file",
                )
            }
        }
        if self.audiences.is_empty() {
            return invalid(&f("audiences"), "at least one audience is required");
        }
        if self.issuer.as_deref() == Some("") {
            return invalid(&f("issuer"), "must not be empty when set");
        }
        if self.algorithms.is_empty() || self.algorithms.iter().any(|a| a.is_hmac()) {
            return invalid(&f("algorithms"), "at least one algorithm, and no HS*");
        }
        self.status_list.validate(&f("status_list"), allow_http)?;
        self.refresh.validate(&f("refresh"))
    }
}

fn default_max_tenants() -> usize {
    10_000
}

fn default_new_tenant_fetches() -> u32 {
    60
}

/// IETF Token Status List (draft-ietf-oauth-status-list) checks for one
/// issuer. A token carrying `status: {status_list: {idx, uri}}` is checked,
/// after its own signature and claims, against the Status List Token at
/// `uri`, which must be signed by this issuer's keys. See `docs/status-list.md`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StatusListConfig {
    /// URL prefixes a referenced `uri` must start with to be fetched: same
    /// scheme, same host and port, and a path under the prefix's path (at a
    /// `/` boundary, or equal). A `uri` outside them is never fetched and
    /// its token is rejected (`status_uri_not_allowed`). Default: none.
    pub allowed_uris: Vec<String>,
    /// Lists fetched when the verifier starts (each under `allowed_uris`),
    /// so no first verification waits for them. Default: none.
    pub preload: Vec<String>,
    /// Reject tokens without a `status` claim (`status_missing`). Default
    /// false: most issuers do not use status lists yet.
    pub require_status: bool,
    /// Application-specific status values (3 to 255) accepted as valid.
    /// 0 (VALID) is always accepted; 1 (INVALID, `revoked`) and 2
    /// (SUSPENDED, `suspended`) never. Others are rejected
    /// (`status_not_valid`). Default: none.
    pub valid_statuses: Vec<u8>,
    /// Distinct lists held at most (1 to 4096); a token referencing one
    /// more is rejected (`status_list_unavailable`). Default 64.
    pub max_lists: usize,
    /// Largest Status List Token accepted, in bytes (the HTTP response).
    /// Default 1048576 (1 MiB).
    pub max_token_bytes: usize,
    /// Largest decompressed status array, in bytes; a list that inflates
    /// further is refused (a zlib bomb). At most 536870912 (512 MiB).
    /// Default 16777216 (16 MiB: 134 million 1-bit entries).
    pub max_inflated_bytes: usize,
    /// List lifetime when the token has no `ttl` claim and the response no
    /// `Cache-Control: max-age`. Default 300.
    pub default_ttl_secs: u64,
    /// Lower clamp of a list's lifetime. Default 30.
    pub min_ttl_secs: u64,
    /// Upper clamp of a list's lifetime. Default 86400.
    pub max_ttl_secs: u64,
    /// How long past its lifetime a list is still used while refreshes fail;
    /// after that (or past the list's own `exp`) its tokens are rejected
    /// (`status_list_stale`). Default 3600.
    pub max_stale_secs: u64,
}

/// A locally configured HMAC secret.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HmacKeyConfig {
    /// The `kid` tokens use for this secret; none matches tokens without `kid`.
    #[serde(default)]
    pub kid: Option<String>,
    /// The secret as base64url (unpadded or padded). At least 32 bytes.
    pub secret_base64: String,
}

/// Per-issuer key refresh policy. All durations in seconds.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RefreshConfig {
    /// JWKS TTL when the response has no usable `Cache-Control: max-age` or
    /// `Expires`. Default 300.
    pub default_ttl_secs: u64,
    /// Lower clamp for the TTL from cache headers. Default 60.
    pub min_ttl_secs: u64,
    /// Upper clamp for the TTL from cache headers. Default 86400.
    pub max_ttl_secs: u64,
    /// At most one unknown-`kid` refresh per this many seconds; unknown kids
    /// are remembered this long. Default 30.
    pub unknown_kid_cooldown_secs: u64,
    /// How long past its TTL a keyset is still served while refreshes fail.
    /// After that the issuer fails closed (`keys_stale`). Default 21600 (6 h).
    pub max_stale_secs: u64,
    /// How long a key that disappeared from the JWKS still verifies.
    /// Default 0: removed keys stop verifying as soon as a refresh sees it.
    pub rotation_grace_secs: u64,
    /// First retry delay after a failed fetch; doubles up to
    /// `backoff_max_secs`, with ±20 % jitter. Default 1.
    pub backoff_initial_secs: u64,
    /// Largest retry delay. Default 300.
    pub backoff_max_secs: u64,
    /// Fraction of the TTL removed at random so a fleet does not refresh in
    /// lockstep; a refresh is scheduled at 75 % to 90 % of the TTL by
    /// default. Between 0 and 0.5. Default 0.15.
    pub jitter: f64,
}

/// The verification-result cache.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Cache verification results. Default true.
    pub enabled: bool,
    /// Maximum number of cached results (across all shards). Default 100000.
    pub capacity: usize,
    /// Maximum bytes held by cached results (across all shards): each
    /// result counts its token's length, an estimate of its decoded claims
    /// and a fixed per-entry overhead. Results are evicted, oldest first
    /// but skipping (once) those hit since the last pass (CLOCK, second
    /// chance), until both `capacity` and `max_bytes` hold. Each shard gets
    /// `max_bytes / shards`; a result larger than that is not cached. Must
    /// be at least `shards × max_token_bytes`. Default 268435456 (256 MiB).
    /// Besides this, each verifying thread keeps private copies of up to 64
    /// hot results.
    pub max_bytes: usize,
    /// A cached result lives at most this long (and never past `exp`).
    /// Default 300.
    pub max_ttl_secs: u64,
    /// Number of shards, each with its own writer lock for inserts and
    /// evictions (rounded up to a power of two; lookups take no lock).
    /// Default 16.
    pub shards: usize,
}

/// HTTP client settings for JWKS and discovery fetches.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Allow `http://` URLs. Default false (HTTPS only). Meant for tests on
    /// loopback.
    pub allow_http: bool,
    /// TCP/TLS connect timeout, milliseconds. Default 2000.
    pub connect_timeout_ms: u64,
    /// Total timeout of one key fetch, milliseconds. Default 5000.
    ///
    /// It bounds the whole fetch from its start: OIDC discovery, the JWKS
    /// request and every redirect hop of either share this one budget (the
    /// connect timeout applies inside it). It is also the longest a `verify`
    /// waits for keys: a verify that finds a fetch in flight waits for that
    /// one (at most until its own `timeout_ms` from when it started waiting),
    /// and if it failed or hangs the verify does not start another. Only
    /// when the fetch it waited for succeeded without the token's `kid` (it
    /// may have started before the key was published), and at least half of
    /// the verify's budget is left, does the verify make one fetch of its own
    /// (within the unknown-kid cooldown), bounded by what is left of that
    /// same budget. `Verifier::refresh_issuer` is the exception: it waits for
    /// a fetch in flight and then fetches, up to 2 × `timeout_ms`.
    pub timeout_ms: u64,
    /// Largest accepted response body, bytes. Default 262144 (256 KiB).
    pub max_response_bytes: u64,
    /// A PEM bundle of CA certificates to trust instead of the built-in
    /// WebPKI roots. Default: the built-in roots.
    pub ca_bundle: Option<PathBuf>,
    /// Same-host redirects followed at most. Redirects to another host (or
    /// scheme) are refused. Default 3.
    pub max_redirects: u32,
}

/// Bounds on the revocation denylists.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RevocationConfig {
    /// Most entries held across all denylists; a revocation past that is
    /// refused (`revocation_list_full`), never silently dropped: a local
    /// `revoke_*` returns the error; one from the journal or the fleet feed
    /// makes every verification fail with `revocation_list_full` until it
    /// is held; a publisher whose revocation leaves the fleet's Redis set
    /// with more live records than this gets the error too. Default 100000.
    pub max_entries: usize,
    /// How long a `revoke_subject` entry is kept after its `issued_before`
    /// time (the issuer's own `max_token_lifetime_secs` if longer, plus its
    /// `leeway_secs` and a minute); tokens living longer than this should
    /// be revoked by `jti`. Also the default lifetime of a `revoke_jti`
    /// without an expiry. Default 86400.
    pub max_token_lifetime_secs: u64,
    /// How long a `revoke_kid` is kept, in seconds. Default 2592000 (30
    /// days). After that the record is forgotten everywhere (memory,
    /// journal, Redis) and a key the issuer still publishes is trusted
    /// again by processes started afterwards: rotate a compromised key out
    /// of the JWKS within this time, or revoke it again. Kid records from
    /// older journals or sets, which had no end, are given this long from
    /// when they are read. Must be positive.
    pub kid_revocation_secs: u64,
    /// How long past its end of life a record is kept where the fleet
    /// shares it, in seconds: Redis trims (and the journal compacts) only
    /// records that ended this long ago, so one member whose clock runs
    /// ahead cannot erase a record that is still live for the others.
    /// Default 86400 (clocks up to a day apart).
    pub retention_margin_secs: u64,
    /// The fleet feed: share revocations with every process through Redis.
    /// Unset (the default): revocations stay in this process (and its
    /// journal, with `state_dir`).
    pub redis: Option<RedisFeedConfig>,
}

/// The fleet revocation feed (`revocation.redis`); see `docs/revocation.md`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RedisFeedConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://` (TLS). Required.
    pub url: String,
    /// Prefix of the keys and channel used in Redis, so several fleets can
    /// share one server. Default `"jwtwarden:"`.
    pub key_prefix: String,
    /// How long a process cut off from Redis keeps serving before it fails
    /// closed (`revocations_stale`). Default 60.
    pub max_stale_secs: u64,
    /// Keep serving past `max_stale_secs` instead of failing closed
    /// (availability over revocations made elsewhere). Default false.
    pub serve_when_stale: bool,
    /// Longest wait for any one Redis operation (connect, write, read), so
    /// a `revoke_*` call never hangs on an unreachable server. Default 2000.
    pub timeout_ms: u64,
}

impl Default for RedisFeedConfig {
    fn default() -> Self {
        RedisFeedConfig {
            url: String::new(),
            key_prefix: "jwtwarden:".into(),
            max_stale_secs: 60,
            serve_when_stale: false,
            timeout_ms: 2_000,
        }
    }
}

impl RedisFeedConfig {
    fn validate(&self) -> Result<()> {
        let scheme = self.url.split("://").next().unwrap_or_default();
        if self.url.is_empty() || !matches!(scheme, "redis" | "rediss") || !self.url.contains("://") {
            return invalid("revocation.redis.url", "must be a redis:// or rediss:// URL");
        }
        if self.timeout_ms == 0 {
            return invalid("revocation.redis.timeout_ms", "must be positive");
        }
        if self.max_stale_secs == 0 {
            return invalid("revocation.redis.max_stale_secs", "must be positive");
        }
        Ok(())
    }
}

fn default_true() -> bool {
    true
}
fn default_max_token_bytes() -> usize {
    16 * 1024
}
fn default_algorithms() -> Vec<Alg> {
    vec![
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ]
}
fn default_leeway() -> u64 {
    30
}

impl Default for RefreshConfig {
    fn default() -> Self {
        RefreshConfig {
            default_ttl_secs: 300,
            min_ttl_secs: 60,
            max_ttl_secs: 86_400,
            unknown_kid_cooldown_secs: 30,
            max_stale_secs: 6 * 3600,
            rotation_grace_secs: 0,
            backoff_initial_secs: 1,
            backoff_max_secs: 300,
            jitter: 0.15,
        }
    }
}

impl Default for StatusListConfig {
    fn default() -> Self {
        StatusListConfig {
            allowed_uris: Vec::new(),
            preload: Vec::new(),
            require_status: false,
            valid_statuses: Vec::new(),
            max_lists: 64,
            max_token_bytes: 1024 * 1024,
            max_inflated_bytes: 16 * 1024 * 1024,
            default_ttl_secs: 300,
            min_ttl_secs: 30,
            max_ttl_secs: 86_400,
            max_stale_secs: 3600,
        }
    }
}

impl StatusListConfig {
    /// A list's lifetime in seconds from its `ttl` claim, else the response's
    /// `max-age`, else `default_ttl_secs`; clamped to `[min_ttl_secs,
    /// max_ttl_secs]`, at least one second.
    pub fn ttl_secs(&self, ttl: Option<u64>) -> u64 {
        ttl.unwrap_or(self.default_ttl_secs)
            .clamp(self.min_ttl_secs, self.max_ttl_secs)
            .max(1)
    }

    /// Check the status list settings; `at` names them in errors.
    fn validate(&self, at: &str, allow_http: bool) -> Result<()> {
        let f = |name: &str| format!("{at}.{name}");
        for (i, prefix) in self.allowed_uris.iter().enumerate() {
            if let Err(why) = crate::uri::UriPrefix::parse(prefix, allow_http) {
                return invalid(&f(&format!("allowed_uris[{i}]")), &why);
            }
        }
        for (i, uri) in self.preload.iter().enumerate() {
            if !crate::uri::allowed(&self.allowed_uris, uri) {
                return invalid(&f(&format!("preload[{i}]")), "not under any of allowed_uris");
            }
        }
        if let Some(v) = self.valid_statuses.iter().find(|v| **v < 3) {
            return invalid(
                &f("valid_statuses"),
                &format!("{v} is not application-specific (3 to 255); 0 is always valid, 1 and 2 never"),
            );
        }
        if self.max_lists == 0 || self.max_lists > 4096 {
            return invalid(&f("max_lists"), "must be between 1 and 4096");
        }
        if self.max_token_bytes < 1024 {
            return invalid(&f("max_token_bytes"), "must be at least 1024");
        }
        // Indexes are kept in 32 bits: 512 MiB of 1-bit entries is 2^32.
        if self.max_inflated_bytes == 0 || self.max_inflated_bytes > 512 * 1024 * 1024 {
            return invalid(&f("max_inflated_bytes"), "must be between 1 and 536870912");
        }
        if self.min_ttl_secs > self.max_ttl_secs || self.default_ttl_secs == 0 {
            return invalid(
                &f("min_ttl_secs"),
                "must not exceed max_ttl_secs (default_ttl_secs positive)",
            );
        }
        Ok(())
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            capacity: 100_000,
            max_bytes: 256 * 1024 * 1024,
            max_ttl_secs: 300,
            shards: 16,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            allow_http: false,
            connect_timeout_ms: 2_000,
            timeout_ms: 5_000,
            max_response_bytes: 256 * 1024,
            ca_bundle: None,
            max_redirects: 3,
        }
    }
}

impl Default for RevocationConfig {
    fn default() -> Self {
        RevocationConfig {
            max_entries: 100_000,
            max_token_lifetime_secs: 86_400,
            kid_revocation_secs: 30 * 86_400,
            retention_margin_secs: 86_400,
            redis: None,
        }
    }
}

impl RefreshConfig {
    /// The keyset TTL, in seconds, for a response whose cache headers gave
    /// `max_age_secs`: the header's value (else `default_ttl_secs`) clamped
    /// to `[min_ttl_secs, max_ttl_secs]`, and at least one second.
    pub fn ttl_secs(&self, max_age_secs: Option<u64>) -> u64 {
        max_age_secs
            .unwrap_or(self.default_ttl_secs)
            .clamp(self.min_ttl_secs, self.max_ttl_secs)
            .max(1)
    }
}

impl IssuerConfig {
    /// An issuer fetching its JWKS from `jwks_uri`, with every other field at
    /// its default (audience must still be set, or `allow_any_audience`).
    pub fn new(issuer: impl Into<String>, jwks_uri: impl Into<String>) -> IssuerConfig {
        IssuerConfig {
            issuer: issuer.into(),
            jwks_uri: Some(jwks_uri.into()),
            discovery: false,
            jwks: None,
            jwks_file: None,
            audiences: Vec::new(),
            allow_any_audience: false,
            algorithms: default_algorithms(),
            required_claims: Vec::new(),
            typ: None,
            leeway_secs: default_leeway(),
            max_token_lifetime_secs: None,
            hmac_keys: Vec::new(),
            refresh: RefreshConfig::default(),
            status_list: StatusListConfig::default(),
            kind: IssuerKind::Token,
            fresh_within_secs: None,
        }
    }

    /// This edge entry (`kind = "assertion"`) under the fixed assertion
    /// policy: EdDSA only (or HS256 only, when the entry says
    /// `algorithms = ["HS256"]` with `hmac_keys`), `typ` required, the binding claims required,
    /// leeway 5 s (or less, if configured), lifetime capped at 300 s (or
    /// less). Its `kind` is `token` (the verifier holding edges verifies
    /// them with an ordinary verifier of their own). Whether the entry
    /// tries to loosen the policy is checked by [`Config::validate`].
    pub fn assertion_policy(&self) -> IssuerConfig {
        let mut cfg = self.clone();
        cfg.kind = IssuerKind::Token;
        cfg.fresh_within_secs = None;
        cfg.algorithms = if self.algorithms == [Alg::HS256] {
            vec![Alg::HS256]
        } else {
            vec![Alg::EdDSA]
        };
        cfg.typ = Some(ASSERTION_TYP.to_string());
        for claim in ASSERTION_REQUIRED_CLAIMS {
            if !cfg.required_claims.iter().any(|c| c == claim) {
                cfg.required_claims.push(claim.to_string());
            }
        }
        cfg.leeway_secs = cfg.leeway_secs.min(ASSERTION_LEEWAY_SECS);
        cfg.max_token_lifetime_secs = Some(
            cfg.max_token_lifetime_secs
                .unwrap_or(ASSERTION_MAX_LIFETIME_SECS)
                .min(ASSERTION_MAX_LIFETIME_SECS),
        );
        cfg
    }
}

impl Config {
    /// A config with these issuers and every other field at its default.
    pub fn new(issuers: Vec<IssuerConfig>) -> Config {
        Config {
            issuers,
            issuer_templates: Vec::new(),
            spiffe: Vec::new(),
            cache: CacheConfig::default(),
            http: HttpConfig::default(),
            revocation: RevocationConfig::default(),
            max_token_bytes: default_max_token_bytes(),
            state_dir: None,
            background_refresh: true,
            assertion: None,
        }
    }

    /// Parse and validate a JSON configuration. Errors name the field.
    pub fn from_json(text: &str) -> Result<Config> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            Error::new(ErrorKind::InvalidConfig, format!("{path}: {inner}"))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The JSON Schema of the configuration (draft 2020-12), generated from
    /// these types: every field with its type, default and documentation,
    /// unknown fields refused. `docs/config.schema.json` is this, committed
    /// (a test keeps it current), for editors to validate config files.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Config)).expect("a schema serializes")
    }

    /// Read and validate the configuration file at `path`, the one rule every
    /// front end follows: a name ending in `.json` is JSON, `.toml` is TOML,
    /// and any other name is tried as JSON, then as TOML. Errors name the
    /// file and, for invalid settings, the field.
    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<Config> {
        let path = path.as_ref();
        let invalid = |msg: String| Error::new(ErrorKind::InvalidConfig, format!("config {}: {msg}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("cannot read config {}: {e}", path.display()),
            )
        })?;
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let value = match ext.as_deref() {
            Some("json") => json_value(&text),
            Some("toml") => toml_value(&text),
            _ => json_value(&text).or_else(|json_err| {
                toml_value(&text).map_err(|toml_err| format!("neither JSON ({json_err}) nor TOML ({toml_err})"))
            }),
        }
        .map_err(invalid)?;
        Config::from_value(value).map_err(|e| invalid(e.message().to_string()))
    }

    /// Parse and validate a TOML configuration (the same structure as JSON).
    pub fn from_toml(text: &str) -> Result<Config> {
        let value = toml_value(text).map_err(|e| Error::new(ErrorKind::InvalidConfig, e))?;
        Config::from_value(value)
    }

    /// Parse and validate a configuration from any serde value (used by the
    /// CLI for TOML and by the Python package for dicts). Errors name the field.
    pub fn from_value(value: serde_json::Value) -> Result<Config> {
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            Error::new(ErrorKind::InvalidConfig, format!("{path}: {inner}"))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Check cross-field rules that serde cannot express.
    pub fn validate(&self) -> Result<()> {
        if self.issuers.is_empty() && self.issuer_templates.is_empty() && self.spiffe.is_empty() {
            return invalid(
                "issuers",
                "at least one issuer (or issuer template, or SPIFFE trust domain) is required",
            );
        }
        if self.max_token_bytes < 64 {
            return invalid("max_token_bytes", "must be at least 64");
        }
        self.cache.validate(self.max_token_bytes)?;
        self.http.validate()?;
        if self.revocation.kid_revocation_secs == 0 {
            return invalid("revocation.kid_revocation_secs", "must be positive");
        }
        if let Some(redis) = &self.revocation.redis {
            redis.validate()?;
        }
        let mut seen = std::collections::HashSet::new();
        for (i, iss) in self.issuers.iter().enumerate() {
            if !seen.insert(iss.issuer.as_str()) {
                return invalid(&format!("issuers[{i}].issuer"), "duplicate issuer");
            }
            iss.validate(&format!("issuers[{i}]"), self.http.allow_http)?;
        }
        for (i, t) in self.issuer_templates.iter().enumerate() {
            let at = format!("issuer_templates[{i}]");
            if !seen.insert(t.issuer.as_str()) {
                return invalid(&format!("{at}.issuer"), "duplicate issuer");
            }
            crate::template::Template::new(&t.spec(), self.http.allow_http)
                .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("{at}.{}", e.message())))?;
            if t.audiences.is_empty() {
                return invalid(&format!("{at}.audiences"), "at least one audience is required");
            }
            if t.algorithms.is_empty() || t.algorithms.iter().any(|a| a.is_hmac()) {
                return invalid(&format!("{at}.algorithms"), "at least one algorithm, and no HS*");
            }
            if t.max_tenants == 0 || t.max_tenants > 1_000_000 {
                return invalid(&format!("{at}.max_tenants"), "must be between 1 and 1000000");
            }
            if t.new_tenant_fetches_per_minute == 0 {
                return invalid(&format!("{at}.new_tenant_fetches_per_minute"), "must be at least 1");
            }
            t.refresh.validate(&format!("{at}.refresh"))?;
            t.validate_status_list(&at, self.http.allow_http)?;
        }
        let mut domains = std::collections::HashSet::new();
        for (i, d) in self.spiffe.iter().enumerate() {
            let at = format!("spiffe[{i}]");
            if !domains.insert(d.trust_domain.as_str()) {
                return invalid(&format!("{at}.trust_domain"), "duplicate trust domain");
            }
            d.validate(&at, self.http.allow_http)?;
        }
        Ok(())
    }
}

/// An `invalid_config` error naming `field`.
fn invalid<T>(field: &str, why: &str) -> Result<T> {
    Err(Error::new(ErrorKind::InvalidConfig, format!("{field}: {why}")))
}

impl CacheConfig {
    fn validate(&self, max_token_bytes: usize) -> Result<()> {
        if self.enabled && self.capacity == 0 {
            return invalid("cache.capacity", "must be positive when the cache is enabled");
        }
        if self.shards == 0 || self.shards > 1024 {
            return invalid("cache.shards", "must be between 1 and 1024");
        }
        // Every shard must be able to hold at least one token of the largest
        // accepted size, or big tokens would silently never be cached.
        let min_bytes = self.shards.next_power_of_two().saturating_mul(max_token_bytes);
        if self.enabled && self.max_bytes < min_bytes {
            return invalid(
                "cache.max_bytes",
                &format!("must be at least cache.shards × max_token_bytes ({min_bytes})"),
            );
        }
        Ok(())
    }
}

impl HttpConfig {
    fn validate(&self) -> Result<()> {
        if self.max_response_bytes < 1024 {
            return invalid("http.max_response_bytes", "must be at least 1024");
        }
        if self.timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return invalid("http.timeout_ms", "timeouts must be positive");
        }
        Ok(())
    }
}

impl IssuerConfig {
    /// Check one issuer; `at` names it in errors (`issuers[0]`).
    fn validate(&self, at: &str, allow_http: bool) -> Result<()> {
        let f = |name: &str| format!("{at}.{name}");
        if self.issuer.is_empty() {
            return invalid(&f("issuer"), "must not be empty");
        }
        self.validate_key_source(at, allow_http)?;
        if self.audiences.is_empty() && !self.allow_any_audience {
            return invalid(
                &f("audiences"),
                "at least one audience is required unless allow_any_audience is true",
            );
        }
        if self.max_token_lifetime_secs == Some(0) {
            return invalid(&f("max_token_lifetime_secs"), "must be positive when set");
        }
        self.validate_algorithms(at)?;
        self.validate_kind(at)?;
        self.status_list.validate(&f("status_list"), allow_http)?;
        self.refresh.validate(&f("refresh"))
    }

    /// An edge (`kind = "assertion"`) may tighten the assertion policy,
    /// never loosen it; `fresh_within_secs` belongs to edges only.
    fn validate_kind(&self, at: &str) -> Result<()> {
        let f = |name: &str| format!("{at}.{name}");
        if self.kind == IssuerKind::Token {
            if self.fresh_within_secs.is_some() {
                return invalid(
                    &f("fresh_within_secs"),
                    "only an issuer of kind \"assertion\" (an edge) takes it",
                );
            }
            return Ok(());
        }
        let why = "an issuer of kind \"assertion\" cannot loosen the assertion policy:";
        if self.algorithms == [Alg::HS256] {
            // The opt-in HMAC mode: HS256 with this service's own secrets
            // only, never next to the edge's public keys.
            if self.hmac_keys.is_empty() {
                return invalid(&f("hmac_keys"), &format!("{why} HS256 needs this service's hmac_keys"));
            }
            if self.jwks_uri.is_some() || self.jwks.is_some() || self.jwks_file.is_some() {
                return invalid(
                    &f("algorithms"),
                    &format!("{why} one edge is EdDSA (jwks_uri, jwks or jwks_file) or HS256 (hmac_keys), not both"),
                );
            }
        } else if self.algorithms != default_algorithms() && self.algorithms != [Alg::EdDSA] {
            return invalid(
                &f("algorithms"),
                &format!("{why} EdDSA only, or [\"HS256\"] with hmac_keys"),
            );
        } else if !self.hmac_keys.is_empty() {
            return invalid(
                &f("hmac_keys"),
                &format!("{why} hmac_keys only with algorithms = [\"HS256\"] (and no JWKS)"),
            );
        }
        if self.typ.as_deref().is_some_and(|t| t != ASSERTION_TYP) {
            return invalid(&f("typ"), &format!("{why} typ is {ASSERTION_TYP}"));
        }
        if self.leeway_secs > ASSERTION_LEEWAY_SECS && self.leeway_secs != default_leeway() {
            return invalid(
                &f("leeway_secs"),
                &format!("{why} at most {ASSERTION_LEEWAY_SECS} (the default becomes {ASSERTION_LEEWAY_SECS})"),
            );
        }
        if self
            .max_token_lifetime_secs
            .is_some_and(|l| l > ASSERTION_MAX_LIFETIME_SECS)
        {
            return invalid(
                &f("max_token_lifetime_secs"),
                &format!("{why} at most {ASSERTION_MAX_LIFETIME_SECS}"),
            );
        }
        if self.discovery {
            return invalid(
                &f("discovery"),
                &format!("{why} give the edge's jwks_uri, jwks or jwks_file"),
            );
        }
        if self.allow_any_audience {
            return invalid(&f("allow_any_audience"), &format!("{why} the audience is checked"));
        }
        if !self.status_list.allowed_uris.is_empty() {
            return invalid(
                &f("status_list.allowed_uris"),
                &format!("{why} assertions carry no status"),
            );
        }
        Ok(())
    }

    /// Exactly one key source (or only HMAC keys), with URLs the scheme
    /// policy allows.
    fn validate_key_source(&self, at: &str, allow_http: bool) -> Result<()> {
        let f = |name: &str| format!("{at}.{name}");
        let sources = [
            self.jwks_uri.is_some(),
            self.discovery,
            self.jwks.is_some(),
            self.jwks_file.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if sources > 1 {
            return invalid(
                &f("jwks_uri"),
                "give exactly one of jwks_uri, discovery, jwks, jwks_file",
            );
        }
        if sources == 0 && self.hmac_keys.is_empty() {
            return invalid(
                &f("jwks_uri"),
                "a key source is required: jwks_uri, discovery, jwks, jwks_file or hmac_keys",
            );
        }
        for (field, url) in [
            ("jwks_uri", self.jwks_uri.as_deref()),
            ("issuer", self.discovery.then_some(self.issuer.as_str())),
        ] {
            let Some(url) = url else { continue };
            if !(url.starts_with("https://") || (allow_http && url.starts_with("http://"))) {
                return invalid(&f(field), "must be an https:// URL (http:// only with http.allow_http)");
            }
        }
        Ok(())
    }

    /// Algorithms present; HS* exactly when HMAC keys are configured, each
    /// secret valid and long enough.
    fn validate_algorithms(&self, at: &str) -> Result<()> {
        let f = |name: &str| format!("{at}.{name}");
        if self.algorithms.is_empty() {
            return invalid(&f("algorithms"), "at least one algorithm is required");
        }
        let has_hs = self.algorithms.iter().any(|a| a.is_hmac());
        let has_hmac = !self.hmac_keys.is_empty();
        if has_hs && !has_hmac {
            return invalid(&f("algorithms"), "HS256/384/512 need locally configured hmac_keys");
        }
        if has_hmac && !has_hs {
            return invalid(&f("hmac_keys"), "hmac_keys given but no HS algorithm is allowed");
        }
        for (k, key) in self.hmac_keys.iter().enumerate() {
            let field = f(&format!("hmac_keys[{k}].secret_base64"));
            match crate::token::decode_b64_lenient(&key.secret_base64) {
                Some(bytes) if bytes.len() >= 32 => {}
                Some(_) => return invalid(&field, "secret must be at least 32 bytes"),
                None => return invalid(&field, "not valid base64url"),
            }
        }
        Ok(())
    }
}

impl RefreshConfig {
    /// Check the refresh policy; `at` names it in errors.
    fn validate(&self, at: &str) -> Result<()> {
        let f = |name: &str| format!("{at}.{name}");
        if self.min_ttl_secs > self.max_ttl_secs {
            return invalid(&f("min_ttl_secs"), "must not exceed refresh.max_ttl_secs");
        }
        if self.default_ttl_secs == 0 {
            return invalid(&f("default_ttl_secs"), "must be positive");
        }
        if self.backoff_initial_secs == 0 || self.backoff_initial_secs > self.backoff_max_secs {
            return invalid(
                &f("backoff_initial_secs"),
                "must be positive and at most backoff_max_secs",
            );
        }
        if !(0.0..=0.5).contains(&self.jitter) {
            return invalid(&f("jitter"), "must be between 0 and 0.5");
        }
        Ok(())
    }
}

fn json_value(text: &str) -> std::result::Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))
}

fn toml_value(text: &str) -> std::result::Result<serde_json::Value, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| format!("invalid TOML: {}", e.to_string().trim_end()))?;
    Ok(toml_to_json(toml::Value::Table(table)))
}

/// TOML to the JSON data model. Datetimes (which the configuration never
/// uses) become strings, so the field that got one is named in the error.
fn toml_to_json(v: toml::Value) -> serde_json::Value {
    use serde_json::Value;
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
        let config = Config::from_toml(
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
        assert_eq!(config.max_token_bytes, 8192);
        assert_eq!(config.issuers[0].issuer, "https://idp.example.com");
        assert_eq!(config.issuers[0].audiences, ["api"]);
        assert_eq!(config.issuers[0].refresh.jitter, 0.1);
        let e =
            Config::from_toml("[[issuers]]\nissuer = \"https://idp\"\njwks_uri = \"https://idp/j\"\naudiences = 5\n")
                .unwrap_err();
        assert!(e.message().contains("issuers[0].audiences"), "{e}");
    }

    #[test]
    fn files_are_read_by_one_rule_whatever_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let toml = "[[issuers]]\nissuer = \"https://idp\"\njwks_uri = \"https://idp/j\"\naudiences = [\"a\"]\n";
        let json = r#"{"issuers":[{"issuer":"https://idp","jwks_uri":"https://idp/j","audiences":["a"]}]}"#;
        for (name, text) in [("c.toml", toml), ("c.conf", toml), ("c.json", json), ("c.conf.d", json)] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let config = Config::from_path(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(config.issuers[0].issuer, "https://idp");
        }
        let path = dir.path().join("wrong.json");
        std::fs::write(&path, toml).unwrap();
        let e = Config::from_path(&path).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(
            e.message().contains("wrong.json") && e.message().contains("invalid JSON"),
            "{e}"
        );
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = Config::from_json(
            r#"{"issuers":[{"issuer":"https://idp","jwks_uri":"https://idp/jwks","audiences":["api"]}]}"#,
        )
        .unwrap();
        assert_eq!(c.max_token_bytes, 16384);
        assert_eq!(c.cache.capacity, 100_000);
        assert_eq!(c.cache.max_bytes, 256 * 1024 * 1024);
        assert_eq!(c.http.max_response_bytes, 262_144);
        let i = &c.issuers[0];
        assert_eq!(i.leeway_secs, 30);
        assert_eq!(i.refresh.unknown_kid_cooldown_secs, 30);
        assert_eq!(i.refresh.default_ttl_secs, 300);
        assert_eq!(i.refresh.rotation_grace_secs, 0);
        assert_eq!(i.max_token_lifetime_secs, None);
        assert!(!i.algorithms.iter().any(|a| a.is_hmac()));
    }

    #[test]
    fn errors_name_the_field() {
        let e = Config::from_json(r#"{"issuers":[{"issuer":"https://idp","jwks_uri":"https://idp/j","audiences":["a"],"refresh":{"min_ttl_secs":"x"}}]}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.message().contains("issuers[0].refresh.min_ttl_secs"), "{e}");

        let e = Config::from_json(
            r#"{"issuers":[{"issuer":"https://idp","jwks_uri":"https://idp/j","audiences":["a"],"bogus":1}]}"#,
        )
        .unwrap_err();
        assert!(e.message().contains("bogus"), "{e}");

        let e = Config::from_json(r#"{"issuers":[{"issuer":"https://idp","jwks_uri":"https://idp/j"}]}"#).unwrap_err();
        assert!(e.message().contains("issuers[0].audiences"), "{e}");

        let e =
            Config::from_json(r#"{"issuers":[{"issuer":"https://idp","jwks_uri":"http://idp/j","audiences":["a"]}]}"#)
                .unwrap_err();
        assert!(e.message().contains("issuers[0].jwks_uri"), "{e}");

        let e = Config::from_json(r#"{"issuers":[{"issuer":"https://idp","jwks_uri":"https://idp/j","audiences":["a"],"algorithms":["none"]}]}"#).unwrap_err();
        assert!(e.message().contains("issuers[0].algorithms"), "{e}");

        let e = Config::from_json(r#"{"issuers":[{"issuer":"https://idp","jwks_uri":"https://idp/j","audiences":["a"],"algorithms":["HS256"]}]}"#).unwrap_err();
        assert!(e.message().contains("hmac_keys"), "{e}");
    }

    #[test]
    fn cache_max_bytes_and_max_token_lifetime_are_validated() {
        let with = |cache: &str, lifetime: &str| {
            Config::from_json(&format!(
                r#"{{"issuers":[{{"issuer":"https://idp","jwks_uri":"https://idp/j","audiences":["a"]{lifetime}}}],"cache":{{{cache}}}}}"#
            ))
        };
        // 16 shards of at least one 16 KiB token each.
        let e = with(r#""max_bytes": 262143"#, "").unwrap_err();
        assert!(e.message().contains("cache.max_bytes"), "{e}");
        assert_eq!(with(r#""max_bytes": 262144"#, "").unwrap().cache.max_bytes, 262_144);
        assert!(with(r#""max_bytes": 16384, "shards": 1"#, "").is_ok());
        assert!(with(r#""max_bytes": 1, "enabled": false"#, "").is_ok());
        let e = with("", r#","max_token_lifetime_secs": 0"#).unwrap_err();
        assert!(e.message().contains("issuers[0].max_token_lifetime_secs"), "{e}");
        let c = with("", r#","max_token_lifetime_secs": 3600"#).unwrap();
        assert_eq!(c.issuers[0].max_token_lifetime_secs, Some(3600));
    }
}

/// One Ed25519 signing key of the edge: PKCS#8 PEM, inline or in a file,
/// and its `kid`. Its `Debug` never shows an inline key.
#[derive(Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyConfig {
    /// The key id published in the JWKS and set in each assertion's header.
    pub kid: String,
    /// The private key, PKCS#8 PEM (`openssl genpkey -algorithm ed25519`).
    /// Exactly one of `pem`, `pem_file`.
    #[serde(default)]
    pub pem: Option<String>,
    /// The same, read from a file.
    #[serde(default)]
    pub pem_file: Option<PathBuf>,
}

impl std::fmt::Debug for SigningKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyConfig")
            .field("kid", &self.kid)
            .field("pem", &self.pem.as_ref().map(|_| "<redacted>"))
            .field("pem_file", &self.pem_file)
            .finish()
    }
}

/// How the edge mints verification assertions (`assertion`): its name and
/// signing keys. Which routes carry one, for which audience and in which
/// header is the HTTP policy's `assertion` (docs/http.md).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertionConfig {
    /// The edge's name: the assertion's `iss`, the issuer name services
    /// configure for it.
    pub name: String,
    /// The key that signs.
    pub current: SigningKeyConfig,
    /// The key being rotated out: not used to sign, still published in the
    /// JWKS so that services holding assertions it signed (or a cached
    /// JWKS without `current` yet) keep verifying. Rotation: publish the
    /// new key as `previous`, wait a JWKS refresh interval, swap.
    /// Default: none.
    #[serde(default)]
    pub previous: Option<SigningKeyConfig>,
    /// Assertion lifetime in seconds (`exp - iat`). Default 30.
    #[serde(default = "default_assertion_lifetime")]
    pub lifetime_secs: u64,
    /// Opt-in HS256 (HMAC-SHA256) assertions, per upstream audience: the
    /// audience → its secrets. An assertion for an audience listed here is
    /// signed with that audience's `current` secret instead of the Ed25519
    /// key; every other audience still gets EdDSA. Each service holds only
    /// its own secret (as `hmac_keys` of its edge issuer), so a service can
    /// forge assertions only to itself; an independent party cannot check
    /// them (no JWKS). Threat model: `docs/trust-handoff.md` §2. Default:
    /// none (EdDSA for every audience).
    #[serde(default)]
    pub hs256: std::collections::BTreeMap<String, AudienceSecretsConfig>,
}

/// The HS256 secrets the edge holds for one upstream audience
/// (`assertion.hs256.<audience>`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AudienceSecretsConfig {
    /// The secret that signs.
    pub current: SecretKeyConfig,
    /// The secret being rotated out: never used to sign; held so that its
    /// `kid` stays reserved while services still accept it. Rotation: add
    /// the new secret to the service's `hmac_keys`, make it the edge's
    /// `current` (the old one `previous`), then remove the old one from
    /// the service. Default: none.
    #[serde(default)]
    pub previous: Option<SecretKeyConfig>,
}

/// One HS256 secret of the edge: its `kid` (distinct from every other
/// assertion key's) and the file holding it, base64url (the same string
/// the service configures as `hmac_keys[].secret_base64`), at least 32
/// bytes once decoded. The secret itself is never in the configuration,
/// its `Debug` or a log.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyConfig {
    /// The key id set in each assertion's header.
    pub kid: String,
    /// The file holding the secret, base64url (padded or not); surrounding
    /// whitespace is ignored.
    pub secret_file: PathBuf,
}

fn default_assertion_lifetime() -> u64 {
    30
}
