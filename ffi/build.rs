//! Gives the shared library a versioned SONAME (`libjwtwarden.so.<major>`),
//! so programs linked against it record that name and keep working across
//! compatible upgrades; `make -C ffi install` creates the matching symlinks.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly"
    ) {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets CARGO_PKG_VERSION_MAJOR");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libjwtwarden.so.{major}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
