"""The exceptions jwtwarden raises.

One base class, :class:`JwtWardenError`; one class per *category* (the
hundreds digit of the code), so you can catch broadly; and one class per
*kind*, carrying the kind's stable numeric ``code`` (the same number in Rust,
C, Go and Python), so you can catch narrowly.

Beside the categories, PyJWT's hierarchy is mirrored where the names overlap,
so ``except jwt.InvalidTokenError:`` keeps its meaning after ``import
jwtwarden as jwt``-style migrations:

* :class:`PyJWTError` is the root of everything jwtwarden raises (it is the
  base of :class:`JwtWardenError`), as in PyJWT.
* :class:`InvalidTokenError` is the base of every *token rejection*: every
  malformed (1xx), verification (2xx) and policy (3xx) kind.
* :class:`DecodeError` (under ``InvalidTokenError``) is the base of the
  malformed kinds PyJWT reports as ``DecodeError`` (all but
  :class:`InvalidAlgorithmError`), and of :class:`InvalidSignatureError`,
  exactly as in PyJWT. The malformed kind with code 101 (not three segments)
  is :class:`InvalidSegmentsError`.
* :class:`ExpiredSignatureError`, :class:`ImmatureSignatureError`,
  :class:`InvalidIssuerError` (and its subclass :class:`UnknownIssuerError`),
  :class:`InvalidAudienceError`, :class:`MissingRequiredClaimError` and
  :class:`InvalidAlgorithmError` are ``InvalidTokenError`` subclasses, as in
  PyJWT.
* :class:`InvalidIssuedAtError` is an ``InvalidTokenError`` subclass, as in
  PyJWT, with no code of its own: an ``iat`` that is not a valid
  NumericDate (a string, negative, not finite, past year 9999) is the
  engine's ``invalid_payload`` (104), raised as
  :class:`InvalidIssuedAtPayloadError`, which is both an
  :class:`InvalidPayloadError` and an ``InvalidIssuedAtError``. An ``iat``
  in the future is :class:`ImmatureSignatureError`, as in PyJWT.

**Keys unavailable is not a token rejection.** :class:`KeysUnavailableError`
(4xx) means the identity provider's keys cannot be trusted *right now* (an
outage, or keys older than ``max_stale``), or this process has lost the
fleet's revocation feed for longer than ``revocation.redis.max_stale_secs``
(:class:`RevocationsStaleError`): the token may be perfectly good.
It is therefore *not* an ``InvalidTokenError`` (like PyJWT's
``PyJWKClientConnectionError``, it is only a ``PyJWTError``), so code that
answers ``InvalidTokenError`` with 401 does not tell clients to throw away
good tokens during an outage. Usage (5xx) and internal (9xx) errors are not
``InvalidTokenError`` either.

PyJWT names *not* exported, because nothing here would raise them (an
``except`` clause naming a class nothing raises is silently dead):
``InvalidKeyError`` (keys come from the issuer's JWKS, never from the caller),
``InvalidSubjectError``, ``InvalidJTIError`` (wrong claim types are
:class:`InvalidPayloadError`), and the ``PyJWK*`` client errors (a JWKS that
cannot be fetched is :class:`KeysUnavailableError`; an unknown ``kid`` is
:class:`UnknownKidError`).

::

    PyJWTError
    └── JwtWardenError                       code, kind, category, message
        ├── MalformedTokenError    1xx  TokenTooLargeError, InvalidSegmentsError, InvalidBase64Error, ...
        ├── VerificationError      2xx  InvalidSignatureError, UnknownKidError, ...
        ├── PolicyError            3xx  ExpiredSignatureError, InvalidAudienceError, RevokedTokenError, SuspendedTokenError, ...
        ├── KeysUnavailableError   4xx  NoUsableKeysError, KeysStaleError, RevocationsStaleError, StatusListUnavailableError, StatusListStaleError, TenantBudgetExhaustedError, TenantUnavailableError
        ├── UsageError             5xx  InvalidConfigError, InvalidArgumentError, RevocationNotPersistedError, ...
        ├── InternalError          9xx  UnexpectedError, PanicError
        └── InvalidTokenError           every 1xx, 2xx and 3xx kind (PyJWT's catch-all)
            ├── DecodeError             every 1xx kind but InvalidAlgorithmError; InvalidSignatureError
            └── InvalidIssuedAtError    InvalidIssuedAtPayloadError (invalid_payload, 104, about iat)

Every instance has ``code`` (int), ``kind`` (str, e.g. ``"expired"``),
``category`` (str, e.g. ``"policy"``) and ``message`` (human-readable; may
change between versions, never contains a token).
"""

