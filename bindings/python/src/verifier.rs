//! The `Verifier` and `VerifiedToken` Python classes.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;

use jwtwarden::{Config, Error, ErrorKind, Verified, VerifyOptions};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyMappingProxy, PyString, PyType};

use crate::call::{attached, catch, detached, guard};
use crate::convert;
use crate::errors::CoreError;
use crate::logbridge;

/// A token as `str` or `bytes`, borrowed from the argument for the call
/// (not copied, and no reference taken: the caller's reference keeps the
/// immutable object, and a `str`'s cached UTF-8, alive until we return).
struct TokenArg<'a>(&'a [u8]);

impl<'a, 'py> FromPyObject<'a, 'py> for TokenArg<'a> {
    type Error = PyErr;

    // By hand rather than derived: a derived enum tries `str` first and
    // builds (then discards) an exception for every `bytes` token.
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<TokenArg<'a>> {
        // A plain `str`, almost every token, is known by its type pointer;
        // the subtype check behind it (and behind `<&str>::extract`) is a
        // call into libpython, as the limited API hides the type's flags:
        // two of them cost 6 ns of a 100 ns hit.
        if obj.is_exact_instance_of::<PyString>() || obj.is_instance_of::<PyString>() {
            return utf8(obj).map(TokenArg);
        }
        if obj.is_instance_of::<PyBytes>() {
            return Ok(TokenArg(<&'a [u8]>::extract(obj)?));
        }
        Err(PyTypeError::new_err(format!(
            "token must be str or bytes, not {}",
            obj.get_type().name()?
        )))
    }
}

/// The UTF-8 form of `s`, a `str` or a subclass (what `<&str>::extract`
/// does once it has checked the type).
pub(crate) fn utf8<'a>(s: Borrowed<'a, '_, PyAny>) -> PyResult<&'a [u8]> {
    let mut size: pyo3::ffi::Py_ssize_t = 0;
    // SAFETY: `s` is a live `str`, and `size` is writable.
    let data = unsafe { pyo3::ffi::PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut size) };
    if data.is_null() {
        // Not encodable (lone surrogates): CPython has set the error.
        return Err(PyErr::fetch(s.py()));
    }
    // SAFETY: CPython returns `size` bytes, cached on the string and freed
    // with it; the caller's reference keeps it alive for `'a`.
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size as usize) })
}

impl TokenArg<'_> {
    fn as_bytes(&self) -> &[u8] {
        self.0
    }
}

/// Verifies JWTs for the configured issuers; see the package documentation.
#[pyclass(frozen, module = "jwtwarden._native")]
pub(crate) struct Verifier {
    /// `None` once closed. Read without a lock or a reference count (a
    /// cache hit takes about as long as a lock would). Calls in flight hold
    /// the engine (a hit through arc-swap's borrow, a miss through its own
    /// `Arc`), so `close()` never pulls it out from under them; the engine
    /// (and its refresher thread) stops when the last one finishes.
    pub(crate) inner: ArcSwapOption<jwtwarden::Verifier>,
}

/// The claims of one verified result converted to Python once, kept on the
/// result itself (`VerifiedToken::memo_ref`: borrowed, no count per hit)
/// and handed out as is to every cache hit of it: a read-only mapping,
/// immutable all the way down ([`convert::frozen_map`]), so no caller can
/// change what another sees.
#[derive(Default)]
struct PyClaims(OnceLock<Py<PyMappingProxy>>);

/// What a call on a closed verifier raises.
fn closed() -> PyErr {
    CoreError(Error::new(ErrorKind::InvalidArgument, "the verifier is closed")).into()
}

/// The engine's options for a call's `issuer` and `fresh` arguments.
fn options(issuer: Option<&PyBackedStr>, fresh: bool) -> VerifyOptions<'_> {
    VerifyOptions {
        issuer: issuer.map(|s| &**s),
        fresh,
    }
}

/// Verify what the cache did not answer: with the GIL held when the engine
/// decides without a signature check or a network wait (an early rejection,
/// an unknown issuer, a remembered or rate-limited unknown kid: see
/// [`decided`]), with it released for the rest.
fn miss(
    py: Python<'_>,
    engine: &Arc<jwtwarden::Verifier>,
    token: &TokenArg<'_>,
    opts: &VerifyOptions<'_>,
) -> PyResult<Verified> {
    if let Some(verified) = decided(py, engine, token, opts)? {
        return Ok(verified);
    }
    // Not borrowed across the GIL release (a miss may fetch for seconds).
    let engine = Arc::clone(engine);
    Ok(detached(py, || engine.verify_with(token.as_bytes(), opts))?)
}

