//! `HttpPolicy`: the core's HTTP decision (`jwtwarden::http`, docs/http.md)
//! for the WSGI and ASGI middlewares, which only convert the request and
//! write the answer back.
//!
//! The steps are the core's ([`jwtwarden::http::HttpPolicy::route`],
//! [`token`](jwtwarden::http::HttpPolicy::token), the engine,
//! [`judge`](jwtwarden::http::HttpPolicy::judge)); only the engine call is
//! this binding's, so that the decision keeps the binding's fast paths: a
//! cache hit (and anything the engine decides without a signature check or
//! a network wait) answered with the GIL held, the rest with it released,
//! or, for an event loop (`wait=False`), not at all ("would wait": the
//! caller runs the same decision again in a worker thread).

use std::sync::Arc;

use jwtwarden::http::{HttpPolicy as CorePolicy, Mint, Reason, Refusal, Route};
use jwtwarden::{fingerprint, Category, Error, ErrorKind, Verified, VerifyOptions};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::call::{attached, catch, detached};
use crate::errors::{CallError, CoreError};
use crate::mint::Minter;
use crate::verifier::{utf8, VerifiedToken, Verifier};

/// The HTTP decision of one middleware: its policy (built from the
/// middleware's options as the core's policy JSON), plus the options that
/// apply to every request (`issuer`, `fresh`).
#[pyclass(frozen, module = "jwtwarden._native")]
pub(crate) struct HttpPolicy {
    policy: CorePolicy,
    issuer: Option<String>,
    fresh: bool,
    /// The edge's signer, for a policy with an `assertion` section.
    minter: Option<Py<Minter>>,
}

/// The engine's error for a call the binding could not make.
fn call_error(e: CallError) -> Error {
    match e {
        CallError::Engine(CoreError(e)) => e,
        CallError::Panic(message) => Error::new(ErrorKind::Internal, message),
    }
}

/// A refusal as `(status, [(name, value)], body)`, header names in their
/// usual spelling (WSGI servers and tests compare them as written).
fn refusal<'py>(py: Python<'py>, r: &Refusal) -> PyResult<Bound<'py, PyAny>> {
    let headers = PyList::empty(py);
    for (name, value) in &r.headers {
        let name = match *name {
            "cache-control" => "Cache-Control",
            "www-authenticate" => "WWW-Authenticate",
            "retry-after" => "Retry-After",
            other => other,
        };
        headers.append((name, value.as_str()))?;
    }
    Ok(PyTuple::new(
        py,
        [
            r.status.into_pyobject(py)?.into_any(),
            headers.into_any(),
            PyBytes::new(py, r.body.as_bytes()).into_any(),
        ],
    )?
    .into_any())
}

impl HttpPolicy {
    /// The refusal for an engine error, logged as the middlewares did.
    fn engine_refusal<'py>(&self, py: Python<'py>, token: &str, e: &Error) -> PyResult<Bound<'py, PyAny>> {
        let fp = fingerprint(token.as_bytes());
        match e.category() {
            Category::KeysUnavailable => log::warn!(target: "jwtwarden::http", "token {fp} refused: {e}"),
            Category::Usage | Category::Internal => {
                log::error!(target: "jwtwarden::http", "token {fp}: verification failed on the server side: {e}")
            }
            _ => log::debug!(target: "jwtwarden::http", "token {fp} refused: {e}"),
        }
        refusal(py, &self.policy.refuse(&Reason::Engine(e)))
    }

    /// The assertion of an allowed request, when the policy's `assertion`
    /// covers its route (the core's `HttpPolicy::decide_minting` rules: no
    /// minter, or no target to bind to, is an internal error, a 500).
    fn mint(
        &self,
        route: &Route,
        verified: &Verified,
        token: &str,
        method: &str,
        target: Option<&str>,
        fresh: bool,
    ) -> Result<Option<String>, Error> {
        let Some(audience) = self.policy.assertion().and_then(|rule| rule.audience(route)) else {
            return Ok(None);
        };
        let minter = self.minter.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                "the policy mints assertions (assertion section) and the middleware has no minter",
            )
        })?;
        let target = target.ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                "an assertion is bound to the request path, and the middleware did not pass it",
            )
        })?;
        catch(|| {
            minter.get().inner.mint_assertion(
                verified.token(),
                verified.cached(),
                token.as_bytes(),
                audience,
                method,
                target,
                fresh,
            )
        })
        .map_err(call_error)?
        .map(Some)
    }

    /// Verify with the binding's fast paths: `Ok(None)` when `wait` is
    /// false and only a call that may check a signature or fetch can tell.
    fn verify(
        &self,
        py: Python<'_>,
        engine: &Arc<jwtwarden::Verifier>,
        token: &str,
        opts: &VerifyOptions<'_>,
        wait: bool,
    ) -> Result<Option<Verified>, Error> {
        if let Some(hit) = catch(|| engine.verify_cached(token.as_bytes(), opts)).map_err(call_error)? {
            return Ok(Some(hit));
        }
        match attached(py, || engine.verify_without_waiting(token.as_bytes(), opts)).map_err(call_error)? {
            Some(result) => return result.map(Some),
            None if !wait => return Ok(None),
            None => {}
        }
        // Not borrowed across the GIL release (a miss may fetch for seconds).
        let engine = Arc::clone(engine);
        detached(py, || engine.verify_with(token.as_bytes(), opts))
            .map(Some)
            .map_err(call_error)
    }
}

