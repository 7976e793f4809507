//! Gives the shared library a versioned SONAME (`libjwtwarden.so.<major>`),
//! so programs linked against it record that name and keep working across
//! compatible upgrades; `make -C ffi install` creates the matching symlinks.
//!
//! The major is the ABI's, not the crate's: it is read from `abi/SOMAJOR`
//! and bumped only for an incompatible change of the C ABI (scripts/check-abi
//! compares the library with the committed baseline `abi/libjwtwarden.so.<major>.abi`).
//! The library `make -C ffi` installs is linked from `libjwtwarden.a` with the
//! version script `abi/jwtwarden.map` (rustc's own export list for this cdylib
//! cannot carry symbol versions); it has the same SONAME.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=abi/SOMAJOR");
    let major = std::fs::read_to_string("abi/SOMAJOR").expect("ffi/abi/SOMAJOR holds the SONAME major");
    let major = major.trim();
    assert!(
        !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()),
        "ffi/abi/SOMAJOR must hold a number, not {major:?}"
    );
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly"
    ) {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libjwtwarden.so.{major}");
    }
}
