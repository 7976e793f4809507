//! The bearer token of a request (RFC 6750 §2): from the `Authorization`
//! header's `Bearer` scheme, another configured header, or a cookie.
//!
//! What is decided here is only *where the token is*: whether the token
//! itself is well formed is the engine's question, so a token with a
//! character outside the b64token alphabet (`Bearer !!.b.c`) reaches the
//! engine and is refused as `invalid_token` (401, RFC 6750 §3.1: "the
//! access token provided is ... malformed"), not as a malformed request.
//! A request is malformed (`invalid_request`, 400) when it carries no
//! token after `Bearer`, more than one token, or uses more than one
//! method (the header repeated, the cookie repeated, a header and a
//! cookie that differ).

/// Where a front end reads the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSource {
    /// The header (lower case). `authorization` means the `Bearer`
    /// scheme; another header holds the token itself, an optional
    /// `Bearer ` prefix allowed.
    pub header: String,
    /// A cookie read as well, if configured.
    pub cookie: Option<String>,
}

impl Default for TokenSource {
    fn default() -> Self {
        TokenSource {
            header: "authorization".into(),
            cookie: None,
        }
    }
}

/// The message of `Bearer` with nothing after it.
pub const NO_TOKEN: &str = "no token after Bearer";
/// The message of `Bearer a b`.
pub const MORE_THAN_ONE: &str = "more than one token after Bearer";
/// The message of `Bearer<TAB>token` (RFC 6750 §2.1: `"Bearer" 1*SP b64token`).
pub const NOT_A_SPACE: &str = "Bearer must be followed by a space";

impl TokenSource {
    /// The token of a request. `header_values` are the values of
    /// [`header`](Self::header) as sent (every one: a repeated header is
    /// refused), `cookie_values` those of `Cookie`. `Ok(None)` when there is
    /// none; `Err` (the description of an `invalid_request`) for a header
    /// that is there but holds no single token, and for ambiguous
    /// credentials (RFC 6750 §3.1: "uses more than one method"): the header
    /// repeated, the cookie repeated (its name in any case, empty values
    /// included: upstreams differ on which one they read), or a header and
    /// a cookie with different tokens. Borrows from the values: nothing is
    /// allocated.
    pub fn token<'h>(
        &self,
        header_values: impl IntoIterator<Item = &'h [u8]>,
        cookie_values: impl IntoIterator<Item = &'h [u8]>,
    ) -> Result<Option<&'h str>, &'static str> {
        let mut values = header_values.into_iter();
        let from_header = match (values.next(), values.next()) {
            (Some(_), Some(_)) => return Err("more than one credentials header"),
            (None, _) => None,
            (Some(v), None) => self.header_token(v)?,
        };
        let Some(cookie) = &self.cookie else {
            return Ok(from_header);
        };
        let mut from_cookie = None;
        let mut seen = false;
        for header in cookie_values {
            // Bytes, not text: a header with one odd byte must not hide a
            // second cookie of the name from this check.
            for pair in header.split(|&b| b == b';') {
                let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                    continue;
                };
                if !pair[..eq].trim_ascii().eq_ignore_ascii_case(cookie.as_bytes()) {
                    continue;
                }
                if std::mem::replace(&mut seen, true) {
                    return Err("more than one cookie of the token's name");
                }
                let value = std::str::from_utf8(pair[eq + 1..].trim_ascii())
                    .map_err(|_| "malformed token cookie")?
                    .trim_matches('"');
                if !value.is_empty() {
                    from_cookie = Some(one_token(value)?);
                }
            }
        }
        match (from_header, from_cookie) {
            (Some(h), Some(c)) if h != c => Err("different bearer tokens in the header and the cookie"),
            (Some(t), _) | (None, Some(t)) => Ok(Some(t)),
            (None, None) => Ok(None),
        }
    }

    fn header_token<'h>(&self, v: &'h [u8]) -> Result<Option<&'h str>, &'static str> {
        let v = text(v)
            .map_err(|_| "malformed credentials header")?
            .trim_matches([' ', '\t']);
        let bearer = v.len() >= 6 && v.as_bytes()[..6].eq_ignore_ascii_case(b"bearer");
        match v.as_bytes().get(6) {
            // RFC 7235 §2.1: the scheme and its credentials are separated
            // by spaces, not tabs: `Bearer<TAB>x` is a malformed header,
            // not another scheme (it must not read as "no token").
            Some(&sep) if bearer && sep != b' ' && (sep.is_ascii_control() || sep.is_ascii_whitespace()) => {
                Err(NOT_A_SPACE)
            }
            Some(b' ') if bearer => one_token(v[6..].trim_start_matches(' ')).map(Some),
            None if bearer => Err(NO_TOKEN),
            // Another scheme (Basic, say): no bearer credentials, so the
            // answer is the bare challenge (RFC 6750 §3.1).
            _ if self.header == "authorization" => Ok(None),
            _ if v.is_empty() => Ok(None),
            _ => one_token(v).map(Some),
        }
    }
}