/// What the engine answers without a signature check or a network wait
/// (`Verifier::verify_without_waiting`), with the GIL held: those answers
/// take microseconds, and releasing the GIL for them would make this thread
/// wait to take it back, up to the switch interval (5 ms) while another
/// thread runs Python: the convoy of issue 29. `Ok(None)`: only the full
/// path (a signature check, maybe a fetch) can tell.
fn decided(
    py: Python<'_>,
    engine: &jwtwarden::Verifier,
    token: &TokenArg<'_>,
    opts: &VerifyOptions<'_>,
) -> PyResult<Option<Verified>> {
    match attached(py, || engine.verify_without_waiting(token.as_bytes(), opts))? {
        Some(Ok(verified)) => Ok(Some(verified)),
        Some(Err(e)) => Err(CoreError(e).into()),
        None => Ok(None),
    }
}

/// The claims of a cache hit, if this front end converted them before (on
/// the miss that verified the token, or an earlier hit). On `None`,
/// `unconverted` holds the hit if there was one, for the caller to
/// convert; if not, it was a miss.
///
/// The lookup runs inside a panic boundary that hands back one pointer.
/// Handing back the `Verified` itself, through `catch_unwind` and each
/// `Result` layer, cost more than the rest of the binding: each copy of
/// it stalls on the stores of the one before.
#[inline(always)]
fn converted_hit(
    py: Python<'_>,
    engine: &jwtwarden::Verifier,
    token: &TokenArg<'_>,
    opts: &VerifyOptions<'_>,
    unconverted: &mut Option<Verified>,
) -> PyResult<Option<Py<PyMappingProxy>>> {
    Ok(catch(|| {
        let hit = engine.verify_cached(token.as_bytes(), opts)?;
        match hit.token().memo_ref(|_| PyClaims::default()).and_then(|m| m.0.get()) {
            Some(claims) => Some(claims.clone_ref(py)),
            None => {
                *unconverted = Some(hit);
                None
            }
        }
    })?)
}

impl Verifier {
    fn engine(&self) -> PyResult<Arc<jwtwarden::Verifier>> {
        self.inner.load_full().ok_or_else(closed)
    }

    /// Verify `token`: a cache hit and whatever else the engine decides
    /// without waiting with the GIL held, anything else with it released.
    fn verify_inner(
        &self,
        py: Python<'_>,
        token: &TokenArg<'_>,
        issuer: Option<&PyBackedStr>,
        fresh: bool,
    ) -> PyResult<Verified> {
        let inner = self.inner.load();
        let engine = inner.as_ref().ok_or_else(closed)?;
        let opts = options(issuer, fresh);
        // A cache hit is over in well under a microsecond and never waits on
        // the network: serve it with the GIL held, rather than release the
        // GIL and take it back for longer than the hit takes. Everything else
        // (the same hit rules included) runs with the GIL released.
        match guard(|| Ok(engine.verify_cached(token.as_bytes(), &opts)))? {
            Some(hit) => Ok(hit),
            None => miss(py, engine, token, &opts),
        }
    }

    /// The claims of `verified` as a read-only mapping: the memoized one
    /// when there is one (cache hits), else converted (and memoized).
    pub(crate) fn claims<'py>(&self, py: Python<'py>, verified: &Verified) -> PyResult<Bound<'py, PyMappingProxy>> {
        let memo = verified.token().memo_ref(|_| PyClaims::default());
        if let Some(claims) = memo.and_then(|m| m.0.get()) {
            return Ok(claims.bind(py).clone());
        }
        let claims = convert::frozen_map(py, verified.claims())?;
        // Another thread may have set it meanwhile: either is right, and
        // every later hit gets the stored one.
        if let Some(memo) = memo {
            let _ = memo.0.set(claims.clone().unbind());
        }
        Ok(claims)
    }
}

#[pymethods]
impl Verifier {
    /// Build a verifier from a config `dict`, a JSON string, or the path of a
    /// JSON (or, on Python 3.11+, TOML) config file. Fetches every remote
    /// issuer's keys before returning, with the GIL released.
    #[new]
    fn new(py: Python<'_>, config: &Bound<'_, PyAny>) -> PyResult<Verifier> {
        logbridge::sync_log_level(py)?;
        let config = load_config(py, config)?;
        let engine = detached(py, move || jwtwarden::Verifier::new(config))?;
        Ok(Verifier {
            inner: ArcSwapOption::from_pointee(engine),
        })
    }

