//! The error list is written once, in `core/src/error.rs` (the
//! `error_kinds!` invocation, with `ErrorKind::BOUNDARY_CODES` and
//! `ErrorKind::RETIRED_CODES`), and every other language's copy is checked
//! against it here:
//!
//! * the C header `include/jwtwarden.h` (`JWTWARDEN_RESULT_*`): every kind
//!   and boundary code, named after the kind, with its number, nothing else
//!   (the header itself is regenerated and compared by `jwtwarden-ffi`'s
//!   drift test; its enum by that crate's unit tests);
//! * Go, `bindings/go/error.go`: a `Kind` constant for every header code,
//!   each listed once in `Kinds`, in code order;
//! * Python, `bindings/python/python/jwtwarden/exceptions.py`: one class per
//!   kind (and the binding's boundary code, `panic`, declared in
//!   `bindings/python/src/errors.rs`) with the kind's `code` and `kind`,
//!   under its category's class, exported in `__all__` and listed in
//!   `_KIND_CLASSES` (which the native module raises from).
//!
//! A retired number appears nowhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use jwtwarden::ErrorKind;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The files the check reads, by role.
struct Copies {
    header: String,
    go: String,
    python: String,
    python_boundary: String,
}

fn committed() -> Copies {
    Copies {
        header: read("include/jwtwarden.h"),
        go: read("bindings/go/error.go"),
        python: read("bindings/python/python/jwtwarden/exceptions.py"),
        python_boundary: read("bindings/python/src/errors.rs"),
    }
}

#[test]
fn every_copy_of_the_error_list_matches_the_core() {
    let problems = check(&committed());
    assert!(
        problems.is_empty(),
        "the error list's copies differ from core/src/error.rs:\n  {}",
        problems.join("\n  ")
    );
}

/// Every code of the core's list: kinds and boundary codes, `(code, name,
/// category)`.
fn core_codes() -> BTreeMap<u32, (String, &'static str)> {
    let mut out = BTreeMap::new();
    for k in ErrorKind::ALL {
        out.insert(k.code(), (k.as_str().to_string(), k.category().as_str()));
    }
    for &(code, name) in ErrorKind::BOUNDARY_CODES {
        out.insert(code, (name.to_string(), category_of(code)));
    }
    out
}

fn category_of(code: u32) -> &'static str {
    match code {
        100..=199 => "malformed",
        200..=299 => "verification",
        300..=399 => "policy",
        400..=499 => "keys_unavailable",
        500..=599 => "usage",
        _ => "internal",
    }
}