#[pymethods]
impl HttpPolicy {
    /// A policy from the core's policy JSON (docs/http.md; `routes`,
    /// `realm`, `open_methods`...); `issuer` and `fresh` apply to every
    /// request. Raises `InvalidConfigError` naming the field.
    ///
    /// `minter` signs the assertions of a policy with an `assertion`
    /// section (docs/trust-handoff.md §2): `decide` then answers an
    /// allowed request on a route that carries one with `(VerifiedToken,
    /// assertion)`. Such a policy without a minter refuses those requests
    /// with 500 (never lets one on without its assertion).
    #[new]
    #[pyo3(signature = (policy, *, issuer=None, fresh=false, minter=None))]
    fn new(policy: &str, issuer: Option<String>, fresh: bool, minter: Option<Py<Minter>>) -> PyResult<HttpPolicy> {
        let policy = CorePolicy::from_json(policy)
            .map_err(|e| CoreError(Error::new(ErrorKind::InvalidConfig, format!("middleware options: {e}"))))?;
        Ok(HttpPolicy {
            policy,
            issuer,
            fresh,
            minter,
        })
    }

    /// The header (lower case) the policy's assertions go in, or `None`
    /// for a policy that mints none.
    #[getter]
    fn assertion_header(&self) -> Option<&str> {
        self.policy.assertion().map(|r| r.header().as_str())
    }

    /// Decide one request. `method` (upper case) and `target` (the raw
    /// request target as the client sent it) choose the route rules;
    /// `authorization` holds every `Authorization` header value (`str` or
    /// `bytes`); `skip` (the middleware's `skip_if`) opens a request whose
    /// path the core accepts; `fresh` (its `fresh_if`) skips the cache.
    ///
    /// Returns `True` (open: nothing verified), a `VerifiedToken`
    /// (allowed), `(VerifiedToken, assertion)` (allowed on a route whose
    /// policy mints: the assertion, a compact JWS for the upstream, bound
    /// to `method` and `target`), `(status, headers, body)` (refused), or, with
    /// `wait=False`, `None` when only a verification that may check a
    /// signature or fetch keys can tell (call again with `wait=True`
    /// where waiting is fine).
    #[pyo3(signature = (verifier, method, target, authorization, skip=false, fresh=false, wait=true))]
    #[allow(clippy::too_many_arguments)]
    fn decide<'py>(
        &self,
        py: Python<'py>,
        verifier: &Bound<'py, Verifier>,
        method: &str,
        target: Option<&str>,
        authorization: &Bound<'py, PyAny>,
        skip: bool,
        fresh: bool,
        wait: bool,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let route = match self.policy.route(target, method) {
            Ok(route) => route,
            Err(r) => return refusal(py, &r).map(Some),
        };
        if route.open || skip {
            return Ok(Some(pyo3::types::PyBool::new(py, true).to_owned().into_any()));
        }
        // The header values, borrowed from their (immutable) objects.
        let values: Vec<Bound<'py, PyAny>> = authorization.try_iter()?.collect::<PyResult<_>>()?;
        let mut bytes: Vec<&[u8]> = Vec::with_capacity(values.len());
        for v in &values {
            if v.is_instance_of::<PyString>() {
                bytes.push(utf8(v.as_borrowed())?);
            } else {
                bytes.push(v.cast::<PyBytes>()?.as_bytes());
            }
        }
        let token = match self.policy.token(bytes.iter().copied(), std::iter::empty()) {
            Ok(t) => t,
            Err(r) => return refusal(py, &r).map(Some),
        };
        let opts = VerifyOptions {
            issuer: route.issuer.as_deref().or(self.issuer.as_deref()),
            fresh: route.fresh || self.fresh || fresh,
        };
        let inner = verifier.get().inner.load_full();
        let verified = match inner {
            None => Err(Error::new(ErrorKind::InvalidArgument, "the verifier is closed")),
            Some(engine) => self.verify(py, &engine, token, &opts, wait),
        };
        let verified = match verified {
            Ok(Some(v)) => v,
            Ok(None) => return Ok(None),
            Err(e) => return self.engine_refusal(py, token, &e).map(Some),
        };
        if let Err(r) = self.policy.judge(route, &verified) {
            return refusal(py, &r).map(Some);
        }
        let assertion = match self.mint(route, &verified, token, method, target, opts.fresh) {
            Ok(a) => a,
            Err(e) => {
                log::error!(target: "jwtwarden::http", "token {}: {e}", fingerprint(token.as_bytes()));
                return refusal(py, &self.policy.refuse(&Reason::Engine(&e))).map(Some);
            }
        };
        let claims = verifier.get().claims(py, &verified)?.unbind();
        let result = Bound::new(py, VerifiedToken { claims, verified })?.into_any();
        match assertion {
            None => Ok(Some(result)),
            Some(a) => Ok(Some(
                PyTuple::new(py, [result, PyString::new(py, &a).into_any()])?.into_any(),
            )),
        }
    }

    /// The claim headers of an allowed result under this policy: `(name,
    /// value)` pairs, lower-case names, values sanitised by the core
    /// (printable, bounded); absent claims left out.
    fn claim_headers(&self, result: &VerifiedToken) -> Vec<(String, String)> {
        if self.policy.claim_mapping().is_empty() {
            return Vec::new();
        }
        self.policy
            .claim_headers(&result.verified)
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.clone()))
            .collect()
    }

    /// The lower-case names of the claim headers this policy sets (the
    /// middleware removes them from every incoming request).
    #[getter]
    fn claim_header_names(&self) -> Vec<String> {
        self.policy
            .claim_mapping()
            .iter()
            .map(|(_, n)| n.as_str().to_string())
            .collect()
    }
}
