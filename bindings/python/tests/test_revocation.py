"""Revocation takes effect for cached results the moment the call returns."""

from __future__ import annotations

import time

import pytest

import jwtwarden
from conftest import Issuer


def test_revoke_jti(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint()
    other = issuer.mint()
    claims = verifier.verify(token)
    verifier.verify(other)
    assert verifier.verify_full(token).cached
    verifier.revoke_jti(claims["jti"], claims["exp"])
    with pytest.raises(jwtwarden.RevokedTokenError) as e:
        verifier.verify(token)
    assert e.value.code == 307
    assert verifier.verify_full(other).cached  # other tokens keep their cache entries
    assert verifier.metrics()["revocation_entries"] == 1


def test_revoke_jti_without_expiry(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint()
    verifier.revoke_jti(verifier.verify(token)["jti"])
    with pytest.raises(jwtwarden.RevokedTokenError):
        verifier.verify(token)


def test_revoke_subject_before_a_time(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    now = int(time.time())
    old = issuer.mint(sub="bob", iat=now - 600)
    newer = issuer.mint(sub="bob", iat=now + 5)
    carol = issuer.mint(sub="carol", iat=now - 600)
    for t in (old, newer, carol):
        verifier.verify(t)
    verifier.revoke_subject("bob", now)
    with pytest.raises(jwtwarden.RevokedTokenError):
        verifier.verify(old)
    assert verifier.verify(newer)["sub"] == "bob"
    assert verifier.verify(carol)["sub"] == "carol"


def test_revoke_kid(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint()
    verifier.verify(token)
    issuer.reset_stats()
    verifier.revoke_kid(issuer.url, issuer.kid)
    with pytest.raises(jwtwarden.KeyRevokedError) as e:
        verifier.verify(token)
    assert e.value.code == 308
    with pytest.raises(jwtwarden.KeyRevokedError):
        verifier.verify(issuer.mint(), fresh=True)
    assert issuer.stats()["jwks_requests"] == 0
    with pytest.raises(jwtwarden.InvalidArgumentError):
        verifier.revoke_kid(issuer.url, "")
    with pytest.raises(jwtwarden.UnknownIssuerError):
        verifier.revoke_kid("https://nope.example", issuer.kid)


def test_revocation_list_is_bounded(issuer: Issuer) -> None:
    config = issuer.config()
    config["revocation"] = {"max_entries": 2}
    with jwtwarden.Verifier(config) as v:
        v.revoke_jti("a")
        v.revoke_jti("b")
        with pytest.raises(jwtwarden.RevocationListFullError) as e:
            v.revoke_jti("c")
        assert e.value.code == 502