from __future__ import annotations

from typing import ClassVar, Optional

__all__ = [
    "PyJWTError",
    "JwtWardenError",
    "InvalidTokenError",
    "DecodeError",
    "InvalidIssuedAtError",
    "InvalidIssuedAtPayloadError",
    "MalformedTokenError",
    "VerificationError",
    "PolicyError",
    "KeysUnavailableError",
    "UsageError",
    "InternalError",
    "TokenTooLargeError",
    "InvalidSegmentsError",
    "InvalidBase64Error",
    "InvalidHeaderError",
    "InvalidPayloadError",
    "InvalidAlgorithmError",
    "UnsupportedCriticalError",
    "InvalidSignatureError",
    "UnknownKidError",
    "MissingKidError",
    "KeyAlgorithmMismatchError",
    "ExpiredSignatureError",
    "ImmatureSignatureError",
    "InvalidIssuerError",
    "UnknownIssuerError",
    "InvalidAudienceError",
    "MissingRequiredClaimError",
    "InvalidTypeError",
    "RevokedTokenError",
    "KeyRevokedError",
    "TokenLifetimeExceededError",
    "SuspendedTokenError",
    "StatusUriNotAllowedError",
    "StatusIndexOutOfRangeError",
    "StatusNotValidError",
    "StatusMissingError",
    "TenantNotAllowedError",
    "NoUsableKeysError",
    "KeysStaleError",
    "RevocationsStaleError",
    "StatusListUnavailableError",
    "StatusListStaleError",
    "TenantBudgetExhaustedError",
    "TenantUnavailableError",
    "InvalidConfigError",
    "InvalidArgumentError",
    "RevocationListFullError",
    "RevocationNotPersistedError",
    "UnexpectedError",
    "PanicError",
]


class PyJWTError(Exception):
    """Root of every exception jwtwarden raises (PyJWT's name for its root)."""


class JwtWardenError(PyJWTError):
    """Base class of every error jwtwarden raises, with ``code``, ``kind``, ``category`` and ``message``.

    ``code``, ``kind`` and ``category`` are ``None`` only on the abstract
    classes (this one, the category classes' ``code``/``kind``, and
    :class:`InvalidTokenError`/:class:`DecodeError`); every raised exception
    is a kind class, where they are set (and typed as ``int``/``str``).
    """

    #: Stable numeric code of the kind (``None`` only on the abstract classes).
    code: ClassVar[Optional[int]] = None
    #: Stable snake_case name of the kind, e.g. ``"expired"``.
    kind: ClassVar[Optional[str]] = None
    #: ``"malformed"``, ``"verification"``, ``"policy"``, ``"keys_unavailable"``,
    #: ``"usage"`` or ``"internal"``.
    category: ClassVar[Optional[str]] = None

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        #: Human-readable detail; match on the class or ``code``, not on this.
        self.message = message

    def __str__(self) -> str:
        if self.code is None:
            return self.message
        return f"{self.kind} ({self.code}): {self.message}"


class InvalidTokenError(JwtWardenError):
    """Any token rejection: every malformed, verification and policy kind (PyJWT's catch-all).

    Not raised for :class:`KeysUnavailableError` (the token may be fine), nor
    for usage or internal errors.
    """


class DecodeError(InvalidTokenError):
    """The token cannot be decoded, or its signature does not verify (PyJWT's ``DecodeError``).

    The base of every malformed kind except :class:`InvalidAlgorithmError`,
    and of :class:`InvalidSignatureError`, as in PyJWT. To catch exactly the
    malformed kinds, catch :class:`MalformedTokenError`.
    """


class InvalidIssuedAtError(InvalidTokenError):
    """The ``iat`` claim is not a valid NumericDate (PyJWT's name and place:
    an ``InvalidTokenError``).

    No code of its own: what is raised is :class:`InvalidIssuedAtPayloadError`
    (``invalid_payload``, 104). An ``iat`` in the future is
    :class:`ImmatureSignatureError`, as in PyJWT.
    """


# --- categories -------------------------------------------------------------


class MalformedTokenError(JwtWardenError):
    """1xx: the input is not a well-formed token we accept. No key was fetched."""

    category: ClassVar[str] = "malformed"


class VerificationError(JwtWardenError):
    """2xx: the signature could not be verified (bad signature, unknown key)."""

    category: ClassVar[str] = "verification"


class PolicyError(JwtWardenError):
    """3xx: a valid signature, but the token is not acceptable (expired, audience, revoked...)."""

    category: ClassVar[str] = "policy"