    /// Verify `token` and return its claims (a read-only mapping).
    #[pyo3(signature = (token, *, issuer=None, fresh=false))]
    fn verify<'py>(
        &self,
        py: Python<'py>,
        token: TokenArg<'_>,
        issuer: Option<PyBackedStr>,
        fresh: bool,
    ) -> PyResult<Bound<'py, PyMappingProxy>> {
        let inner = self.inner.load();
        let engine = inner.as_ref().ok_or_else(closed)?;
        let opts = options(issuer.as_ref(), fresh);
        // The hit path of `verify_inner`, cut short when the claims are
        // ready (see there for why a hit keeps the GIL).
        let mut unconverted = None;
        if let Some(claims) = converted_hit(py, engine, &token, &opts, &mut unconverted)? {
            return Ok(claims.into_bound(py));
        }
        let verified = match unconverted {
            Some(hit) => hit,
            None => miss(py, engine, &token, &opts)?,
        };
        self.claims(py, &verified)
    }

    /// Verify `token` and return the claims with where the trust came from.
    #[pyo3(signature = (token, *, issuer=None, fresh=false))]
    fn verify_full(
        &self,
        py: Python<'_>,
        token: TokenArg<'_>,
        issuer: Option<PyBackedStr>,
        fresh: bool,
    ) -> PyResult<VerifiedToken> {
        let verified = self.verify_inner(py, &token, issuer.as_ref(), fresh)?;
        let claims = self.claims(py, &verified)?.unbind();
        Ok(VerifiedToken { claims, verified })
    }

    /// `verify` for asyncio: `await verifier.verify_async(token)`. Answered
    /// on the event loop when the engine decides without a signature check
    /// or a network wait (cache hits, early rejections, remembered unknown
    /// kids); anything else runs `verify` in jwtwarden's own thread pool
    /// (see `jwtwarden._aio`), so the loop never waits on a signature or a
    /// JWKS fetch.
    #[pyo3(signature = (token, *, issuer=None, fresh=false))]
    fn verify_async<'py>(
        slf: &Bound<'py, Self>,
        token: &Bound<'py, PyAny>,
        issuer: Option<&Bound<'py, PyAny>>,
        fresh: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        coroutine(slf, token, issuer, fresh, false)
    }

    /// `verify_full` for asyncio, as `verify_async`.
    #[pyo3(signature = (token, *, issuer=None, fresh=false))]
    fn verify_full_async<'py>(
        slf: &Bound<'py, Self>,
        token: &Bound<'py, PyAny>,
        issuer: Option<&Bound<'py, PyAny>>,
        fresh: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        coroutine(slf, token, issuer, fresh, true)
    }

    /// What `verify` (with `full`, `verify_full`) returns when the engine
    /// decides it without a signature check or a network wait, with the GIL
    /// held (raising if that is a rejection); `None` when only the full path
    /// can tell. The first step of `verify_async`.
    #[pyo3(signature = (token, issuer, fresh, full))]
    fn _verify_without_waiting<'py>(
        &self,
        py: Python<'py>,
        token: TokenArg<'_>,
        issuer: Option<PyBackedStr>,
        fresh: bool,
        full: bool,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let inner = self.inner.load();
        let engine = inner.as_ref().ok_or_else(closed)?;
        let opts = options(issuer.as_ref(), fresh);
        let mut unconverted = None;
        if !full {
            if let Some(claims) = converted_hit(py, engine, &token, &opts, &mut unconverted)? {
                return Ok(Some(claims.into_bound(py).into_any()));
            }
        }
        let verified = match unconverted {
            Some(hit) => hit,
            None => match decided(py, engine, &token, &opts)? {
                Some(verified) => verified,
                None => return Ok(None),
            },
        };
        let claims = self.claims(py, &verified)?;
        if !full {
            return Ok(Some(claims.into_any()));
        }
        let result = VerifiedToken {
            claims: claims.unbind(),
            verified,
        };
        Ok(Some(Bound::new(py, result)?.into_any()))
    }

    /// Revoke every token of `issuer` (as configured, or `"*"` for every
    /// issuer) with this `jti`, until `expires_at` (seconds since the epoch:
    /// the token's `exp`) or for `revocation.max_token_lifetime_secs`.
    /// Returns how far it reached, a `jwtwarden.Propagation`.
    #[pyo3(signature = (jti, *, issuer, expires_at=None))]
    fn revoke_jti<'py>(
        &self,
        py: Python<'py>,
        jti: &str,
        issuer: &str,
        expires_at: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine()?;
        let p = detached(py, || engine.revoke_jti(issuer, jti, expires_at))?;
        propagation(py, p)
    }

    /// Revoke the tokens of `issuer` (or `"*"`) for subject `sub` issued
    /// before `issued_before` (seconds since the epoch; tokens without `iat`
    /// included). Returns a `jwtwarden.Propagation`.
    #[pyo3(signature = (sub, *, issuer, issued_before))]
    fn revoke_subject<'py>(
        &self,
        py: Python<'py>,
        sub: &str,
        issuer: &str,
        issued_before: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine()?;
        let p = detached(py, || engine.revoke_subject(issuer, sub, issued_before))?;
        propagation(py, p)
    }

    /// Stop trusting key `kid` of `issuer` (or `"*"`) now, and ignore it in
    /// later fetches. Returns a `jwtwarden.Propagation`.
    #[pyo3(signature = (kid, *, issuer))]
    fn revoke_kid<'py>(&self, py: Python<'py>, kid: &str, issuer: &str) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine()?;
        let p = detached(py, || engine.revoke_kid(issuer, kid))?;
        propagation(py, p)
    }

    /// Every revocation this process holds and still needs (made here,
    /// replayed from the journal, or received from the fleet feed), as
    /// `dict`s with `kind`, `issuer`, `value`, `issued_before` and `until_ms`.
    fn revocations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let engine = self.engine()?;
        let held = detached(py, || Ok(engine.revocations()))?;
        let list = PyList::empty(py);
        for r in &held {
            let d = PyDict::new(py);
            d.set_item("kind", r.kind.as_str())?;
            d.set_item("issuer", &r.issuer)?;
            d.set_item("value", &r.value)?;
            d.set_item("issued_before", r.issued_before)?;
            d.set_item("until_ms", r.until_ms)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// Invalidate every cached result; returns the new policy version.
    fn bump_policy_version(&self, py: Python<'_>) -> PyResult<u64> {
        let engine = self.engine()?;
        Ok(detached(py, || Ok(engine.bump_policy_version()))?)
    }

    /// Fetch `issuer`'s keys now (coalesced with a fetch already in flight).
    fn refresh_issuer(&self, py: Python<'_>, issuer: &str) -> PyResult<()> {
        let engine = self.engine()?;
        Ok(detached(py, || engine.refresh_issuer(issuer))?)
    }

    /// Verify a verification assertion an edge (an issuer of kind
    /// `"assertion"` in the configuration) minted for the request this
    /// service received: `method` (exact, `"GET"`) and `path` (the request
    /// target; the query is dropped, the path normalised as the edge did).
    /// `fresh`: the route demands a fresh verification, met by inherited
    /// trust only within the edge's `fresh_within_secs`. Raises the
    /// engine's errors (`RevokedTokenError` for a replay, `InvalidAudienceError`
    /// for another method, path or service, `UnknownIssuerError` for an
    /// ordinary token). `verify` never accepts an assertion.
    #[pyo3(signature = (assertion, *, method, path, fresh=false))]
    fn verify_assertion(
        &self,
        py: Python<'_>,
        assertion: PyBackedStr,
        method: PyBackedStr,
        path: PyBackedStr,
        fresh: bool,
    ) -> PyResult<crate::assertion::Inherited> {
        let engine = self.engine()?;
        let request = jwtwarden::assertion::Request {
            method: &method,
            path: &path,
        };
        let inherited = detached(py, || engine.verify_assertion(&assertion, &request, fresh))?;
        crate::assertion::Inherited::new(py, inherited)
    }

    /// Add an issuer or an issuer template while in use: `entry` (a dict or
    /// a JSON string) is one entry of the configuration's `issuers`, or of
    /// `issuer_templates` when it has `tenant_pattern`. Validated as the
    /// constructor validates (`InvalidConfigError` naming the field).
    fn add_issuer(&self, py: Python<'_>, entry: &Bound<'_, PyAny>) -> PyResult<()> {
        let entry = load_entry(py, entry)?;
        let engine = self.engine()?;
        Ok(detached(py, move || engine.add_issuer(entry))?)
    }

    /// Remove the issuer or issuer template configured as `issuer`: its
    /// tokens, cached ones included, are refused once this returns.
    fn remove_issuer(&self, py: Python<'_>, issuer: &str) -> PyResult<()> {
        let engine = self.engine()?;
        Ok(detached(py, || engine.remove_issuer(issuer))?)
    }

    /// Replace the issuers and issuer templates with those of `config` (as
    /// the constructor takes it); unchanged ones keep their keys, cached
    /// results and revocations. Other fields must not change.
    fn reload(&self, py: Python<'_>, config: &Bound<'_, PyAny>) -> PyResult<()> {
        let config = load_config(py, config)?;
        let engine = self.engine()?;
        Ok(detached(py, move || engine.reload(config))?)
    }

    /// Run scheduled refreshes that are due, on this thread (for
    /// `background_refresh: false`).
    fn run_due_refreshes(&self, py: Python<'_>) -> PyResult<()> {
        let engine = self.engine()?;
        Ok(detached(py, || {
            engine.run_due_refreshes();
            Ok(())
        })?)
    }

    /// The configured issuer identifiers, in configuration order.
    fn issuers(&self) -> PyResult<Vec<String>> {
        Ok(self.engine()?.issuers())
    }

    /// `"fresh"`, `"stale"` (serving last known good keys) or `"failed_closed"`.
    fn issuer_health(&self, py: Python<'_>, issuer: &str) -> PyResult<&'static str> {
        let engine = self.engine()?;
        Ok(detached(py, || engine.issuer_health(issuer))?.as_str())
    }

    /// The fleet revocation feed's state: `"connected"`, `"lagging"` or
    /// `"failed_closed"`; `None` without `revocation.redis`. Its counters are
    /// in `metrics()["revocations"]["fleet"]`.
    fn revocation_feed_state(&self) -> PyResult<Option<&'static str>> {
        Ok(self.engine()?.revocation_feed().map(|f| f.state.as_str()))
    }

    /// A snapshot of every metric, as a `dict`.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine()?;
        let snapshot = detached(py, || {
            serde_json::to_value(engine.metrics()).map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))
        })?;
        convert::value_to_py(py, &snapshot)
    }

    /// The metrics in the Prometheus text exposition format.
    fn prometheus(&self, py: Python<'_>) -> PyResult<String> {
        let engine = self.engine()?;
        Ok(detached(py, || Ok(engine.prometheus()))?)
    }

    /// Stop the refresher and release the engine. Idempotent; later calls
    /// (other than `close`) raise `InvalidArgumentError`.
    fn close(&self, py: Python<'_>) {
        let engine = self.inner.swap(None);
        if let Some(engine) = engine {
            py.detach(move || drop(engine));
        }
    }

    /// True once `close()` has been called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.load().is_none()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(&self, py: Python<'_>, _exc_info: &Bound<'_, pyo3::types::PyTuple>) {
        self.close(py);
    }

    fn __repr__(&self) -> String {
        match &*self.inner.load() {
            Some(engine) => format!("<jwtwarden.Verifier issuers={:?}>", engine.issuers()),
            None => "<jwtwarden.Verifier closed>".into(),
        }
    }
}

