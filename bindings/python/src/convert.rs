//! JSON values to Python objects and back.
//!
//! Metrics come out of the engine as `serde_json` values and are returned as
//! plain `dict`/`list`/`str`/`int`/`float`/`bool`/`None`, claims as a
//! read-only mapping with `tuple`s for arrays (shared by cache hits); a config
//! given as a `dict` goes the other way before `Config::from_value` checks it.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyList, PyMappingProxy, PyString, PyTuple};
use serde_json::{Map, Number, Value};

/// Deepest nesting accepted when converting a Python object to JSON.
const MAX_DEPTH: usize = 64;

/// A JSON object as a new `dict`.
pub(crate) fn map_to_dict<'py>(py: Python<'py>, map: &Map<String, Value>) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (k, v) in map {
        dict.set_item(PyString::new(py, k), value_to_py(py, v)?)?;
    }
    Ok(dict)
}

/// A JSON object as a read-only mapping (`types.MappingProxyType` over a
/// `dict` nobody else holds), immutable all the way down: arrays become
/// `tuple`s and objects read-only mappings, leaves are `str`, `int`,
/// `float`, `bool` and `None`. Safe to share between callers.
pub(crate) fn frozen_map<'py>(py: Python<'py>, map: &Map<String, Value>) -> PyResult<Bound<'py, PyMappingProxy>> {
    let dict = PyDict::new(py);
    for (k, v) in map {
        dict.set_item(PyString::new(py, k), frozen_value(py, v)?)?;
    }
    Ok(PyMappingProxy::new(py, dict.as_mapping()))
}

fn frozen_value<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    match value {
        Value::Array(items) => {
            let items = items
                .iter()
                .map(|v| frozen_value(py, v))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(PyTuple::new(py, items)?.into_any())
        }
        Value::Object(map) => Ok(frozen_map(py, map)?.into_any()),
        leaf => value_to_py(py, leaf),
    }
}

/// A JSON value as a new Python object.
pub(crate) fn value_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => number_to_py(py, n)?,
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(value_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => map_to_dict(py, map)?.into_any(),
    })
}

fn number_to_py<'py>(py: Python<'py>, n: &Number) -> PyResult<Bound<'py, PyAny>> {
    if let Some(i) = n.as_i64() {
        Ok(i.into_pyobject(py)?.into_any())
    } else if let Some(u) = n.as_u64() {
        Ok(u.into_pyobject(py)?.into_any())
    } else {
        Ok(PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any())
    }
}

/// A Python object made of `dict` (str keys), `list`/`tuple`, `str`, `int`,
/// `float`, `bool` and `None` as a JSON value.
pub(crate) fn py_to_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    to_value(obj, 0, &mut String::from("$"))
}

fn to_value(obj: &Bound<'_, PyAny>, depth: usize, path: &mut String) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "{path}: nested more than {MAX_DEPTH} levels"
        )));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    // bool before int: bool is a subclass of int.
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if let Ok(i) = obj.extract::<i64>() {
        return Ok(Value::from(i));
    }
    if let Ok(u) = obj.extract::<u64>() {
        return Ok(Value::from(u));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Number::from_f64(f.value())
            .map(Value::Number)
            .ok_or_else(|| PyValueError::new_err(format!("{path}: {} is not a JSON number", f.value())));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = Map::new();
        for (k, v) in d.iter() {
            let key = k
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err(format!("{path}: dict keys must be str, got {}", type_name(&k))))?
                .to_cow()?
                .into_owned();
            let len = path.len();
            path.push('.');
            path.push_str(&key);
            let value = to_value(&v, depth + 1, path)?;
            path.truncate(len);
            map.insert(key, value);
        }
        return Ok(Value::Object(map));
    }
    if obj.cast::<PyList>().is_ok() || obj.cast::<PyTuple>().is_ok() {
        let mut items = Vec::new();
        for (i, item) in obj.try_iter()?.enumerate() {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            items.push(to_value(&item?, depth + 1, path)?);
            path.truncate(len);
        }
        return Ok(Value::Array(items));
    }
    Err(PyTypeError::new_err(format!(
        "{path}: {} is not JSON-compatible (use dict, list, str, int, float, bool or None)",
        type_name(obj)
    )))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}
