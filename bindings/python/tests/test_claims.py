"""Claim checks: expiry, not-before, audience, issuer, required claims, typ."""

from __future__ import annotations

import time

import pytest

import jwtwarden
from conftest import Issuer


def test_expired(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    now = int(time.time())
    with pytest.raises(jwtwarden.ExpiredSignatureError) as e:
        verifier.verify(issuer.mint(exp=now - 3600, iat=now - 7200, nbf=now - 7200))
    assert (e.value.code, e.value.kind, e.value.category) == (300, "expired", "policy")


def test_expiry_leeway(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    # Within the default 30 s leeway.
    assert verifier.verify(issuer.mint(exp=int(time.time()) - 5))["sub"] == "user"


def test_missing_exp_is_a_missing_claim_not_an_expired_token(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    with pytest.raises(jwtwarden.MissingRequiredClaimError) as e:
        verifier.verify(issuer.mint(exp=None))
    assert e.value.code == 305
    assert not isinstance(e.value, jwtwarden.ExpiredSignatureError)


def test_not_yet_valid(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    with pytest.raises(jwtwarden.ImmatureSignatureError) as e:
        verifier.verify(issuer.mint(nbf=int(time.time()) + 3600))
    assert e.value.code == 301


def test_wrong_audience(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    with pytest.raises(jwtwarden.InvalidAudienceError) as e:
        verifier.verify(issuer.mint(aud="other-api"))
    assert e.value.code == 304
    # No aud at all is a missing claim (PyJWT says the same), not a wrong one.
    with pytest.raises(jwtwarden.MissingRequiredClaimError):
        verifier.verify(issuer.mint(aud=None))
    assert verifier.verify(issuer.mint(aud=["other-api", "api"]))["aud"] == ("other-api", "api")


def test_wrong_issuer(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    evil = issuer.mint(iss="https://evil.example")
    issuer.reset_stats()
    # Chosen by its iss: not configured, rejected without a fetch.
    with pytest.raises(jwtwarden.UnknownIssuerError) as e:
        verifier.verify(evil)
    assert e.value.code == 303
    assert issuer.stats()["jwks_requests"] == 0
    # Verified for an issuer the caller names: the iss claim does not match it.
    with pytest.raises(jwtwarden.InvalidIssuerError) as e2:
        verifier.verify(evil, issuer=issuer.url)
    assert e2.value.code == 302


def test_required_claims_and_typ(issuer: Issuer) -> None:
    with jwtwarden.Verifier(issuer.config(required_claims=["scope"], typ="at+jwt")) as v:
        with pytest.raises(jwtwarden.MissingRequiredClaimError) as e:
            v.verify(issuer.mint(headers={"typ": "at+jwt"}))
        assert e.value.code == 305
        with pytest.raises(jwtwarden.InvalidTypeError) as e2:
            v.verify(issuer.mint(scope="read"))  # typ JWT
        assert e2.value.code == 306
        assert v.verify(issuer.mint(headers={"typ": "AT+JWT"}, scope="read"))["scope"] == "read"