/// A successful verification: the claims, and whether the trust was fresh
/// (signature checked during this call) or reused from the cache.
#[pyclass(frozen, module = "jwtwarden._native")]
pub(crate) struct VerifiedToken {
    pub(crate) claims: Py<PyMappingProxy>,
    pub(crate) verified: Verified,
}

#[pymethods]
impl VerifiedToken {
    /// The verified claims (a read-only mapping).
    #[getter]
    fn claims(&self, py: Python<'_>) -> Py<PyMappingProxy> {
        self.claims.clone_ref(py)
    }

    /// The configured issuer the token was verified for.
    #[getter]
    fn issuer(&self) -> &str {
        self.verified.issuer()
    }

    /// The `kid` of the verifying key, if the token had one.
    #[getter]
    fn kid(&self) -> Option<&str> {
        self.verified.kid()
    }

    /// The signature algorithm, e.g. `"RS256"`.
    #[getter]
    fn alg(&self) -> &'static str {
        self.verified.alg().as_str()
    }

    /// True if served from the cache (trust reused), False if the signature
    /// was checked during this call.
    #[getter]
    fn cached(&self) -> bool {
        self.verified.cached()
    }

    /// When the signature was checked, in seconds since the epoch (a float,
    /// like `time.time()`); for a cache hit, the original verification.
    #[getter]
    fn verified_at(&self) -> f64 {
        self.verified.verified_at_ms() as f64 / 1000.0
    }

    /// Same as `verified_at`, in integer milliseconds.
    #[getter]
    fn verified_at_ms(&self) -> u64 {
        self.verified.verified_at_ms()
    }

    /// The token's `exp`, in seconds since the epoch.
    #[getter]
    fn expires_at(&self) -> u64 {
        self.verified.expires_at()
    }

    fn __repr__(&self) -> String {
        format!(
            "<jwtwarden.VerifiedToken issuer={:?} kid={} alg={} cached={} verified_at_ms={}>",
            self.verified.issuer(),
            self.verified
                .kid()
                .map_or_else(|| "None".to_string(), |k| format!("{k:?}")),
            self.verified.alg().as_str(),
            if self.verified.cached() { "True" } else { "False" },
            self.verified.verified_at_ms()
        )
    }
}

