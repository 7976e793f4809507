//! Claim checks after the signature verified: `exp` (required), `nbf`,
//! `iat`, `iss`, `aud`, required claims, header `typ` and the optional
//! maximum token lifetime, with leeway.
//!
//! # Time
//!
//! Time is compared in milliseconds, never rounded to seconds: with
//! `exp = E` and leeway `L` a token is valid while `now_ms < (E + L) * 1000`
//! and invalid *at* that instant and after (RFC 7519 §4.1.4: "on or after").
//! With `nbf = N` it is valid from `(N - L) * 1000` on; an `iat` later than
//! `now + L` is rejected the same way.
//!
//! # NumericDate values
//!
//! `exp`, `nbf` and `iat` must be JSON numbers that are finite, not negative
//! and at most [`MAX_NUMERIC_DATE_SECS`] (9999-12-31T23:59:59Z); anything
//! else is `invalid_payload`. Without that bound a value such as `1e30`
//! would saturate to the largest integer and make a token that never
//! expires. Fractional seconds are allowed (RFC 7519 §2: a NumericDate is
//! "a JSON numeric value"), read to the microsecond and rounded *up* to the
//! next whole millisecond. Since the clock counts whole milliseconds, that
//! keeps the rules exact: `exp = 1000.0004` is valid at 1000000 ms and
//! invalid at 1000001 ms, `nbf = 1000.0004` valid from 1000001 ms.

use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result};

/// The largest NumericDate accepted in `exp`, `nbf` and `iat`, in seconds:
/// 253402300799 is 9999-12-31T23:59:59Z, the last second with a four-digit
/// year. Larger values are rejected as `invalid_payload`.
pub const MAX_NUMERIC_DATE_SECS: u64 = 253_402_300_799;

/// What one issuer requires of a token's claims.
pub(crate) struct ClaimPolicy {
    /// The `iss` required. Empty: `iss` is not checked (a SPIFFE trust
    /// domain without a configured `issuer`; the configuration refuses an
    /// empty `issuers[].issuer`).
    pub issuer: String,
    pub audiences: Vec<String>,
    pub allow_any_audience: bool,
    pub required: Vec<String>,
    pub typ: Option<String>,
    pub leeway_secs: u64,
    /// Longest accepted lifetime (`exp - iat`, or `exp - now`), if limited.
    pub max_lifetime_secs: Option<u64>,
}

impl ClaimPolicy {
    /// The rules an issuer's configuration sets.
    pub(crate) fn from_config(cfg: &crate::config::IssuerConfig) -> ClaimPolicy {
        ClaimPolicy {
            issuer: cfg.issuer.clone(),
            audiences: cfg.audiences.clone(),
            allow_any_audience: cfg.allow_any_audience,
            required: cfg.required_claims.clone(),
            typ: cfg.typ.clone(),
            leeway_secs: cfg.leeway_secs,
            max_lifetime_secs: cfg.max_token_lifetime_secs,
        }
    }
}

