//! Text from outside (a status list, a token, a JWKS endpoint's headers and
//! keys, error messages quoting them) made safe to print to a terminal:
//! control characters (C0, DEL, C1), bidirectional overrides and isolates,
//! and line/paragraph separators are shown escaped (`\u{1b}`), never sent
//! as they are, so a hostile value cannot move the cursor, rewrite earlier
//! lines, change the title or reorder what is shown.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as it is.
fn dangerous(c: char) -> bool {
    c.is_control() // C0, DEL, C1
        || matches!(c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' // ALM, LRM, RLM
            | '\u{202A}'..='\u{202E}'           // LRE, RLE, PDF, LRO, RLO
            | '\u{2066}'..='\u{2069}'           // LRI, RLI, FSI, PDI
            | '\u{2028}' | '\u{2029}'           // line / paragraph separator
        )
}

/// `s` with every dangerous character written `\u{..}`, for a value shown
/// inside a line.
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(dangerous) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if dangerous(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Serialized JSON with the dangerous characters serde_json leaves raw
/// (DEL, C1, bidi controls, separators) written as `\uXXXX` escapes: the
/// same JSON value, safe for a terminal. (They can only occur inside
/// strings, where the escape means the same character.)
pub fn json(s: String) -> String {
    // C0 is escaped by serde_json inside strings; outside them it is the
    // layout's own whitespace.
    let raw = |c: char| c >= '\u{7f}' && dangerous(c);
    if !s.chars().any(raw) {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if raw(c) {
            // All of them are in the Basic Multilingual Plane.
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// `value` as compact JSON, safe for a terminal.
pub fn json_value(value: &serde_json::Value) -> String {
    json(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_obey() {
        assert_eq!(text("plain kid-1 ü"), "plain kid-1 ü");
        assert_eq!(text("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(
            text("x\u{7f}\u{9b}31m\u{202e}y\n"),
            "x\\u{7f}\\u{9b}31m\\u{202e}y\\u{a}"
        );
        let v = serde_json::json!({"k": "\u{1b}]0;t\u{7}\u{9d}\u{2067}"});
        let s = json(serde_json::to_string_pretty(&v).unwrap());
        assert!(!s.chars().any(|c| c != '\n' && dangerous(c)), "{s}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&s).unwrap(), v, "same value");
    }
}