fn check(c: &Copies) -> Vec<String> {
    let mut problems = Vec::new();
    let core = core_codes();
    let retired: BTreeMap<u32, &str> = ErrorKind::RETIRED_CODES.iter().copied().collect();

    // C header.
    let header = header_results(&c.header);
    let mut want: BTreeMap<String, u32> = core
        .iter()
        .map(|(code, (name, _))| (name.to_uppercase(), *code))
        .collect();
    want.insert("OK".into(), 0);
    for (name, code) in &want {
        match header.get(name) {
            None => problems.push(format!("include/jwtwarden.h: no JWTWARDEN_RESULT_{name} ({code})")),
            Some(n) if n != code => problems.push(format!(
                "include/jwtwarden.h: JWTWARDEN_RESULT_{name} is {n}, the core says {code}"
            )),
            Some(_) => {}
        }
    }
    for (name, code) in &header {
        if !want.contains_key(name) {
            problems.push(format!(
                "include/jwtwarden.h: JWTWARDEN_RESULT_{name} ({code}) is not in the core's list"
            ));
        }
        if let Some(old) = retired.get(code) {
            problems.push(format!(
                "include/jwtwarden.h: JWTWARDEN_RESULT_{name} reuses retired {code} ({old})"
            ));
        }
    }

    // Go.
    let (consts, kinds) = go_kinds(&c.go);
    let by_c: BTreeMap<&String, &String> = consts.iter().map(|(ident, c_name)| (c_name, ident)).collect();
    for (code, (name, _)) in &core {
        if !by_c.contains_key(&name.to_uppercase()) {
            problems.push(format!(
                "bindings/go/error.go: no Kind constant = C.JWTWARDEN_RESULT_{} ({code})",
                name.to_uppercase()
            ));
        }
    }
    let mut listed = BTreeSet::new();
    let mut last = 0;
    for ident in &kinds {
        if !listed.insert(ident) {
            problems.push(format!("bindings/go/error.go: {ident} listed twice in Kinds"));
        }
        match consts.iter().find(|(i, _)| i == ident) {
            None => problems.push(format!(
                "bindings/go/error.go: Kinds lists {ident}, which is no Kind constant"
            )),
            Some((_, c_name)) => {
                let code = want.get(c_name).copied().unwrap_or(0);
                if code < last {
                    problems.push(format!(
                        "bindings/go/error.go: Kinds is not in code order at {ident} ({code})"
                    ));
                }
                last = code;
            }
        }
    }
    for (ident, c_name) in &consts {
        if !want.contains_key(c_name) || c_name == "OK" {
            problems.push(format!(
                "bindings/go/error.go: {ident} = C.JWTWARDEN_RESULT_{c_name}, not in the core's list"
            ));
        }
        if !listed.contains(ident) {
            problems.push(format!("bindings/go/error.go: {ident} is missing from Kinds"));
        }
    }

    // Python.
    let mut python_want: BTreeMap<u32, (String, &str)> = core
        .iter()
        .filter(|(code, _)| ErrorKind::from_code(**code).is_some())
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    match python_boundary(&c.python_boundary) {
        None => problems.push("bindings/python/src/errors.rs: no `const PANIC: (u32, &str, &str)`".into()),
        Some((code, name, category)) => {
            if !ErrorKind::BOUNDARY_CODES.contains(&(code, name.as_str())) {
                problems.push(format!(
                    "bindings/python/src/errors.rs: PANIC ({code}, {name:?}) is not in ErrorKind::BOUNDARY_CODES"
                ));
            }
            if category != category_of(code) {
                problems.push(format!(
                    "bindings/python/src/errors.rs: PANIC's category is {category:?}, not {:?}",
                    category_of(code)
                ));
            }
            python_want.insert(code, (name, category_of(code)));
        }
    }
    let py = python_classes(&c.python);
    let all = python_list(&c.python, "__all__ = [", ']');
    let kind_classes = python_list(&c.python, "_KIND_CLASSES", ')');
    let mut by_code: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for (class, info) in &py {
        if let Some(code) = info.code {
            by_code.entry(code).or_default().push(class);
        }
    }
    for (code, (name, category)) in &python_want {
        let classes = by_code.get(code).cloned().unwrap_or_default();
        let [class] = classes.as_slice() else {
            problems.push(format!(
                "exceptions.py: {} classes with code {code} ({name}): {classes:?}",
                classes.len()
            ));
            continue;
        };
        let info = &py[*class];
        if info.kind.as_deref() != Some(name.as_str()) {
            problems.push(format!(
                "exceptions.py: {class} (code {code}) has kind {:?}, the core says {name:?}",
                info.kind
            ));
        }
        let got = python_category(&py, class);
        if got.as_deref() != Some(*category) {
            problems.push(format!(
                "exceptions.py: {class} (code {code}) is under category {got:?}, the core says {category:?}"
            ));
        }
        if !all.iter().any(|a| a == class) {
            problems.push(format!("exceptions.py: {class} is not in __all__"));
        }
        if !kind_classes.iter().any(|a| a == class) {
            problems.push(format!(
                "exceptions.py: {class} is not in _KIND_CLASSES (the native module would not raise it)"
            ));
        }
    }
    for (code, classes) in &by_code {
        if !python_want.contains_key(code) {
            problems.push(format!(
                "exceptions.py: {classes:?} carry code {code}, which is not in the core's list"
            ));
        }
        if let Some(old) = retired.get(code) {
            problems.push(format!("exceptions.py: {classes:?} reuse retired code {code} ({old})"));
        }
    }
    problems
}

