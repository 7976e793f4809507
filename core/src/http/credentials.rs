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
                    from_cookie = Some(one_token(value.as_bytes())?);
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
        // Read as bytes, so that the token's bytes are scanned once (by
        // `one_token`) and not also by a UTF-8 check of the whole value: the
        // bytes trimmed or matched before the token are ASCII, so the value
        // is UTF-8 exactly when what is left of it is, and each branch
        // checks that before answering anything else ("malformed" first,
        // as when the whole value was decoded up front).
        let v = trim_spaces_and_tabs(v);
        let bearer = v.len() >= 6 && v[..6].eq_ignore_ascii_case(b"bearer");
        let token = match v.get(6) {
            // RFC 7235 §2.1: the scheme and its credentials are separated
            // by spaces, not tabs: `Bearer<TAB>x` is a malformed header,
            // not another scheme (it must not read as "no token").
            Some(&sep) if bearer && sep != b' ' && (sep.is_ascii_control() || sep.is_ascii_whitespace()) => {
                std::str::from_utf8(v).map_err(|_| MALFORMED)?;
                return Err(NOT_A_SPACE);
            }
            Some(b' ') if bearer => trim_leading_spaces(&v[6..]),
            None if bearer => return Err(NO_TOKEN),
            // Another scheme (Basic, say): no bearer credentials, so the
            // answer is the bare challenge (RFC 6750 §3.1).
            _ if self.header == "authorization" => {
                std::str::from_utf8(v).map_err(|_| MALFORMED)?;
                return Ok(None);
            }
            _ if v.is_empty() => return Ok(None),
            _ => v,
        };
        one_token(token).map(Some)
    }
}

/// The message of a credentials header that is not UTF-8.
const MALFORMED: &str = "malformed credentials header";

/// `v` without leading and trailing spaces and tabs.
fn trim_spaces_and_tabs(v: &[u8]) -> &[u8] {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !blank(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !blank(b)).map_or(start, |i| i + 1);
    &v[start..end]
}

/// `v` without leading spaces.
fn trim_leading_spaces(v: &[u8]) -> &[u8] {
    &v[v.iter().position(|&b| b != b' ').unwrap_or(v.len())..]
}

/// One token: UTF-8, not empty, no whitespace inside. Its characters are
/// the engine's to judge (a malformed token is `invalid_token`, 401).
fn one_token(t: &[u8]) -> Result<&str, &'static str> {
    if t.is_empty() {
        return Err(NO_TOKEN);
    }
    // Every request scans its whole token (hundreds of bytes), once: a
    // branch-free pass the compiler vectorises gathers whether any byte is
    // over 0x7F (then `from_utf8` decides whether it is text at all) and
    // flags any byte at or below space (ASCII whitespace is among them) or
    // a comma; the exact test runs only when something was flagged
    // (control characters other than whitespace are the engine's to
    // refuse, not this function's).
    // (Measured in the Apache and nginx modules under callgrind: a fold
    // into one byte holding both answers, or sixteen explicit lanes, came
    // out as scalar code several times slower than this fold.)
    let (high, flagged) = t.iter().fold((0u8, 0u8), |(high, flagged), &b| {
        (high | b, flagged | u8::from(b <= b' ') | u8::from(b == b','))
    });
    let t = if high < 0x80 {
        // SAFETY: every byte is below 0x80, so `t` is ASCII, which is UTF-8.
        unsafe { std::str::from_utf8_unchecked(t) }
    } else {
        std::str::from_utf8(t).map_err(|_| MALFORMED)?
    };
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
                assert_eq!(
                    one_token(t.as_bytes()) == Err(MORE_THAN_ONE),
                    plain,
                    "byte {b:#x} at {at}"
                );
            }
        }
    }

    /// The reading `header_token` replaced: the whole value decoded as
    /// UTF-8 first, then trimmed, split and checked as text.
    fn header_token_as_text<'h>(s: &TokenSource, v: &'h [u8]) -> Result<Option<&'h str>, &'static str> {
        let one = |t: &'h str| {
            if t.is_empty() {
                Err(NO_TOKEN)
            } else if t.bytes().any(|b| b.is_ascii_whitespace() || b == b',') {
                Err(MORE_THAN_ONE)
            } else {
                Ok(t)
            }
        };
        let v = std::str::from_utf8(v)
            .map_err(|_| "malformed credentials header")?
            .trim_matches([' ', '\t']);
        let bearer = v.len() >= 6 && v.as_bytes()[..6].eq_ignore_ascii_case(b"bearer");
        match v.as_bytes().get(6) {
            Some(&sep) if bearer && sep != b' ' && (sep.is_ascii_control() || sep.is_ascii_whitespace()) => {
                Err(NOT_A_SPACE)
            }
            Some(b' ') if bearer => one(v[6..].trim_start_matches(' ')).map(Some),
            None if bearer => Err(NO_TOKEN),
            _ if s.header == "authorization" => Ok(None),
            _ if v.is_empty() => Ok(None),
            _ => one(v).map(Some),
        }
    }

    /// Byte by byte, `header_token` answers every header as the text
    /// reading did (the same token, or the same refusal): every scheme
    /// spelling, separator and blank, and bodies of up to three bytes
    /// among those that matter (blanks, a comma, a control, a quote,
    /// bytes over 0x7F valid and invalid as UTF-8), for both kinds of
    /// header; and one long token with each byte value in turn.
    #[test]
    fn header_token_answers_as_the_text_reading() {
        let schemes: [&[u8]; 7] = [b"", b"Bearer", b"bEaReR", b"Bearerx", b"Basic", b"Bear", b"\xc3\xa9"];
        let seps: [&[u8]; 6] = [b"", b" ", b"  ", b"\t", b"\x0b", b" \t"];
        let atoms: [&[u8]; 10] = [
            b"a",
            b" ",
            b"\t",
            b",",
            b"\x01",
            b"\"",
            b"\xff",
            b"\xc3\xa9",
            b"\xc3",
            b".",
        ];
        let mut bodies: Vec<Vec<u8>> = vec![Vec::new()];
        let mut frontier = bodies.clone();
        for _ in 0..3 {
            let mut next = Vec::new();
            for b in &frontier {
                for a in atoms {
                    next.push([b.as_slice(), a].concat());
                }
            }
            bodies.extend(next.iter().cloned());
            frontier = next;
        }
        let sources = [TokenSource::default(), source("x-access-token", None)];
        let mut n = 0;
        for scheme in schemes {
            for sep in seps {
                for body in &bodies {
                    for edge in [&b""[..], b" ", b"\t"] {
                        let v = [edge, scheme, sep, body.as_slice(), edge].concat();
                        for s in &sources {
                            assert_eq!(s.header_token(&v), header_token_as_text(s, &v), "{:?} {v:?}", s.header);
                            n += 1;
                        }
                    }
                }
            }
        }
        assert!(n > 100_000, "{n} headers");
        for b in 0u8..=255 {
            for at in [0, 1, 15, 16, 31, 350, 699] {
                let mut v = [&b"Bearer "[..], "a".repeat(700).as_bytes()].concat();
                v[7 + at] = b;
                for s in &sources {
                    assert_eq!(s.header_token(&v), header_token_as_text(s, &v), "byte {b:#x} at {at}");
                }
            }
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
