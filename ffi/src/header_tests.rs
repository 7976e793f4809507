//! `include/jwtwarden.h` is generated: regenerate it with the cbindgen
//! library and fail on any difference, so the committed header never drifts
//! from the Rust sources. Run with `JWTWARDEN_BLESS=1` to rewrite it.

use std::path::PathBuf;

fn header_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../include/jwtwarden.h")
}

/// The header as cbindgen generates it now (once per test run).
fn generated() -> &'static str {
    static GENERATED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    GENERATED.get_or_init(generate)
}

fn generate() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).expect("ffi/cbindgen.toml parses");
    let bindings = cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn committed_header_matches_the_sources() {
    let generated = generated();
    let path = header_path();
    if std::env::var_os("JWTWARDEN_BLESS").is_some() {
        std::fs::write(&path, generated).expect("write include/jwtwarden.h");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(committed.lines().count().min(generated.lines().count()));
        panic!(
            "include/jwtwarden.h is out of date (first difference at line {}); regenerate it with\n  \
             cd ffi && cbindgen --config cbindgen.toml --output ../include/jwtwarden.h .\n\
             or JWTWARDEN_BLESS=1 cargo test -p jwtwarden-ffi header",
            first + 1
        );
    }
}

#[test]
fn header_version_macro_matches_cargo_toml() {
    let header = generated();
    let version = env!("CARGO_PKG_VERSION");
    let define = format!("#define JWTWARDEN_VERSION \"{version}\"");
    assert!(header.contains(&define), "the header lacks `{define}`");
    let mut parts = version.split('.');
    for name in ["MAJOR", "MINOR", "PATCH"] {
        let define = format!("#define JWTWARDEN_VERSION_{name} {}", parts.next().unwrap());
        assert!(header.contains(&define), "the header lacks `{define}`");
    }
}

#[test]
fn header_has_every_core_error_code() {
    let header = generated();
    assert!(header.contains("JWTWARDEN_RESULT_OK = 0,"));
    for kind in jwtwarden_core::ErrorKind::ALL {
        let line = format!("JWTWARDEN_RESULT_{} = {},", kind.as_str().to_uppercase(), kind.code());
        assert!(header.contains(&line), "the header lacks `{line}`");
    }
}
