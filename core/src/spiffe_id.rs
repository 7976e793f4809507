//! SPIFFE IDs (`spiffe://<trust-domain>/<path>`), parsed strictly as the
//! SPIFFE ID specification says, since a JWT-SVID's trust domain is read
//! from its (unverified) `sub` before any key is chosen:
//!
//! * the scheme is exactly `spiffe://` (lowercase);
//! * the trust domain is 1 to [`MAX_TRUST_DOMAIN_BYTES`] bytes of lowercase
//!   letters, digits, `.`, `-` and `_`: no uppercase, port, userinfo or
//!   percent-encoding;
//! * the path is not empty (a workload's ID), each segment 1 or more bytes of
//!   letters, digits, `.`, `-` and `_`, never `.` or `..`, with no empty
//!   segment and no trailing `/`; no query or fragment;
//! * the whole ID is at most [`MAX_ID_BYTES`] bytes.

/// The longest SPIFFE ID accepted, in bytes (the SPIFFE ID specification's
/// URI limit).
pub(crate) const MAX_ID_BYTES: usize = 2048;
/// The longest trust domain name, in bytes.
pub(crate) const MAX_TRUST_DOMAIN_BYTES: usize = 255;

/// The trust domain of the SPIFFE ID `id`, or why `id` is not one.
pub(crate) fn trust_domain_of(id: &str) -> Result<&str, String> {
    if id.len() > MAX_ID_BYTES {
        return Err(format!("a SPIFFE ID is at most {MAX_ID_BYTES} bytes"));
    }
    let rest = id
        .strip_prefix("spiffe://")
        .ok_or_else(|| "a SPIFFE ID starts with spiffe:// (lowercase)".to_string())?;
    let (domain, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    check_trust_domain(domain)?;
    let Some(path) = path.strip_prefix('/') else {
        return Err("the SPIFFE ID has no path (it names a trust domain, not a workload)".into());
    };
    for segment in path.split('/') {
        match segment {
            "" => return Err("the SPIFFE ID's path has an empty segment or a trailing /".into()),
            "." | ".." => return Err("the SPIFFE ID's path has a dot segment".into()),
            s if !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) =>
            {
                return Err(
                    "the SPIFFE ID's path holds a character other than letters, digits, '.', '-', '_' \
                     (no query, fragment or percent-encoding)"
                        .into(),
                )
            }
            _ => {}
        }
    }
    Ok(domain)
}

/// Whether `domain` is a trust domain name, or why not.
pub(crate) fn check_trust_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("the trust domain is empty".into());
    }
    if domain.len() > MAX_TRUST_DOMAIN_BYTES {
        return Err(format!("a trust domain is at most {MAX_TRUST_DOMAIN_BYTES} bytes"));
    }
    match domain
        .bytes()
        .find(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')))
    {
        None => Ok(()),
        Some(b':') => Err("a trust domain has no port".into()),
        Some(b'@') => Err("a trust domain has no userinfo".into()),
        Some(b) if b.is_ascii_uppercase() => Err("a trust domain is lowercase".into()),
        Some(_) => Err("a trust domain holds only lowercase letters, digits, '.', '-' and '_'".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_are_parsed_strictly() {
        assert_eq!(
            trust_domain_of("spiffe://example.org/ns/prod/sa/web"),
            Ok("example.org")
        );
        assert_eq!(trust_domain_of("spiffe://a_b-c.9/x.y"), Ok("a_b-c.9"));
        for bad in [
            "spiffe://Example.org/web",
            "SPIFFE://example.org/web",
            "spiffe://example.org:8443/web",
            "spiffe://user@example.org/web",
            "spiffe://example.org/a/../b",
            "spiffe://example.org/./b",
            "spiffe://example.org/web?x=1",
            "spiffe://example.org/web#f",
            "spiffe://example.org/we%2Fb",
            "spiffe://example.org/web/",
            "spiffe://example.org//web",
            "spiffe://example.org",
            "spiffe://example.org/",
            "spiffe:///web",
            "https://example.org/web",
        ] {
            assert!(trust_domain_of(bad).is_err(), "{bad} accepted");
        }
        let long = format!("spiffe://example.org/{}", "a".repeat(MAX_ID_BYTES));
        assert!(trust_domain_of(&long).is_err());
        assert!(check_trust_domain(&"a".repeat(256)).is_err());
        assert!(check_trust_domain(&"a".repeat(255)).is_ok());
    }
}
