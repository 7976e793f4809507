//! Status List Tokens (draft-ietf-oauth-status-list §5.1): a JWT with
//! `typ: statuslist+jwt` whose payload carries the list. It is trusted only
//! if it passes the same key rules as the issuer's own tokens and says what
//! the referencing token asked for:
//!
//! * `typ` is `statuslist+jwt` (or `application/statuslist+jwt`);
//! * `alg` is one the issuer allows, the key is the issuer's (same lookup,
//!   same unknown-`kid` rules), the signature verifies;
//! * `iss` is the issuer, `sub` is exactly the `uri` it was fetched from;
//! * `iat` is present and not in the future, `exp` (if any) not past (both
//!   with the issuer's leeway);
//! * `status_list.bits` is 1, 2, 4 or 8 and `status_list.lst` inflates to
//!   at most `max_inflated_bytes`.

use serde_json::{Map, Value};

use crate::claims::numeric_date_ms;
use crate::issuer::{Env, Issuer};
use crate::status::list::StatusList;
use crate::token;

/// The media type of a Status List Token.
pub const TYP: &str = "statuslist+jwt";

/// A verified Status List Token.
#[derive(Debug)]
pub(crate) struct ListToken {
    pub list: StatusList,
    /// The `ttl` claim, seconds.
    pub ttl_secs: Option<u64>,
    /// The `exp` claim, ms: the list must not be used from then on (plus leeway).
    pub exp_ms: Option<u64>,
    /// The `iat` claim, ms: a list issued before the one in use is a
    /// replayed response and never replaces it.
    pub iat_ms: u64,
}

/// Verify the Status List Token `raw`, fetched from `uri`, with the keys
/// and algorithms of `issuer`; its `iss` must be `iss` (the issuer's name,
/// or a tenant's when its key set is shared).
#[allow(clippy::too_many_arguments)]
pub(crate) fn verify(
    raw: &[u8],
    uri: &str,
    issuer: &Issuer,
    iss: &str,
    env: &Env,
    max_token_bytes: usize,
    max_inflated: usize,
    now: u64,
) -> Result<ListToken, String> {
    let raw = trim_ascii(raw);
    let parsed = token::parse(raw, max_token_bytes).map_err(|e| e.message().to_string())?;
    if !parsed.header.typ.as_deref().is_some_and(is_statuslist_typ) {
        return Err(format!(
            "typ is {:?}, not {TYP:?}",
            parsed.header.typ.as_deref().unwrap_or("")
        ));
    }
    let alg = issuer
        .check_algorithm(parsed.header.alg)
        .map_err(|e| e.message().to_string())?;
    let (key, _) = issuer
        .resolve_key(env, parsed.header.kid.as_deref(), alg, now)
        .map_err(|e| format!("{} ({})", e.message(), e.kind()))?;
    key.verify(&parsed, alg).map_err(|e| e.message().to_string())?;
    check_claims(&parsed.claims, uri, iss, issuer.cfg.leeway_secs, max_inflated, now)
}

fn is_statuslist_typ(typ: &str) -> bool {
    let t = typ.trim();
    let t = t
        .get(..12)
        .filter(|p| p.eq_ignore_ascii_case("application/"))
        .map_or(t, |_| &t[12..]);
    t.eq_ignore_ascii_case(TYP)
}

fn trim_ascii(raw: &[u8]) -> &[u8] {
    let start = raw.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &raw[start..end]
}

/// The payload rules, once the signature verified.
fn check_claims(
    claims: &Map<String, Value>,
    uri: &str,
    issuer: &str,
    leeway_secs: u64,
    max_inflated: usize,
    now: u64,
) -> Result<ListToken, String> {
    match claims.get("sub") {
        Some(Value::String(sub)) if sub == uri => {}
        Some(Value::String(sub)) => {
            return Err(format!(
                "sub {:?} is not the uri it was fetched from",
                token::truncate(sub)
            ))
        }
        _ => return Err("no string sub claim".into()),
    }
    match claims.get("iss") {
        Some(Value::String(iss)) if iss == issuer => {}
        Some(Value::String(iss)) => return Err(format!("iss {:?} is not {issuer:?}", token::truncate(iss))),
        _ => return Err("no string iss claim".into()),
    }
    let leeway = leeway_secs * 1000;
    let date = |name| numeric_date_ms(claims, name).map_err(|e| e.message().to_string());
    let iat_ms = date("iat")?.ok_or("no iat claim")?;
    if iat_ms > now.saturating_add(leeway) {
        return Err("iat is in the future".into());
    }
    let exp_ms = date("exp")?;
    if exp_ms.is_some_and(|exp| now >= exp.saturating_add(leeway)) {
        return Err("the list has expired (exp)".into());
    }
    let ttl_secs = match claims.get("ttl") {
        None => None,
        Some(v) => Some(v.as_u64().filter(|t| *t > 0).ok_or("ttl must be a positive integer")?),
    };
    let Some(Value::Object(sl)) = claims.get("status_list") else {
        return Err("no status_list object".into());
    };
    let bits = sl
        .get("bits")
        .and_then(Value::as_u64)
        .and_then(|b| u8::try_from(b).ok())
        .ok_or("status_list.bits must be 1, 2, 4 or 8")?;
    let Some(Value::String(lst)) = sl.get("lst") else {
        return Err("status_list.lst must be a string".into());
    };
    let list = StatusList::decode(bits, lst, max_inflated)?;
    Ok(ListToken {
        list,
        ttl_secs,
        exp_ms,
        iat_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    const NOW: u64 = 1_700_000_000_000;

    fn good() -> Value {
        json!({"iss": "https://idp", "sub": "https://idp/sl/1", "iat": 1_700_000_000u64,
               "ttl": 60, "status_list": {"bits": 1, "lst": "eNrbuRgAAhcBXQ"}})
    }

    #[test]
    fn a_good_payload_passes() {
        let t = check_claims(&claims(good()), "https://idp/sl/1", "https://idp", 30, 1024, NOW).unwrap();
        assert_eq!(t.ttl_secs, Some(60));
        assert_eq!(t.list.get(0), Some(1));
    }

    #[test]
    fn each_rule_refuses() {
        let check = |edit: &dyn Fn(&mut Value)| {
            let mut c = good();
            edit(&mut c);
            check_claims(&claims(c), "https://idp/sl/1", "https://idp", 30, 1024, NOW).unwrap_err()
        };
        assert!(check(&|c| c["sub"] = json!("https://idp/sl/2")).contains("sub"));
        assert!(check(&|c| c["iss"] = json!("https://other")).contains("iss"));
        assert!(check(&|c| {
            c.as_object_mut().unwrap().remove("iat");
        })
        .contains("iat"));
        assert!(check(&|c| c["iat"] = json!(1_700_000_100u64)).contains("future"));
        assert!(check(&|c| c["exp"] = json!(1_699_999_970u64)).contains("expired"));
        assert!(check(&|c| c["status_list"]["bits"] = json!(3)).contains("bits"));
        assert!(check(&|c| c["status_list"]["bits"] = json!(256)).contains("bits"));
        assert!(check(&|c| c["ttl"] = json!(-1)).contains("ttl"));
        assert!(check(&|c| c["status_list"]["lst"] = json!(5)).contains("lst"));
    }

    #[test]
    fn typ_is_compared_as_a_media_type() {
        assert!(is_statuslist_typ("statuslist+jwt"));
        assert!(is_statuslist_typ("application/statuslist+jwt"));
        assert!(is_statuslist_typ("StatusList+JWT"));
        assert!(!is_statuslist_typ("JWT"));
        assert!(!is_statuslist_typ("application/jwt"));
    }
}