/// `JWTWARDEN_RESULT_NAME = N,` lines of the header.
fn header_results(text: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("JWTWARDEN_RESULT_") else {
            continue;
        };
        let Some((name, value)) = rest.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_end_matches(',');
        if let Ok(n) = value.parse() {
            out.insert(name.trim().to_string(), n);
        }
    }
    out
}

/// The Go `Kind` constants (identifier, C name after `JWTWARDEN_RESULT_`)
/// and the identifiers listed in `Kinds`.
fn go_kinds(text: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut consts = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [ident, "Kind", "=", value] = words.as_slice() {
            if let Some(c_name) = value.strip_prefix("C.JWTWARDEN_RESULT_") {
                consts.push((ident.to_string(), c_name.to_string()));
            }
        }
    }
    let kinds = text
        .split_once("var Kinds = []Kind{")
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(list, _)| {
            list.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    (consts, kinds)
}

#[derive(Default)]
struct PyClass {
    bases: Vec<String>,
    code: Option<u32>,
    kind: Option<String>,
    category: Option<String>,
}

/// The classes of `exceptions.py`: bases and the `code`, `kind` and
/// `category` class attributes each sets.
fn python_classes(text: &str) -> BTreeMap<String, PyClass> {
    let mut out: BTreeMap<String, PyClass> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("class ") {
            let (name, bases) = rest.split_once('(').unwrap_or((rest.trim_end_matches(':'), ""));
            let bases = bases.split(')').next().unwrap_or("");
            let class = PyClass {
                bases: bases
                    .split(',')
                    .map(|b| b.trim().to_string())
                    .filter(|b| !b.is_empty())
                    .collect(),
                ..PyClass::default()
            };
            out.insert(name.trim().to_string(), class);
            current = Some(name.trim().to_string());
            continue;
        }
        if !line.starts_with(' ') && !line.trim().is_empty() {
            current = None;
        }
        let Some(class) = current.as_ref().and_then(|c| out.get_mut(c)) else {
            continue;
        };
        let line = line.trim();
        let value = |prefix: &str| {
            line.strip_prefix(prefix)
                .map(|v| v.trim().trim_matches('"').to_string())
        };
        if let Some(v) = value("code: ClassVar[int] =") {
            class.code = v.parse().ok();
        } else if let Some(v) = value("kind: ClassVar[str] =") {
            class.kind = Some(v);
        } else if let Some(v) = value("category: ClassVar[str] =") {
            class.category = Some(v);
        }
    }
    out
}

/// The category a class inherits (Python's lookup order is close enough:
/// each kind class has one category base).
fn python_category(classes: &BTreeMap<String, PyClass>, class: &str) -> Option<String> {
    let c = classes.get(class)?;
    if let Some(cat) = &c.category {
        return Some(cat.clone());
    }
    c.bases.iter().find_map(|b| python_category(classes, b))
}

/// The names in a Python list or tuple that starts on the line beginning
/// with `start` and ends at `close`.
fn python_list(text: &str, start: &str, close: char) -> Vec<String> {
    let Some(at) = text.lines().position(|l| l.starts_with(start)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines().skip(at + 1) {
        if line.trim_start().starts_with(close) {
            break;
        }
        let name = line.trim().trim_end_matches(',').trim_matches('"');
        if !name.is_empty() {
            out.push(name.to_string());
        }
    }
    out
}

/// `const PANIC: (u32, &str, &str) = (901, "panic", "internal");`
fn python_boundary(text: &str) -> Option<(u32, String, String)> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("const PANIC: (u32, &str, &str) ="))?;
    let tuple = line.split_once("= (")?.1.split_once(')')?.0;
    let parts: Vec<&str> = tuple.split(',').map(|p| p.trim().trim_matches('"')).collect();
    let [code, name, category] = parts.as_slice() else {
        return None;
    };
    Some((code.parse().ok()?, name.to_string(), category.to_string()))
}

