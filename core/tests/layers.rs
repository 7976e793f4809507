//! The core's layer map, enforced.
//!
//! Every top-level module of `core/src` sits in one layer of [`LAYERS`]
//! (submodules, `revocation::feed` say, belong to their top-level module).
//! A module may use its own layer and those below it, never one above, and
//! no two modules may reach each other through their imports (no cycles),
//! whatever their layers.
//!
//! The imports are read from the source, not from the compiler: `use`
//! trees (braces expanded), `crate::…` and `super::…` paths anywhere in the
//! code, with comments, string literals and `#[cfg(test)]` items left out
//! (unit tests may reach for whatever they test with).
//!
//! The table is written once, here; `docs/design.md` carries a rendering of
//! it between the `layers:begin` and `layers:end` markers, checked by this
//! test. Run with `JWTWARDEN_BLESS=1` to rewrite that part after changing
//! the table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first: (name, what it holds, its modules).
const LAYERS: &[(&str, &str, &[&str])] = &[
    (
        "primitives",
        "time, errors, token bytes and claims, configuration and issuer templates, SPIFFE IDs, shared URI rules, \
         process and thread plumbing, counters and the metrics snapshot types \
         (filled by every layer; the Prometheus exporter reads the verifier \
         through the `Scrape` trait defined here)",
        &[
            "error",
            "clock",
            "token",
            "claims",
            "facts",
            "uri",
            "config",
            "template",
            "fork",
            "stop",
            "safefile",
            "metrics",
            "spiffe_id",
        ],
    ),
    (
        "fetching",
        "HTTP fetches with their limits, single flight, the refresh machine (schedule, \
         conditional GET, backoff, Retry-After, staleness) every fetched document runs on, \
         the persisted last good JWKS and the host-wide fetch lock over it",
        &["fetch", "flight", "refresh", "state", "shared_fetch"],
    ),
    (
        "keys and sources",
        "JWK parsing and validation, key sources (SPIFFE JWT bundles included), the key report of the CLI",
        &["keys", "source", "describe", "spiffe"],
    ),
    (
        "trust state",
        "the door and everything behind it: key stores, issuers and their refresh, \
         issuer families (template members), \
         revocation lists, journal and fleet feed, status lists, the revoker",
        &[
            "door",
            "keystore",
            "revocation",
            "status",
            "issuer",
            "family",
            "trust",
            "revoker",
        ],
    ),
    (
        "verification",
        "the verify path, the result type, the result cache and its bookkeeping, \
         the refresher thread",
        &["entry", "verified", "cache", "refresher", "verifier"],
    ),
    ("front ends", "services over the verifier: the HTTP decision, signed verification assertions (minted at the edge, inherited behind)", &["http", "assertion"]),
];

