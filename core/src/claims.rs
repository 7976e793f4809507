//! Claim checks after the signature verified: `exp` (required), `nbf`,
//! `iat`, `iss`, `aud`, required claims and header `typ`, with leeway.

use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result};

/// What one issuer requires of a token's claims.
pub(crate) struct ClaimPolicy {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub allow_any_audience: bool,
    pub required: Vec<String>,
    pub typ: Option<String>,
    pub leeway_secs: u64,
}

/// Read a NumericDate claim: absent is `None`; present but not a number is
/// an invalid payload.
pub(crate) fn numeric(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(Error::new(
            ErrorKind::InvalidPayload,
            format!("{name} must be a number"),
        )),
    }
}

impl ClaimPolicy {
    /// Check every claim rule at `now_secs`. Returns `exp` on success.
    pub(crate) fn check(&self, claims: &Map<String, Value>, typ: Option<&str>, now_secs: u64) -> Result<u64> {
        let now = now_secs as f64;
        let leeway = self.leeway_secs as f64;
        let exp = numeric(claims, "exp")?.ok_or_else(|| Error::new(ErrorKind::Expired, "token has no exp claim"))?;
        if now > exp + leeway {
            return Err(Error::new(
                ErrorKind::Expired,
                format!("token expired at {exp}, now {now_secs}"),
            ));
        }
        if let Some(nbf) = numeric(claims, "nbf")? {
            if now + leeway < nbf {
                return Err(Error::new(
                    ErrorKind::NotYetValid,
                    format!("token not valid before {nbf}, now {now_secs}"),
                ));
            }
        }
        if let Some(iat) = numeric(claims, "iat")? {
            if now + leeway < iat {
                return Err(Error::new(
                    ErrorKind::NotYetValid,
                    format!("token issued in the future ({iat}), now {now_secs}"),
                ));
            }
        }
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == self.issuer => {}
            Some(Value::String(iss)) => {
                return Err(Error::new(
                    ErrorKind::InvalidIssuer,
                    format!("iss {:?} is not {:?}", crate::token::truncate(iss), self.issuer),
                ))
            }
            _ => return Err(Error::new(ErrorKind::InvalidIssuer, "token has no string iss claim")),
        }
        if !self.allow_any_audience {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => self.audiences.iter().any(|x| x == a),
                Some(Value::Array(items)) => items
                    .iter()
                    .any(|v| v.as_str().is_some_and(|a| self.audiences.iter().any(|x| x == a))),
                _ => false,
            };
            if !ok {
                return Err(Error::new(
                    ErrorKind::InvalidAudience,
                    "aud does not contain an accepted audience",
                ));
            }
        }
        for name in &self.required {
            if !claims.contains_key(name) {
                return Err(Error::new(
                    ErrorKind::MissingRequiredClaim,
                    format!("required claim {name:?} is missing"),
                ));
            }
        }
        if let Some(want) = &self.typ {
            if !typ.is_some_and(|t| t.eq_ignore_ascii_case(want)) {
                return Err(Error::new(ErrorKind::InvalidType, format!("typ must be {want:?}")));
            }
        }
        Ok(exp.max(0.0) as u64)
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
        }
    }

    fn check(c: Value, now: u64) -> Result<u64> {
        policy().check(c.as_object().unwrap(), Some("JWT"), now)
    }

    #[test]
    fn rules() {
        let ok = json!({"iss": "https://idp", "aud": ["x", "api"], "sub": "s", "exp": 1000, "nbf": 900});
        assert_eq!(check(ok.clone(), 1000).unwrap(), 1000);
        assert_eq!(check(ok.clone(), 1030).unwrap(), 1000); // within leeway
        assert_eq!(check(ok.clone(), 1031).unwrap_err().kind(), ErrorKind::Expired);
        assert_eq!(check(ok.clone(), 869).unwrap_err().kind(), ErrorKind::NotYetValid);
        let k = |v: Value| check(v, 950).unwrap_err().kind();
        assert_eq!(
            k(json!({"iss": "https://idp", "aud": "api", "sub": "s"})),
            ErrorKind::Expired
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
            ErrorKind::InvalidAudience
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
}
