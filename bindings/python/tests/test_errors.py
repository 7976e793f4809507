"""The exception hierarchy and its one-to-one mapping to the engine's error kinds."""

from __future__ import annotations

import base64
import json
import pickle
import time
from typing import Any

import jwt
import pytest

import jwtwarden
from conftest import Issuer
from jwtwarden import exceptions
from jwtwarden.exceptions import _BY_CATEGORY, _BY_CODE, _KIND_CLASSES

CATEGORIES = {
    "malformed": jwtwarden.MalformedTokenError,
    "verification": jwtwarden.VerificationError,
    "policy": jwtwarden.PolicyError,
    "keys_unavailable": jwtwarden.KeysUnavailableError,
    "usage": jwtwarden.UsageError,
    "internal": jwtwarden.InternalError,
}


def all_subclasses(cls: type[jwtwarden.JwtWardenError]) -> set[type[jwtwarden.JwtWardenError]]:
    found: set[type[jwtwarden.JwtWardenError]] = set()
    for sub in cls.__subclasses__():
        found.add(sub)
        found |= all_subclasses(sub)
    return found


def test_every_engine_kind_maps_to_exactly_one_class() -> None:
    kinds = jwtwarden.error_kinds()
    assert len(kinds) == len({code for code, _, _ in kinds})
    for code, kind, category in kinds:
        matches = [cls for cls in _KIND_CLASSES if cls.code == code]
        assert len(matches) == 1, f"code {code} ({kind}) has classes {matches}"
        (cls,) = matches
        assert cls.kind == kind, cls
        assert cls.category == category, cls
        assert issubclass(cls, CATEGORIES[category])
        assert _BY_CODE[code] is cls
        assert cls.__name__ in jwtwarden.__all__ and getattr(jwtwarden, cls.__name__) is cls
    # ... and no class claims a code that neither the engine nor this
    # boundary (panic, 901) has.
    engine_codes = {code for code, _, _ in kinds}
    boundary = jwtwarden._native.boundary_kinds()
    assert not engine_codes & {code for code, _, _ in boundary}
    for code, kind, category in boundary:
        (cls,) = [cls for cls in _KIND_CLASSES if cls.code == code]
        assert (cls.kind, cls.category) == (kind, category)
    with_codes = {cls for cls in all_subclasses(jwtwarden.JwtWardenError) if cls.__dict__.get("code") is not None}
    assert with_codes == set(_KIND_CLASSES)
    assert {cls.code for cls in with_codes} == engine_codes | {code for code, _, _ in boundary}


def test_categories() -> None:
    assert _BY_CATEGORY == CATEGORIES
    for name, cls in CATEGORIES.items():
        assert cls.category == name and cls.code is None
        assert cls.__bases__ == (jwtwarden.JwtWardenError,)
    assert issubclass(jwtwarden.JwtWardenError, Exception)
    assert sorted(exceptions.__all__) == sorted(
        [
            *PYJWT_FAMILIES,
            *CLAIM_CLASSES,
            "JwtWardenError",
            *(c.__name__ for c in CATEGORIES.values()),
            *(c.__name__ for c in _KIND_CLASSES),
        ]
    )


# The PyJWT names jwtwarden exports: its families (no code of their own) and
# the kinds that mean what PyJWT's class of that name means.
PYJWT_FAMILIES = ["PyJWTError", "InvalidTokenError", "DecodeError", "InvalidIssuedAtError"]
# Raised for one kind when the engine names the claim apart (same code and
# kind as the kind's class, which it subclasses).
CLAIM_CLASSES = ["InvalidIssuedAtPayloadError"]
PYJWT_KINDS = {
    "InvalidAlgorithmError": 105,
    "InvalidSignatureError": 200,
    "ExpiredSignatureError": 300,
    "ImmatureSignatureError": 301,
    "InvalidIssuerError": 302,
    "InvalidAudienceError": 304,
    "MissingRequiredClaimError": 305,
}


def pyjwt_classes() -> dict[str, type[BaseException]]:
    return {
        name: cls
        for name, cls in vars(jwt.exceptions).items()
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls.__module__ == jwt.exceptions.__name__
    }


def test_pyjwt_names() -> None:
    ours = {name for name in jwtwarden.__all__ if name in pyjwt_classes()}
    assert ours == {*PYJWT_FAMILIES, *PYJWT_KINDS}
    for name, code in PYJWT_KINDS.items():
        assert getattr(jwtwarden, name).code == code
    for name in PYJWT_FAMILIES:
        assert getattr(getattr(jwtwarden, name), "code", None) is None