/// Imports allowed against the rules above, each with the reason it could
/// not be broken by moving a type down: (importer, imported, why). Empty is
/// the goal; an entry that no longer matches an import fails the test.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn core_modules_import_only_their_layer_and_below_without_cycles() {
    let files = read_sources(&root().join("src"));
    assert!(files.len() > 20, "found the core's sources ({} files)", files.len());
    let problems = check(&files, LAYERS, EXCEPTIONS);
    assert!(
        problems.is_empty(),
        "the layer map (core/tests/layers.rs, docs/design.md \"Layers\") is broken:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn design_doc_shows_the_layer_table() {
    let path = root().join("../docs/design.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (begin, end) = ("<!-- layers:begin", "<!-- layers:end -->");
    let start = doc.find(begin).expect("docs/design.md has a layers:begin marker");
    let start = start + doc[start..].find("-->").unwrap() + 3;
    let stop = doc.find(end).expect("docs/design.md has a layers:end marker");
    let table = render(LAYERS);
    if std::env::var_os("JWTWARDEN_BLESS").is_some() {
        let updated = format!("{}\n{}{}", &doc[..start], table, &doc[stop..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        doc[start..stop].trim() == table.trim(),
        "docs/design.md's layer table differs from core/tests/layers.rs: run \
         JWTWARDEN_BLESS=1 cargo test -p jwtwarden --test layers, then commit it"
    );
}

fn render(layers: &[(&str, &str, &[&str])]) -> String {
    let mut out = String::from("| Layer (bottom first) | Modules (`core/src`) | Holds |\n|---|---|---|\n");
    for (i, (name, what, modules)) in layers.iter().enumerate() {
        let modules: Vec<String> = modules.iter().map(|m| format!("`{m}`")).collect();
        out += &format!("| {}. {name} | {} | {what} |\n", i + 1, modules.join(", "));
    }
    out
}

/// One source file: its module path (`["revocation", "feed"]`), its path
/// for messages, and its text.
struct Source {
    module: Vec<String>,
    shown: String,
    text: String,
}

fn read_sources(src: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let mut module: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
            let last = module.pop().unwrap();
            match last.as_str() {
                "lib.rs" if module.is_empty() => {}
                "mod.rs" => {}
                other => module.push(other.trim_end_matches(".rs").to_string()),
            }
            out.push(Source {
                module,
                shown: format!("core/src/{}", rel.display()),
                text: std::fs::read_to_string(&path).unwrap(),
            });
        }
    }
    out.sort_by(|a, b| a.shown.cmp(&b.shown));
    out
}

/// One import: the top-level module imported (`None`: an item of the crate
/// root, which hides the real module), where, and the path as written.
struct Import {
    to: Option<String>,
    line: usize,
    path: String,
}

fn check(files: &[Source], layers: &[(&str, &str, &[&str])], exceptions: &[(&str, &str, &str)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut layer_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, (name, _, modules)) in layers.iter().enumerate() {
        for m in *modules {
            if let Some(before) = layer_of.insert(m, i) {
                problems.push(format!(
                    "`{m}` is listed in two layers ({} and {name})",
                    layers[before].0
                ));
            }
        }
    }
    let tops: BTreeSet<String> = files.iter().filter_map(|f| f.module.first().cloned()).collect();
    for top in &tops {
        if !layer_of.contains_key(top.as_str()) {
            problems.push(format!(
                "module `{top}` is in no layer: add it to LAYERS in core/tests/layers.rs"
            ));
        }
    }
    // (from, to) -> where
    let mut edges: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for f in files {
        let Some(from) = f.module.first() else {
            continue; // lib.rs declares and re-exports; it is above every layer.
        };
        for imp in imports(&f.module, &f.text, &tops) {
            let at = format!("{}:{} `{}`", f.shown, imp.line, imp.path);
            match imp.to {
                None => problems.push(format!("{at}: names an item through the crate root; name its module")),
                Some(to) if &to == from => {}
                Some(to) => edges.entry((from.clone(), to)).or_default().push(at),
            }
        }
    }
    for (from, to, why) in exceptions {
        let key = (from.to_string(), to.to_string());
        if edges.remove(&key).is_none() {
            problems.push(format!("exception {from} -> {to} ({why}) matches no import: remove it"));
        }
    }
    for ((from, to), at) in &edges {
        let (Some(&lf), Some(&lt)) = (layer_of.get(from.as_str()), layer_of.get(to.as_str())) else {
            continue;
        };
        if lt > lf {
            problems.push(format!(
                "`{from}` ({}) imports `{to}` from a higher layer ({}): {}",
                layers[lf].0,
                layers[lt].0,
                at.join(", ")
            ));
        }
    }
    for cycle in cycles(&edges) {
        let inside: Vec<String> = edges
            .iter()
            .filter(|((a, b), _)| cycle.contains(a) && cycle.contains(b))
            .map(|((a, b), at)| format!("{a} -> {b} ({})", at[0]))
            .collect();
        problems.push(format!(
            "import cycle among {}: {}",
            cycle.iter().cloned().collect::<Vec<_>>().join(", "),
            inside.join("; ")
        ));
    }
    problems
}

/// The strongly connected components of more than one module.
fn cycles(edges: &BTreeMap<(String, String), Vec<String>>) -> Vec<BTreeSet<String>> {
    let nodes: BTreeSet<&String> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for (a, b) in edges.keys() {
                if *a == n && seen.insert(b.clone()) {
                    todo.push(b.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> = nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for n in &nodes {
        if out.iter().any(|c| c.contains(*n)) {
            continue;
        }
        let scc: BTreeSet<String> = nodes
            .iter()
            .filter(|m| reachable[*n].contains(**m) && reachable[**m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        if scc.len() > 1 {
            out.push(scc);
        }
    }
    out
}

/// The imports of the file of module `module`, resolved to top-level modules.
fn imports(module: &[String], text: &str, tops: &BTreeSet<String>) -> Vec<Import> {
    let code = strip_cfg_test(&blank_comments_and_literals(text));
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut out = Vec::new();
    let resolve = |segments: &[String]| -> Option<Option<String>> {
        // Some(None): the crate root; None: not a crate path (std, a dependency).
        let mut path: Vec<String> = match segments.first().map(String::as_str) {
            Some("crate") => Vec::new(),
            Some("super") | Some("self") => module.to_vec(),
            _ => return None,
        };
        let mut rest = segments;
        if rest[0] == "crate" {
            rest = &rest[1..];
        }
        while let Some(s) = rest.first() {
            match s.as_str() {
                "super" => {
                    path.pop();
                }
                "self" => {}
                _ => break,
            }
            rest = &rest[1..];
        }
        path.extend(rest.iter().cloned());
        match path.first() {
            Some(top) if tops.contains(top) => Some(Some(top.clone())),
            _ => Some(None),
        }
    };
    let mut used = vec![false; code.len()];
    // `use` trees.
    let bytes = code.as_bytes();
    let mut i = 0;
    while let Some(pos) = code[i..].find("use") {
        let at = i + pos;
        i = at + 3;
        let before_ok = at == 0 || !is_ident(bytes[at - 1]);
        let after_ok = bytes.get(at + 3).is_some_and(|b| b.is_ascii_whitespace());
        if !before_ok || !after_ok {
            continue;
        }
        let Some(end) = code[at..].find(';') else { break };
        let tree = &code[at + 3..at + end];
        used[at..at + end].iter_mut().for_each(|u| *u = true);
        for path in expand(tree) {
            // A bare first segment is a dependency or a child module (the same
            // top-level module); only crate/super/self paths can cross.
            if let Some(to) = resolve(&path) {
                out.push(Import {
                    to,
                    line: line_of(at),
                    path: path.join("::"),
                });
            }
        }
        i = at + end;
    }
    // Paths in expressions and types.
    for start in ["crate", "super"] {
        let mut j = 0;
        while let Some(pos) = code[j..].find(start) {
            let at = j + pos;
            j = at + start.len();
            if used[at]
                || (at > 0 && is_ident(bytes[at - 1]))
                || bytes.get(at + start.len()).is_some_and(|b| is_ident(*b))
            {
                continue;
            }
            let mut segments = vec![start.to_string()];
            let mut k = at + start.len();
            loop {
                let rest = &code[k..];
                let trimmed = rest.trim_start();
                if !trimmed.starts_with("::") {
                    break;
                }
                let after = trimmed[2..].trim_start();
                let ident: String = after.bytes().take_while(|b| is_ident(*b)).map(char::from).collect();
                if ident.is_empty() {
                    break;
                }
                k = code.len() - after.len() + ident.len();
                segments.push(ident);
            }
            if segments.len() < 2 {
                continue; // `pub(crate)`, `crate` alone
            }
            if let Some(to) = resolve(&segments) {
                out.push(Import {
                    to,
                    line: line_of(at),
                    path: segments.join("::"),
                });
            }
            j = k;
        }
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The paths of a `use` tree (`crate::{a::X, b::{c, d::Y}}`), each as its
/// segments; `as` renames dropped, a glob (`a::*`) as its module's path.
fn expand(tree: &str) -> Vec<Vec<String>> {
    fn skip_ws(s: &[u8], i: &mut usize) {
        while s.get(*i).is_some_and(u8::is_ascii_whitespace) {
            *i += 1;
        }
    }
    /// One tree at `*i` under `prefix`, up to the `,` or `}` after it.
    fn walk(s: &[u8], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        let mut named = false;
        loop {
            skip_ws(s, i);
            match s.get(*i) {
                None | Some(b',') | Some(b'}') => break,
                Some(b'{') => {
                    *i += 1;
                    loop {
                        skip_ws(s, i);
                        match s.get(*i) {
                            None => return,
                            Some(b'}') => {
                                *i += 1;
                                return;
                            }
                            _ => walk(s, i, &path, out),
                        }
                        if s.get(*i) == Some(&b',') {
                            *i += 1;
                        }
                    }
                }
                Some(b'*') => {
                    named = true;
                    *i += 1;
                }
                Some(&c) if is_ident(c) => {
                    let start = *i;
                    while s.get(*i).is_some_and(|b| is_ident(*b)) {
                        *i += 1;
                    }
                    let word = String::from_utf8_lossy(&s[start..*i]).into_owned();
                    if word == "as" {
                        skip_ws(s, i);
                        while s.get(*i).is_some_and(|b| is_ident(*b)) {
                            *i += 1;
                        }
                    } else {
                        path.push(word);
                        named = true;
                    }
                }
                Some(_) => *i += 1, // `::`
            }
        }
        if named {
            out.push(path);
        }
    }
    let mut out = Vec::new();
    walk(tree.as_bytes(), &mut 0, &[], &mut out);
    out
}

/// `text` with comments and the contents of string and char literals
/// replaced by spaces (newlines kept, so offsets keep their lines).
fn blank_comments_and_literals(text: &str) -> String {
    let s = text.as_bytes();
    let mut out = s.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for b in &mut out[from..to.min(s.len())] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    };
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|b| *b == b'\n').map_or(s.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (0usize, i);
            while j < s.len() {
                if s[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if s[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if (rest.starts_with(b"r#") || rest.starts_with(b"r\"") || rest.starts_with(b"br"))
            && (i == 0 || !is_ident(s[i - 1]))
            && raw_string_end(s, i).is_some()
        {
            let end = raw_string_end(s, i).unwrap();
            blank(&mut out, i, end);
            i = end;
        } else if s[i] == b'"' {
            let mut j = i + 1;
            while j < s.len() && s[j] != b'"' {
                j += if s[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if s[i] == b'\'' {
            // A char literal ('x', '\n', '\u{1F600}', '"'), or a lifetime.
            let end = if s.get(i + 1) == Some(&b'\\') {
                s[i + 2..].iter().position(|b| *b == b'\'').map(|p| i + 2 + p + 1)
            } else {
                let ch_len = std::str::from_utf8(&s[i + 1..])
                    .ok()
                    .and_then(|t| t.chars().next())
                    .map_or(1, char::len_utf8);
                (s.get(i + 1 + ch_len) == Some(&b'\'')).then_some(i + 2 + ch_len)
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Where the raw (byte) string starting at `i` ends, if one starts there.
fn raw_string_end(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    if s.get(j) == Some(&b'b') {
        j += 1;
    }
    if s.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = s[j..].iter().take_while(|b| **b == b'#').count();
    j += hashes;
    if s.get(j) != Some(&b'"') {
        return None;
    }
    let mut close = vec![b'"'];
    close.extend(std::iter::repeat_n(b'#', hashes));
    s[j + 1..]
        .windows(close.len())
        .position(|w| w == close.as_slice())
        .map(|p| j + 1 + p + close.len())
}

/// `code` without the items marked `#[cfg(test)]` (blanked, lines kept).
fn strip_cfg_test(code: &str) -> String {
    let mut out = code.as_bytes().to_vec();
    let s = code.as_bytes();
    let mut from = 0;
    while let Some(pos) = code[from..].find("#[cfg(test)]") {
        let at = from + pos;
        let mut j = at + "#[cfg(test)]".len();
        let mut end = s.len();
        while j < s.len() {
            match s[j] {
                b';' => {
                    end = j + 1;
                    break;
                }
                b'{' => {
                    let mut depth = 0usize;
                    while j < s.len() {
                        match s[j] {
                            b'{' => depth += 1,
                            b'}' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    end = j + 1;
                    break;
                }
                _ => j += 1,
            }
        }
        for b in &mut out[at..end.min(s.len())] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
        from = end.min(s.len());
    }
    String::from_utf8(out).unwrap()
}

/// The checker catches what an engineer in a hurry would write: an upward
/// import inside a nested brace group, one renamed with `as`, one spelled
/// inline in an expression, one through `super::super`, and a two-module
/// cycle; it ignores paths in comments, doc links, strings and unit tests.
#[test]
fn checker_catches_hidden_upward_imports_and_cycles() {
    let layers: &[(&str, &str, &[&str])] = &[("low", "", &["a", "b", "c"]), ("high", "", &["top"])];
    let file = |module: &[&str], text: &str| Source {
        module: module.iter().map(|s| s.to_string()).collect(),
        shown: module.join("/"),
        text: text.to_string(),
    };
    let clean = [
        file(&["top"], "use crate::{a::X, b::{self, Y}};\npub fn f() {}"),
        file(
            &["a"],
            "//! See [`crate::top::T`].\nuse crate::b::Z;\n/// crate::top::f() in a doc.\nfn g() { let s = \"crate::top::f\"; \
             let r = r#\"super::top\"#; let c = '\"'; let l: &'static str = s; }\n\
             #[cfg(test)]\nmod tests {\n use crate::top::T;\n fn t() { crate::top::f(); }\n}\n",
        ),
        file(&["b"], "use std::collections::HashMap;\nuse serde::{Deserialize as D};\n"),
        file(&["c"], ""),
        file(&["c", "inner"], "use super::Thing;\nuse self::deeper::X;\n"),
    ];
    let problems = check(&clean, layers, &[]);
    assert!(problems.is_empty(), "false alarms: {problems:#?}");

    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["a"],
            "use crate::{b::{X, Y}, c, top::{inner::{Z as W}}};",
            "higher layer",
        ),
        (&["a"], "use crate::{b, top as t};", "higher layer"),
        (&["a"], "use crate::top::{*};", "higher layer"),
        (&["a"], "use crate::{b::X,\n    top::*,\n};", "higher layer"),
        (&["a"], "fn f() -> u8 { crate :: top :: f() }", "higher layer"),
        (&["c", "inner"], "fn f() { super::super::top::f() }", "higher layer"),
        (&["a"], "pub(crate) fn f(x: &crate::top::T) {}", "higher layer"),
        (&["b"], "use crate::a::X;", "cycle"),
        (&["a"], "use crate::Verifier;", "crate root"),
        (&["zz"], "", "in no layer"),
    ];
    for (module, text, expect) in cases {
        let mut files: Vec<Source> = clean
            .iter()
            .map(|f| file(&f.module.iter().map(String::as_str).collect::<Vec<_>>(), &f.text))
            .collect();
        files.push(file(module, text));
        // `b` already imports nothing from `a`; the cycle case adds a -> b via the clean `a`.
        let problems = check(&files, layers, &[]);
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "{text:?} in {module:?}: expected a problem with {expect:?}, got {problems:#?}"
        );
    }

    // An exception silences exactly its edge, and a stale one is reported.
    let mut files: Vec<Source> = clean
        .iter()
        .map(|f| file(&f.module.iter().map(String::as_str).collect::<Vec<_>>(), &f.text))
        .collect();
    files.push(file(&["b"], "use crate::a::X;"));
    assert!(check(&files, layers, &[("b", "a", "test")]).is_empty());
    assert!(check(&clean, layers, &[("b", "a", "test")])[0].contains("matches no import"));
}
