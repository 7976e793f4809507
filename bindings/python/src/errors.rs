//! The one mapping from engine errors to Python exceptions.
//!
//! The exception classes are ordinary Python classes in
//! `jwtwarden/exceptions.py` (so they have docstrings, pickle, and show up in
//! IDEs). Each per-kind class carries its stable `code`; the package builds
//! `_BY_CODE` from them, and this module looks the class up there. The table
//! the classes are checked against comes from [`error_kinds`], i.e. from
//! `ErrorKind::ALL` in the engine, so the numbers are never retyped here.

use jwtwarden::{Error, ErrorKind};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

use crate::call;

/// An engine error on its way to Python. Engine calls return this; PyO3
/// turns it into the matching exception through the one `From` below.
#[derive(Debug)]
pub(crate) struct CoreError(pub(crate) Error);

impl From<Error> for CoreError {
    fn from(e: Error) -> CoreError {
        CoreError(e)
    }
}

impl From<CoreError> for PyErr {
    fn from(e: CoreError) -> PyErr {
        Python::attach(|py| exception(py, &e.0).unwrap_or_else(|lookup_failed| lookup_failed))
    }
}

/// How an engine call through [`crate::call::detached`] can fail: the
/// engine's error, or a panic caught at this boundary.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The engine returned an error.
    Engine(CoreError),
    /// The engine panicked; the message says where.
    Panic(String),
}

/// `panic` (901): the code this boundary (like the C ABI) gives a caught
/// panic. The engine has no such kind; `boundary_kinds()` lists it.
const PANIC: (u32, &str, &str) = (901, "panic", "internal");

impl From<CallError> for PyErr {
    fn from(e: CallError) -> PyErr {
        match e {
            CallError::Engine(e) => e.into(),
            CallError::Panic(message) => Python::attach(|py| {
                table(py, &BY_CODE, "_BY_CODE")
                    .and_then(|t| t.get_item(PANIC.0))
                    .and_then(|cls| {
                        let cls = cls.ok_or_else(|| PyValueError::new_err("no PanicError class"))?;
                        Ok(PyErr::from_type(cls.cast_into::<PyType>()?, (message,)))
                    })
                    .unwrap_or_else(|lookup_failed| lookup_failed)
            }),
        }
    }
}

static BY_CODE: PyOnceLock<Py<PyDict>> = PyOnceLock::new();
static BY_CATEGORY: PyOnceLock<Py<PyDict>> = PyOnceLock::new();
static BY_CLAIM: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

fn table<'py>(py: Python<'py>, cell: &'static PyOnceLock<Py<PyDict>>, name: &str) -> PyResult<&'py Bound<'py, PyDict>> {
    cell.get_or_try_init(py, || {
        let module = py.import("jwtwarden.exceptions")?;
        Ok(module.getattr(name)?.cast_into::<PyDict>()?.unbind())
    })
    .map(|d| d.bind(py))
}

/// The exception for `e`: its kind's class (or a subclass of it for the claim
/// the message names, from `_BY_CLAIM`), or (for a kind this package does
/// not know, which the tests rule out) its category's class with `code`,
/// `kind` and `category` set on the instance.
fn exception(py: Python<'_>, e: &Error) -> PyResult<PyErr> {
    let message = e.message().to_owned();
    // A kind refused because of one claim the package names apart (an
    // `invalid_payload` about `iat`: `InvalidIssuedAtPayloadError`, for
    // PyJWT's `InvalidIssuedAtError`); the engine's claim checks put the
    // claim's name first.
    let claim = message.split(' ').next().unwrap_or_default();
    if let Some(cls) = table(py, &BY_CLAIM, "_BY_CLAIM")?.get_item((e.code(), claim))? {
        return Ok(PyErr::from_type(cls.cast_into::<PyType>()?, (message,)));
    }
    if let Some(cls) = table(py, &BY_CODE, "_BY_CODE")?.get_item(e.code())? {
        return Ok(PyErr::from_type(cls.cast_into::<PyType>()?, (message,)));
    }
    let category = e.category().as_str();
    let cls = table(py, &BY_CATEGORY, "_BY_CATEGORY")?
        .get_item(category)?
        .ok_or_else(|| PyValueError::new_err(format!("no exception class for category {category}")))?;
    let instance = cls.call1((message,))?;
    instance.setattr("code", e.code())?;
    instance.setattr("kind", e.kind().as_str())?;
    instance.setattr("category", category)?;
    Ok(PyErr::from_value(instance))
}

/// Every error kind the engine has, as `(code, kind, category)`, in code order.
#[pyfunction]
pub(crate) fn error_kinds() -> Vec<(u32, &'static str, &'static str)> {
    ErrorKind::ALL
        .iter()
        .map(|k| (k.code(), k.as_str(), k.category().as_str()))
        .collect()
}

/// The codes this binding adds to the engine's, as `(code, kind, category)`:
/// only `panic`.
#[pyfunction]
pub(crate) fn boundary_kinds() -> Vec<(u32, &'static str, &'static str)> {
    vec![PANIC]
}

/// Raise the exception for an engine error of `code` (for tests of the mapping).
#[pyfunction]
pub(crate) fn _raise_error(code: u32, message: &str) -> PyResult<()> {
    let kind = ErrorKind::from_code(code).ok_or_else(|| PyValueError::new_err(format!("no error kind {code}")))?;
    Err(CoreError(Error::new(kind, message)).into())
}

/// Panic inside the same guard every engine call runs in (for tests).
#[pyfunction]
pub(crate) fn _raise_panic(py: Python<'_>) -> PyResult<()> {
    call::detached(py, || -> jwtwarden::Result<()> { panic!("deliberate test panic") })?;
    Ok(())
}