def test_hierarchy_mirrors_pyjwt() -> None:
    """For every PyJWT exception name jwtwarden exports, the PyJWT-named
    ancestors of our class are PyJWT's ``__mro__``, in the same order."""
    theirs = pyjwt_classes()
    known = set(theirs) | {"Exception", "BaseException", "object"}
    checked = 0
    for name in jwtwarden.__all__:
        if name not in theirs:
            continue
        ours = getattr(jwtwarden, name)
        our_names = [c.__name__ for c in ours.__mro__ if c.__name__ in known]
        their_names = [c.__name__ for c in theirs[name].__mro__]
        assert our_names == their_names, name
        checked += 1
    assert checked == len(PYJWT_FAMILIES) + len(PYJWT_KINDS)


def test_invalid_token_error_is_every_token_rejection_and_nothing_else() -> None:
    for cls in _KIND_CLASSES:
        rejection = cls.category in ("malformed", "verification", "policy")
        assert issubclass(cls, jwtwarden.InvalidTokenError) == rejection, cls
        assert issubclass(cls, jwtwarden.PyJWTError), cls
    # An outage is not a bad token.
    assert not issubclass(jwtwarden.KeysUnavailableError, jwtwarden.InvalidTokenError)
    assert issubclass(jwtwarden.KeysUnavailableError, jwtwarden.PyJWTError)


def test_decode_error_is_pyjwts_decode_error() -> None:
    decode = {cls for cls in _KIND_CLASSES if issubclass(cls, jwtwarden.DecodeError)}
    malformed = {cls for cls in _KIND_CLASSES if cls.category == "malformed"}
    assert decode == (malformed - {jwtwarden.InvalidAlgorithmError}) | {jwtwarden.InvalidSignatureError}
    # ... and the categories stay disjoint: a bad signature is not malformed.
    for cls in _KIND_CLASSES:
        assert sum(issubclass(cls, category) for category in CATEGORIES.values()) == 1, cls
    assert issubclass(jwtwarden.UnknownIssuerError, jwtwarden.InvalidIssuerError)


@pytest.mark.parametrize("code", [code for code, _, _ in jwtwarden.error_kinds()])
def test_native_errors_raise_their_class(code: int) -> None:
    with pytest.raises(jwtwarden.JwtWardenError) as e:
        jwtwarden._native._raise_error(code, "detail")
    err = e.value
    assert type(err) is _BY_CODE[code]
    assert err.code == code
    assert err.message == "detail"
    assert str(err) == f"{err.kind} ({code}): detail"
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is type(err) and again.message == "detail"


def test_unknown_code_is_refused() -> None:
    with pytest.raises(ValueError):
        jwtwarden._native._raise_error(1234, "x")


def test_a_panic_becomes_panic_error() -> None:
    with pytest.raises(jwtwarden.PanicError) as e:
        jwtwarden._native._raise_panic()
    assert e.value.code == 901 and "deliberate test panic" in e.value.message


# --- every kind raised where it should be -----------------------------------


