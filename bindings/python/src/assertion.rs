//! The `Inherited` Python class: a verified verification assertion, trust
//! inherited from an edge (`Verifier.verify_assertion`,
//! `docs/trust-handoff.md`).

use pyo3::prelude::*;
use pyo3::types::PyMappingProxy;

use crate::convert;

/// A verified verification assertion: trust inherited from an edge that
/// verified the client's token and minted the assertion for this request.
#[pyclass(frozen, module = "jwtwarden._native")]
pub(crate) struct Inherited {
    edge: String,
    verified_at: u64,
    cached: bool,
    fresh: bool,
    original: Py<PyMappingProxy>,
    claims: Py<PyMappingProxy>,
}

impl Inherited {
    /// The Python form of the engine's result.
    pub(crate) fn new(py: Python<'_>, i: jwtwarden::assertion::Inherited) -> PyResult<Inherited> {
        Ok(Inherited {
            original: convert::frozen_map(py, &i.original)?.unbind(),
            claims: convert::frozen_map(py, &i.assertion)?.unbind(),
            edge: i.edge,
            verified_at: i.verified_at,
            cached: i.cached,
            fresh: i.fresh,
        })
    }
}

#[pymethods]
impl Inherited {
    /// Always True: this trust was inherited, not established here.
    #[getter]
    fn inherited(&self) -> bool {
        true
    }

    /// The edge that minted the assertion (its `iss`).
    #[getter]
    fn edge(&self) -> &str {
        &self.edge
    }

    /// When the edge verified the original token, in seconds since the epoch.
    #[getter]
    fn verified_at(&self) -> u64 {
        self.verified_at
    }

    /// Whether the edge's result came from its cache.
    #[getter]
    fn cached(&self) -> bool {
        self.cached
    }

    /// Whether the edge's route demanded a fresh verification.
    #[getter]
    fn fresh(&self) -> bool {
        self.fresh
    }

    /// The original token's claims as the edge saw them (`iss`, `sub`,
    /// `aud`, `scope`, and `jti` or `tjh`), a read-only mapping.
    #[getter]
    fn original(&self, py: Python<'_>) -> Py<PyMappingProxy> {
        self.original.clone_ref(py)
    }

    /// Every claim of the assertion itself, a read-only mapping.
    #[getter]
    fn claims(&self, py: Python<'_>) -> Py<PyMappingProxy> {
        self.claims.clone_ref(py)
    }

    fn __repr__(&self) -> String {
        format!("Inherited(edge={:?}, verified_at={})", self.edge, self.verified_at)
    }
}