class KeysUnavailableError(JwtWardenError):
    """4xx: the issuer's keys (or the fleet's revocations) cannot be trusted right now; the token may be fine."""

    category: ClassVar[str] = "keys_unavailable"


class UsageError(JwtWardenError):
    """5xx: the configuration or the call is at fault."""

    category: ClassVar[str] = "usage"


class InternalError(JwtWardenError):
    """9xx: a bug in jwtwarden. Please report it."""

    category: ClassVar[str] = "internal"


# --- 1xx malformed ----------------------------------------------------------


class TokenTooLargeError(MalformedTokenError, DecodeError):
    """The token is larger than ``max_token_bytes``."""

    code: ClassVar[int] = 100
    kind: ClassVar[str] = "token_too_large"


class InvalidSegmentsError(MalformedTokenError, DecodeError):
    """Not three dot-separated segments, or an empty/non-ASCII segment."""

    code: ClassVar[int] = 101
    kind: ClassVar[str] = "malformed_token"


class InvalidBase64Error(MalformedTokenError, DecodeError):
    """A segment is not valid unpadded base64url."""

    code: ClassVar[int] = 102
    kind: ClassVar[str] = "invalid_base64"


class InvalidHeaderError(MalformedTokenError, DecodeError):
    """The header is not a JSON object with a string ``alg``."""

    code: ClassVar[int] = 103
    kind: ClassVar[str] = "invalid_header"


class InvalidPayloadError(MalformedTokenError, DecodeError):
    """The payload is not a JSON object, or a registered claim has the wrong type."""

    code: ClassVar[int] = 104
    kind: ClassVar[str] = "invalid_payload"


class InvalidIssuedAtPayloadError(InvalidPayloadError, InvalidIssuedAtError):
    """``invalid_payload`` (104) because of ``iat``: not a number, negative, not
    finite, or after 9999-12-31. An :class:`InvalidPayloadError` with the same
    ``code`` and ``kind``, and PyJWT's :class:`InvalidIssuedAtError`."""


class InvalidAlgorithmError(MalformedTokenError, InvalidTokenError):
    """``alg`` is ``none``, unknown, or not allowed for the issuer (PyJWT name)."""

    code: ClassVar[int] = 105
    kind: ClassVar[str] = "algorithm_not_allowed"


class UnsupportedCriticalError(MalformedTokenError, DecodeError):
    """The header lists a ``crit`` extension jwtwarden does not understand."""

    code: ClassVar[int] = 106
    kind: ClassVar[str] = "unsupported_critical"


# --- 2xx verification -------------------------------------------------------


class InvalidSignatureError(VerificationError, DecodeError):
    """The signature does not verify with the selected key (PyJWT name)."""

    code: ClassVar[int] = 200
    kind: ClassVar[str] = "invalid_signature"


class UnknownKidError(VerificationError, InvalidTokenError):
    """No key with the token's ``kid``, even after the one allowed refresh."""

    code: ClassVar[int] = 201
    kind: ClassVar[str] = "unknown_kid"


class MissingKidError(VerificationError, InvalidTokenError):
    """The token has no ``kid`` and the issuer has no single key that fits its ``alg``."""

    code: ClassVar[int] = 202
    kind: ClassVar[str] = "missing_kid"


class KeyAlgorithmMismatchError(VerificationError, InvalidTokenError):
    """A key with that ``kid`` exists but cannot be used with the token's ``alg``."""

    code: ClassVar[int] = 203
    kind: ClassVar[str] = "key_algorithm_mismatch"


# --- 3xx policy -------------------------------------------------------------


class ExpiredSignatureError(PolicyError, InvalidTokenError):
    """``exp`` is in the past (beyond leeway) (PyJWT name). A missing ``exp`` is
    :class:`MissingRequiredClaimError`."""

    code: ClassVar[int] = 300
    kind: ClassVar[str] = "expired"


class ImmatureSignatureError(PolicyError, InvalidTokenError):
    """``nbf`` (or ``iat``) is in the future beyond leeway (PyJWT name)."""

    code: ClassVar[int] = 301
    kind: ClassVar[str] = "not_yet_valid"


class InvalidIssuerError(PolicyError, InvalidTokenError):
    """The ``iss`` claim does not match the issuer the token was verified for (PyJWT name)."""

    code: ClassVar[int] = 302
    kind: ClassVar[str] = "invalid_issuer"