/// `v` as text. Every request's credentials header (hundreds of bytes) is
/// read as text, and is ASCII but for an attacker's: a branch-free pass
/// the compiler vectorises finds that in about a quarter of the
/// instructions `from_utf8` takes (it validates 16 bytes per step); a
/// header with any byte over 0x7F is validated by `from_utf8`.
fn text(v: &[u8]) -> Result<&str, std::str::Utf8Error> {
    if v.iter().fold(0u8, |acc, &b| acc | b) < 0x80 {
        // SAFETY: every byte is below 0x80, so `v` is ASCII, which is UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(v) });
    }
    std::str::from_utf8(v)
}

/// One token: not empty, no whitespace inside. Its characters are the
/// engine's to judge (a malformed token is `invalid_token`, 401).
fn one_token(t: &str) -> Result<&str, &'static str> {
    if t.is_empty() {
        return Err(NO_TOKEN);
    }
    // Every request scans its whole token (hundreds of bytes): first a
    // branch-free pass the compiler vectorises, flagging any byte at or
    // below space (ASCII whitespace is among them) or a comma; the exact
    // test runs only when something was flagged (control characters other
    // than whitespace are the engine's to refuse, not this function's).
    let flagged = t
        .bytes()
        .fold(0u8, |acc, b| acc | u8::from(b <= b' ') | u8::from(b == b','));
    if flagged != 0 && t.bytes().any(|b| b.is_ascii_whitespace() || b == b',') {
        return Err(MORE_THAN_ONE);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(header: &str, cookie: Option<&str>) -> TokenSource {
        TokenSource {
            header: header.into(),
            cookie: cookie.map(str::to_string),
        }
    }

    /// The token `s` reads from `pairs` (lower-case names).
    fn t(s: &TokenSource, pairs: &[(&str, &str)]) -> Result<Option<String>, &'static str> {
        let values = |name: &str| -> Vec<&[u8]> {
            pairs
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| v.as_bytes())
                .collect()
        };
        let (h, c) = (values(&s.header), values("cookie"));
        s.token(h, c).map(|t| t.map(str::to_string))
    }

    /// The vectorised pre-scan never lets a separator through: every byte
    /// value, at the start, the middle and the end of a long token, is
    /// judged as the plain byte-by-byte test judges it.
    #[test]
    fn one_token_judges_every_byte_at_every_position_as_the_plain_test() {
        let base = "a".repeat(700);
        for b in 0u8..=127 {
            for at in [0, 1, 31, 32, 350, 698, 699] {
                let mut bytes = base.clone().into_bytes();
                bytes[at] = b;
                let t = std::str::from_utf8(&bytes).unwrap();
                let plain = t.bytes().any(|b| b.is_ascii_whitespace() || b == b',');
                assert_eq!(one_token(t) == Err(MORE_THAN_ONE), plain, "byte {b:#x} at {at}");
            }
        }
    }

    /// The ASCII fast path answers as `from_utf8` does, for every byte
    /// value at the start, the middle and the end, and for sequences that
    /// are valid UTF-8 only whole.
    #[test]
    fn text_answers_as_from_utf8() {
        let base = "a".repeat(700);
        for b in 0u8..=255 {
            for at in [0, 1, 15, 16, 31, 350, 699] {
                let mut bytes = base.clone().into_bytes();
                bytes[at] = b;
                assert_eq!(text(&bytes).ok(), std::str::from_utf8(&bytes).ok(), "byte {b:#x} at {at}");
            }
        }
        for s in ["é", "tok€n", "\u{10FFFF}", ""] {
            assert_eq!(text(s.as_bytes()), Ok(s));
        }
        for bad in [&b"\xc3"[..], b"a\xff", b"\xed\xa0\x80", b"\xc0\xaf"] {
            assert!(text(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_strict() {
        let s = TokenSource::default();
        assert_eq!(
            t(&s, &[("authorization", "Bearer abc.def.ghi")]),
            Ok(Some("abc.def.ghi".into()))
        );
        assert_eq!(t(&s, &[("authorization", "bearer  abc")]), Ok(Some("abc".into())));
        assert_eq!(t(&s, &[]), Ok(None));
        assert_eq!(t(&s, &[("authorization", "Basic dXNlcjpwYXNz")]), Ok(None));
        assert_eq!(t(&s, &[("authorization", "Bearerx abc")]), Ok(None), "another scheme");
        assert_eq!(t(&s, &[("authorization", "Bearer")]), Err(NO_TOKEN));
        assert_eq!(t(&s, &[("authorization", "Bearer   ")]), Err(NO_TOKEN));
        assert_eq!(t(&s, &[("authorization", "Bearer a b")]), Err(MORE_THAN_ONE));
        assert_eq!(t(&s, &[("authorization", "Bearer a, Bearer a")]), Err(MORE_THAN_ONE));
        assert!(t(&s, &[("authorization", "Bearer a"), ("authorization", "Bearer b")]).is_err());
    }

    /// RFC 6750 decides where front ends disagreed (docs/http.md).
    #[test]
    fn where_front_ends_disagreed() {
        let s = TokenSource::default();
        // A token outside the b64token alphabet is the engine's to refuse
        // (401 invalid_token), not a malformed request (400).
        assert_eq!(t(&s, &[("authorization", "Bearer !!.b.c")]), Ok(Some("!!.b.c".into())));
        assert_eq!(
            t(&s, &[("authorization", "Bearer \"abc\"")]),
            Ok(Some("\"abc\"".into()))
        );
        // `Bearer<TAB>token` is neither accepted nor read as "no token".
        assert_eq!(t(&s, &[("authorization", "Bearer\tabc")]), Err(NOT_A_SPACE));
        assert_eq!(t(&s, &[("authorization", "bearer\u{b}abc")]), Err(NOT_A_SPACE));
        // Control characters inside stay one "token": the engine refuses it.
        assert_eq!(t(&s, &[("authorization", "Bearer a\tb")]), Err(MORE_THAN_ONE));
    }

    #[test]
    fn custom_header_and_cookie() {
        let s = source("x-access-token", Some("at"));
        assert_eq!(t(&s, &[("x-access-token", "abc")]), Ok(Some("abc".into())));
        assert_eq!(t(&s, &[("x-access-token", "Bearer abc")]), Ok(Some("abc".into())));
        assert_eq!(
            t(&s, &[("cookie", "a=1; at=tok.en.x; b=2")]),
            Ok(Some("tok.en.x".into()))
        );
        assert_eq!(t(&s, &[("cookie", "a=1"), ("cookie", "at=zz")]), Ok(Some("zz".into())));
        assert_eq!(t(&s, &[("cookie", "xat=zz")]), Ok(None));
        assert!(t(&s, &[("cookie", "at=a; at=a")]).is_err(), "a repeated cookie");
        assert!(t(&s, &[("cookie", "at=a"), ("cookie", "At=b")]).is_err(), "in any case");
        assert!(t(&s, &[("cookie", "at=; at=a")]).is_err(), "empty values count");
        assert!(
            t(&s, &[("x-access-token", "a"), ("cookie", "at=b")]).is_err(),
            "they differ"
        );
        assert_eq!(
            t(&s, &[("x-access-token", "a"), ("cookie", "at=a")]),
            Ok(Some("a".into()))
        );
        assert_eq!(
            t(&s, &[("x-access-token", "a"), ("cookie", "at=")]),
            Ok(Some("a".into()))
        );
        assert_eq!(
            t(&s, &[("authorization", "Bearer abc")]),
            Ok(None),
            "only the configured header"
        );
    }
}
