//! `jwtwarden._native`: the PyO3 extension module behind the `jwtwarden`
//! Python package.
//!
//! Everything here is a thin layer over the pure-Rust engine in `core/`
//! (crate `jwtwarden`): argument conversion, the one error mapping
//! (`errors`), the GIL released around every engine call (`call`), and the
//! bridge from the `log` facade to Python's `logging` (`logbridge`). The
//! public Python API is re-exported by `jwtwarden/__init__.py`; the type
//! stubs live in `jwtwarden/_native.pyi`.

use pyo3::prelude::*;

mod assertion;
mod call;
mod convert;
mod errors;
mod http;
mod logbridge;
mod mint;
mod verifier;

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CORE_VERSION", jwtwarden::VERSION)?;
    m.add_class::<verifier::Verifier>()?;
    m.add_class::<verifier::VerifiedToken>()?;
    m.add_class::<assertion::Inherited>()?;
    m.add_class::<http::HttpPolicy>()?;
    m.add_class::<mint::Minter>()?;
    m.add_function(wrap_pyfunction!(errors::error_kinds, m)?)?;
    m.add_function(wrap_pyfunction!(errors::boundary_kinds, m)?)?;
    m.add_function(wrap_pyfunction!(errors::_raise_error, m)?)?;
    m.add_function(wrap_pyfunction!(errors::_raise_panic, m)?)?;
    m.add_function(wrap_pyfunction!(call::_detached_calls, m)?)?;
    m.add_function(wrap_pyfunction!(logbridge::sync_log_level, m)?)?;
    m.add_function(wrap_pyfunction!(logbridge::_shutdown_logging, m)?)?;
    logbridge::install(py)?;
    Ok(())
}
