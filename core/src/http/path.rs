//! The request path as route rules see it: one normaliser, for the original
//! URI a proxy forwards (nginx `X-Original-URI`, Traefik and Caddy
//! `X-Forwarded-Uri`) and Envoy's path under `auth_path` alike.
//!
//! Every front end's route rules read this path (the core's HTTP decision).
//! The rules (docs/http.md and docs/serve.md, "Path normalisation"):
//!
//! * query and fragment dropped; percent-escapes decoded **once**;
//! * refused: anything still containing `%` after that decode (double
//!   encoding), an encoded `/` or `\` (`%2F`, `%5C`), a backslash, a NUL or
//!   other control character, a non-ASCII byte, a `..` above the root, a
//!   dot segment with parameters (`..;`, `.;x`: Tomcat and Jetty read it as
//!   `..`, nginx, Go and Express as a name, so no reading is safe both
//!   ways), and a segment ending in a dot or a space (`/admin./`: IIS drops
//!   them, others do not);
//! * `;parameters` stripped from every segment (`/admin;x=1/y` is
//!   `/admin/y`), `.` and `..` resolved, repeated slashes merged.
//!
//! Besides that normalised path, [`Normalised::literal`] keeps the decoded
//! path as sent (parameters, dot segments and repeated slashes left in), the
//! reading of an upstream that resolves nothing; route selection applies
//! the rules of both readings.

use std::borrow::Cow;

/// A path ready for route matching.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalised<'a> {
    /// Parameters stripped, dot segments resolved, slashes merged; a
    /// trailing slash kept (`/admin/` stays a directory). Borrowed from the
    /// target when it was already normal (the common case: nothing is
    /// allocated).
    pub path: Cow<'a, str>,
    /// The percent-decoded path as sent, when it differs from `path`
    /// (`None`: the path was already normal).
    pub literal: Option<String>,
}

/// Normalise a request target. `Err` names why it cannot be normalised
/// safely; such a request is refused, never matched.
pub fn normalise(target: &str) -> Result<Normalised<'_>, &'static str> {
    // `?` and `#` are ASCII, so the cut is on a character boundary.
    let end = target.bytes().position(|b| b == b'?' || b == b'#');
    let raw = &target[..end.unwrap_or(target.len())];
    if !raw.starts_with('/') {
        return Err("the original URI is not an absolute path");
    }
    if already_normal(raw) {
        return Ok(Normalised {
            path: Cow::Borrowed(raw),
            literal: None,
        });
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("the original URI has a malformed percent-escape")?;
            if hex == b'/' || hex == b'\\' {
                return Err("the original URI has an encoded slash or backslash");
            }
            i += 3;
            hex
        } else {
            i += 1;
            bytes[i - 1]
        };
        match b {
            b'%' => return Err("the original URI is encoded twice"),
            b'\\' => return Err("the original URI has a backslash"),
            0x80.. => return Err("the original URI has a non-ASCII character"),
            b if b.is_ascii_control() => return Err("the original URI has a control character"),
            b => decoded.push(b),
        }
    }
    // Only ASCII was pushed.
    let decoded = String::from_utf8(decoded).map_err(|_| "the original URI has a non-ASCII character")?;
    let mut segments: Vec<&str> = Vec::new();
    // Whether the last segment names a directory (empty, `.` or `..`).
    let mut dir = false;
    for seg in decoded.split('/').skip(1) {
        let (name, params) = match seg.split_once(';') {
            Some((name, _)) => (name, true),
            None => (seg, false),
        };
        dir = matches!(name, "" | "." | "..");
        match name {
            "." | ".." if params => return Err("the original URI has a dot segment with parameters"),
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err("the original URI climbs above the root");
                }
            }
            n if n.ends_with(['.', ' ']) => return Err("the original URI has a segment ending in a dot or a space"),
            n => segments.push(n),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for s in &segments {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() || dir {
        path.push('/');
    }
    let literal = (path != decoded).then_some(decoded);
    Ok(Normalised {
        path: Cow::Owned(path),
        literal,
    })
}

/// The bytes a normal path's segments hold: RFC 3986's `pchar` without
/// `%` (an escape is decoded by the full pass) and `;` (parameters are
/// stripped by it); a table, so that each byte costs one load.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).is_ascii_alphanumeric();
        i += 1;
    }
    let punctuation = b"-._~!$&'()*+,=:@";
    let mut j = 0;
    while j < punctuation.len() {
        t[punctuation[j] as usize] = true;
        j += 1;
    }
    t
};