/// Read a NumericDate claim as milliseconds since the epoch: absent is
/// `None`; present but not a number, non-finite, negative or past
/// [`MAX_NUMERIC_DATE_SECS`] is an invalid payload. A fraction of a
/// millisecond rounds up (see the module documentation).
pub(crate) fn numeric_date_ms(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>> {
    // With a clock counted in whole milliseconds, rounding up keeps the
    // rules exact: `now_ms < ceil(exp)` is exactly "before exp" and
    // `now_ms >= ceil(nbf)` exactly "on or after nbf".
    Ok(numeric_date_us(claims, name)?.map(|us| us.div_ceil(1000)))
}

/// Read a NumericDate claim as microseconds since the epoch, by the rules
/// of [`numeric_date_ms`]. For comparisons that must be strict below a
/// millisecond (a revocation of tokens issued *before* a second).
pub(crate) fn numeric_date_us(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>> {
    let bad = |why: &str| Error::new(ErrorKind::InvalidPayload, format!("{name} {why}"));
    let n = match claims.get(name) {
        None => return Ok(None),
        Some(Value::Number(n)) => n,
        Some(_) => return Err(bad("must be a number")),
    };
    if let Some(secs) = n.as_u64() {
        if secs > MAX_NUMERIC_DATE_SECS {
            return Err(bad(&format!("is after {MAX_NUMERIC_DATE_SECS} (9999-12-31T23:59:59Z)")));
        }
        return Ok(Some(secs * 1_000_000));
    }
    if n.is_i64() {
        return Err(bad("must not be negative"));
    }
    let secs = n.as_f64().ok_or_else(|| bad("must be a number"))?;
    if !secs.is_finite() {
        return Err(bad("must be finite"));
    }
    if secs < 0.0 {
        return Err(bad("must not be negative"));
    }
    if secs > MAX_NUMERIC_DATE_SECS as f64 {
        return Err(bad(&format!("is after {MAX_NUMERIC_DATE_SECS} (9999-12-31T23:59:59Z)")));
    }
    // A decimal fraction such as 4600.001 has no exact binary form (it is
    // 4600.000999…): rounding to the microsecond gets back the value the
    // issuer wrote. In range, the microseconds fit a u64 (at most ~2.5e17).
    Ok(Some((secs * 1_000_000.0).round() as u64))
}

/// RFC 7515 §4.1.9: a `typ` without a `/` means `application/` followed by
/// it, so both spellings are reduced to the short one before comparing.
/// A value with another `/` after the prefix is a different media type and
/// is kept whole.
fn typ_short_form(typ: &str) -> &str {
    const PREFIX: &str = "application/";
    match typ.get(..PREFIX.len()) {
        Some(p) if p.eq_ignore_ascii_case(PREFIX) && !typ[PREFIX.len()..].contains('/') => &typ[PREFIX.len()..],
        _ => typ,
    }
}

fn missing(claim: &str) -> Error {
    Error::new(
        ErrorKind::MissingRequiredClaim,
        format!("required claim {claim:?} is missing"),
    )
}

/// Whether a token's `typ` matches the configured one: the same media type
/// with or without `application/`, compared case-insensitively (media types
/// are case-insensitive, RFC 2045 §5.1).
fn typ_matches(token_typ: &str, configured: &str) -> bool {
    typ_short_form(token_typ).eq_ignore_ascii_case(typ_short_form(configured))
}

impl ClaimPolicy {
    /// The first instant, ms since the epoch, at which a token with this
    /// `exp` (in ms) is expired: `exp + leeway`. Used by the claim check and
    /// by the cache, so a cached result is never served at that instant.
    pub(crate) fn invalid_from_ms(&self, exp_ms: u64) -> u64 {
        exp_ms.saturating_add(self.leeway_secs.saturating_mul(1000))
    }

    /// Check every claim rule at `now_ms` (ms since the epoch). A token whose
    /// lifetime (`exp - iat`, or `exp - now` without `iat`) is longer than
    /// `max_lifetime_secs` is rejected. A claim the rules need that is absent
    /// (`exp`, `iss`, `aud`, a required claim) is `missing_required_claim`,
    /// never the kind for a wrong value. Returns `exp` in ms on success.
    pub(crate) fn check(&self, claims: &Map<String, Value>, typ: Option<&str>, now_ms: u64) -> Result<u64> {
        let exp_ms = numeric_date_ms(claims, "exp")?;
        let nbf_ms = numeric_date_ms(claims, "nbf")?;
        let iat_ms = numeric_date_ms(claims, "iat")?;
        let exp_ms = exp_ms.ok_or_else(|| missing("exp"))?;
        self.check_times(exp_ms, nbf_ms, iat_ms, now_ms)?;
        self.check_lifetime(exp_ms, iat_ms, now_ms)?;
        self.check_issuer(claims)?;
        self.check_audience(claims)?;
        if let Some(name) = self.required.iter().find(|name| !claims.contains_key(*name)) {
            return Err(missing(name));
        }
        if let Some(want) = &self.typ {
            if !typ.is_some_and(|t| typ_matches(t, want)) {
                return Err(Error::new(ErrorKind::InvalidType, format!("typ must be {want:?}")));
            }
        }
        Ok(exp_ms)
    }

    /// `exp`, `nbf` and `iat` against `now_ms`, with the leeway.
    fn check_times(&self, exp_ms: u64, nbf_ms: Option<u64>, iat_ms: Option<u64>, now_ms: u64) -> Result<()> {
        let leeway_ms = self.leeway_secs.saturating_mul(1000);
        if now_ms >= self.invalid_from_ms(exp_ms) {
            return Err(Error::new(
                ErrorKind::Expired,
                format!("token expired at {exp_ms} ms, now {now_ms} ms (leeway {leeway_ms} ms)"),
            ));
        }
        let in_future = |t: &u64| now_ms.saturating_add(leeway_ms) < *t;
        if let Some(nbf_ms) = nbf_ms.filter(in_future) {
            return Err(Error::new(
                ErrorKind::NotYetValid,
                format!("token not valid before {nbf_ms} ms, now {now_ms} ms (leeway {leeway_ms} ms)"),
            ));
        }
        if let Some(iat_ms) = iat_ms.filter(in_future) {
            return Err(Error::new(
                ErrorKind::NotYetValid,
                format!("token issued in the future ({iat_ms} ms), now {now_ms} ms (leeway {leeway_ms} ms)"),
            ));
        }
        Ok(())
    }

    /// The lifetime (`exp - iat`, or `exp - now` without `iat`) against
    /// `max_token_lifetime_secs`, if set.
    fn check_lifetime(&self, exp_ms: u64, iat_ms: Option<u64>, now_ms: u64) -> Result<()> {
        let Some(max_secs) = self.max_lifetime_secs else {
            return Ok(());
        };
        let max_ms = max_secs.saturating_mul(1000);
        // With `iat` the lifetime is the issuer's own statement and needs no
        // leeway. Without it the remaining lifetime is measured against our
        // clock, so the issuer's clock may be ahead by up to the leeway.
        let (lifetime_ms, allowed_ms) = match iat_ms {
            Some(iat_ms) => (exp_ms.saturating_sub(iat_ms), max_ms),
            None => (
                exp_ms.saturating_sub(now_ms),
                max_ms.saturating_add(self.leeway_secs.saturating_mul(1000)),
            ),
        };
        if lifetime_ms <= allowed_ms {
            return Ok(());
        }
        let how = if iat_ms.is_some() {
            ""
        } else {
            " (no iat: measured from now)"
        };
        Err(Error::new(
            ErrorKind::TokenLifetimeExceeded,
            format!("token lifetime {lifetime_ms} ms exceeds max_token_lifetime_secs {max_secs}{how}"),
        ))
    }

    fn check_issuer(&self, claims: &Map<String, Value>) -> Result<()> {
        if self.issuer.is_empty() {
            return Ok(());
        }
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == self.issuer => Ok(()),
            Some(Value::String(iss)) => Err(Error::new(
                ErrorKind::InvalidIssuer,
                format!("iss {:?} is not {:?}", crate::token::truncate(iss), self.issuer),
            )),
            Some(_) => Err(Error::new(ErrorKind::InvalidPayload, "iss must be a string")),
            None => Err(missing("iss")),
        }
    }

    fn check_audience(&self, claims: &Map<String, Value>) -> Result<()> {
        if self.allow_any_audience {
            return Ok(());
        }
        let accepted = |a: &str| self.audiences.iter().any(|x| x == a);
        let ok = match claims.get("aud") {
            None => return Err(missing("aud")),
            Some(Value::String(a)) => accepted(a),
            Some(Value::Array(items)) => items.iter().any(|v| v.as_str().is_some_and(accepted)),
            Some(_) => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::InvalidAudience,
                "aud does not contain an accepted audience",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> ClaimPolicy {
        ClaimPolicy {
            issuer: "https://idp".into(),
            audiences: vec!["api".into()],
            allow_any_audience: false,
            required: vec!["sub".into()],
            typ: None,
            leeway_secs: 30,
            max_lifetime_secs: None,
        }
    }

    /// Check at `now_ms` with the default test policy (leeway 30 s).
    fn check(c: Value, now_ms: u64) -> Result<u64> {
        policy().check(c.as_object().unwrap(), Some("JWT"), now_ms)
    }

    fn claims(extra: Value) -> Value {
        let mut c = json!({"iss": "https://idp", "aud": "api", "sub": "s"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    #[test]
    fn rules() {
        let ok = json!({"iss": "https://idp", "aud": ["x", "api"], "sub": "s", "exp": 1000, "nbf": 900});
        assert_eq!(check(ok.clone(), 1_000_000).unwrap(), 1_000_000);
        // Within leeway up to the last millisecond before exp + leeway. (This
        // test used to accept the whole second 1030 too: invalid *at*
        // exp + leeway is the corrected rule.)
        assert_eq!(check(ok.clone(), 1_029_999).unwrap(), 1_000_000);
        assert_eq!(check(ok.clone(), 1_030_000).unwrap_err().kind(), ErrorKind::Expired);
        assert_eq!(check(ok.clone(), 1_031_000).unwrap_err().kind(), ErrorKind::Expired);
        assert_eq!(check(ok.clone(), 869_000).unwrap_err().kind(), ErrorKind::NotYetValid);
        let k = |v: Value| check(v, 950_000).unwrap_err().kind();
        // An absent claim is missing, not a wrong value (issue 14 item 7: a
        // token without exp used to be reported as expired).
        assert_eq!(
            k(json!({"iss": "https://idp", "aud": "api", "sub": "s"})),
            ErrorKind::MissingRequiredClaim
        );
        assert_eq!(
            k(json!({"aud": "api", "sub": "s", "exp": 1000})),
            ErrorKind::MissingRequiredClaim
        );
        assert_eq!(
            k(json!({"iss": 7, "aud": "api", "sub": "s", "exp": 1000})),
            ErrorKind::InvalidPayload
        );
        assert_eq!(
            k(json!({"iss": "https://other", "aud": "api", "sub": "s", "exp": 1000})),
            ErrorKind::InvalidIssuer
        );
        assert_eq!(
            k(json!({"iss": "https://idp", "aud": "web", "sub": "s", "exp": 1000})),
            ErrorKind::InvalidAudience
        );
        assert_eq!(
            k(json!({"iss": "https://idp", "sub": "s", "exp": 1000})),
            ErrorKind::MissingRequiredClaim
        );
        assert_eq!(
            k(json!({"iss": "https://idp", "aud": "api", "exp": 1000})),
            ErrorKind::MissingRequiredClaim
        );
        assert_eq!(
            k(json!({"iss": "https://idp", "aud": "api", "sub": "s", "exp": "1000"})),
            ErrorKind::InvalidPayload
        );
    }

    #[test]
    fn expiry_is_compared_in_milliseconds_not_whole_seconds() {
        let p = ClaimPolicy {
            leeway_secs: 0,
            ..policy()
        };
        let c = claims(json!({"exp": 1000}));
        let at = |now_ms| p.check(c.as_object().unwrap(), None, now_ms);
        assert_eq!(at(999_999).unwrap(), 1_000_000);
        assert_eq!(at(1_000_000).unwrap_err().kind(), ErrorKind::Expired, "invalid at exp");
        assert_eq!(
            at(1_000_999).unwrap_err().kind(),
            ErrorKind::Expired,
            "and within its second"
        );
    }

    #[test]
    fn nbf_and_iat_are_valid_from_the_millisecond_minus_leeway() {
        // leeway 30 s: nbf 1000 is valid from 970_000 ms on.
        assert_eq!(
            check(claims(json!({"exp": 2000, "nbf": 1000})), 969_999)
                .unwrap_err()
                .kind(),
            ErrorKind::NotYetValid
        );
        assert!(check(claims(json!({"exp": 2000, "nbf": 1000})), 970_000).is_ok());
        assert_eq!(
            check(claims(json!({"exp": 2000, "iat": 1000})), 969_999)
                .unwrap_err()
                .kind(),
            ErrorKind::NotYetValid
        );
        assert!(check(claims(json!({"exp": 2000, "iat": 1000})), 970_000).is_ok());
        // A fractional nbf counts to the millisecond.
        assert_eq!(
            check(claims(json!({"exp": 2000, "nbf": 1000.5})), 970_499)
                .unwrap_err()
                .kind(),
            ErrorKind::NotYetValid
        );
        assert!(check(claims(json!({"exp": 2000, "nbf": 1000.5})), 970_500).is_ok());
    }

    #[test]
    fn out_of_range_numeric_dates_are_invalid_payload_not_saturated() {
        for (name, value) in [
            ("exp", json!(1e30)),
            ("exp", json!(MAX_NUMERIC_DATE_SECS + 1)),
            ("exp", json!(MAX_NUMERIC_DATE_SECS as f64 + 0.5)),
            ("exp", json!(u64::MAX)),
            ("exp", json!(-1)),
            ("exp", json!(-0.5)),
            ("exp", json!(i64::MIN)),
            ("nbf", json!(-1)),
            ("nbf", json!(1e300)),
            ("iat", json!(-1e-3)),
            ("iat", json!(1e19)),
            ("iat", json!("1000")),
        ] {
            let mut c = claims(json!({"exp": 2000}));
            c[name] = value.clone();
            let e = check(c, 1_000_000).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidPayload, "{name}: {value} -> {e}");
        }
        // The bound itself is a valid date.
        assert_eq!(
            check(claims(json!({"exp": MAX_NUMERIC_DATE_SECS})), 1_000_000).unwrap(),
            MAX_NUMERIC_DATE_SECS * 1000
        );
    }

    #[test]
    fn fractional_numeric_dates_count_to_the_millisecond() {
        let p = ClaimPolicy {
            leeway_secs: 0,
            ..policy()
        };
        let at = |c: Value, now_ms| p.check(c.as_object().unwrap(), None, now_ms);
        // 1000.0004 s: still valid at 1000000 ms, invalid from 1000001 ms.
        assert_eq!(at(claims(json!({"exp": 1000.0004})), 1_000_000).unwrap(), 1_000_001);
        assert_eq!(
            at(claims(json!({"exp": 1000.0004})), 1_000_001).unwrap_err().kind(),
            ErrorKind::Expired
        );
        // Decimal fractions are read as written, not as their binary
        // approximation (4600.001 is 4600.000999… as an f64).
        assert_eq!(at(claims(json!({"exp": 4600.001})), 0).unwrap(), 4_600_001);
        assert_eq!(at(claims(json!({"exp": 1000.25})), 0).unwrap(), 1_000_250);
        assert_eq!(at(claims(json!({"exp": 1000.0})), 0).unwrap(), 1_000_000);
        // Valid from the first whole millisecond at or after nbf.
        let c = claims(json!({"exp": 2000, "nbf": 1000.0004}));
        assert_eq!(at(c.clone(), 1_000_000).unwrap_err().kind(), ErrorKind::NotYetValid);
        assert!(at(c, 1_000_001).is_ok());
    }

    #[test]
    fn token_lifetime_longer_than_the_configured_maximum_is_rejected() {
        // leeway 30 s
        let at = |c: Value, now_ms, max| {
            let p = ClaimPolicy {
                max_lifetime_secs: max,
                ..policy()
            };
            p.check(c.as_object().unwrap(), None, now_ms)
        };
        // exp - iat.
        let c = claims(json!({"iat": 1000, "exp": 1000 + 3600}));
        assert!(at(c.clone(), 1_000_000, Some(3600)).is_ok());
        assert!(at(c.clone(), 1_000_000, None).is_ok());
        assert_eq!(
            at(c.clone(), 1_000_000, Some(3599)).unwrap_err().kind(),
            ErrorKind::TokenLifetimeExceeded
        );
        // A fractional exp one millisecond too late is too long.
        let c = claims(json!({"iat": 1000, "exp": 4600.001}));
        assert_eq!(
            at(c, 1_000_000, Some(3600)).unwrap_err().kind(),
            ErrorKind::TokenLifetimeExceeded
        );
        // Without iat: exp - now, allowing the issuer's clock the leeway.
        let c = claims(json!({"exp": 1000 + 3600 + 30}));
        assert!(at(c.clone(), 1_000_000, Some(3600)).is_ok());
        assert_eq!(
            at(c, 999_999, Some(3600)).unwrap_err().kind(),
            ErrorKind::TokenLifetimeExceeded
        );
        // A never-expiring-in-practice token is refused once a maximum is set.
        let c = claims(json!({"iat": 1000, "exp": MAX_NUMERIC_DATE_SECS}));
        assert_eq!(
            at(c, 1_000_000, Some(86_400)).unwrap_err().kind(),
            ErrorKind::TokenLifetimeExceeded
        );
    }

    #[test]
    fn typ_without_slash_matches_the_application_prefixed_form() {
        let p = ClaimPolicy {
            typ: Some("at+jwt".into()),
            ..policy()
        };
        let c = claims(json!({"exp": 2000}));
        let c = c.as_object().unwrap();
        for ok in ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"] {
            assert!(p.check(c, Some(ok), 1_000_000).is_ok(), "{ok}");
        }
        for bad in [
            "jwt",
            "application/jwt",
            "text/at+jwt",
            "application/x/at+jwt",
            "at+jwt/",
        ] {
            assert_eq!(
                p.check(c, Some(bad), 1_000_000).unwrap_err().kind(),
                ErrorKind::InvalidType,
                "{bad}"
            );
        }
        assert_eq!(p.check(c, None, 1_000_000).unwrap_err().kind(), ErrorKind::InvalidType);
        // And the reverse: configured with the prefix, the short form matches.
        let p = ClaimPolicy {
            typ: Some("application/AT+JWT".into()),
            ..policy()
        };
        for ok in ["at+jwt", "application/at+jwt"] {
            assert!(p.check(c, Some(ok), 1_000_000).is_ok(), "{ok}");
        }
        assert_eq!(
            p.check(c, Some("jwt"), 1_000_000).unwrap_err().kind(),
            ErrorKind::InvalidType
        );
    }
}
