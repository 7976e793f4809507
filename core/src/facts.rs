//! The few claims a cached result is re-checked against when the trust
//! state changes: read once when the token is verified, kept compactly next
//! to the cached token, so a cache hit never parses the claims.
//!
//! Everything a hit-time check needs goes here (and nowhere else), so adding
//! a check means adding a field to [`Facts`] and reading it in [`Facts::of`].

use serde_json::{Map, Value};

/// `iat` as the revocation check reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Iat {
    /// No `iat` claim.
    Absent,
    /// Microseconds since the epoch (by the rules of
    /// `claims::numeric_date_us`).
    Us(u64),
    /// Present but not a valid NumericDate: it proves nothing.
    Invalid,
}

/// Stored `iat` sentinels: NumericDates end in 9999, far below these.
const IAT_ABSENT: u64 = u64::MAX;
const IAT_INVALID: u64 = u64::MAX - 1;

/// The hit-time facts of one verified token: its string `jti` and `sub`
/// claims and its `iat`. 32 bytes plus one allocation for the strings (none
/// when the token has neither).
#[derive(Clone, Debug)]
pub(crate) struct Facts {
    /// `jti` then `sub`, back to back.
    text: Box<str>,
    /// Where `sub` starts in `text`.
    sub_at: u32,
    /// [`HAS_JTI`] and [`HAS_SUB`].
    has: u8,
    /// `iat` in µs, or [`IAT_ABSENT`] / [`IAT_INVALID`].
    iat: u64,
}

const HAS_JTI: u8 = 1;
const HAS_SUB: u8 = 2;

impl Facts {
    /// The facts of verified `claims`. A `jti` or `sub` that is not a string
    /// is treated as absent, as the revocation lists always have.
    pub(crate) fn of(claims: &Map<String, Value>) -> Facts {
        let string = |name| match claims.get(name) {
            Some(Value::String(s)) => Some(s.as_str()),
            _ => None,
        };
        let (jti, sub) = (string("jti"), string("sub"));
        let mut text = String::with_capacity(jti.map_or(0, str::len) + sub.map_or(0, str::len));
        text.push_str(jti.unwrap_or(""));
        let sub_at = text.len();
        text.push_str(sub.unwrap_or(""));
        let iat = match crate::claims::numeric_date_us(claims, "iat") {
            Ok(Some(us)) => us,
            Ok(None) => IAT_ABSENT,
            Err(_) => IAT_INVALID,
        };
        Facts {
            text: text.into_boxed_str(),
            // A token is at most `max_token_bytes` (u32 range, checked by the
            // configuration), so its `jti` is too.
            sub_at: u32::try_from(sub_at).expect("jti shorter than 4 GiB"),
            has: if jti.is_some() { HAS_JTI } else { 0 } | if sub.is_some() { HAS_SUB } else { 0 },
            iat,
        }
    }

    /// The string `jti` claim.
    pub(crate) fn jti(&self) -> Option<&str> {
        (self.has & HAS_JTI != 0).then(|| &self.text[..self.sub_at as usize])
    }

    /// The string `sub` claim.
    pub(crate) fn sub(&self) -> Option<&str> {
        (self.has & HAS_SUB != 0).then(|| &self.text[self.sub_at as usize..])
    }

    /// The `iat` claim.
    pub(crate) fn iat(&self) -> Iat {
        match self.iat {
            IAT_ABSENT => Iat::Absent,
            IAT_INVALID => Iat::Invalid,
            us => Iat::Us(us),
        }
    }

    /// Heap bytes held besides the struct itself.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts(v: Value) -> Facts {
        Facts::of(v.as_object().unwrap())
    }

    #[test]
    fn reads_string_jti_and_sub_and_iat() {
        let f = facts(json!({"jti": "j-1", "sub": "alice", "iat": 500}));
        assert_eq!(
            (f.jti(), f.sub(), f.iat()),
            (Some("j-1"), Some("alice"), Iat::Us(500_000_000))
        );
        let f = facts(json!({"sub": "", "jti": ""}));
        assert_eq!((f.jti(), f.sub(), f.iat()), (Some(""), Some(""), Iat::Absent));
        let f = facts(json!({"jti": 7, "sub": ["x"], "iat": "600"}));
        assert_eq!((f.jti(), f.sub(), f.iat()), (None, None, Iat::Invalid));
        assert!(matches!(facts(json!({"iat": 499.9999})).iat(), Iat::Us(us) if us < 500_000_000));
        assert_eq!(facts(json!({"iat": -1})).iat(), Iat::Invalid);
        assert_eq!(facts(json!({"iat": 1e30})).iat(), Iat::Invalid);
    }

    #[test]
    fn facts_stay_small() {
        assert!(std::mem::size_of::<Facts>() <= 32, "{}", std::mem::size_of::<Facts>());
    }
}
