"""The exceptions jwtwarden raises.

One base class, :class:`JwtWardenError`; one class per *category* (the
hundreds digit of the code), so you can catch broadly; and one class per
*kind*, carrying the kind's stable numeric ``code`` (the same number in Rust,
C, Go and Python), so you can catch narrowly. Where PyJWT has a class with the
same meaning, the name is the same (``ExpiredSignatureError``,
``InvalidAudienceError``, ...), but the hierarchy is jwtwarden's: catch
:class:`MalformedTokenError` for every malformed-token kind, not
``DecodeError``.

::

    JwtWardenError
    ├── MalformedTokenError    1xx  TokenTooLargeError, DecodeError, InvalidBase64Error, ...
    ├── VerificationError      2xx  InvalidSignatureError, UnknownKidError, ...
    ├── PolicyError            3xx  ExpiredSignatureError, InvalidAudienceError, RevokedTokenError, ...
    ├── KeysUnavailableError   4xx  NoUsableKeysError, KeysStaleError
    ├── UsageError             5xx  InvalidConfigError, InvalidArgumentError, ...
    └── InternalError          9xx  UnexpectedError, PanicError

Every instance has ``code`` (int), ``kind`` (str, e.g. ``"expired"``),
``category`` (str, e.g. ``"policy"``) and ``message`` (human-readable; may
change between versions, never contains a token).
"""

from __future__ import annotations

from typing import ClassVar, Optional

__all__ = [
    "JwtWardenError",
    "MalformedTokenError",
    "VerificationError",
    "PolicyError",
    "KeysUnavailableError",
    "UsageError",
    "InternalError",
    "TokenTooLargeError",
    "DecodeError",
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
    "NoUsableKeysError",
    "KeysStaleError",
    "InvalidConfigError",
    "InvalidArgumentError",
    "RevocationListFullError",
    "BufferTooSmallError",
    "NullParameterError",
    "UnexpectedError",
    "PanicError",
]


class JwtWardenError(Exception):
    """Base class of every error jwtwarden raises."""

    #: Stable numeric code of the kind (``None`` only on the base and category classes).
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


# --- categories -------------------------------------------------------------


class MalformedTokenError(JwtWardenError):
    """1xx: the input is not a well-formed token we accept. No key was fetched."""

    category = "malformed"


class VerificationError(JwtWardenError):
    """2xx: the signature could not be verified (bad signature, unknown key)."""

    category = "verification"


class PolicyError(JwtWardenError):
    """3xx: a valid signature, but the token is not acceptable (expired, audience, revoked...)."""

    category = "policy"


class KeysUnavailableError(JwtWardenError):
    """4xx: the issuer's keys cannot be trusted right now; the token may be fine."""

    category = "keys_unavailable"


class UsageError(JwtWardenError):
    """5xx: the configuration or the call is at fault."""

    category = "usage"


class InternalError(JwtWardenError):
    """9xx: a bug in jwtwarden. Please report it."""

    category = "internal"


# --- 1xx malformed ----------------------------------------------------------


class TokenTooLargeError(MalformedTokenError):
    """The token is larger than ``max_token_bytes``."""

    code = 100
    kind = "token_too_large"


class DecodeError(MalformedTokenError):
    """Not three dot-separated segments, or an empty/non-ASCII segment (PyJWT name)."""

    code = 101
    kind = "malformed_token"


class InvalidBase64Error(MalformedTokenError):
    """A segment is not valid unpadded base64url."""

    code = 102
    kind = "invalid_base64"


class InvalidHeaderError(MalformedTokenError):
    """The header is not a JSON object with a string ``alg``."""

    code = 103
    kind = "invalid_header"


class InvalidPayloadError(MalformedTokenError):
    """The payload is not a JSON object, or a registered claim has the wrong type."""

    code = 104
    kind = "invalid_payload"


class InvalidAlgorithmError(MalformedTokenError):
    """``alg`` is ``none``, unknown, or not allowed for the issuer (PyJWT name)."""

    code = 105
    kind = "algorithm_not_allowed"


class UnsupportedCriticalError(MalformedTokenError):
    """The header lists a ``crit`` extension jwtwarden does not understand."""

    code = 106
    kind = "unsupported_critical"


# --- 2xx verification -------------------------------------------------------


class InvalidSignatureError(VerificationError):
    """The signature does not verify with the selected key (PyJWT name)."""

    code = 200
    kind = "invalid_signature"


class UnknownKidError(VerificationError):
    """No key with the token's ``kid``, even after the one allowed refresh."""

    code = 201
    kind = "unknown_kid"


