//! C ABI over the jwtwarden engine (work in progress).