/// The check fails on each way a hand-kept copy drifts: a kind missing from
/// Go, a constant missing from `Kinds`, a Python class with the wrong code,
/// kind or category base, a class not in `_KIND_CLASSES`, a retired number
/// reused, a header number changed.
#[test]
fn check_catches_each_kind_of_drift() {
    let base = committed();
    assert!(check(&base).is_empty(), "the committed copies pass");
    let mutate = |f: &dyn Fn(&mut Copies)| {
        let mut c = committed();
        f(&mut c);
        check(&c)
    };
    type Mutation = Box<dyn Fn(&mut Copies)>;
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "go constant removed",
            Box::new(|c| {
                c.go =
                    c.go.lines()
                        .filter(|l| !l.ends_with("C.JWTWARDEN_RESULT_KEYS_STALE"))
                        .collect::<Vec<_>>()
                        .join("\n")
            }),
            "no Kind constant = C.JWTWARDEN_RESULT_KEYS_STALE",
        ),
        (
            "go constant not in Kinds",
            Box::new(|c| c.go = c.go.replace("ErrKeysStale, ", "")),
            "ErrKeysStale is missing from Kinds",
        ),
        (
            "go constant pointing at the wrong C name",
            Box::new(|c| {
                c.go =
                    c.go.replace("C.JWTWARDEN_RESULT_REVOKED\n", "C.JWTWARDEN_RESULT_REVOKED_TOKEN\n")
            }),
            "not in the core's list",
        ),
        (
            "python code changed",
            Box::new(|c| {
                c.python = c
                    .python
                    .replace("code: ClassVar[int] = 402", "code: ClassVar[int] = 405")
            }),
            "code 405",
        ),
        (
            "python kind string changed",
            Box::new(|c| {
                c.python = c.python.replace(
                    "kind: ClassVar[str] = \"revoked\"",
                    "kind: ClassVar[str] = \"revocated\"",
                )
            }),
            "has kind",
        ),
        (
            "python class under the wrong category",
            Box::new(|c| {
                c.python = c.python.replace(
                    "class KeysStaleError(KeysUnavailableError):",
                    "class KeysStaleError(PolicyError, InvalidTokenError):",
                )
            }),
            "under category Some(\"policy\")",
        ),
        (
            "python class not raised",
            Box::new(|c| {
                c.python = c.python.replace(
                    "    StatusMissingError,\n    TenantNotAllowedError,\n    NoUsableKeysError,",
                    "    TenantNotAllowedError,\n    NoUsableKeysError,",
                )
            }),
            "StatusMissingError is not in _KIND_CLASSES",
        ),
        (
            "python retired code reused",
            Box::new(|c| {
                c.python = c
                    .python
                    .replace("code: ClassVar[int] = 502", "code: ClassVar[int] = 503")
            }),
            "retired code 503",
        ),
        (
            "header number changed",
            Box::new(|c| {
                c.header = c.header.replace(
                    "JWTWARDEN_RESULT_KEYS_STALE = 401,",
                    "JWTWARDEN_RESULT_KEYS_STALE = 411,",
                )
            }),
            "JWTWARDEN_RESULT_KEYS_STALE is 411",
        ),
        (
            "python boundary code not the core's",
            Box::new(|c| {
                c.python_boundary = c
                    .python_boundary
                    .replace("(901, \"panic\", \"internal\")", "(902, \"panic\", \"internal\")")
            }),
            "not in ErrorKind::BOUNDARY_CODES",
        ),
    ];
    for (what, f, expect) in &cases {
        let problems = mutate(f.as_ref());
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "{what}: expected a problem containing {expect:?}, got {problems:#?}"
        );
    }
}