class MissingKidError(VerificationError):
    """The token has no ``kid`` and the issuer has no single key that fits its ``alg``."""

    code = 202
    kind = "missing_kid"


class KeyAlgorithmMismatchError(VerificationError):
    """A key with that ``kid`` exists but cannot be used with the token's ``alg``."""

    code = 203
    kind = "key_algorithm_mismatch"


# --- 3xx policy -------------------------------------------------------------


class ExpiredSignatureError(PolicyError):
    """``exp`` is in the past (beyond leeway), or missing (PyJWT name)."""

    code = 300
    kind = "expired"


class ImmatureSignatureError(PolicyError):
    """``nbf`` (or ``iat``) is in the future beyond leeway (PyJWT name)."""

    code = 301
    kind = "not_yet_valid"


class InvalidIssuerError(PolicyError):
    """The ``iss`` claim does not match the issuer the token was verified for (PyJWT name)."""

    code = 302
    kind = "invalid_issuer"


class UnknownIssuerError(PolicyError):
    """No configured issuer matches the token (or the one the caller named)."""

    code = 303
    kind = "unknown_issuer"


class InvalidAudienceError(PolicyError):
    """The ``aud`` claim does not contain an accepted audience (PyJWT name)."""

    code = 304
    kind = "invalid_audience"


class MissingRequiredClaimError(PolicyError):
    """A claim required by the issuer's configuration is missing (PyJWT name)."""

    code = 305
    kind = "missing_required_claim"


class InvalidTypeError(PolicyError):
    """The header ``typ`` does not match the issuer's required type."""

    code = 306
    kind = "invalid_type"


class RevokedTokenError(PolicyError):
    """The token (its ``jti``, or its subject before a time) has been revoked."""

    code = 307
    kind = "revoked"


class KeyRevokedError(PolicyError):
    """The key that signed the token has been revoked with ``revoke_kid``."""

    code = 308
    kind = "key_revoked"


class TokenLifetimeExceededError(PolicyError):
    """The token lives longer than the issuer's ``max_token_lifetime_secs`` allows.

    The lifetime is ``exp - iat``, or ``exp - now`` for a token without ``iat``.
    """

    code = 309
    kind = "token_lifetime_exceeded"


# --- 4xx keys unavailable ---------------------------------------------------


class NoUsableKeysError(KeysUnavailableError):
    """The issuer has no usable keys: never fetched successfully, or the fetch failed."""

    code = 400
    kind = "keys_unavailable"


class KeysStaleError(KeysUnavailableError):
    """The issuer's keys are older than ``max_stale``: failing closed."""

    code = 401
    kind = "keys_stale"


# --- 5xx usage ----------------------------------------------------------------


class InvalidConfigError(UsageError, ValueError):
    """The configuration is invalid; the message names the field. Also a ``ValueError``."""

    code = 500
    kind = "invalid_config"


class InvalidArgumentError(UsageError, ValueError):
    """An argument is invalid, or the verifier is closed. Also a ``ValueError``."""

    code = 501
    kind = "invalid_argument"


class RevocationListFullError(UsageError):
    """The revocation lists hold ``revocation.max_entries`` entries; nothing was dropped."""

    code = 502
    kind = "revocation_list_full"


class BufferTooSmallError(UsageError):
    """A caller-supplied buffer is too small (C ABI only; never raised in Python)."""

    code = 503
    kind = "buffer_too_small"


class NullParameterError(UsageError):
    """A required pointer argument was NULL (C ABI only; never raised in Python)."""

    code = 504
    kind = "null_parameter"


# --- 9xx internal -------------------------------------------------------------


class UnexpectedError(InternalError):
    """An unexpected internal error."""

    code = 900
    kind = "internal"


class PanicError(InternalError):
    """The Rust engine panicked; the panic was caught at the boundary."""

    code = 901
    kind = "panic"


_KIND_CLASSES: tuple[type[JwtWardenError], ...] = (
    TokenTooLargeError,
    DecodeError,
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
    NoUsableKeysError,
    KeysStaleError,
    InvalidConfigError,
    InvalidArgumentError,
    RevocationListFullError,
    BufferTooSmallError,
    NullParameterError,
    UnexpectedError,
    PanicError,
)

# Looked up by the native module to raise the right class for an engine error.
_BY_CODE: dict[int, type[JwtWardenError]] = {cls.code: cls for cls in _KIND_CLASSES if cls.code is not None}
_BY_CATEGORY: dict[str, type[JwtWardenError]] = {
    cls.category: cls
    for cls in (MalformedTokenError, VerificationError, PolicyError, KeysUnavailableError, UsageError, InternalError)
    if cls.category is not None
}
