//! `Minter`: the edge's assertion signer (`jwtwarden::assertion::Minter`,
//! docs/trust-handoff.md §2), for a WSGI or ASGI middleware acting as the
//! edge: `HttpPolicy` mints with it for an allowed request on a route the
//! policy's `assertion` section covers.

use std::sync::Arc;

use jwtwarden::assertion::Minter as CoreMinter;
use jwtwarden::{Error, ErrorKind, SystemClock};
use pyo3::prelude::*;

use crate::call::detached;
use crate::verifier::load_config;

/// The edge's signing keys (current and previous), its name and the
/// assertion lifetime, from an engine configuration's `assertion` section.
/// Immutable; any number of threads may use one at once.
#[pyclass(frozen, module = "jwtwarden._native")]
pub(crate) struct Minter {
    pub(crate) inner: Arc<CoreMinter>,
}

#[pymethods]
impl Minter {
    /// A minter from an engine configuration (a dict, a JSON string or a
    /// file path, as `Verifier` takes); only its `assertion` section is
    /// read and nothing is fetched. Raises `InvalidConfigError` without
    /// that section or when a key does not load.
    #[new]
    fn new(py: Python<'_>, config: &Bound<'_, PyAny>) -> PyResult<Minter> {
        let config = load_config(py, config)?;
        let inner = detached(py, move || {
            let section = config.assertion.as_ref().ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    "assertion: the engine configuration has no assertion section (name, current key)",
                )
            })?;
            CoreMinter::new(section, Arc::new(SystemClock))
        })?;
        Ok(Minter { inner: Arc::new(inner) })
    }

    fn __repr__(&self) -> String {
        "Minter()".to_string()
    }
}