def b64(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned(header: Any, payload: Any) -> str:
    return f"{b64(header)}.{b64(payload)}.{b64(b'signature')}"


@pytest.fixture(scope="module")
def strict(issuer: Issuer) -> Any:
    config = issuer.config(required_claims=["scope"])
    config["max_token_bytes"] = 4096
    with jwtwarden.Verifier(config) as v:
        yield v


def expect(exc: type[jwtwarden.JwtWardenError], v: jwtwarden.Verifier, token: str, **kw: Any) -> None:
    with pytest.raises(exc) as e:
        v.verify(token, **kw)
    assert type(e.value) is exc
    assert e.value.code == exc.code
    assert token not in str(e.value)


def test_malformed_kinds(issuer: Issuer, strict: jwtwarden.Verifier) -> None:
    claims = issuer.claims(scope="s")
    expect(jwtwarden.TokenTooLargeError, strict, "a" * 5000)
    expect(jwtwarden.InvalidSegmentsError, strict, "a.b")
    expect(jwtwarden.InvalidBase64Error, strict, "!!.b.c")
    expect(jwtwarden.InvalidHeaderError, strict, f"{b64(b'not json')}.{b64(claims)}.c2ln")
    expect(jwtwarden.InvalidPayloadError, strict, unsigned({"alg": "RS256", "kid": issuer.kid}, [1, 2]))
    expect(jwtwarden.InvalidAlgorithmError, strict, unsigned({"alg": "none"}, claims))
    expect(jwtwarden.InvalidAlgorithmError, strict, jwt.encode(claims, "k" * 32, algorithm="HS256"))
    expect(
        jwtwarden.UnsupportedCriticalError,
        strict,
        unsigned({"alg": "RS256", "kid": issuer.kid, "crit": ["b64"], "b64": False}, claims),
    )


def test_verification_kinds(issuer: Issuer, strict: jwtwarden.Verifier) -> None:
    key, alg = issuer.private_key(issuer.kid)
    claims = issuer.claims(scope="s")
    good = jwt.encode(claims, key, algorithm=alg, headers={"kid": issuer.kid})
    head, body, sig = good.split(".")
    expect(jwtwarden.InvalidSignatureError, strict, f"{head}.{body}.{sig[:-4]}AAAA")
    expect(jwtwarden.UnknownKidError, strict, jwt.encode(claims, key, algorithm=alg, headers={"kid": "nope"}))
    # A kid naming a key of another algorithm.
    es_kid = next(k for k in issuer.published() if issuer.private_key(k)[1] == "ES256")
    expect(
        jwtwarden.KeyAlgorithmMismatchError,
        strict,
        jwt.encode(claims, key, algorithm=alg, headers={"kid": es_kid}),
    )


def test_missing_kid(new_issuer: Any) -> None:
    iss = new_issuer("RS256", "RS256")
    with jwtwarden.Verifier(iss.config()) as v:
        key, alg = iss.private_key(iss.kid)
        expect(jwtwarden.MissingKidError, v, jwt.encode(iss.claims(), key, algorithm=alg))


def test_policy_kinds(issuer: Issuer, strict: jwtwarden.Verifier) -> None:
    now = int(time.time())
    expect(jwtwarden.ExpiredSignatureError, strict, issuer.mint(scope="s", exp=now - 3600))
    expect(jwtwarden.ImmatureSignatureError, strict, issuer.mint(scope="s", nbf=now + 3600))
    evil = issuer.mint(scope="s", iss="https://evil.example")
    expect(jwtwarden.InvalidIssuerError, strict, evil, issuer=issuer.url)
    expect(jwtwarden.UnknownIssuerError, strict, evil)
    expect(jwtwarden.InvalidAudienceError, strict, issuer.mint(scope="s", aud="nope"))
    expect(jwtwarden.MissingRequiredClaimError, strict, issuer.mint())
    with jwtwarden.Verifier(issuer.config(typ="at+jwt")) as typed:
        expect(jwtwarden.InvalidTypeError, typed, issuer.mint())
    with jwtwarden.Verifier(issuer.config()) as v:
        token = issuer.mint()
        v.revoke_jti(v.verify(token)["jti"], issuer=issuer.url)
        expect(jwtwarden.RevokedTokenError, v, token)
        v.revoke_kid(issuer.kid, issuer=issuer.url)
        expect(jwtwarden.KeyRevokedError, v, issuer.mint())


def test_invalid_token_error_catches_every_bad_token(issuer: Issuer, strict: jwtwarden.Verifier) -> None:
    """``except jwtwarden.InvalidTokenError:`` (PyJWT's catch-all) works on real rejections."""
    good = issuer.mint(scope="s")
    head, body, sig = good.split(".")
    for token in ["a.b", f"{head}.{body}.{sig[:-4]}AAAA", issuer.mint(scope="s", exp=int(time.time()) - 3600)]:
        with pytest.raises(jwtwarden.InvalidTokenError):
            strict.verify(token)


def test_keys_unavailable_kinds(new_issuer: Any) -> None:
    iss = new_issuer("RS256")
    iss.fault("status", status=500)
    with jwtwarden.Verifier(iss.config()) as v:
        expect(jwtwarden.NoUsableKeysError, v, iss.mint())
        # PyJWT-style handling answers an outage as an outage, not as a bad token.
        with pytest.raises(jwtwarden.PyJWTError) as e:
            try:
                v.verify(iss.mint())
            except jwtwarden.InvalidTokenError:
                pytest.fail("keys unavailable was caught as InvalidTokenError")
        assert isinstance(e.value, jwtwarden.KeysUnavailableError)
    # KeysStaleError: see test_keys.test_past_max_stale_fails_closed.
    # RevocationsStaleError (402) needs a fleet feed that has been
    # unreachable for max_stale_secs: see test_revocations_stale_error below
    # for its place in the hierarchy.


def test_usage_kinds(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    with pytest.raises(jwtwarden.InvalidConfigError):
        jwtwarden.Verifier({"issuers": []})
    with pytest.raises(jwtwarden.InvalidArgumentError):
        verifier.revoke_kid("", issuer=issuer.url)
    # RevocationListFullError: see test_revocation. RevocationNotPersistedError
    # (510): see test_revocation_not_persisted_error. null_parameter (504)
    # belongs to the C ABI alone and cannot happen in Python.


def test_revocations_stale_error() -> None:
    """The fleet feed lost for too long is an outage (4xx), not a bad token."""
    cls = jwtwarden.RevocationsStaleError
    assert (cls.code, cls.kind, cls.category) == (402, "revocations_stale", "keys_unavailable")
    assert issubclass(cls, jwtwarden.KeysUnavailableError)
    assert not issubclass(cls, jwtwarden.InvalidTokenError)
    with pytest.raises(jwtwarden.KeysUnavailableError) as e:
        jwtwarden._native._raise_error(402, "feed down")
    assert type(e.value) is cls and str(e.value) == "revocations_stale (402): feed down"


def test_revocation_not_persisted_error() -> None:
    cls = jwtwarden.RevocationNotPersistedError
    assert (cls.code, cls.kind, cls.category) == (510, "revocation_not_persisted", "usage")
    assert issubclass(cls, jwtwarden.UsageError) and not issubclass(cls, jwtwarden.InvalidTokenError)
    with pytest.raises(jwtwarden.UsageError) as e:
        jwtwarden._native._raise_error(510, "disk full")
    assert type(e.value) is cls


# --- PyJWT's InvalidIssuedAtError ---------------------------------------------


def pyjwt_iat_error(token: str) -> type[BaseException] | None:
    """What PyJWT raises for the ``iat`` of ``token`` (signature not checked)."""
    try:
        jwt.decode(token, options={"verify_signature": False, "verify_iat": True})
    except jwt.PyJWTError as e:
        return type(e)
    return None


@pytest.mark.parametrize("iat", ["soon", "", [1], {"at": 1}])
def test_a_non_numeric_iat_is_invalid_issued_at_error_as_in_pyjwt(
    issuer: Issuer, verifier: jwtwarden.Verifier, iat: Any
) -> None:
    """Code written for PyJWT that names ``InvalidIssuedAtError`` in an
    ``except`` clause catches what jwtwarden raises for the same token (it
    was an AttributeError before)."""
    token = issuer.mint(iat=iat)
    assert pyjwt_iat_error(token) is jwt.InvalidIssuedAtError
    for call in (verifier.verify, verifier.verify_full):
        with pytest.raises(jwtwarden.InvalidIssuedAtError) as e:
            call(token)
        err = e.value
        assert type(err) is jwtwarden.InvalidIssuedAtPayloadError
        # Still the engine's invalid_payload, for code that matches on it.
        assert isinstance(err, jwtwarden.InvalidPayloadError) and isinstance(err, jwtwarden.InvalidTokenError)
        assert (err.code, err.kind, err.category) == (104, "invalid_payload", "malformed")
        assert err.message.startswith("iat ")
        again = pickle.loads(pickle.dumps(err))
        assert type(again) is type(err) and again.message == err.message


@pytest.mark.parametrize("iat", [-1, 1e19, "1000", True, 253402300800])
def test_an_iat_the_engine_refuses_is_invalid_issued_at_error(
    issuer: Issuer, verifier: jwtwarden.Verifier, iat: Any
) -> None:
    """Stricter than PyJWT (which takes ``"1000"`` and ``True`` as integers):
    every ``iat`` the engine refuses as a value is an ``InvalidIssuedAtError``."""
    with pytest.raises(jwtwarden.InvalidIssuedAtError):
        verifier.verify(issuer.mint(iat=iat))


def test_only_iat_is_invalid_issued_at_error(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    now = int(time.time())
    # A future iat is ImmatureSignatureError, as in PyJWT, and nothing else.
    future = issuer.mint(iat=now + 3600)
    assert pyjwt_iat_error(future) is jwt.ImmatureSignatureError
    with pytest.raises(jwtwarden.ImmatureSignatureError) as immature:
        verifier.verify(future)
    assert not isinstance(immature.value, jwtwarden.InvalidIssuedAtError)
    # The same bad value in another claim is a plain InvalidPayloadError.
    for token in (issuer.mint(exp="soon"), issuer.mint(nbf="soon")):
        with pytest.raises(jwtwarden.InvalidPayloadError) as e:
            verifier.verify(token)
        assert type(e.value) is jwtwarden.InvalidPayloadError, e.value
    # A message that only mentions iat later is not about the iat claim.
    with pytest.raises(jwtwarden.InvalidPayloadError) as e:
        jwtwarden._native._raise_error(104, "iatx must be a number")
    assert type(e.value) is jwtwarden.InvalidPayloadError
    with pytest.raises(jwtwarden.InvalidIssuedAtError):
        jwtwarden._native._raise_error(104, "iat must be a number")
    assert "InvalidIssuedAtError" in jwtwarden.__all__