class UnknownIssuerError(InvalidIssuerError):
    """No configured issuer matches the token (or the one the caller named).

    A subclass of :class:`InvalidIssuerError`, so ``except InvalidIssuerError`` catches
    every issuer mismatch, as it does with PyJWT.
    """

    code: ClassVar[int] = 303
    kind: ClassVar[str] = "unknown_issuer"


class InvalidAudienceError(PolicyError, InvalidTokenError):
    """The ``aud`` claim does not contain an accepted audience (PyJWT name)."""

    code: ClassVar[int] = 304
    kind: ClassVar[str] = "invalid_audience"


class MissingRequiredClaimError(PolicyError, InvalidTokenError):
    """A claim the rules need is missing: ``exp``, ``iss``, ``aud`` (unless any
    audience is allowed) or one in ``required_claims`` (PyJWT name)."""

    code: ClassVar[int] = 305
    kind: ClassVar[str] = "missing_required_claim"


class InvalidTypeError(PolicyError, InvalidTokenError):
    """The header ``typ`` does not match the issuer's required type."""

    code: ClassVar[int] = 306
    kind: ClassVar[str] = "invalid_type"


class RevokedTokenError(PolicyError, InvalidTokenError):
    """The token (its ``jti``, or its subject before a time) has been revoked."""

    code: ClassVar[int] = 307
    kind: ClassVar[str] = "revoked"


class KeyRevokedError(PolicyError, InvalidTokenError):
    """The key that signed the token has been revoked with ``revoke_kid``."""

    code: ClassVar[int] = 308
    kind: ClassVar[str] = "key_revoked"


class TokenLifetimeExceededError(PolicyError, InvalidTokenError):
    """The token lives longer than the issuer's ``max_token_lifetime_secs`` allows.

    The lifetime is ``exp - iat``, or ``exp - now`` for a token without ``iat``.
    """

    code: ClassVar[int] = 309
    kind: ClassVar[str] = "token_lifetime_exceeded"


class SuspendedTokenError(PolicyError, InvalidTokenError):
    """The token's entry in its issuer's Token Status List is SUSPENDED.

    (INVALID in the list is :class:`RevokedTokenError`.)
    """

    code: ClassVar[int] = 310
    kind: ClassVar[str] = "suspended"


class StatusUriNotAllowedError(PolicyError, InvalidTokenError):
    """The token's ``status.status_list.uri`` is not under its issuer's
    ``status_list.allowed_uris``: its status cannot be checked, and nothing
    was fetched."""

    code: ClassVar[int] = 311
    kind: ClassVar[str] = "status_uri_not_allowed"


class StatusIndexOutOfRangeError(PolicyError, InvalidTokenError):
    """The token's ``status.status_list.idx`` is beyond the end of its list."""

    code: ClassVar[int] = 312
    kind: ClassVar[str] = "status_index_out_of_range"


class StatusNotValidError(PolicyError, InvalidTokenError):
    """The token's status is an application-specific value its issuer's
    ``status_list.valid_statuses`` does not name."""

    code: ClassVar[int] = 313
    kind: ClassVar[str] = "status_not_valid"


class StatusMissingError(PolicyError, InvalidTokenError):
    """The token has no ``status`` claim and its issuer's ``status_list.require_status`` is true."""

    code: ClassVar[int] = 314
    kind: ClassVar[str] = "status_missing"


class TenantNotAllowedError(PolicyError, InvalidTokenError):
    """The token's ``iss`` fits an issuer template, but its tenant is not in the
    template's ``tenants`` allowlist. Nothing was fetched."""

    code: ClassVar[int] = 315
    kind: ClassVar[str] = "tenant_not_allowed"


# --- 4xx keys unavailable ---------------------------------------------------


class NoUsableKeysError(KeysUnavailableError):
    """The issuer has no usable keys: never fetched successfully, or the fetch failed."""

    code: ClassVar[int] = 400
    kind: ClassVar[str] = "keys_unavailable"


class KeysStaleError(KeysUnavailableError):
    """The issuer's keys are older than ``max_stale``: failing closed."""

    code: ClassVar[int] = 401
    kind: ClassVar[str] = "keys_stale"


class RevocationsStaleError(KeysUnavailableError):
    """The fleet revocation feed (``revocation.redis``) has been unreachable for
    longer than ``max_stale_secs``: failing closed, since revocations made in
    other processes may be missing here. It recovers by itself when Redis is
    back (or set ``serve_when_stale`` to keep serving)."""

    code: ClassVar[int] = 402
    kind: ClassVar[str] = "revocations_stale"


class StatusListUnavailableError(KeysUnavailableError):
    """The Token Status List the token references could not be fetched or
    verified (never fetched, invalid, too large, or over ``max_lists``)."""

    code: ClassVar[int] = 403
    kind: ClassVar[str] = "status_list_unavailable"