static AIO_VERIFY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The coroutine `jwtwarden._aio.verify(verifier, token, issuer, fresh, full)`.
fn coroutine<'py>(
    verifier: &Bound<'py, Verifier>,
    token: &Bound<'py, PyAny>,
    issuer: Option<&Bound<'py, PyAny>>,
    fresh: bool,
    full: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let py = verifier.py();
    let verify = AIO_VERIFY.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py.import("jwtwarden._aio")?.getattr("verify")?.unbind())
    })?;
    verify.bind(py).call1((verifier, token, issuer, fresh, full))
}

fn invalid_config(message: impl Into<String>) -> PyErr {
    CoreError(Error::new(ErrorKind::InvalidConfig, message)).into()
}

/// A config from a `dict`, a JSON `str`/`bytes`, or a file path.
pub(crate) fn load_config(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Config> {
    if let Ok(dict) = obj.cast::<PyDict>() {
        let value = convert::py_to_value(dict.as_any()).map_err(|e| invalid_config(e.value(py).to_string()))?;
        return Ok(Config::from_value(value).map_err(CoreError)?);
    }
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_cow()?;
        if s.trim_start().starts_with('{') {
            return Ok(Config::from_json(&s).map_err(CoreError)?);
        }
        return load_config_file(&s);
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        let text =
            std::str::from_utf8(b.as_bytes()).map_err(|e| invalid_config(format!("config is not UTF-8: {e}")))?;
        return Ok(Config::from_json(text).map_err(CoreError)?);
    }
    if obj.hasattr("__fspath__")? {
        let path: String = py.import("os")?.call_method1("fspath", (obj,))?.extract()?;
        return load_config_file(&path);
    }
    Err(PyTypeError::new_err(format!(
        "config must be a dict, a JSON string or a file path, not {}",
        obj.get_type().name()?
    )))
}

