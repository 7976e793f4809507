//! The `allowed_uris` rules: which URLs count as under a configured
//! prefix. Shared by the configuration (which refuses bad prefixes) and the
//! status lists (which fetch only under them); public as
//! `jwtwarden::status::{UriPrefix, allowed}`.

use ureq::http::Uri;

/// One `allowed_uris` entry: scheme, host and port matched exactly, the
/// path as a prefix at a `/` boundary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UriPrefix {
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

/// Parse an absolute http(s) URL into its matching parts; refuses what
/// could make one URL look like another to the server that answers it:
/// user info, fragments, non-ASCII characters (a fullwidth solidus a server
/// folds to `/`), backslashes, `;` in the path (`..;` is `..` to some
/// servers), `.`/`..` segments, and percent-encoded dots, slashes,
/// backslashes, percent signs (`%252e` decodes twice) and non-ASCII bytes.
fn parts(url: &str) -> std::result::Result<UriPrefix, String> {
    if url.contains(['#', '\\', '@']) || url.chars().any(|c| !c.is_ascii() || c.is_ascii_control() || c == ' ') {
        return Err(format!(
            "{url:?}: user info, fragments, backslashes, spaces and non-ASCII characters are refused"
        ));
    }
    let uri: Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
    let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
    let port = match scheme.as_deref() {
        Some("https") => uri.port_u16().unwrap_or(443),
        Some("http") => uri.port_u16().unwrap_or(80),
        _ => return Err(format!("{url:?} is not an http(s) URL")),
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or(format!("{url:?} has no host"))?;
    let path = uri.path();
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!("{url:?}: dot segments are refused"));
    }
    if path.contains(';') {
        return Err(format!("{url:?}: ';' in the path is refused"));
    }
    if let Some(bad) = encoded_bytes(path)?
        .into_iter()
        .find(|b| matches!(b, b'.' | b'/' | b'\\' | b'%') || !b.is_ascii())
    {
        return Err(format!(
            "{url:?}: a percent-encoded {:?} in the path is refused",
            char::from(bad)
        ));
    }
    Ok(UriPrefix {
        scheme: scheme.expect("checked"),
        host: host.to_ascii_lowercase(),
        port,
        path: path.to_string(),
    })
}

/// The bytes `path` percent-encodes; an error for a `%` not followed by
/// two hex digits.
fn encoded_bytes(path: &str) -> std::result::Result<Vec<u8>, String> {
    let bytes = path.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{path:?}: a '%' not followed by two hex digits"))?;
            out.push(hex);
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(out)
}

impl UriPrefix {
    /// Parse an `allowed_uris` entry (`http://` only with `allow_http`).
    pub fn parse(prefix: &str, allow_http: bool) -> std::result::Result<UriPrefix, String> {
        let p = parts(prefix)?;
        if p.scheme == "http" && !allow_http {
            return Err("must be an https:// URL (http:// only with http.allow_http)".into());
        }
        if prefix.contains('?') {
            return Err("a prefix has no query".into());
        }
        Ok(p)
    }

    /// Whether `uri` is under this prefix.
    pub fn matches(&self, uri: &str) -> bool {
        let Ok(u) = parts(uri) else { return false };
        if u.scheme != self.scheme || u.host != self.host || u.port != self.port {
            return false;
        }
        match u.path.strip_prefix(self.path.as_str()) {
            Some(rest) => self.path.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

/// Whether `uri` is under one of `prefixes` (invalid prefixes match nothing;
/// the configuration refuses them).
pub fn allowed(prefixes: &[String], uri: &str) -> bool {
    prefixes
        .iter()
        .filter_map(|p| UriPrefix::parse(p, true).ok())
        .any(|p| p.matches(uri))
}