/// Whether `raw` (an absolute path, no query) is its own normal form, so
/// the full pass would return it unchanged: no escape, parameter,
/// backslash, control or non-ASCII byte, no empty segment but a trailing
/// one, and no segment ending in a dot (`.`, `..`, `a.`, refused or
/// resolved by the full pass). One pass over the bytes: every request
/// with a target pays it.
fn already_normal(raw: &str) -> bool {
    let mut prev = b'/';
    for &b in &raw.as_bytes()[1..] {
        if b == b'/' {
            // An empty segment before this slash, or one ending in a dot.
            if prev == b'/' || prev == b'.' {
                return false;
            }
        } else if !PLAIN[usize::from(b)] {
            return false;
        }
        prev = b;
    }
    // The last segment: empty (a trailing slash) is normal, a dot is not.
    prev != b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Result<String, &'static str> {
        normalise(s).map(|n| n.path.into_owned())
    }

    /// The segment-by-segment reading `already_normal` replaced.
    fn already_normal_by_segments(raw: &str) -> bool {
        let plain = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@".contains(&b);
        let mut segments = raw[1..].split('/').peekable();
        while let Some(seg) = segments.next() {
            let last = segments.peek().is_none();
            if seg.is_empty() {
                if !last {
                    return false;
                }
            } else if seg.ends_with('.') || !seg.bytes().all(plain) {
                return false;
            }
        }
        true
    }

    /// Every path of up to 5 characters over an alphabet of the bytes that
    /// matter (and every byte value in one position) is judged as the
    /// segment-by-segment reading judged it.
    #[test]
    fn already_normal_answers_as_the_segment_reading() {
        let alphabet = [b'/', b'.', b'a', b';', b'%', b' ', b'~', b'\\'];
        let mut paths = vec![b"/".to_vec()];
        let mut frontier = paths.clone();
        for _ in 0..5 {
            let mut next = Vec::new();
            for p in &frontier {
                for &c in &alphabet {
                    let mut q = p.clone();
                    q.push(c);
                    next.push(q);
                }
            }
            paths.extend(next.iter().cloned());
            frontier = next;
        }
        for b in 0u8..=0x7f {
            for at in 1..4 {
                let mut q = b"/ab/".to_vec();
                q[at] = b;
                paths.push(q);
            }
        }
        for p in &paths {
            let p = std::str::from_utf8(p).unwrap();
            assert_eq!(already_normal(p), already_normal_by_segments(p), "{p:?}");
        }
        for p in ["/é", "/a/é/", "/\u{7f}"] {
            assert_eq!(already_normal(p), already_normal_by_segments(p), "{p:?}");
        }
    }

    #[test]
    fn normal_paths_stay_as_they_are() {
        for p in ["/", "/a", "/a/", "/a/b.png", "/a/b%20c", "/A/B"] {
            let got = normalise(p).unwrap();
            assert_eq!(got.path, p.replace("%20", " "), "{p}");
        }
        assert_eq!(normalise("/a/b").unwrap().literal, None);
        assert_eq!(normalise("/a/b?x=/../..;#f").unwrap().literal, None);
        assert_eq!(
            normalise("/%61/b").unwrap(),
            Normalised {
                path: "/a/b".into(),
                literal: None
            },
            "decoding alone is not a change of reading"
        );
    }

    /// The fast path (nothing allocated) gives what the full pass gives.
    #[test]
    fn already_normal_paths_are_borrowed_and_agree_with_the_full_pass() {
        for p in [
            "/",
            "/a",
            "/a/",
            "/api/orders",
            "/a/b.png",
            "/A/B/",
            "/x-y_z~1/@:!$&'()*+,=",
        ] {
            assert!(already_normal(p), "{p}");
            assert!(matches!(normalise(p).unwrap().path, Cow::Borrowed(_)), "{p}");
            assert_eq!(normalise(&format!("{p}?q=1")).unwrap().path, p);
        }
        for p in [
            "//a", "/a//b", "/a/.", "/a/..", "/a./b", "/a;x", "/a%41", "/a b", "/a\\b", "/\u{e9}",
        ] {
            assert!(!already_normal(p), "{p}");
        }
    }

    #[test]
    fn parameters_dots_and_slashes() {
        assert_eq!(n("/a;x=1/b").as_deref(), Ok("/a/b"));
        assert_eq!(n("/a%3bx=1/b").as_deref(), Ok("/a/b"));
        assert_eq!(n("/a/b;jsessionid=1").as_deref(), Ok("/a/b"));
        assert_eq!(n("/public/../admin/x").as_deref(), Ok("/admin/x"));
        assert_eq!(n("/public/%2e%2e/admin").as_deref(), Ok("/admin"));
        assert_eq!(n("//admin///x").as_deref(), Ok("/admin/x"));
        assert_eq!(n("/admin/.").as_deref(), Ok("/admin/"));
        assert_eq!(n("/admin/x/..").as_deref(), Ok("/admin/"));
        assert_eq!(n("/admin/;x").as_deref(), Ok("/admin/"));
        assert_eq!(
            normalise("/admin;x=1/y").unwrap().literal.as_deref(),
            Some("/admin;x=1/y")
        );
        assert_eq!(normalise("/a/../b").unwrap().literal.as_deref(), Some("/a/../b"));
    }

    #[test]
    fn what_cannot_be_normalised_safely_is_refused() {
        for bad in [
            "/public/..;/admin",
            "/public/..;x/admin",
            "/public/.;/x",
            "/public/..%3b/admin",
            "/public/%252e%252e/admin",
            "/a/%25",
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "/a%00",
            "/a%0d%0ab",
            "/a%7f",
            "/a%c3%a9",
            "/a\u{e9}",
            "/..",
            "/../a",
            "/a/../../b",
            "/admin./x",
            "/admin%20/x",
            "/admin/x.",
            "/admin/x...",
            "/a%zz",
            "/a%2",
            "http://x/a",
            "",
            "a/b",
        ] {
            assert!(normalise(bad).is_err(), "{bad:?} was accepted: {:?}", normalise(bad));
        }
    }
}