/// One entry of `issuers` or `issuer_templates`, from a dict or a JSON string.
fn load_entry(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<jwtwarden::IssuerEntry> {
    let text = if let Ok(dict) = obj.cast::<PyDict>() {
        let value = convert::py_to_value(dict.as_any()).map_err(|e| invalid_config(e.value(py).to_string()))?;
        value.to_string()
    } else if let Ok(s) = obj.cast::<PyString>() {
        s.to_cow()?.into_owned()
    } else {
        return Err(PyTypeError::new_err(format!(
            "entry must be a dict or a JSON string, not {}",
            obj.get_type().name()?
        )));
    };
    Ok(jwtwarden::IssuerEntry::from_json(&text).map_err(CoreError)?)
}

fn load_config_file(path: &str) -> PyResult<Config> {
    // The core's one rule for files (JSON or TOML), as in the CLI and C.
    Ok(Config::from_path(path).map_err(CoreError)?)
}

static PROPAGATION: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `p` as the `jwtwarden.Propagation` member with the same name.
fn propagation(py: Python<'_>, p: jwtwarden::Propagation) -> PyResult<Bound<'_, PyAny>> {
    let cls = PROPAGATION.get_or_try_init(py, || -> PyResult<Py<PyType>> {
        let module = py.import("jwtwarden._revocation")?;
        Ok(module.getattr("Propagation")?.cast_into::<PyType>()?.unbind())
    })?;
    cls.bind(py).call1((p.as_str(),))
}