class StatusListStaleError(KeysUnavailableError):
    """The Token Status List is past ``max_stale_secs`` or its ``exp``: failing closed."""

    code: ClassVar[int] = 404
    kind: ClassVar[str] = "status_list_stale"


class TenantBudgetExhaustedError(KeysUnavailableError):
    """A new tenant of an issuer template, past its
    ``new_tenant_fetches_per_minute``: refused without a fetch."""

    code: ClassVar[int] = 405
    kind: ClassVar[str] = "tenant_budget_exhausted"


class TenantUnavailableError(KeysUnavailableError):
    """A tenant of an issuer template whose discovery or first key fetch
    failed recently: refused without a fetch for a minute."""

    code: ClassVar[int] = 406
    kind: ClassVar[str] = "tenant_unavailable"


# --- 5xx usage ----------------------------------------------------------------


class InvalidConfigError(UsageError, ValueError):
    """The configuration is invalid; the message names the field. Also a ``ValueError``."""

    code: ClassVar[int] = 500
    kind: ClassVar[str] = "invalid_config"


class InvalidArgumentError(UsageError, ValueError):
    """An argument is invalid, or the verifier is closed. Also a ``ValueError``."""

    code: ClassVar[int] = 501
    kind: ClassVar[str] = "invalid_argument"


class RevocationListFullError(UsageError):
    """The revocation lists hold ``revocation.max_entries`` entries; nothing was dropped."""

    code: ClassVar[int] = 502
    kind: ClassVar[str] = "revocation_list_full"


class RevocationNotPersistedError(UsageError):
    """The revocation is in force in this process, but could not be written to
    the journal in ``state_dir``, so it would not survive a restart."""

    code: ClassVar[int] = 510
    kind: ClassVar[str] = "revocation_not_persisted"


# --- 9xx internal -------------------------------------------------------------


class UnexpectedError(InternalError):
    """An unexpected internal error."""

    code: ClassVar[int] = 900
    kind: ClassVar[str] = "internal"


class PanicError(InternalError):
    """The Rust engine panicked; the panic was caught at the boundary.

    Code 901 belongs to the boundaries (this package, the C ABI), not to the
    engine: ``jwtwarden._native.boundary_kinds()`` lists it. The C ABI's other
    boundary code, ``null_parameter`` (504), cannot happen in Python.
    """

    code: ClassVar[int] = 901
    kind: ClassVar[str] = "panic"


_KIND_CLASSES: tuple[type[JwtWardenError], ...] = (
    TokenTooLargeError,
    InvalidSegmentsError,
    InvalidBase64Error,
    InvalidHeaderError,
    InvalidPayloadError,
    InvalidAlgorithmError,
    UnsupportedCriticalError,
    InvalidSignatureError,
    UnknownKidError,
    MissingKidError,
    KeyAlgorithmMismatchError,
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidIssuerError,
    UnknownIssuerError,
    InvalidAudienceError,
    MissingRequiredClaimError,
    InvalidTypeError,
    RevokedTokenError,
    KeyRevokedError,
    TokenLifetimeExceededError,
    SuspendedTokenError,
    StatusUriNotAllowedError,
    StatusIndexOutOfRangeError,
    StatusNotValidError,
    StatusMissingError,
    TenantNotAllowedError,
    NoUsableKeysError,
    KeysStaleError,
    RevocationsStaleError,
    StatusListUnavailableError,
    StatusListStaleError,
    TenantBudgetExhaustedError,
    TenantUnavailableError,
    InvalidConfigError,
    InvalidArgumentError,
    RevocationListFullError,
    RevocationNotPersistedError,
    UnexpectedError,
    PanicError,
)

# Looked up by the native module to raise the right class for an engine error.
_BY_CODE: dict[int, type[JwtWardenError]] = {cls.code: cls for cls in _KIND_CLASSES if cls.code is not None}
# An engine error of ``code`` whose message starts with the claim's name is
# raised as this class (a subclass of the kind's class, same code and kind):
# the engine's claim checks name the claim first ("iat must be a number").
_BY_CLAIM: dict[tuple[int, str], type[JwtWardenError]] = {
    (InvalidPayloadError.code, "iat"): InvalidIssuedAtPayloadError,
}
_BY_CATEGORY: dict[str, type[JwtWardenError]] = {
    cls.category: cls
    for cls in (MalformedTokenError, VerificationError, PolicyError, KeysUnavailableError, UsageError, InternalError)
    if cls.category is not None
}
